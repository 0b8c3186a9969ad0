"""IPython's history thread kept running across the fork of a Python cell's PID 1 (runtime.cell_fork.fork_guards).

IPython 9 stops its history-saving thread before any fork of the process (os.register_at_fork), so that a terminal
IPython forks with one thread, and starts a new one at the next cell. In a kernel a Python cell's fork paid 0.8 ms
for that stop (its join waits for the thread to write the cell's input to SQLite, close its connection and exit),
and the next cell 0.5 ms for the new thread (bench/kernel.py); the kernel has a dozen other threads at that fork
anyway. What the stop also guards is kept: no fork while the thread is inside SQLite, whose mutexes a child using
sqlite3 would inherit held. Once connected, the thread uses SQLite only under the history manager's two cache locks:
the fork holds both (waiting out a write under way), and the child releases its copies first thing (_in_child).
A thread connecting or stopping, or an IPython without these attributes: IPython's own way, as before. (IPython 8
stops no thread at a fork: the locks alone keep the fork out of SQLite there.)
"""

from __future__ import annotations

import contextlib
import os
import sys
import weakref
from collections.abc import Iterator
from typing import Any

HISTORY_THREAD = "IPython's history thread"  # (its name in runtime.cell_fork.fork_guards)
_held: list[Any] = []  # the cache locks this process holds for the fork under way: the child frees its copies
_set_aside: list[Any] = []  # IPython's set of history managers, set aside for that fork


def _history_managers() -> tuple[Any, list[Any]]:
    """IPython's HistoryManager class when its before-fork hook stops their threads (IPython 9: its `_instances`),
    else None; and the history managers whose threads may write."""
    cls = getattr(sys.modules.get("IPython.core.history"), "HistoryManager", None)
    instances = getattr(cls, "_instances", None)
    if isinstance(instances, weakref.WeakSet):
        return cls, list(instances)
    get_ipython = getattr(sys.modules.get("IPython.core.getipython"), "get_ipython", None)
    hm = getattr(get_ipython() if get_ipython is not None else None, "history_manager", None)
    return None, [hm] if hm is not None else []


@contextlib.contextmanager
def kept_history_thread() -> Iterator[None]:
    """Around the fork: the history threads keep running, and none is inside SQLite."""
    cls, managers = _history_managers()
    locks: list[Any] = []
    for hm in managers:
        thread = getattr(hm, "save_thread", None)
        if thread is None:
            continue  # (none running: nothing to stop, nothing inside SQLite)
        pair = getattr(hm, "db_input_cache_lock", None), getattr(hm, "db_output_cache_lock", None)
        stopping = getattr(thread, "_stop_now", False) or getattr(thread, "stop_now", False)  # (IPython 9, 8)
        if getattr(thread, "db", None) is None or not thread.is_alive() or stopping or None in pair:
            yield  # (connecting, stopping, or unlike the IPython this was written for: IPython's own way)
            return
        locks += pair
    if not locks:
        yield
        return
    try:
        for lock in locks:  # (in the order the thread takes them, one at a time)
            lock.acquire()
            _held.append(lock)
        if cls is not None:
            _set_aside.append(cls._instances)
            cls._instances = weakref.WeakSet()  # what IPython's before-fork hook stops the threads of
        yield
    finally:
        if _set_aside:
            cls._instances = _set_aside.pop()
        while _held:  # (released before it is off the list: a fork meanwhile frees it in its child, at worst twice)
            _held[-1].release()
            _held.pop()


def _in_child() -> None:
    """After any fork: one made inside kept_history_thread() gets IPython's set back and the locks free."""
    if _set_aside:
        cls, _ = _history_managers()
        if cls is None:
            cls = getattr(sys.modules.get("IPython.core.history"), "HistoryManager", None)
        if cls is not None:
            cls._instances = _set_aside[0]
        _set_aside.clear()
    while _held:
        with contextlib.suppress(RuntimeError):
            _held.pop().release()


os.register_at_fork(after_in_child=_in_child)
