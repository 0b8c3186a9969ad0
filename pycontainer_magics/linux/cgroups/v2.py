"""cgroup v2 backend: one directory `<root>/<parent>/<name>` in the unified tree.

No-internal-processes rule: our parent enables controllers for its children in `cgroup.subtree_control`,
so it never holds a process itself; containers live only in its children.
"""

from __future__ import annotations

import builtins
import errno
import os
import signal

from . import _io, devices
from .base import Cgroup, CgroupError, CgroupLimits, CgroupStats
from .hierarchy import DEFAULT_PARENT, Hierarchy, check_name, nearest_existing, parent_rel

# What stats() and the sampler read; the sampler's (_HOT) are kept open from their first reading.
_COUNTERS = ("memory.current", "memory.peak", "memory.max", "memory.swap.current", "memory.events", "cpu.stat",
             "pids.current", "pids.peak", "pids.max")
_HOT = ("memory.current", "cpu.stat", "pids.current", "memory.events")

# The controllers our parent enables for the containers (those the tree offers).
WANTED = ("cpu", "cpuset", "memory", "pids")


def shares_to_weight(shares: int) -> int:
    """Docker/v1 cpu.shares (2..262144) -> v2 cpu.weight (1..10000), the conversion runc uses."""
    if shares == 0:
        return 100  # runc: 0 means unset; cpu.weight's default
    return 1 + ((shares - 2) * 9999) // 262142


