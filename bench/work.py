"""The work a run does, beside its wall time: CPU time and page faults, and what a page fault costs this machine.

Why (issue 20): the Python cell's ratio to `crun run` moved from 0.55x to 0.78x between two machines of the same
kind with no change of code. Wall time hides what a run makes the machine do; two counts that do not depend on how
busy the machine is show more of it:

- page faults: a Python cell forks the notebook kernel, and every page either side then writes is a fault, a copy
  while the other still shares it (CPython writes reference counts into every object it touches, so running code
  writes the pages it reads). `crun`, a small C program, takes few;
- CPU time of the processes the run involved.

Counted for a run: this process (every thread: the caller, the library's sampler, clean-up and preparation
threads), the children it reaped during the round (a cell's PID 1, reaped in the background; `crun` and everything
crun reaped), and the library's launch helper with the children it reaped (a cell's namespace holder; the next
cell's holder made ahead). Each round is the run, the idle gap after it and the library's background work settled
(its clean-up queue, the next run's preparation, the helper's reaping), so what a run leaves to the background is
counted with it. Not counted: the kernel's own threads (a network namespace torn down by a kworker, RCU) and the
hypervisor's time.

`machine_costs()` measures what a page fault costs here: a page's first touch (a fresh page zeroed), a copy-on-write
copy (a forked child still holds the page), a write to a page a fork had shared once that child is gone (the fault
only), and `os.fork()` of this process itself.
"""

from __future__ import annotations

import mmap
import os
import resource
import statistics
import time
from collections.abc import Callable, Iterable

from pycontainer_magics.linux.proc import stat_fields

PAGE = mmap.PAGESIZE
PARTS = ("self", "children", "helper")
Counts = dict[str, tuple[int, float]]  # by part: (minor faults, CPU seconds)


def _helper_pids() -> list[int]:
    """The library's launch helper, when it runs (it forks the namespace holders)."""
    try:
        from pycontainer_magics.runtime.zygote import zygote
    except ImportError:
        return []
    z = zygote()
    return [z.pid] if z.pid is not None and z.alive() else []


def proc_stat(pid: int) -> tuple[int, float] | None:
    """(minor faults, CPU seconds) of a process with the children it has reaped, from /proc/PID/stat (CPU in clock
    ticks: 10 ms); None if it is gone."""
    fields = _fields(pid)
    if not fields:
        return None
    # fields[0] is proc(5)'s field 3 (state): minflt is field 10, cminflt 11, utime, stime, cutime, cstime 14-17
    ticks = sum(int(x) for x in fields[11:15])
    return int(fields[7]) + int(fields[8]), ticks / os.sysconf("SC_CLK_TCK")


def _fields(pid: int) -> list[str]:
    """linux.proc.stat_fields, [] when the process is gone or hidden."""
    try:
        return stat_fields(pid) or []
    except OSError:
        return []


def snapshot() -> Counts | None:
    """Counts so far by part: this process, the children it reaped, the library's helper (with the children it
    reaped); None if the helper went away while it was read."""
    out: Counts = {}
    for part, who in (("self", resource.RUSAGE_SELF), ("children", resource.RUSAGE_CHILDREN)):
        u = resource.getrusage(who)
        out[part] = (u.ru_minflt, u.ru_utime + u.ru_stime)
    faults, cpu = 0, 0.0
    for pid in _helper_pids():
        got = proc_stat(pid)
        if got is None:
            return None
        faults, cpu = faults + got[0], cpu + got[1]
    out["helper"] = (faults, cpu)
    return out


def _children_busy(pid: int) -> bool:
    """Has `pid` a child that is not asleep: one still exiting (running, in disk sleep) or not yet reaped? (A
    prepared holder waits on its socket, asleep.)"""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = f.read().split()
    except OSError:  # (no CONFIG_PROC_CHILDREN: every process's parent looked at instead)
        kids = [d for d in os.listdir("/proc") if d.isdigit() and _fields(int(d))[1:2] == [str(pid)]]
    return any(_fields(int(kid))[:1] not in ([], ["S"], ["I"]) for kid in kids)


def _busy(pid: int) -> bool:
    """Is the helper still at work: not asleep itself, or with a child still exiting? (Its reply to a request
    reaches the caller before it has closed what it sent and gone back to wait; a holder's SIGCHLD wakes it to reap
    after the holder is gone. Until it sleeps again, what it does would be counted in the next round.)"""
    return _fields(pid)[:1] not in ([], ["S"], ["I"]) or _children_busy(pid)


