"""The cgroup experiments of the lecture, as data: a memory hog against a limit (the OOM killer), a
spinning process under a CPU quota (throttling), a fork bomb against a pids limit, and two groups
competing for one CPU (shares/weight). Each runs in throw-away groups under the project's parent and
returns a GroupRun (group_run.py) or a Competition; display/cgroup_views.py draws them.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..linux.cgroups import Cgroup, CgroupError, CgroupLimits, Hierarchy, explore, new_name, open_hierarchy
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
    """Two groups spinning at once: their settings, and the CPU seconds each used while both were spinning
    (from the groups' own usage counters over `window`, two time.monotonic() moments)."""

    labels: tuple[str, str]
    runs: tuple[GroupRun, GroupRun]
    cpu_seconds: tuple[float, float]
    cpuset: str | None
    window: tuple[float, float] | None = None

    @property
    def ratio(self) -> float:
        a, b = self.cpu_seconds
        return a / b if b else float("inf")


# A spinner for the competition: it says it spins (a file named after its pid in READY), then spins until
# STOP exists (checked every 20000 turns: a stat is not free) or LIMIT seconds pass.
SPIN_UNTIL = """
import os, sys, time
ready, stop, limit = sys.argv[1], sys.argv[2], float(sys.argv[3])
open(os.path.join(ready, str(os.getpid())), "w").close()
end = time.monotonic() + limit
n = 0
while n % 20000 or not (os.path.exists(stop) or time.monotonic() > end):
    n += 1
print(n)
"""


def cpu_competition(a: CgroupLimits, b: CgroupLimits, seconds: float = 1.0, *, cpuset: str | None = "0",
                    hierarchy: Hierarchy | None = None, interval: float = 0.05,
                    ready_timeout: float = 120.0) -> Competition:
    """Two groups, each spinning one process per CPU of `cpuset`, pinned to `cpuset` (shares/weight only
    matter when they compete for the same CPU), compared over `seconds` during which all of them spin.

    Start-up is left out exactly, however slow (seconds under emulation, on a loaded machine): every
    spinner reports once it spins, the window opens when all have, and it closes before any is told to
    stop. The CPU seconds are the groups' own usage counters (cpuacct.usage / cpu.stat usage_usec) read at
    both ends of the window, so sampling and wall-clock jitter do not enter the ratio."""
    import shutil
    import tempfile

    ncpu = len(_cpus(cpuset)) if cpuset else (os.cpu_count() or 1)
    la = CgroupLimits(**{**a.__dict__, "cpuset_cpus": cpuset or a.cpuset_cpus})
    lb = CgroupLimits(**{**b.__dict__, "cpuset_cpus": cpuset or b.cpuset_cpus})
    tmp = tempfile.mkdtemp(prefix="pcm-compete-")
    ready, stop = os.path.join(tmp, "ready"), os.path.join(tmp, "stop")
    os.mkdir(ready)
    spin = [sys.executable, "-c", SPIN_UNTIL, ready, stop, str(ready_timeout + seconds * 10 + 30)]
    code = (f"import subprocess, sys\nps = [subprocess.Popen({spin!r}) for _ in range({ncpu})]\n"
            "sys.exit(max(p.wait() for p in ps))\n")
    results: dict[str, GroupRun] = {}
    try:
        with _Temp(hierarchy, "cpuA-", la) as ca, _Temp(hierarchy, "cpuB-", lb) as cb:
            def go(key: str, cg: Cgroup) -> None:
                results[key] = run_in_group(cg, command=[sys.executable, "-c", code], interval=interval,
                                            full_samples=True, timeout=ready_timeout + seconds * 10 + 60)

            threads = [threading.Thread(target=go, args=(k, cg), daemon=True) for k, cg in (("a", ca), ("b", cb))]
            for t in threads:
                t.start()
            try:
                deadline = time.monotonic() + ready_timeout
                while len(os.listdir(ready)) < 2 * ncpu:
                    if results or time.monotonic() > deadline:
                        raise CgroupError(errno.ETIMEDOUT, f"the competing groups were not all spinning after "
                                          f"{ready_timeout:g} s ({len(os.listdir(ready))} of {2 * ncpu})")
                    time.sleep(0.01)
                start, used0 = time.monotonic(), (_usage(ca), _usage(cb))
                time.sleep(seconds)
                end, used1 = time.monotonic(), (_usage(ca), _usage(cb))
                if results:  # a group ended inside the window: it did not compete all along
                    raise CgroupError(errno.ECHILD, f"a competing group ended before the window closed: "
                                      f"{next(iter(results.values())).stderr.strip()[-200:]}")
            finally:
                open(stop, "w").close()
                for t in threads:
                    t.join()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    secs = ((used1[0] - used0[0]) / 1e6, (used1[1] - used0[1]) / 1e6)
    return Competition((_label(la), _label(lb)), (results["a"], results["b"]), secs, cpuset, (start, end))


def _usage(cg: Cgroup) -> int:
    """The group's CPU time so far, in microseconds (a fresh read: the sampler thread reads the hot file)."""
    return explore.cpu_stat(cg).get("usage_usec", 0)


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
