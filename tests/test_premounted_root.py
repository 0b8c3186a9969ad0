"""Mounts made ahead (holder.premount): after a Python cell, the launch helper makes in the next holder's mount
namespace what that cell's PID 1 would mount without needing its own PID or cgroup namespace — the /dev tmpfs with
its nodes, links, pts, shm and mqueue, sysfs and the masks under /sys — and pivots into the root in a copy of that
namespace, so the next Python cell like it enters that copy and mounts only /proc, its masks and the cgroup mounts.
What a cell sees must not change: the same mounts, sysfs of its own network namespace; a cell whose plan asks for
other mounts (or a command) gets a root without them; the helper is back in its own namespaces; nothing is left on
the host."""

from __future__ import annotations

import os

import pytest
from helpers import host_clean, wait_for  # noqa: F401

from pycontainer_magics.linux.cgroups import detect_layout
from pycontainer_magics.runtime import ContainerSpec, run
from pycontainer_magics.runtime.pool import pool
from pycontainer_magics.runtime.zygote import zygote

pytestmark = [pytest.mark.root, pytest.mark.cgroup2,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (pooled holders, direct PID 1)")]

MiB = 2**20

# What the cell reports of its root: the mount points under /dev and /sys (one line each: a mount made twice, or
# one left out, shows), the filesystem types, the network devices sysfs lists, a masked path of each kind.
LOOK = """
import os, stat
mounts = [line.split() for line in open("/proc/self/mountinfo")]
points = sorted(m[4] for m in mounts if m[4].startswith(("/dev", "/sys", "/proc")))
kinds = {m[4]: m[m.index("-") + 1] for m in mounts}
print("points", " ".join(points))
print("types", kinds["/dev"], kinds["/dev/pts"], kinds["/dev/mqueue"], kinds["/sys"], kinds["/proc"])
print("net", " ".join(sorted(os.listdir("/sys/class/net"))))
print("firmware", sorted(os.listdir("/sys/firmware")) == [], "keys", stat.S_ISCHR(os.stat("/proc/keys").st_mode))
print("null", os.path.exists("/dev/null") and open("/dev/null", "w").write("x"))
print("dev", os.stat("/dev").st_dev, os.stat("/sys").st_dev)
print("mntns", os.stat("/proc/self/ns/mnt").st_ino)
limit = [f for f in ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max") if os.path.exists(f)]
print("cgroup", kinds["/sys/fs/cgroup"], os.statvfs("/sys/fs/cgroup").f_flag & os.ST_RDONLY,
      open(limit[0]).read().strip() if limit else "-", open("/proc/self/cgroup").read().split(":")[-1].strip())
"""


def _made_ahead(pid: int) -> tuple[str, list[str]]:
    """Where a holder's mounts made ahead are (in its mount namespace), and their mount points below it."""
    with open(f"/proc/{pid}/mountinfo") as f:
        points = [line.split()[4] for line in f]
    dev = [m for m in points if m.endswith("/ahead/dev")]
    assert len(dev) == 1, points  # the /dev tmpfs, made by the helper in the holder's mount namespace
    ahead = dev[0][: -len("/dev")]
    return ahead, sorted(m[len(ahead):] for m in points if m.startswith(ahead + "/"))


def _ready_holder() -> int:
    assert wait_for(lambda: pool.ready_holder() is not None and not pool._busy), "no holder prepared"
    ready = pool.ready_holder()
    assert ready is not None
    return ready[0]


def _cell(**kw: object):  # type: ignore[no-untyped-def]
    r = run(ContainerSpec(python_code=LOOK, memory=64 * MiB, **kw), python_globals={})  # type: ignore[arg-type]
    assert r.exit_code == 0, r.stdout + r.stderr
    return dict(line.split(" ", 1) for line in r.stdout.splitlines())


@pytest.mark.usefixtures("host_clean")
def test_a_python_cells_next_holder_has_dev_and_sys_mounted_ahead_and_the_cell_sees_the_same_root() -> None:
    pool.drain()
    made = _cell()  # its holder was made on its path: PID 1 mounted everything
    holder = _ready_holder()
    where, ahead = _made_ahead(holder)
    assert {"/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/dev/null", "/sys", "/sys/firmware"} <= set(ahead), ahead
    assert not any(m.startswith("/proc") for m in ahead), ahead  # PID 1's: its PID namespace
    # The cgroup filesystems are PID 1's too (its cgroup namespace); the tmpfs they go on is not (v1)
    assert not any(m.startswith("/sys/fs/cgroup/") for m in ahead), ahead
    assert ("/sys/fs/cgroup" in ahead) == (detect_layout() != "unified"), ahead
    # The helper went back to its own namespaces.
    z = zygote().pid
    for ns in ("mnt", "net", "ipc"):
        assert os.stat(f"/proc/{z}/ns/{ns}").st_ino == os.stat(f"/proc/self/ns/{ns}").st_ino, ns
    # The cell's /dev and /sys are those made ahead (moved into its root), and it sees the same root as the first:
    served = pool.served.copy()
    at = f"/proc/{holder}/root{where}"  # (their device numbers: unique while the holder lives)
    made_ahead = f"{os.stat(at + '/dev').st_dev} {os.stat(at + '/sys').st_dev}"
    # and the root was pivoted into ahead too (holder.pivoted_root): the cell's PID 1 enters that mount namespace.
    with pool._lock:
        held = [s.holder.root_ns for s in pool._slots.values() if s.holder is not None and s.holder.pid == holder]
    assert held and held[0] is not None, "no mount namespace with the root pivoted into ahead"
    pivoted = str(os.fstat(held[0]).st_ino)
    assert pivoted != str(os.stat(f"/proc/{holder}/ns/mnt").st_ino)  # (a copy: the holder keeps its own view)
    again = _cell()
    assert pool.served["pooled"] == served["pooled"] + 1, pool.served
    assert again.pop("dev") == made_ahead, (again, made_ahead)
    assert again.pop("mntns") == pivoted, (again, pivoted)
    made.pop("mntns")
    made.pop("dev")
    assert again == made, (again, made)  # the same mounts (none twice), types, masks, and
    assert again["net"] == "lo", again  # sysfs of the cell's own network namespace
    assert again["firmware"] == "True keys True", again
    # its own cgroup, read-only, in its own cgroup namespace (v1: a tmpfs made ahead, the controllers mounted on it)
    fs = "cgroup2" if detect_layout() == "unified" else "tmpfs"
    assert again["cgroup"] == f"{fs} 1 {64 * MiB} /", again


@pytest.mark.usefixtures("host_clean")
def test_a_cell_that_asks_for_other_mounts_or_a_command_gets_a_root_without_those_made_ahead() -> None:
    pool.drain()
    _cell()
    _ready_holder()
    # /sys/firmware unmasked: the holder's plan is the same, its root has the mask this cell does not want.
    served = pool.served.copy()
    unmasked = _cell(unmask=("/sys/firmware",))
    assert pool.served["pooled"] == served["pooled"] + 1, pool.served
    assert unmasked["firmware"].startswith("False"), unmasked
    assert "/sys/firmware" not in unmasked["points"].split(), unmasked
    # A command after a Python cell takes its holder too; its PID 1 mounts on a fresh bind of the root.
    _cell()
    _ready_holder()
    served = pool.served.copy()
    r = run(ContainerSpec(command=("sh", "-c", "grep -c ' /dev ' /proc/self/mountinfo; ls /sys/class/net; "
                                   "echo x > /dev/null && ls /sys/firmware | wc -l"), memory=64 * MiB))
    assert pool.served["pooled"] == served["pooled"] + 1, pool.served
    assert r.exit_code == 0 and r.stdout.split() == ["1", "lo", "0"], r.stdout + r.stderr
    pool.drain()


def test_only_what_needs_no_pid1_and_meets_nothing_left_to_it_is_made_ahead() -> None:
    """rootfs.ahead_ops on a plan as build_plan makes it: /dev and /sys with what lies in them (the tmpfs at
    /sys/fs/cgroup and its directories too), not /proc, nor the cgroup filesystems (PID 1's cgroup namespace) nor the
    read-only remount after them, nor a bind of a host path, nor a tmpfs over what a volume mounted before it. (No root
    needed.)"""
    from pycontainer_magics.runtime.rootfs import MountOp, RootfsPlan, ahead_ops, ahead_tops

    ops = (MountOp("mount", "/proc", "proc", "proc"), MountOp("mount", "/dev", "tmpfs", "tmpfs"),
           MountOp("devnode", "/dev/null", "/dev/null"), MountOp("symlink", "/dev/fd", "/proc/self/fd"),
           MountOp("mkdir", "/dev/mqueue"), MountOp("bind", "/dev/mqueue", "/dev/mqueue"),
           MountOp("mount", "/sys", "sysfs", "sysfs"), MountOp("mount", "/sys/fs/cgroup", "tmpfs", "tmpfs"),
           MountOp("mkdir", "/sys/fs/cgroup/cpu"), MountOp("mount", "/sys/fs/cgroup/cpu", "cgroup", "cgroup"),
           MountOp("mkdir", "/sys/fs/cgroup/memory"), MountOp("mount", "/sys/fs/cgroup/memory", "cgroup", "cgroup"),
           MountOp("remount_ro", "/sys/fs/cgroup"), MountOp("mount", "/sys/fs/cgroup2", "cgroup2", "cgroup2"),
           MountOp("bind", "/sys/kernel/x", "/srv/volume"), MountOp("mount", "/sys/kernel/x/y", "tmpfs", "tmpfs"),
           MountOp("mask", "/proc/kcore"), MountOp("mask", "/sys/firmware"), MountOp("readonly", "/proc/sys"),
           MountOp("mount", "/devices", "tmpfs", "tmpfs"))
    plan = RootfsPlan(lower="/", mountpoints=(), ops=ops, writable=True)
    ahead = ahead_ops(plan)
    assert [ops[i].target for i in ahead] == ["/dev", "/dev/null", "/dev/fd", "/dev/mqueue", "/sys", "/sys/fs/cgroup",
                                              "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/memory", "/sys/firmware"]
    assert [ops[i].action for i in ahead][5:8] == ["mount", "mkdir", "mkdir"]
    assert ahead_tops(plan, ahead) == ("/dev", "/sys")
    # Nothing in /dev without the /dev mount itself made ahead (its nodes would land in the image's /dev).
    no_dev = RootfsPlan(lower="/", mountpoints=(), ops=(MountOp("bind", "/dev", "/dev"), *ops[2:5]), writable=True)
    assert ahead_ops(no_dev) == ()


@pytest.mark.usefixtures("host_clean")
def test_a_python_cell_that_binds_a_host_path_finds_it_again_when_run_again(tmp_path: object) -> None:
    """A bind's source is a host path, not found from inside a root pivoted into ahead: a cell with a volume (or on a
    network: its hosts file) that takes the holder prepared after a plain cell, root pivoted into, gets the host's
    directory all the same (its PID 1 does not enter that root), and its own next holder's root is not pivoted into
    for it."""
    import pathlib

    from pycontainer_magics.runtime.spec import Mount

    host = pathlib.Path(str(tmp_path)) / "shared"
    host.mkdir()
    (host / "from-host").write_text("here")
    pool.drain()
    # On a directory the host has: no mount point made for it, so the holder's plan is the plain cell's (it fits).
    target = next(d for d in ("/mnt", "/opt", "/srv", "/media", "/home") if os.path.isdir(d))
    code = f"import os; print(sorted(os.listdir({target!r}))); open({target!r} + '/n', 'a').write('x')"
    spec = ContainerSpec(python_code=code, memory=64 * MiB, mounts=(Mount(str(host), target),))
    plain = ContainerSpec(python_code="pass", memory=64 * MiB)
    for i in range(3):
        assert run(plain, python_globals={}).exit_code == 0
        _ready_holder()
        with pool._lock:
            assert any(s.holder is not None and s.holder.root_ns is not None for s in pool._slots.values())
        served = pool.served["pooled"]
        r = run(spec, python_globals={})
        assert pool.served["pooled"] == served + 1  # (that holder)
        assert r.exit_code == 0, r.stdout + r.stderr
        assert "from-host" in r.stdout, r.stdout
        assert (host / "n").read_text() == "x" * (i + 1)  # written to the host's directory, not the layer
        _ready_holder()
        with pool._lock:
            assert all(s.holder is None or s.holder.root_ns is None for s in pool._slots.values())
    pool.drain()
