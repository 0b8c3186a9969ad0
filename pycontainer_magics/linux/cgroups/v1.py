"""cgroup v1 backend: one directory per controller hierarchy (memory, cpu, cpuacct, cpuset, pids, freezer,
devices).

Layout: `<mount of controller>/<parent>/<name>`. Co-mounted hierarchies (`cpu,cpuacct`) share one
directory; it is created and removed once.
"""

from __future__ import annotations

import builtins
import errno
import os
import signal

from . import _io, devices
from ._mounts import Mount, read_mounts, under, visible_mounts
from .base import Cgroup, CgroupError, CgroupLimits, CgroupStats
from .hierarchy import DEFAULT_PARENT, Hierarchy, check_name, nearest_existing, parent_rel

# The controllers we use, in the order their directories are created.
CONTROLLERS = ("memory", "cpu", "cpuacct", "cpuset", "pids", "freezer", "devices")
# Without root, the devices controller cannot be written to (devices.allow/deny need CAP_SYS_ADMIN), and a
# rootless container makes no device node anyway: a delegated tree does without it.
ROOTLESS_CONTROLLERS = tuple(c for c in CONTROLLERS if c != "devices")

# What stats() and the sampler read, by controller; the sampler's (_HOT) are kept open from their first reading.
_COUNTERS = {
    "memory": ("memory.usage_in_bytes", "memory.max_usage_in_bytes", "memory.limit_in_bytes",
               "memory.memsw.usage_in_bytes", "memory.oom_control"),
    "cpuacct": ("cpuacct.usage", "cpuacct.usage_user", "cpuacct.usage_sys"),
    "cpu": ("cpu.stat",),
    "pids": ("pids.current", "pids.peak", "pids.max"),
}
_HOT = ("memory.usage_in_bytes", "memory.oom_control", "cpuacct.usage", "pids.current")

_USER_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _unique(paths: dict[str, str]) -> list[str]:
    seen: list[str] = []
    for c in CONTROLLERS:
        p = paths.get(c)
        if p is not None and p not in seen:
            seen.append(p)
    return seen


