"""The root of the library's errors: every layer's errors derive from `PycontainerError`.

An error says in one line what was wrong and keeps, as fields, what a caller needs to act on it:

    errno  the OS or netlink error number, when one caused it (OSFailure: also OSError's errno)
    path   the file, cgroup, device or object it concerns (OSFailure: also OSError's filename)
    hint   what would be right, or what to try
    needs  the capability the operation needed, when the failure is a missing one: a key of the doctor's
           table (USERNS, NAMESPACES, OVERLAY, PROC, PIVOT_ROOT, CGROUP, NETWORKS below)

`str(e)` is that one line, built from the fields (message, then the path unless the message names it,
then the hint); the notebook shows it, and explains a missing capability from `needs` and `errno`, never
by reading the message text.

Two mix-ins keep what callers already catch: `OSFailure` is an OSError (the kernel or a file said no),
`InvalidInput` a ValueError (what the user gave is wrong). Each layer subclasses these (CgroupError,
NetworkError, ImageError, SpecError, LaunchError, ...). Imports nothing of the package: every layer may
import it.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: the OCI runtime's start-up imports this module
if TYPE_CHECKING:
    from typing import Any

# The capabilities a failure may name (`needs`); the doctor (lab/doctor.py) measures each under this key.
USERNS = "userns"
NAMESPACES = "namespaces"
OVERLAY = "overlay"
PROC = "proc"
PIVOT_ROOT = "pivot_root"
CGROUP = "cgroup_limits"
NETWORKS = "networks"


class PycontainerError(Exception):
    """Base of every error raised by pycontainer_magics. `str(e)` is one line."""

    needs: str | None = None  # a subclass may name the capability all its failures concern

    def __init__(self, message: str = "", *, errno: int | None = None, path: str | None = None,
                 hint: str | None = None, needs: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errno = errno
        self.path = path
        self.hint = hint
        if needs is not None:
            self.needs = needs

    def __str__(self) -> str:
        line = self.message
        if self.path and self.path not in line:
            line += f" ({self.path})"
        if self.hint:
            line += f"; {self.hint}"
        return line

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across the fork pipe, fields included
        return (_rebuild, (type(self), dict(self.__dict__), self.errno))


def _rebuild(cls: type[PycontainerError], state: dict[str, Any], errno: int | None) -> PycontainerError:
    e = cls.__new__(cls)
    PycontainerError.__init__(e, state.get("message", ""), errno=errno, path=state.get("path"),
                              hint=state.get("hint"))
    if isinstance(e, OSError):
        e.strerror, e.filename = state.get("message", ""), state.get("path")
    e.__dict__.update(state)
    return e


class OSFailure(PycontainerError, OSError):
    """The kernel, a file or netlink said no: errno kept (0/None when the failure has none), the path or
    object in `path` (and OSError's `filename`), the message in `strerror`. Raised as
    OSFailure(errno, message, path, hint=..., needs=...), the order OSError takes (or, as OSError allows,
    with the message alone)."""

    def __init__(self, err: int | str | None, message: str | None = None, path: str | None = None, *,
                 hint: str | None = None, needs: str | None = None) -> None:
        if isinstance(err, str) and message is None:  # OSFailure("message"), as OSError("message")
            err, message = None, err
        assert not isinstance(err, str)
        message = message or ""
        PycontainerError.__init__(self, message, errno=err, path=path, hint=hint, needs=needs)
        self.strerror = message
        self.filename = path

    @classmethod
    def wrap(cls, e: BaseException, message: str, *, path: str | None = None, hint: str | None = None,
             needs: str | None = None) -> OSFailure:
        """`e` (an OSError or pyroute2's NetlinkError) as this class: its errno (a NetlinkError's code) and
        filename kept, `message` saying what was being done, the original's text appended."""
        err = getattr(e, "errno", None)
        if err is None and isinstance(getattr(e, "code", None), int):
            err = e.code  # type: ignore[attr-defined]  # NetlinkError(code, message)
        reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
        return cls(err, f"{message}: {reason}", path or getattr(e, "filename", None), hint=hint, needs=needs)


class InvalidInput(PycontainerError, ValueError):
    """What was given is wrong (an option, a file, a name): one line saying what, and what would be right."""


__all__ = ["CGROUP", "NAMESPACES", "NETWORKS", "OVERLAY", "PIVOT_ROOT", "PROC", "USERNS", "InvalidInput", "OSFailure",
           "PycontainerError"]
