"""cgroups v1 and v2 against the real kernel (no mocks).

Tests taking the `cg` fixture run once per version: the v1 case is marked `cgroup1`, the v2 case
`cgroup2`, and each skips unless its layout is mounted. The v2 cases run in the VM harness:

    tests/vm/run-cgroup2-tests

Every test leaves no cgroup behind (the `cgroup_hierarchy` fixture in conftest.py asserts it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import cgroup_test_hierarchy, require_cgroup  # type: ignore[import-not-found]
from helpers import wait_for

from pycontainer_magics.linux.cgroups import (
    CgroupError,
    CgroupLimits,
    HierarchyV1,
    HierarchyV2,
    detect_layout,
    new_name,
    owner_alive,
    owner_pid,
    shares_to_weight,
)
from pycontainer_magics.linux.cgroups._mounts import read_mounts

MiB = 2**20
PY = sys.executable

VERSIONS = [
    pytest.param("v1", marks=[pytest.mark.root, pytest.mark.cgroup1], id="v1"),
    pytest.param("v2", marks=[pytest.mark.root, pytest.mark.cgroup2], id="v2"),
]


@pytest.fixture(params=VERSIONS)
def cg(request: pytest.FixtureRequest) -> Iterator[tuple[Any, str]]:
    """(hierarchy, per-test name prefix); asserts nothing is left behind (conftest)."""
    with cgroup_test_hierarchy(request.param, request.node.name) as value:
        yield value


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def ctl(cgroup, controller: str, filename: str) -> str:  # type: ignore[no-untyped-def]
    d = cgroup.paths["unified"] if cgroup.version == "v2" else cgroup.paths[controller]
    return os.path.join(d, filename)


def spawn(cgroup, code: str, **kw) -> subprocess.Popen:  # type: ignore[no-untyped-def,type-arg]
    """Run `python -c code` inside the cgroup: the child joins by writing b"0" to join_files()."""
    files = cgroup.join_files()

    def join() -> None:
        for f in files:
            fd = os.open(f, os.O_WRONLY)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)

    return subprocess.Popen([PY, "-c", textwrap.dedent(code)], preexec_fn=join, **kw)




HOLD = """
import sys, time
b = bytearray({n} * 2**20)
for i in range(0, len(b), 4096):
    b[i] = 1
