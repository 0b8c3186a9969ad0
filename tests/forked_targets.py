"""Functions tests/test_forked_call.py runs in forked children (imported there only)."""

from __future__ import annotations

import os
import sys


def answer() -> dict[str, object]:
    import mailbox  # noqa: F401 - a module the caller has not imported

    return {"pid": os.getpid(), "mailbox": "mailbox" in sys.modules}


def fails() -> None:
    raise ValueError("no such thing")


def dies() -> None:
    os._exit(3)
