"""cleanup.held(): what a run defers waits for the run's end (the clean-up thread would take the interpreter from the
run at its next system call), is queued when it leaves — also on an exception —, and settle() inside it still waits
for everything. (No root needed.)"""

from __future__ import annotations

import threading

import pytest

from pycontainer_magics.runtime import cleanup


def test_deferred_inside_is_queued_on_leaving() -> None:
    ran: list[str] = []
    with cleanup.held():
        cleanup.defer(lambda: ran.append("a"))
        with cleanup.held():  # nested: the outermost queues
            cleanup.defer(lambda: ran.append("b"))
        threading.Event().wait(0.05)
        assert ran == []  # not queued yet: the clean-up thread had nothing to run
    cleanup.settle()
    assert ran == ["a", "b"]


def test_an_exception_still_queues_them_and_settle_waits_for_held_ones() -> None:
    ran: list[str] = []
    with pytest.raises(RuntimeError), cleanup.held():
        cleanup.defer(lambda: ran.append("x"))
        raise RuntimeError("the run failed")
    cleanup.settle()
    assert ran == ["x"]
    with cleanup.held():
        cleanup.defer(lambda: ran.append("y"))
        cleanup.settle()  # inside: what this thread holds is queued and waited for
        assert ran == ["x", "y"]
        cleanup.defer(lambda: ran.append("z"))
    cleanup.settle()
    assert ran == ["x", "y", "z"]


def test_another_thread_defers_at_once() -> None:
    ran = threading.Event()
    with cleanup.held():
        t = threading.Thread(target=cleanup.defer, args=(ran.set,))
        t.start()
        t.join()
        assert ran.wait(5)  # held is per thread: the pool's thread is not held back by a run
