"""The work a run does, beside its wall time: CPU time and page faults, and what a page fault costs this machine.

Why (issue 20): the Python cell's ratio to `crun run` moved from 0.55x to 0.78x between two machines of the same
kind with no change of code. Wall time hides what a run makes the machine do; two counts that do not depend on how
busy the machine is show it:

- page faults: a Python cell forks the notebook kernel, and every page either side then writes is copied (CPython
  writes reference counts into every object it touches, so running code writes the pages it reads). Where a page
  fault costs microseconds — a guest whose page tables the hypervisor keeps (a paravirtualized MMU), a machine
  short of memory — a cell pays that many times over; `crun`, a small C program, takes few faults;
- CPU time of everything the run involved.

Counted for a run: this process (every thread: the caller, the library's sampler and clean-up threads), the
children it reaped during the round (a cell's PID 1, reaped in the background; `crun` and everything crun reaped),
and the library's launch helper with the children it reaped (a cell's namespace holder; the next cell's holder made
ahead). Each round is the run and the idle gap after it, the library's deferred clean-up settled, so work a run
leaves to the background is counted with it.

`machine_costs()` measures what a page fault costs here: a page's first touch (a fresh page zeroed), a copy-on-write
copy (a forked child still holds the page), a write to a page a fork had shared once that child is gone (no copy,
the fault only), and `os.fork()` of this process itself.
"""

from __future__ import annotations

import mmap
import os
import resource
import statistics
import time
from collections.abc import Callable

PAGE = mmap.PAGESIZE


def _helper_pids() -> list[int]:
    """The library's launch helper, when it runs (it forks the namespace holders)."""
    try:
        from pycontainer_magics.runtime.zygote import zygote
    except ImportError:
        return []
    z = zygote()
    return [z.pid] if z.pid is not None and z.alive() else []


def _proc_stat(pid: int) -> tuple[int, float]:
    """(minor faults, CPU seconds) of a process and the children it has reaped, from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0, 0.0
    # fields[0] is the state (field 3 of proc(5)): minflt is field 10, cminflt 11, utime..cstime 14-17
    minflt, cminflt = int(fields[7]), int(fields[8])
    ticks = sum(int(x) for x in fields[11:15])
    return minflt + cminflt, ticks / os.sysconf("SC_CLK_TCK")


PARTS = ("self", "children", "helper")


def snapshot() -> dict[str, tuple[int, float]]:
    """(minor faults, CPU seconds) so far, by part: this process, the children it reaped, the library's helper (with
    the children it reaped)."""
    out = {}
    for part, who in (("self", resource.RUSAGE_SELF), ("children", resource.RUSAGE_CHILDREN)):
        u = resource.getrusage(who)
        out[part] = (u.ru_minflt, u.ru_utime + u.ru_stime)
    faults, cpu = 0, 0.0
    for pid in _helper_pids():
        f, c = _proc_stat(pid)
        faults += f
        cpu += c
    out["helper"] = (faults, cpu)
    return out


def _settle() -> None:
    try:
        from pycontainer_magics.runtime.cleanup import settle
    except ImportError:
        return
    settle()


def work_per_run(tools: dict[str, Callable[[], None]], rounds: int, idle: float) -> dict[str, dict[str, float]]:
    """Page faults and CPU milliseconds per run of each tool, on average, rotating as bench.round_robin does. Each
    round is the run, the idle gap and the deferred clean-up settled; a round in which the helper started or went
    is left out (the two warm-up rounds start it). Averages, not medians: the reaped children's CPU time comes in
    clock ticks (10 ms), and background work (a holder made ahead for the next run) belongs to the runs it serves."""
    names = list(tools)
    counts: dict[str, list[dict[str, tuple[int, float]]]] = {n: [] for n in names}
    for r in range(-2, rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            prep = getattr(tools[name], "prepare", None)
            if prep is not None:
                prep()
            helpers = _helper_pids()
            s0 = snapshot()
            tools[name]()
            time.sleep(idle)
            _settle()
            s1 = snapshot()
            if r >= 0 and _helper_pids() == helpers:
                counts[name].append({p: (s1[p][0] - s0[p][0], s1[p][1] - s0[p][1]) for p in PARTS})
    out: dict[str, dict[str, float]] = {}
    for n, v in counts.items():
        if not v:
            continue
        row = {"n": len(v), "faults": statistics.fmean(sum(d[p][0] for p in PARTS) for d in v),
               "cpu_ms": statistics.fmean(sum(d[p][1] for p in PARTS) for d in v) * 1e3}
        row.update({f"faults_{p}": statistics.fmean(d[p][0] for d in v) for p in PARTS})
        out[n] = row
    return out


def _per_page_write(buf: mmap.mmap, pages: int, value: int) -> float:
    t = time.perf_counter()
    for i in range(0, pages * PAGE, PAGE):
        buf[i] = value
    return (time.perf_counter() - t) / pages


def machine_costs(pages: int = 2048, repeats: int = 5) -> dict[str, float]:
    """Microseconds per page for each kind of write fault (medians of `repeats`, each over `pages` pages), the
    cost of the write loop itself taken off, and os.fork() of this process in milliseconds."""
    first, copy, reuse, plain, forks = [], [], [], [], []
    for _ in range(repeats):
        t = time.perf_counter()
        pid = os.fork()  # this process as it is (its anonymous memory: its page tables copied)
        if pid == 0:
            os._exit(0)
        forks.append(time.perf_counter() - t)
        os.waitpid(pid, 0)
        buf = mmap.mmap(-1, pages * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)  # (shared: no copies)
        try:
            first.append(_per_page_write(buf, pages, 1))
            plain.append(_per_page_write(buf, pages, 2))  # no fault: the loop's own cost
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # holds the pages until the parent has written them all
                os.close(w)
                os.read(r, 1)
                os._exit(0)
            os.close(r)
            try:
                copy.append(_per_page_write(buf, pages, 3))
            finally:
                os.close(w)
                os.waitpid(pid, 0)
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
            reuse.append(_per_page_write(buf, pages, 4))
        finally:
            buf.close()
    loop = statistics.median(plain)
    return {"first_touch_us": (statistics.median(first) - loop) * 1e6,
            "cow_copy_us": (statistics.median(copy) - loop) * 1e6,
            "reuse_after_fork_us": (statistics.median(reuse) - loop) * 1e6,
            "fork_ms": statistics.median(forks) * 1e3,
            "anon_mib": _anon_kib() / 1024}


def _anon_kib() -> int:
    try:
        with open("/proc/self/smaps_rollup") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Anonymous:"))
    except (OSError, StopIteration):
        return 0
