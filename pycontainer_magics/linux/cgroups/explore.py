"""Exploring cgroups: readers for the counters the experiments watch, the OOM and memory.high knobs,
PSI, the control-file view, a read-only walk of a whole hierarchy, and /proc/PID/cgroup.

Everything here works on a `Cgroup` of ours (v1 or v2) through its `paths`; reading anywhere is
allowed, writing only goes through a Cgroup of ours (whose constructor checks it lives under our
parent). A concept of one version only raises `CgroupError(EOPNOTSUPP)` with a note on the other.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field

from . import _io
from ._mounts import read_mounts, under, visible_mounts
from .base import Cgroup, CgroupError

# -- which version, and notes for concepts of one version only ---------------------------------------

V2_ONLY = {
    "memory.high": "memory.high exists on cgroup v2 only (v1 has soft_limit_in_bytes, a reclaim hint, no throttling)",
    "memory.oom.group": "memory.oom.group exists on cgroup v2 only (v1 kills one process per OOM)",
    "psi": "per-cgroup pressure (PSI) exists on cgroup v2 only; on v1 the system-wide /proc/pressure is shown",
}
V1_ONLY = {
    "oom_kill_disable": "disabling the OOM killer exists on cgroup v1 only (memory.oom_control); "
    "v2 has no such switch (use memory.high to throttle instead of kill)",
    "failcnt": "memory.failcnt exists on cgroup v1 only; v2 counts in memory.events (max, oom, oom_kill)",
}


def _unsupported(cg: Cgroup, key: str) -> CgroupError:
    note = V2_ONLY.get(key) or V1_ONLY.get(key) or key
    some = next(iter(cg.paths.values()), "")
    return CgroupError(errno.EOPNOTSUPP, f"{note} (this cgroup is {cg.version})", some)


def _dir(cg: Cgroup, controller: str) -> str | None:
    p = cg.paths
    return p.get("unified") if cg.version == "v2" else p.get(controller)


# -- counters ---------------------------------------------------------------------------------------


def memory_events(cg: Cgroup) -> dict[str, int]:
    """The memory counters an OOM experiment watches.

    v2: memory.events (low, high, max, oom, oom_kill, oom_group_kill). v1: memory.oom_control
    (oom_kill_disable, under_oom, oom_kill) plus failcnt and memsw_failcnt.
    """
    if cg.version == "v2":
        return _io.parse_kv(_io.read_optional(os.path.join(_dir(cg, "memory") or "", "memory.events")) or "")
    d = _dir(cg, "memory")
    if d is None:
        return {}
    out = _io.parse_kv(_io.read(os.path.join(d, "memory.oom_control")))
    out["failcnt"] = _io.parse_int(_io.read(os.path.join(d, "memory.failcnt")))
    msw = _io.read_optional(os.path.join(d, "memory.memsw.failcnt"))
    if msw is not None:
        out["memsw_failcnt"] = int(msw)
    return out


def pids_events(cg: Cgroup) -> dict[str, int]:
    """pids.events ("max": forks refused at pids.max), v1 and v2 alike; {} without the controller."""
    d = _dir(cg, "pids")
    if d is None:
        return {}
    return _io.parse_kv(_io.read_optional(os.path.join(d, "pids.events")) or "")


def cpu_stat(cg: Cgroup) -> dict[str, int]:
    """cpu.stat in v2 units (usec): nr_periods, nr_throttled, throttled_usec, usage_usec (v1 converted)."""
    d = _dir(cg, "cpu")
    if d is None:
        return {}
    st = _io.parse_kv(_io.read_optional(os.path.join(d, "cpu.stat")) or "")
    if cg.version == "v1":
        if "throttled_time" in st:
            st["throttled_usec"] = st.pop("throttled_time") // 1000
        ca = _dir(cg, "cpuacct")
        if ca is not None:
            u = _io.read_optional(os.path.join(ca, "cpuacct.usage"))
            if u is not None:
                st["usage_usec"] = int(u) // 1000
    return st


def memory_stat(cg: Cgroup) -> dict[str, int]:
    d = _dir(cg, "memory")
    if d is None:
        return {}
    return _io.parse_kv(_io.read_optional(os.path.join(d, "memory.stat")) or "")


def io_stat(cg: Cgroup) -> dict[str, int]:
    """v2 io.stat summed over devices (rbytes, wbytes, rios, wios, ...); v1: {} (blkio is not managed)."""
    if cg.version != "v2":
        return {}
    text = _io.read_optional(os.path.join(_dir(cg, "io") or "", "io.stat")) or ""
    out: dict[str, int] = {}
    for line in text.splitlines():
        for part in line.split()[1:]:
            k, _, v = part.partition("=")
            if v.isdigit():
                out[k] = out.get(k, 0) + int(v)
    return out


# -- PSI --------------------------------------------------------------------------------------------


def parse_psi(text: str) -> dict[str, float]:
    """'some avg10=0.00 avg60=0.00 avg300=0.00 total=0\\nfull ...' -> {'some_avg10': 0.0, ..., 'some_total': 0}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        kind, *fields = line.split()
        for f in fields:
            k, _, v = f.partition("=")
            try:
                out[f"{kind}_{k}"] = float(v)
            except ValueError:
                pass
    return out


