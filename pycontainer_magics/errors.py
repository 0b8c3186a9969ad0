"""The root of the library's errors: every layer's errors derive from `PycontainerError`.

An error says in one line what was wrong and keeps what a caller needs to act on it as fields:
`errno` (the OS or netlink error number, when one caused it), `path` (the file, cgroup, device or object
it concerns) and `hint` (what would be right, or what to try). The notebook shows an error as one line
built from those fields, never by matching the message text.

Imports nothing of the package: every layer may import it.
"""

from __future__ import annotations


class PycontainerError(Exception):
    """Base of every error raised by pycontainer_magics. `str(e)` is the one-line message."""

    def __init__(self, message: str = "", *, errno: int | None = None, path: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errno = errno
        self.path = path
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[object, ...]:  # picklable across the fork pipe, fields included
        return (_rebuild, (type(self), self.message, self.errno, self.path, self.hint))


def _rebuild(cls: type[PycontainerError], message: str, errno: int | None, path: str | None,
             hint: str | None) -> PycontainerError:
    e = cls.__new__(cls)
    PycontainerError.__init__(e, message, errno=errno, path=path, hint=hint)
    return e


__all__ = ["PycontainerError"]
