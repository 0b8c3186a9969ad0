"""A re-run cell's launch plan, reused while everything it was planned from is the same.

plan_launch (run.py) turns a spec into what the holder and PID 1 do. For a cell run again — a lecture re-runs its
cells, and the magic keeps one spec per line — that is the same work with the same answer: 0.4 ms of every Python
cell, its memory cold after the last cell's fork. Reused only where every input can be compared cheaply:

- the host image as root, with no mount of the host's files (no --rootfs, volume, bind or --user: their sources are
  looked up on the host), not in a pod, no --userns remap;
- on a network, the run's own files bound (its hosts file, resolv.conf: `run_mounts`, ours): the same targets, and
  the binds put in place of the last run's, as the cgroup's;
- an equal spec (a ContainerSpec is a frozen value: a library caller makes one per run) and the same caller's
  globals;
- the same effective uid, working directory and environment (the cell's environment is the caller's, and the state
  directories come from it);
- the same masks over the host (host_masks.masks keeps its scan while what it looked into is unchanged; a scan made
  again holds the plan while it finds the same masks);
- the same answers from the host to the plan's lookups (/proc, /dev, /sys, /dev/mqueue, the --tmpfs targets, the
  run's bind targets, and whether their sources are files);
- a cgroup of the same version and controllers. The cgroup's own mount operations name its directories: they are
  made again for each run and put in place of the last run's.

A Python cell's PID 1 is forked from the caller and waits for its word before anything of the cell's (cell_fork): the
host's answers (the lookups and the masks, 0.15-0.2 ms of cold Python and a dozen stats, and what changes least) are
then asked after the fork, while PID 1 starts on the other CPU (Launch.host_check, `defer_host`). When they no longer
hold, PID 1 is ended before it has done anything and the run starts again from a fresh plan (run.py).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import os
import threading
from dataclasses import dataclass
from typing import Any

from ..linux.cgroups import Cgroup
from . import environ, host_masks, rootfs
from .holder import HolderPlan
from .launch import Launch
from .spec import ContainerSpec, Mount
from .state import data_dirs


@dataclass
class _Entry:
    spec: ContainerSpec
    python_globals: dict[str, Any] | None
    facts: tuple[Any, ...]
    host: tuple[Any, ...]  # the host's answers to the plan's lookups (_host_facts)
    masks: tuple[tuple[str, str], ...]
    hp: HolderPlan
    launch: Launch
    cgroup_ops: tuple[int, int]  # where the cgroup's mount operations are in launch.plan.ops (start, end)
    run_mounts: tuple[tuple[str, bool], ...]  # the run's own binds (target, read-only), in order
    run_mount_ops: tuple[int, ...]  # where their operations are in launch.plan.ops


_entries: collections.OrderedDict[tuple[ContainerSpec, int], _Entry] = collections.OrderedDict()  # the last few,
# by spec and the caller's globals (their id: an entry keeps them alive)
_lock = threading.Lock()  # (the pool's thread plans a parked PID 1's launch too)
KEPT = 8


def eligible(spec: ContainerSpec) -> bool:
    return (spec.image == "host" and not spec.rootfs and not spec.mounts and spec.user is None and spec.pod is None
            and spec.userns != "remap" and os.geteuid() == 0)


def _environment() -> Any:
    data = environ.raw()
    return data.copy() if data is not None else dict(os.environ)


def _facts(cg: Cgroup | None) -> tuple[Any, ...]:
    """What the caller itself may change between cells (its directory, its environment), and the cgroup's kind."""
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = "/"
    return (os.geteuid(), cwd, _environment(), os.uname().nodename,
            cg.version if cg is not None else None, tuple(sorted(cg.paths)) if cg is not None else None)


def _host_facts(spec: ContainerSpec, run_mounts: tuple[Mount, ...]) -> tuple[Any, ...]:
    """The host's answers to the plan's lookups."""
    view = rootfs.LayerView("/")
    looked_up = ("/proc", "/dev", "/sys", *(t.target for t in spec.tmpfs), *(m.target for m in run_mounts))
    return (tuple(view.lexists(rootfs.secure_join("/", p)) for p in looked_up), os.path.isdir("/dev/mqueue"),
            tuple(os.path.isfile(m.source) for m in run_mounts))