@dataclass(frozen=True)
class Pressure:
    """PSI for cpu, memory and io. scope: "cgroup" (v2) or "system" (/proc/pressure, v1's fallback)."""

    scope: str
    cpu: dict[str, float] = field(default_factory=dict)
    memory: dict[str, float] = field(default_factory=dict)
    io: dict[str, float] = field(default_factory=dict)
    note: str = ""


def pressure(cg: Cgroup | None) -> Pressure | None:
    """The cgroup's PSI on v2; on v1 (or cg None) the system's /proc/pressure; None if PSI is off."""
    if cg is not None and cg.version == "v2":
        d = _dir(cg, "cpu") or ""
        vals = {r: _io.read_optional(os.path.join(d, f"{r}.pressure")) for r in ("cpu", "memory", "io")}
        if any(v is not None for v in vals.values()):
            return Pressure("cgroup", parse_psi(vals["cpu"] or ""), parse_psi(vals["memory"] or ""),
                            parse_psi(vals["io"] or ""))
    vals2 = {}
    for r in ("cpu", "memory", "io"):
        try:
            with open(f"/proc/pressure/{r}") as f:
                vals2[r] = f.read()
        except OSError:
            vals2[r] = ""
    if not any(vals2.values()):
        return None
    note = V2_ONLY["psi"] if cg is not None and cg.version == "v1" else ""
    return Pressure("system", parse_psi(vals2["cpu"]), parse_psi(vals2["memory"]), parse_psi(vals2["io"]), note)


# -- knobs of one version ----------------------------------------------------------------------------


def set_memory_high(cg: Cgroup, value: int | None) -> None:
    """v2 memory.high (None: max): above it the cgroup is reclaimed and throttled, never OOM-killed."""
    if cg.version != "v2":
        raise _unsupported(cg, "memory.high")
    d = _dir(cg, "memory") or ""
    _io.write(os.path.join(d, "memory.high"), "max" if value is None else str(value))


def set_oom_group(cg: Cgroup, on: bool) -> None:
    """v2 memory.oom.group: an OOM kill takes the whole cgroup."""
    if cg.version != "v2":
        raise _unsupported(cg, "memory.oom.group")
    _io.write(os.path.join(_dir(cg, "memory") or "", "memory.oom.group"), "1" if on else "0")


def set_oom_kill_disable(cg: Cgroup, disable: bool) -> None:
    """v1 memory.oom_control: 1 disables the OOM killer; a task at the limit then waits (under_oom)."""
    if cg.version != "v1":
        raise _unsupported(cg, "oom_kill_disable")
    d = _dir(cg, "memory")
    if d is None:
        raise _unsupported(cg, "oom_kill_disable")
    _io.write(os.path.join(d, "memory.oom_control"), "1" if disable else "0")


