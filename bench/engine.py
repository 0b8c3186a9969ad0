#!/usr/bin/env python3
"""The engine daemon (`pycontainer serve`) side by side with its peers, in one run, as ratios:

1. cli     whole process, `pycontainer run --memory 64m --pids-limit 64 -- /bin/true` through the daemon
           (its warm launcher starts the container), the same in-process (PYCONTAINER_NO_DAEMON=1),
           `runc run` of an equivalent bundle and `podman run --rm --rootfs` (bench.py's Env).
           Goals: daemon <= 1.0 x runc, <= 0.2 x podman.
2. docker  `docker run --rm --network none IMAGE true` (the docker CLI, whole process) against this daemon
           and against a real dockerd (Debian docker.io, runc) that the benchmark starts on a private data
           root, exec root and socket (--iptables=false --bridge=none --ip-masq=false) and stops after.
           The same busybox image in both (saved by this project's store, `docker load`ed into each).
           Goal: <= 0.5 x dockerd.

    sudo .venv/bin/python bench/engine.py [--rounds N] [--idle-ms MS] [--json FILE]

Everything started (both daemons, their containers, temp dirs) is stopped and removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench import VENV_PY, Env, checked, log, probe, round_robin, stop_process, summarize  # noqa: E402

DOCKER = shutil.which("docker", path="/usr/bin") or shutil.which("docker")


def wait_socket(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            r = subprocess.run([DOCKER or "docker", "-H", f"unix://{path}", "version"], capture_output=True)
            if r.returncode == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"no daemon answered on {path}")


class Daemons:
    """Our daemon and a real dockerd, each on private directories under one temp dir."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        # As a user's install would run: with cached bytecode (as bench.py's whole-process rows). With
        # PYTHONDONTWRITEBYTECODE=1 in the caller's environment every `pycontainer run` would compile its
        # modules from source; the cache goes to our temp dir, not into the source tree.
        py = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        self.ours_env = {**py, "PYTHONPYCACHEPREFIX": str(tmp / "pycache"),
                         "PYCONTAINER_STATE_DIR": str(tmp / "pyc-state"),
                         "PYCONTAINER_RUN_DIR": str(tmp / "pyc-run"), "DOCKER_CONFIG": str(tmp / "dockercfg")}
        self.ours_sock = tmp / "pyc-run" / "docker.sock"
        self.ours: subprocess.Popen[bytes] | None = None
        self.dockerd: subprocess.Popen[bytes] | None = None
        self.dockerd_sock = tmp / "dockerd" / "docker.sock"

    def start_ours(self) -> None:
        self.ours = subprocess.Popen([str(VENV_PY), "-m", "pycontainer_magics", "serve"], env=self.ours_env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_socket(self.ours_sock)

    def start_dockerd(self) -> None:
        exe = shutil.which("dockerd")
        if exe is None:
            raise RuntimeError("dockerd not installed (apt-get install docker.io)")
        d = self.tmp / "dockerd"
        d.mkdir()
        # A short exec root: containerd's socket path must fit in 108 bytes.
        self.exec_root = Path(tempfile.mkdtemp(prefix="pdx-", dir="/tmp"))
        self.dockerd = subprocess.Popen(
            [exe, "--data-root", str(d / "data"), "--exec-root", str(self.exec_root), "--pidfile", str(d / "pid"),
             "-H", f"unix://{self.dockerd_sock}", "--iptables=false", "--ip6tables=false", "--bridge=none",
             "--ip-masq=false", "--userland-proxy=false", "--log-level=error"],
            stdout=open(d / "log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)  # noqa: SIM115
        wait_socket(self.dockerd_sock, 120)

    def docker(self, sock: Path, *args: str) -> list[str]:
        return [DOCKER or "docker", "-H", f"unix://{sock}", *args]

    def stop(self) -> list[str]:
        report = []
        for name, proc, sock in (("pycontainer serve", self.ours, self.ours_sock),
                                 ("dockerd", self.dockerd, self.dockerd_sock)):
            if proc is None:
                continue
            with contextlib.suppress(Exception):
                ids = subprocess.run(self.docker(sock, "ps", "-aq"), capture_output=True, text=True,
                                     timeout=60).stdout.split()
                if ids:
                    subprocess.run(self.docker(sock, "rm", "-f", *ids), capture_output=True, timeout=120)
                    report.append(f"{name}: removed {len(ids)} leftover container(s)")
            if stop_process(proc, 60):
                report.append(f"{name}: killed after 60 s")
        if self.dockerd is not None:
            with contextlib.suppress(OSError):
                subprocess.run(["umount", "-R", str(self.tmp / "dockerd" / "data")], capture_output=True)
            shutil.rmtree(self.exec_root, ignore_errors=True)
        subprocess.run([str(VENV_PY), "-m", "pycontainer_magics", "prune"], env=self.ours_env, capture_output=True)
        return report


def make_archive(tmp: Path, env: Env) -> Path:
    """A busybox image as a docker-archive, made by this project's store (a private one)."""
    code = f"""
import io, os, sys
from pycontainer_magics.images import Store, ImageConfig
from pycontainer_magics.images.archive import export_docker_archive
s = Store({str(tmp / 'img-store')!r})
s.create_image("bench/busybox:1", [{str(env.rootfs)!r}], ImageConfig(cmd=("sh",)))
with open({str(tmp / 'busybox.tar')!r}, "wb") as f:
    export_docker_archive(s, ["bench/busybox:1"], f)
"""
    subprocess.run([str(VENV_PY), "-c", code], check=True)
    return tmp / "busybox.tar"


def ratio_lines(summary: dict[str, dict[str, float]], ours: str, peers: list[str]) -> list[str]:
    out = []
    for p in peers:
        if p in summary and ours in summary:
            out.append(f"  {ours} / {p}: {summary[ours]['median_ms'] / summary[p]['median_ms']:.2f}x")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--idle-ms", type=float, default=50)
    ap.add_argument("--json", metavar="FILE")
    ns = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("bench/engine.py: run as root")
    env = Env()
    daemons = Daemons(env.tmp)
    if "PYTHONDONTWRITEBYTECODE" in os.environ:
        env.notes.append("PYTHONDONTWRITEBYTECODE was set: unset for pycontainer's rows (bytecode cached under the "
                         "bench's temp dir), as an installed package would run")
    results: dict[str, dict[str, dict[str, float]]] = {}
    samples: dict[str, dict[str, list[float]]] = {}
    try:
        env.build_bundle()
        env.build_rootfs(env.podman_rootfs)
        log("starting pycontainer serve and dockerd on private roots")
        daemons.start_ours()
        archive = make_archive(env.tmp, env)
        for sock in (daemons.ours_sock,):
            subprocess.run(daemons.docker(sock, "load", "-i", str(archive)), check=True, capture_output=True,
                           env=daemons.ours_env)
        dockerd_ok = probe("dockerd", daemons.start_dockerd, env)
        if dockerd_ok:
            subprocess.run(daemons.docker(daemons.dockerd_sock, "load", "-i", str(archive)), check=True,
                           capture_output=True)

        # 1. the command line
        pyc = [str(VENV_PY.parent / "pycontainer"), "run", "--memory", "64m", "--pids-limit", "64", "--quiet",
               "--", "/bin/true"]
        tools = {"pycontainer run (daemon)": checked(pyc, env=daemons.ours_env),
                 "pycontainer run (in-process)": checked(pyc, env={**daemons.ours_env, "PYCONTAINER_NO_DAEMON": "1"})}
        if probe("runc", checked(env.runc_cmd(env.next_id())), env):
            tools["runc run"] = lambda: checked(env.runc_cmd(env.next_id()))()
        if shutil.which("podman") and probe("podman", checked(env.podman_cmd("runc")), env):
            tools["podman run --rm"] = checked(env.podman_cmd("runc"))
        log(f"cli: {', '.join(tools)}")
        s1 = round_robin(tools, ns.rounds, ns.idle_ms / 1000, label="cli")
        samples["cli"] = s1
        results["cli"] = {k: summarize(v) for k, v in s1.items()}

        # 2. the docker CLI against each daemon
        run = ["run", "--rm", "--network", "none", "bench/busybox:1", "true"]
        tools2 = {"docker run -> pycontainer serve": checked(daemons.docker(daemons.ours_sock, *run),
                                                            env=daemons.ours_env)}
        if dockerd_ok:
            tools2["docker run -> dockerd"] = checked(daemons.docker(daemons.dockerd_sock, *run))
        log(f"docker: {', '.join(tools2)}")
        s2 = round_robin(tools2, ns.rounds, ns.idle_ms / 1000, label="docker")
        samples["docker"] = s2
        results["docker"] = {k: summarize(v) for k, v in s2.items()}
    finally:
        for line in daemons.stop() + env.cleanup():
            log(f"clean-up: {line}")

    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"\nengine bench, {ns.rounds} rounds, {ns.idle_ms:g} ms idle, load average {' '.join(load)}")
    for section, summ in results.items():
        print(f"\n[{section}] median / p90 / min (ms)")
        for name, st in summ.items():
            print(f"  {name:34s} {st['median_ms']:8.1f} {st['p90_ms']:8.1f} {st['min_ms']:8.1f}")
    print()
    for line in (ratio_lines(results.get("cli", {}), "pycontainer run (daemon)", ["runc run", "podman run --rm",
                                                                                  "pycontainer run (in-process)"])
                 + ratio_lines(results.get("docker", {}), "docker run -> pycontainer serve",
                               ["docker run -> dockerd"])):
        print(line)
    for n in env.notes:
        print(f"note: {n}")
    if ns.json:
        with open(ns.json, "w") as f:
            json.dump({"summary": results, "samples": samples, "load": load}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
