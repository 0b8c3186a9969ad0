"""The processes a run relies on live as long as the caller, not as long as the thread that happened to start them
(linux/lifelong.py); and a run whose holder is killed says so."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from helpers import host_clean  # noqa: F401

from pycontainer_magics.runtime import ContainerSpec, run

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("host_clean"),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

FIRST_RUN_IN_A_THREAD = """
import time
from pycontainer_magics.runtime import ContainerSpec
from pycontainer_magics.workloads.containers import start
a = start(ContainerSpec(command=("sleep", "0.5")))  # the process's first run: its thread starts the launch helper
time.sleep(0.2)
b = start(ContainerSpec(command=("sleep", "3")))
a.wait(30)
rb = b.wait(30)
print(f"{rb.exit_code}|{rb.error_name}|{rb.duration:.1f}")
"""


def test_a_detached_container_outlives_the_thread_that_started_the_launch_helper(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The first run of a process is a detached container: its relay thread started the launch helper, which goes
    with the thread that started it (PR_SET_PDEATHSIG). When that container ended, its thread did, and the helper
    with it: a second detached container's holder and PID 1 were killed, its run ending with no exit code."""
    env = {**os.environ, "PYCONTAINER_STATE_DIR": str(tmp_path / "state"), "PYCONTAINER_RUN_DIR": str(tmp_path / "run")}
    out = subprocess.run([sys.executable, "-c", FIRST_RUN_IN_A_THREAD], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    code, error, duration = out.stdout.strip().split("|")
    assert (code, error) == ("0", "None") and float(duration) >= 2.5, out.stdout


def test_a_command_whose_holder_is_killed_ends_with_a_reason() -> None:
    def kill_holder(running) -> None:  # type: ignore[no-untyped-def]
        with open(f"/proc/{running.pid1}/status") as f:
            holder = int(f.read().split("PPid:")[1].split()[0])  # (a command's PID 1 is its holder's child)
        os.kill(holder, signal.SIGKILL)

    r = run(ContainerSpec(command=("sleep", "30")), on_start=kill_holder)
    assert r.exit_code is None and r.error_name == "HolderLost", (r.exit_code, r.error)
    assert "holder was killed" in (r.error or "")


def test_a_python_cell_whose_exit_status_another_reaper_took_says_so_and_blames_no_holder() -> None:
    """A Python cell's PID 1 is the caller's own child: with SIGCHLD ignored, the kernel reaps it, and its status is
    lost. The run says so (ExitStatusLost), not that a holder was killed."""
    from pycontainer_magics.magics.expect import Expectation, Outcome

    old = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        r = run(ContainerSpec(python_code="import os; os._exit(3)"), python_globals={})
    finally:
        signal.signal(signal.SIGCHLD, old)
    assert r.exit_code is None and r.error_name == "ExitStatusLost", (r.exit_code, r.error_name, r.error)
    # Not an exception of the cell's: `--expect error` (any exception) is not met by it.
    assert Expectation(error="").unmet(Outcome.of(r)) == ["the cell to raise an exception"]
