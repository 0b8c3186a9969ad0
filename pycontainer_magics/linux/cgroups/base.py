"""One cgroup interface for both versions: limits and stats as plain dataclasses.

The v1 backend (`v1.py`) and the v2 backend (`v2.py`) implement `Cgroup`; `detect_layout()` and
`open_hierarchy()` (in `__init__.py`) pick one from what is mounted at /sys/fs/cgroup.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ...errors import CGROUP, OSFailure
from .devices import DeviceRule


class CgroupError(OSFailure):
    """A cgroup operation failed; carries errno and the control file that failed (path, filename)."""

    needs = CGROUP


@dataclass(frozen=True)
class CgroupLimits:
    """Limits in Docker's terms. None: leave unlimited."""

    memory: int | None = None  # bytes
    memory_swap: int | None = None  # memory + swap in bytes; None with memory set: no swap; -1 unlimited
    cpus: float | None = None  # CPU quota in CPUs (cfs quota/period, v2 cpu.max)
    cpu_shares: int | None = None  # relative weight, Docker scale 2..262144 (v2: converted to cpu.weight)
    cpuset_cpus: str | None = None
    pids_max: int | None = None
    # Device nodes the processes may create and open (devices.py); None: not confined
    devices: tuple[DeviceRule, ...] | None = None


@dataclass(frozen=True)
class CgroupStats:
    """A reading of a cgroup's counters, the same fields on v1 and v2 (None: not available)."""

    memory_current: int
    memory_peak: int | None
    memory_limit: int | None  # None: unlimited
    swap_current: int | None
    cpu_usage_ns: int
    cpu_user_ns: int | None
    cpu_system_ns: int | None
    nr_periods: int | None
    nr_throttled: int | None
    throttled_ns: int | None
    pids_current: int
    pids_peak: int | None
    pids_limit: int | None  # None: unlimited
    oom_count: int  # times the limit was hit and the OOM path entered
    oom_kill_count: int  # processes killed by the OOM killer in this cgroup


class Cgroup(Protocol):
    """A cgroup of the project's own (one per container)."""

    version: str  # "v1" or "v2"
    name: str

    @property
    def paths(self) -> dict[str, str]:
        """controller (v1) or "unified" (v2) -> directory."""
        ...

    def join_files(self) -> list[str]:
        """Files a single-threaded child writes b"0" into to join itself (v1 `tasks`, v2 `cgroup.procs`)."""
        ...

    def set_limits(self, limits: CgroupLimits) -> None: ...

    def add_process(self, pid: int) -> None: ...

    def procs(self) -> list[int]: ...

    def stats(self) -> CgroupStats: ...

    def keep_open(self) -> None:
        """Open the files stats() reads and the join files now, ahead of the run that will use them."""
        ...

    def join_fds(self) -> list[int]:
        """join_files() opened for writing (ahead by keep_open, handed over once; else now). The caller closes them."""
        ...

    def kept_fds(self) -> list[int]:
        """The fds keep_open() keeps (a process that closes every other fd must keep these)."""
        ...

    def memory_usage(self) -> int:
        """The cheapest reading of current memory (the sampler's hot path)."""
        ...

    def cpu_usage_ns(self) -> int: ...

    def pids_current(self) -> int: ...

    def oom_kill_count(self) -> int: ...

    def kill_all(self) -> None:
        """SIGKILL every process in the cgroup (v2 cgroup.kill; v1 freeze, kill, thaw)."""
        ...

    def freeze(self, frozen: bool = True, timeout: float = 2.0) -> None:
        """Stop (or let go on) every process of the cgroup, as `docker pause`: v1 freezer.state, v2
        cgroup.freeze; returns once the kernel says the cgroup is (un)frozen."""
        ...

    def frozen(self) -> bool: ...

    def remove(self) -> None:
        """Kill what is left, then rmdir every directory of this cgroup. Idempotent."""
        ...