def under_oom(cg: Cgroup) -> bool:
    """v1: is a task of the cgroup waiting at the limit with the OOM killer disabled?"""
    return memory_events(cg).get("under_oom", 0) > 0


# -- the filesystem view -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ControlFile:
    controller: str  # v1 controller directory ("cpu", "memory", ...) or "unified"
    name: str
    path: str
    value: str | None  # None: not readable (write-only file, or error below)
    writable: bool
    error: str = ""


def control_files(cg: Cgroup) -> list[ControlFile]:
    """Every control file of the cgroup with its current content (read-only: nothing is written)."""
    out: list[ControlFile] = []
    seen: set[str] = set()
    for controller, d in sorted(cg.paths.items()):
        if d in seen:
            continue
        seen.add(d)
        try:
            names = sorted(e.name for e in os.scandir(d) if e.is_file(follow_symlinks=False))
        except OSError as exc:
            raise _io.error(exc, "cannot list cgroup", d) from None
        for name in names:
            path = os.path.join(d, name)
            try:
                mode = os.stat(path).st_mode
            except OSError:
                continue
            value: str | None = None
            err = ""
            if mode & 0o444:
                try:
                    value = _io.read(path).rstrip("\n")
                except CgroupError as exc:
                    err = os.strerror(exc.errno) if exc.errno else str(exc)
            else:
                err = "write-only"
            out.append(ControlFile(controller, name, path, value, bool(mode & 0o222), err))
    return out


# -- reading the whole hierarchy ---------------------------------------------------------------------


@dataclass(frozen=True)
class TreeNode:
    """One cgroup anywhere in the machine's hierarchy (read-only)."""

    path: str  # relative to the hierarchy root, "/" for the root
    depth: int
    version: str
    controllers: tuple[str, ...]  # v2: cgroup.controllers; v1: hierarchies the path exists in
    nprocs: int | None
    memory_current: int | None
    memory_limit: int | None
    cpu_quota: float | None  # CPUs, None: unlimited
    pids_current: int | None
    pids_limit: int | None


def roots(cgroup_root: str = "/sys/fs/cgroup") -> dict[str, str]:
    """v1: controller -> mount point (memory, cpu, cpuacct, pids, cpuset, ...); v2: {"unified": root}."""
    top = visible_mounts(read_mounts())
    at = top.get(os.path.normpath(cgroup_root))
    if at is not None and at.fstype == "cgroup2":
        return {"unified": os.path.normpath(cgroup_root)}
    out: dict[str, str] = {}
    for mp, m in sorted(top.items()):
        if m.fstype == "cgroup" and under(mp, cgroup_root):
            for c in sorted(m.controllers):
                out.setdefault(c, mp)
    return out


def _read_int(path: str) -> int | None:
    try:
        text = _io.read_optional(path)
    except CgroupError:
        return None
    if text is None:
        return None
    s = text.strip()
    if s == "max" or not s.lstrip("-").isdigit():
        return None
    n = int(s)
    return None if n >= _io.V1_UNLIMITED or n < 0 else n


def _count_procs(path: str) -> int | None:
    try:
        text = _io.read_optional(os.path.join(path, "cgroup.procs"))
    except CgroupError:
        return None
    return None if text is None else len(text.split())


def _subdirs(base: str, max_depth: int) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []

    def walk(rel: str, depth: int) -> None:
        out.append((rel, depth))
        if depth >= max_depth:
            return
        try:
            with os.scandir(os.path.join(base, rel.lstrip("/"))) as it:
                names = sorted(e.name for e in it if e.is_dir(follow_symlinks=False))
        except OSError:
            return
        for n in names:
            walk(rel.rstrip("/") + "/" + n, depth + 1)

    walk("/", 0)
    return out


def _quota_v1(cpu_dir: str) -> float | None:
    q = _read_int(os.path.join(cpu_dir, "cpu.cfs_quota_us"))
    p = _read_int(os.path.join(cpu_dir, "cpu.cfs_period_us"))
    return q / p if q and p else None


