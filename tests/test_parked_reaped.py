"""A PID 1 parked ahead (holder.py `_park`) and the cgroup it waits in, at the edges (review of the per-kind pool):
one no run takes is reaped by its holder, not left a zombie for whoever adopts it (an init that reaps late kept it
counted in its cgroup's pids; a kernel that is PID 1 of its own container never reaps it); a run that cannot take
it does not keep its cgroup; a run does not let go a holder whose cgroup another run took; release() right after a
run waits for what a preparation under way made, and stops the launch helper."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from helpers import host_clean  # noqa: F401

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("host_clean"),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (pooled holders)")]

# Run in a process of its own that adopts orphans (a child subreaper): a parked PID 1 its holder left behind
# becomes that process's child, and waitpid finds it.
SCRIPT = textwrap.dedent("""
    import os, sys, time
    from pycontainer_magics.linux.libc import prctl
    prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
    from pycontainer_magics.linux.proc import alive, children
    from pycontainer_magics.runtime import ContainerSpec, run
    from pycontainer_magics.runtime.pool import COMMAND, pool, release

    spec = ContainerSpec(command=("true",), memory=64 << 20)
    assert run(spec).exit_code == 0 and run(spec).exit_code == 0
    deadline = time.monotonic() + 30
    while True:  # the holder kept for the next command, with its PID 1 parked
        h = pool.holders().get((None, COMMAND))
        if h is not None and h.parked is not None and len(children(h.pid)) == 1:
            break
        assert time.monotonic() < deadline, "no PID 1 was parked"
        time.sleep(0.01)
    holder, parked = h.pid, children(h.pid)[0]
    release()  # the holder goes (as at %unload_ext), its PID 1 unused
    while alive(holder):
        assert time.monotonic() < deadline, "the holder did not exit"
        time.sleep(0.01)
    while True:
        try:
            pid, _ = os.waitpid(parked, os.WNOHANG)
        except ChildProcessError:
            print("reaped by its holder")
            break
        if pid:
            print("left to its adopter")
            break
        assert time.monotonic() < deadline, "the parked PID 1 is still running"
        time.sleep(0.01)
""")


def test_a_parked_pid1_nobody_takes_is_reaped_by_its_holder(tmp_path) -> None:
    env = {**os.environ, "PYCONTAINER_STATE_DIR": str(tmp_path / "state"), "PYCONTAINER_RUN_DIR": str(tmp_path / "run")}
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "reaped by its holder"


def _parked_holder():  # type: ignore[no-untyped-def]
    from pycontainer_magics.linux.proc import children
    from pycontainer_magics.runtime.pool import COMMAND, pool

    h = pool.holders().get((None, COMMAND))
    return h if h is not None and h.parked is not None and len(children(h.pid)) == 1 else None


def test_a_command_of_another_plan_does_not_run_in_the_cgroup_a_pid1_waits_in() -> None:
    # --share uts (like --time offsets) is in the holder's plan, not in the park key: such a run cannot take the
    # parked PID 1, whose holder it lets go — it must not keep that PID 1's cgroup either (the dying PID 1 counted
    # in its pids: 'Cannot fork' under a small --pids-limit).
    from helpers import wait_for

    from pycontainer_magics.runtime import ContainerSpec, run
    from pycontainer_magics.runtime.pool import pool

    pool.drain()
    limits = {"memory": 256 * 2**20, "pids_limit": 3}
    for _ in range(2):
        assert run(ContainerSpec(command=("true",), **limits)).exit_code == 0  # type: ignore[arg-type]
    assert wait_for(lambda: _parked_holder() is not None, 30)
    waited_in = _parked_holder().parked_cgroup
    r = run(ContainerSpec(command=("sh", "-c", "true | true"), share=frozenset({"uts"}), **limits))  # type: ignore[arg-type]
    assert r.exit_code == 0, r.stderr
    assert r.id != waited_in
    pool.drain()


def test_release_right_after_a_run_stops_the_launch_helper(monkeypatch) -> None:
    # release() (%unload_ext) waits for a preparation under way; the holder it made is let go too, and waited for:
    # the helper must not be kept "for a background container" that is that holder.
    import time

    from pycontainer_magics.runtime import ContainerSpec, run
    from pycontainer_magics.runtime.pool import release
    from pycontainer_magics.runtime.zygote import Zygote, zygote

    slow = Zygote.prepare_premounted

    def prepare_slowly(self, *a, **kw):  # type: ignore[no-untyped-def]
        time.sleep(0.2)  # the next cell's holder is still being made when release() comes
        return slow(self, *a, **kw)

    monkeypatch.setattr(Zygote, "prepare_premounted", prepare_slowly)
    assert run(ContainerSpec(command=("true",), memory=64 * 2**20)).exit_code == 0
    assert release() == []
    assert not zygote().alive()


def test_a_run_leaves_the_holder_whose_pid1_cgroup_another_run_took() -> None:
    # Two runs of one spec at once (compose starts services in threads): the one handed the cgroup a PID 1 waits in
    # takes that PID 1's holder; the other, finding it does not fit, must leave it — not let it go (its PID 1 dying in
    # the first one's cgroup).
    import importlib

    from helpers import wait_for

    from pycontainer_magics.linux.proc import alive
    from pycontainer_magics.runtime import ContainerSpec, run
    from pycontainer_magics.runtime.pool import pool

    R = importlib.import_module("pycontainer_magics.runtime.run")
    pool.drain()
    spec = ContainerSpec(command=("true",), memory=64 * 2**20)
    for _ in range(2):
        assert run(spec).exit_code == 0
    assert wait_for(lambda: _parked_holder() is not None, 30)
    holder = _parked_holder()
    claimed = pool.take_cgroup(R.hierarchy(), R._limits(spec), parkable=True)  # the first run, up to here
    try:
        assert claimed.name == holder.parked_cgroup
        assert run(spec).exit_code == 0  # the second, meanwhile
        assert alive(holder.pid) and _parked_holder() is holder
    finally:
        pool.drain()
        claimed.remove()
