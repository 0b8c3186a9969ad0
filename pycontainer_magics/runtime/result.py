"""ContainerRun: what happened in one container run, as typed data (views live in display/)."""

from __future__ import annotations

import signal as _signal
from dataclasses import dataclass, field
from typing import Any

from .spec import ContainerSpec

# The error names of a run that ended without an exit status (run._Relay.loop): the runtime's failures, not an
# exception of the cell's (magics/expect.py).
HOLDER_LOST, STATUS_LOST = "HolderLost", "ExitStatusLost"


@dataclass(frozen=True)
class Sample:
    """One reading of the monitor: seconds since start and the cgroup's counters at that moment."""

    t: float
    memory: int  # bytes in use (cgroup memory.current / usage_in_bytes)
    cpu_ns: int  # cumulative CPU time of the cgroup
    pids: int


@dataclass(frozen=True)
class NamespaceRow:
    """One namespace type: the container's inode vs the host's (the caller's)."""

    kind: str  # mnt, uts, ipc, pid, net, user, cgroup, time
    container_inode: int | None
    host_inode: int | None

    @property
    def isolated(self) -> bool:
        return self.container_inode is not None and self.container_inode != self.host_inode


@dataclass(frozen=True)
class DiffEntry:
    """A path the container added (A), changed (C) or deleted (D), as `docker diff` prints it."""

    kind: str  # "A", "C" or "D"
    path: str
    size: int  # bytes in the writable layer (0 for directories and deletions)
    is_dir: bool = False


@dataclass
class ContainerRun:
    """The result of `runtime.run(spec)`.

    exit_code follows the shell's convention (128 + signal when killed), as Docker reports it.
    Final figures (peak memory, CPU time, OOM) come from the kernel's counters, not the samples.
    """

    id: str
    spec: ContainerSpec
    exit_code: int | None = None
    signal: int | None = None
    oom_killed: bool = False
    oom_kills: int = 0
    timed_out: bool = False
    interrupted: bool = False
    # An interrupt stops the container as `docker stop` does: stop_signal is what PID 1 was sent first (None:
    # killed at once), stop_killed why SIGKILL followed: "timeout" (the grace period ran out), "interrupt" (a
    # second interrupt), "at once" (no grace period, or PID 1 not running yet); None: PID 1 exited by itself.
    stop_signal: int | None = None
    stop_killed: str | None = None
    started_at: float = 0.0  # wall clock (time.time())
    duration: float = 0.0  # seconds from launch to exit
    peak_memory: int | None = None
    memory_limit: int | None = None
    cpu_time: float | None = None  # seconds (user + system)
    cpu_user: float | None = None
    cpu_system: float | None = None
    peak_pids: int | None = None
    pids_limit: int | None = None
    throttled_periods: int | None = None
    throttled_time: float | None = None
    cgroup_version: str | None = None  # "v1", "v2", or None when no cgroup was used
    samples: list[Sample] = field(default_factory=list)
    namespaces: list[NamespaceRow] = field(default_factory=list)
    diff: list[DiffEntry] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""
    error: str | None = None  # the cell's exception, formatted (Python cells)
    error_name: str | None = None  # e.g. "ZeroDivisionError"
    outputs: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # things the user should know (fallbacks taken)
    timeline: list[tuple[str, float]] = field(default_factory=list)  # launch stages, seconds from start
    # The setup plan that ran (runtime/plan.SetupPlan: every step, in order; `.rows()`, `.table()`). Typed
    # loosely: plan.py builds on the root filesystem code, which builds on this module.
    plan: Any = field(default=None, repr=False)

    @property
    def signal_name(self) -> str | None:
        return None if self.signal is None else _signal_name(self.signal)

    @property
    def status(self) -> str:
        """One word, like Docker's State: exited, oomkilled, killed, timeout, interrupted, error."""
        if self.oom_killed:
            return "oomkilled"
        if self.timed_out:
            return "timeout"
        if self.interrupted:
            return "interrupted"
        if self.signal is not None:
            return "killed"
        if self.error is not None:
            return "error"
        return "exited"

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.oom_killed

    def summary(self) -> dict[str, Any]:
        """The summary fields as a flat dict (the display layer renders it)."""
        return {
            "id": self.id,
            "name": self.spec.name,
            "status": self.status,
            "exit_code": self.exit_code,
            "signal": self.signal_name,
            "oom_killed": self.oom_killed,
            "duration_s": round(self.duration, 4),
            "peak_memory": self.peak_memory,
            "memory_limit": self.memory_limit,
            "cpu_time_s": None if self.cpu_time is None else round(self.cpu_time, 4),
            "peak_pids": self.peak_pids,
            "pids_limit": self.pids_limit,
            "cgroup": self.cgroup_version,
            **({"stopped": self.stop_story} if self.interrupted else {}),
        }

    @property
    def stop_story(self) -> str | None:
        """How an interrupt stopped it, in words: `SIGTERM; exited after 0.12 s` or `SIGTERM, then SIGKILL
        after the 5 s grace period`."""
        if not self.interrupted:
            return None
        sent = _signal_name(self.stop_signal) if self.stop_signal is not None else None
        if self.stop_killed is None:
            return f"{sent}; exited by itself" if sent else "exited by itself"
        why = {"timeout": f"after the {self.spec.stop_timeout:g} s grace period", "interrupt": "on a second interrupt",
               "at once": "at once"}.get(self.stop_killed, self.stop_killed)
        return f"{sent}, then SIGKILL {why}" if sent else f"SIGKILL {why}"


def _signal_name(n: int) -> str:
    try:
        return _signal.Signals(n).name
    except ValueError:
        return f"SIG{n}"