def _host_holds(e: _Entry, spec: ContainerSpec, cwd: str, run_mounts: tuple[Mount, ...]) -> bool:
    # (masks compared by value: a scan made again — a directory it looked into changed, or was changed too lately
    # to be kept, host_masks.RACY — holds the plan while it finds the same masks)
    return _host_facts(spec, run_mounts) == e.host and _masks(spec, cwd, run_mounts) == e.masks


def _masks(spec: ContainerSpec, cwd: str, run_mounts: tuple[Mount, ...]) -> tuple[tuple[str, str], ...]:
    targets = [m.target for m in spec.mounts + run_mounts] + [t.target for t in spec.tmpfs] + [spec.workdir or "/"]
    return host_masks.masks(cwd=cwd, mount_targets=targets, data_dirs=data_dirs(), unmask=spec.unmask)


def _cgroup_ops(cg: Cgroup | None) -> tuple[rootfs.MountOp, ...]:
    ahead = _ops_ahead.get(cg.name) if cg is not None else None
    if ahead is not None and ahead[0] is cg:
        return ahead[1]
    return tuple(rootfs.cgroup_ops(cg.version if cg is not None else None, cg.paths if cg is not None else {}))


# By cgroup name: the cgroup (the very one a run takes) and its view's mount operations (cgroup_made).
_ops_ahead: dict[str, tuple[Cgroup, tuple[rootfs.MountOp, ...]]] = {}


def cgroup_made(cg: Cgroup) -> None:
    """Work out the mount operations of `cg`'s view now, for the run that takes it (the pool's thread, which made
    it for the next Python cell: Recipe.made): a re-run's kept plan gets them made, not makes them (0.03 ms of its
    start)."""
    ops = tuple(rootfs.cgroup_ops(cg.version, cg.paths))
    while len(_ops_ahead) >= 8:  # (each is used once: a few of the last are enough; the oldest goes)
        _ops_ahead.pop(next(iter(_ops_ahead)), None)
    _ops_ahead[cg.name] = (cg, ops)


def _span(ops: tuple[rootfs.MountOp, ...], part: tuple[rootfs.MountOp, ...]) -> tuple[int, int] | None:
    """Where `part` is in `ops`, if it is there exactly once."""
    n = len(part)
    found = [i for i in range(len(ops) - n + 1) if ops[i:i + n] == part] if n else []
    return (found[0], found[0] + n) if len(found) == 1 else None


def _run_mount_key(run_mounts: tuple[Mount, ...]) -> tuple[tuple[str, bool], ...]:
    return tuple((m.target, m.read_only) for m in run_mounts)


def _run_mount_ops(ops: tuple[rootfs.MountOp, ...], run_mounts: tuple[Mount, ...]) -> tuple[int, ...] | None:
    """Where the binds of the run's own files are in `ops` (each once: their sources name the run)."""
    at = []
    for m in run_mounts:
        found = [i for i, op in enumerate(ops) if op.action == "bind" and op.source == m.source]
        if len(found) != 1:
            return None
        at.append(found[0])
    return tuple(at)


def _copy(launch: Launch) -> Launch:
    """copy.copy(launch), without its general path (the pickle protocol's reduction: 20-30 us of a cell's start)."""
    new = object.__new__(Launch)
    new.__dict__.update(launch.__dict__)
    return new


def _hashable(spec: ContainerSpec) -> bool:
    """A spec the caller made with a list where a tuple goes (ContainerSpec(command=[...])) runs, but is no key."""
    try:
        hash(spec)
    except TypeError:
        return False
    return True


