"""The real engines drive this project's runtime through runc's command line: containerd (`ctr run
--runc-binary`), dockerd (`--add-runtime pyc=...`) and podman (`--runtime`), each started here on its own
roots, exec roots and sockets under a temporary directory (no iptables, no bridge), stopped and removed
afterwards; the image is one this project builds and exports as a docker-archive. Skipped, with the
reason, only where an engine's package is absent."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_for
from images_helpers import busybox_layer

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

PYCONTAINER = str(Path(sys.executable).with_name("pycontainer"))
DEPLOY = Path(__file__).resolve().parent.parent / "binder" / "deploy"
IMAGE = "lab/busybox:1"
PARENT = f"pycontainer_magics/engines-{os.getpid()}"  # every engine's containers go under our own parent


def _need(*tools: str) -> None:
    for t in tools:
        if shutil.which(t) is None:
            package = {"ctr": "containerd", "dockerd": "docker.io"}.get(t, t)
            pytest.skip(f"{t} is not installed (apt-get install {package})")


def _docker_cli() -> str:
    for c in ("/usr/local/bin/docker", "/usr/bin/docker", shutil.which("docker") or ""):
        if c and os.access(c, os.X_OK):
            return c
    pytest.skip("no docker CLI (apt-get install docker.io)")


@pytest.fixture(scope="module")
def work() -> Iterator[Path]:
    """A short base path (unix sockets take 108 bytes) of our own, removed at the end with what the engines
    left in it; no mount under it may outlive the test."""
    import tempfile
    base = Path(tempfile.mkdtemp(prefix="pyc-eng-", dir="/tmp"))
    yield base
    with open("/proc/self/mountinfo") as f:
        left = [line.split()[4] for line in f if str(base) in line.split()[4]]
    for mp in sorted(left, key=len, reverse=True):  # an engine that died mid-test: its mounts are ours to undo
        subprocess.run(["umount", "-l", mp], capture_output=True)
    shutil.rmtree(base, ignore_errors=True)
    assert not left, f"mounts left behind: {left}"


@pytest.fixture(scope="module")
def runtime_bin(work: Path) -> str:
    """The launcher engines get: `pycontainer install-runtime` (python -IS)."""
    p = subprocess.run([PYCONTAINER, "install-runtime", "--output", str(work / "pycontainer-runc")],
                       capture_output=True, text=True, check=True)
    return p.stdout.strip()


@pytest.fixture(scope="module")
def image_tar(work: Path) -> Path:
    """A busybox image this project builds (its store) and exports as `docker save` does."""
    from pycontainer_magics.images.archive import export_docker_archive
    from pycontainer_magics.images.image import ImageConfig
    from pycontainer_magics.images.store import Store

    store = Store(str(work / "store"))
    store.create_image(IMAGE, [busybox_layer()], ImageConfig(cmd=("sh",), env=("PATH=/bin",)))
    out = work / "busybox.tar"
    with open(out, "wb") as f:
        export_docker_archive(store, [IMAGE], f)
    return out


@pytest.fixture(scope="module", autouse=True)
def no_cgroups_left() -> Iterator[None]:
    yield
    for root in Path("/sys/fs/cgroup").iterdir():
        top = root / PARENT
        if top.is_dir():
            dirs = [d for d in top.rglob("*") if d.is_dir()]
            left = [d for d in dirs if len(d.relative_to(top).parts) >= 2]  # <engine>/<container>
            for d in sorted([top, *dirs], key=lambda p: len(str(p)), reverse=True):
                with contextlib.suppress(OSError):
                    d.rmdir()  # the engines' parent directories (runtimes remove the containers' own)
            with contextlib.suppress(OSError):
                top.parent.rmdir()  # the project's parent, if nobody else is in it (runc makes it in unified/ too)
            assert not left, f"containers' cgroups left behind: {left}"


CTR_NAMESPACE = f"pyc-{os.getpid()}"


@pytest.fixture(scope="module", autouse=True)
def no_engine_run_dirs_left() -> Iterator[None]:
    """The engines' default directories under /run that were not there before go again (their shims leave one per
    containerd namespace, too: ours goes in any case)."""
    from pycontainer_magics.lab.engine_chain import ENGINE_RUN_DIRS, engine_run_dirs_present, remove_engine_run_dirs
    before = engine_run_dirs_present()
    yield
    ours = f"/run/containerd/io.containerd.runtime.v2.task/{CTR_NAMESPACE}"
    remove_engine_run_dirs(before, own=(ours,))
    left = [d for d in (ours, *ENGINE_RUN_DIRS) if os.path.isdir(d) and d not in before]
    assert not left, f"left under /run: {left}"


def _wait_socket(path: Path, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    if not wait_for(lambda: path.exists() or proc.poll() is not None, timeout) or proc.poll() is not None:
        raise AssertionError(f"{proc.args[0]} did not start: {log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- containerd ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def containerd(work: Path, runtime_bin: str, image_tar: Path) -> Iterator[dict[str, Any]]:
    """containerd with binder/deploy/containerd-runtime.toml (the Kubernetes handler, BinaryName ours), its
    CRI plugin on, everything else private: root, state, sockets, CNI dirs."""
    _need("containerd", "ctr")
    d = work / "ctd"
    (d / "cni-bin").mkdir(parents=True)
    (d / "cni-conf").mkdir()
    snippet = (DEPLOY / "containerd-runtime.toml").read_text().replace("/usr/local/bin/pycontainer-runc", runtime_bin)
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    (d / "config.toml").write_text(snippet + f"""
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{d}/c.sock"
[ttrpc]
  address = "{d}/c.sock.ttrpc"
