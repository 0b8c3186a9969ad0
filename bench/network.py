"""Network benchmark: TCP throughput between two namespaces over one of our bridges (iperf3), side by
side with the host's loopback, and the time to attach + detach an endpoint.

    .venv/bin/python bench/network.py [--seconds 3] [--rounds 3] [--attach 50] [--starts 20] [--idle-ms 50]
    .venv/bin/python bench/network.py --only-starts --starts 20    # container starts by network mode only

Root; needs iperf3 (apt-get install -y iperf3). Everything runs on a private state/run dir and is
removed at the end; traffic stays on loopback and the bridge.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def _iperf(client_ns: object, server_ns: object, address: str, seconds: float, port: int) -> float:
    from pycontainer_magics.network import netns

    fd = netns.open_netns(server_ns if server_ns is not None else None)  # type: ignore[arg-type]
    server = subprocess.Popen(["iperf3", "-s", "-1", "-B", address, "-p", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, preexec_fn=lambda: netns._enter(fd, None), pass_fds=(fd,))
    os.close(fd)
    try:
        argv = ["iperf3", "-c", address, "-p", str(port), "-t", str(seconds), "-J"]
        for _ in range(50):
            out = netns.run_command(client_ns, argv, timeout=seconds + 30)  # type: ignore[arg-type]
            if out.returncode == 0:
                return float(json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"]) / 1e9
            time.sleep(0.05)  # the server is not listening yet
        raise RuntimeError(out.stdout.decode() + out.stderr.decode())
    finally:
        server.kill()
        server.wait()


def _start_times(network: str, rounds: int, again: bool, idle_ms: float, verbose: bool = False) -> None:
    """Container start (a full `/bin/true` run, 64m / 64 pids as bench.py's cells) with --network none vs the
    default bridge vs a user network, modes interleaved, `idle_ms` before each timed run. `again`: each timed
    run follows two untimed runs of the same mode — the next container like the last, for which the pool
    prepares the holder, its PID 1 and (on a network) its endpoint ahead; otherwise the modes rotate, so every
    run is unlike the last and nothing is prepared for it."""
    from pycontainer_magics.runtime import ContainerSpec, run
    from pycontainer_magics.runtime.cleanup import settle

    modes = {"none": "none", "bridge": "bridge", "user network": network}
    times: dict[str, list[float]] = {k: [] for k in modes}
    stage: dict[str, list[float]] = {k: [] for k in modes}  # ms from start to the network stage's end
    claimed = dict.fromkeys(modes, 0)
    timeline: dict[str, dict[str, list[float]]] = {k: {} for k in modes}  # stage -> ms from start

    def one(mode: str) -> tuple[float, object]:
        t0 = time.perf_counter()
        r = run(ContainerSpec(command=("/bin/true",), network=mode, memory=64 << 20, pids_limit=64))
        return (time.perf_counter() - t0) * 1000, r

    names = list(modes)
    for i in range(rounds):
        k = i % len(names)
        for label in names[k:] + names[:k]:
            if again:
                one(modes[label])
                one(modes[label])
            time.sleep(idle_ms / 1000)
            ms, r = one(modes[label])
            times[label].append(ms)
            for what, at in r.timeline:  # type: ignore[attr-defined]
                timeline[label].setdefault(what, []).append(at * 1000)
                if what.startswith("network attached"):
                    stage[label].append(at * 1000)
                    claimed[label] += "prepared ahead" in what  # (runtime.run.ENDPOINT_PREPARED)
    settle()
    base = statistics.median(times["none"])
    kind = "each after two alike (again)" if again else "modes rotating (unlike the last)"
    print(f"container start, /bin/true, {rounds} rounds, {kind}, {idle_ms:g} ms idle (median ms, x none):")
    for label, ts in times.items():
        extra = ""
        if stage[label]:
            extra = (f"   network stage done at {statistics.median(stage[label]):5.1f} ms;"
                     f" endpoint prepared ahead {claimed[label]}/{len(ts)}")
        print(f"  --network {label:13s} {statistics.median(ts):6.1f} min {min(ts):5.1f}"
              f"  {statistics.median(ts) / base:5.2f}x{extra}")
    if verbose:
        print("  where the time goes (median ms from the start of the run at the end of each stage; n = runs with it):")
        for label in modes:
            print(f"    --network {label}:")
            for what, ats in sorted(timeline[label].items(), key=lambda kv: statistics.median(kv[1])):
                print(f"      {statistics.median(ats):6.1f}  {what} (n={len(ats)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--attach", type=int, default=50, help="attach+detach cycles to time")
    ap.add_argument("--starts", type=int, default=20, help="container starts to time per network mode")
    ap.add_argument("--idle-ms", type=float, default=50.0, help="idle before each timed container start")
    ap.add_argument("--only-starts", action="store_true", help="only the container starts (no iperf3, no attach)")
    ap.add_argument("--timeline", action="store_true", help="print each mode's median timeline of a run")
    args = ap.parse_args()
    if not args.only_starts and shutil.which("iperf3") is None:
        sys.exit("iperf3 is not installed: apt-get install -y iperf3")
    tmp = tempfile.mkdtemp(prefix="pcm-netbench-")
    # Removed at exit, after the library's own exit steps (registered later, so run first): they touch the state
    # dir (a removed one was re-created empty: 23 were left in /tmp).
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    os.environ["PYCONTAINER_STATE_DIR"] = os.path.join(tmp, "state")
    os.environ["PYCONTAINER_RUN_DIR"] = os.path.join(tmp, "run")
    import pycontainer_magics.network as N

    tag = f"{os.getpid()}"
    a, b = N.create_netns(f"a{tag}").name, N.create_netns(f"b{tag}").name
    try:
        net = N.create_network(f"bench{tag}")
        if args.only_starts:
            _start_times(net.name, args.starts, again=False, idle_ms=args.idle_ms, verbose=args.timeline)
            _start_times(net.name, args.starts, again=True, idle_ms=args.idle_ms, verbose=args.timeline)
            return
        N.attach(net.name, a, "ca", name="a")
        eb = N.attach(net.name, b, "cb", name="b")
        bridge, loop = [], []
        for i in range(args.rounds):  # interleaved
            bridge.append(_iperf(a, b, eb.address, args.seconds, 5301 + i))
            loop.append(_iperf(None, None, "127.0.0.1", args.seconds, 5401 + i))
        c = N.create_netns(f"c{tag}").name
        times = []
        for i in range(args.attach):
            t0 = time.perf_counter()
            N.attach(net.name, c, f"cc{i}", name=f"c{i}")
            N.detach(net.name, f"cc{i}")
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        print(f"iperf3 TCP, {args.seconds:g} s x {args.rounds} rounds (Gbit/s, median [min-max])")
        print(f"  netns -> netns over bridge {net.bridge}: {statistics.median(bridge):6.2f} "
              f"[{min(bridge):.2f}-{max(bridge):.2f}]")
        print(f"  host loopback 127.0.0.1:            {statistics.median(loop):6.2f} "
              f"[{min(loop):.2f}-{max(loop):.2f}]")
        print(f"  ratio bridge/loopback: {statistics.median(bridge) / statistics.median(loop):.2f}")
        print(f"attach+detach one endpoint, {args.attach} cycles: median {statistics.median(times):.1f} ms, "
              f"p90 {times[int(len(times) * 0.9) - 1]:.1f} ms, min {times[0]:.1f} ms")
        _start_times(net.name, args.starts, again=False, idle_ms=args.idle_ms, verbose=args.timeline)
        _start_times(net.name, args.starts, again=True, idle_ms=args.idle_ms, verbose=args.timeline)
    finally:
        for n in N.list_networks():
            N.remove_network(n.name, force=True)
        for ns in N.list_netns():
            N.delete_netns(ns.name)


if __name__ == "__main__":
    main()
