"""bench/work.py: the work a run does (page faults, CPU time) and what a page fault costs, counted for real."""

from __future__ import annotations

import importlib.util
import mmap
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import host_clean  # noqa: F401 - fixture

_WORK = Path(__file__).resolve().parent.parent / "bench" / "work.py"
_spec = importlib.util.spec_from_file_location("bench_work", _WORK)
assert _spec is not None and _spec.loader is not None
work = importlib.util.module_from_spec(_spec)  # (by path: bench/ on sys.path would shadow packages by its names)
_spec.loader.exec_module(work)

_spec = importlib.util.spec_from_file_location("bench_main", _WORK.parent / "bench.py")
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

PAGES = 400


def _touch_fresh() -> None:
    buf = mmap.mmap(-1, PAGES * mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    buf.madvise(mmap.MADV_NOHUGEPAGE)
    for i in range(0, PAGES * mmap.PAGESIZE, mmap.PAGESIZE):
        buf[i] = 1
    buf.close()


def _child_touches() -> None:
    code = (f"import mmap\nb = mmap.mmap(-1, {PAGES} * mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)\n"
            f"b.madvise(mmap.MADV_NOHUGEPAGE)\n"
            f"for i in range(0, {PAGES} * mmap.PAGESIZE, mmap.PAGESIZE): b[i] = 1\n")
    subprocess.run([sys.executable, "-S", "-c", code], check=True)


def test_faults_of_this_process_and_of_the_children_it_reaped_are_counted() -> None:
    tools = {"touch": _touch_fresh, "nothing": lambda: None, "child": _child_touches}
    per_run = work.work_per_run(tools, 0.0, bench.rounds_in_order(list(tools), 3))
    assert per_run["touch"]["faults_self"] >= PAGES
    assert per_run["nothing"]["faults"] < PAGES / 4
    # a process we ran and reaped: its faults (its own pages, and the interpreter's start) are the run's
    assert per_run["child"]["faults_children"] >= PAGES
    assert per_run["child"]["cpu_ms"] > 0
    assert all(w["n"] == 3 for w in per_run.values())


def test_a_process_counts_are_read_from_proc() -> None:
    subprocess.run(["true"], check=True)  # (a reaped child: its faults in our cminflt)
    got = work.proc_stat(os.getpid())
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    assert got is not None
    faults, cpu = got
    assert kids.ru_minflt > 0
    assert abs(faults - (own.ru_minflt + kids.ru_minflt)) < 50  # (this code's own faults in between)
    assert abs(cpu - (own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime)) < 0.05  # (in clock ticks)
    assert work.proc_stat(2**22 + 1) is None  # (above pid_max's ceiling: no such process)


def test_each_page_cost_is_measured_on_a_fault_of_its_kind() -> None:
    costs = work.machine_costs(pages=1024, repeats=3)
    # one fault per page in each measured loop and none in the plain one (a shared mapping, say, would take none
    # after the fork: no copies), so each figure is a fault's cost with the loop's own taken off
    for kind in ("first_touch", "cow_copy", "reuse_after_fork"):
        assert 0.95 <= costs[f"{kind}_faults_per_page"] <= 1.1, (kind, costs)
    assert costs["plain_faults_per_page"] < 0.05
    # a copy allocates and fills a page; a write after the child is gone only takes the fault
    assert costs["cow_copy_us"] > costs["reuse_after_fork_us"] > 0
    assert costs["fork_ms"] > 0
    assert costs["anon_mib"] > 1


@pytest.mark.root
@pytest.mark.usefixtures("host_clean")
def test_a_python_cell_counts_its_pid1_and_the_helper() -> None:
    """A Python cell's PID 1 is reaped in the background and its holder by the launch helper: both are counted
    once the round's background work has settled (without them a cell would look like a few hundred faults)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    from pycontainer_magics.runtime import ContainerSpec, run

    spec = ContainerSpec(python_code="pass", memory=64 * 2**20, pids_limit=64)
    # "nothing" right after the cell in every round (the cyclic order of two): what the cell left would be counted there
    per_run = work.work_per_run({"cell": lambda: run(spec, python_globals={}), "nothing": lambda: None}, 0.0,
                                ((r, ["cell", "nothing"]) for r in range(-2, 6)))
    assert work._helper_pids(), "the launch helper was not started by a Python cell"
    cell = per_run["cell"]
    assert cell["n"] == 6
    # with no idle gap, the cell's background work (its holder's exit and reaping, the next one made) is still its
    # own: none of it lands in the round after it
    assert per_run["nothing"]["faults_helper"] == 0 and per_run["nothing"]["faults_children"] == 0, per_run
    # PID 1, reaped in the background: hundreds of copy-on-write faults (CPython's after-fork code writes the
    # pages it reads); the holder, made and reaped by the helper; the caller's own writes after the fork
    assert cell["faults_children"] > 200
    assert cell["faults_helper"] > 100
    assert cell["faults_self"] > 100


@pytest.mark.root
@pytest.mark.usefixtures("host_clean")
def test_settle_waits_for_what_a_run_left_to_the_background() -> None:
    """Right after run() returns its clean-up, the next run's preparation and the old holder's exit are under way:
    settle() returns once all are done (the next holder made, asleep; none of the helper's children exiting; the helper
    back asleep)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    from pycontainer_magics.runtime import ContainerSpec, run
    from pycontainer_magics.runtime.pool import pool

    cell = ContainerSpec(python_code="pass", memory=64 * 2**20, pids_limit=64)
    command = ContainerSpec(command=("/bin/true",), memory=64 * 2**20, pids_limit=64)
    for spec in (cell, command) * 4:  # (a holder let go takes a few ms to exit: about every other run here)
        run(spec, python_globals={} if spec is cell else None)
        work.settle()
        assert not pool._busy and not pool._wanted
        assert not any(work._busy(pid) for pid in work._helper_pids())
        assert pool.ready_holder() is not None
    pool.drain()


def _commonest_predecessor_share(orders: list[tuple[int, list[str]]]) -> dict[str, float]:
    """For each tool, the share of its runs that came after the tool it most often came after."""
    seen: dict[str, list[str]] = {}
    prev = None
    for _, order in orders:
        for name in order:
            if prev is not None:
                seen.setdefault(name, []).append(prev)
            prev = name
    return {n: max(p.count(x) for x in p) / len(p) for n, p in seen.items()}


def test_shuffled_each_tool_follows_any_other(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a run leaves behind (a fork of the bench's process, a helper's work) falls on the one after it: in the
    cyclic order a tool comes after the same one nearly always; shuffled (--shuffle) after any of the others."""
    names = [f"tool{i}" for i in range(8)]
    cyclic = list(bench.rounds_in_order(names, 40))
    assert min(_commonest_predecessor_share(cyclic).values()) > 0.8
    monkeypatch.setattr(bench, "SHUFFLED", True)
    orders = list(bench.rounds_in_order(names, 40))
    for got in (cyclic, orders):
        assert [r for r, _ in got] == list(range(-2, 40))
        assert all(sorted(order) == names for _, order in got)
    assert orders == list(bench.rounds_in_order(names, 40))  # (seeded: every run the same orders)
    assert max(_commonest_predecessor_share(orders).values()) < 0.5
