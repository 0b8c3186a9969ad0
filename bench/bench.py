#!/usr/bin/env python3
"""Benchmarks: pycontainer_magics side by side with crun, runc and podman, in the same run.

Run as root from the project's venv (see bench/README.md):

    .venv/bin/python bench/bench.py            # default, about 2-3 minutes
    .venv/bin/python bench/bench.py --quick    # CI size, under a minute
    ... --json results.json                    # also save every sample

Three sections, each interleaving its tools round-robin (the starting tool rotates every round, and
every timed run is preceded by the same idle gap), so that drift in the machine hits all tools alike:

1. cell    per-cell time of `%%container --memory 64m --pids-limit 64 --quiet` through a real IPython
           InteractiveShell (Python cell `pass`; shell cell `-- /bin/true`; the Python cell again without
           --quiet, its card shown as a notebook shows it), the bare library `run()`,
           against `crun run` and `runc run` of an equivalent OCI bundle (/bin/true, memory 64M + no swap,
           pids 64, pid/net/ipc/uts/mount/cgroup/user namespaces), and the floors (floors.py: the least a
           cell must do here). Goals: Python cell <= 0.30 x crun, shell cell <= 0.25 x. Then the work per
           run of each (work.py: CPU time and page faults, beside crun's) and what a page fault costs here.
2. memory  the same cells while the kernel (this process) holds 50 MB and 1 GB of touched data, next to
           a plain os.fork() + os._exit(0) + waitpid of the same process. Goals: a shell cell does not
           grow with the kernel's memory; a Python cell grows no more than a plain fork.
3. cli     whole process: `pycontainer run --memory 64m --pids-limit 64 -- /bin/true` (Python start-up
           included) against `runc run`, `crun run` and `podman run --rm --rootfs`. Goal: ahead of runc.
           `python -c pass` and `python -c 'import pycontainer_magics.cli ...'` are shown to say where
           the CLI's time goes.

Everything created (temp dirs, the crun helper mount namespace process, runc/crun state, podman
containers) is removed at the end, also on Ctrl-C; leftovers in the cgroup trees are reported.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import io
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

MEM = 64 * 2**20
PIDS = 64
MAGIC_OPTS = "--memory 64m --pids-limit 64 --quiet"
CG_ROOT = Path("/sys/fs/cgroup")
OUR_CG = "pycontainer_magics"
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
VENV_PY = Path(sys.executable)  # run bench.py with the venv's python; never a pyenv shim


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# Statistics


def stop_process(proc: subprocess.Popen, grace: float = 60.0) -> bool:
    """SIGTERM to a daemon we started, SIGKILL if it is still there after `grace` s; True if it was killed."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
        return False
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return True


def pct(xs: list[float], q: float) -> float:
    """q-th percentile (0-100), linear interpolation between closest ranks."""
    s = sorted(xs)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summarize(xs: list[float]) -> dict[str, float]:
    return {
        "n": len(xs),
        "median_ms": statistics.median(xs) * 1e3 if xs else float("nan"),
        "p10_ms": pct(xs, 10) * 1e3,
        "p90_ms": pct(xs, 90) * 1e3,
        "min_ms": min(xs) * 1e3 if xs else float("nan"),
    }


# --------------------------------------------------------------------------------------------------
# Environment: temp dir, rootfs, OCI bundle, crun helper namespace, clean-up


