"""Errors of the network layer: `OSError` subclasses whose `str()` is one clear line."""

from __future__ import annotations

import errno as _errno


class NetworkError(OSError):
    """Base class. `str(e)` is the message alone (no "[Errno N]" prefix); `e.errno` is still set."""

    default_errno = _errno.EINVAL

    def __init__(self, message: str, err: int | None = None, filename: str | None = None) -> None:
        super().__init__(err if err is not None else self.default_errno, message, filename)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[object, ...]:  # picklable across the fork pipe
        return (type(self), (self.message, self.errno, self.filename))


class InvalidArgument(NetworkError):
    """Bad input: an invalid address, subnet, name or port."""


class NetworkExists(NetworkError):
    default_errno = _errno.EEXIST


class NetworkNotFound(NetworkError):
    default_errno = _errno.ENOENT


class NetworkInUse(NetworkError):
    default_errno = _errno.EBUSY


class SubnetOverlap(NetworkError):
    default_errno = _errno.EADDRINUSE


class AddressInUse(NetworkError):
    default_errno = _errno.EADDRINUSE


class AddressExhausted(NetworkError):
    default_errno = _errno.EADDRNOTAVAIL


class EndpointExists(NetworkError):
    default_errno = _errno.EEXIST


class EndpointNotFound(NetworkError):
    default_errno = _errno.ENOENT


class PortInUse(NetworkError):
    default_errno = _errno.EADDRINUSE


class NamespaceError(NetworkError):
    default_errno = _errno.ENOENT


class NotSupported(NetworkError):
    default_errno = _errno.EOPNOTSUPP
