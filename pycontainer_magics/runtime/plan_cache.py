"""A re-run cell's launch plan, reused while everything it was planned from is the same.

plan_launch (run.py) turns a spec into what the holder and PID 1 do. For a cell run again — a lecture re-runs its
cells, and the magic keeps one spec per line — that is the same work with the same answer: 0.4 ms of every Python
cell, its memory cold after the last cell's fork. Reused only where every input can be compared cheaply:

- the host image as root, with no mount of the host's files (no --rootfs, volume, bind or --user: their sources are
  looked up on the host), not in a pod, not on a network (its hosts file is the run's), no --userns remap;
- the same spec object and the same caller's globals;
- the same effective uid, working directory and environment (the cell's environment is the caller's, and the state
  directories come from it);
- the same masks over the host (host_masks.masks returns the same scan while the host is unchanged);
- the same answers from the host to the plan's lookups (/proc, /dev, /sys, /dev/mqueue, the --tmpfs targets);
- a cgroup of the same version and controllers. The cgroup's own mount operations name its directories: they are
  made again for each run and put in place of the last run's.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import os
import threading
from dataclasses import dataclass
from typing import Any

from ..linux.cgroups import Cgroup
from . import host_masks, rootfs
from .holder import HolderPlan
from .launch import Launch
from .spec import ContainerSpec
from .state import data_dirs


@dataclass
class _Entry:
    spec: ContainerSpec
    python_globals: dict[str, Any] | None
    facts: tuple[Any, ...]
    masks: tuple[tuple[str, str], ...]
    hp: HolderPlan
    launch: Launch
    cgroup_ops: tuple[int, int]  # where the cgroup's mount operations are in launch.plan.ops (start, end)


_entries: collections.OrderedDict[int, _Entry] = collections.OrderedDict()  # by id(spec), the last few
_lock = threading.Lock()  # (the pool's thread plans a parked PID 1's launch too)
KEPT = 8


def eligible(spec: ContainerSpec) -> bool:
    return (spec.image == "host" and not spec.rootfs and not spec.mounts and spec.user is None and spec.pod is None
            and spec.network in ("none", "host") and spec.userns != "remap" and os.geteuid() == 0)


def _environment() -> Any:
    data = getattr(os.environ, "_data", None)  # (the bytes mapping under os.environ: copied in C)
    return data.copy() if isinstance(data, dict) else dict(os.environ)


def _facts(spec: ContainerSpec, cg: Cgroup | None) -> tuple[Any, ...]:
    view = rootfs.LayerView("/")
    looked_up = ("/proc", "/dev", "/sys", *(t.target for t in spec.tmpfs))
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = "/"
    return (os.geteuid(), cwd, _environment(), os.uname().nodename,
            tuple(view.lexists(rootfs.secure_join("/", p)) for p in looked_up), os.path.isdir("/dev/mqueue"),
            cg.version if cg is not None else None, tuple(sorted(cg.paths)) if cg is not None else None)


def _masks(spec: ContainerSpec, cwd: str) -> tuple[tuple[str, str], ...]:
    targets = [m.target for m in spec.mounts] + [t.target for t in spec.tmpfs] + [spec.workdir or "/"]
    return host_masks.masks(cwd=cwd, mount_targets=targets, data_dirs=data_dirs(), unmask=spec.unmask)


def _cgroup_ops(cg: Cgroup | None) -> tuple[rootfs.MountOp, ...]:
    return tuple(rootfs.cgroup_ops(cg.version if cg is not None else None, cg.paths if cg is not None else {}))


def _span(ops: tuple[rootfs.MountOp, ...], part: tuple[rootfs.MountOp, ...]) -> tuple[int, int] | None:
    """Where `part` is in `ops`, if it is there exactly once."""
    n = len(part)
    found = [i for i in range(len(ops) - n + 1) if ops[i:i + n] == part] if n else []
    return (found[0], found[0] + n) if len(found) == 1 else None


def lookup(spec: ContainerSpec, cg: Cgroup | None,
           python_globals: dict[str, Any] | None) -> tuple[HolderPlan, Launch] | None:
    """The plan of a run of `spec` in `cg` made from the last one's, if nothing it depends on changed; else None."""
    with _lock:
        e = _entries.get(id(spec))
    if e is None or e.spec is not spec or e.python_globals is not python_globals or e.launch.plan is None:
        return None
    facts = _facts(spec, cg)
    if facts != e.facts or _masks(spec, facts[1]) is not e.masks:
        return None
    start, end = e.cgroup_ops
    ops = e.launch.plan.ops
    mine = _cgroup_ops(cg)
    if len(mine) != end - start:
        return None
    with _lock:
        if id(spec) in _entries:
            _entries.move_to_end(id(spec))
    launch = copy.copy(e.launch)  # (a run sets its own fields on it: premounted, export_layer, env_changes...)
    launch.plan = dataclasses.replace(e.launch.plan, ops=ops[:start] + mine + ops[end:])
    return e.hp, launch


def remember(spec: ContainerSpec, cg: Cgroup | None, python_globals: dict[str, Any] | None, hp: HolderPlan,
             launch: Launch, facts: tuple[Any, ...], masks: tuple[tuple[str, str], ...]) -> None:
    """Keep the plan just made (from `facts` and `masks`, taken before it was made) for the next run of `spec`."""
    if launch.plan is None:
        return
    span = _span(launch.plan.ops, _cgroup_ops(cg))
    if span is None:
        return
    with _lock:
        kept = copy.copy(launch)
        # Which operations a holder may make ahead depends on the targets and kinds of the operations only, and a
        # reused plan differs from this one in the cgroup's operations alone, of the same kinds and targets (the
        # facts hold the cgroup's version and controllers): worked out once, not for every run.
        kept.ahead_ops = rootfs.ahead_ops(launch.plan)
        _entries[id(spec)] = _Entry(spec, python_globals, facts, masks, hp, kept, span)
        _entries.move_to_end(id(spec))
        while len(_entries) > KEPT:
            _entries.popitem(last=False)


def plan(spec: ContainerSpec, cg: Cgroup | None, python_globals: dict[str, Any] | None,
         make: Any) -> tuple[HolderPlan, Launch]:
    """`make(spec, cg, python_globals)` (plan_launch), or the last plan of `spec` when it still holds (see above)."""
    if not eligible(spec):
        result: tuple[HolderPlan, Launch] = make(spec, cg, python_globals)
        return result
    kept = lookup(spec, cg, python_globals)
    if kept is not None:
        return kept
    facts = _facts(spec, cg)
    masks = _masks(spec, facts[1])
    hp, launch = make(spec, cg, python_globals)
    remember(spec, cg, python_globals, hp, launch, facts, masks)
    return hp, launch


def clear() -> None:
    with _lock:
        _entries.clear()


__all__ = ["clear", "eligible", "plan"]