class Env:
    def __init__(self, tmp_parent: str | None = None) -> None:
        """tmp_parent: where the temp dir goes (the default: $TMPDIR); "/tmp" where a socket path under it
        must stay short."""
        self.tmp = Path(tempfile.mkdtemp(prefix="pycbench-", dir=tmp_parent))
        self.tag = f"pycbench-{os.getpid()}"
        self.counter = 0
        self.helper: subprocess.Popen | None = None  # crun's mount namespace (unified hierarchy unmounted)
        self.crun_ok = False
        self.runc_ok = False
        self.podman_used = False  # podman ran (its default store): look there for leftovers at the end
        self.notes: list[str] = []
        self.rootfs = self.tmp / "rootfs"
        self.bundle = self.tmp / "bundle"
        self.runc_root = self.tmp / "runc-state"
        self.crun_root = self.tmp / "crun-state"
        self.podman_rootfs = self.tmp / "podman-rootfs"

    # -- rootfs: busybox-static plus a /bin/true symlink; podman gets its own copy (it writes into it)
    def build_rootfs(self, dest: Path) -> None:
        busybox = next((p for p in BUSYBOX_CANDIDATES if os.path.exists(p)), None)
        if busybox is None:
            raise SystemExit("bench: busybox-static not found (apt-get install busybox-static)")
        for d in ("bin", "proc", "sys", "dev", "etc", "tmp", "run"):
            (dest / d).mkdir(parents=True, exist_ok=True)
        shutil.copy2(busybox, dest / "bin" / "busybox")
        os.symlink("busybox", dest / "bin" / "true")
        os.symlink("busybox", dest / "bin" / "sh")
        (dest / "etc" / "passwd").write_text("root:x:0:0:root:/:/bin/sh\n")
        (dest / "etc" / "group").write_text("root:x:0:\n")

    def build_bundle(self) -> None:
        self.build_rootfs(self.rootfs)
        self.bundle.mkdir()
        spec_tool = "runc" if shutil.which("runc") else "crun"
        subprocess.run(
            [spec_tool, "spec", "--bundle", str(self.bundle)], check=True, stdout=subprocess.DEVNULL
        )
        cfg_path = self.bundle / "config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["process"]["args"] = ["/bin/true"]
        cfg["process"]["terminal"] = False
        cfg["root"] = {"path": str(self.rootfs), "readonly": False}
        cfg["hostname"] = "bench"
        lin = cfg["linux"]
        lin.setdefault("resources", {})
        lin["resources"]["memory"] = {"limit": MEM, "swap": MEM}  # v1: memsw = memory, i.e. no swap
        lin["resources"]["pids"] = {"limit": PIDS}
        types = {ns["type"] for ns in lin["namespaces"]}
        for t in ("pid", "network", "ipc", "uts", "mount", "cgroup", "user"):
            if t not in types:
                lin["namespaces"].append({"type": t})
        # user namespace as root: container root = host root, one-id maps (what our library does as root)
        lin["uidMappings"] = [{"containerID": 0, "hostID": 0, "size": 1}]
        lin["gidMappings"] = [{"containerID": 0, "hostID": 0, "size": 1}]
        # devpts' gid=5 does not exist in a one-id map
        for m in cfg["mounts"]:
            if m.get("type") == "devpts":
                m["options"] = [o for o in m.get("options", []) if not o.startswith("gid=")]
        cfg_path.write_text(json.dumps(cfg, indent=2))
        self.runc_root.mkdir()
        self.crun_root.mkdir()

    # -- crun refuses the hybrid layout: run it in a mount namespace without /sys/fs/cgroup/unified
    def start_crun_helper(self) -> None:
        if not shutil.which("crun"):
            self.notes.append("crun not installed: skipped")
            return
        self.helper = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sleep", "infinity"],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        ns = f"/proc/{self.helper.pid}/ns/mnt"
        for _ in range(200):  # wait until unshare has exec'd sleep in the new namespace
            with contextlib.suppress(OSError):
                if os.readlink(ns) != os.readlink("/proc/self/ns/mnt"):
                    break
            time.sleep(0.005)
        if (CG_ROOT / "unified").is_dir():
            subprocess.run(
                ["nsenter", f"--mount={ns}", "umount", str(CG_ROOT / "unified")],
                check=False,
                stderr=subprocess.DEVNULL,
            )

    def crun_cmd(self, cid: str) -> list[str]:
        pre = ["nsenter", f"--mount=/proc/{self.helper.pid}/ns/mnt"] if self.helper else []
        return pre + ["crun", "--root", str(self.crun_root), "run", "--bundle", str(self.bundle), cid]

    def runc_cmd(self, cid: str) -> list[str]:
        return ["runc", "--root", str(self.runc_root), "run", "--bundle", str(self.bundle), cid]

    def podman_cmd(self, runtime: str) -> list[str]:
        # `--rootfs` is a flag: the first positional argument is then the rootfs directory, so every
        # option must come before it. podman's default runtime here is crun (which needs the helper
        # namespace for the hybrid layout); `--runtime runc` works as is.
        pre: list[str] = []
        if runtime == "crun":
            if self.helper is None:
                raise RuntimeError("no crun helper namespace")
            pre = ["nsenter", f"--mount=/proc/{self.helper.pid}/ns/mnt"]
        return pre + [
            "podman",
            "--runtime",
            runtime,
            "run",
            "--rm",
            "--network",
            "none",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=4096:4096",
            "--memory",
            "64m",
            "--memory-swap",
            "64m",
            "--pids-limit",
            str(PIDS),
            "--label",
            f"pycbench={self.tag}",
            "--rootfs",
            str(self.podman_rootfs),
            "/bin/true",
        ]

    def next_id(self) -> str:
        self.counter += 1
        return f"{self.tag}-{self.counter}"

    # -- clean-up: every step independent, errors reported not raised
    def cleanup(self) -> list[str]:
        report: list[str] = []
        for name, root, pre in (
            ("runc", self.runc_root, []),
            (
                "crun",
                self.crun_root,
                ["nsenter", f"--mount=/proc/{self.helper.pid}/ns/mnt"] if self.helper else [],
            ),
        ):
            if not root.is_dir() or not shutil.which(name):
                continue
            with contextlib.suppress(Exception):
                out = subprocess.run(
                    pre + [name, "--root", str(root), "list", "-q"],
                    capture_output=True,
                    text=True,
                    timeout=20,
                ).stdout.split()
                for cid in out:
                    subprocess.run(
                        pre + [name, "--root", str(root), "delete", "-f", cid],
                        capture_output=True,
                        timeout=20,
                    )
                    report.append(f"{name}: deleted leftover container {cid}")
        if self.podman_used:  # (asking podman otherwise would make its default store on this machine)
            with contextlib.suppress(Exception):
                ids = subprocess.run(
                    ["podman", "ps", "-aq", "--filter", f"label=pycbench={self.tag}"],
                    capture_output=True,
                    text=True,
                    timeout=60,
                ).stdout.split()
                if ids:
                    subprocess.run(["podman", "rm", "-f", *ids], capture_output=True, timeout=60)
                    report.append(f"podman: removed {len(ids)} leftover container(s)")
        if self.helper is not None:  # only our own helper, by its PID
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.helper.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                self.helper.wait(timeout=5)
            self.helper = None
        # cgroups named after our container ids (runc/crun use /<id> when cgroupsPath is empty)
        for d in sorted(CG_ROOT.glob(f"*/{self.tag}-*"), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                d.rmdir()
            report.append(f"cgroup leftover {d}: " + ("removed" if not d.exists() else "COULD NOT REMOVE"))
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self.tmp.exists():
            report.append(f"could not remove {self.tmp}")
        return report


def our_cgroup_leftovers() -> dict[str, list[str]]:
    """Sub-directories left under our library's cgroup parents (there should be none)."""
    out: dict[str, list[str]] = {}
    for parent in CG_ROOT.glob(f"*/{OUR_CG}"):
        subs = sorted(p.name for p in parent.iterdir() if p.is_dir())
        if subs:
            out[str(parent)] = subs
    uni = CG_ROOT / "unified" / OUR_CG
    if uni.is_dir():
        subs = sorted(p.name for p in uni.iterdir() if p.is_dir())
        if subs:
            out[str(uni)] = subs
    return out


def _machine_busy() -> float:
    """CPU seconds the whole machine spent not idle, since boot (/proc/stat)."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait; guest is in user


def _own_cpu() -> float:
    """CPU seconds of this process and its reaped descendants (containers, crun, runc, podman clients)."""
    import resource

    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


# --------------------------------------------------------------------------------------------------
# Round-robin driver


SHUFFLED = False  # --shuffle: a new order of the tools each round (rounds_in_order)


def rounds_in_order(names: list[str], rounds: int, warmup: int = 2, seed: int = 20) -> Iterator[tuple[int, list[str]]]:
    """(round, the tools' order in it) from -warmup on. By default one cyclic order, its start rotating each round:
    each tool comes after the same one nearly always. What a run leaves behind falls on the next — a fork of this
    process write-protects its whole heap (a Python cell after one takes a fault on each page it writes: 2 ms more
    here), a container's clean-up and the next one's preparation overlap the next run — so each row carries its
    predecessor's leftovers (the Python cell those of the shell floor's fork). SHUFFLED (--shuffle): a new order each
    round (seeded: the same in every run), each tool after any of the others; fairer, and noisier for as many
    rounds."""
    rng = random.Random(seed)
    for r in range(-warmup, rounds):
        if SHUFFLED:
            order = list(names)
            rng.shuffle(order)
            yield r, order
        else:
            k = r % len(names)
            yield r, names[k:] + names[:k]


def round_robin(
    tools: dict[str, Callable[[], None]], rounds: int, idle: float, warmup: int = 2, label: str = ""
) -> dict[str, list[float]]:
    """Time each tool once per round, in the round's order (rounds_in_order); `idle` seconds before every run. A tool
    with a `prepare()` (the floors) has it called, untimed, before its idle gap."""
    names = list(tools)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r, order in rounds_in_order(names, rounds, warmup):
        for name in order:
            prep = getattr(tools[name], "prepare", None)
            if prep is not None:
                prep()
            time.sleep(idle)
            t0 = time.perf_counter()
            tools[name]()
            dt = time.perf_counter() - t0
            if r >= 0:
                samples[name].append(dt)
        if label and r >= 0 and (r + 1) % max(1, rounds // 4) == 0:
            log(f"  {label}: {r + 1}/{rounds} rounds")
    return samples


CHILD_PIDS: set[int] = set()  # our direct children (a `pycontainer run` names its cgroups after its pid)


def checked(cmd: list[str], env: dict[str, str] | None = None) -> Callable[[], None]:
    def go() -> None:
        p = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
        )
        CHILD_PIDS.add(p.pid)
        _, err = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"{cmd[0]} exited {p.returncode}: {err.decode(errors='replace').strip()}")

    return go


def probe(name: str, fn: Callable[[], None], env: Env) -> bool:
    try:
        fn()
        return True
    except Exception as e:  # noqa: BLE001
        env.notes.append(f"{name}: skipped ({str(e).splitlines()[0] if str(e) else type(e).__name__})")
        log(f"  {name}: not available: {e}")
        return False


# --------------------------------------------------------------------------------------------------
# Our tools


def make_shell():
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "pycontainer_magics")
    if "container" not in ip.magics_manager.magics.get("cell", {}):
        raise RuntimeError("%%container magic is not registered by `%load_ext pycontainer_magics`")
    return ip


def magic_python(ip) -> Callable[[], None]:
    def go() -> None:
        ip.run_cell_magic("container", MAGIC_OPTS, "pass")
        _check_view(ip)

    return go


def magic_python_shown(ip) -> Callable[[], None]:
    """The Python cell as a notebook user types it, without --quiet: its card displayed (and its plot, when the run
    has a curve to draw: display.has_curve). IPython's shell prints what is displayed: kept out of this report."""
    def go() -> None:
        with contextlib.redirect_stdout(io.StringIO()) as shown:
            ip.run_cell_magic("container", MAGIC_OPTS.replace(" --quiet", ""), "pass")
        _check_view(ip)
        if "<ContainerRun " not in shown.getvalue():  # (the card's text form: what this shell shows of it)
            raise RuntimeError("%%container without --quiet displayed no card")

    return go


def magic_shell(ip) -> Callable[[], None]:
    # IPython refuses a cell magic with an empty body, so an empty-bodied `%%container ... -- /bin/true`
    # cell is run as what it is, the magic with no cell (IPython's line form of the same magic).
    def go() -> None:
        ip.run_line_magic("container", f"{MAGIC_OPTS} -- /bin/true")
        _check_view(ip)

    return go


def _check_view(ip) -> None:
    view = ip.user_ns.get("_container")
    run = getattr(view, "run", view)
    code = getattr(run, "exit_code", 0)
    if code not in (0, None) or getattr(run, "error", None):
        raise RuntimeError(f"%%container cell failed: exit {code}, {getattr(run, 'error', '')!r}")


def lib_command() -> Callable[[], None]:
    from pycontainer_magics.runtime import ContainerSpec, run

    spec = ContainerSpec(command=("/bin/true",), memory=MEM, pids_limit=PIDS)

    def go() -> None:
        r = run(spec)
        if r.exit_code != 0:
            raise RuntimeError(f"run() exited {r.exit_code}: {r.error!r}")

    return go


def lib_python(user_ns: dict) -> Callable[[], None]:
    from pycontainer_magics.runtime import ContainerSpec, run

    spec = ContainerSpec(python_code="pass", memory=MEM, pids_limit=PIDS)

    def go() -> None:
        r = run(spec, python_globals=user_ns)
        if r.exit_code != 0:
            raise RuntimeError(f"run() exited {r.exit_code}: {r.error!r}")

    return go


def plain_fork() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def touched(nbytes: int) -> bytearray:
    b = bytearray(nbytes)
    b[::4096] = b"\x01" * len(range(0, nbytes, 4096))  # one write per page: really resident
    return b


# --------------------------------------------------------------------------------------------------
# Sections


FLOOR_PY = "floor: Python cell (fork+setns)"
FLOOR_SH = "floor: shell cell (exec+wait)"
FLOOR_PY_SETUP = "floor: Python cell + PID 1 set-up"
SHOWN_PY = "%%container (python), card shown"


def section_cell(env: Env, ip, rounds: int, idle: float) -> dict:
    log(f"[1/3] per-cell time, {rounds} rounds, {idle * 1e3:.0f} ms idle before each run")
    tools: dict[str, Callable[[], None]] = {}
    floors = None
    try:
        from floors import Floors  # bench/floors.py: what a cell cannot avoid doing here (see there)

        floors = Floors()
        tools[FLOOR_PY] = floors.python
        tools[FLOOR_PY_SETUP] = floors.python_setup
        tools[FLOOR_SH] = floors.shell
    except Exception as e:  # noqa: BLE001
        env.notes.append(f"floors: skipped ({e})")
    if ip is not None:
        tools["%%container (python: pass)"] = magic_python(ip)
        tools["%%container -- /bin/true"] = magic_shell(ip)
        tools[SHOWN_PY] = magic_python_shown(ip)
    tools["library run(): python pass"] = lib_python({})
    tools["library run(): /bin/true"] = lib_command()
    if env.crun_ok:
        tools["crun run"] = lambda: checked(env.crun_cmd(env.next_id()))()
    if env.runc_ok:
        tools["runc run"] = lambda: checked(env.runc_cmd(env.next_id()))()
    try:
        for name in list(tools):
            if not probe(name, tools[name], env):
                del tools[name]
        samples = round_robin(tools, rounds, idle, label="cell")
        work_rounds = max(5, rounds // 3)
        log(f"  work per run (CPU time, page faults), {work_rounds} rounds; what a page fault costs here")
        from work import machine_costs, work_per_run  # bench/work.py: see there

        work: dict = {}
        costs: dict = {}
        try:  # (each apart; the timed samples are kept whatever happens here)
            work = work_per_run(tools, idle, rounds_in_order(list(tools), work_rounds))
        except Exception as e:  # noqa: BLE001
            env.notes.append(f"work per run: skipped ({e})")
        try:
            costs = machine_costs()
        except Exception as e:  # noqa: BLE001
            env.notes.append(f"the cost of a page fault: not measured ({e})")
        if "matplotlib" in sys.modules:  # (a "card shown" run long enough for its plot: display.has_curve)
            env.notes.append("a shown cell drew its plot: matplotlib was loaded into this process, and every fork "
                             "after it in this run copied its pages too")
    finally:
        if floors is not None:
            floors.close()
    return {"rounds": rounds, "idle_ms": idle * 1e3, "samples": samples, "work": work, "machine_costs": costs}


def section_memory(env: Env, ip, rounds: int, idle: float, sizes: list[int]) -> dict:
    log(f"[2/3] kernel memory, sizes {[s // 2**20 for s in sizes]} MiB, {rounds} rounds each")
    ns = ip.user_ns if ip is not None else {}
    out: dict = {"rounds": rounds, "idle_ms": idle * 1e3, "levels": {}}
    for size in sizes:
        ns.pop("blob", None)
        gc.collect()
        if size:
            ns["blob"] = touched(size)
        tools: dict[str, Callable[[], None]] = {}
        if ip is not None:
            tools["%%container (python: pass)"] = magic_python(ip)
            tools["%%container -- /bin/true"] = magic_shell(ip)
        else:
            tools["library run(): python pass"] = lib_python(ns)
            tools["library run(): /bin/true"] = lib_command()
        tools["plain fork+_exit+wait"] = plain_fork
        rss = _rss_mib()
        log(f"  kernel holds {size // 2**20} MiB (RSS {rss:.0f} MiB)")
        out["levels"][str(size)] = {"rss_mib": rss, "samples": round_robin(tools, rounds, idle, warmup=1)}
    ns.pop("blob", None)
    gc.collect()
    return out


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def section_cli(env: Env, rounds: int, idle: float) -> dict:
    log(f"[3/3] whole process, {rounds} rounds")
    cli = VENV_PY.parent / "pycontainer"
    # As a user's install would be: with cached bytecode. (PYTHONDONTWRITEBYTECODE=1 in the caller's
    # environment would make every start compile all modules from source; the cache goes to our temp dir,
    # not into the source tree, and the warm-up round fills it.)
    pyenv = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    pyenv["PYTHONPYCACHEPREFIX"] = str(env.tmp / "pycache")
    if "PYTHONDONTWRITEBYTECODE" in os.environ:
        env.notes.append(
            "PYTHONDONTWRITEBYTECODE was set: unset for the whole-process rows (bytecode cached "
            "under the bench's temp dir), as an installed package would run"
        )
    tools: dict[str, Callable[[], None]] = {}
    if cli.exists():
        # the console script's shebang is the venv python; call it through the interpreter path anyway
        tools["pycontainer run"] = checked(
            [
                str(VENV_PY),
                str(cli),
                "run",
                "--memory",
                "64m",
                "--pids-limit",
                str(PIDS),
                "--quiet",
                "--",
                "/bin/true",
            ],
            pyenv,
        )
        # the very bundle runc and crun run (issue 6: a runtime standing where runc stands)
        tools["pycontainer run --bundle"] = lambda: checked(
            [str(VENV_PY), str(cli), "run", "--quiet", "--bundle", str(env.bundle), env.next_id()], pyenv)()
    else:
        env.notes.append(f"pycontainer CLI not found at {cli}: skipped")
    if env.runc_ok:
        tools["runc run"] = lambda: checked(env.runc_cmd(env.next_id()))()
    if env.crun_ok:
        tools["crun run (via nsenter)"] = lambda: checked(env.crun_cmd(env.next_id()))()
    if shutil.which("podman"):
        env.podman_used = True
        if env.helper is not None:
            tools["podman run (crun, via nsenter)"] = checked(env.podman_cmd("crun"))
        tools["podman --runtime runc run"] = checked(env.podman_cmd("runc"))
    tools["python -c pass"] = checked([str(VENV_PY), "-c", "pass"], pyenv)
    tools["python -c 'import cli+runtime'"] = checked(
        [str(VENV_PY), "-c", "import pycontainer_magics.cli, pycontainer_magics.runtime"], pyenv
    )
    for name in list(tools):
        ok = probe(name, tools[name], env)
        if not ok:
            del tools[name]
    samples = round_robin(tools, rounds, idle, warmup=1, label="cli")
    return {"rounds": rounds, "idle_ms": idle * 1e3, "samples": samples}


# --------------------------------------------------------------------------------------------------
# Report


def table(
    title: str, samples: dict[str, list[float]], ref: str | None, extra: dict[str, str] | None = None
) -> tuple[str, dict]:
    rows = {n: summarize(xs) for n, xs in samples.items() if xs}
    lines = [
        title,
        f"  {'tool':<34}{'n':>4}{'median ms':>11}{'p90 ms':>9}{'min ms':>9}"
        + (f"{'x ' + ref:>22}" if ref and ref in rows else ""),
    ]
    refm = rows[ref]["median_ms"] if ref and ref in rows else None
    for n, s in rows.items():
        line = f"  {n:<34}{s['n']:>4}{s['median_ms']:>11.1f}{s['p90_ms']:>9.1f}{s['min_ms']:>9.1f}"
        if refm:
            s["ratio_to_" + ref] = s["median_ms"] / refm
            line += f"{s['median_ms'] / refm:>22.2f}"
        if extra and n in extra:
            line += "  " + extra[n]
        lines.append(line)
    return "\n".join(lines), rows


def work_table(work: dict, ref: str | None, costs: dict) -> tuple[str, dict]:
    """What each run made the machine do (bench/work.py), and what a page fault costs here."""
    refw = work.get(ref) if ref else None
    lines = ["", "  Work per run, on average (the run, its idle gap, its background work settled): CPU time and page "
             "faults of this process, of the children it reaped, of the library's launch helper",
             f"  {'tool':<34}{'n':>4}{'CPU ms':>9}{'faults':>9}{'(self':>8}{'reaped':>8}{'helper)':>9}"
             + (f"{'CPU x':>8}{'faults x':>10}" if refw else "")]
    for n, w in work.items():
        line = (f"  {n:<34}{w['n']:>4}{w['cpu_ms']:>9.1f}{w['faults']:>9.0f}{w['faults_self']:>8.0f}"
                f"{w['faults_children']:>8.0f}{w['faults_helper']:>9.0f}")
        if refw and refw["cpu_ms"] and refw["faults"]:
            line += f"{w['cpu_ms'] / refw['cpu_ms']:>8.2f}{w['faults'] / refw['faults']:>10.2f}"
        lines.append(line)
    if costs:
        lines.append(f"  a page fault here: first touch {costs['first_touch_us']:.2f} us, copy-on-write copy "
                     f"{costs['cow_copy_us']:.2f} us, a write after the fork's child is gone "
                     f"{costs['reuse_after_fork_us']:.2f} us; os.fork() of this process ({costs['anon_mib']:.0f} MiB "
                     f"anonymous) {costs['fork_ms']:.2f} ms")
        odd = [k for k in ("first_touch", "cow_copy", "reuse_after_fork")
               if not 0.95 <= costs[f"{k}_faults_per_page"] <= 1.1]
        if odd:  # (huge pages despite the madvise, a mapping shared after all: the figures are not a fault's cost)
            lines.append(f"  note: not one fault per page in {', '.join(odd)}: those figures are not a fault's cost")
    cell = work.get("%%container (python: pass)")
    if cell and costs:
        lines.append(f"  the Python cell's {cell['faults']:.0f} faults, priced as copies (an estimate: many are the "
                     f"cheaper kind): {cell['faults'] * costs['cow_copy_us'] / 1e3:.1f} ms"
                     + (f"; {ref}'s {refw['faults']:.0f}: {refw['faults'] * costs['cow_copy_us'] / 1e3:.1f} ms"
                        if refw else ""))
    # The peers never use the library's helper: work of it counted in their rows is a cell's that outlasted its round
    leaked = [n for n in work if not n.startswith(("%%container", "library", "floor")) and work[n]["faults_helper"]]
    if leaked:
        lines.append(f"  note: the library's helper worked during {', '.join(leaked)}: a round's background work was "
                     "not settled within it")
    return "\n".join(lines), {"per_run": work, "machine_costs": costs}


def report(res: dict) -> tuple[str, dict]:
    out: list[str] = []
    summary: dict = {}
    if "cell" in res:
        s = res["cell"]["samples"]
        ref = "crun run" if "crun run" in s else ("runc run" if "runc run" in s else None)
        text, rows = table(
            f"1. Per cell ({res['cell']['idle_ms']:.0f} ms idle before each run; "
            "ratio = median / median of " + (ref or "-") + ")",
            s,
            ref,
        )
        out.append(text)
        summary["cell"] = rows
        for cell, floor, label, target in (("%%container (python: pass)", FLOOR_PY, "Python cell", 0.30),
                                           ("%%container -- /bin/true", FLOOR_SH, "shell cell", 0.25)):
            if ref and cell in rows:
                r = rows[cell]["median_ms"] / rows[ref]["median_ms"]
                line = f"  goal: {label} <= {target:.2f} x {ref}: {r:.2f} -> {'MET' if r <= target else 'NOT MET'}"
                if floor in rows:
                    f = rows[floor]["median_ms"] / rows[ref]["median_ms"]
                    line += (f"; its floor here {f:.2f} x ({rows[floor]['median_ms']:.1f} ms: the goal is "
                             f"{'within' if f <= target else 'BELOW'} reach), cell = {r / f:.1f} x floor")
                if floor == FLOOR_PY and FLOOR_PY_SETUP in rows:
                    f = rows[FLOOR_PY_SETUP]["median_ms"] / rows[ref]["median_ms"]
                    line += (f"; with PID 1's set-up {f:.2f} x ({rows[FLOOR_PY_SETUP]['median_ms']:.1f} ms, "
                             f"goal {'within' if f <= target else 'BELOW'} reach)")
                out.append(line)
        if res["cell"].get("work") or res["cell"].get("machine_costs"):
            text, summary["work"] = work_table(res["cell"].get("work", {}), ref, res["cell"].get("machine_costs", {}))
            out.append(text)
    if "memory" in res:
        levels = res["memory"]["levels"]
        keys = sorted(levels, key=int)
        names = list(levels[keys[0]]["samples"])
        out.append("")
        out.append("2. Per cell while the kernel holds data (median ms; growth = minus the 0 MiB median)")
        hdr = (
            f"  {'tool':<30}"
            + "".join(f"{(str(int(k) // 2**20) + ' MiB'):>12}" for k in keys)
            + "".join(f"{('+' + str(int(k) // 2**20) + ' MiB'):>12}" for k in keys[1:])
        )
        out.append(hdr)
        summary["memory"] = {}
        for n in names:
            meds = [statistics.median(levels[k]["samples"][n]) * 1e3 for k in keys]
            p90s = [pct(levels[k]["samples"][n], 90) * 1e3 for k in keys]
            grow = [m - meds[0] for m in meds[1:]]
            out.append(
                f"  {n:<30}" + "".join(f"{m:>12.1f}" for m in meds) + "".join(f"{g:>+12.1f}" for g in grow)
            )
            summary["memory"][n] = {
                "median_ms": dict(zip(keys, meds, strict=True)),
                "p90_ms": dict(zip(keys, p90s, strict=True)),
                "growth_ms": dict(zip(keys[1:], grow, strict=True)),
            }
        out.append(
            "  kernel RSS: "
            + ", ".join(f"{int(k) // 2**20} MiB data -> {levels[k]['rss_mib']:.0f} MiB" for k in keys)
        )
        fork = summary["memory"].get("plain fork+_exit+wait")
        for n, label in (
            ("%%container -- /bin/true", "shell cell"),
            ("library run(): /bin/true", "shell cell"),
            ("%%container (python: pass)", "Python cell"),
            ("library run(): python pass", "Python cell"),
        ):
            row = summary["memory"].get(n)
            if not row or not fork:
                continue
            top = keys[-1]
            g, fg = row["growth_ms"][top], fork["growth_ms"][top]
            if label == "shell cell":
                ok = g <= max(2.0, 0.1 * row["median_ms"][keys[0]])
                out.append(
                    f"  goal: {label} does not grow with kernel memory: {g:+.1f} ms at "
                    f"{int(top) // 2**20} MiB -> {'MET' if ok else 'NOT MET'} (tolerance: 2 ms or 10%)"
                )
            else:
                ok = g <= fg * 1.1 + 1.0
                ratio = g / fg if fg else float("nan")
                out.append(
                    f"  goal: {label} grows no more than a plain fork: {g:+.1f} ms vs fork {fg:+.1f} ms at "
                    f"{int(top) // 2**20} MiB -> {'MET' if ok else 'NOT MET'} (ratio {ratio:.2f})"
                )
    if "cli" in res:
        s = res["cli"]["samples"]
        ref = "runc run" if "runc run" in s else None
        out.append("")
        text, rows = table(
            f"3. Whole process ({res['cli']['idle_ms']:.0f} ms idle before each run; "
            "ratio = median / median of " + (ref or "-") + ")",
            s,
            ref,
        )
        out.append(text)
        summary["cli"] = rows
        if "pycontainer run" in rows and ref:
            r = rows["pycontainer run"]["median_ms"] / rows[ref]["median_ms"]
            out.append(f"  goal: pycontainer run ahead of runc: {r:.2f} x -> {'MET' if r < 1 else 'NOT MET'}")
    return "\n".join(out), summary


# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="CI-size run (fewer rounds, 50 MiB max), < 1 minute")
    ap.add_argument("--json", metavar="OUT", help="save the raw samples and the summary as JSON")
    ap.add_argument("--rounds", type=int, help="rounds per section (overrides the default/--quick count)")
    ap.add_argument("--idle-ms", type=float, default=50.0, help="idle before each timed run (default 50)")
    ap.add_argument(
        "--only",
        choices=("cell", "memory", "cli"),
        action="append",
        help="run only this section (repeatable)",
    )
    ap.add_argument("--no-magic", action="store_true", help="skip IPython (library run() only)")
    ap.add_argument("--shuffle", action="store_true",
                    help="a new order of the tools each round (seeded), not one cyclic order: each after any other")
    args = ap.parse_args(argv)
    global SHUFFLED
    SHUFFLED = args.shuffle

    if os.geteuid() != 0:
        print("bench: run as root (containers with cgroup limits; crun/runc/podman as root)", file=sys.stderr)
        return 2
    idle = args.idle_ms / 1e3
    r_cell = args.rounds or (10 if args.quick else 40)
    r_mem = args.rounds or (6 if args.quick else 25)
    r_cli = args.rounds or (5 if args.quick else 20)
    sizes = [0, 50 * 2**20] if args.quick else [0, 50 * 2**20, 2**30]
    sections = args.only or ["cell", "memory", "cli"]

    # Ctrl-C and SIGTERM both end up in the finally below (SIGINT explicitly: a shell starts background
    # jobs with it ignored)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))

    started = time.time()
    env = Env()
    res: dict = {}
    meta = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "executable": str(VENV_PY),
        "cgroup": "v2"
        if (CG_ROOT / "cgroup.controllers").exists()
        else ("v1 hybrid" if (CG_ROOT / "unified").is_dir() else "v1"),
        "versions": {},
        "argv": sys.argv[1:],
        "loadavg_start": os.getloadavg(),
    }
    for tool in ("crun", "runc", "podman"):
        if shutil.which(tool):
            with contextlib.suppress(Exception):
                meta["versions"][tool] = subprocess.run(
                    [tool, "--version"], capture_output=True, text=True
                ).stdout.splitlines()[0]
    busy0, ours0, t0 = _machine_busy(), _own_cpu(), time.monotonic()
    interrupted = False
    try:
        env.build_bundle()
        env.start_crun_helper()
        if shutil.which("runc"):
            env.runc_ok = probe("runc run", lambda: checked(env.runc_cmd(env.next_id()))(), env)
        if env.helper is not None:
            env.crun_ok = probe("crun run", lambda: checked(env.crun_cmd(env.next_id()))(), env)
        if "cli" in sections and shutil.which("podman"):
            env.build_rootfs(env.podman_rootfs)
        ip = None
        if not args.no_magic and ({"cell", "memory"} & set(sections)):
            try:
                ip = make_shell()
            except Exception as e:  # noqa: BLE001
                msg = f"%%container magic unavailable ({e}); measuring the library only"
                env.notes.append(msg)
                log("  " + msg)
        if "cell" in sections:
            res["cell"] = section_cell(env, ip, r_cell, idle)
        if "memory" in sections:
            res["memory"] = section_memory(env, ip, r_mem, idle, sizes)
        if "cli" in sections:
            res["cli"] = section_cli(env, r_cli, idle)
    except KeyboardInterrupt:
        interrupted = True
        log("bench: interrupted, cleaning up")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the clean-up finish
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cleaned = env.cleanup()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # What the library made ahead of time for a next cell (a holder, a cgroup) and its background clean-up
    # go now, as they would at the process's exit.
    from pycontainer_magics.runtime.cleanup import settle
    from pycontainer_magics.runtime.pool import pool
    pool.drain()
    settle()
    leftovers = our_cgroup_leftovers()
    # the library names a container's cgroup `<pid of the creating process>-<n>-<random>`
    mine = {str(os.getpid())} | {str(p) for p in CHILD_PIDS}
    new_left = {k: [x for x in v if x.split("-")[0] in mine] for k, v in leftovers.items()}
    new_left = {k: v for k, v in new_left.items() if v}
    others = sorted({x for v in leftovers.values() for x in v if x.split("-")[0] not in mine})
    meta["loadavg_end"] = os.getloadavg()
    elapsed = time.monotonic() - t0
    other = max(0.0, (_machine_busy() - busy0) - (_own_cpu() - ours0))
    meta["other_cpu_share"] = other / (elapsed * (os.cpu_count() or 1)) if elapsed > 0 else 0.0

    text, summary = report(res) if res else ("(no results)", {})
    print(
        f"pycontainer_magics bench — {meta['date']}, {meta['cpus']} CPUs, cgroup {meta['cgroup']}, "
        f"kernel {meta['kernel']}, Python {meta['python']}"
    )
    print("peers: " + "; ".join(meta["versions"].values()))
    share = meta["other_cpu_share"]
    print(
        f"CPU used by other processes during the run: {share:.0%} of the machine; load average at start "
        f"{meta['loadavg_start'][0]:.2f}"
        + ("  <- WARNING: the machine was busy, figures are noisy" if share > 0.15 else "")
    )
    print()
    print(text)
    print()
    for n in env.notes:
        print("note: " + n)
    for c in cleaned:
        print("clean-up: " + c)
    if new_left:
        print(f"LEFTOVERS under {OUR_CG} cgroups: {new_left}")
    else:
        print(
            f"clean-up: no leftovers of ours under /sys/fs/cgroup/*/{OUR_CG}"
            + (f" (present, from other processes: {', '.join(others)})" if others else "")
        )
    print(f"wall time: {time.time() - started:.0f} s" + (" (interrupted)" if interrupted else ""))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "meta": meta,
                    "results": res,
                    "summary": summary,
                    "notes": env.notes,
                    "cleanup": cleaned,
                    "leftovers": new_left,
                },
                indent=1,
            )
        )
        print(f"saved {args.json}")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