def settle(timeout: float = 2.0) -> None:
    """Let the library's background work finish: its clean-up queue, the next run's preparation (which may queue
    more clean-up), the exit of the holders that let go and the helper's reaping of them, the helper asleep again."""
    try:
        from pycontainer_magics.runtime.cleanup import settle as cleanup_settle
        from pycontainer_magics.runtime.pool import pool
    except ImportError:
        return
    cleanup_settle()
    pool.wait_idle()
    cleanup_settle()
    deadline = time.monotonic() + timeout
    while any(_busy(pid) for pid in _helper_pids()) and time.monotonic() < deadline:
        time.sleep(0.001)


def work_per_run(tools: dict[str, Callable[[], None]], idle: float,
                 orders: Iterable[tuple[int, list[str]]]) -> dict[str, dict[str, float]]:
    """Page faults and CPU milliseconds per run of each tool, on average, in the order `orders` gives for each round
    (round number, counted from 0, and the tools' names: bench.rounds_in_order; rounds before 0 warm up). Each
    round is the run, the idle gap and the background work settled; a round in which the helper started or went is
    left out (the two warm-up rounds start it). Averages, not medians: background work belongs to the runs it
    serves, not to their median. The helper's CPU time comes in clock ticks, four fields each rounded down: a
    round's figure may be up to 40 ms off, the average typically a few milliseconds."""
    counts: dict[str, list[Counts]] = {n: [] for n in tools}
    for r, order in orders:
        for name in order:
            prep = getattr(tools[name], "prepare", None)
            if prep is not None:  # (untimed, as in round_robin, and not counted — but a process it started is, when
                prep()  # the run reaps it)
                settle()
            helpers = _helper_pids()
            s0 = snapshot()
            tools[name]()
            time.sleep(idle)
            settle()
            s1 = snapshot()
            if r >= 0 and s0 is not None and s1 is not None and _helper_pids() == helpers:
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


def _write_pages(buf: mmap.mmap, pages: int, value: int) -> tuple[float, float]:
    """One write to each page: (seconds, minor faults) per page."""
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = time.perf_counter()
    for i in range(0, pages * PAGE, PAGE):
        buf[i] = value
    d = time.perf_counter() - t
    return d / pages, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / pages


def _fresh(pages: int) -> mmap.mmap:
    buf = mmap.mmap(-1, pages * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)  # (a shared one: no copies)
    buf.madvise(mmap.MADV_NOHUGEPAGE)  # one fault per 4 KiB page, where huge pages are the default too
    return buf


def machine_costs(pages: int = 2048, repeats: int = 5) -> dict[str, float]:
    """Microseconds per page for each kind of write fault (medians of `repeats`, each over `pages` pages), the
    cost of the write loop itself taken off, with the faults each loop took per page (one each, the plain loop
    none: what says the measurement measured faults); and os.fork() of this process in milliseconds."""
    loops: dict[str, list[tuple[float, float]]] = {"first_touch": [], "plain": [], "cow_copy": [],
                                                    "reuse_after_fork": []}
    forks = []
    for _ in range(repeats):
        t = time.perf_counter()
        pid = os.fork()  # this process as it is (its anonymous memory: its page tables copied)
        if pid == 0:
            os._exit(0)
        forks.append(time.perf_counter() - t)
        os.waitpid(pid, 0)
        buf = _fresh(pages)
        try:
            loops["first_touch"].append(_write_pages(buf, pages, 1))
            loops["plain"].append(_write_pages(buf, pages, 2))  # no fault: the loop's own cost
            r, w = os.pipe()
            try:
                pid = os.fork()
            except BaseException:
                os.close(r)
                os.close(w)
                raise
            if pid == 0:  # holds the pages until the parent has written them all
                try:
                    os.close(w)
                    os.read(r, 1)
                finally:
                    os._exit(0)
            os.close(r)
            try:
                loops["cow_copy"].append(_write_pages(buf, pages, 3))
            finally:
                os.close(w)
                os.waitpid(pid, 0)
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
            loops["reuse_after_fork"].append(_write_pages(buf, pages, 4))
        finally:
            buf.close()
    loop = statistics.median(t for t, _ in loops["plain"])
    out = {}
    for kind, got in loops.items():
        if kind != "plain":
            out[f"{kind}_us"] = (statistics.median(t for t, _ in got) - loop) * 1e6
        out[f"{kind}_faults_per_page"] = statistics.median(f for _, f in got)
    out["fork_ms"] = statistics.median(forks) * 1e3
    out["anon_mib"] = _anon_kib() / 1024
    return out


def _anon_kib() -> int:
    try:
        with open("/proc/self/smaps_rollup") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Anonymous:"))
    except (OSError, StopIteration):
        return 0
