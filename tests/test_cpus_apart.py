"""PID 1 of a Python cell started on another CPU than its caller's, then given its CPUs back (linux/cpus_apart.py)."""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable

import pytest
from helpers import host_clean  # noqa: F401

from pycontainer_magics.linux.cpus_apart import CpusApart

two_cpus = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")


def _cpus_allowed(pid: int) -> set[int]:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("Cpus_allowed_list:"):
            out: set[int] = set()
            for part in line.split(":", 1)[1].strip().split(","):
                a, _, b = part.partition("-")
                out.update(range(int(a), int(b or a) + 1))
            return out
    raise AssertionError("no Cpus_allowed_list")


def _cpus() -> str:
    return repr(sorted(os.sched_getaffinity(0)))


def _fork(child: object, then: Callable[[], str] = _cpus) -> tuple[int, int]:
    """A child that runs `child()` and writes to a pipe what it raised, else what `then()` says (its CPUs); (pid, the
    pipe's read end)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            try:
                child()  # type: ignore[operator]
                said = then()
            except BaseException as e:  # noqa: BLE001
                said = f"{type(e).__name__}: {e}"
            os.write(w, said.encode())
        finally:
            os._exit(0)
    os.close(w)
    return pid, r


def _result(pid: int, r: int) -> str:
    data = os.read(r, 4096).decode()
    os.close(r)
    os.waitpid(pid, 0)
    return data


@two_cpus
def test_the_parent_puts_the_child_on_the_cpus_but_its_own() -> None:
    """Before the child takes them back, it may use every CPU of its parent's but one."""
    ours = os.sched_getaffinity(0)
    apart = CpusApart()
    hold_r, hold_w = os.pipe()
    pid, r = _fork(lambda: os.read(hold_r, 1))  # (does not take its CPUs back: the parent's move is seen)
    try:
        apart.parent(pid)
        moved = _cpus_allowed(pid)
        assert moved < ours and len(moved) == len(ours) - 1, (moved, ours)
    finally:
        os.write(hold_w, b"x")
        _result(pid, r)
        for fd in (hold_r, hold_w):
            os.close(fd)
    assert apart.fds is None  # (the parent's ends closed)


@two_cpus
def test_the_child_takes_its_cpus_back_only_after_the_parent_moved_it() -> None:
    """The child that runs first waits for the parent's move: taken back before it, the move would stay for good."""
    ours = os.sched_getaffinity(0)
    apart = CpusApart()
    done_r, done_w = os.pipe()

    def child() -> None:
        apart.child()
        os.read(done_r, 1)  # (its CPUs read once the parent is done with it)

    pid, r = _fork(child)
    try:
        time.sleep(0.2)  # (the child has long reached its wait)
        apart.parent(pid)
    finally:
        apart.close()
        os.write(done_w, b"x")
    assert _result(pid, r) == repr(sorted(ours))
    for fd in (done_r, done_w):
        os.close(fd)


def test_a_child_whose_parent_gave_up_does_not_go_on() -> None:
    """No word (the fork's caller gave up, or died): the child raises, and nothing of the cell's runs."""
    apart = CpusApart()
    pid, r = _fork(apart.child, lambda: "went on")
    apart.close()  # (the fork's caller gave up before its word)
    assert _result(pid, r) == "OSFailure: its caller went away or gave up before it could start"


def test_the_child_waits_for_the_parents_step_before_it_goes_on() -> None:
    """before_go runs after the move and before the word: the child is still waiting while it runs."""
    apart = CpusApart(gate=True)
    pid, r = _fork(apart.child, lambda: "went on")
    seen: list[str] = []

    def step() -> None:
        time.sleep(0.2)  # (the child has long reached its wait)
        seen.append("answered early" if select.select([r], [], [], 0)[0] else "still waiting")

    apart.parent(pid, step)
    assert seen == ["still waiting"]
    assert _result(pid, r) == "went on"


def test_a_parent_whose_step_fails_raises_and_its_child_does_not_go_on() -> None:
    apart = CpusApart(gate=True)
    pid, r = _fork(apart.child, lambda: "went on")

    def step() -> None:
        raise OSError(5, "the bound could not be set")

    with pytest.raises(OSError, match="the bound could not be set"):
        apart.parent(pid, step)
    assert apart.fds is not None  # (kept open: the caller ends the child first, then closes them)
    apart.close()
    assert _result(pid, r) == "OSFailure: its caller went away or gave up before it could start"


@two_cpus
def test_nothing_is_made_for_a_caller_on_one_cpu() -> None:
    ours = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(ours)})
    try:
        apart = CpusApart()
        assert apart.fds is None
        pid, r = _fork(apart.child)
        apart.parent(pid)
        assert _result(pid, r) == repr([min(ours)])
        # A parent with a step to make before the child goes on: the pipe is made, the child waits for it.
        apart = CpusApart(gate=True)
        assert apart.fds is not None
        steps: list[int] = []
        pid, r = _fork(apart.child)
        apart.parent(pid, lambda: steps.append(1))
        assert steps == [1] and _result(pid, r) == repr([min(ours)])
    finally:
        os.sched_setaffinity(0, ours)


@two_cpus
@pytest.mark.root
@pytest.mark.usefixtures("host_clean")
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a cgroup)")
def test_a_child_in_a_cpuset_of_none_of_its_callers_cpus_runs_on_the_cpusets() -> None:
    """The set taken back shares no CPU with the cell's cpuset (a caller kept to other CPUs than the cell asks for):
    the child runs on the cpuset's CPUs, as joining it gave before the move, rather than failing."""
    import importlib

    from pycontainer_magics.runtime import state
    from pycontainer_magics.runtime.parse import build_spec

    run_mod = importlib.import_module("pycontainer_magics.runtime.run")
    h = run_mod.hierarchy()
    if h is None:
        pytest.skip("no cgroup hierarchy here")
    ours = sorted(os.sched_getaffinity(0))
    cg = h.create(state.new_id(), run_mod._limits(build_spec(python_code="pass", cpuset_cpus=str(ours[-1]))))
    try:
        join = cg.join_fds()
        apart = CpusApart()
        apart.cpus = {ours[0]}  # (what the caller had: none of the cpuset's)

        def child() -> None:
            for fd in join:
                os.write(fd, b"0")
            apart.child()

        pid, r = _fork(child)
        for fd in join:
            os.close(fd)
        apart.parent(pid)
        assert _result(pid, r) == repr([ours[-1]])
    finally:
        cg.remove()
