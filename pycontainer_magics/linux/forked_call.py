"""Call a function in a forked child and get its JSON result back: for work whose modules the caller should not
keep. A notebook kernel that imports a module keeps its memory for good, and every Python cell's fork copies the
page tables of all of it; the child imports what the function needs and takes it away when it exits.

The function is named as "module:function" and imported only in the child. The child is the caller's copy with one
thread: the function must not need a lock another thread of the caller could hold, nor state the caller's threads
keep (use it where the caller has not imported the modules the function uses). A child that does not answer within
`timeout` seconds — stuck on such a lock after all — is killed, as it is when the caller is interrupted; one whose
caller was killed ends by its own alarm shortly after.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import select
import signal
import sys
import time
from typing import Any

from ..errors import OSFailure


class ChildFailed(OSFailure):
    """The function raised in the child, or the child died or timed out before it answered."""


def call_in_fork(target: str, timeout: float = 30.0) -> Any:
    """Run `target()` ("package.module:function") in a forked child; return what it returned (JSON-able)."""
    module, _, function = target.partition(":")
    r, w = os.pipe()
    try:
        gc.freeze()  # (the child's collections then leave the caller's heap alone: no copy of it)
        try:
            pid = os.fork()
        finally:
            gc.unfreeze()
    except BaseException:
        os.close(r)
        os.close(w)
        raise
    if pid == 0:  # pragma: no cover - runs in the child, which ends with os._exit
        _child(r, w, module, function, timeout)
    os.close(w)
    data: bytes | None = None
    try:
        data = _read_until(r, time.monotonic() + timeout)
    finally:
        os.close(r)
        if data is None:  # no answer in time, or the caller was interrupted: the child goes
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)  # (it exits as it answers)
    if data is None:
        raise ChildFailed(f"{target} in a forked child: no answer within {timeout:g} s (the child was killed)")
    try:
        answer = json.loads(data)
    except ValueError:
        raise ChildFailed(f"{target} in a forked child: it ended without an answer") from None
    if "error" in answer:
        raise ChildFailed(f"{target} in a forked child: {answer['error']}")
    return answer["value"]


def _read_until(fd: int, deadline: float) -> bytes | None:
    """All the pipe holds until its end of file; None if the deadline comes first."""
    chunks: list[bytes] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _child(r: int, w: int, module: str, function: str, timeout: float) -> None:  # pragma: no cover - the child's
    os.close(r)
    code = 1
    try:
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.alarm(int(timeout) + 2)  # (its caller killed meanwhile, nothing else ends a child stuck past it)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # (a notebook's interrupt reaches the caller's process group)
        # The caller's streams may be a kernel's, whose sending thread the child does not have: nothing goes there.
        null = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):
            os.dup2(null, fd)
        sys.stdout = sys.stderr = open(null, "w")  # noqa: SIM115 - the child exits without closing it
        answer = {"value": getattr(importlib.import_module(module), function)()}
        code = 0
    except BaseException as e:  # noqa: BLE001 - anything becomes the caller's error
        answer = {"error": f"{type(e).__name__}: {e}"}
    try:
        view = memoryview(json.dumps(answer).encode())
        while view:
            view = view[os.write(w, view):]
    finally:
        os._exit(code)


__all__ = ["ChildFailed", "call_in_fork"]