def _quota_v2(d: str) -> float | None:
    text = _io.read_optional(os.path.join(d, "cpu.max")) if os.path.exists(os.path.join(d, "cpu.max")) else None
    if not text:
        return None
    q, _, p = text.strip().partition(" ")
    return None if q == "max" or not p else int(q) / int(p)


def walk_tree(cgroup_root: str = "/sys/fs/cgroup", start: str = "/", max_depth: int = 3) -> list[TreeNode]:
    """The machine's cgroups below `start` (relative to each hierarchy root), `max_depth` levels deep.

    v1: the union of the memory, cpu and pids hierarchies (the ones that carry limits); each row says
    in which of them the path exists. Only reads.
    """
    rts = roots(cgroup_root)
    start = "/" + os.path.normpath(start).strip("/") if start.strip("/") else "/"
    nodes: list[TreeNode] = []
    if "unified" in rts:
        base = os.path.join(rts["unified"], start.lstrip("/"))
        for rel, depth in _subdirs(base, max_depth):
            d = os.path.join(base, rel.lstrip("/"))
            ctl = (_io.read_optional(os.path.join(d, "cgroup.controllers")) or "").split()
            path = os.path.normpath(os.path.join(start, rel.lstrip("/")))
            nodes.append(TreeNode(path, depth, "v2", tuple(ctl), _count_procs(d),
                                  _read_int(os.path.join(d, "memory.current")),
                                  _read_int(os.path.join(d, "memory.max")), _quota_v2(d),
                                  _read_int(os.path.join(d, "pids.current")),
                                  _read_int(os.path.join(d, "pids.max"))))
        return nodes
    wanted = [c for c in ("memory", "cpu", "cpuacct", "pids", "cpuset") if c in rts]
    found: dict[str, int] = {}
    for c in wanted:
        for rel, depth in _subdirs(os.path.join(rts[c], start.lstrip("/")), max_depth):
            found.setdefault(rel, depth)
    for rel, depth in sorted(found.items()):
        path = os.path.normpath(os.path.join(start, rel.lstrip("/")))

        def cdir(c: str, p: str = path) -> str:
            return os.path.join(rts[c], p.lstrip("/"))

        present = tuple(c for c in wanted if os.path.isdir(cdir(c)))
        nodes.append(TreeNode(
            path, depth, "v1", present,
            _count_procs(cdir(present[0])) if present else None,
            _read_int(os.path.join(cdir("memory"), "memory.usage_in_bytes")) if "memory" in present else None,
            _read_int(os.path.join(cdir("memory"), "memory.limit_in_bytes")) if "memory" in present else None,
            _quota_v1(cdir("cpu")) if "cpu" in present else None,
            _read_int(os.path.join(cdir("pids"), "pids.current")) if "pids" in present else None,
            _read_int(os.path.join(cdir("pids"), "pids.max")) if "pids" in present else None,
        ))
    return nodes


# -- where a process is --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Membership:
    hierarchy_id: int
    controllers: tuple[str, ...]  # ("",) / () for v2's unified line
    path: str
    version: str  # "v1" or "v2"


def process_cgroups(pid: int) -> list[Membership]:
    """/proc/PID/cgroup: the cgroup a process is in, per v1 hierarchy, or in the unified tree."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            text = f.read()
    except FileNotFoundError:
        raise CgroupError(errno.ESRCH, f"no process {pid}", f"/proc/{pid}/cgroup") from None
    except OSError as exc:
        raise _io.error(exc, "cannot read", f"/proc/{pid}/cgroup") from None
    out: list[Membership] = []
    for line in text.splitlines():
        hid, _, rest = line.partition(":")
        ctl, _, path = rest.partition(":")
        names = tuple(c for c in ctl.split(",") if c)
        out.append(Membership(int(hid), names, path, "v2" if hid == "0" and not names else "v1"))
    return out
