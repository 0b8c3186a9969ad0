"""Builds and compose next to the engines, in one run, on the same files:

1. `%%dockerfile` rebuilt from its cache against `buildah bud --layers` rebuilt from its cache (a 5-step
   Dockerfile FROM a busybox image: ENV, COPY, two RUNs, CMD);
2. `%%compose up -d` and `%compose down -t 0` of N services (busybox `sleep 60`, the project's default
   network) against podman-compose (`pip install podman-compose`) driving podman, on the same compose file.

    sudo .venv/bin/python bench/peers.py [--services 10] [--rounds 5]

Both ours go through a real IPython shell after `%load_ext pycontainer_magics`. Rounds interleave the tools
(the first rotates); medians in ms, ratios ours / theirs. podman and buildah run on a store of their own in
the run's temp dir (--root/--runroot/--tmpdir, runc, cgroupfs, the ulimits root may set here), inside a
helper's private mount and network namespaces (`unshare --mount --net`, entered with nsenter): their overlay
mounts, CNI bridges and firewall rules never reach the host and vanish with the helper. Everything is
removed at the end (podman's containers and store, our images and projects, the helper by its PID).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

DOCKERFILE = ("FROM bench/busybox:1\nENV A=1\nCOPY file.txt /file.txt\nRUN echo built > /built\n"
              "RUN cat /file.txt > /copy\nCMD [\"cat\", \"/built\"]\n")


def _busybox_rootfs(root: str) -> None:
    os.makedirs(os.path.join(root, "bin"))
    os.makedirs(os.path.join(root, "etc"))
    shutil.copy("/bin/busybox", os.path.join(root, "bin", "busybox"))
    for a in ("sh", "sleep", "true", "cat", "echo"):
        os.symlink("busybox", os.path.join(root, "bin", a))
    with open(os.path.join(root, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n")


def _wrapper(path: str, tool: str, helper: int, conf: str, args: str) -> None:
    """An executable that runs `tool` on the private store inside the helper's namespaces."""
    with open(path, "w") as f:
        f.write(f"#!/bin/sh\nCONTAINERS_CONF={conf} exec nsenter -t {helper} --mount --net {tool} {args} \"$@\"\n")
    os.chmod(path, 0o755)


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def _line(label: str, ms: float, ref: float) -> str:
    return f"  {label:44s} {ms:8.1f}   {ms / ref:5.2f}x"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--services", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    for tool in ("podman", "buildah", "nsenter", "unshare"):
        if shutil.which(tool) is None:
            sys.exit(f"needs {tool}")
    compose_bin = shutil.which("podman-compose") or os.path.join(os.path.dirname(sys.executable), "podman-compose")
    if not os.path.exists(compose_bin):
        compose_bin = ""
    tmp = tempfile.mkdtemp(prefix="pcm-peers-", dir="/tmp")  # short: podman refuses a runroot over 50 chars
    # Registered before the library registers its exit clean-up, so it runs after it (atexit runs last-first):
    # that clean-up may still write below the state dir.
    atexit.register(shutil.rmtree, tmp, True)
    os.environ["PYCONTAINER_STATE_DIR"] = os.path.join(tmp, "state")
    from pycontainer_magics.kube.podman import podman_cgroup_parents, remove_podman_cgroups

    podman_parents = podman_cgroup_parents()  # (before podman runs here: which of them it makes)
    helper = subprocess.Popen(["unshare", "--mount", "--net", "--propagation", "private", "sleep", "infinity"])
    podman = os.path.join(tmp, "podman")
    ip_shell = None
    quiet = open(os.devnull, "w")  # noqa: SIM115 - our magics print progress lines
    projects: list[str] = []
    try:
        for _ in range(100):  # until the helper is in its own namespaces
            if os.readlink(f"/proc/{helper.pid}/ns/net") != os.readlink("/proc/self/ns/net"):
                break
            time.sleep(0.01)
        subprocess.run(["nsenter", "-t", str(helper.pid), "--net", "ip", "link", "set", "lo", "up"], check=True)
        conf = os.path.join(tmp, "containers.conf")
        with open(conf, "w") as f:
            f.write('[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n'
                    f'[network]\nnetwork_config_dir = "{tmp}/cni"\n'
                    '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n')
        store_args = f"--root {tmp}/root --runroot {tmp}/run"
        _wrapper(podman, "podman", helper.pid, conf, f"{store_args} --tmpdir {tmp}/tmp")
        buildah = os.path.join(tmp, "buildah")
        _wrapper(buildah, "buildah", helper.pid, conf, store_args)

        rootfs = os.path.join(tmp, "rootfs")
        _busybox_rootfs(rootfs)
        subprocess.run(["tar", "-C", rootfs, "-cf", os.path.join(tmp, "base.tar"), "."], check=True)
        subprocess.run([podman, "import", "--change", "ENV PATH=/bin", os.path.join(tmp, "base.tar"),
                        "bench/busybox:1"], check=True, stdout=subprocess.DEVNULL)
        from IPython.core.interactiveshell import InteractiveShell

        from pycontainer_magics.images import ImageConfig, Store
        from pycontainer_magics.runtime.cleanup import settle

        Store().create_image("bench/busybox:1", [rootfs], ImageConfig(env=("PATH=/bin",)))
        ip_shell = InteractiveShell.instance()
        ip_shell.run_line_magic("load_ext", "pycontainer_magics")

        def ours(fn):  # type: ignore[no-untyped-def]
            sys.stdout, sys.stderr = quiet, quiet
            try:
                return fn()
            finally:
                sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__

        print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
        # 1. builds
        ctx = os.path.join(tmp, "ctx")
        os.makedirs(ctx)
        with open(os.path.join(ctx, "file.txt"), "w") as f:
            f.write("x\n")
        with open(os.path.join(ctx, "Dockerfile"), "w") as f:
            f.write(DOCKERFILE)
        bud = [buildah, "bud", "--layers", "--pull-never", "--network", "none", "--runtime", "runc",
               "-t", "bench/built:1", "-f", os.path.join(ctx, "Dockerfile"), ctx]

        def build_ours() -> None:
            ours(lambda: ip_shell.run_cell_magic("dockerfile", f"-t bench/built:1 --context {ctx}", DOCKERFILE))

        def build_buildah() -> None:
            subprocess.run(bud, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        first = {"ours": _timed(build_ours), "buildah": _timed(build_buildah)}
        builds: dict[str, list[float]] = {"ours": [], "buildah": []}
        for r in range(args.rounds):
            for way in (("ours", "buildah") if r % 2 == 0 else ("buildah", "ours")):
                settle()
                time.sleep(0.1)
                builds[way].append(_timed(build_ours if way == "ours" else build_buildah))
        med = {k: statistics.median(v) for k, v in builds.items()}
        print(f"1. Dockerfile of 5 steps rebuilt from the cache, {args.rounds} rounds (median ms, x buildah)")
        print(_line("%%dockerfile (cached)", med["ours"], med["buildah"]))
        print(_line("buildah bud --layers (cached)", med["buildah"], med["buildah"]))
        print(f"  first builds: ours {first['ours']:.0f} ms, buildah {first['buildah']:.0f} ms")

        # 2. compose
        if not compose_bin:
            print("2. compose: podman-compose not installed (pip install podman-compose): skipped")
            return
        n = args.services
        compose_file = os.path.join(tmp, "compose.yml")
        with open(compose_file, "w") as f:
            f.write("services:\n" + "".join(f"  s{i}: {{image: bench/busybox:1, command: [sleep, \"60\"]}}\n"
                                            for i in range(n)))
        with open(compose_file) as f:
            compose_text = f.read()
        pc = [compose_bin, "--podman-path", podman, "-f", compose_file]
        times: dict[str, list[float]] = {"up": [], "pc up": [], "down": [], "pc down": []}
        for r in range(args.rounds):
            for way in (("ours", "pc") if r % 2 == 0 else ("pc", "ours")):
                settle()
                time.sleep(0.2)
                if way == "ours":
                    p = f"bench{r}"
                    projects.append(p)
                    times["up"].append(_timed(lambda p=p: ours(
                        lambda: ip_shell.run_cell_magic("compose", f"-p {p} up -d", compose_text))))
                    times["down"].append(_timed(lambda p=p: ours(
                        lambda: ip_shell.run_line_magic("compose", f"down -t 0 -p {p}"))))
                    projects.remove(p)
                else:
                    p = f"pc{r}"
                    times["pc up"].append(_timed(lambda p=p: subprocess.run(
                        [*pc, "-p", p, "up", "-d"], check=True, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL)))
                    times["pc down"].append(_timed(lambda p=p: subprocess.run(
                        [*pc, "-p", p, "down", "-t", "0"], check=True, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL)))
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"2. compose, {n} services, {args.rounds} rounds (median ms, x podman-compose)")
        print(_line("%%compose up -d", med["up"], med["pc up"]))
        print(_line("podman-compose up -d (podman 4.3, runc)", med["pc up"], med["pc up"]))
        print(_line("%compose down -t 0", med["down"], med["pc down"]))
        print(_line("podman-compose down -t 0", med["pc down"], med["pc down"]))
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    finally:
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        if ip_shell is not None:
            for p in projects:
                with contextlib.suppress(Exception):
                    ip_shell.run_line_magic("compose", f"down -t 0 -p {p}")
        with contextlib.suppress(Exception):
            subprocess.run([podman, "rm", "-af", "-t", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            subprocess.run([podman, "system", "reset", "-f"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        helper.kill()
        helper.wait()
        remove_podman_cgroups(podman_parents)  # (conmon's cgroup and its parent, left by podman's cgroupfs manager)
        with contextlib.suppress(Exception):
            from pycontainer_magics.runtime.cleanup import settle

            settle()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
