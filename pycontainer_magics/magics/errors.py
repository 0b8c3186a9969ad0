"""Missing capabilities as one line instead of a traceback, for every magic of the extension.

`install(shell)` wraps each registered magic. An error that escapes it, or that a UsageError was raised over
(`raise UsageError(str(e)) from None` keeps the original as __context__), is read by its fields, never its
text: a library error (errors.PycontainerError) with a "not allowed here" errno names the capability it
needed (`needs`: user namespaces, the other namespaces, overlay, /proc, pivot_root, a writable cgroup,
container networks); a path under the default data root is the state directory. When the doctor
(`lab/doctor.py`, measured once per kernel on the first such error) confirms the capability is
missing here, the error becomes `%%container needs user namespaces: <what was measured>; <what to do>`.
Any other OSError still becomes one line (`%cgroup: EACCES (Permission denied) (/path)`), never a traceback,
and so do the library's own errors a magic let through (SpecError, ImageError, BundleError, ComposeError).

Every such line FAILS the cell: IPython shows a plain `UsageError` as a message on stderr and sends no
`error` output, so nbval, nbclient and "Run all" go on past it (nbval issue #147). The errors here render
their one line through `_render_traceback_()` instead (as IPython's `%%script` fails a cell with
CalledProcessError): the execute reply is an error, the notebook stops there, and no traceback is shown.
An interrupt (the stop button) is one line too.
"""

from __future__ import annotations

import errno
import functools
import os
import re
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError

from .. import errors as E


class CellError(Exception):
    """An error a magic shows as its one line (no traceback) and that fails the cell."""

    shown_as = ""  # the name the line starts with (default: the class name)

    def _render_traceback_(self) -> list[str]:  # IPython's hook: these lines replace the traceback
        return [f"{self.shown_as or type(self).__name__}: {self}"]


class MagicUsageError(CellError, UsageError):
    """Bad input to a magic (an option, a file, a name), or what the library refused (a failing build step,
    a missing capability): `UsageError: <what was wrong, what would be right>`, or the library error's
    class name instead of UsageError. Still an IPython UsageError for code that catches one; unlike a plain
    one, it fails the cell."""

    def __init__(self, message: str, shown_as: str = "UsageError") -> None:
        super().__init__(message)
        self.shown_as = shown_as


