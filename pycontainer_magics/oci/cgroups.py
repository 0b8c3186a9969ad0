"""A container's cgroup where its config says (`linux.cgroupsPath`), with the OCI `linux.resources` applied,
as runc's cgroupfs driver does it: on cgroup v1 one directory per mounted hierarchy (every one, so
containerd finds the memory cgroup for OOM events and stats from /proc/PID/cgroup), on v2 one directory.

    paths = resolve(config.linux.get("cgroupsPath"), cid)     # {hierarchy mount point: directory}
    cg = OciCgroup(paths); cg.create(); cg.apply(resources)   # before the container's first process
    cg.join_files()   # opened by the runtime, written "0" by the container's first process
    cg.stats(); cg.freeze(); cg.pids(); cg.destroy()

cgroupsPath: an absolute path is taken from each hierarchy's root, a relative one from the runtime's own
cgroup (runc's rule); without one, the container goes under the project's own parent. The systemd form
`slice:prefix:name` is refused: this runtime drives cgroupfs only.
"""

from __future__ import annotations

import errno
import os
import time

from ..errors import InvalidInput

TYPE_CHECKING = False  # typing itself is not imported: the command line's start-up
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

CGROUP_ROOT = "/sys/fs/cgroup"
SIGKILL = 9  # the signal module costs an enum import on every call
V1_UNLIMITED = 0x7FFFFFFFFFFFF000


class CgroupPathError(InvalidInput):
    """cgroupsPath cannot be used: one line."""


def _mounts() -> tuple[str, list[tuple[str, str, frozenset[str]]]]:
    """("v1"|"v2", [(mount point, root in the hierarchy, controllers)]) from /proc/self/mountinfo."""
    v1: list[tuple[str, str, frozenset[str]]] = []
    v2_at_root = False
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            fstype, mp, root = rfields[0], fields[4], fields[3]
            if fstype == "cgroup2" and mp == CGROUP_ROOT:
                v2_at_root = True
            elif fstype == "cgroup" and mp.startswith(CGROUP_ROOT + "/"):
                opts = rfields[2].split(",") if len(rfields) > 2 else []
                ctrls = frozenset(o for o in opts if o not in ("rw", "ro", "relatime", "noatime", "nosuid",
                                                                  "nodev", "noexec", "xattr", "clone_children"))
                v1.append((mp, root, ctrls))
    if v2_at_root:
        return "v2", [(CGROUP_ROOT, "/", frozenset())]
    return "v1", v1


def _own_cgroups() -> dict[str, str]:
    """controller set (as /proc/self/cgroup spells it) -> our own cgroup path."""
    out = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            out[ctrls] = path
    return out


def version() -> str:
    return _mounts()[0]


def resolve(cgroups_path: str | None, cid: str, systemd: bool = False) -> dict[str, str]:
    """{hierarchy mount point: the container's directory in it}."""
    if systemd:
        raise CgroupPathError("--systemd-cgroup: this runtime manages cgroups through cgroupfs only (no systemd "
                              "driver); configure the engine's cgroupfs driver (dockerd --exec-opt "
                              "native.cgroupdriver=cgroupfs, containerd SystemdCgroup = false)")
    if cgroups_path and ":" in cgroups_path and not cgroups_path.startswith("/"):
        raise CgroupPathError(f"linux.cgroupsPath {cgroups_path!r} is in systemd's slice:prefix:name form; this "
                              "runtime has no systemd driver: give a path like /parent/name")
    if cgroups_path:
        path = os.path.normpath(cgroups_path)
        if any(p == ".." for p in path.split("/")):
            raise CgroupPathError(f"linux.cgroupsPath {cgroups_path!r} must not contain '..'")
    else:
        path = "/" + _project_parent() + "/" + cid
    kind, mounts = _mounts()
    if not mounts:
        raise CgroupPathError("no cgroup filesystem is mounted at /sys/fs/cgroup")
    own = _own_cgroups() if not path.startswith("/") else {}
    out = {}
    for mp, root, ctrls in mounts:
        if path.startswith("/"):
            rel = path.lstrip("/")
        else:  # relative: under the runtime's own cgroup in that hierarchy
            key = "" if kind == "v2" else next((k for k in own if k and frozenset(k.split(",")) == ctrls), None)
            mine = own.get(key, "/") if key is not None else "/"
            # /proc/self/cgroup paths are relative to the hierarchy root; the mount may show a subtree of it
            if root != "/" and (mine + "/").startswith(root.rstrip("/") + "/"):
                mine = mine[len(root.rstrip("/")):] or "/"
            rel = os.path.join(mine.lstrip("/"), path)
        out[mp] = os.path.join(mp, rel) if rel else mp
    return out


