"""The runtime on the real kernel, as root: namespaces, limits, filesystem, security defaults, failure
modes and cleanup. Every test checks that the host is left as it was.

Tests marked cgroup2 run here (on whatever layout the host has) and again inside the cgroup v2 VM
(tests/vm/run-cgroup2-tests), so the runtime is proven on both cgroup versions."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import threading
import time

import pytest
from helpers import assert_clean, host_clean, make_busybox_rootfs, snapshot, wait_for  # noqa: F401

from pycontainer_magics.linux.caps import DEFAULT_CAPS, mask_of
from pycontainer_magics.runtime import (
    ContainerInterrupted,
    ContainerSpec,
    LaunchError,
    Mount,
    SpecError,
    Tmpfs,
    run,
)
from pycontainer_magics.runtime.parse import build_spec

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("host_clean"),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]
MiB = 2**20


def sh(script: str, **kw: object):
    r = run(ContainerSpec(command=("sh", "-c", script), **kw))  # type: ignore[arg-type]
    return r


def py(code: str, g: dict | None = None, **kw: object):
    return run(ContainerSpec(python_code=code, **kw), python_globals=g if g is not None else {})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def busybox(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_busybox_rootfs(str(tmp_path_factory.mktemp("busybox")))


# -- namespaces ----------------------------------------------------------------------------------------

@pytest.mark.cgroup2
def test_all_eight_namespaces_are_new() -> None:
    r = sh("true")
    assert r.exit_code == 0
    assert [n.kind for n in r.namespaces] == ["mount", "uts", "ipc", "pid", "net", "user", "cgroup", "time"]
    assert all(n.isolated for n in r.namespaces), r.namespaces


def test_shared_namespaces_are_the_hosts() -> None:
    r = sh("ls /sys/class/net", share=frozenset({"net", "ipc"}))
    iso = {n.kind: n.isolated for n in r.namespaces}
    assert iso == {"mount": True, "uts": True, "ipc": False, "pid": True, "net": False, "user": True,
                   "cgroup": True, "time": True}
    assert r.stdout.split() != ["lo"]  # the host's interfaces


@pytest.mark.cgroup2
def test_python_cell_is_pid_1_with_its_hostname_and_only_loopback() -> None:
    r = py("import os, socket\nprint(os.getpid(), socket.gethostname(), sorted(os.listdir('/sys/class/net')))",
           hostname="lab")
    assert r.stdout == "1 lab ['lo']\n", r.stderr


def test_a_python_cells_pid1_exits_at_idle_priority(monkeypatch) -> None:
    # After its report, PID 1 of a Python cell exits at SCHED_IDLE: the tear-down of its copy of the caller's
    # memory waits for a free core instead of taking one while the caller still finishes the cell.
    from pycontainer_magics.runtime import cleanup

    held: list = []
    monkeypatch.setattr(cleanup, "defer", held.append)  # PID 1 stays unreaped: its /proc/PID/stat says how it ended
    pids: list[int] = []
    try:
        r = run(ContainerSpec(python_code="import os; print(os.sched_getscheduler(0))"), python_globals={},
                on_start=lambda running: pids.append(running.pid1 or 0))
        assert (r.exit_code, r.stdout) == (0, f"{os.SCHED_OTHER}\n"), r.stderr  # the cell itself ran as usual
        (pid1,) = pids

        def stat() -> list[str]:
            with open(f"/proc/{pid1}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()  # from field 3 (state) on

        assert wait_for(lambda: stat()[0] == "Z", 30), stat()[0]
        assert int(stat()[41 - 3]) == os.SCHED_IDLE  # field 41: the scheduling policy it exited with
    finally:
        monkeypatch.undo()
        for task in held:
            task()


def test_a_python_cells_environment_is_the_callers_with_the_cells_changes(monkeypatch) -> None:
    # PID 1 applies only what differs from the environment it inherits (worked out by the caller at the fork):
    # os.environ and the C library's environment (what a subprocess of the cell gets) must both come out whole.
    monkeypatch.setenv("PCM_KEPT", "kept")
    monkeypatch.setenv("PCM_OVERRIDDEN", "old")
    code = ("import json, os, subprocess\n"
            "c = subprocess.run(['env', '-0'], capture_output=True, check=True).stdout.decode()\n"
            "print(json.dumps([dict(os.environ), dict(v.split('=', 1) for v in c.split(chr(0)) if v)]))")
    r = py(code, hostname="lab", env=(("PCM_OVERRIDDEN", "new"), ("PCM_NEW", "1")))
    assert r.exit_code == 0, r.stderr
    seen, in_c = json.loads(r.stdout)
    expected = {**os.environ, "HOSTNAME": "lab", "PCM_OVERRIDDEN": "new", "PCM_NEW": "1"}
    assert seen == expected
    assert {k: in_c.get(k) for k in expected} == expected
    # Beyond it, only what the caller's C library holds outside os.environ (LINES and COLUMNS set by a library
    # with setenv, say): a fork inherits it, and os.environ never knew it.
    ours = subprocess.run(["env", "-0"], capture_output=True, check=True).stdout.decode()
    assert set(in_c) - set(expected) <= {v.split("=", 1)[0] for v in ours.split("\0") if v} - set(os.environ)


def test_a_python_cells_pid1_has_none_of_the_callers_signal_handlers_or_blocked_signals() -> None:
    # The kernel's handlers and mask are the caller's business: PID 1 resets them (launch.reset_signals), then sets
    # only its own (SIGINT, SIGTERM, SIGHUP to end the cell cleanly; SIGPIPE ignored as in any Python).
    old = signal.signal(signal.SIGUSR1, lambda *_: None)
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    try:
        r = py("import re\nst = open('/proc/self/status').read()\n"
               "print(*(int(re.search(k + r':\\s+(\\w+)', st).group(1), 16) for k in ('SigBlk', 'SigCgt')))")
    finally:
        signal.signal(signal.SIGUSR1, old)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    assert r.exit_code == 0, r.stderr
    blk, cgt = (int(x) for x in r.stdout.split())
    assert blk == 0
    assert not cgt & 1 << (signal.SIGUSR1 - 1)
    assert cgt & 1 << (signal.SIGTERM - 1)  # (its own)


def test_python_cell_sees_a_snapshot_of_the_callers_variables() -> None:
    g = {"x": 41, "items": [1]}
    r = py("y = x + 1\nitems.append(2)\nprint(items)", g, outputs=("y",))
    assert r.stdout == "[1, 2]\n"
    assert r.outputs == {"y": 42}
    assert g["items"] == [1]  # the caller's objects are untouched


def test_a_python_cells_annotations_are_its_own_not_the_librarys() -> None:
    # compile() inherits the future flags of the code calling it: launch.py's `from __future__ import annotations`
    # made every annotation in a cell a string, unlike the same cell in IPython or a script. Both ways a cell is
    # compiled: by the caller ahead, and by PID 1 (a cell longer than COMPILED_AHEAD_MAX).
    from pycontainer_magics.runtime import launch
    cell = "def f(a: int) -> None: pass\nprint(f.__annotations__['a'] is int)\n"
    for source in (cell, cell + "#" * launch.COMPILED_AHEAD_MAX):
        r = py(source)
        assert (r.exit_code, r.stdout) == (0, "True\n"), (r.stdout, r.error)
    r = py("from __future__ import annotations\n" + cell)  # (the cell's own future import still counts)
    assert (r.exit_code, r.stdout) == (0, "False\n"), (r.stdout, r.error)


def test_ipc_namespace_hides_host_shared_memory() -> None:
    r = sh("ls /dev/shm | wc -l; cat /proc/sysvipc/shm | wc -l")
    assert r.stdout.split() == ["0", "1"]


def test_user_namespace_default_maps_root_to_root() -> None:
    r = sh("cat /proc/self/uid_map; id -u")
    assert r.stdout.split() == ["0", "0", "4294967295", "0"]


@pytest.mark.cgroup2
def test_userns_remap_makes_container_root_unprivileged_on_the_host() -> None:
    r = sh("cat /proc/self/uid_map; id -u; touch /etc/pcm-test 2>&1 || echo denied", userns="remap")
    fields = r.stdout.split()
    assert fields[:3] == ["0", "100000", "65536"] and fields[3] == "0"
    assert r.stdout.strip().endswith("denied")


@pytest.mark.cgroup2
def test_time_namespace_offset_moves_boottime() -> None:
    with open("/proc/uptime") as f:
        host = float(f.read().split()[0])
    r = sh("cat /proc/uptime", time_offsets=(("boottime", 3600),))
    inside = float(r.stdout.split()[0])
    assert 3590 < inside - host < 3700


@pytest.mark.cgroup2
def test_cgroup_namespace_shows_the_container_cgroup_as_root() -> None:
    r = sh("cat /proc/self/cgroup")
    # v1: one line per hierarchy ("4:memory:/"); v2: the unified line ("0::/"). Every one is the root.
    lines = [line.split(":", 2) for line in r.stdout.splitlines()]
    ours = [path for _, ctrl, path in lines if ctrl == "" or "memory" in ctrl or "pids" in ctrl]
    assert ours and set(ours) == {"/"}, r.stdout


# -- limits --------------------------------------------------------------------------------------------

@pytest.mark.cgroup2
def test_oom_at_50m_kills_with_137_and_reports_it() -> None:
    r = py("print('before', flush=True)\nhog = bytearray(200 * 2**20)\nprint('after')", memory=50 * MiB,
           pids_limit=20)
    assert r.stdout == "before\n"
    assert (r.exit_code, r.signal, r.oom_killed, r.status) == (137, signal.SIGKILL, True, "oomkilled")
    assert r.oom_kills == 1
    assert r.memory_limit == 50 * MiB
    assert 40 * MiB < (r.peak_memory or 0) <= 50 * MiB


def test_oom_of_a_command() -> None:
    r = sh("dd if=/dev/zero of=/dev/shm/fill bs=1M count=100", memory=30 * MiB, tmpfs=())
    assert r.oom_killed and r.exit_code == 137


@pytest.mark.cgroup2
def test_no_oom_under_the_limit() -> None:
    r = py("buf = bytearray(10 * 2**20)", memory=50 * MiB)
    assert (r.exit_code, r.oom_killed, r.oom_kills) == (0, False, 0)
    assert (r.peak_memory or 0) >= 10 * MiB


@pytest.mark.cgroup2
def test_fork_bomb_stops_at_pids_limit() -> None:
    code = ("import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n"
            "            time.sleep(30); os._exit(0)\n        n += 1\nexcept OSError as e:\n"
            "    print(n, e.errno)")
    r = py(code, pids_limit=20)
    assert r.stdout == "19 11\n"  # PID 1 plus 19 children; EAGAIN
    assert r.exit_code == 0 and r.pids_limit == 20
    assert r.peak_pids == 20


@pytest.mark.cgroup2
def test_cpu_quota_throttles() -> None:
    # spin until 0.25 s of CPU are used (not for a wall time, which a loaded machine may not fill with CPU)
    busy = "import time\nwhile time.process_time() < 0.25: pass"
    limited = py(busy, cpus=0.2)
    free = py(busy)
    # The quota is an upper bound whatever the load: 0.25 CPU s at 0.2 CPU takes at least 1.25 s (some slack;
    # the cgroup counts a little less than process_time(), which started before the process joined it).
    assert (limited.throttled_periods or 0) > 0
    assert (limited.cpu_time or 0) >= 0.2 and (limited.cpu_time or 0) < 0.3 * limited.duration
    # Without one, nothing is throttled. (How much more than 0.2 CPU the free run gets depends on what else
    # the machine runs: on a loaded host possibly less, so no rate is asserted for it.)
    assert free.throttled_periods == 0 and (free.cpu_time or 0) >= 0.2


@pytest.mark.cgroup2
def test_samples_are_recorded() -> None:
    r = py("import time\nb = bytearray(20 * 2**20)\ntime.sleep(0.3)", interval=0.02)
    assert len(r.samples) >= 5
    assert max(s.memory for s in r.samples) >= 20 * MiB
    assert all(b.t >= a.t for a, b in zip(r.samples, r.samples[1:], strict=False))


@pytest.mark.cgroup2
def test_samples_come_when_the_sampler_was_idle() -> None:
    """The sampler's thread is told of a run only once PID 1 is on its way (Monitor.arm): a run that starts while
    it waits with nothing to sample still gets its samples."""
    py("pass")
    time.sleep(0.2)  # the sampler's thread has nothing left to sample: it waits until told
    r = py("import time\ntime.sleep(0.3)", interval=0.02)
    assert len(r.samples) >= 5, r.samples


# -- filesystem ----------------------------------------------------------------------------------------

@pytest.mark.cgroup2
def test_diff_letters_and_sizes() -> None:
    r = sh("echo hello > /added; mkdir /etc/newdir; rm /etc/hostname; echo x >> /etc/motd")
    got = {(d.kind, d.path) for d in r.diff}
    assert {("A", "/added"), ("C", "/etc"), ("A", "/etc/newdir"), ("D", "/etc/hostname"),
            ("C", "/etc/motd")} <= got
    size = {d.path: d.size for d in r.diff}
    assert size["/added"] == 6
    assert os.path.exists("/etc/hostname") and not os.path.exists("/added")  # the host is untouched


DIFF_PY = """
import os
open("/added", "w").write("hello\\n")
os.mkdir("/etc/newdir")
os.remove("/etc/hostname")
open("/etc/motd", "a").write("x\\n")
"""


@pytest.mark.cgroup2
def test_a_python_cells_diff_is_read_by_the_caller_without_waiting_for_the_holder() -> None:
    """A Python cell's PID 1 is the caller's child: once it is done, the caller reads the layer diff itself,
    through the holder's mount namespace (run._read_diff), rather than asking the holder and waiting for its
    answer. A holder that cannot answer (stopped here) does not hold the cell up; the diff is the same."""
    from pycontainer_magics.runtime.pool import pool
    from pycontainer_magics.runtime.run import DIFF_READ

    py("pass")
    assert wait_for(lambda: pool.ready_holder() is not None), "no holder prepared"
    ready = pool.ready_holder()
    assert ready is not None
    os.kill(ready[0], signal.SIGSTOP)
    try:
        r = py(DIFF_PY, timeout=30)
    finally:
        os.kill(ready[0], signal.SIGCONT)
    assert not r.timed_out and r.exit_code == 0, (r.timed_out, r.stderr)
    assert any(label == DIFF_READ for label, _ in r.timeline), r.timeline
    got = {(d.kind, d.path) for d in r.diff}
    assert {("A", "/added"), ("C", "/etc"), ("A", "/etc/newdir"), ("D", "/etc/hostname"),
            ("C", "/etc/motd")} <= got, got
    assert {d.path: d.size for d in r.diff}["/added"] == 6
    assert py("pass", diff=False).diff == []


def test_changes_are_lost_with_the_container() -> None:
    sh("echo x > /persist-test")
    assert sh("cat /persist-test 2>&1; true").stdout.endswith("No such file or directory\n")


def test_read_only_root() -> None:
    r = sh("echo x > /etc/foo", read_only=True)
    assert r.exit_code != 0 and "Read-only file system" in r.stderr
    assert r.diff == []


def test_bind_mounts_volumes_tmpfs_workdir_env(tmp_path) -> None:
    (tmp_path / "in.txt").write_text("from host\n")
    ro = tmp_path / "ro"
    ro.mkdir()
    r = sh("cat /data/in.txt; echo out > /data/out.txt; echo x > /ro/x 2>/dev/null || echo ro-denied; "
           "grep ' /scratch ' /proc/mounts; pwd; echo $GREETING",
           mounts=(Mount(str(tmp_path), "/data"), Mount(str(ro), "/ro", read_only=True)),
           tmpfs=(Tmpfs("/scratch", size=1 * MiB),), workdir="/work/here", env=(("GREETING", "hi"),))
    lines = r.stdout.splitlines()
    assert lines[0] == "from host" and lines[1] == "ro-denied"
    assert "size=1024k" in lines[2]
    assert lines[3:] == ["/work/here", "hi"]
    assert (tmp_path / "out.txt").read_text() == "out\n"


def test_named_volume_persists_between_containers() -> None:
    name = f"pcm-test-{os.getpid()}"
    from pycontainer_magics.workloads import volumes
    try:
        sh("echo kept > /v/file", mounts=(Mount(name, "/v", kind="volume"),))
        r = sh("cat /v/file", mounts=(Mount(name, "/v", kind="volume"),))
        assert r.stdout == "kept\n"
        assert name in volumes.list_volumes()
    finally:
        volumes.remove_volume(name)
    assert name not in volumes.list_volumes()


def test_rootfs_directory_with_its_own_tools(busybox: str) -> None:
    r = sh("cat /etc/motd; ls /bin | wc -l; echo new > /file", rootfs=busybox)
    assert r.stdout.splitlines()[0] == "busybox image"
    assert ("A", "/file") in {(d.kind, d.path) for d in r.diff}
    assert not os.path.exists(os.path.join(busybox, "file"))


def test_python_cell_runs_in_a_foreign_rootfs(busybox: str) -> None:
    r = py("import json, os\nprint(json.dumps(sorted(os.listdir('/etc'))))", rootfs=busybox)
    assert r.stdout == '["motd"]\n', r.stderr + str(r.error)


def test_stdin_is_fed_to_a_command() -> None:
    r = run(ContainerSpec(command=("sh",), stdin_data=b"echo from-script $$\n"))
    assert r.stdout == "from-script 1\n"


def test_output_arrives_while_the_container_runs() -> None:
    seen: list[tuple[float, str]] = []
    t0 = time.monotonic()
    r = run(ContainerSpec(command=("sh", "-c", "echo early; sleep 0.5; echo late >&2")),
            on_output=lambda s, t: seen.append((time.monotonic() - t0, s)))
    assert [s for _, s in seen] == ["stdout", "stderr"]
    assert seen[1][0] - seen[0][0] > 0.3
    assert (r.stdout, r.stderr) == ("early\n", "late\n")


# -- security defaults ---------------------------------------------------------------------------------

def _caps(status: str, field: str) -> int:
    for line in status.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1], 16)
    raise AssertionError(field)


@pytest.mark.cgroup2
def test_default_capabilities_and_no_new_privs() -> None:
    r = sh("cat /proc/self/status")
    want = mask_of(DEFAULT_CAPS)
    for f in ("CapEff", "CapPrm", "CapBnd"):
        assert _caps(r.stdout, f) == want, f
    assert _caps(r.stdout, "CapInh") == 0 and _caps(r.stdout, "CapAmb") == 0
    assert "NoNewPrivs:\t1" in r.stdout


def test_ulimits_apply_in_commands_and_python_cells() -> None:
    limits = build_spec(command=["true"], ulimit=["nofile=64:4096", "nproc=50"]).ulimits
    r = sh("ulimit -n; ulimit -Hn; grep processes /proc/self/limits", ulimits=limits)
    assert r.stdout.split()[:2] == ["64", "4096"] and r.stdout.split()[-3:-1] == ["50", "50"], r.stderr
    code = "import resource as r; print(r.getrlimit(r.RLIMIT_NOFILE), r.getrlimit(r.RLIMIT_NPROC))"
    cell = run(ContainerSpec(python_code=code, ulimits=limits))
    assert cell.stdout == "(64, 4096) (50, 50)\n", cell.stderr
    # a hard limit above what this process may raise to: one line naming the limit, nothing left (host_clean)
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 1 << 20:
        with pytest.raises(LaunchError, match=r"--ulimit nofile=64:\d+: the kernel refuses it"):
            sh("true", ulimits=(("nofile", 64, (1 << 20) + 1),))


def test_ulimit_options_are_checked() -> None:
    with pytest.raises(SpecError, match="unknown --ulimit 'files'"):
        build_spec(command=["true"], ulimit=["files=10"])
    with pytest.raises(SpecError, match="soft limit must not exceed the hard one"):
        build_spec(command=["true"], ulimit=["nofile=100:10"])
    with pytest.raises(SpecError, match="expected NAME=SOFT"):
        build_spec(command=["true"], ulimit=["nofile"])
    assert build_spec(command=["true"], ulimit=["core=unlimited", "nofile=10"]).ulimits == (("core", -1, -1),
                                                                                           ("nofile", 10, 10))


def test_cap_drop_and_add() -> None:
    r = sh("touch /f; chown 1 /f && echo chowned || echo denied; cat /proc/self/status",
           cap_drop=frozenset({"CHOWN"}), cap_add=frozenset({"NET_ADMIN"}))
    assert r.stdout.startswith("denied")
    eff = _caps(r.stdout, "CapEff")
    assert not eff & mask_of(frozenset({"CHOWN"})) and eff & mask_of(frozenset({"NET_ADMIN"}))


@pytest.mark.cgroup2
def test_masked_and_read_only_paths() -> None:
    r = sh("cat /proc/keys | wc -c; ls /proc/acpi | wc -l; ls /sys/firmware | wc -l; "
           "echo x > /proc/sys/kernel/hostname 2>/dev/null || echo ro; mount")
    lines = r.stdout.splitlines()
    assert lines[:4] == ["0", "0", "0", "ro"]
    mounts = "\n".join(lines[4:])
    assert " on /proc/sys type proc (ro," in mounts
    assert " on /sys type sysfs (ro," in mounts
    assert " on /sys/fs/cgroup " in mounts


def test_dev_has_the_standard_nodes_and_links() -> None:
    r = sh("ls /dev; readlink /dev/fd /dev/ptmx; grep -E ' /dev/(pts|shm|mqueue) ' /proc/mounts | wc -l")
    names = set(r.stdout.split())
    assert {"null", "zero", "full", "random", "urandom", "tty", "fd", "stdin", "stdout", "stderr", "ptmx",
            "pts", "shm", "mqueue"} <= names
    assert "/proc/self/fd" in names and "pts/ptmx" in names
    assert r.stdout.split()[-1] == "3"


def test_no_host_fd_leaks_into_the_container() -> None:
    leak = os.open("/etc/hostname", os.O_RDONLY)  # inheritable fds of the caller must not get in
    os.set_inheritable(leak, True)
    try:
        r = py("import os\nprint(sorted(int(f) for f in os.listdir('/proc/self/fd')))")
        c = sh("ls /proc/self/fd")
    finally:
        os.close(leak)
    assert r.stdout == "[0, 1, 2, 3, 4]\n"  # stdio, the status pipe, and listdir's own fd
    assert c.stdout.split() == ["0", "1", "2", "3"]  # stdio and ls's own fd


# -- failures: reported, kernel unharmed ---------------------------------------------------------------

def test_cell_exception_is_reported() -> None:
    r = py("def f():\n    return 1 / 0\nf()")
    assert r.exit_code == 1 and r.error_name == "ZeroDivisionError"
    assert 'File "<container>", line 2, in f' in (r.error or "")


def test_exit_codes_segfault_os_exit_and_closed_stdout() -> None:
    assert py("import os\nos._exit(3)").exit_code == 3
    assert py("import sys\nsys.exit(4)").exit_code == 4
    seg = py("import ctypes\nctypes.string_at(0)")
    assert (seg.exit_code, seg.signal_name) == (139, "SIGSEGV")
    closed = py("import os\nos.close(1)\nprint('x')")
    assert closed.error_name == "OSError" and closed.exit_code == 1


def test_missing_command_is_127() -> None:
    r = run(ContainerSpec(command=("no-such-command-pcm",)))
    assert r.exit_code == 127 and "No such file or directory" in (r.error or "")


def test_timeout_kills_the_container() -> None:
    r = sh("sleep 30", timeout=0.5)
    assert r.timed_out and r.status == "timeout" and r.exit_code == 137
    assert r.duration < 10


def test_a_killed_container_keeps_its_layer_diff() -> None:
    # As `docker diff` shows a killed container's: the holder keeps the writable layer and reports it after the kill
    # (a command's holder computes it, a Python cell's caller reads it). Without: empty diffs.
    cmd = sh("touch /made; echo ok; sleep 30", timeout=1)
    assert cmd.timed_out and cmd.stdout == "ok\n" and ("/made", "A") in [(d.path, d.kind) for d in cmd.diff], cmd.diff
    cell = py("open('/made', 'w').close()\nprint('ok', flush=True)\nimport time\ntime.sleep(30)", timeout=1)
    assert cell.timed_out and cell.stdout == "ok\n" and ("/made", "A") in [(d.path, d.kind) for d in cell.diff]


def test_a_killed_containers_holder_that_does_not_report_is_killed_after_its_grace(monkeypatch) -> None:
    import importlib

    from pycontainer_magics.linux.proc import alive

    R = importlib.import_module("pycontainer_magics.runtime.run")
    monkeypatch.setattr(R, "HOLDER_GRACE", 0.5)
    holders: list[int] = []

    def stop_the_holder(running) -> None:  # type: ignore[no-untyped-def]
        holders.append(running._relay.holder.pid)
        os.kill(holders[0], signal.SIGSTOP)

    t = time.monotonic()
    r = run(ContainerSpec(command=("sh", "-c", "sleep 30"), timeout=0.5), on_start=stop_the_holder)
    assert r.timed_out and r.exit_code == 137 and r.diff == [] and time.monotonic() - t < 10
    assert wait_for(lambda: not alive(holders[0]), 10)


def test_an_interrupt_before_pid1_is_known_ends_the_container_at_once(monkeypatch) -> None:
    # A kill before the holder said who PID 1 is (an interrupt as the order goes out): the holder, which would fork
    # it or has, goes at once — not after the grace it gets to report a killed container's layer.
    import importlib

    from pycontainer_magics.runtime.pool import pool

    R = importlib.import_module("pycontainer_magics.runtime.run")
    real = R._send_order

    def interrupted_as_it_goes(*args):  # type: ignore[no-untyped-def]
        real(*args)
        os.kill(os.getpid(), signal.SIGINT)  # (held until the relay's loop, which replays it)

    pool.drain()  # (no PID 1 prepared: the holder forks it after the order)
    monkeypatch.setattr(R, "_send_order", interrupted_as_it_goes)
    t = time.monotonic()
    with pytest.raises(ContainerInterrupted) as info:
        sh("echo ran; sleep 30", stop_timeout=0)
    assert time.monotonic() - t < R.HOLDER_GRACE / 2, info.value.run.timeline
    assert info.value.run.exit_code == 137 and info.value.run.status == "interrupted"


def test_a_kill_after_the_holder_is_done_never_signals_its_pid(monkeypatch) -> None:
    # Once the holder has reported, its pid may be another process's (a pooled holder is reaped at once by the
    # launch helper): a kill after that (docker kill of an ended container, say) signals nothing there.
    handles: list = []  # type: ignore[type-arg]
    r = run(ContainerSpec(command=("true",)), on_start=handles.append)
    assert r.exit_code == 0 and handles
    holder = handles[0]._relay.holder.pid
    sent: list[int] = []
    real = os.kill
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append(pid) if pid == holder else real(pid, sig))
    handles[0].kill()
    handles[0]._relay.kill(None, holder=True)  # (as the grace's end, a second interrupt, a run that wants no diff)
    assert holder not in sent


@pytest.mark.cgroup2
def test_interrupt_kills_and_cleans_up() -> None:
    # The interrupt comes once PID 1 runs (on_start), as a user's to a running cell: a fixed delay from the call
    # could land in the set-up on a loaded machine or under the cgroup v2 VM's emulation (a plain
    # KeyboardInterrupt there, which would end the whole pytest session).
    def interrupt_soon(_running: object) -> None:
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()

    with pytest.raises(ContainerInterrupted) as info:
        run(ContainerSpec(python_code="import time\ntime.sleep(30)"), python_globals={}, on_start=interrupt_soon)
    assert info.value.run.interrupted and info.value.run.status == "interrupted"


@pytest.mark.cgroup2
def test_bad_input_leaves_nothing() -> None:
    with pytest.raises(SpecError, match="not a directory"):
        ContainerSpec(command=("true",), rootfs="/nonexistent-rootfs")
    with pytest.raises(SpecError, match="unknown namespace"):
        ContainerSpec(command=("true",), share=frozenset({"bogus"}))
    with pytest.raises(SpecError, match=r"--cpuset-cpus 0,99: CPUs 99 are not available \(this machine has 0"):
        ContainerSpec(command=("true",), cpuset_cpus="0,99")  # said before anything is made, not a cgroup ERANGE


@pytest.mark.cgroup2
def test_nothing_is_left_after_200_runs() -> None:
    before = snapshot()
    for i in range(200):
        r = run(ContainerSpec(command=("true",), memory=64 * MiB, pids_limit=64) if i % 2 else
                ContainerSpec(python_code="x = 1", memory=64 * MiB, pids_limit=64), python_globals={})
        assert r.exit_code == 0
    assert_clean(before)


def test_prune_removes_what_a_killed_kernel_left() -> None:
    """A kernel SIGKILLed mid-cell: its container dies with it (parent-death signals down the chain) and
    the next prune removes the cgroup it left."""
    import subprocess
    import sys

    from helpers import our_cgroups

    from pycontainer_magics.workloads.prune import prune

    script = ("from pycontainer_magics.runtime import run, ContainerSpec\n"
              "run(ContainerSpec(command=('sleep', '30'), memory=64 * 2**20))\n")
    kernel = subprocess.Popen([sys.executable, "-c", script])
    prefix = f"{kernel.pid}-"
    parent = "/sys/fs/cgroup/memory/pycontainer_magics" if os.path.isdir("/sys/fs/cgroup/memory") \
        else "/sys/fs/cgroup/pycontainer_magics"
    deadline = time.monotonic() + 20
    left: list[str] = []
    while time.monotonic() < deadline:
        left = [d for d in os.listdir(parent) if d.startswith(prefix)] if os.path.isdir(parent) else []
        procs = open(os.path.join(parent, left[0], "cgroup.procs")).read().split() if left else []
        if procs:
            break
        time.sleep(0.05)
    assert left, "the container never started"
    kernel.kill()
    kernel.wait()
    deadline = time.monotonic() + 30  # the container follows its kernel through the parent-death signals
    while time.monotonic() < deadline and open(os.path.join(parent, left[0], "cgroup.procs")).read().strip():
        time.sleep(0.05)
    assert open(os.path.join(parent, left[0], "cgroup.procs")).read().strip() == ""
    removed = prune()
    assert f"cgroup {left[0]}" in removed
    assert not os.path.exists(os.path.join(parent, left[0]))
    assert our_cgroups() == []


def test_what_is_made_ahead_of_time_goes_with_the_process() -> None:
    """After a run, a holder and a cgroup are prepared for the next identical cell; a process that
    exits without another run leaves neither behind."""
    import subprocess
    import sys

    script = ("from pycontainer_magics.runtime import run, ContainerSpec\n"
              "import os\n"
              "run(ContainerSpec(command=('true',), memory=64 * 2**20))\n"
              "run(ContainerSpec(python_code='pass', memory=64 * 2**20), python_globals={})\n"
              "print(os.getpid())\n")
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    pid = p.stdout.strip()
    left = [d for root in ("/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup")
            for d in (os.listdir(os.path.join(root, "pycontainer_magics"))
                      if os.path.isdir(os.path.join(root, "pycontainer_magics")) else [])
            if d.startswith(f"{pid}-")]
    assert left == []


def test_cap_add_sys_admin_lets_a_python_cell_mount() -> None:
    code = ("import ctypes, os\nlibc = ctypes.CDLL('libc.so.6', use_errno=True)\nos.mkdir('/mnt/t')\n"
            "print(libc.mount(b'tmpfs', b'/mnt/t', b'tmpfs', 0, None), os.getpid())")
    assert py(code, cap_add=frozenset({"SYS_ADMIN"})).stdout == "0 1\n"
    assert py(code).stdout == "-1 1\n"  # Docker's default set has no SYS_ADMIN


def test_a_python_cell_its_holder_forks_sees_the_notebooks_variables_after_any_cell() -> None:
    """A Python cell granted SYS_ADMIN runs nested: its holder is a fork of the caller, the notebook's variables in
    its memory. After a plain Python cell the pool keeps a holder the launch helper made with the same plan: not
    one for this cell (its order would carry the launch without the variables)."""
    from pycontainer_magics.runtime import cleanup
    from pycontainer_magics.runtime.pool import pool

    g = {"x": 5}
    plain = ContainerSpec(python_code="print('plain', x)", memory=64 * 2**20)
    nested = ContainerSpec(python_code="print('nested', x)", memory=64 * 2**20, cap_add=frozenset({"SYS_ADMIN"}))
    for spec, said in ((plain, "plain 5\n"), (nested, "nested 5\n"), (nested, "nested 5\n"), (plain, "plain 5\n")):
        r = run(spec, python_globals=g)
        assert (r.exit_code, r.stdout) == (0, said), r.error
        cleanup.settle()
        pool.wait_idle()
    pool.drain()


def test_runs_when_the_launch_helper_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the launch helper (it died, or did not answer on a slow machine), the holder is forked from
    the caller and still gets its orders."""
    from pycontainer_magics.runtime.pool import pool
    from pycontainer_magics.runtime.zygote import HelperUnavailable, Zygote

    def unavailable(self: Zygote, plan: object) -> None:
        raise HelperUnavailable("the launch helper did not answer")

    pool.drain()
    monkeypatch.setattr(Zygote, "prepare", unavailable)
    r = sh("hostname; echo $$", hostname="fallback", memory=64 * MiB)
    assert (r.exit_code, r.stdout.split()) == (0, ["fallback", "1"]), r.stderr
    pool.drain()


