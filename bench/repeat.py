"""The same cell again: a lecture re-runs a cell, a sweep runs one cell many times. Each timed run here
follows two untimed runs of the very same cell (crun: of the same bundle), so what is prepared ahead for
"a cell like the last" — the namespace holder and cgroup, and for a command after two like it its PID 1
too — is what the timed run finds; bench.py's section 1 rotates six tools and so measures cells unlike
the last.

    sudo .venv/bin/python bench/repeat.py [--rounds 20] [--idle-ms 50]

Same cells and bundle as bench.py section 1 (`--memory 64m --pids-limit 64 --quiet`, all namespaces;
crun through its nsenter helper); rounds interleave the tools, `--idle-ms` before each timed run (50 ms:
a sweep; 2000 ms: a lecture). Medians, minimums and ratios to `crun run`, with the two floors of bench.py
(bench/floors.py) in the same rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from floors import Floors  # noqa: E402

import bench as B  # noqa: E402 - bench.py beside this file: its bundle, crun helper and cells


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--idle-ms", type=float, default=50.0)
    args = ap.parse_args()
    idle = args.idle_ms / 1000
    env = B.Env()
    floors = None
    try:
        env.build_bundle()
        env.start_crun_helper()
        ip = B.make_shell()
        tools = {"%%container -- /bin/true, again": B.magic_shell(ip),
                 "%%container (python: pass), again": B.magic_python(ip),
                 "crun run, again": lambda: B.checked(env.crun_cmd(env.next_id()))()}
        floors = Floors()  # bench/floors.py: the least each cell must do here, in the same rounds
        tools[B.FLOOR_PY] = floors.python
        tools[B.FLOOR_PY_SETUP] = floors.python_setup
        tools[B.FLOOR_SH] = floors.shell
        samples: dict[str, list[float]] = {k: [] for k in tools}
        names = list(tools)
        load0 = os.getloadavg()[0]
        for r in range(-1, args.rounds):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                tools[name]()  # the same cell twice, untimed: the timed one is "a cell like the last two"
                tools[name]()  # (a command's PID 1 is prepared after two like it in a row)
                prep = getattr(tools[name], "prepare", None)
                if prep is not None:
                    prep()  # (a floor's untimed part)
                time.sleep(idle)
                t0 = time.perf_counter()
                tools[name]()
                if r >= 0:
                    samples[name].append((time.perf_counter() - t0) * 1000)
        ref = statistics.median(samples["crun run, again"])
        print(f"the same cell again, {args.rounds} rounds, {args.idle_ms:.0f} ms idle before each timed run "
              f"(load average {load0:.2f} at start, {os.getloadavg()[0]:.2f} at the end)")
        print(f"  {'tool':36s} {'median ms':>9s} {'min ms':>7s} {'x crun':>7s}")
        for name, xs in samples.items():
            print(f"  {name:36s} {statistics.median(xs):9.1f} {min(xs):7.1f} {statistics.median(xs) / ref:6.2f}x")
    finally:
        if floors is not None:
            floors.close()
        left = env.cleanup()
        if left:
            print("left behind:", left)


if __name__ == "__main__":
    main()
