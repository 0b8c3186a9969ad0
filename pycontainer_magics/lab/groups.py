"""Named cgroups for exploration (`%cgroup`): create with limits and the knobs outside CgroupLimits,
find (a named group, a container's cgroup, a running container), remove, prune.

Groups made here live under the project's parent like containers do, as `<parent>/named-<NAME>`
(a name `prune`'s owner rule never matches, so `%load_ext` keeps them). They are removed by `rm`, by
`prune`, and at interpreter exit (runtime/cleanup.py) for those this process created. Writing is only ever done
through a `Cgroup` of our hierarchy: anything outside our parent is refused with EPERM.
Running a process in a group and sampling it: group_run.py; the experiments: experiments.py.
"""

from __future__ import annotations

import errno
import os
import re

from ..linux.cgroups import Cgroup, CgroupError, CgroupLimits, Hierarchy, explore, open_hierarchy
from ..runtime import cleanup

NAMED_PREFIX = "named-"
NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,63}")


class Groups:
    """The named groups of one hierarchy (default: the project's, from `open_hierarchy()`)."""

    def __init__(self, hierarchy: Hierarchy | None = None) -> None:
        self._h = hierarchy
        self.created: set[str] = set()  # names this process created (removed at exit)

    @property
    def hierarchy(self) -> Hierarchy:
        if self._h is None:
            self._h = open_hierarchy()
        return self._h

    @property
    def version(self) -> str:
        return self.hierarchy.version

    @staticmethod
    def check_name(name: str) -> str:
        if not NAME_RE.fullmatch(name):
            raise CgroupError(errno.EINVAL, f"invalid group name {name!r}: a letter, then letters, digits, "
                              "'_' or '.' (up to 64)", name)
        return name

    def create(self, name: str, limits: CgroupLimits | None = None, *, memory_high: int | None = None,
               oom_group: bool | None = None, oom_kill_disable: bool | None = None) -> Cgroup:
        self.check_name(name)
        dirname = NAMED_PREFIX + name
        if dirname in self.hierarchy.list():
            raise CgroupError(errno.EEXIST, f"group {name!r} exists already", dirname)
        cg = self.hierarchy.create(dirname, limits)
        try:
            set_extra(cg, memory_high=memory_high, oom_group=oom_group, oom_kill_disable=oom_kill_disable)
        except BaseException:
            cg.remove()
            raise
        self.created.add(name)
        cleanup.at_exit(self.cleanup, cleanup.GROUPS)
        return cg

    def names(self) -> list[str]:
        """Named groups under our parent (any process's)."""
        return [n[len(NAMED_PREFIX):] for n in self.hierarchy.list() if n.startswith(NAMED_PREFIX)]

    def get(self, target: str) -> Cgroup:
        """A named group, a container's cgroup under our parent (its directory name), a running container
        (its name or id), or a path to one of those (absolute, or relative to the hierarchy root). Anything
        else: EPERM, nothing written."""
        h = self.hierarchy
        if "/" in target:
            rel = self._relative(target)
            parent = getattr(h, "parent", "")
            head, _, child = rel.rpartition("/")
            if head != parent or not child:
                raise CgroupError(errno.EPERM, f"refusing to touch {target!r}: only cgroups directly under "
                                  f"the project's parent {parent!r} can be written (reading is allowed: "
                                  "%cgroup tree, %cgroup ls)", target)
            return h.get(child)
        if NAME_RE.fullmatch(target) and NAMED_PREFIX + target in h.list():
            return h.get(NAMED_PREFIX + target)
        if target in h.list():
            return h.get(target)
        # a running container of this process, by name or id (`%cgroup set web --memory 80M`)
        from ..workloads.containers import DetachedContainerError, containers
        try:
            c = containers.get(target)
        except DetachedContainerError:
            c = None
        if c is not None and c.running and c.id in h.list():
            return h.get(c.id)
        raise CgroupError(errno.ENOENT, f"no group or running container {target!r} under "
                          f"{getattr(h, 'parent', '')!r} (see %cgroup list, %container ps)", target)

    def _relative(self, path: str) -> str:
        h = self.hierarchy
        root = getattr(h, "root", "/sys/fs/cgroup")
        p = os.path.normpath(path)
        if p.startswith("/"):
            mps = sorted(getattr(h, "mount_points", {}).values(), key=len, reverse=True) or [root]
            for mp in [*mps, root]:
                if p == mp or p.startswith(mp.rstrip("/") + "/"):
                    return p[len(mp):].strip("/")
            return p.strip("/")
        return p.strip("/")

    def remove(self, name: str) -> None:
        cg = self.get(name)
        cg.remove()
        self.created.discard(cg.name[len(NAMED_PREFIX):] if cg.name.startswith(NAMED_PREFIX) else cg.name)

    def prune(self) -> list[str]:
        """Remove every named group that holds no process, and the cgroups of dead owners (containers a
        killed kernel left). Returns what was removed."""
        removed = []
        for name in self.names():
            cg = self.hierarchy.get(NAMED_PREFIX + name)
            if cg.procs():
                continue
            cg.remove()
            self.created.discard(name)
            removed.append(name)
        removed += self.hierarchy.prune()
        return removed

    def cleanup(self) -> None:
        """At exit: remove the groups this process created (killing what is left in them)."""
        for name in sorted(self.created):
            try:
                self.hierarchy.get(NAMED_PREFIX + name).remove()
            except OSError:
                pass
        self.created.clear()
        try:
            self.hierarchy.remove_parent()
        except OSError:
            pass


def set_extra(cg: Cgroup, *, memory_high: int | None = None, oom_group: bool | None = None,
              oom_kill_disable: bool | None = None, memory_high_max: bool = False) -> None:
    """The knobs outside CgroupLimits (one version each: a clear error on the other)."""
    if memory_high is not None or memory_high_max:
        explore.set_memory_high(cg, None if memory_high_max else memory_high)
    if oom_group is not None:
        explore.set_oom_group(cg, oom_group)
    if oom_kill_disable is not None:
        explore.set_oom_kill_disable(cg, oom_kill_disable)


__all__ = ["NAMED_PREFIX", "Groups", "set_extra"]
