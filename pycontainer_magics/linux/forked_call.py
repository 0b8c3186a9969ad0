"""Call a function in a forked child and get its JSON result back: for work whose modules the caller should not
keep. A notebook kernel that imports a module keeps its memory for good, and every Python cell's fork copies the
page tables of all of it; the child imports what the function needs and takes it away when it exits.

The function is named as "module:function" and imported only in the child. The child is the caller's copy:
it runs with one thread, so the function must not need a lock another thread of the caller could hold (modules
the caller has not imported have none).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import Any

from ..errors import OSFailure


class ChildFailed(OSFailure):
    """The function raised in the child, or the child died before it answered."""


def call_in_fork(target: str) -> Any:
    """Run `target()` ("package.module:function") in a forked child; return what it returned (JSON-able)."""
    module, _, function = target.partition(":")
    r, w = os.pipe()
    try:
        pid = os.fork()
    except BaseException:
        os.close(r)
        os.close(w)
        raise
    if pid == 0:  # pragma: no cover - runs in the child, which ends with os._exit
        os.close(r)
        code = 1
        try:
            # (the caller's streams may be a kernel's, whose sending thread the child does not have)
            sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the child exits without closing
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
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    try:
        answer = json.loads(data)
    except ValueError:
        raise ChildFailed(f"{target} in a forked child: it ended without an answer") from None
    if "error" in answer:
        raise ChildFailed(f"{target} in a forked child: {answer['error']}")
    return answer["value"]


__all__ = ["ChildFailed", "call_in_fork"]
