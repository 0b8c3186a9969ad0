"""The eight namespace types: clone flags, /proc/PID/ns names, and reading a process's inodes."""

from __future__ import annotations

import os

# clone(2) flags
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# Our names (as in /proc/PID/ns, except "mount" is spelled the way users say it) -> (proc name, flag)
NAMESPACES: dict[str, tuple[str, int]] = {
    "mount": ("mnt", CLONE_NEWNS),
    "uts": ("uts", CLONE_NEWUTS),
    "ipc": ("ipc", CLONE_NEWIPC),
    "pid": ("pid", CLONE_NEWPID),
    "net": ("net", CLONE_NEWNET),
    "user": ("user", CLONE_NEWUSER),
    "cgroup": ("cgroup", CLONE_NEWCGROUP),
    "time": ("time", CLONE_NEWTIME),
}
NAMESPACE_KINDS: tuple[str, ...] = tuple(NAMESPACES)
ALIASES = {"mnt": "mount", "network": "net", "hostname": "uts"}


def canonical(name: str) -> str:
    """'mnt' -> 'mount', 'network' -> 'net'; unknown names are returned unchanged (the caller checks)."""
    n = name.strip().lower()
    return ALIASES.get(n, n)


def flags_for(kinds: list[str] | tuple[str, ...] | frozenset[str]) -> int:
    f = 0
    for k in kinds:
        f |= NAMESPACES[k][1]
    return f


def ns_inode(pid: int | str, kind: str) -> int | None:
    """Inode of /proc/PID/ns/<kind> (for pid and time, the process's own, not *_for_children)."""
    return link_inode(f"/proc/{pid}/ns/{NAMESPACES[kind][0]}")


def link_inode(path: str) -> int | None:
    """The namespace inode a /proc/PID/ns link names ("net:[4026531840]"), the st_ino a stat of it gives: read from
    the link, at half a stat's cost (a cell reads sixteen of them, eight in PID 1); None if it cannot be read."""
    try:
        link = os.readlink(path)
        return int(link[link.index("[") + 1:-1])
    except (OSError, ValueError):
        return None


def ns_inodes(pid: int | str = "self") -> dict[str, int | None]:
    return {k: ns_inode(pid, k) for k in NAMESPACE_KINDS}


def ns_path(pid: int | str, kind: str) -> str:
    return f"/proc/{pid}/ns/{NAMESPACES[kind][0]}"
