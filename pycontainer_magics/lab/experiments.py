"""The cgroup experiments of the lecture, as data: a memory hog against a limit (the OOM killer), a
spinning process under a CPU quota (throttling), a fork bomb against a pids limit, and two groups
competing for one CPU (shares/weight). Each runs in throw-away groups under the project's parent and
returns a GroupRun (group_run.py) or a Competition; display/cgroup_views.py draws them.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..linux.cgroups import Cgroup, CgroupLimits, Hierarchy, new_name, open_hierarchy
from .group_run import GroupRun, GroupSample, run_in_group
from .groups import set_extra

MiB = 2**20

# -- experiments --------------------------------------------------------------------------------------

HOG = """
import sys, time
total, step, pause = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
held = []
while sum(len(b) for b in held) < total:
    held.append(b"x" * step)
    time.sleep(pause)
print(f"allocated {sum(len(b) for b in held) >> 20} MiB")
"""

SPIN = """
import sys, time
start = float(sys.argv[2]) if len(sys.argv) > 2 else time.monotonic()
time.sleep(max(0.0, start - time.monotonic()))
end = start + float(sys.argv[1])
n = 0
while time.monotonic() < end:
    n += 1
print(n)
"""

FORK_BOMB = """
import os, sys, time
end = time.monotonic() + float(sys.argv[1])
main = os.getpid()
refused = 0
while time.monotonic() < end:
    try:
        if os.fork() == 0:
            os.closerange(0, 3)
            continue          # the child forks too: a real bomb, held back only by pids.max
    except OSError:
        refused += 1
        time.sleep(0.002)
if os.getpid() == main:
    print(f"refused forks seen by the first process: {refused}")
    time.sleep(0.05)
