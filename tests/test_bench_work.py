"""bench/work.py: the work a run does (page faults, CPU time) and what a page fault costs, counted for real."""

from __future__ import annotations

import mmap
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import work  # noqa: E402

PAGES = 400


def _touch_fresh() -> None:
    buf = mmap.mmap(-1, PAGES * mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    for i in range(0, PAGES * mmap.PAGESIZE, mmap.PAGESIZE):
        buf[i] = 1
    buf.close()


def _child_touches() -> None:
    code = (f"import mmap\nb = mmap.mmap(-1, {PAGES} * mmap.PAGESIZE)\n"
            f"for i in range(0, {PAGES} * mmap.PAGESIZE, mmap.PAGESIZE): b[i] = 1\n")
    subprocess.run([sys.executable, "-S", "-c", code], check=True)


def test_faults_of_this_process_and_of_the_children_it_reaped_are_counted() -> None:
    per_run = work.work_per_run({"touch": _touch_fresh, "nothing": lambda: None, "child": _child_touches},
                                rounds=3, idle=0.0)
    assert per_run["touch"]["faults"] >= PAGES
    assert per_run["nothing"]["faults"] < PAGES / 4
    # a process we ran and reaped: its faults (its own pages, and the interpreter's start) are the run's
    assert per_run["child"]["faults"] >= PAGES
    assert per_run["child"]["cpu_ms"] > 0
    assert all(w["n"] == 3 for w in per_run.values())


def test_a_copy_on_write_copy_costs_more_than_the_write_itself() -> None:
    costs = work.machine_costs(pages=256, repeats=3)
    # each is the fault's own cost (the write loop's taken off): a copy allocates and fills a page, a first touch
    # zeroes one, a write after the child is gone only takes the fault (the page is ours alone again)
    assert costs["cow_copy_us"] > 0.2
    assert costs["cow_copy_us"] > costs["reuse_after_fork_us"] > 0
    assert costs["first_touch_us"] > 0.2
    assert costs["fork_ms"] > 0
    assert costs["anon_mib"] > 1


@pytest.mark.root
def test_a_python_cell_counts_its_pid1_and_the_helper(tmp_path: Path) -> None:
    """A Python cell's PID 1 is reaped in the background and its holder by the launch helper: both are counted
    once the round's clean-up has settled (without them a cell would look like a few hundred faults)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    from pycontainer_magics.runtime import ContainerSpec, run

    spec = ContainerSpec(python_code="pass", memory=64 * 2**20, pids_limit=64)
    per_run = work.work_per_run({"cell": lambda: run(spec, python_globals={})}, rounds=3, idle=0.05)
    assert work._helper_pids(), "the launch helper was not started by a Python cell"
    cell = per_run["cell"]
    assert cell["n"] == 3
    # PID 1, reaped in the background: hundreds of copy-on-write faults (CPython's after-fork code writes the
    # pages it reads); the holder, made and reaped by the helper; the caller's own writes after the fork
    assert cell["faults_children"] > 200
    assert cell["faults_helper"] > 100
    assert cell["faults_self"] > 100
    assert cell["faults"] == pytest.approx(cell["faults_self"] + cell["faults_children"] + cell["faults_helper"])
