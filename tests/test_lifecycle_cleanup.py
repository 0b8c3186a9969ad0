"""lab/lifecycle.py: the OCI lifecycle side by side (notebook 06) leaves nothing behind, whatever happens —
steps walked to the end, a step that fails, a kernel killed mid-lifecycle as nbval kills it (SIGKILL to
the kernel's process group) while both runtimes' containers are running.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import wait_for  # type: ignore[import-not-found]

from pycontainer_magics.lab.lifecycle import Lifecycle, StepError
from pycontainer_magics.linux import proc

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (OCI containers with cgroups)"),
              pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed (apt-get install runc)")]

PAYLOAD = ["sh", "-c", "trap 'exit 3' TERM; while :; do sleep 0.05; done"]


def make_bundle(work: Path) -> tuple[str, dict[str, list[str]]]:
    """A busybox bundle whose PID 1 loops until TERM (notebook 06's), and both runtimes' argv prefixes."""
    from pycontainer_magics.oci.bundle import config_for
    from pycontainer_magics.runtime import ContainerSpec

    rootfs = work / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", rootfs / "bin" / "busybox")
    for applet in ("sh", "sleep"):
        os.symlink("busybox", rootfs / "bin" / applet)
    cfg = config_for(ContainerSpec(command=("true",), memory=64 * 2**20, pids_limit=32, rootfs=str(rootfs)),
                     str(rootfs))
    cfg["process"]["args"] = PAYLOAD
    bundle = work / "life"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(cfg))
    pycontainer = os.path.join(os.path.dirname(sys.executable), "pycontainer")
    return str(bundle), {"pycontainer": [pycontainer, "--root", str(work / "state-ours")],
                         "runc": ["runc", "--root", str(work / "state-runc")]}


def test_the_steps_and_nothing_left(tmp_path: Path) -> None:
    bundle, runtimes = make_bundle(tmp_path)
    with Lifecycle(bundle, runtimes) as lc:
        rows = lc.walk("pycontainer") + lc.walk("runc")
        guard = lc.guard_pid
    assert [(r.runtime, r.step, r.status, r.pid > 0) for r in rows] == [
        (rt, step, status, has_pid) for rt in ("pycontainer", "runc")
        for step, status, has_pid in (("create", "created", True), ("start", "running", True),
                                      ("kill", "stopped", False))]
    assert lc.leftovers() == []
    assert guard is not None and not proc.alive(guard)  # dismissed, and reaped


def test_a_failing_cell_mid_lifecycle_leaves_nothing(tmp_path: Path) -> None:
    bundle, runtimes = make_bundle(tmp_path)
    pids = []
    with pytest.raises(StepError, match="runc start"), Lifecycle(bundle, runtimes) as lc:
        for name in runtimes:
            lc.command(name, "create", "--bundle", bundle, lc.cid)
            pids.append(int(lc.state(name)["pid"]))  # type: ignore[call-overload]
        lc.command("pycontainer", "start", lc.cid)
        lc.command("runc", "start", "no-such-container")  # fails: the block ends with both containers up
    assert len(pids) == 2 and all(p > 0 for p in pids)
    assert not any(proc.alive(p) for p in pids)
    assert lc.leftovers() == []


def test_a_killed_kernel_mid_lifecycle_leaves_nothing(tmp_path: Path) -> None:
    """The kernel runs create and start under both runtimes, then is killed as nbval kills it: the guard
    deletes both containers (their PID 1s end) and removes their cgroup directories."""
    from jupyter_client.manager import KernelManager

    bundle, runtimes = make_bundle(tmp_path)
    code = textwrap.dedent(f"""\
        import json
        from pycontainer_magics.lab.lifecycle import Lifecycle
        lc = Lifecycle({bundle!r}, {runtimes!r})
        for name in lc.runtimes:
            lc.command(name, 'create', '--bundle', {bundle!r}, lc.cid)
            lc.command(name, 'start', lc.cid)
        print('LIFE', json.dumps({{'pids': [lc.state(n)['pid'] for n in lc.runtimes], 'guard': lc.guard_pid,
                                   'cgroups': lc.cgroup_dirs}}))
        """)
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env=dict(os.environ), cwd=str(tmp_path))
    out: list[str] = []
    try:
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=120)
        reply = kc.execute_interactive(code, timeout=120, output_hook=lambda m: out.append(
            m["content"].get("text", "") if m["msg_type"] == "stream" else ""))
        assert reply["content"]["status"] == "ok", reply["content"]
        kc.stop_channels()
    finally:
        km.shutdown_kernel(now=True)  # SIGKILL to the kernel's process group, as nbval does
    life = json.loads("".join(out).split("LIFE ", 1)[1])
    pids, guard, cgroups = life["pids"], life["guard"], life["cgroups"]
    assert len(pids) == 2 and all(p > 0 for p in pids), life
    assert wait_for(lambda: not proc.alive(guard), timeout=60), "the guard did not finish its clean-up"
    alive = [p for p in pids if proc.alive(p)]
    assert not alive, f"containers' PID 1 still running after the kernel died: {alive}"
    left = [d for d in cgroups if os.path.isdir(d)]
    assert not left, f"cgroup directories left: {left}"
    for argv in runtimes.values():
        listed = subprocess.run([*argv, "list", "-q"], capture_output=True, text=True).stdout.split()
        assert "demo" not in listed, (argv[0], listed)


def test_the_guard_is_out_of_the_callers_process_group(tmp_path: Path) -> None:
    """A kill of the caller's process group (the kernel's) must miss the guard."""
    bundle, runtimes = make_bundle(tmp_path)
    with Lifecycle(bundle, runtimes) as lc:
        assert lc.guard_pid is not None
        assert os.getpgid(lc.guard_pid) != os.getpgid(0) and os.getsid(lc.guard_pid) == lc.guard_pid
