"""A PID 1 parked ahead (holder.py `_park`) that no run takes is reaped by its holder, not left a zombie for
whoever adopts it: an init that reaps late kept it counted in its cgroup's pids, and a kernel that is PID 1 of its
own container (jupyter started without an init) never reaps it."""

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
