"""runc's log: `--log FILE` (default stderr) in `--log-format text|json`. containerd's shim reads the last
`"level":"error"` entry of its log.json to tell the user why `create` failed; conmon reads stderr.

    {"level":"error","msg":"container with id exists: x","time":"2026-12-04T18:48:38Z"}
    time="2026-12-04T18:48:38Z" level=error msg="container with id exists: x"
"""

from __future__ import annotations

import os
import sys
import time

from .jsonout import dumps

_target: int | None = None  # fd of --log, None: stderr
_json = False
_debug = False


def configure(path: str | None, fmt: str, debug: bool) -> None:
    global _target, _json, _debug
    if fmt not in ("text", "json", ""):
        raise ValueError(f"invalid log-format: {fmt}")
    _json, _debug = fmt == "json", debug
    if path:
        _target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)


def to_stderr() -> bool:
    return _target is None


def _line(level: str, msg: str) -> bytes:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if _json:
        return (dumps({"level": level, "msg": msg, "time": now}) + "\n").encode()
    return f'time="{now}" level={level} msg={dumps(msg)}\n'.encode()


def write(level: str, msg: str) -> None:
    if level == "debug" and not _debug:
        return
    data = _line(level, msg)
    try:
        os.write(_target if _target is not None else 2, data)
    except OSError:
        pass


def error(msg: str) -> None:
    """An error as runc reports it: to the log, and (when the log is a file) plainly to stderr too."""
    write("error", msg)
    if _target is not None:
        try:
            sys.stderr.write(msg + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


def warn(msg: str) -> None:
    write("warning", msg)


def debug(msg: str) -> None:
    write("debug", msg)


__all__ = ["configure", "debug", "error", "to_stderr", "warn", "write"]