def test_the_layer_diff_never_follows_a_directory_swapped_for_a_symlink(tmp_path) -> None:
    """The layer diff is walked while what the container left running may still change its writable layer (a
    Python cell's diff is read once PID 1 has reported, before its namespace's other processes are gone): a
    directory swapped for a symlink to / mid-walk must not take the walk onto the host's tree."""
    import threading

    from pycontainer_magics.runtime.rootfs import layer_diff

    upper, lower = tmp_path / "upper", tmp_path / "lower"
    lower.mkdir()
    (upper / "d" / "sub").mkdir(parents=True)
    for i in range(200):
        (upper / "d" / "sub" / f"f{i}").write_text("x")
    stop = threading.Event()

    def swap() -> None:  # what a process in the container could do, as fast as it can
        d, moved, link = upper / "d", upper / "moved", upper / "link"
        link.symlink_to("/")
        while not stop.is_set():
            os.rename(d, moved)
            os.rename(link, d)
            os.rename(d, link)
            os.rename(moved, d)
    t = threading.Thread(target=swap)
    t.start()
    try:
        seen: set[str] = set()
        for _ in range(300):
            seen |= {e.path for e in layer_diff(str(upper), str(lower))}
    finally:
        stop.set()
        t.join()
    host = {p for p in seen if not p.startswith(("/d/sub/f", "/moved/sub/f", "/link/sub/f"))
            and p not in ("/d", "/d/sub", "/moved", "/moved/sub", "/link", "/link/sub")}
    assert not host, sorted(host)[:10]  # names of the host's / (proc, etc, usr...) listed as the layer's


def test_the_layer_diff_of_an_empty_layer_is_empty_and_one_entry_shows(tmp_path) -> None:
    """An empty writable layer is one read (a cell that only computed), not a walk; one file, a whiteout or an
    empty directory in it still shows."""
    from pycontainer_magics.runtime.rootfs import layer_diff

    upper, lower = tmp_path / "upper", tmp_path / "lower"
    upper.mkdir()
    (lower / "etc").mkdir(parents=True)
    (lower / "etc" / "gone").write_text("x")
    assert layer_diff(str(upper), str(lower)) == []
    (upper / "new").mkdir()
    assert [(e.kind, e.path) for e in layer_diff(str(upper), str(lower))] == [("A", "/new")]
    (upper / "new").rmdir()
    (upper / "etc").mkdir()
    os.mknod(upper / "etc" / "gone", 0o600 | stat.S_IFCHR, 0)  # overlayfs's whiteout
    assert [(e.kind, e.path) for e in layer_diff(str(upper), str(lower))] == [("C", "/etc"), ("D", "/etc/gone")]
