"""cleanup.held(): the clean-up a run defers once its container has ended waits for the run's end (the clean-up thread
would take the interpreter from the run at its next system call), is queued when it leaves — also on an exception —;
what it deferred before its container ended is queued at once (a detached container may run for hours); settle()
inside still waits for everything; a run inside a run hands its held tasks to the outer one. (No root needed.)"""

from __future__ import annotations

import os
import threading

import pytest
from helpers import host_clean  # noqa: F401

from pycontainer_magics.runtime import cleanup


def _still(ran: list[str], expected: list[str]) -> bool:
    """After the clean-up thread had time to run what was queued, `ran` is still `expected`."""
    threading.Event().wait(0.05)
    return ran == expected


def test_held_from_the_containers_end_until_the_runs_end() -> None:
    ran: list[str] = []
    with cleanup.held():
        cleanup.defer(lambda: ran.append("early"))  # before the container ended: queued at once
        cleanup.settle()
        assert ran == ["early"]
        cleanup.hold_from_now()
        cleanup.defer(lambda: ran.append("a"))
        cleanup.defer(lambda: ran.append("b"))
        threading.Event().wait(0.05)
        assert ran == ["early"]  # not queued yet: the clean-up thread had nothing to run
    cleanup.settle()
    assert ran == ["early", "a", "b"]


def test_hold_from_now_outside_a_run_holds_nothing() -> None:
    ran: list[str] = []
    cleanup.hold_from_now()
    cleanup.defer(lambda: ran.append("x"))
    cleanup.settle()
    assert ran == ["x"]


def test_an_exception_still_queues_them_and_settle_waits_for_held_ones() -> None:
    ran: list[str] = []
    with pytest.raises(RuntimeError), cleanup.held():
        cleanup.hold_from_now()
        cleanup.defer(lambda: ran.append("x"))
        raise RuntimeError("the run failed")
    cleanup.settle()
    assert ran == ["x"]
    with cleanup.held():
        cleanup.hold_from_now()
        cleanup.defer(lambda: ran.append("y"))
        cleanup.settle()  # inside: what this thread holds is queued and waited for
        assert ran == ["x", "y"]
        cleanup.defer(lambda: ran.append("z"))
        assert _still(ran, ["x", "y"])
    cleanup.settle()
    assert ran == ["x", "y", "z"]


def test_a_run_inside_a_run() -> None:
    ran: list[str] = []
    with cleanup.held():  # an outer run, its container still running
        with cleanup.held():  # a run it starts (a pod's infra container) ends
            cleanup.hold_from_now()
            cleanup.defer(lambda: ran.append("inner"))
        cleanup.settle()
        assert ran == ["inner"]  # the outer one was not holding: queued when the inner run returned
        cleanup.hold_from_now()
        with cleanup.held():
            cleanup.hold_from_now()
            cleanup.defer(lambda: ran.append("inner 2"))
        assert _still(ran, ["inner"])  # handed to the outer run's holding
    cleanup.settle()
    assert ran == ["inner", "inner 2"]


def test_another_thread_defers_at_once() -> None:
    ran = threading.Event()
    with cleanup.held():
        cleanup.hold_from_now()
        t = threading.Thread(target=cleanup.defer, args=(ran.set,))
        t.start()
        t.join()
        assert ran.wait(5)  # held is per thread: the pool's thread is not held back by a run


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a container with a cgroup)")
@pytest.mark.usefixtures("host_clean")
def test_a_runs_clean_up_is_queued_before_the_next_runs_preparation_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's end (reaping, the holder, the cgroup, its network address) is queued before the pool's thread starts
    on the next run (which may reserve an address on the same network)."""
    from pycontainer_magics.runtime import ContainerSpec, run
    from pycontainer_magics.runtime.pool import pool

    order: list[str] = []
    real_queue, real_prefetch = cleanup._queue, pool.prefetch_later  # (the run's end hands over its next recipe)
    monkeypatch.setattr(cleanup, "_queue", lambda task: (order.append("clean-up"), real_queue(task)))
    monkeypatch.setattr(pool, "prefetch_later", lambda *a, **k: (order.append("prepare"), real_prefetch(*a, **k)))
    r = run(ContainerSpec(command=("true",), memory=64 * 2**20))
    assert r.exit_code == 0
    assert "clean-up" in order and "prepare" in order and order.index("prepare") > order.index("clean-up"), order
    assert order[order.index("prepare"):].count("clean-up") == 0, order  # nothing of this run's end after it
    cleanup.settle()
    pool.drain()


def test_started_by_hands_a_runs_background_work_to_its_starter() -> None:
    """Within started_by(), what flush() starts (the clean-up it queues, the steps after: the next run's preparation)
    waits for the starter's call; once, whoever calls first: the starter, start_waiting() (the next run, a drain, the
    exit) or settle()."""
    ran: list[str] = []
    handed: list = []  # type: ignore[type-arg]
    with cleanup.held():
        cleanup.hold_from_now()
        cleanup.defer(lambda: ran.append("clean-up"))
        with cleanup.started_by(handed.append):
            cleanup.flush([lambda: ran.append("prepare")])
    assert len(handed) == 1 and _still(ran, [])
    handed[0]()
    handed[0]()
    cleanup.settle()
    assert ran == ["prepare", "clean-up"] or ran == ["clean-up", "prepare"]
    assert ran.count("prepare") == 1 and ran.count("clean-up") == 1

    ran.clear()
    with cleanup.started_by(handed.append):
        cleanup.flush([lambda: ran.append("prepare")])
    assert ran == []
    cleanup.start_waiting()  # (the starter never called: a kernel that did not turn its loop again)
    assert ran == ["prepare"]
    handed[-1]()
    assert ran == ["prepare"]
    with cleanup.started_by(handed.append):
        cleanup.flush([lambda: ran.append("again")])
    cleanup.settle()
    assert ran == ["prepare", "again"]
