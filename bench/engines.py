#!/usr/bin/env python3
"""The engine chain end to end: `docker run --rm --network none IMAGE true` through dockerd -> containerd
-> shim -> runtime, with `--runtime pyc` (this project's `pycontainer-runc`), runc and crun, round-robin
in one run; medians and the ratio to runc. dockerd runs on its own roots, exec root and socket under a
temporary directory (no iptables, no bridge), its containers under the project's cgroup parent; the image
is a busybox one this project builds and `docker load`s. Everything is removed at the end.

    sudo .venv/bin/python bench/engines.py [--rounds 15] [--idle-ms 100]

crun 1.8 refuses the hybrid cgroup layout: it runs through a wrapper that gives each call a private mount
namespace without /sys/fs/cgroup/unified (made at the call, so it sees the rootfs containerd has just
mounted for the container).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench import VENV_PY, Env, log, stop_process  # noqa: E402

IMAGE = "lab/bench-busybox:1"


class ChainCpu:
    """CPU time of dockerd and everything it starts but the containers (containerd, the shims, the runtime
    calls): dockerd is started in a cgroup of its own, whose usage counter each `docker run` moves; the
    containers' processes join their own cgroups. The figure a loaded machine moves least."""

    def __init__(self, parent: str) -> None:
        v1 = "/sys/fs/cgroup/cpuacct"
        if os.path.exists(f"{v1}/cpuacct.usage"):
            self.dir, self.file = f"{v1}{parent}/chain", "cpuacct.usage"
        else:
            self.dir, self.file = f"/sys/fs/cgroup{parent}/chain", "cpu.stat"
        os.makedirs(self.dir)

    def join(self) -> None:  # in dockerd's child, before exec
        with open(f"{self.dir}/cgroup.procs", "w") as f:
            f.write("0")

    def seconds(self) -> float:
        with open(f"{self.dir}/{self.file}") as f:
            text = f.read()
        if self.file == "cpuacct.usage":
            return int(text) / 1e9
        return next(int(line.split()[1]) for line in text.splitlines() if line.startswith("usage_usec")) / 1e6


def build_image(env: Env, out: Path) -> None:
    """busybox as an image of this project's store, exported as a `docker save` tarball."""
    from pycontainer_magics.images.archive import export_docker_archive
    from pycontainer_magics.images.image import ImageConfig
    from pycontainer_magics.images.store import Store

    rootfs = env.tmp / "image-rootfs"
    env.build_rootfs(rootfs)
    store = Store(str(env.tmp / "store"))
    store.create_image(IMAGE, [str(rootfs)], ImageConfig(cmd=("sh",), env=("PATH=/bin",)))
    with open(out, "wb") as f:
        export_docker_archive(store, [IMAGE], f)