def _project_parent() -> str:
    """linux/cgroups/hierarchy.parent_rel's answer ($PYCONTAINER_CGROUP_PARENT, else pycontainer_magics),
    without importing the cgroups package (its v1, v2 and BPF modules) on every `create`."""
    import sys
    if "pycontainer_magics.linux.cgroups.hierarchy" in sys.modules:
        from ..linux.cgroups.hierarchy import DEFAULT_PARENT, parent_rel
        return parent_rel(DEFAULT_PARENT)
    rel = os.path.normpath((os.environ.get("PYCONTAINER_CGROUP_PARENT") or "pycontainer_magics").strip("/"))
    if not rel or rel == "." or rel.startswith(".."):
        raise CgroupPathError(f"invalid cgroup parent {rel!r} (PYCONTAINER_CGROUP_PARENT)")
    return rel


def _write(path: str, value: str | int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, str(value).encode())
    except OSError as e:
        raise OSError(e.errno, f"writing {value!r} to {path}: {e.strerror}", path) from None
    finally:
        os.close(fd)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _read_int(path: str, default: int = 0) -> int:
    try:
        v = _read(path).strip()
    except OSError:
        return default
    if v == "max":
        return 0
    try:
        return int(v)
    except ValueError:
        return default


def _kv(path: str) -> dict[str, int]:
    out = {}
    try:
        for line in _read(path).splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].lstrip("-").isdigit():
                out[parts[0]] = int(parts[1])
    except OSError:
        pass
    return out


def _cpuset_list(text: str) -> list[int]:
    out: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        a, _, b = part.partition("-")
        out += list(range(int(a), int(b or a) + 1))
    return out