class CgroupV2(_io.KeptOpen):
    """One container's cgroup in the unified hierarchy."""

    version = "v2"

    def __init__(self, name: str, path: str, parent: str) -> None:
        if os.path.dirname(path) != parent:  # never act outside our parent
            raise CgroupError(errno.EINVAL, f"{path} is not a child of {parent}", path)
        self.name = name
        self.path = path
        self._parent = parent
        self._counters = _io.Counters({n: os.path.join(path, n) for n in _COUNTERS}, hot=_HOT, join=self.join_files())

    def __repr__(self) -> str:
        return f"<CgroupV2 {self.name}>"

    def _f(self, filename: str) -> str:
        return os.path.join(self.path, filename)

    @property
    def paths(self) -> dict[str, str]:
        return {"unified": self.path}

    def join_files(self) -> list[str]:
        return [self._f("cgroup.procs")]

    def dir_fd(self) -> int:
        """An O_DIRECTORY fd of the cgroup, for clone3(CLONE_INTO_CGROUP). The caller closes it."""
        try:
            return os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise _io.error(exc, "cannot open cgroup directory", self.path) from None

    def _need(self, controller: str, filename: str) -> str:
        path = self._f(filename)
        if not os.path.exists(path):
            raise CgroupError(
                errno.EOPNOTSUPP,
                f"the {controller} controller is not enabled for {self._parent} (cgroup.subtree_control)",
                path,
            )
        return path

    # -- limits ---------------------------------------------------------------------------------
    def set_limits(self, limits: CgroupLimits) -> None:
        """Apply the fields that are set (None: leave as is; -1: back to unlimited).

        memory_swap in Docker's terms (memory + swap): None with memory set -> memory.swap.max 0 (no
        swap); -1 -> max; N -> N - memory. Without memory.swap.max (no swap accounting) swap is not
        limited.
        """
        if limits.cpuset_cpus is not None:
            _io.write(self._need("cpuset", "cpuset.cpus"), limits.cpuset_cpus)
        if limits.memory is not None:
            mem_max = self._need("memory", "memory.max")
            swap_max = self._f("memory.swap.max")
            m = limits.memory
            if limits.memory_swap is None:
                swap = "0" if m >= 0 else "max"
            elif limits.memory_swap < 0:
                swap = "max"
            else:
                if m < 0:
                    raise CgroupError(errno.EINVAL, "memory_swap needs a memory limit", swap_max)
                if limits.memory_swap < m:
                    raise CgroupError(
                        errno.EINVAL, f"memory_swap {limits.memory_swap} is below memory {m}", swap_max
                    )
                swap = str(limits.memory_swap - m)
            # No ordering constraint between the two on v2. Swap first so a shrinking memory.max
            # cannot push the cgroup into swap in between.
            if os.path.exists(swap_max):
                _io.write(swap_max, swap)
            _io.write(mem_max, "max" if m < 0 else str(m))
        elif limits.memory_swap is not None:
            swap_max = self._f("memory.swap.max")
            if os.path.exists(swap_max) and limits.memory_swap < 0:
                _io.write(swap_max, "max")
        if limits.cpus is not None:
            path = self._need("cpu", "cpu.max")
            if limits.cpus < 0:
                _io.write(path, "max 100000")
            else:
                _io.write(path, f"{max(1, round(limits.cpus * 100000))} 100000")
        if limits.cpu_shares is not None:
            _io.write(self._need("cpu", "cpu.weight"), str(shares_to_weight(limits.cpu_shares)))
        if limits.pids_max is not None:
            _io.write(self._need("pids", "pids.max"), "max" if limits.pids_max < 0 else str(limits.pids_max))
        if limits.devices is not None and os.geteuid() == 0:  # (attaching a BPF program needs CAP_SYS_ADMIN)
            try:
                devices.attach_v2(self.path, limits.devices)
            except OSError as e:
                raise CgroupError(e.errno, f"device filter: {e.strerror}", self.path) from None

    def add_process(self, pid: int) -> None:
        _io.write(self._f("cgroup.procs"), str(pid))

    def procs(self) -> list[int]:
        return sorted(_io.read_pids(self._f("cgroup.procs")))

    # -- readings -------------------------------------------------------------------------------
    def memory_usage(self) -> int:
        return int(self._counters.text("memory.current"))

    def cpu_usage_ns(self) -> int:
        # cpu.stat's first line is usage_usec (present even without the cpu controller).
        return _io.kv_value(self._counters.text("cpu.stat"), "usage_usec") * 1000

    def pids_current(self) -> int:
        b = self._counters.read("pids.current")
        return len(self.procs()) if b is None else int(b)

    def oom_kill_count(self) -> int:
        b = self._counters.read("memory.events")
        return 0 if b is None else _io.kv_value(b.decode(), "oom_kill")

    def stats(self) -> CgroupStats:
        c = self._counters
        cur = c.optional("memory.current")
        peak = c.optional("memory.peak")  # kernel 5.19+
        lim = c.optional("memory.max")
        swap = c.optional("memory.swap.current")
        ev = _io.parse_kv(c.optional("memory.events") or "")
        cpu = _io.parse_kv(c.text("cpu.stat"))
        pc = c.optional("pids.current")
        pp = c.optional("pids.peak")  # missing on older kernels
        pm = c.optional("pids.max")
        throttled_us = cpu.get("throttled_usec")
        return CgroupStats(
            memory_current=int(cur) if cur is not None else 0,
            memory_peak=int(peak) if peak is not None else None,
            memory_limit=_io.parse_max(lim) if lim is not None else None,
            swap_current=int(swap) if swap is not None else None,
            cpu_usage_ns=cpu.get("usage_usec", 0) * 1000,
            cpu_user_ns=cpu["user_usec"] * 1000 if "user_usec" in cpu else None,
            cpu_system_ns=cpu["system_usec"] * 1000 if "system_usec" in cpu else None,
            nr_periods=cpu.get("nr_periods"),
            nr_throttled=cpu.get("nr_throttled"),
            throttled_ns=throttled_us * 1000 if throttled_us is not None else None,
            pids_current=int(pc) if pc is not None else len(self.procs()),
            pids_peak=int(pp) if pp is not None else None,
            pids_limit=_io.parse_max(pm) if pm is not None else None,
            oom_count=ev.get("oom", 0),
            oom_kill_count=ev.get("oom_kill", 0),
        )

    # -- tear-down ------------------------------------------------------------------------------
    def freeze(self, frozen: bool = True, timeout: float = 2.0) -> None:
        """cgroup.freeze, then wait for `frozen 0|1` in cgroup.events."""
        _io.write(self._f("cgroup.freeze"), "1" if frozen else "0")
        want = f"frozen {1 if frozen else 0}"
        events = self._f("cgroup.events")
        if not _io.wait_until(lambda: want in _io.read(events).splitlines(), timeout):
            raise CgroupError(errno.EBUSY, f"the cgroup did not reach '{want}' in {timeout:g} s", events)

    def frozen(self) -> bool:
        try:
            return _io.read(self._f("cgroup.freeze")).strip() == "1"
        except OSError:
            return False

    def kill_all(self, timeout: float = 2.0) -> None:
        """cgroup.kill (kernel 5.14+) or SIGKILL over cgroup.procs until empty; bounded wait."""
        if not self.procs():
            return
        kill_file = self._f("cgroup.kill")
        if os.path.exists(kill_file):
            _io.write(kill_file, "1")

        def empty() -> bool:
            pids = self.procs()
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return not pids

        if not _io.wait_until(empty, timeout):
            raise CgroupError(errno.EBUSY, f"processes survived SIGKILL: {self.procs()}", self.path)

    def remove(self) -> None:
        self.close()
        if not os.path.isdir(self.path):
            return
        if self.procs():
            self.kill_all()
        _io.rmdir(self.path)

    def close(self) -> None:
        self._counters.close()