[{cri}]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
[{cri}.cni]
  bin_dir = "{d}/cni-bin"
  conf_dir = "{d}/cni-conf"
""")
    log = d / "containerd.log"
    proc = subprocess.Popen(["containerd", "--config", str(d / "config.toml")], stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT)
    try:
        _wait_socket(d / "c.sock", proc, log)
        ns = CTR_NAMESPACE

        def ctr(*argv: str, **kw: Any) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["ctr", "--address", str(d / "c.sock"), "-n", ns, *argv], capture_output=True,
                                  text=True, timeout=120, **kw)

        p = ctr("images", "import", str(image_tar))
        assert p.returncode == 0, p.stderr
        yield {"ctr": ctr, "dir": d, "log": log, "config": d / "config.toml"}
        for c in ctr("containers", "ls", "-q").stdout.split():
            ctr("tasks", "kill", "-s", "KILL", c)
            ctr("containers", "rm", c)
    finally:
        _stop(proc)


def test_containerd_takes_the_kubernetes_handler(containerd: dict[str, Any], runtime_bin: str) -> None:
    """The config snippet the RuntimeClass relies on parses in containerd: handler `pycontainer`, runc's shim,
    our binary; and the RuntimeClass names that handler."""
    dump = subprocess.run(["containerd", "--config", str(containerd["config"]), "config", "dump"],
                          capture_output=True, text=True, check=True).stdout
    cfg = tomllib.loads(dump)
    rt = cfg["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["pycontainer"]
    assert rt["runtime_type"] == "io.containerd.runc.v2" and rt["options"]["BinaryName"] == runtime_bin
    from pycontainer_magics.kube.validate import load_documents
    rc = load_documents((DEPLOY / "runtimeclass.yaml").read_text())[0]
    assert rc["kind"] == "RuntimeClass" and rc["handler"] == "pycontainer"


def test_ctr_run_with_our_runtime(containerd: dict[str, Any], image_tar: Path, runtime_bin: str) -> None:
    ctr, d = containerd["ctr"], containerd["dir"]
    p = ctr("run", "--rm", "--runc-binary", runtime_bin, "--runc-root", str(d / "runc-root"),
            "--cgroup", f"/{PARENT}/ctr-1", f"docker.io/{IMAGE}", "c1",
            "sh", "-c", "echo hello from ctr; grep memory /proc/self/cgroup; exit 3")
    assert p.returncode == 3, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "hello from ctr" and lines[1].endswith(f":memory:/{PARENT}/ctr-1")
    assert ctr("containers", "ls", "-q").stdout.split() == []
    assert not (d / "runc-root" / f"pyc-{os.getpid()}" / "c1").exists()  # our state, deleted by the shim


# --- dockerd ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dockerd(work: Path, runtime_bin: str, image_tar: Path) -> Iterator[Any]:
    """dockerd on its own data root, exec root and socket, its own containerd under the exec root, no
    iptables, no bridge, cgroupfs under our parent; runtimes `pyc` (ours) and runc (the comparison)."""
    _need("dockerd")
    cli = _docker_cli()
    d = work / "dkr"
    d.mkdir()
    log = d / "dockerd.log"
    proc = subprocess.Popen(
        ["dockerd", "--data-root", str(d / "data"), "--exec-root", str(d / "exec"), "--pidfile", str(d / "pid"),
         "-H", f"unix://{d}/d.sock", "--iptables=false", "--ip-masq=false", "--ip-forward=false", "--bridge=none",
         "--userland-proxy=false", "--exec-opt", "native.cgroupdriver=cgroupfs", "--cgroup-parent", f"/{PARENT}/docker",
         "--add-runtime", f"pyc={runtime_bin}", "--log-level", "warn"],
        stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    env = {**os.environ, "DOCKER_HOST": f"unix://{d}/d.sock", "DOCKER_CONFIG": str(d / "client")}

    def docker(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([cli, *argv], capture_output=True, text=True, timeout=timeout, env=env)

    try:
        _wait_socket(d / "d.sock", proc, log)
        assert wait_for(lambda: docker("version").returncode == 0, 30), log.read_text()[-2000:]
        p = docker("load", "-i", str(image_tar))
        assert p.returncode == 0, p.stderr
        yield docker
        docker("rm", "-f", *docker("ps", "-aq").stdout.split()) if docker("ps", "-aq").stdout.split() else None
    finally:
        _stop(proc)


def test_docker_run_exit_codes_output_and_cgroup(dockerd: Any) -> None:
    p = dockerd("run", "--rm", "--runtime", "pyc", "--network", "none", "-m", "64m", IMAGE,
                "sh", "-c", "echo hi from docker; grep memory /proc/self/cgroup; cat /sys/fs/cgroup/memory/"
                "memory.limit_in_bytes 2>/dev/null; exit 4")
    assert p.returncode == 4, p.stderr
    out = p.stdout.splitlines()
    assert out[0] == "hi from docker" and f":memory:/{PARENT}/docker/" in out[1]
    # a bad command: the runtime's own error reaches the user through the shim, as runc's does
    p = dockerd("run", "--rm", "--runtime", "pyc", "--network", "none", IMAGE, "no-such-cmd")
    assert p.returncode == 127 and 'exec: "no-such-cmd": executable file not found in $PATH' in p.stderr, p.stderr


def test_docker_oom_killed_logs_exec_stop_stats_top(dockerd: Any) -> None:
    p = dockerd("run", "--name", "oom", "--runtime", "pyc", "--network", "none", "-m", "32m", "--memory-swap", "32m",
                IMAGE, "sh", "-c", "x=a; while :; do x=$x$x; done")
    assert p.returncode == 137
    assert dockerd("inspect", "oom", "--format", "{{.State.OOMKilled}} {{.State.ExitCode}}").stdout.split() == \
        ["true", "137"]
    dockerd("rm", "oom")
    p = dockerd("run", "-d", "--name", "d1", "--runtime", "pyc", "--network", "none", "-m", "64m", IMAGE,
                "sh", "-c", "echo started; trap 'echo term; exit 0' TERM; while :; do busybox sleep 0.1; done")
    assert p.returncode == 0, p.stderr
    assert wait_for(lambda: dockerd("logs", "d1").stdout == "started\n", 30)
    p = dockerd("exec", "d1", "sh", "-c", "echo exec in $(hostname); exit 6")
    hostname = dockerd("inspect", "d1", "--format", "{{.Config.Hostname}}").stdout
    assert p.returncode == 6 and p.stdout == f"exec in {hostname}"
    assert dockerd("exec", "-t", "d1", "sh", "-c", "test -t 1 && echo tty").stdout.strip() == "tty"
    stats = dockerd("stats", "--no-stream", "--format", "{{.MemUsage}}|{{.PIDs}}", "d1").stdout.strip()
    assert stats.split("|")[0].endswith("/ 64MiB") and int(stats.split("|")[1]) >= 1, stats
    top = dockerd("top", "d1").stdout.splitlines()
    assert top[0].split()[:2] == ["UID", "PID"] and any("trap" in line for line in top[1:])
    assert dockerd("pause", "d1").returncode == 0
    assert dockerd("inspect", "d1", "--format", "{{.State.Status}}").stdout.strip() == "paused"
    assert dockerd("unpause", "d1").returncode == 0
    assert dockerd("update", "--memory", "48m", "--memory-swap", "48m", "d1").returncode == 0
    assert dockerd("stats", "--no-stream", "--format", "{{.MemUsage}}", "d1").stdout.strip().endswith("/ 48MiB")
    assert dockerd("stop", "-t", "10", "d1").returncode == 0  # TERM: trapped, exit 0
    assert dockerd("logs", "d1").stdout == "started\nterm\n"
    assert dockerd("inspect", "d1", "--format", "{{.State.ExitCode}}").stdout.strip() == "0"
    dockerd("rm", "d1")
    # TERM ignored (PID 1 without a handler): after the timeout, KILL
    dockerd("run", "-d", "--name", "d2", "--runtime", "pyc", "--network", "none", IMAGE, "busybox", "sleep", "100")
    t0 = time.monotonic()
    assert dockerd("stop", "-t", "1", "d2").returncode == 0
    assert time.monotonic() - t0 >= 1
    assert dockerd("inspect", "d2", "--format", "{{.State.ExitCode}}").stdout.strip() == "137"
    dockerd("rm", "d2")


def test_docker_run_with_a_terminal(dockerd: Any) -> None:
    """`docker run -t`: the pty master reaches the shim over --console-socket."""
    p = dockerd("run", "--rm", "-t", "--runtime", "pyc", "--network", "none", IMAGE,
                "sh", "-c", "test -t 0 && test -t 1 && echo is-a-tty; readlink /proc/self/fd/1")
    assert p.returncode == 0, p.stderr
    assert p.stdout.replace("\r", "").splitlines() == ["is-a-tty", "/dev/pts/0"]


# --- podman -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def podman(work: Path, runtime_bin: str, image_tar: Path) -> Iterator[Any]:
    _need("podman", "conmon")
    d = work / "pdm"
    base = ["podman", "--root", str(d / "root"), "--runroot", str(d / "runroot"), "--tmpdir", str(d / "tmp"),
            "--cgroup-manager", "cgroupfs", "--events-backend", "file"]
    # conmon stays in our cgroup (no libpod_parent), the containers under our parent; podman's own ulimits
    # default is above what this machine allows (DESIGN.md)
    opts = ["--network", "none", "--cgroups", "no-conmon", "--cgroup-parent", f"/{PARENT}/podman",
            "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]

    d.mkdir(exist_ok=True)

    def podman(*argv: str, runtime: str = runtime_bin, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = [*base, "--runtime", runtime, *argv]
        if argv[0] == "run":
            cmd = [*base, "--runtime", runtime, "run", *opts, *argv[1:]]
        # in its own directory: conmon writes a file named `oom` into its working directory when a container
        # is OOM-killed (it landed in the checkout, and was committed by accident three times)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, cwd=d)

    p = podman("load", "-i", str(image_tar))
    assert p.returncode == 0, p.stderr
    yield podman
    ids = podman("ps", "-aq").stdout.split()
    if ids:
        podman("rm", "-f", *ids)
    subprocess.run([*base, "system", "reset", "--force"], capture_output=True, timeout=120, cwd=d)


def test_podman_run_logs_exec_stop(podman: Any) -> None:
    p = podman("run", "--rm", IMAGE, "sh", "-c", "echo hi from podman; exit 5")
    assert p.returncode == 5 and p.stdout == "hi from podman\n", p.stderr
    p = podman("run", "-d", "--name", "p1", IMAGE, "sh", "-c",
               "echo started; trap 'echo term; exit 0' TERM; while :; do busybox sleep 0.1; done")
    assert p.returncode == 0, p.stderr
    assert wait_for(lambda: podman("logs", "p1").stdout == "started\n", 30)
    p = podman("exec", "p1", "sh", "-c", "echo exec; exit 6")
    assert p.returncode == 6 and p.stdout == "exec\n"
    assert podman("exec", "-t", "p1", "sh", "-c", "test -t 1 && echo tty").stdout.strip() == "tty"
    assert podman("stop", "-t", "10", "p1").returncode == 0
    assert podman("logs", "p1").stdout == "started\nterm\n"
    assert podman("inspect", "p1", "--format", "{{.State.ExitCode}}").stdout.strip() == "0"
    podman("rm", "p1")
    p = podman("run", "--rm", "-t", IMAGE, "sh", "-c", "test -t 1 && echo run-tty")
    assert p.stdout.replace("\r", "").strip() == "run-tty", p.stderr


def test_podman_oom_as_with_runc(podman: Any) -> None:
    """The exit status of an OOM kill; OOMKilled as conmon reports it with runc on this host (conmon
    watches the memory cgroup itself: same answer for both runtimes)."""
    seen = {}
    for rt in ("runc", None):
        kw = {"runtime": rt} if rt else {}
        p = podman("run", "--name", "poom", "-m", "32m", "--memory-swap", "32m", IMAGE, "sh", "-c",
                   "x=a; while :; do x=$x$x; done", **kw)
        assert p.returncode == 137, p.stderr
        assert not os.path.exists("oom")  # conmon's OOM marker stays in podman's own directory
        seen[rt or "pyc"] = podman("inspect", "poom", "--format", "{{.State.OOMKilled}}", **kw).stdout.strip()
        podman("rm", "poom", **kw)
    assert seen["pyc"] == seen["runc"], seen
