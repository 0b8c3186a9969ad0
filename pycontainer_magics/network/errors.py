"""Errors of the network layer: `OSError` subclasses whose `str()` is one clear line."""

from __future__ import annotations

import errno as _errno
import os

from ..errors import NETWORKS, OSFailure


class NetworkError(OSFailure):
    """Base class. `str(e)` is one line (no "[Errno N]" prefix); `e.errno` is still set. Raised as
    NetworkError(message, errno, path); `from_netlink` keeps a netlink failure's errno."""

    default_errno = _errno.EINVAL
    needs = NETWORKS

    def __init__(self, message: str, err: int | None = None, filename: str | None = None, *,
                 hint: str | None = None) -> None:
        super().__init__(err if err is not None else self.default_errno, message, filename, hint=hint)

    @classmethod
    def from_netlink(cls, e: BaseException, doing: str) -> NetworkError:
        """pyroute2's NetlinkError(code, text) (or an OSError) met while `doing`, as one line that keeps its
        errno: `doing: EPERM (Operation not permitted)`."""
        code = getattr(e, "code", None)
        err = code if isinstance(code, int) else getattr(e, "errno", None)
        if isinstance(err, int) and err > 0:
            return cls(f"{doing}: {_errno.errorcode.get(err, err)} ({os.strerror(err)})", err)
        return cls(f"{doing}: {e}")


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