print("ready", flush=True)
time.sleep(300)
"""


# ---------------------------------------------------------------------------------------------
# Pure functions (no root, any layout)


def _mountinfo(tmp_path, lines: list[str]) -> str:  # type: ignore[no-untyped-def]
    p = tmp_path / "mountinfo"
    p.write_text("".join(line + "\n" for line in lines))
    return str(p)


SYS = "22 1 0:20 / /sys rw,nosuid - sysfs sysfs rw"


def test_detect_layout_from_mountinfo(tmp_path) -> None:  # type: ignore[no-untyped-def]
    unified = [SYS, "30 22 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate"]
    hybrid = [
        SYS,
        "31 22 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755",
        "32 31 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory",
        "33 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct",
        "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw",
    ]
    legacy = hybrid[:-1]
    only_named = [
        hybrid[0],
        hybrid[1],
        "40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd",
    ]
    assert detect_layout(mountinfo=_mountinfo(tmp_path, unified)) == "unified"
    assert detect_layout(mountinfo=_mountinfo(tmp_path, hybrid)) == "hybrid"
    assert detect_layout(mountinfo=_mountinfo(tmp_path, legacy)) == "legacy"
    assert detect_layout(mountinfo=_mountinfo(tmp_path, only_named)) == "none"
    assert detect_layout(mountinfo=_mountinfo(tmp_path, [SYS])) == "none"
    # A later mount hides an earlier one at the same point.
    assert detect_layout(mountinfo=_mountinfo(tmp_path, hybrid + [unified[1]])) == "unified"
    assert detect_layout(mountinfo=str(tmp_path / "missing")) == "none"


def test_detect_layout_matches_this_host() -> None:
    layout = detect_layout()
    assert layout in ("unified", "hybrid", "legacy", "none")
    with open("/proc/self/mountinfo") as f:
        text = f.read()
    if (
        " /sys/fs/cgroup " in text
        and " - cgroup2 " in [ln for ln in text.splitlines() if " /sys/fs/cgroup " in ln][-1]
    ):
        assert layout == "unified"


def test_v1_comounted_cpu_cpuacct_share_one_directory(tmp_path) -> None:  # type: ignore[no-untyped-def]
    info = _mountinfo(
        tmp_path,
        [
            "31 22 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755",
            "32 31 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory",
            "33 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct",
            "34 31 0:31 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids",
        ],
    )
    h = HierarchyV1("pm", mounts=read_mounts(info))
    assert h.available_controllers() == ["memory", "cpu", "cpuacct", "pids"]
    assert h.parent_paths == [
        "/sys/fs/cgroup/memory/pm",
        "/sys/fs/cgroup/cpu,cpuacct/pm",
        "/sys/fs/cgroup/pids/pm",
    ]
    cg = h._paths_for("x")
    assert cg["cpu"] == cg["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct/pm/x"
    from pycontainer_magics.linux.cgroups import CgroupV1

    c = CgroupV1("x", cg, h._parents)
    assert len(c.dirs) == 3
    assert len(c.join_files()) == 3


def test_names_and_owner() -> None:
    n = new_name()
    assert owner_pid(n) == os.getpid()
    assert owner_alive(n)
    assert owner_pid("test_x-" + n) == os.getpid()
    assert owner_pid("not-ours") is None
    assert owner_alive("not-ours")  # never pruned
    p = subprocess.Popen(["true"])
    p.wait()
    assert not owner_alive(f"{p.pid}-1-abc")


def test_shares_to_weight_like_runc() -> None:
    assert shares_to_weight(2) == 1
    assert shares_to_weight(1024) == 39
    assert shares_to_weight(262144) == 10000


def test_parent_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYCONTAINER_CGROUP_PARENT", "/user.slice/me/pcm/")
    assert HierarchyV2(root="/x").path == "/x/user.slice/me/pcm"
    monkeypatch.setenv("PYCONTAINER_CGROUP_PARENT", "../escape")
    with pytest.raises(CgroupError):
        HierarchyV2(root="/x")


def test_v2_delegation_enables_controllers_on_the_way_and_moves_the_caller(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """v2 advice, computed from the tree: root makes the parent, enables the controllers in each level above
    it that lacks them, hands over the directory and its delegation files (not its limits), and moves the
    caller into a leaf below it (a migration needs write access to the common ancestor)."""
    from pycontainer_magics.linux.cgroups.delegation import delegation

    (tmp_path / "cgroup.subtree_control").write_text("cpuset cpu io memory pids\n")
    (tmp_path / "course").mkdir()
    (tmp_path / "course" / "cgroup.subtree_control").write_text("memory\n")
    monkeypatch.setenv("PYCONTAINER_CGROUP_PARENT", "course/alice/pcm")
    d = delegation(HierarchyV2(root=str(tmp_path)), uid=os.getuid(), pid=4242)
    top = str(tmp_path)
    user = pwd.getpwuid(os.getuid()).pw_name
    assert d.parent == "course/alice/pcm" and d.controllers == ("cpu", "cpuset", "memory", "pids")
    assert d.commands == (
        f"mkdir -p {top}/course/alice/pcm",
        f"echo +cpu +cpuset +pids > {top}/course/cgroup.subtree_control",
        f"echo +cpu +cpuset +memory +pids > {top}/course/alice/cgroup.subtree_control",
        f"chown {user} {top}/course/alice/pcm {top}/course/alice/pcm/cgroup.procs "
        f"{top}/course/alice/pcm/cgroup.subtree_control {top}/course/alice/pcm/cgroup.threads",
        f"mkdir -p {top}/course/alice/pcm/session-4242",
        f"echo 4242 > {top}/course/alice/pcm/session-4242/cgroup.procs")
    assert "PYCONTAINER_CGROUP_PARENT=course/alice/pcm" in d.one_line() and "\n" not in d.one_line()
    assert "%env PYCONTAINER_CGROUP_PARENT=course/alice/pcm" in d.one_line()  # a notebook sets it without a restart


@pytest.mark.cgroup2
@pytest.mark.rootless
def test_v2_delegation_advice_followed_by_an_unprivileged_uid() -> None:
    """On a cgroup v2 host (the VM): a bare unprivileged uid's run with limits fails with the advice; root runs
    it literally (parent made, controllers enabled above it, the directory and its delegation files handed
    over, the process moved into a leaf below it); the same process's next run gets its limits, as does
    `pycontainer run` from it."""
    from conftest import CGROUP_TEST_PARENT  # type: ignore[import-not-found]
    from helpers import follow_delegation_advice

    require_cgroup("v2")
    import shutil
    import tempfile

    uid = 47111
    home = tempfile.mkdtemp(prefix="pcm-uid-home-", dir="/tmp")  # reachable by the uid (pytest's tmp is not)
    os.chown(home, uid, uid)
    env = ["env", f"HOME={home}", f"PYCONTAINER_STATE_DIR={home}/state", f"PYCONTAINER_RUN_DIR={home}/run"]
    try:
        script, res = follow_delegation_advice(uid, f"{CGROUP_TEST_PARENT}/uid{uid}-delegated", env)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert "cgroup.subtree_control" in script and "session-" in script, script
    assert {k: res[k] for k in ("oom", "code", "limit", "version")} == {
        "oom": True, "code": 137, "limit": 48 * 2**20, "version": "v2"}, res
    assert res["cli"][:2] == [0, "ok\n"], res["cli"]


# ---------------------------------------------------------------------------------------------
# Real kernel, per version


def test_create_writes_limits(cg) -> None:  # type: ignore[no-untyped-def]
    h, prefix = cg
    lim = CgroupLimits(memory=50 * MiB, cpus=0.5, cpu_shares=512, cpuset_cpus="0", pids_max=20)
    if h.version == "v2" and "cpuset" not in h.available_controllers():
        lim = CgroupLimits(memory=50 * MiB, cpus=0.5, cpu_shares=512, pids_max=20)
    c = h.create(prefix + new_name(), lim)
    try:
        assert h.list() == [c.name]
        if h.version == "v1":
            assert read(ctl(c, "memory", "memory.limit_in_bytes")) == str(50 * MiB)
            msw = ctl(c, "memory", "memory.memsw.limit_in_bytes")
            if os.path.exists(msw):
                assert read(msw) == str(50 * MiB)  # no swap
            assert read(ctl(c, "cpu", "cpu.cfs_period_us")) == "100000"
            assert read(ctl(c, "cpu", "cpu.cfs_quota_us")) == "50000"
            assert read(ctl(c, "cpu", "cpu.shares")) == "512"
            assert read(ctl(c, "cpuset", "cpuset.cpus")) == "0"
            assert read(ctl(c, "cpuset", "cpuset.mems")) != ""
            assert (
                read(
                    os.path.join(
                        h.parent_paths[h.available_controllers().index("cpuset")], "cgroup.clone_children"
                    )
                )
                == "1"
            )
            assert {os.path.basename(f) for f in c.join_files()} == {"tasks"}
        else:
            assert read(ctl(c, "", "memory.max")) == str(50 * MiB)
            if os.path.exists(ctl(c, "", "memory.swap.max")):
                assert read(ctl(c, "", "memory.swap.max")) == "0"
            assert read(ctl(c, "", "cpu.max")) == "50000 100000"
            assert read(ctl(c, "", "cpu.weight")) == str(shares_to_weight(512))
            if lim.cpuset_cpus:
                assert read(ctl(c, "", "cpuset.cpus")) == "0"
            assert c.join_files() == [ctl(c, "", "cgroup.procs")]
            # No internal processes: the parent holds none and passes the controllers down.
            parent = h.parent_paths[0]
            assert read(os.path.join(parent, "cgroup.procs")) == ""
            assert {"memory", "pids", "cpu"} <= set(
                read(os.path.join(parent, "cgroup.subtree_control")).split()
            )
        assert read(ctl(c, "pids", "pids.max")) == "20"
        s = c.stats()
        assert s.memory_limit == 50 * MiB
        assert s.pids_limit == 20
        assert s.oom_kill_count == 0 and s.oom_count == 0
        # get() finds the same directories
        assert h.get(c.name).paths == c.paths
    finally:
        c.remove()


def test_swap_semantics_and_live_changes(cg) -> None:  # type: ignore[no-untyped-def]
    h, prefix = cg
    c = h.create(prefix + new_name(), CgroupLimits(memory=64 * MiB, memory_swap=-1))
    try:
        if h.version == "v1":
            lim, sw = (
                ctl(c, "memory", "memory.limit_in_bytes"),
                ctl(c, "memory", "memory.memsw.limit_in_bytes"),
            )
            has_swap_file = os.path.exists(sw)
        else:
            lim, sw = ctl(c, "", "memory.max"), ctl(c, "", "memory.swap.max")
            has_swap_file = os.path.exists(sw)
        assert read(lim) == str(64 * MiB)
        unlimited = {"max"} if h.version == "v2" else {str(n) for n in (2**63 - 1, 9223372036854771712)}
        if has_swap_file:
            assert read(sw) in unlimited
        # Raise memory and memsw (v1 must write memsw first), then lower both (memory first).
        c.set_limits(CgroupLimits(memory=128 * MiB, memory_swap=192 * MiB))
        assert read(lim) == str(128 * MiB)
        if has_swap_file:
            assert read(sw) == str(192 * MiB if h.version == "v1" else 64 * MiB)
        c.set_limits(CgroupLimits(memory=32 * MiB))
        assert read(lim) == str(32 * MiB)
        if has_swap_file:
            assert read(sw) == (str(32 * MiB) if h.version == "v1" else "0")
        c.set_limits(CgroupLimits(memory=-1))
        assert c.stats().memory_limit is None
        with pytest.raises(CgroupError) as ei:
            c.set_limits(CgroupLimits(memory=64 * MiB, memory_swap=32 * MiB))
        assert ei.value.errno == errno.EINVAL
        # Other limits on a live cgroup
        c.set_limits(CgroupLimits(pids_max=7, cpus=1.5))
        assert c.stats().pids_limit == 7
        c.set_limits(CgroupLimits(pids_max=-1, cpus=-1))
        assert c.stats().pids_limit is None
    finally:
        c.remove()


def test_oom_kill_counted_once(cg) -> None:  # type: ignore[no-untyped-def]
    h, prefix = cg
    c = h.create(prefix + new_name(), CgroupLimits(memory=50 * MiB))
    try:
        assert c.oom_kill_count() == 0
        p = spawn(c, "b = bytearray(200 * 2**20)")
        assert p.wait(timeout=120) == -signal.SIGKILL
        assert c.oom_kill_count() == 1
        s = c.stats()
        assert s.oom_kill_count == 1
        assert s.oom_count >= 1
        if s.memory_peak is not None:
            assert 40 * MiB <= s.memory_peak <= 50 * MiB
        assert s.swap_current in (None, 0)
    finally:
        c.remove()


def test_pids_limit_stops_fork_loop(cg) -> None:  # type: ignore[no-untyped-def]
    h, prefix = cg
    c = h.create(prefix + new_name(), CgroupLimits(pids_max=10))
    try:
        code = """
            import os, sys, time
            n = 0
            try:
                while n < 100:
                    if os.fork() == 0:
                        time.sleep(300)
                        os._exit(0)
                    n += 1
                print("no-limit", n, flush=True)
            except BlockingIOError as e:
                print("EAGAIN", n, e.errno, flush=True)
            time.sleep(300)
        """
        p = spawn(c, code, stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None
        line = p.stdout.readline().split()
        assert line[0] == "EAGAIN" and int(line[2]) == errno.EAGAIN
        assert int(line[1]) == 9  # 10 tasks: the loop and 9 children
        assert c.pids_current() == 10
        s = c.stats()
        assert s.pids_current == 10 and s.pids_limit == 10
        if s.pids_peak is not None:
            assert s.pids_peak == 10
        c.kill_all()
        assert p.wait(timeout=30) == -signal.SIGKILL
        assert c.procs() == []
    finally:
        c.remove()


def _busy(c, cpu_seconds: float | None = None) -> int:  # type: ignore[no-untyped-def]
    """Spin in `c` for 0.6 s of wall time, or until `cpu_seconds` of CPU are used (which a loaded machine
    may take longer to give: the CPU it used is then certain, the wall time is not)."""
    # CPU counted from the interpreter's start: the fork's own CPU before it joined the cgroup (which
    # process_time() includes) is not in the cgroup's counter (0.348 s of 0.35 was seen in the v2 VM)
    until = (f"time.process_time() - c0 < {cpu_seconds!r}" if cpu_seconds is not None
             else "time.monotonic() - t < 0.6")
    p = spawn(c, f"import time\nt, c0 = time.monotonic(), time.process_time()\nwhile {until}: pass")
    assert p.wait(timeout=60) == 0
    return p.pid


def test_cpu_quota_throttles(cg) -> None:  # type: ignore[no-untyped-def]
    h, prefix = cg
    limited = h.create(prefix + new_name(), CgroupLimits(cpus=0.2))
    free = h.create(prefix + new_name(), CgroupLimits())
    try:
        _busy(limited)
        _busy(free, cpu_seconds=0.35)
        s = limited.stats()
        assert s.nr_periods and s.nr_periods > 0
        assert s.nr_throttled and s.nr_throttled > 0
        assert s.throttled_ns and s.throttled_ns > 0
        assert s.cpu_usage_ns > 0 and s.cpu_user_ns is not None and s.cpu_system_ns is not None
        f = free.stats()
        assert not f.nr_throttled and not f.throttled_ns
        assert f.cpu_usage_ns >= 0.35e9  # the counter has the CPU it spun for
        assert limited.cpu_usage_ns() == s.cpu_usage_ns
    finally:
        limited.remove()
        free.remove()


def test_hot_readers_follow_a_live_process(cg) -> None:  # type: ignore[no-untyped-def]
    h, prefix = cg
    c = h.create(prefix + new_name(), CgroupLimits(memory=100 * MiB))
    try:
        p = spawn(c, HOLD.format(n=30), stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        assert c.procs() == [p.pid]
        assert c.memory_usage() >= 30 * MiB
        assert c.pids_current() == 1
        assert c.cpu_usage_ns() > 0
        assert c.oom_kill_count() == 0
        s = c.stats()
        assert s.memory_current >= 30 * MiB
        assert s.memory_peak is None or s.memory_peak >= s.memory_current
        t = time.perf_counter()
        for _ in range(1000):
            c.memory_usage()
        assert (time.perf_counter() - t) / 1000 < 0.001  # well under 1 ms per reading
        c.kill_all()
        assert p.wait(timeout=30) == -signal.SIGKILL
    finally:
        c.remove()


def test_freeze_and_thaw(cg) -> None:  # type: ignore[no-untyped-def]
    """`docker pause`: a frozen cgroup's process makes no progress; thawed, it goes on."""
    h, prefix = cg
    c = h.create(prefix + new_name(), CgroupLimits())
    p = spawn(c, "import time\nwhile True:\n    print(time.monotonic(), flush=True)\n    time.sleep(0.01)",
              stdout=subprocess.PIPE)
    assert p.stdout is not None
    fd = p.stdout.fileno()

    def output() -> bytes:
        try:
            return os.read(fd, 1 << 16)
        except BlockingIOError:
            return b""

    try:
        os.set_blocking(fd, False)
        assert wait_for(lambda: bool(output()), 30)
        assert not c.frozen()
        c.freeze(True)
        assert c.frozen()
        time.sleep(0.2)
        output()  # what it printed before the freeze took
        time.sleep(0.3)
        assert output() == b""  # nothing while frozen
        c.freeze(False)
        assert not c.frozen()
        assert wait_for(lambda: bool(output()), 30)
    finally:
        c.freeze(False)
        p.kill()
        p.wait()
        c.remove()


