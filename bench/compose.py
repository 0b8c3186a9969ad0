"""Compose benchmark: `%%compose up -d` of N services vs the same N containers started one by one with
`%%container -d` on a network made with `%netns network create` (the work `up` does for you), through a
real IPython shell; then tearing each down (`%compose down` vs `%container rm -f` x N + network rm).

    sudo .venv/bin/python bench/compose.py [--services 10] [--rounds 5]

Rounds interleave the two ways; medians in ms and the ratio compose / one by one. Root (networks).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    from IPython.core.interactiveshell import InteractiveShell

    from pycontainer_magics.runtime.cleanup import settle

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "pycontainer_magics")
    n = args.services
    cmd = '[sleep, "60"]'
    compose_file = "services:\n" + "".join(f"  s{i}: {{image: host, command: {cmd}}}\n" for i in range(n))
    times: dict[str, list[float]] = {"compose up": [], "one by one": [], "compose down": [], "rm one by one": []}
    quiet = open(os.devnull, "w")  # the progress and removal lines both ways print
    sys.stdout, sys.stderr = quiet, quiet
    for r in range(args.rounds):
        for way in (("compose", "single") if r % 2 == 0 else ("single", "compose")):
            settle()
            time.sleep(0.2)
            if way == "compose":
                t0 = time.perf_counter()
                ip.run_cell_magic("compose", f"-p bench{r} up -d", compose_file)
                times["compose up"].append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                ip.run_line_magic("compose", f"down -t 0 -p bench{r}")
                times["compose down"].append((time.perf_counter() - t0) * 1000)
            else:
                net = f"benchnet{r}"
                t0 = time.perf_counter()
                ip.run_line_magic("netns", f"network create {net}")
                for i in range(n):
                    ip.run_line_magic("container", f"-d -q --name b{r}-{i} --network {net} -- sleep 60")
                times["one by one"].append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                ip.run_line_magic("container", "rm -f " + " ".join(f"b{r}-{i}" for i in range(n)))
                settle()
                ip.run_line_magic("netns", f"network rm {net}")
                times["rm one by one"].append((time.perf_counter() - t0) * 1000)
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{n} services, {args.rounds} rounds (median ms)")
    print(f"  %%compose up -d                          {med['compose up']:8.1f}   "
          f"{med['compose up'] / med['one by one']:.2f}x")
    print(f"  %netns network create + {n} x %%container -d {med['one by one']:8.1f}   1.00x")
    print(f"  %compose down -t 0                       {med['compose down']:8.1f}   "
          f"{med['compose down'] / med['rm one by one']:.2f}x")
    print(f"  {n} x %container rm -f + network rm       {med['rm one by one']:8.1f}   1.00x")


if __name__ == "__main__":
    main()
