"""What root runs to delegate the project's cgroup parent to an unprivileged user.

Computed from the directories a run would touch — the hierarchy's parent in each controller it uses (v1:
memory, cpu, cpuacct, cpuset, pids, freezer, whichever are mounted; v2: the one parent with the controllers
enabled on the way down) — so that following it literally makes the next run's limits work:

- v1: make the parent in every controller hierarchy (cpuset levels get cpus and mems from above: a v1
  cpuset cgroup with none holds no task), then hand them to the user (`chown -R`).
- v2: make the parent, enable the controllers in every level root makes above it, hand the user the
  directory and its delegation files (cgroup.procs, cgroup.subtree_control, cgroup.threads: not its own
  limits), and move the process that will run containers into a leaf below it (`session-PID`): moving a
  process between cgroups needs write access to their common ancestor, which must be the delegated one.

Nothing here changes a cgroup: the commands are text for an administrator (or a test) to run.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass

from .hierarchy import PARENT_ENV, Hierarchy
from .v1 import HierarchyV1
from .v2 import WANTED, HierarchyV2


@dataclass(frozen=True)
class Delegation:
    commands: tuple[str, ...]  # shell commands for root, in order
    parent: str  # the value of PYCONTAINER_CGROUP_PARENT the user's processes need
    controllers: tuple[str, ...]  # what the parent is delegated in (v1: one directory each)

    @property
    def script(self) -> str:
        return " && ".join(self.commands)

    def one_line(self) -> str:
        return (f"as root run: sh -c '{self.script}'; then run with {PARENT_ENV}={self.parent} in the "
                f"environment (a shell: export {PARENT_ENV}={self.parent}; a notebook, no restart needed: "
                f"%env {PARENT_ENV}={self.parent}) (controllers: {', '.join(self.controllers)})")


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _levels(root: str, path: str) -> list[str]:
    """Directories from root's child down to path."""
    rel = os.path.relpath(path, root).split(os.sep)
    return [os.path.join(root, *rel[:i + 1]) for i in range(len(rel))]


def delegation(h: Hierarchy, uid: int | None = None, pid: int | None = None) -> Delegation:
    """The commands that delegate h's parent to `uid` (default: ours); on v2 they also move `pid` (default:
    this process) into the delegated subtree."""
    user = _user(os.getuid() if uid is None else uid)
    if isinstance(h, HierarchyV1):
        return _v1(h, user)
    if isinstance(h, HierarchyV2):
        return _v2(h, user, os.getpid() if pid is None else pid)
    raise TypeError(f"no delegation for {h!r}")


def _v1(h: HierarchyV1, user: str) -> Delegation:
    dirs = h.parent_paths
    cmds = [f"mkdir -p {' '.join(dirs)}"]
    cpuset_mount = h.mount_points.get("cpuset")
    if cpuset_mount is not None:
        for level in _levels(cpuset_mount, os.path.join(cpuset_mount, h.parent)):
            up = os.path.dirname(level)
            for f in ("cpuset.cpus", "cpuset.mems"):
                if not _read(os.path.join(level, f)):  # missing, or made empty: fill from above
                    cmds.append(f"cat {up}/{f} > {level}/{f}")
    cmds.append(f"chown -R {user} {' '.join(dirs)}")
    return Delegation(tuple(cmds), h.parent, tuple(h.available_controllers()))


def _v2(h: HierarchyV2, user: str, pid: int) -> Delegation:
    d = h.path
    levels = _levels(h.root, d)
    have = _read(os.path.join(h.root, "cgroup.subtree_control")).split()
    wanted = [c for c in WANTED if c in have]
    cmds = [f"mkdir -p {d}"]
    for level in levels[:-1]:  # the levels above ours pass the controllers down (ours: the user enables)
        enabled = _read(os.path.join(level, "cgroup.subtree_control")).split()
        todo = [c for c in wanted if c not in enabled]
        if todo:
            cmds.append(f"echo {' '.join('+' + c for c in todo or wanted)} > {level}/cgroup.subtree_control")
    files = " ".join(f"{d}/{f}" for f in ("cgroup.procs", "cgroup.subtree_control", "cgroup.threads"))
    cmds.append(f"chown {user} {d} {files}")
    session = f"{d}/session-{pid}"
    cmds += [f"mkdir -p {session}", f"echo {pid} > {session}/cgroup.procs"]
    return Delegation(tuple(cmds), h.parent, tuple(wanted))


def for_this_user(pid: int | None = None) -> Delegation | None:
    """The delegation a run by this (unprivileged) process would need: of $PYCONTAINER_CGROUP_PARENT when
    set, else of a parent of the user's own next to the project's (never the shared one root's containers
    use). None when no cgroup filesystem is mounted."""
    from . import DEFAULT_PARENT, open_hierarchy

    try:
        if os.environ.get(PARENT_ENV):
            h = open_hierarchy()
        else:
            h = open_hierarchy(f"{DEFAULT_PARENT}-{_user(os.getuid())}")
    except OSError:
        return None
    return delegation(h, pid=pid)


__all__ = ["Delegation", "delegation", "for_this_user"]
