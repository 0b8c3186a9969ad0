"""Reading /proc/self/mountinfo: which cgroup filesystems are mounted where."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

# Controllers a cgroup v1 mount can carry (a mount with none of these is a named hierarchy such as
# name=systemd, which limits nothing).
V1_CONTROLLERS = frozenset(
    (
        "cpu cpuacct cpuset memory devices freezer net_cls blkio perf_event net_prio hugetlb pids rdma misc"
    ).split()
)

_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \040 etc.
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


@dataclass(frozen=True)
class Mount:
    mount_point: str
    root: str  # the directory of the filesystem that is mounted (not "/" inside a cgroup namespace/bind)
    fstype: str
    super_options: tuple[str, ...]

    @property
    def controllers(self) -> frozenset[str]:
        """v1: the controllers this hierarchy carries."""
        return frozenset(o for o in self.super_options if o in V1_CONTROLLERS)


def read_mounts(mountinfo: str = "/proc/self/mountinfo") -> list[Mount]:
    """Every mount, in mountinfo order (a later mount at the same point hides an earlier one)."""
    with open(mountinfo, encoding="utf-8", errors="surrogateescape") as f:
        text = f.read()
    out: list[Mount] = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        lf = left.split()
        rf = right.split()
        if len(lf) < 5 or len(rf) < 3:
            continue
        out.append(
            Mount(
                mount_point=_unescape(lf[4]),
                root=_unescape(lf[3]),
                fstype=rf[0],
                super_options=tuple(rf[2].split(",")),
            )
        )
    return out


def visible_mounts(mounts: list[Mount]) -> dict[str, Mount]:
    """mount point -> the mount that is visible there (the last one mounted)."""
    top: dict[str, Mount] = {}
    for m in mounts:
        top[m.mount_point] = m
    return top


def under(path: str, root: str) -> bool:
    path = os.path.normpath(path)
    root = os.path.normpath(root)
    return path == root or path.startswith(root.rstrip("/") + "/")
