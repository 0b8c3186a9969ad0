"""Missing capabilities as one line instead of a traceback, for every magic of the extension.

`install(shell)` wraps each registered magic: an OSError (or a pyroute2 NetlinkError) that escapes it, and
a UsageError raised over one (`raise UsageError(str(e)) from None` keeps the original as __context__), are
matched against what needs which capability — user namespaces, the other namespaces, overlay, /proc,
pivot_root, a writable cgroup, netlink in the host's network, the state directory. When the doctor
(`lab/doctor.py`, measured once per kernel on the first such error) confirms the capability is
missing here, the error becomes `%%container needs user namespaces: <what was measured>; <what to do>`.
Any other OSError still becomes one line (`%cgroup: EACCES (Permission denied) (/path)`), never a traceback,
and so do the library's own errors a magic let through (SpecError, ImageError, BundleError, ComposeError).
"""

from __future__ import annotations

import errno
import functools
import os
import re
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError

# errnos that say "not allowed here" rather than "wrong input"
_DENIED = {errno.EPERM, errno.EACCES, errno.ENOSPC, errno.EROFS}
_DENIED_TEXT = re.compile(r"Operation not permitted|Permission denied|No space left on device|Read-only file system|"
                          r"\(1, 'Operation not permitted'\)|need a writable cgroup|needs? root")

# (doctor row, what the magic needs, pattern over the error chain's text). Order matters: first match wins.
_RULES: list[tuple[str, str, re.Pattern[str]]] = [
    ("userns", "user namespaces", re.compile(r"CLONE_NEWUSER|unshare\(0x10000000\)|user namespace|uid_map|gid_map|"
                                             r"setgroups", re.I)),
    ("namespaces", "namespaces", re.compile(r"unshare|setns", re.I)),
    ("overlay", "an overlay root filesystem", re.compile(r"overlay", re.I)),
    ("proc", "a fresh /proc", re.compile(r"mount.*\bproc\b|\bproc\b.*mount", re.I)),
    ("pivot_root", "pivot_root", re.compile(r"pivot_root", re.I)),
    ("cgroup_limits", "a writable cgroup", re.compile(r"cgroup", re.I)),
    ("networks", "container networks", re.compile(r"bridge|veth|netlink|netns|network|iptables|NetlinkError", re.I)),
]


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


def _text(e: BaseException) -> str:
    parts = [type(e).__name__, str(e)]
    if isinstance(e, OSError) and e.filename:
        parts.append(str(e.filename))
    return " ".join(parts)


def _state_dir_line(label: str, e: BaseException) -> str | None:
    fn = getattr(e, "filename", None)
    if not isinstance(fn, str) or not fn.startswith("/var/lib/pycontainer_magics"):
        return None
    return (f"{label}: {os.path.dirname(fn)} is not writable by uid {os.geteuid()}: run as root, or set "
            "PYCONTAINER_STATE_DIR to a directory of yours, like ~/.local/share/pycontainer_magics")


def explain(exc: BaseException, label: str, report: Any = None) -> str | None:
    """One line saying which capability `label` (e.g. `%%container`) lacks here and what to do, or None
    when the error is not about a missing capability (or the doctor finds the capability works)."""
    chain = _chain(exc)
    denied = any(_errno_of(e) in _DENIED for e in chain) or any(_DENIED_TEXT.search(str(e)) for e in chain)
    if not denied:
        return None
    for e in chain:
        line = _state_dir_line(label, e)
        if line:
            return line
    text = " | ".join(_text(e) for e in chain)
    for key, need, pattern in _RULES:
        if not pattern.search(text):
            continue
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
            continue  # the capability is there: the error is about something else
        return f"{label} needs {need}: {row.why}" + (f"; {row.fix}" if row.fix else "")
    return None


def describe(exc: BaseException) -> str:
    """An OSError as `EACCES (Permission denied) (/path)`."""
    n = _errno_of(exc)
    if n is None:
        return str(exc)
    text = getattr(exc, "strerror", None) or os.strerror(n)
    where = f" ({exc.filename})" if isinstance(exc, OSError) and exc.filename else ""
    return f"{errno.errorcode.get(n, n)} ({text}){where}"


# The library's error types whose message is already a sentence for the user (matched by name: importing
# them here would load the image store and jsonschema with every magic).
_LIBRARY_ERRORS = {"SpecError", "BundleError", "ComposeError", "ImageError"}


def _is_library_error(e: BaseException) -> bool:
    return any(c.__name__ in _LIBRARY_ERRORS and c.__module__.startswith("pycontainer_magics.")
               for c in type(e).__mro__)


def friendly(fn: Callable[..., Any], label: str) -> Callable[..., Any]:
    """Wrap a bound magic method: capability errors become one explanatory UsageError line."""

    @functools.wraps(fn)
    def magic(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UsageError as e:
            line = explain(e, label)
            if line is None:
                raise
            raise UsageError(line) from None
        except Exception as e:
            if _is_library_error(e):  # the library's own one-line errors (bad spec, image, bundle, compose file)
                raise UsageError(explain(e, label) or f"{label}: {e}") from None
            if not isinstance(e, OSError) and type(e).__name__ != "NetlinkError":
                raise
            line = explain(e, label) or f"{label}: {describe(e)}"
            raise UsageError(line) from None

    magic.__self__ = getattr(fn, "__self__", None)  # type: ignore[attr-defined]  # unload finds its magics by it
    magic.__pcm_friendly__ = True  # type: ignore[attr-defined]
    return magic


def install(shell: Any, classes: tuple[type, ...]) -> None:
    """Wrap every line and cell magic of `classes` registered in `shell` (once)."""
    table = shell.magics_manager.magics
    for kind, prefix in (("line", "%"), ("cell", "%%")):
        for name, fn in list(table[kind].items()):
            if getattr(fn, "__pcm_friendly__", False) or not isinstance(getattr(fn, "__self__", None), classes):
                continue
            table[kind][name] = friendly(fn, prefix + name)


__all__ = ["describe", "explain", "friendly", "install"]
