#!/usr/bin/env python3
"""OCI lifecycle benchmark: `create` + `start` + `state` + `delete --force` of one bundle — the runtime
invocations containerd's shim makes for a container — whole processes, for `pycontainer`, runc and crun,
round-robin in the same run; medians of each step and of the cycle, and the ratios of each to runc's.

    sudo .venv/bin/python bench/oci.py [--rounds 20] [--idle-ms 50]

The bundle is bench.py's (busybox `/bin/true`, memory 64M without swap, pids 64, pid/net/ipc/uts/mount/
cgroup/user namespaces, `runc spec` edited). `delete --force` right after `start`: the payload has
usually exited by then, else it is killed, the same for every runtime. Container output goes to
/dev/null (every runtime's container inherits create's stdio).
The row `library` runs the same steps through oci.lifecycle from this process (no interpreter
start-up, no imports: what the mechanism itself costs). Also shown: `pycontainer-runc list` on an empty
state root, i.e. what any call costs before it does anything (interpreter and imports).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench import VENV_PY, Env, log, our_cgroup_leftovers  # noqa: E402

PYCONTAINER = str(VENV_PY.with_name("pycontainer"))


def _run(cmd: list[str]) -> None:
    # stderr to a file, not a pipe: runc's and crun's containers inherit create's, and would hold a pipe open.
    with tempfile.TemporaryFile() as err:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        if p.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(cmd[:4])}...: exit {p.returncode}: {err.read().decode().strip()}")


def tools(env: Env, our_root: Path, extra: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """The command prefix of each runtime, before the subcommand. Ours is the launcher engines are given
    (`pycontainer install-runtime`: python -IS, no site-packages); `extra` NAME=PATH adds other launchers
    of ours (another checkout's, for a before/after in one run)."""
    launcher = subprocess.run([PYCONTAINER, "install-runtime", "--output", str(env.tmp / "pycontainer-runc")],
                              capture_output=True, text=True, check=True).stdout.strip()
    out = {"pycontainer": [launcher], "library": []}
    for item in extra:
        name, _, path = item.partition("=")
        out[name] = [path]
    if shutil.which("runc"):
        out["runc"] = ["runc", "--root", str(env.runc_root)]
    if env.helper is not None:
        out["crun"] = ["nsenter", f"--mount=/proc/{env.helper.pid}/ns/mnt", "crun", "--root", str(env.crun_root)]
    return out


STEPS = ("create", "start", "state", "delete")


def library_cycle(our_root: Path, bundle: Path, cid: str) -> tuple[float, ...]:
    """The same steps through oci.lifecycle from this process: the mechanism without the interpreter's
    start-up and imports."""
    import contextlib
    import io

    from pycontainer_magics.oci import lifecycle as oci

    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        oci.create(str(our_root), cid, oci.CreateOptions(bundle=str(bundle)))
    t1 = time.perf_counter()
    oci.start(str(our_root), cid)
    t2 = time.perf_counter()
    oci.state(str(our_root), cid)
    t3 = time.perf_counter()
    oci.delete(str(our_root), cid, force=True)
    t4 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2, t4 - t3


CPU: dict[str, list[tuple[float, ...]]] = {}  # runtime -> per round, the CPU (user + system) of each step


def _cpu() -> float:
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cycle(prefix: list[str], name: str, our_root: Path, bundle: Path, cid: str) -> tuple[float, ...]:
    """Wall time of each step; the CPU each one spent (the processes it waited for: the runtime, and the
    intermediate it forks) goes to CPU, a figure a loaded machine moves far less."""
    if name == "library":
        return library_cycle(our_root, bundle, cid)

    def cmd(*argv: str) -> list[str]:
        if name not in ("runc", "crun"):  # ours, through a launcher
            return [*prefix, "--root", str(our_root), *argv]
        return [*prefix, *argv]

    walls, cpus = [], []
    for argv in (("create", "--bundle", str(bundle), cid), ("start", cid), ("state", cid), ("delete", "--force", cid)):
        c0, t0 = _cpu(), time.perf_counter()
        _run(cmd(*argv))
        walls.append(time.perf_counter() - t0)
        cpus.append(_cpu() - c0)
    CPU.setdefault(name, []).append(tuple(cpus))
    return tuple(walls)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--idle-ms", type=float, default=50)
    ap.add_argument("--launcher", action="append", default=[], metavar="NAME=PATH",
                    help="another launcher of ours to measure alongside (e.g. an older checkout's)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/oci.py: run as root")
    env = Env()
    our_root = env.tmp / "pycontainer-state"
    samples: dict[str, list[tuple[float, ...]]] = {}
    empty: list[float] = []
    try:
        env.build_bundle()
        env.start_crun_helper()
        prefixes = tools(env, our_root, tuple(args.launcher))
        samples = {n: [] for n in prefixes}
        names = list(prefixes)
        for r in range(-2, args.rounds):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                time.sleep(args.idle_ms / 1000)
                res = cycle(prefixes[name], name, our_root, env.bundle, f"{env.tag}-{r + 2}")
                if r >= 0:
                    samples[name].append(res)
            time.sleep(args.idle_ms / 1000)
            t0 = time.perf_counter()
            _run([prefixes["pycontainer"][0], "--root", str(our_root), "list"])
            if r >= 0:
                empty.append(time.perf_counter() - t0)
    finally:
        for line in env.cleanup():  # runc/crun containers a failed round left, their cgroups, the helper, tmp
            log(line)
    med = {n: [statistics.median(x[i] for x in s) * 1000 for i in range(len(STEPS))] for n, s in samples.items()}
    cyc = {n: statistics.median(sum(x) for x in s) * 1000 for n, s in samples.items()}
    print(f"create + start + state + delete --force, {args.rounds} rounds, medians in ms "
          f"({args.idle_ms:g} ms idle before each)")
    print(f"{'runtime':<12} " + " ".join(f"{s:>8}" for s in STEPS) + f" {'cycle':>8}  ratios")
    for n in samples:
        ratios = ", ".join(f"{cyc[n] / cyc[p]:.2f}x {p}" for p in ("runc", "crun") if p in cyc and p != n)
        print(f"{n:<12} " + " ".join(f"{v:8.1f}" for v in med[n]) + f" {cyc[n]:8.1f}  {ratios}")
    if "runc" in med:
        print("per invocation vs runc (wall): " + ", ".join(
            f"{s} {med['pycontainer'][i] / med['runc'][i]:.2f}x" for i, s in enumerate(STEPS)))
    print("CPU (user + system) of each invocation, medians in ms:")
    for n, rows in CPU.items():
        if len(rows) > 2:
            rows = rows[2:]  # the warm-up rounds
        print(f"{n:<12} " + " ".join(f"{statistics.median(r[i] for r in rows) * 1000:8.1f}" for i in range(len(STEPS))))
    print(f"`pycontainer list` on an empty root (start-up alone): {statistics.median(empty) * 1000:.1f} ms")
    # Only cgroups whose owner is gone are leftovers: other processes on the machine may run containers now.
    left = {parent: dead for parent, names in our_cgroup_leftovers().items()
            if (dead := [n for n in names if not os.path.exists(f"/proc/{n.split('-')[0]}")])}
    if left:
        log(f"cgroups left behind: {left}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
