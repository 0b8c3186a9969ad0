"""Clean-up that need not hold up a cell: reaping processes whose memory the kernel is still tearing
down and removing their cgroups, in a background thread. `settle()` waits for all of it (tests, the
CLI before it exits, and the interpreter at exit)."""

from __future__ import annotations

import atexit
import queue
import threading
from collections.abc import Callable

_tasks: queue.Queue[Callable[[], object]] = queue.Queue()
_thread: threading.Thread | None = None
_lock = threading.Lock()


def _worker() -> None:
    while True:
        task = _tasks.get()
        try:
            task()
        except Exception:  # noqa: BLE001 - a failed clean-up must not stop the next one
            pass
        finally:
            _tasks.task_done()


def defer(task: Callable[[], object]) -> None:
    global _thread
    with _lock:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_worker, name="pycontainer-cleanup", daemon=True)
            _thread.start()
    _tasks.put(task)


def settle() -> None:
    """Wait until every deferred clean-up has run."""
    _tasks.join()


atexit.register(settle)
