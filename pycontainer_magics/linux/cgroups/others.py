"""Cgroups that other tools make for work we started and do not remove: podman's cgroupfs manager (its
`libpod_parent`), the OCI conformance suite's fixed paths (`testdir`, `cgrouptest`). Where each cgroup
hierarchy is mounted, and the removal of an empty subtree: rmdir only, deepest first — a cgroup holding a
process (or one with such a cgroup below it) stays."""

from __future__ import annotations

import contextlib
import os
import time

from ._io import rmdir
from ._mounts import read_mounts, under, visible_mounts
from .base import CgroupError


def hierarchy_mounts(root: str = "/sys/fs/cgroup") -> list[str]:
    """Where every cgroup hierarchy visible here is mounted under `root` (v1 controllers, named ones such as
    systemd's, the v2 one)."""
    return sorted(mp for mp, m in visible_mounts(read_mounts()).items()
                  if m.fstype in ("cgroup", "cgroup2") and under(mp, root))


def remove_empty_tree(path: str, deadline: float) -> None:
    """rmdir `path` and every cgroup below it, deepest first; what is in use stays."""
    for d, _, _ in os.walk(path, topdown=False):
        remove_empty(d, deadline)


def remove_empty(path: str, deadline: float) -> None:
    """rmdir one cgroup if it is empty; one still being emptied (a process exiting) is retried until `deadline`
    (time.monotonic()), one in use or with cgroups below it stays."""
    with contextlib.suppress(CgroupError):
        rmdir(path, timeout=max(0.0, deadline - time.monotonic()))