def crun_wrapper(env: Env) -> Path | None:
    """crun in a mount namespace of its own for each call, made at the call (so it sees the rootfs containerd
    mounted for the container just before) and without /sys/fs/cgroup/unified."""
    if not shutil.which("crun"):
        return None
    w = env.tmp / "crun-wrapper"
    w.write_text("#!/bin/sh\nexec unshare --mount --propagation private sh -c "
                 "'umount /sys/fs/cgroup/unified 2>/dev/null; exec crun \"$@\"' crun \"$@\"\n")
    w.chmod(0o755)
    return w


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--idle-ms", type=float, default=100)
    ap.add_argument("--launcher", action="append", default=[], metavar="NAME=PATH",
                    help="another launcher of ours to add as runtime NAME (e.g. an older checkout's)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/engines.py: run as root")
    if not shutil.which("dockerd"):
        raise SystemExit("bench/engines.py: dockerd is not installed (apt-get install docker.io)")
    cli = next((c for c in ("/usr/local/bin/docker", "/usr/bin/docker") if os.access(c, os.X_OK)), None)
    if cli is None:
        raise SystemExit("bench/engines.py: no docker CLI")
    env = Env(tmp_parent="/tmp")  # short: the socket path
    parent = f"/pycontainer_magics/bench-engines-{os.getpid()}"
    d = env.tmp / "dockerd"
    proc = None
    samples: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    try:
        chain = ChainCpu(parent)
        ours = subprocess.run([str(VENV_PY.with_name("pycontainer")), "install-runtime", "--output",
                               str(env.tmp / "pycontainer-runc")], capture_output=True, text=True,
                              check=True).stdout.strip()
        build_image(env, env.tmp / "image.tar")
        runtimes = ["--add-runtime", f"pyc={ours}"]
        for item in args.launcher:
            runtimes += ["--add-runtime", item]
        crun = crun_wrapper(env)
        if crun is not None:
            runtimes += ["--add-runtime", f"crun={crun}"]
        d.mkdir()
        proc = subprocess.Popen(
            ["dockerd", "--data-root", str(d / "data"), "--exec-root", str(d / "exec"), "--pidfile",
             str(d / "pid"), "-H", f"unix://{d}/d.sock", "--iptables=false", "--ip-masq=false",
             "--ip-forward=false", "--bridge=none", "--userland-proxy=false", "--exec-opt",
             "native.cgroupdriver=cgroupfs", "--cgroup-parent", parent, *runtimes, "--log-level", "warn"],
            stdout=open(env.tmp / "dockerd.log", "wb"), stderr=subprocess.STDOUT, preexec_fn=chain.join)
        denv = {**os.environ, "DOCKER_HOST": f"unix://{d}/d.sock", "DOCKER_CONFIG": str(d / "client")}

        def docker(*argv: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([cli, *argv], capture_output=True, text=True, env=denv, timeout=120)

        deadline = time.monotonic() + 60
        while docker("version").returncode != 0:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("dockerd did not start: " + (env.tmp / "dockerd.log").read_text()[-2000:])
            time.sleep(0.2)
        p = docker("load", "-i", str(env.tmp / "image.tar"))
        if p.returncode != 0:
            raise SystemExit(f"docker load: {p.stderr}")
        names = ["pyc", *(i.partition("=")[0] for i in args.launcher), "runc"] + (["crun"] if crun else [])
        samples = {n: [] for n in names}
        cpu = {n: [] for n in names}
        for r in range(-2, args.rounds):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                time.sleep(args.idle_ms / 1000)
                c0, t0 = chain.seconds(), time.perf_counter()
                p = docker("run", "--rm", "--network", "none", "--runtime", name, IMAGE, "true")
                dt, dc = time.perf_counter() - t0, chain.seconds() - c0
                if p.returncode != 0:
                    raise SystemExit(f"docker run --runtime {name}: {p.stderr.strip()}")
                if r >= 0:
                    samples[name].append(dt)
                    cpu[name].append(dc)
    finally:
        if proc is not None:
            stop_process(proc, 60)
        with open("/proc/self/mountinfo") as f:
            for mp in sorted((line.split()[4] for line in f if str(env.tmp) in line.split()[4]), key=len,
                             reverse=True):
                subprocess.run(["umount", "-l", mp], capture_output=True)
        shutil.rmtree(env.tmp, ignore_errors=True)
        for root in Path("/sys/fs/cgroup").iterdir():
            top = root / parent.lstrip("/")
            if top.is_dir():
                for sub in sorted(top.rglob("*"), key=lambda p: len(str(p)), reverse=True):
                    with contextlib.suppress(OSError):
                        sub.rmdir()
                with contextlib.suppress(OSError):
                    top.rmdir()
    med = {n: statistics.median(s) * 1000 for n, s in samples.items()}
    mcpu = {n: statistics.median(s) * 1000 for n, s in cpu.items()}
    print(f"docker run --rm --network none {IMAGE} true, {args.rounds} rounds, median ms "
          f"({args.idle_ms:g} ms idle before each)")
    print(f"  {'':<16} {'wall':>8}            {'CPU of the chain':>16} (dockerd, containerd, shim, runtime)")
    for n, m in med.items():
        print(f"  --runtime {n:<6} {m:8.1f}   {m / med['runc']:.2f}x runc   {mcpu[n]:8.1f}   "
              f"{mcpu[n] / mcpu['runc']:.2f}x runc   (+{mcpu[n] - mcpu['runc']:.1f} ms)")
    log("done")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