os._exit(0)
"""


def hog_command(size: int, step: int = 4 * MiB, pause: float = 0.005) -> list[str]:
    """A Python process that allocates (and touches) `size` bytes in `step` chunks."""
    return [sys.executable, "-c", HOG, str(size), str(step), str(pause)]


def spin_command(seconds: float, start: float | None = None) -> list[str]:
    """Spin for `seconds` (from `start`, a time.monotonic() value, when given)."""
    return [sys.executable, "-c", SPIN, str(seconds), *([] if start is None else [repr(start)])]


def fork_bomb_command(seconds: float) -> list[str]:
    return [sys.executable, "-c", FORK_BOMB, str(seconds)]


class _Temp:
    """A throw-away group of ours (owner-pid name, so a killed kernel's leftovers are pruned)."""

    def __init__(self, h: Hierarchy | None, prefix: str, limits: CgroupLimits, **extra: Any) -> None:
        self.h = h or open_hierarchy()
        self.cg = self.h.create(new_name(prefix), limits)
        try:
            set_extra(self.cg, **extra)
        except BaseException:
            self.cg.remove()
            raise

    def __enter__(self) -> Cgroup:
        return self.cg

    def __exit__(self, *exc: object) -> None:
        self.cg.remove()


def oom_experiment(hog: int, memory: int, *, hierarchy: Hierarchy | None = None, swap: int | None = None,
                   memory_high: int | None = None, oom_group: bool | None = None,
                   oom_kill_disable: bool | None = None, interval: float = 0.01, timeout: float = 20.0,
                   step: int = 4 * MiB, pause: float = 0.02, on_timeout: Callable[[Cgroup], bool] | None = None,
                   on_sample: Callable[[GroupSample], None] | None = None) -> GroupRun:
    """Run a memory hog of `hog` bytes in a fresh group limited to `memory` (memory.max / limit_in_bytes;
    -1 for none), optionally with swap (memory+swap, Docker's --memory-swap), memory.high (v2),
    memory.oom.group (v2) or the OOM killer disabled (v1). Returns counters before/after and samples.
    The hog takes a `step` every `pause` seconds, slower than the sampling `interval`: the climb shows."""
    limits = CgroupLimits(memory=memory, memory_swap=swap)
    with _Temp(hierarchy, "oom-", limits, memory_high=memory_high, oom_group=oom_group,
               oom_kill_disable=oom_kill_disable) as cg:
        r = run_in_group(cg, command=hog_command(hog, step, pause), interval=interval, timeout=timeout,
                         on_timeout=on_timeout, on_sample=on_sample)
        r.limits = {"memory": memory if memory >= 0 else None, "memory_swap": swap, "memory_high": memory_high,
                    "oom_group": oom_group, "oom_kill_disable": oom_kill_disable, "hog": hog}
        return r


def cpu_experiment(seconds: float, cpus: float | None, *, hierarchy: Hierarchy | None = None,
                   interval: float = 0.05) -> GroupRun:
    """Spin one process for `seconds` under a quota of `cpus` (None: no quota)."""
    with _Temp(hierarchy, "cpu-", CgroupLimits(cpus=cpus)) as cg:
        r = run_in_group(cg, command=spin_command(seconds), interval=interval, full_samples=True,
                         timeout=seconds * 20 + 5)
        r.limits = {"cpus": cpus}
        return r


def fork_bomb(pids_max: int, seconds: float = 1.0, *, hierarchy: Hierarchy | None = None,
              interval: float = 0.02) -> GroupRun:
    """A fork bomb for `seconds` in a group with pids.max = pids_max; the rest is killed afterwards."""
    with _Temp(hierarchy, "bomb-", CgroupLimits(pids_max=pids_max)) as cg:
        r = run_in_group(cg, command=fork_bomb_command(seconds), interval=interval, timeout=seconds * 10 + 5,
                         full_samples=True)  # with pids.events: the refused forks over time
        r.limits = {"pids_max": pids_max}
        return r


@dataclass
class Competition:
    """Two groups spinning at once: their settings and CPU seconds used."""

    labels: tuple[str, str]
    runs: tuple[GroupRun, GroupRun]
    cpu_seconds: tuple[float, float]
    cpuset: str | None

    @property
    def ratio(self) -> float:
        a, b = self.cpu_seconds
        return a / b if b else float("inf")


def cpu_competition(a: CgroupLimits, b: CgroupLimits, seconds: float = 1.0, *, cpuset: str | None = "0",
                    hierarchy: Hierarchy | None = None, interval: float = 0.05) -> Competition:
    """Two groups, each spinning one process per CPU of `cpuset` for `seconds`, pinned to `cpuset`
    (shares/weight only matter when they compete for the same CPU)."""

    ncpu = len(_cpus(cpuset)) if cpuset else (os.cpu_count() or 1)
    la = CgroupLimits(**{**a.__dict__, "cpuset_cpus": cpuset or a.cpuset_cpus})
    lb = CgroupLimits(**{**b.__dict__, "cpuset_cpus": cpuset or b.cpuset_cpus})
    t = time.monotonic()  # Python's start-up (seconds under emulation): both groups spin from one moment after it
    subprocess_run([sys.executable, "-c", "pass"])
    start = time.monotonic() + 0.2 + 4 * (time.monotonic() - t)
    spin = spin_command(seconds, start)
    code = (f"import subprocess, sys\nps = [subprocess.Popen({spin!r}) for _ in range({ncpu})]\n"
            "sys.exit(max(p.wait() for p in ps))\n")
    with _Temp(hierarchy, "cpuA-", la) as ca, _Temp(hierarchy, "cpuB-", lb) as cb:
        results: dict[str, GroupRun] = {}

        def go(key: str, cg: Cgroup) -> None:
            results[key] = run_in_group(cg, command=[sys.executable, "-c", code], interval=interval,
                                        full_samples=True, timeout=seconds * 20 + 5)

        tb = threading.Thread(target=go, args=("b", cb))
        tb.start()
        go("a", ca)
        tb.join()
    ra, rb = results["a"], results["b"]
    # CPU within the common spinning window (start-up excluded); the whole run's if a window is unsampled.
    win = [r.cpu_between(start + 0.05 * seconds, start + 0.95 * seconds) for r in (ra, rb)]
    if None in win:
        win = [ra.delta("usage_usec") / 1e6, rb.delta("usage_usec") / 1e6]
    secs = (float(win[0] or 0.0), float(win[1] or 0.0))
    return Competition((_label(la), _label(lb)), (ra, rb), secs, cpuset)


def subprocess_run(argv: list[str]) -> None:
    import subprocess

    subprocess.run(argv, check=False)


def _label(lim: CgroupLimits) -> str:
    parts = []
    if lim.cpu_shares is not None:
        parts.append(f"shares {lim.cpu_shares}")
    if lim.cpus is not None:
        parts.append(f"cpus {lim.cpus}")
    return ", ".join(parts) or "default"


def _cpus(spec: str) -> list[int]:
    out: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


__all__ = ["Competition", "cpu_competition", "cpu_experiment", "fork_bomb", "fork_bomb_command", "hog_command",
           "oom_experiment", "spin_command"]
