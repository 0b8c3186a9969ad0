#!/usr/bin/env python3
"""What watching a cgroup costs, and how much of the peak it sees.

    .venv/bin/python bench/sampling.py [--rounds 3]

A workload runs in a throw-away cgroup under the project's parent (`lab.group_run.run_in_group`,
v1 or v2, whichever is mounted) while the caller samples the group at 10, 50 and 200 ms. For each
interval: the CPU the sampling thread itself used per second of wall time (thread CPU time minus the
same run with no sampling), per sample, for the cheap reading (memory, CPU, pids, oom_kill from
kept-open files) and the full one (plus cpu.stat and PSI, what `%cgroup watch` takes); and the peak
the samples saw against the kernel's peak counter (v2 memory.peak, v1 memory.max_usage_in_bytes),
for a workload of short 80 MiB spikes (~30 ms each) and for a steady ramp to 160 MiB.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from pycontainer_magics.lab import experiments as X
from pycontainer_magics.lab import group_run as R
from pycontainer_magics.linux.cgroups import CgroupLimits, open_hierarchy

MiB = 2**20
SPIKES = """
import time
for i in range(6):
    b = b"x" * (80 << 20)
    time.sleep(0.02)
    del b
    time.sleep(0.15)
"""
RAMP = X.hog_command(160 * MiB, 4 * MiB, 0.01)


def one(h, command, interval, full):  # type: ignore[no-untyped-def]
    cg = h.create(h.new_name("bench-"), CgroupLimits())
    try:
        t0 = time.thread_time()
        r = R.run_in_group(cg, command=command, interval=interval, full_samples=full)
        cpu = time.thread_time() - t0
    finally:
        cg.remove()
    seen = max((s.memory for s in r.samples), default=0)
    return cpu, r.duration, len(r.samples), seen, r.after.get("memory_peak", 0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    h = open_hierarchy()
    print(f"cgroup {h.version}; {a.rounds} rounds per row; median values")
    print(f"{'workload':8} {'interval':>8} {'reading':7} {'samples':>7} {'CPU ms/s':>9} {'us/sample':>9} "
          f"{'seen peak':>10} {'kernel peak':>11} {'seen/kernel':>11}")
    for name, cmd in (("spikes", [sys.executable, "-c", SPIKES]), ("ramp", RAMP)):
        base = statistics.median(one(h, cmd, None, False)[0] for _ in range(a.rounds))
        for interval in (0.01, 0.05, 0.2):
            for full in (False, True):
                rows = [one(h, cmd, interval, full) for _ in range(a.rounds)]
                cpu = statistics.median(r[0] for r in rows) - base
                dur = statistics.median(r[1] for r in rows)
                n = statistics.median(r[2] for r in rows)
                seen = statistics.median(r[3] for r in rows)
                peak = statistics.median(r[4] for r in rows)
                print(f"{name:8} {int(interval * 1000):>6}ms {'full' if full else 'cheap':7} {n:>7.0f} "
                      f"{cpu / dur * 1000:>9.2f} {cpu / n * 1e6 if n else 0:>9.1f} {seen / MiB:>8.1f}Mi "
                      f"{peak / MiB:>9.1f}Mi {seen / peak if peak else 0:>11.2f}")
    h.remove_parent()


if __name__ == "__main__":
    main()