def test_add_process_and_kill_all(cg) -> None:  # type: ignore[no-untyped-def]
    h, prefix = cg
    c = h.create(prefix + new_name(), CgroupLimits(pids_max=50))
    procs = [subprocess.Popen(["sleep", "300"]) for _ in range(2)]
    try:
        for p in procs:
            c.add_process(p.pid)
        # a process tree: the shell and its background children
        sh = spawn(
            c,
            "import subprocess, time\nfor _ in range(3): subprocess.Popen(['sleep', '300'])\ntime.sleep(300)",
        )
        assert wait_for(lambda: len(c.procs()) == 6, 20)
        assert {p.pid for p in procs} | {sh.pid} <= set(c.procs())
        c.kill_all()
        assert c.procs() == []
        for p in procs + [sh]:
            assert p.wait(timeout=30) == -signal.SIGKILL
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        c.remove()


def test_remove_kills_and_leaves_no_directory(cg) -> None:  # type: ignore[no-untyped-def]
    h, prefix = cg
    c = h.create(prefix + new_name(), CgroupLimits(memory=64 * MiB, pids_max=10))
    p = spawn(c, "import time\ntime.sleep(300)")
    assert wait_for(lambda: c.procs() == [p.pid], 20)
    dirs = list(set(c.paths.values()))
    c.remove()
    assert p.wait(timeout=30) == -signal.SIGKILL
    assert not any(os.path.exists(d) for d in dirs)
    c.remove()  # idempotent
    assert h.list() == []