def lookup(spec: ContainerSpec, cg: Cgroup | None, python_globals: dict[str, Any] | None,
           run_mounts: tuple[Mount, ...] = (), defer_host: bool = False) -> tuple[HolderPlan, Launch] | None:
    """The plan of a run of `spec` in `cg` made from the last one's, if nothing it depends on changed; else None.
    defer_host: for a Python cell forked by the caller (a direct launch, on no network), the host's answers are left
    to the launch's host_check."""
    with _lock:
        e = _entries.get((spec, id(python_globals)))
    if e is None or e.python_globals is not python_globals or e.launch.plan is None \
            or e.run_mounts != _run_mount_key(run_mounts):
        return None
    facts = _facts(cg)
    if facts != e.facts:
        return None
    later = defer_host and e.launch.mode == "direct" and not run_mounts
    if not later and not _host_holds(e, spec, facts[1], run_mounts):
        return None
    start, end = e.cgroup_ops
    ops = e.launch.plan.ops
    mine = _cgroup_ops(cg)
    if len(mine) != end - start:
        return None
    with _lock:
        if (spec, id(python_globals)) in _entries:
            _entries.move_to_end((spec, id(python_globals)))
    launch = _copy(e.launch)  # (a run sets its own fields on it: premounted, export_layer, env_changes...)
    ops = ops[:start] + mine + ops[end:]
    if run_mounts:
        new_ops = list(ops)
        for i, m in zip(e.run_mount_ops, run_mounts, strict=True):
            new_ops[i] = dataclasses.replace(ops[i], source=m.source)
        ops = tuple(new_ops)
    launch.plan = dataclasses.replace(e.launch.plan, ops=ops)
    if later:
        launch.host_check = functools.partial(_host_holds, e, spec, facts[1], run_mounts)
    return e.hp, launch


def remember(spec: ContainerSpec, cg: Cgroup | None, python_globals: dict[str, Any] | None, hp: HolderPlan,
             launch: Launch, facts: tuple[Any, ...], host: tuple[Any, ...], masks: tuple[tuple[str, str], ...],
             run_mounts: tuple[Mount, ...] = ()) -> None:
    """Keep the plan just made (from `facts`, `host` and `masks`, taken before it was made) for the next run of
    `spec`."""
    if launch.plan is None:
        return
    span = _span(launch.plan.ops, _cgroup_ops(cg))
    at = _run_mount_ops(launch.plan.ops, run_mounts)
    if span is None or at is None or any(span[0] <= i < span[1] for i in at):
        return
    with _lock:
        kept = _copy(launch)
        # Which operations a holder may make ahead depends on the targets and kinds of the operations only, and a
        # reused plan differs from this one in the cgroup's operations and the run's binds' sources alone, of the
        # same kinds and targets (the facts hold the cgroup's version and controllers): worked out once, not for
        # every run.
        kept.ahead_ops = rootfs.ahead_ops(launch.plan)
        kept.ahead_host_sourced = rootfs.host_sourced(launch.plan, kept.ahead_ops)
        key = (spec, id(python_globals))
        _entries[key] = _Entry(spec, python_globals, facts, host, masks, hp, kept, span, _run_mount_key(run_mounts),
                               at)
        _entries.move_to_end(key)
        while len(_entries) > KEPT:
            _entries.popitem(last=False)


def plan(spec: ContainerSpec, cg: Cgroup | None, python_globals: dict[str, Any] | None,
         make: Any, run_mounts: tuple[Mount, ...] = (), defer_host: bool = False) -> tuple[HolderPlan, Launch]:
    """`make(spec, cg, python_globals)` (plan_launch), or the last plan of `spec` when it still holds (see above).
    run_mounts: the run's own files bound after the spec's mounts (a networked run's hosts file and resolv.conf).
    defer_host: see lookup (the caller asks the launch's host_check, when it has one, before the cell goes on)."""
    def made() -> tuple[HolderPlan, Launch]:  # (the spec with the run's binds made only when planned afresh)
        result: tuple[HolderPlan, Launch] = make(spec.with_(mounts=spec.mounts + run_mounts) if run_mounts else spec,
                                                 cg, python_globals)
        return result

    if not eligible(spec) or not _hashable(spec):
        return made()
    kept = lookup(spec, cg, python_globals, run_mounts, defer_host)
    if kept is not None:
        return kept
    facts = _facts(cg)
    host = _host_facts(spec, run_mounts)
    masks = _masks(spec, facts[1], run_mounts)
    hp, launch = made()
    remember(spec, cg, python_globals, hp, launch, facts, host, masks, run_mounts)
    return hp, launch


def clear() -> None:
    with _lock:
        _entries.clear()
    _ops_ahead.clear()


__all__ = ["clear", "eligible", "plan"]
