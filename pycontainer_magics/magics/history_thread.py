"""IPython's history thread kept running across the fork of a Python cell's PID 1 (runtime.cell_fork.fork_guards).

IPython 9 stops its history-saving thread before any fork of the process (os.register_at_fork), so that a terminal
IPython forks with one thread, and starts a new one at the next cell. In a kernel a Python cell's fork paid 0.8 ms
for that stop (its join waits for the thread to write the cell's input to SQLite, close its connection and exit),
and the next cell 0.5 ms for the new thread (bench/kernel.py); the kernel has a dozen other threads at that fork
anyway. What the stop also guards is kept: no fork while the thread is inside SQLite, whose mutexes a child using
sqlite3 would inherit held. Once connected, the thread uses SQLite only under the history manager's two cache locks:
the fork holds both (waiting out a write under way), and the child releases its copies first thing (_in_child).
A thread not connected yet, or an IPython without these attributes: IPython's own stop, as before.
"""

from __future__ import annotations

import contextlib
import os
import sys
import weakref
from collections.abc import Iterator
from typing import Any

_held: list[Any] = []  # the cache locks held for the fork under way: the child releases its copies
_instances: list[Any] = []  # IPython's set of history managers, set aside for the fork under way


def _history_managers() -> tuple[Any, Any]:
    """IPython's HistoryManager class and its set of live instances (None, None: not loaded, or not as expected)."""
    cls = getattr(sys.modules.get("IPython.core.history"), "HistoryManager", None)
    instances = getattr(cls, "_instances", None)
    return (cls, instances) if isinstance(instances, weakref.WeakSet) else (None, None)


@contextlib.contextmanager
def kept_history_thread() -> Iterator[None]:
    """Around the fork: the history threads keep running, and none is inside SQLite."""
    cls, instances = _history_managers()
    locks: list[Any] = []
    for hm in list(instances or ()):
        thread = getattr(hm, "save_thread", None)
        pair = getattr(hm, "db_input_cache_lock", None), getattr(hm, "db_output_cache_lock", None)
        if thread is None:
            continue  # (none running: nothing to stop)
        if getattr(thread, "db", None) is None or not thread.is_alive() or None in pair:
            yield  # (connecting, or unlike the IPython this was written for: its own stop)
            return
        locks += pair
    if not locks:
        yield
        return
    for lock in locks:
        lock.acquire()
    _held[:], _instances[:] = locks, [instances]
    cls._instances = weakref.WeakSet()  # what IPython's before-fork hook stops the threads of
    try:
        yield
    finally:
        cls._instances = instances
        _held.clear()
        _instances.clear()
        for lock in reversed(locks):
            lock.release()


def _in_child() -> None:
    """After any fork: one made inside kept_history_thread() gets IPython's set back and its locks free."""
    if not _held:
        return
    cls, _ = _history_managers()
    if cls is not None and _instances:
        cls._instances = _instances[0]
    for lock in _held:
        with contextlib.suppress(RuntimeError):
            lock.release()
    _held.clear()
    _instances.clear()


os.register_at_fork(after_in_child=_in_child)