class CgroupV1(_io.KeptOpen):
    """One container's cgroup: a directory in each v1 controller hierarchy."""

    version = "v1"

    def __init__(self, name: str, paths: dict[str, str], parents: dict[str, str]) -> None:
        self.name = name
        self._paths = dict(paths)
        self._parents = dict(parents)
        for c, p in self._paths.items():  # never act outside our parent
            if os.path.dirname(p) != self._parents[c]:
                raise CgroupError(errno.EINVAL, f"{p} is not a child of {self._parents[c]}", p)
        files: dict[str, str] = {}
        for controller, names in _COUNTERS.items():
            d = paths.get(controller)
            if d is not None:
                files.update((n, os.path.join(d, n)) for n in names)
        self._counters = _io.Counters(files, hot=_HOT, join=self.join_files())

    def __repr__(self) -> str:
        return f"<CgroupV1 {self.name} {sorted(self._paths)}>"

    # -- paths ----------------------------------------------------------------------------------
    @property
    def paths(self) -> dict[str, str]:
        return dict(self._paths)

    @property
    def dirs(self) -> list[str]:
        return _unique(self._paths)

    def _dir(self, controller: str, for_file: str) -> str:
        d = self._paths.get(controller)
        if d is None:
            raise CgroupError(
                errno.EOPNOTSUPP, f"the {controller} controller is not available (v1)", for_file
            )
        return d

    def _file(self, controller: str, filename: str) -> str:
        return os.path.join(self._dir(controller, filename), filename)

    def join_files(self) -> list[str]:
        # `tasks`, written with "0" by the single-threaded child: 0.3 ms instead of 15 ms for cgroup.procs.
        return [os.path.join(d, "tasks") for d in self.dirs]

    def dir_fd(self) -> int:
        raise CgroupError(errno.EOPNOTSUPP, "CLONE_INTO_CGROUP needs cgroup v2", self.dirs[0])

    # -- limits ---------------------------------------------------------------------------------
    def set_limits(self, limits: CgroupLimits) -> None:
        """Apply the fields that are set (None: leave as is; -1: back to unlimited).

        memory_swap follows Docker: with memory set and memory_swap None, no swap (memsw = memory);
        -1 unlimited swap; N the memory+swap total (N >= memory).
        """
        if limits.cpuset_cpus is not None:
            _io.write(self._file("cpuset", "cpuset.cpus"), limits.cpuset_cpus)
        if limits.memory is not None:
            self._set_memory(limits.memory, limits.memory_swap)
        elif limits.memory_swap is not None:
            self._set_memsw_only(limits.memory_swap)
        if limits.cpus is not None:
            period = self._file("cpu", "cpu.cfs_period_us")
            quota = os.path.join(os.path.dirname(period), "cpu.cfs_quota_us")
            if limits.cpus < 0:
                _io.write(quota, "-1")
            else:
                _io.write(period, "100000")
                _io.write(quota, str(max(1, round(limits.cpus * 100000))))
        if limits.cpu_shares is not None:
            _io.write(self._file("cpu", "cpu.shares"), str(limits.cpu_shares))
        if limits.pids_max is not None:
            _io.write(self._file("pids", "pids.max"), "max" if limits.pids_max < 0 else str(limits.pids_max))
        if limits.devices is not None and "devices" in self._paths:  # (a delegated rootless tree has none)
            for name, line in devices.v1_writes(limits.devices):
                _io.write(self._file("devices", name), line)

    def _set_memory(self, memory: int, swap: int | None) -> None:
        lim = self._file("memory", "memory.limit_in_bytes")
        msw = os.path.join(os.path.dirname(lim), "memory.memsw.limit_in_bytes")
        m = -1 if memory < 0 else memory
        if swap is None:
            s = m  # Docker: --memory without --memory-swap means no swap
        elif swap < 0:
            s = -1
        else:
            if m == -1:
                raise CgroupError(errno.EINVAL, "memory_swap needs a memory limit", msw)
            if swap < m:
                raise CgroupError(errno.EINVAL, f"memory_swap {swap} is below memory {m}", msw)
            s = swap
        if not os.path.exists(msw):  # no swap accounting (swapaccount=0 or no swap support)
            _io.write(lim, str(m))
            return
        # The kernel keeps memory.limit <= memsw.limit at every step. When the new memsw is at least the
        # current memory limit, write memsw first (raising); otherwise memory first (lowering).
        current = _io.parse_int(_io.read(lim))
        new_s = float("inf") if s == -1 else s
        if new_s >= current:
            _io.write(msw, str(s))
            _io.write(lim, str(m))
        else:
            _io.write(lim, str(m))
            _io.write(msw, str(s))

    def _set_memsw_only(self, swap: int) -> None:
        lim = self._file("memory", "memory.limit_in_bytes")
        msw = os.path.join(os.path.dirname(lim), "memory.memsw.limit_in_bytes")
        if os.path.exists(msw):
            _io.write(msw, "-1" if swap < 0 else str(swap))

    def add_process(self, pid: int) -> None:
        for d in self.dirs:
            _io.write(os.path.join(d, "cgroup.procs"), str(pid))

    def procs(self) -> list[int]:
        pids: set[int] = set()
        for d in self.dirs:
            pids.update(_io.read_pids(os.path.join(d, "cgroup.procs")))
        return sorted(pids)

    def _tasks(self) -> set[int]:
        tids: set[int] = set()
        for d in self.dirs:
            tids.update(_io.read_pids(os.path.join(d, "tasks")))
        return tids

    # -- readings -------------------------------------------------------------------------------
    def memory_usage(self) -> int:
        b = self._counters.read("memory.usage_in_bytes")
        return 0 if b is None else int(b)

    def cpu_usage_ns(self) -> int:
        b = self._counters.read("cpuacct.usage")
        return 0 if b is None else int(b)

    def pids_current(self) -> int:
        b = self._counters.read("pids.current") if "pids" in self._paths else None
        return len(self.procs()) if b is None else int(b)

    def oom_kill_count(self) -> int:
        b = self._counters.read("memory.oom_control")
        return 0 if b is None else _io.kv_value(b.decode(), "oom_kill")

    def stats(self) -> CgroupStats:
        c = self._counters
        mem_current = mem_peak = None
        mem_limit: int | None = None
        swap_current = None
        oom_kill = 0
        if "memory" in self._paths:
            mem_current = int(c.text("memory.usage_in_bytes"))
            mem_peak = int(c.text("memory.max_usage_in_bytes"))
            mem_limit = int(c.text("memory.limit_in_bytes"))
            if mem_limit >= _io.V1_UNLIMITED:
                mem_limit = None
            memsw = c.optional("memory.memsw.usage_in_bytes")
            if memsw is not None:
                swap_current = max(0, int(memsw) - mem_current)
            oom_kill = _io.parse_kv(c.text("memory.oom_control")).get("oom_kill", 0)
        cpu_usage = 0
        cpu_user = cpu_system = None
        ca = self._paths.get("cpuacct")
        if ca:
            cpu_usage = int(c.text("cpuacct.usage"))
            u = c.optional("cpuacct.usage_user")
            s = c.optional("cpuacct.usage_sys")
            if u is not None and s is not None:  # nanoseconds (kernel 4.6+)
                cpu_user, cpu_system = int(u), int(s)
            else:  # cpuacct.stat is in USER_HZ ticks
                st = _io.parse_kv(_io.read(os.path.join(ca, "cpuacct.stat")))
                tick = 1_000_000_000 // _USER_HZ
                cpu_user, cpu_system = st.get("user", 0) * tick, st.get("system", 0) * tick
        nr_periods = nr_throttled = throttled_ns = None
        if "cpu" in self._paths:
            st = _io.parse_kv(c.text("cpu.stat"))
            nr_periods = st.get("nr_periods")
            nr_throttled = st.get("nr_throttled")
            throttled_ns = st.get("throttled_time")
        pids_current = 0
        pids_peak = pids_limit = None
        if "pids" in self._paths:
            pids_current = int(c.text("pids.current"))
            pk = c.optional("pids.peak")  # missing on older kernels
            pids_peak = int(pk) if pk is not None else None
            pids_limit = _io.parse_max(c.text("pids.max"))
        else:
            pids_current = len(self.procs())
        return CgroupStats(
            memory_current=mem_current or 0,
            memory_peak=mem_peak,
            memory_limit=mem_limit,
            swap_current=swap_current,
            cpu_usage_ns=cpu_usage,
            cpu_user_ns=cpu_user,
            cpu_system_ns=cpu_system,
            nr_periods=nr_periods,
            nr_throttled=nr_throttled,
            throttled_ns=throttled_ns,
            pids_current=pids_current,
            pids_peak=pids_peak,
            pids_limit=pids_limit,
            # v1 has no counter of OOM-path entries (under_oom is a state, failcnt counts every time the
            # limit was reached, mostly resolved by reclaim). With the OOM killer enabled every OOM ends
            # in a kill, so oom_count is the oom_kill counter.
            oom_count=oom_kill,
            oom_kill_count=oom_kill,
        )

    # -- pause ----------------------------------------------------------------------------------
    def _freezer_state(self) -> str:
        fz = self._paths.get("freezer")
        if not fz or not os.path.isdir(fz):
            raise CgroupError(errno.ENOTSUP, "no freezer controller for this cgroup", self.dirs[0])
        return os.path.join(fz, "freezer.state")

    def freeze(self, frozen: bool = True, timeout: float = 2.0) -> None:
        state = self._freezer_state()
        want = "FROZEN" if frozen else "THAWED"
        _io.write(state, want)
        if not _io.wait_until(lambda: _io.read(state).strip() == want, timeout):
            raise CgroupError(errno.EBUSY, f"the cgroup did not reach {want} in {timeout:g} s", state)

    def frozen(self) -> bool:
        try:
            return _io.read(self._freezer_state()).strip() != "THAWED"
        except OSError:
            return False

    # -- tear-down ------------------------------------------------------------------------------
    def kill_all(self, timeout: float = 2.0) -> None:
        """Freeze, SIGKILL every task, thaw, and wait (bounded) until the cgroup is empty."""
        if not self.procs():
            return
        fz = self._paths.get("freezer")
        state = os.path.join(fz, "freezer.state") if fz else None
        if state and os.path.isdir(fz or ""):
            _io.write(state, "FROZEN")
            try:
                # FREEZING until every task is stopped; a task stuck in the kernel may never get there.
                _io.wait_until(lambda: _io.read(state).strip() == "FROZEN", min(timeout, 1.0))
                _kill(self.procs())
            finally:
                _io.write(state, "THAWED")

        def empty() -> bool:
            pids = self.procs()
            _kill(pids)
            return not pids

        if not _io.wait_until(empty, timeout):
            raise CgroupError(errno.EBUSY, f"processes survived SIGKILL: {self.procs()}", self.dirs[0])

    def remove(self) -> None:
        """Kill what is left, then rmdir every directory (idempotent)."""
        self.close()
        live = [d for d in self.dirs if os.path.isdir(d)]
        if not live:
            return
        if self.procs():
            self.kill_all()
        errors: list[CgroupError] = []
        for d in live:
            try:
                _io.rmdir(d)
            except CgroupError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def close(self) -> None:
        """Close the kept-open counter and join files."""
        self._counters.close()


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class HierarchyV1(Hierarchy):
    """Our parent in each v1 controller hierarchy."""

    version = "v1"

    def __init__(
        self,
        parent_name: str = DEFAULT_PARENT,
        root: str = "/sys/fs/cgroup",
        mounts: list[Mount] | None = None,
    ) -> None:
        self.root = root
        self.parent = parent_rel(parent_name)
        if mounts is None:
            mounts = read_mounts()
        # controller -> mount point of its hierarchy (the visible one, preferably under root).
        top = visible_mounts(mounts)
        wanted = CONTROLLERS if os.geteuid() == 0 else ROOTLESS_CONTROLLERS
        mp: dict[str, str] = {}
        for m in sorted(top.values(), key=lambda m: not under(m.mount_point, root)):
            if m.fstype != "cgroup":
                continue
            for c in m.controllers:
                if c in wanted and c not in mp:
                    mp[c] = m.mount_point
        self.mount_points = mp
        self._parents = {c: os.path.join(p, self.parent) for c, p in mp.items()}

    @property
    def parent_paths(self) -> builtins.list[str]:
        return _unique(self._parents)

    def available_controllers(self) -> builtins.list[str]:
        return [c for c in CONTROLLERS if c in self.mount_points]

    @property
    def writable(self) -> bool:
        if not self._parents:
            return False
        return all(os.access(nearest_existing(p), os.W_OK) for p in self.parent_paths)

    def _ensure_parent(self) -> None:
        for c, p in self._parents.items():
            if os.path.isdir(p):
                if c == "cpuset":
                    self._fill_cpuset(p)
                continue
            # Create the missing components top-down; only these are ours to configure.
            missing = []
            q = p
            while not os.path.isdir(q):
                missing.append(q)
                q = os.path.dirname(q)
            for d in reversed(missing):
                try:
                    os.mkdir(d)
                except FileExistsError:
                    pass
                except OSError as exc:
                    raise _io.error(exc, "cannot create cgroup parent", d) from None
                if c == "cpuset":
                    self._fill_cpuset(d)
                    # New children of our parent copy cpus/mems from it.
                    _io.write(os.path.join(d, "cgroup.clone_children"), "1")

    @staticmethod
    def _fill_cpuset(d: str) -> None:
        """A v1 cpuset cgroup holds no task until cpus and mems are set: copy them from the parent."""
        for f in ("cpuset.cpus", "cpuset.mems"):
            path = os.path.join(d, f)
            if not _io.read(path).strip():
                _io.write(path, _io.read(os.path.join(os.path.dirname(d), f)).strip())

    def _paths_for(self, name: str) -> dict[str, str]:
        check_name(name)
        return {c: os.path.join(p, name) for c, p in self._parents.items()}

    def create(self, name: str, limits: CgroupLimits | None = None) -> CgroupV1:
        paths = self._paths_for(name)
        if not paths:
            raise CgroupError(errno.ENOENT, "no cgroup v1 controller is mounted", self.root)
        self._ensure_parent()
        created: list[str] = []
        cg = CgroupV1(name, paths, self._parents)
        try:
            for d in cg.dirs:
                try:
                    os.mkdir(d)
                except OSError as exc:
                    raise _io.error(exc, "cannot create cgroup", d) from None
                created.append(d)
            if "cpuset" in paths:
                self._fill_cpuset(paths["cpuset"])
            cg.set_limits(limits or CgroupLimits())
        except BaseException:
            for d in reversed(created):
                try:
                    _io.rmdir(d)
                except CgroupError:
                    pass
            raise
        return cg

    def list(self) -> builtins.list[str]:
        names: set[str] = set()
        for p in self.parent_paths:
            try:
                with os.scandir(p) as it:
                    names.update(e.name for e in it if e.is_dir(follow_symlinks=False))
            except FileNotFoundError:
                pass
        return sorted(names)

    def get(self, name: str) -> CgroupV1:
        paths = {c: p for c, p in self._paths_for(name).items() if os.path.isdir(p)}
        if not paths:
            raise CgroupError(errno.ENOENT, f"no cgroup named {name!r}", os.path.join(self.parent, name))
        return CgroupV1(name, paths, self._parents)


_check: type[Cgroup] = CgroupV1  # CgroupV1 implements the Cgroup protocol
