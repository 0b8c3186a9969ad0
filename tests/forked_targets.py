"""Functions tests/test_forked_call.py runs in forked children (imported there only)."""

from __future__ import annotations

import os
import signal
import sys
import time


def answer() -> dict[str, object]:
    import mailbox  # noqa: F401 - a module the caller has not imported

    return {"pid": os.getpid(), "mailbox": "mailbox" in sys.modules}


def fails() -> None:
    raise ValueError("no such thing")


def dies() -> None:
    os._exit(3)


def hangs() -> None:
    time.sleep(3600)


def interrupted_and_prints() -> str:
    print("printed to sys.stdout")
    os.write(1, b"printed to fd 1\n")
    os.write(2, b"printed to fd 2\n")
    os.kill(os.getpid(), signal.SIGINT)  # (as a notebook's interrupt of the kernel's process group)
    return "finished"


def alarm_left() -> int:
    return signal.alarm(0)