class ContainerError(CellError):
    """A workload ended other than the cell said it would: by default, a non-zero exit, a signal, the OOM
    killer or the timeout; with an expectation (`--expect oom`, `--expect-exit 3`), the expectation not met.
    The result is still stored (`_container`): `.run` is it, and the fields say what happened."""

    def __init__(self, message: str, run: Any = None, *, exit_code: int | None = None, signal: str | None = None,
                 oom_killed: bool = False, stderr_tail: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.run = run
        self.exit_code = exit_code
        self.signal = signal  # e.g. "SIGKILL"
        self.oom_killed = oom_killed
        self.stderr_tail = stderr_tail  # the last lines the workload wrote to stderr


class CellInterrupted(KeyboardInterrupt):
    """The stop button, as one line: what was interrupted and that it is gone (a KeyboardInterrupt still, so
    "Run all" stops here)."""

    def __init__(self, message: str, run: Any = None) -> None:
        super().__init__(message)
        self.run = run

    def _render_traceback_(self) -> list[str]:
        return [f"KeyboardInterrupt: {self}"]


def usage(message: str) -> MagicUsageError:
    """`raise usage("...")` in a magic: one line, and the cell fails."""
    return MagicUsageError(message)


# errnos that say "not allowed here" rather than "wrong input"
_DENIED = {errno.EPERM, errno.EACCES, errno.ENOSPC, errno.EROFS}

# What each capability a library error may name (PycontainerError.needs) is called in the line.
_NEEDED = {E.USERNS: "user namespaces", E.NAMESPACES: "namespaces", E.OVERLAY: "an overlay root filesystem",
           E.PROC: "a fresh /proc", E.PIVOT_ROOT: "pivot_root", E.CGROUP: "a writable cgroup",
           E.NETWORKS: "container networks"}


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and e not in out and len(out) < 8:
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


def _errno_of(e: BaseException) -> int | None:
    if isinstance(e, OSError) and e.errno is not None:
        return e.errno
    code = getattr(e, "code", None)  # pyroute2's NetlinkError(code, message)
    if type(e).__name__ == "NetlinkError" and isinstance(code, int):
        return code
    return None


def _state_dir_line(label: str, e: BaseException) -> str | None:
    fn = getattr(e, "filename", None)
    if not isinstance(fn, str) or not fn.startswith("/var/lib/pycontainer_magics"):
        return None
    return (f"{label}: {os.path.dirname(fn)} is not writable by uid {os.geteuid()}: run as root, or set "
            "PYCONTAINER_STATE_DIR to a directory of yours, like ~/.local/share/pycontainer_magics")


def explain(exc: BaseException, label: str, report: Any = None) -> str | None:
    """One line saying which capability `label` (e.g. `%%container`) lacks here and what to do, or None
    when the error is not about a missing capability (or the doctor finds the capability works). Read from
    the errors' fields: errno (a "not allowed" one), path (the data root), needs (the capability)."""
    chain = _chain(exc)
    if not any(_errno_of(e) in _DENIED for e in chain):
        return None
    for e in chain:
        line = _state_dir_line(label, e)
        if line:
            return line
    key = next((e.needs for e in chain if isinstance(e, E.PycontainerError) and e.needs), None)
    if key is None or key not in _NEEDED:
        return None
    if report is None:
        from ..lab import doctor

        try:
            report = doctor.diagnose()
        except Exception:  # noqa: BLE001 - no doctor, no better line than the original
            return None
    try:
        row = report[key]
    except KeyError:
        return None
    if row.works:
        return None  # the capability is there: the error is about something else
    return f"{label} needs {_NEEDED[key]}: {row.why}" + (f"; {row.fix}" if row.fix else "")


def describe(exc: BaseException) -> str:
    """An OSError as `EACCES (Permission denied) (/path)`."""
    n = _errno_of(exc)
    if n is None:
        return str(exc)
    text = getattr(exc, "strerror", None) or os.strerror(n)
    where = f" ({exc.filename})" if isinstance(exc, OSError) and exc.filename else ""
    hint = f"; {exc.hint}" if isinstance(exc, E.PycontainerError) and exc.hint else ""
    return f"{errno.errorcode.get(n, n)} ({text}){where}{hint}"


def _is_library_error(e: BaseException) -> bool:
    """The library's own one-line errors (an image, a bundle, a compose file, ...), shown under their name;
    a bad option (SpecError) is a UsageError, an OS-level failure is described with its errno."""
    return isinstance(e, E.PycontainerError) and not isinstance(e, OSError) and not _is_bad_input(e)


def _is_bad_input(e: BaseException) -> bool:
    """A bad option of the magic itself: shown as a UsageError."""
    from ..runtime.spec import SpecError

    return isinstance(e, SpecError)


def friendly(fn: Callable[..., Any], label: str) -> Callable[..., Any]:
    """Wrap a bound magic method: every error that escapes it becomes one line that fails the cell (a
    capability error explained), an interrupt one line too; a magic's own results pass through."""

    @functools.wraps(fn)
    def magic(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (CellError, CellInterrupted):
            raise
        except UsageError as e:  # a magic's own, maybe raised over a library error: show that error's name
            ctx = e.__cause__ or e.__context__
            shown = type(ctx).__name__ if ctx is not None and _is_library_error(ctx) else "UsageError"
            raise MagicUsageError(explain(e, label) or str(e), shown) from None
        except KeyboardInterrupt as e:
            raise interrupted(e, label) from None
        except Exception as e:
            if _is_bad_input(e):
                raise MagicUsageError(explain(e, label) or f"{label}: {e}") from None
            if _is_library_error(e):  # the library's own one-line errors (image, bundle, compose file)
                raise MagicUsageError(explain(e, label) or f"{label}: {e}", type(e).__name__) from None
            if not isinstance(e, OSError) and type(e).__name__ != "NetlinkError":
                raise
            line = explain(e, label) or f"{label}: {describe(e)}"
            raise MagicUsageError(line, type(e).__name__) from None

    magic.__self__ = getattr(fn, "__self__", None)  # type: ignore[attr-defined]  # unload finds its magics by it
    magic.__pcm_friendly__ = True  # type: ignore[attr-defined]
    return magic


def interrupted(e: KeyboardInterrupt, label: str) -> CellInterrupted:
    """An interrupt as one line; a run the library hands along (ContainerInterrupted.run) stays attached."""
    run = getattr(e, "run", None)
    what = "the container was stopped and removed" if run is not None else "stopped"
    story = getattr(run, "stop_story", None)  # how: `SIGTERM; exited by itself`, `SIGTERM, then SIGKILL ...`
    if story:
        what += f" ({story})"
    return CellInterrupted(f"{label} interrupted: {what}", run)


def install(shell: Any, classes: tuple[type, ...]) -> None:
    """Wrap every line and cell magic of `classes` registered in `shell` (once), and make IPython's own
    UsageErrors about them (`%%cgroup is a cell magic, but the cell body is empty`, raised before the magic
    runs) fail the cell too."""
    table = shell.magics_manager.magics
    names = []
    for kind, prefix in (("line", "%"), ("cell", "%%")):
        for name, fn in list(table[kind].items()):
            if not isinstance(getattr(fn, "__self__", None), classes):
                continue
            names.append(name)
            if not getattr(fn, "__pcm_friendly__", False):
                table[kind][name] = friendly(fn, prefix + name)
    if getattr(shell, "custom_exceptions", None) == () and hasattr(shell, "set_custom_exc"):
        pattern = re.compile(r"%%?(?:" + "|".join(map(re.escape, sorted(set(names)))) + r")\b")

        def ours(self: Any, etype: type, value: BaseException, tb: Any, tb_offset: Any = None) -> list[str]:
            if isinstance(value, CellError):  # ours, raised by a magic: its own line
                stb = value._render_traceback_()
            elif pattern.search(str(value)):  # IPython's, about one of our magics
                stb = [f"UsageError: {value}"]
            else:
                self.show_usage_error(value)  # another extension's: as IPython shows it
                return []
            self._showtraceback(etype, value, stb)
            return stb

        shell.set_custom_exc((UsageError,), ours)
        shell._pcm_custom_exc = True


def uninstall(shell: Any) -> None:
    """Undo the UsageError handler of `install` (the wrapped magics go with their registration)."""
    if getattr(shell, "_pcm_custom_exc", False):
        shell.set_custom_exc((), None)
        shell._pcm_custom_exc = False


__all__ = ["CellError", "CellInterrupted", "ContainerError", "MagicUsageError", "describe", "explain", "friendly",
           "install", "interrupted", "uninstall", "usage"]