class OciCgroup:
    def __init__(self, paths: dict[str, str]) -> None:
        self.paths = dict(paths)  # empty: no cgroup (rootless without a delegated one)
        self.v2 = list(paths) == [CGROUP_ROOT]

    @classmethod
    def from_record(cls, paths: dict[str, str]) -> OciCgroup:
        return cls(paths)

    def dir_of(self, controller: str) -> str | None:
        """The directory of the hierarchy holding `controller` (v2: the one directory)."""
        if self.v2:
            return self.paths[CGROUP_ROOT]
        for mp, d in self.paths.items():
            if controller in os.path.basename(mp).split(","):
                return d
        for mp, d in self.paths.items():  # co-mounted under another name (cpu,cpuacct as "cpu")
            try:
                if os.path.exists(os.path.join(mp, f"{controller}.stat" if controller != "memory" else
                                               "memory.limit_in_bytes")):
                    return d
            except OSError:
                continue
        return None

    # -- making ---------------------------------------------------------------------------------
    def create(self) -> list[str]:
        """Make every directory (and missing parents); returns the ones made, for an undo."""
        made: list[str] = []
        for mp, d in self.paths.items():
            missing = []
            p = d
            while not os.path.isdir(p) and p != mp:
                missing.append(p)
                p = os.path.dirname(p)
            for m in reversed(missing):
                if self.v2:
                    self._enable_controllers(os.path.dirname(m))
                try:
                    os.mkdir(m, 0o755)
                except FileExistsError:
                    continue
                except FileNotFoundError:  # its parent went with another container's delete meanwhile
                    os.makedirs(os.path.dirname(m), 0o755, exist_ok=True)
                    os.mkdir(m, 0o755)
                made.append(m)
                if not self.v2 and os.path.basename(mp).split(",").count("cpuset"):
                    self._inherit_cpuset(m)
            if self.v2 and not missing:
                self._enable_controllers(os.path.dirname(d))
        return made

    @staticmethod
    def _inherit_cpuset(d: str) -> None:
        # A new v1 cpuset starts empty and takes no task until it has cpus and mems (runc copies them).
        for f in ("cpuset.cpus", "cpuset.mems"):
            if not _read(os.path.join(d, f)).strip():
                _write(os.path.join(d, f), _read(os.path.join(os.path.dirname(d), f)).strip())

    @staticmethod
    def _enable_controllers(parent: str) -> None:
        """v2: the controllers the parent has, made available to its children (as runc's fs2 does)."""
        try:
            available = _read(os.path.join(parent, "cgroup.controllers")).split()
            enabled = set(_read(os.path.join(parent, "cgroup.subtree_control")).split())
        except OSError:
            return
        for c in available:
            if c not in enabled:
                try:
                    _write(os.path.join(parent, "cgroup.subtree_control"), "+" + c)
                except OSError:
                    pass  # e.g. a threaded subtree, or the parent holds processes: runc goes on too

    def join_files(self) -> list[str]:
        """Written with "0" by the container's first process (single-threaded: v1 `tasks` moves it, 0.3 ms,
        where cgroup.procs waits for an RCU grace period)."""
        if not self.paths:
            return []
        if self.v2:
            return [os.path.join(self.paths[CGROUP_ROOT], "cgroup.procs")]
        return [os.path.join(d, "tasks") for d in self.paths.values()]

    def add(self, pid: int) -> None:
        for d in self.paths.values():
            _write(os.path.join(d, "cgroup.procs"), pid)

    # -- resources ------------------------------------------------------------------------------
    def apply(self, res: dict[str, Any] | None) -> None:
        """Apply OCI `linux.resources` (what is given; absent fields stay as they are)."""
        if not res or not self.paths:
            return
        if self.v2:
            self._apply_v2(res)
        else:
            self._apply_v1(res)

    def _set(self, controller: str, name: str, value: Any) -> None:
        d = self.dir_of(controller)
        if d is None:
            raise OSError(errno.ENOENT, f"the {controller} controller is not mounted: cannot set {name}", name)
        _write(os.path.join(d, name), value)

    def _apply_v1(self, res: dict[str, Any]) -> None:
        mem = res.get("memory") or {}
        if mem:
            limit, swap = mem.get("limit"), mem.get("swap")
            d = self.dir_of("memory")
            memsw = d is not None and os.path.exists(os.path.join(d, "memory.memsw.limit_in_bytes"))
            if limit is not None and swap is not None and memsw:
                # The kernel keeps limit <= memsw at every step: raise memsw first, or lower limit first.
                cur = _read_int(os.path.join(d or "", "memory.limit_in_bytes"))
                if swap == -1 or swap >= cur:
                    self._set("memory", "memory.memsw.limit_in_bytes", swap)
                    self._set("memory", "memory.limit_in_bytes", limit)
                else:
                    self._set("memory", "memory.limit_in_bytes", limit)
                    self._set("memory", "memory.memsw.limit_in_bytes", swap)
            else:
                if limit is not None:
                    self._set("memory", "memory.limit_in_bytes", limit)
                if swap is not None and memsw:
                    self._set("memory", "memory.memsw.limit_in_bytes", swap)
            if mem.get("reservation") is not None:
                self._set("memory", "memory.soft_limit_in_bytes", mem["reservation"])
            if mem.get("kernelTCP") is not None:
                self._set("memory", "memory.kmem.tcp.limit_in_bytes", mem["kernelTCP"])
            if mem.get("swappiness") is not None and 0 <= mem["swappiness"] <= 100:
                self._set("memory", "memory.swappiness", mem["swappiness"])
            if mem.get("disableOOMKiller"):
                self._set("memory", "memory.oom_control", 1)
        cpu = res.get("cpu") or {}
        if cpu.get("shares"):
            self._set("cpu", "cpu.shares", cpu["shares"])
        if cpu.get("period"):
            self._set("cpu", "cpu.cfs_period_us", cpu["period"])
        if cpu.get("quota") is not None and cpu.get("quota") != 0:
            self._set("cpu", "cpu.cfs_quota_us", cpu["quota"])
        if cpu.get("realtimePeriod"):
            self._set("cpu", "cpu.rt_period_us", cpu["realtimePeriod"])
        if cpu.get("realtimeRuntime"):
            self._set("cpu", "cpu.rt_runtime_us", cpu["realtimeRuntime"])
        if cpu.get("cpus"):
            self._set("cpuset", "cpuset.cpus", cpu["cpus"])
        if cpu.get("mems"):
            self._set("cpuset", "cpuset.mems", cpu["mems"])
        pids = res.get("pids") or {}
        if pids.get("limit") is not None:
            self._set("pids", "pids.max", "max" if pids["limit"] <= 0 else pids["limit"])
        blk = res.get("blockIO") or {}
        if blk.get("weight"):
            self._set("blkio", "blkio.weight", blk["weight"])
        if blk.get("leafWeight"):
            self._set("blkio", "blkio.leaf_weight", blk["leafWeight"])
        for wd in blk.get("weightDevice") or []:
            if wd.get("weight"):
                self._set("blkio", "blkio.weight_device", f"{wd['major']}:{wd['minor']} {wd['weight']}")
            if wd.get("leafWeight"):
                self._set("blkio", "blkio.leaf_weight_device", f"{wd['major']}:{wd['minor']} {wd['leafWeight']}")
        for key, name in (("throttleReadBpsDevice", "read_bps_device"), ("throttleWriteBpsDevice", "write_bps_device"),
                          ("throttleReadIOPSDevice", "read_iops_device"),
                          ("throttleWriteIOPSDevice", "write_iops_device")):
            for td in blk.get(key) or []:
                self._set("blkio", f"blkio.throttle.{name}", f"{td['major']}:{td['minor']} {td['rate']}")
        for h in res.get("hugepageLimits") or []:
            self._set("hugetlb", f"hugetlb.{h['pageSize']}.limit_in_bytes", h["limit"])
        net = res.get("network") or {}
        if net.get("classID") is not None:
            self._set("net_cls", "net_cls.classid", net["classID"])
        for p in net.get("priorities") or []:
            self._set("net_prio", "net_prio.ifpriomap", f"{p['name']} {p['priority']}")
        if res.get("devices") is not None:
            self._devices_v1(res["devices"])

    def _devices_v1(self, rules: list[dict[str, Any]]) -> None:
        d = self.dir_of("devices")
        if d is None:
            return
        for r in list(rules) + DEFAULT_DEVICE_RULES:
            kind = r.get("type") or "a"
            major = "*" if r.get("major") in (None, -1) else r["major"]
            minor = "*" if r.get("minor") in (None, -1) else r["minor"]
            access = r.get("access") or "rwm"
            rule = "a" if kind == "a" and major == "*" and minor == "*" else f"{kind} {major}:{minor} {access}"
            _write(os.path.join(d, "devices.allow" if r.get("allow") else "devices.deny"), rule)

    def _apply_v2(self, res: dict[str, Any]) -> None:
        d = self.paths[CGROUP_ROOT]

        def put(name: str, value: Any) -> None:
            _write(os.path.join(d, name), value)

        mem = res.get("memory") or {}
        limit, swap = mem.get("limit"), mem.get("swap")
        if limit is not None:
            put("memory.max", "max" if limit == -1 else limit)
        if swap is not None and os.path.exists(os.path.join(d, "memory.swap.max")):
            # OCI's swap is memory+swap (v1's memsw); v2's swap.max is the swap alone
            put("memory.swap.max", "max" if swap == -1 else max(0, swap - (limit or 0)) if limit not in (None, -1)
                else swap)
        if mem.get("reservation") is not None:
            put("memory.low", "max" if mem["reservation"] == -1 else mem["reservation"])
        cpu = res.get("cpu") or {}
        if cpu.get("shares"):
            from ..linux.cgroups import shares_to_weight
            put("cpu.weight", shares_to_weight(cpu["shares"]))
        if cpu.get("quota") or cpu.get("period"):
            quota = cpu.get("quota")
            put("cpu.max", f"{'max' if quota in (None, -1, 0) else quota} {cpu.get('period') or 100000}")
        if cpu.get("cpus"):
            put("cpuset.cpus", cpu["cpus"])
        if cpu.get("mems"):
            put("cpuset.mems", cpu["mems"])
        pids = res.get("pids") or {}
        if pids.get("limit") is not None:
            put("pids.max", "max" if pids["limit"] <= 0 else pids["limit"])
        blk = res.get("blockIO") or {}
        if blk.get("weight"):
            put("io.bfq.weight" if os.path.exists(os.path.join(d, "io.bfq.weight")) else "io.weight",
                blk["weight"])
        for key, name in (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
                          ("throttleReadIOPSDevice", "riops"), ("throttleWriteIOPSDevice", "wiops")):
            for td in blk.get(key) or []:
                put("io.max", f"{td['major']}:{td['minor']} {name}={td['rate']}")
        for h in res.get("hugepageLimits") or []:
            put(f"hugetlb.{h['pageSize']}.max", h["limit"])
        for k, v in (res.get("unified") or {}).items():
            if "/" in k or k.startswith("."):
                raise OSError(errno.EINVAL, f"linux.resources.unified: invalid file name {k!r}", k)
            put(k, v)

    # -- reading --------------------------------------------------------------------------------
    def pids(self) -> list[int]:
        if not self.paths:
            return []
        d = self.paths[CGROUP_ROOT] if self.v2 else (self.dir_of("pids") or self.dir_of("memory")
                                                      or next(iter(self.paths.values())))
        try:
            return sorted(int(x) for x in _read(os.path.join(d, "cgroup.procs")).split())
        except OSError:
            return []

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self.paths.values())

    def frozen(self) -> bool:
        if self.v2:
            return _read_int(os.path.join(self.paths[CGROUP_ROOT], "cgroup.freeze")) == 1
        d = self.dir_of("freezer")
        try:
            return d is not None and _read(os.path.join(d, "freezer.state")).strip() in ("FROZEN", "FREEZING")
        except OSError:
            return False

    def freeze(self, on: bool = True) -> None:
        if self.v2:
            _write(os.path.join(self.paths[CGROUP_ROOT], "cgroup.freeze"), 1 if on else 0)
            events = os.path.join(self.paths[CGROUP_ROOT], "cgroup.events")
            _wait(lambda: ("frozen 1" in _read(events)) == on, 2.0)
            return
        d = self.dir_of("freezer")
        if d is None:
            raise OSError(errno.ENOTSUP, "the freezer cgroup controller is not mounted")
        state = os.path.join(d, "freezer.state")
        _write(state, "FROZEN" if on else "THAWED")
        _wait(lambda: _read(state).strip() == ("FROZEN" if on else "THAWED"), 2.0)

    def oom_kills(self) -> int:
        if self.v2:
            return _kv(os.path.join(self.paths[CGROUP_ROOT], "memory.events")).get("oom_kill", 0)
        d = self.dir_of("memory")
        return _kv(os.path.join(d, "memory.oom_control")).get("oom_kill", 0) if d else 0

    def stats(self) -> dict[str, Any]:
        """runc's `events --stats` data (types.Stats), the fields containerd and docker read."""
        return self._stats_v2() if self.v2 else self._stats_v1()

    def _stats_v1(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cpu": {"usage": {"kernel": 0, "user": 0}, "throttling": {}},
                               "memory": {"usage": {"limit": 0, "failcnt": 0}, "swap": {"limit": 0, "failcnt": 0},
                                          "kernel": {"limit": 0, "failcnt": 0},
                                          "kernelTCP": {"limit": 0, "failcnt": 0}},
                               "pids": {}, "blkio": {}, "hugetlb": {}, "intel_rdt": {}, "network_interfaces": None,
                               "cpuset": {"cpu_exclusive": 0, "mem_hardwall": 0, "mem_exclusive": 0,
                                          "memory_migrate": 0, "memory_spread_page": 0, "memory_spread_slab": 0,
                                          "memory_pressure": 0, "sched_load_balance": 0,
                                          "sched_relax_domain_level": 0}}
        ca = self.dir_of("cpuacct")
        if ca:
            u = out["cpu"]["usage"]
            u["total"] = _read_int(os.path.join(ca, "cpuacct.usage"))
            try:
                u["percpu"] = [int(x) for x in _read(os.path.join(ca, "cpuacct.usage_percpu")).split()]
            except OSError:
                pass
            st = _kv(os.path.join(ca, "cpuacct.stat"))
            tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
            u["user"], u["kernel"] = st.get("user", 0) * tick, st.get("system", 0) * tick
        c = self.dir_of("cpu")
        if c:
            st = _kv(os.path.join(c, "cpu.stat"))
            out["cpu"]["throttling"] = {k: v for k, v in (("periods", st.get("nr_periods", 0)),
                                                          ("throttledPeriods", st.get("nr_throttled", 0)),
                                                          ("throttledTime", st.get("throttled_time", 0))) if v}
        m = self.dir_of("memory")
        if m:
            raw = _kv(os.path.join(m, "memory.stat"))
            mem = out["memory"]
            mem["cache"] = raw.get("cache", 0)
            mem["raw"] = raw
            for key, prefix in (("usage", "memory"), ("swap", "memory.memsw"), ("kernel", "memory.kmem"),
                                ("kernelTCP", "memory.kmem.tcp")):
                entry = {"limit": _read_int(os.path.join(m, f"{prefix}.limit_in_bytes")),
                         "usage": _read_int(os.path.join(m, f"{prefix}.usage_in_bytes")),
                         "max": _read_int(os.path.join(m, f"{prefix}.max_usage_in_bytes")),
                         "failcnt": _read_int(os.path.join(m, f"{prefix}.failcnt"))}
                mem[key] = {k: v for k, v in entry.items() if v or k in ("limit", "failcnt")}
        p = self.dir_of("pids")
        if p:
            out["pids"] = {k: v for k, v in (("current", _read_int(os.path.join(p, "pids.current"))),
                                             ("limit", _read_int(os.path.join(p, "pids.max")))) if v}
        cs = self.dir_of("cpuset")
        if cs:
            try:
                out["cpuset"]["cpus"] = _cpuset_list(_read(os.path.join(cs, "cpuset.effective_cpus")))
                out["cpuset"]["mems"] = _cpuset_list(_read(os.path.join(cs, "cpuset.effective_mems")))
            except OSError:
                pass
        b = self.dir_of("blkio")
        if b:
            out["blkio"] = _blkio_v1(b)
        return out

    def _stats_v2(self) -> dict[str, Any]:
        d = self.paths[CGROUP_ROOT]
        cpu = _kv(os.path.join(d, "cpu.stat"))
        raw = _kv(os.path.join(d, "memory.stat"))
        events = _kv(os.path.join(d, "memory.events"))
        limit = _read_int(os.path.join(d, "memory.max"))
        swap_usage = _read_int(os.path.join(d, "memory.swap.current"))
        usage = _read_int(os.path.join(d, "memory.current"))
        out: dict[str, Any] = {
            "cpu": {"usage": {"total": cpu.get("usage_usec", 0) * 1000, "kernel": cpu.get("system_usec", 0) * 1000,
                              "user": cpu.get("user_usec", 0) * 1000},
                    "throttling": {k: v for k, v in (("periods", cpu.get("nr_periods", 0)),
                                                     ("throttledPeriods", cpu.get("nr_throttled", 0)),
                                                     ("throttledTime", cpu.get("throttled_usec", 0) * 1000)) if v}},
            "memory": {"cache": raw.get("file", 0), "raw": raw,
                       "usage": {k: v for k, v in (("limit", limit), ("usage", usage),
                                                   ("max", _read_int(os.path.join(d, "memory.peak"))),
                                                   ("failcnt", events.get("max", 0)))
                                 if v or k in ("limit", "failcnt")},
                       "swap": {"limit": _read_int(os.path.join(d, "memory.swap.max")), "usage": usage + swap_usage,
                                "failcnt": 0},
                       "kernel": {"limit": 0, "failcnt": 0}, "kernelTCP": {"limit": 0, "failcnt": 0}},
            "pids": {k: v for k, v in (("current", _read_int(os.path.join(d, "pids.current"))),
                                       ("limit", _read_int(os.path.join(d, "pids.max")))) if v},
            "blkio": {}, "hugetlb": {}, "intel_rdt": {}, "network_interfaces": None,
            "cpuset": {"cpu_exclusive": 0, "mem_hardwall": 0, "mem_exclusive": 0, "memory_migrate": 0,
                       "memory_spread_page": 0, "memory_spread_slab": 0, "memory_pressure": 0,
                       "sched_load_balance": 0, "sched_relax_domain_level": 0},
        }
        return out

    # -- ending ---------------------------------------------------------------------------------
    def signal_all(self, sig: int) -> None:
        """Send `sig` to every process; SIGKILL freezes first so none forks away meanwhile (runc)."""
        frozen = False
        if sig == SIGKILL:
            try:
                self.freeze(True)
                frozen = True
            except OSError:
                pass
        try:
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        finally:
            if frozen:
                try:
                    self.freeze(False)
                except OSError:
                    pass

    def destroy(self, timeout: float = 5.0, parents: Iterable[str] = (), project_parent: bool = False) -> None:
        """Kill what is left and remove every directory (idempotent); then, where now empty, the `parents` its
        create() made, and with project_parent the directory above it (the project's own parent, for a container
        given no cgroupsPath)."""
        if not self.exists():
            return
        if self.v2 and os.path.exists(os.path.join(self.paths[CGROUP_ROOT], "cgroup.kill")):
            try:
                _write(os.path.join(self.paths[CGROUP_ROOT], "cgroup.kill"), 1)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        while self.pids() and time.monotonic() < deadline:
            self.signal_all(SIGKILL)
            time.sleep(0.01)
        for d in self.paths.values():
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise OSError(e.errno, f"removing the cgroup {d}: {e.strerror}", d) from None
                    time.sleep(0.01)
        above = set(parents) | ({os.path.dirname(d) for d in self.paths.values()} if project_parent else set())
        for d in sorted(above, key=len, reverse=True):  # deepest first; rmdir: only if empty
            try:
                os.rmdir(d)
            except OSError:
                pass


DEFAULT_DEVICE_RULES: list[dict[str, Any]] = [  # runc's AllowedDevices, appended to every config's rules
    {"allow": True, "type": "c", "access": "m"}, {"allow": True, "type": "b", "access": "m"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"},
]


def _blkio_v1(d: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, name in (("ioServiceBytesRecursive", "blkio.throttle.io_service_bytes_recursive"),
                      ("ioServicedRecursive", "blkio.throttle.io_serviced_recursive")):
        entries = []
        try:
            for line in _read(os.path.join(d, name)).splitlines():
                parts = line.split()
                if len(parts) == 3 and ":" in parts[0]:
                    major, minor = parts[0].split(":")
                    entries.append({"major": int(major), "minor": int(minor), "op": parts[1], "value": int(parts[2])})
        except OSError:
            continue
        if entries:
            out[key] = entries
    return out


def _wait(cond: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if cond():
                return True
        except OSError:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)


__all__ = ["CgroupPathError", "OciCgroup", "resolve", "version"]