def test_bad_cpuset_raises_and_leaves_nothing(cg) -> None:  # type: ignore[no-untyped-def]
    h, prefix = cg
    if "cpuset" not in h.available_controllers():
        pytest.skip("cpuset controller not available")
    name = prefix + new_name()
    with pytest.raises(CgroupError) as ei:
        h.create(name, CgroupLimits(memory=64 * MiB, cpuset_cpus="99"))
    assert ei.value.errno in (errno.EINVAL, errno.ERANGE)  # 6.x kernels: ERANGE for a cpu beyond nr_cpus
    assert ei.value.filename.endswith("/cpuset.cpus")
    assert "cpuset.cpus" in str(ei.value)
    assert h.list() == []


def test_bad_cpu_quota_raises_and_leaves_nothing(cg) -> None:  # type: ignore[no-untyped-def]
    h, prefix = cg
    name = prefix + new_name()
    with pytest.raises(CgroupError) as ei:
        h.create(name, CgroupLimits(memory=64 * MiB, pids_max=5, cpus=0.001))  # quota below 1 ms
    assert ei.value.errno == errno.EINVAL
    assert ei.value.filename.endswith("cpu.cfs_quota_us" if h.version == "v1" else "cpu.max")
    with pytest.raises(CgroupError) as ei:
        h.create(name, CgroupLimits(memory=64 * MiB, memory_swap=32 * MiB))
    assert ei.value.errno == errno.EINVAL
    assert h.list() == []


