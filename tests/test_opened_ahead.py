"""What the pool opens ahead for the next Python cell, so that its path opens nothing: the cgroup's counter and join
files (Cgroup.keep_open) and the holder's namespaces PID 1 enters (Holder.namespaces). The run takes them (once), a
cell still runs in the holder's namespaces and cgroup, and whatever was opened and not taken is closed when the
holder or cgroup goes."""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest
from helpers import host_clean, wait_for  # noqa: F401

from pycontainer_magics.runtime import ContainerSpec, run
from pycontainer_magics.runtime.pool import PYTHON, pool

pytestmark = [pytest.mark.root, pytest.mark.cgroup2,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (pooled holders, direct PID 1)")]

MiB = 2**20
SPEC = ContainerSpec(python_code="import socket; print(socket.gethostname())", hostname="ahead", memory=64 * MiB)


def _open_on(prefix: str) -> list[str]:
    """What this process's fds point at, of those whose link starts with `prefix` (net:[...], /sys/fs/cgroup/...)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith(prefix):
            found.append(link)
    return found


def _python_slot():  # type: ignore[no-untyped-def]
    assert wait_for(lambda: not pool._busy and not pool._wanted and (None, PYTHON) in pool.holders()), "none ready"
    holder = pool.holders()[(None, PYTHON)]
    ready = pool.ready_cgroup(None, PYTHON)
    assert ready is not None
    return holder, ready[1]


@pytest.mark.usefixtures("host_clean")
def test_the_next_python_cell_finds_its_namespaces_and_cgroup_files_open_and_takes_them() -> None:
    pool.drain()
    first = run(SPEC, python_globals={})
    assert first.exit_code == 0, first.stderr
    holder, cg = _python_slot()
    assert holder.namespaces is not None  # net, uts, ipc, mnt (+ time) of the holder, opened by the pool
    ns_fds, _ = holder.namespaces
    inodes = {os.fstat(fd).st_ino for fd, _ in ns_fds}
    assert {os.stat(f"/proc/{holder.pid}/ns/{k}").st_ino for k in ("uts", "net", "ipc", "mnt")} <= inodes
    assert cg._counters._join is not None and cg._counters.kept() >= 4  # join files and counters open
    tasks = {os.readlink(f"/proc/self/fd/{fd}") for fd in cg._counters._join}
    assert tasks == set(cg.join_files())

    served = pool.served["pooled"]
    # The run itself opens neither (the pool's thread, preparing the next, may).
    from pycontainer_magics.linux.cgroups import _io
    from pycontainer_magics.runtime import cell_fork

    opened: list[str] = []
    here = threading.get_ident()
    real_ns, real_join = cell_fork.open_holder_namespaces, _io.open_for_join

    def ns_opened(*a: Any) -> Any:
        if threading.get_ident() == here:
            opened.append("namespaces")
        return real_ns(*a)

    def join_opened(*a: Any) -> Any:
        if threading.get_ident() == here:
            opened.append("join files")
        return real_join(*a)

    cell_fork.open_holder_namespaces, _io.open_for_join = ns_opened, join_opened  # type: ignore[assignment]
    try:
        second = run(SPEC, python_globals={})
    finally:
        cell_fork.open_holder_namespaces, _io.open_for_join = real_ns, real_join  # type: ignore[assignment]
    assert opened == []
    assert second.exit_code == 0 and second.stdout.strip() == "ahead", second.stderr
    assert pool.served["pooled"] == served + 1  # that holder and cgroup served it
    assert second.id == cg.name and holder.namespaces is None and cg._counters._join is None  # taken, once
    # It ran in the holder's namespaces (those fds), in that cgroup.
    ns = {row.kind: row.container_inode for row in second.namespaces}
    assert ns["uts"] in inodes and ns["net"] in inodes
    assert second.peak_memory and second.peak_memory > 0


@pytest.mark.usefixtures("host_clean")
def test_what_was_opened_ahead_and_not_taken_is_closed_with_the_holder_and_cgroup() -> None:
    pool.drain()
    assert run(SPEC, python_globals={}).exit_code == 0
    holder, cg = _python_slot()
    assert holder.namespaces is not None and cg._counters._join is not None
    ns_links = [os.readlink(f"/proc/self/fd/{fd}") for fd, _ in holder.namespaces[0]]
    cg_dir = os.path.dirname(cg.join_files()[0])
    assert _open_on(cg_dir) and all(link in _open_on(link.split(":")[0] + ":") for link in ns_links)
    pool.drain()  # (what %unload_ext and the process's exit do)
    assert wait_for(lambda: not _open_on(cg_dir))  # the cgroup's files: closed with its removal
    assert not [link for link in ns_links if link in _open_on(link.split(":")[0] + ":")]
