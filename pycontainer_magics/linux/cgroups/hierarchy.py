"""What both backends share: the parent directory of our own, cgroup names, listing and pruning.

The project's cgroups live only under a parent of its own (default `pycontainer_magics`, overridden by
`PYCONTAINER_CGROUP_PARENT`, a path relative to each hierarchy root). Names look like
`<ownerpid>-<n>-<hex>`: the owner pid lets a later process prune what a killed kernel left behind.
"""

from __future__ import annotations

import builtins
import errno
import itertools
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable

from .. import proc
from .base import Cgroup, CgroupError, CgroupLimits

PARENT_ENV = "PYCONTAINER_CGROUP_PARENT"
DEFAULT_PARENT = "pycontainer_magics"

_HEX = re.compile(r"[0-9a-f]+")
_counter = itertools.count(1)


def new_name(prefix: str = "") -> str:
    """A fresh cgroup name `<prefix><pid>-<n>-<hex>` owned by this process."""
    return f"{prefix}{os.getpid()}-{next(_counter)}-{os.urandom(4).hex()}"


def owner_pid(name: str) -> int | None:
    """The owner pid encoded in a name (any prefix before the pid is allowed), or None."""
    parts = name.rsplit("-", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not _HEX.fullmatch(parts[2]):
        return None
    m = re.search(r"(\d+)$", parts[0])
    return int(m.group(1)) if m else None


def owner_alive(name: str) -> bool:
    """Default `is_alive` for prune: is the pid in the name a live process (in our pid namespace)?

    Names that do not follow our pattern are reported alive, so prune never removes them.
    A zombie owner counts as dead.
    """
    pid = owner_pid(name)
    if pid is None or pid <= 0:
        return True
    return proc.alive(pid)


def check_name(name: str) -> str:
    """A cgroup name must be one plain path component: nothing outside our parent can be reached."""
    if not name or "/" in name or name in (".", "..") or "\0" in name:
        raise CgroupError(errno.EINVAL, f"invalid cgroup name {name!r}", name)
    return name


def parent_rel(parent_name: str) -> str:
    """The parent path relative to a hierarchy root: $PYCONTAINER_CGROUP_PARENT or parent_name."""
    rel = os.environ.get(PARENT_ENV) or parent_name
    rel = os.path.normpath(rel.strip("/"))
    if not rel or rel == "." or rel.startswith(".."):
        raise CgroupError(errno.EINVAL, f"invalid cgroup parent {rel!r}", rel)
    return rel


def nearest_existing(path: str) -> str:
    while not os.path.exists(path):
        up = os.path.dirname(path)
        if up == path:
            break
        path = up
    return path


class Hierarchy(ABC):
    """The project's place in one cgroup tree: create, list, get and prune our cgroups."""

    version: str

    @abstractmethod
    def create(self, name: str, limits: CgroupLimits | None = None) -> Cgroup:
        """Create cgroup `name` with `limits`. On failure remove what was created and raise CgroupError."""

    @abstractmethod
    def list(self) -> builtins.list[str]:
        """Names of the cgroups under our parent."""

    @abstractmethod
    def get(self, name: str) -> Cgroup:
        """An existing cgroup of ours (CgroupError ENOENT if there is none)."""

    @abstractmethod
    def available_controllers(self) -> builtins.list[str]: ...

    @property
    @abstractmethod
    def writable(self) -> bool:
        """Can this process create cgroups under our parent?"""

    @property
    @abstractmethod
    def parent_paths(self) -> builtins.list[str]:
        """The directories of our parent (one per v1 hierarchy, one on v2)."""

    def new_name(self, prefix: str = "") -> str:
        return new_name(prefix)

    def prune(self, is_alive: Callable[[str], bool] = owner_alive) -> builtins.list[str]:
        """Remove our cgroups whose owner is gone; returns the removed names."""
        removed = []
        for name in self.list():
            if is_alive(name):
                continue
            self.get(name).remove()
            removed.append(name)
        return removed

    def remove_parent(self) -> bool:
        """Remove our (empty) parent directories; False if children remain. For tests and uninstall."""
        if self.list():
            return False
        from ._io import rmdir

        for p in self.parent_paths:
            if os.path.isdir(p):
                rmdir(p)
        return True

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.version} {self.parent_paths}>"