def test_invalid_names(cg) -> None:  # type: ignore[no-untyped-def]
    h, _ = cg
    for bad in ("..", "a/b", "", "."):
        with pytest.raises(CgroupError) as ei:
            h.create(bad, CgroupLimits())
        assert ei.value.errno == errno.EINVAL
    with pytest.raises(CgroupError) as ei:
        h.get("does-not-exist")
    assert ei.value.errno == errno.ENOENT


@pytest.mark.parametrize("cg", [VERSIONS[0]], indirect=True)
def test_v1_memory_below_usage_is_ebusy(cg) -> None:  # type: ignore[no-untyped-def]
    h, prefix = cg
    c = h.create(prefix + new_name(), CgroupLimits(memory=100 * MiB))
    try:
        p = spawn(c, HOLD.format(n=30), stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        with pytest.raises(CgroupError) as ei:
            c.set_limits(CgroupLimits(memory=4 * MiB))
        assert ei.value.errno == errno.EBUSY
        assert ei.value.filename.endswith("memory.limit_in_bytes")
        # Nothing changed: both limits still 100M, the process alive.
        assert read(ctl(c, "memory", "memory.limit_in_bytes")) == str(100 * MiB)
        msw = ctl(c, "memory", "memory.memsw.limit_in_bytes")
        if os.path.exists(msw):
            assert read(msw) == str(100 * MiB)
        assert p.poll() is None
        c.kill_all()
        p.wait(timeout=30)
    finally:
        c.remove()


@pytest.mark.parametrize("cg", [VERSIONS[1]], indirect=True)
def test_v2_memory_below_usage_oom_kills(cg) -> None:  # type: ignore[no-untyped-def]
    # v2 never refuses a lower memory.max: it reclaims and then OOM-kills (documented kernel behaviour).
    h, prefix = cg
    c = h.create(prefix + new_name(), CgroupLimits(memory=100 * MiB))
    try:
        p = spawn(c, HOLD.format(n=30), stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        c.set_limits(CgroupLimits(memory=4 * MiB))
        assert p.wait(timeout=60) == -signal.SIGKILL
        assert c.oom_kill_count() == 1
    finally:
        c.remove()


def test_prune_removes_dead_owner_keeps_live(cg) -> None:  # type: ignore[no-untyped-def]
    h, prefix = cg
    dead = subprocess.Popen(["true"])
    dead.wait()
    gone = h.create(f"{prefix}{dead.pid}-1-dead", CgroupLimits(pids_max=5))
    live = h.create(prefix + new_name(), CgroupLimits(pids_max=5))
    try:
        # the dead owner's cgroup even has a process left in it
        p = spawn(gone, "import time\ntime.sleep(300)")
        assert wait_for(lambda: gone.procs() == [p.pid], 20)
        assert h.prune() == [gone.name]
        assert p.wait(timeout=30) == -signal.SIGKILL
        assert h.list() == [live.name]
        assert h.prune(lambda name: True) == []
    finally:
        gone.remove()
        live.remove()


def test_hierarchy_properties(cg) -> None:  # type: ignore[no-untyped-def]
    h, _ = cg
    assert h.writable
    ctrls = h.available_controllers()
    assert {"memory", "pids", "cpu"} <= set(ctrls)
    if h.version == "v1":
        assert {"cpuacct", "freezer", "cpuset"} <= set(ctrls)


@pytest.mark.parametrize("cg", [VERSIONS[0]], indirect=True)
def test_v1_join_files_move_child_into_every_controller(cg) -> None:  # type: ignore[no-untyped-def]
    # The child writes "0" to every `tasks` file (DESIGN.md: 0.3 ms vs 15 ms for cgroup.procs).
    h, prefix = cg
    c = h.create(prefix + new_name(), CgroupLimits(memory=64 * MiB))
    try:
        p = spawn(
            c,
            "import os\nprint(open('/proc/self/cgroup').read(), flush=True)",
            stdout=subprocess.PIPE,
            text=True,
        )
        out, _ = p.communicate(timeout=30)
        for line in filter(None, out.splitlines()):
            if any(k in line.split(":")[1].split(",") for k in ("memory", "pids", "cpuset", "freezer")):
                assert line.endswith("/" + c.name), line
    finally:
        c.remove()


@pytest.fixture(scope="module", autouse=True)
def _no_dangling_dirs() -> Iterator[None]:
    yield
    # Nothing of ours may remain in any hierarchy after this module.
    for base in (
        "/sys/fs/cgroup",
        *(os.path.join("/sys/fs/cgroup", d) for d in os.listdir("/sys/fs/cgroup")),
    ):
        assert not os.path.isdir(os.path.join(base, "pycontainer_magics_test")), base


def test_a_hot_file_read_after_close_keeps_no_fd(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A counter file's kept fd is closed with its cgroup; a sample taken after that (the sampler's last one,
    racing the clean-up) must not reopen and keep it: nothing would close it again (an fd leaked per run)."""
    from pycontainer_magics.linux.cgroups._io import Counters

    f = tmp_path / "memory.current"
    f.write_text("4096\n")

    hot = Counters({"memory.current": str(f)}, hot=("memory.current",))
    assert hot.read("memory.current") == b"4096\n" and len(_open_on(f)) == 1
    hot.close()
    f.write_text("8192\n")
    assert hot.read("memory.current") == b"8192\n"  # still readable
    assert _open_on(f) == [] and hot.kept() == 0
    hot.keep_open()  # (after close: nothing kept either)
    assert _open_on(f) == [] and hot.kept() == 0


def _open_on(f) -> list[str]:  # type: ignore[no-untyped-def]
    """Our fds open on `f` (not a count of all fds: another thread of this process may open one meanwhile)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}") == str(f):
                found.append(fd)
    return found


def test_counters_kept_open_ahead_are_read_with_no_open(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """keep_open() (the pool, for a cgroup made ahead) opens every counter file once; stats() then reads each with
    one pread — the files' current content, not what they held at the open — and opens nothing on the run's path. A
    file the kernel lacks is remembered as missing; one not kept is opened and closed at each read."""
    from pycontainer_magics.linux.cgroups._io import Counters

    a, b, gone = tmp_path / "memory.peak", tmp_path / "cpu.stat", tmp_path / "pids.peak"
    a.write_text("1\n")
    b.write_text("usage_usec 5\n")
    c = Counters({"memory.peak": str(a), "cpu.stat": str(b), "pids.peak": str(gone)})
    assert c.read("memory.peak") == b"1\n" and _open_on(a) == []  # not hot, not kept: open, read, close
    c.keep_open()
    assert c.kept() == 2 and len(_open_on(a)) == 1 and len(_open_on(b)) == 1
    a.write_text("2\n")
    gone.write_text("7\n")  # appeared after keep_open looked: still missing for this cgroup
    opened = []
    real_open = os.open
    try:
        os.open = lambda *args, **kw: opened.append(args[0]) or real_open(*args, **kw)  # type: ignore[assignment]
        assert c.read("memory.peak") == b"2\n" and c.text("cpu.stat") == "usage_usec 5\n"
        assert c.optional("pids.peak") is None and c.read("no.such.file") is None
    finally:
        os.open = real_open  # type: ignore[assignment]
    assert opened == []
    c.close()
    assert _open_on(a) == [] and _open_on(b) == [] and c.kept() == 0


def test_a_counter_read_is_not_closed_under_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """close() (the clean-up thread's cg.remove) waits for a read in progress on a kept fd: closed under it, that fd
    number could be another file's by the time of the pread (a figure read from the wrong file)."""
    import threading

    from pycontainer_magics.linux.cgroups import _io

    f = tmp_path / "memory.peak"
    f.write_text("4096\n")
    c = _io.Counters({"memory.peak": str(f)})
    c.keep_open()
    real = os.pread
    closer: list[threading.Thread] = []

    def pread(fd: int, n: int, off: int) -> bytes:
        if not closer:  # another thread closes the counters just as this read is under way
            closer.append(threading.Thread(target=c.close))
            closer[0].start()
            closer[0].join(0.2)
            assert closer[0].is_alive()  # it waits for this read
        return real(fd, n, off)

    os.pread = pread  # type: ignore[assignment]
    try:
        assert c.read("memory.peak") == b"4096\n"
    finally:
        os.pread = real
    closer[0].join(5)
    assert not closer[0].is_alive() and c.kept() == 0
