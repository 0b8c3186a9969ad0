"""Clean-up, in two kinds.

In the background: what need not hold up a cell (reaping processes whose memory the kernel is still
tearing down, removing their cgroups) runs in a thread; `settle()` waits for all of it (tests, the CLI
before it exits, and the interpreter at exit).

At exit: one registry (`at_exit(fn, phase)`) instead of scattered atexit hooks, run by one atexit hook in
a fixed order of phases, so what uses a thing goes before the thing (a compose project's containers
before its networks, every container before the pool's drain and the parent cgroup). Within a phase the
last registered runs first, as with atexit. Registering the same function twice registers it once; a
failing step never stops the next.
"""

from __future__ import annotations

import atexit
import contextlib
import queue
import threading
from collections.abc import Callable, Iterator, Sequence

_tasks: queue.Queue[Callable[[], object]] = queue.Queue()
_thread: threading.Thread | None = None
_lock = threading.Lock()
_held = threading.local()  # .tasks: what this thread deferred inside held(), not yet queued


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
    tasks: list[Callable[[], object]] | None = getattr(_held, "tasks", None)
    if tasks is not None:
        tasks.append(task)
        return
    _queue(task)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """A run's end (run() is one): what this thread defers inside, from hold_from_now() on, is queued when it
    leaves (also on an exception); what it deferred before that was queued at once. Queued at once, each task of the
    run's end woke the clean-up thread, which took the interpreter from the run at its next system call (reading the
    cgroup's counters, say) while the run still had work to do. A region inside another (a pod's infra container
    started by a run) hands what it held to the outer one's holding, or queues it."""
    saved = getattr(_held, "region", False), getattr(_held, "tasks", None)
    _held.region, _held.tasks = True, None
    try:
        yield
    finally:
        tasks = _held.tasks
        _held.region, _held.tasks = saved
        if tasks:
            defer(_batch(tasks))  # (one put: an interrupt cannot leave some of them unqueued)


def hold_from_now() -> None:
    """Inside held(): what this thread defers from now on waits for the region's end (a run: once its container
    has ended). Not before: a run's earlier clean-up (a cgroup given up, a holder discarded) is not kept waiting for
    a container that may run for hours."""
    if getattr(_held, "region", False) and getattr(_held, "tasks", None) is None:
        _held.tasks = []


def _queue(task: Callable[[], object]) -> None:
    global _thread
    with _lock:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_worker, name="pycontainer-cleanup", daemon=True)
            _thread.start()
    _tasks.put(task)


def _batch(tasks: list[Callable[[], object]]) -> Callable[[], object]:
    def run_all() -> None:
        for task in tasks:
            try:
                task()
            except Exception:  # noqa: BLE001 - as _worker: a failed clean-up must not stop the next one
                pass
    return run_all


def flush(then: Sequence[Callable[[], object]] = ()) -> None:
    """Queue what this thread holds (it goes on holding what it defers later), then call `then` (what a run starts
    in the background as it returns: the next run's preparation) — now, or as this thread's starter says
    (started_by)."""
    tasks: list[Callable[[], object]] | None = getattr(_held, "tasks", None)
    if tasks:
        _held.tasks = []
    if not tasks and not then:
        return

    def go() -> None:
        if tasks:
            _queue(_batch(tasks))
        for step in then:
            step()

    start = getattr(_later, "start", None)
    if start is None:
        go()
        return
    once = _Once(go)
    with _waiting_lock:
        _waiting.append(once)
    start(once)


def settle() -> None:
    """Wait until every deferred clean-up has run: what was queued, what this thread holds (queued now) and what
    waits for a starter (started now). What another thread's run holds is queued when that run returns."""
    flush()
    start_waiting()
    _tasks.join()


# -- after the caller's reply ----------------------------------------------------------------------------

_later = threading.local()  # .start: this thread's starter (started_by)
_waiting: list[_Once] = []  # handed to a starter, not started yet
_waiting_lock = threading.Lock()


class _Once:
    """Work handed to a starter: done once, by the starter or by start_waiting(), whichever comes first."""

    def __init__(self, work: Callable[[], None]) -> None:
        self._work: Callable[[], None] | None = work

    def __call__(self) -> None:
        with _waiting_lock:
            work, self._work = self._work, None
            if self in _waiting:
                _waiting.remove(self)
        if work is not None:
            work()


@contextlib.contextmanager
def started_by(start: Callable[[Callable[[], None]], None]) -> Iterator[None]:
    """Within, what a run of this thread leaves to the background as it returns (flush: its clean-up queued, the next
    run's preparation started) is handed to `start`, to be called once the caller has done what it was waiting to
    do: a notebook kernel's magic calls it once the kernel has sent the cell's reply (the background work took the
    interpreter from that reply: 1.5 ms of a Python cell's round trip). What a starter has not started yet is
    started by the next run, settle() and the exit."""
    saved = getattr(_later, "start", None)
    _later.start = start
    try:
        yield
    finally:
        _later.start = saved


def start_waiting() -> None:
    """Start now what waits for a starter."""
    if _waiting:
        with _waiting_lock:
            waiting = list(_waiting)
        for once in waiting:
            try:
                once()
            except Exception:  # noqa: BLE001 - background work: its failure must not stop a run, a drain or the exit
                pass


# -- at exit -------------------------------------------------------------------------------------------

# The phases, in the order they run.
WAITING = 5  # what waits for a starter (started_by) starts: a clean-up, a preparation the pool's drain then ends
WORKLOADS = 10  # compose projects down, detached containers stopped, pods removed
GROUPS = 20  # the named cgroups %cgroup made
NETWORKS = 30  # the networks this process made (after every container has left them)
POOL = 40  # what was prepared ahead of time: holders and their cgroups
SETTLE = 50  # the background clean-up finishes
PARENT = 60  # the project's parent cgroup, when no other process has containers under it


class ExitRegistry:
    def __init__(self) -> None:
        self._steps: list[tuple[int, int, Callable[[], object]]] = []
        self._count = 0
        self._lock = threading.Lock()

    def add(self, fn: Callable[[], object], phase: int) -> None:
        with self._lock:
            if any(f == fn and p == phase for p, _, f in self._steps):
                return
            self._count += 1
            self._steps.append((phase, self._count, fn))

    def run(self) -> None:
        """Run every step once, phase by phase (last registered first within a phase)."""
        with self._lock:
            steps, self._steps = sorted(self._steps, key=lambda s: (s[0], -s[1])), []
        for _phase, _n, fn in steps:
            try:
                fn()
            except Exception:  # noqa: BLE001 - clean up the rest regardless
                pass


_registry = ExitRegistry()
at_exit = _registry.add
atexit.register(_registry.run)
at_exit(settle, SETTLE)
at_exit(start_waiting, WAITING)


__all__ = ["GROUPS", "NETWORKS", "PARENT", "POOL", "SETTLE", "WAITING", "WORKLOADS", "ExitRegistry", "at_exit",
           "defer", "settle", "start_waiting", "started_by"]