class HierarchyV2(Hierarchy):
    """Our parent in the unified tree."""

    version = "v2"

    def __init__(self, parent_name: str = DEFAULT_PARENT, root: str = "/sys/fs/cgroup") -> None:
        self.root = root
        self.parent = parent_rel(parent_name)
        self.path = os.path.join(root, self.parent)

    @property
    def parent_paths(self) -> builtins.list[str]:
        return [self.path]

    def available_controllers(self) -> builtins.list[str]:
        """Controllers our containers can get: our parent's cgroup.controllers (or, before the parent
        exists, what its parent enables for children)."""
        if os.path.isdir(self.path):
            text = _io.read(os.path.join(self.path, "cgroup.controllers"))
        else:
            base = nearest_existing(self.path)
            text = _io.read_optional(os.path.join(base, "cgroup.subtree_control")) or ""
        return text.split()

    @property
    def writable(self) -> bool:
        base = nearest_existing(self.path)
        if not os.access(base, os.W_OK):
            return False
        if base == self.path:
            return os.access(os.path.join(base, "cgroup.subtree_control"), os.W_OK)
        return True

    def _ensure_parent(self) -> None:
        missing = []
        q = self.path
        while not os.path.isdir(q):
            missing.append(q)
            q = os.path.dirname(q)
        for d in reversed(missing):  # intermediate directories we create pass the controllers down
            try:
                os.mkdir(d)
            except FileExistsError:
                pass
            except OSError as exc:
                raise _io.error(exc, "cannot create cgroup parent", d) from None
            if d != self.path:
                self._enable(d)
        self._enable(self.path)

    @staticmethod
    def _enable(d: str) -> None:
        have = set(_io.read(os.path.join(d, "cgroup.controllers")).split())
        enabled = set(_io.read(os.path.join(d, "cgroup.subtree_control")).split())
        todo = [c for c in WANTED if c in have and c not in enabled]
        if todo:
            _io.write(os.path.join(d, "cgroup.subtree_control"), " ".join("+" + c for c in todo))

    def create(self, name: str, limits: CgroupLimits | None = None) -> CgroupV2:
        check_name(name)
        self._ensure_parent()
        path = os.path.join(self.path, name)
        try:
            os.mkdir(path)
        except OSError as exc:
            raise _io.error(exc, "cannot create cgroup", path) from None
        cg = CgroupV2(name, path, self.path)
        try:
            cg.set_limits(limits or CgroupLimits())
        except BaseException:
            cg.close()
            try:
                _io.rmdir(path)
            except CgroupError:
                pass
            raise
        return cg

    def list(self) -> builtins.list[str]:
        try:
            with os.scandir(self.path) as it:
                return sorted(e.name for e in it if e.is_dir(follow_symlinks=False))
        except FileNotFoundError:
            return []

    def get(self, name: str) -> CgroupV2:
        check_name(name)
        path = os.path.join(self.path, name)
        if not os.path.isdir(path):
            raise CgroupError(errno.ENOENT, f"no cgroup named {name!r}", path)
        return CgroupV2(name, path, self.path)


_check: type[Cgroup] = CgroupV2  # CgroupV2 implements the Cgroup protocol
