"""cgroups: one interface (`Cgroup`, `CgroupLimits`, `CgroupStats`) over a v1 and a v2 backend.

    layout = detect_layout()                 # "unified" | "hybrid" | "legacy" | "none"
    h = open_hierarchy()                     # HierarchyV1 or HierarchyV2, parent "pycontainer_magics"
    cg = h.create(new_name(), CgroupLimits(memory=50 * 2**20, pids_max=20))
    ...                                      # child writes b"0" into each of cg.join_files()
    cg.stats(); cg.oom_kill_count(); cg.remove()
    h.prune()                                # remove cgroups whose owner pid is gone

Only the project's own parent directory is ever written to (and its children created and removed).
"""

from __future__ import annotations

import errno
import os
from typing import Literal

from ._mounts import read_mounts, under, visible_mounts
from .base import Cgroup, CgroupError, CgroupLimits, CgroupStats
from .hierarchy import (
    DEFAULT_PARENT,
    PARENT_ENV,
    Hierarchy,
    new_name,
    owner_alive,
    owner_pid,
)
from .v1 import CgroupV1, HierarchyV1
from .v2 import CgroupV2, HierarchyV2, shares_to_weight

Layout = Literal["unified", "hybrid", "legacy", "none"]

__all__ = [
    "Cgroup",
    "CgroupError",
    "CgroupLimits",
    "CgroupStats",
    "CgroupV1",
    "CgroupV2",
    "DEFAULT_PARENT",
    "PARENT_ENV",
    "Hierarchy",
    "HierarchyV1",
    "HierarchyV2",
    "Layout",
    "detect_layout",
    "new_name",
    "open_hierarchy",
    "owner_alive",
    "owner_pid",
    "shares_to_weight",
]


def detect_layout(root: str = "/sys/fs/cgroup", mountinfo: str = "/proc/self/mountinfo") -> Layout:
    """Which cgroup layout is mounted at root.

    unified: cgroup2 at root. hybrid: v1 controller hierarchies under root plus a cgroup2 mount under it
    (systemd's `unified/`). legacy: v1 hierarchies only. none: no cgroup filesystem.
    """
    root = os.path.normpath(root)
    try:
        mounts = read_mounts(mountinfo)
    except OSError:
        return "none"
    top = visible_mounts(mounts)
    at_root = top.get(root)
    if at_root is not None and at_root.fstype == "cgroup2":
        return "unified"
    if at_root is not None and at_root.fstype == "cgroup":
        return "legacy"
    below = [m for p, m in top.items() if under(p, root) and p != root]
    has_v1 = any(m.fstype == "cgroup" and m.controllers for m in below)
    has_v2 = any(m.fstype == "cgroup2" for m in below)
    if has_v1:
        return "hybrid" if has_v2 else "legacy"
    return "none"


def open_hierarchy(parent_name: str = DEFAULT_PARENT, root: str = "/sys/fs/cgroup") -> Hierarchy:
    """The project's hierarchy for the mounted layout: v2 on a unified host, v1 on hybrid and legacy.

    $PYCONTAINER_CGROUP_PARENT, when set, replaces parent_name (a path relative to each hierarchy root,
    e.g. a delegated subtree for rootless use). Nothing is created until the first `create()`.
    """
    layout = detect_layout(root)
    if layout == "unified":
        return HierarchyV2(parent_name, root)
    if layout in ("hybrid", "legacy"):
        return HierarchyV1(parent_name, root, read_mounts())
    raise CgroupError(errno.ENOENT, "no cgroup filesystem is mounted", root)
