"""A `pycontainer serve` daemon for tests, on a private state and run directory, with a busybox image in
its store; the docker CLI and docker-py pointed at it."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

IMAGE = "lab/busybox:1"


def docker_clis() -> list[str]:
    """The docker CLIs on this machine: Debian's (20.10, API 1.41; CI installs it) and a newer one if any."""
    out = []
    for p in ("/usr/bin/docker", "/usr/local/bin/docker", shutil.which("docker")):
        if p and os.path.exists(p) and os.path.realpath(p) not in (os.path.realpath(x) for x in out):
            out.append(p)
    return out


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 30) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.path)
        self.sock = s


@dataclass
class Daemon:
    root: str
    proc: subprocess.Popen[bytes]
    env: dict[str, str]  # PYCONTAINER_* and DOCKER_HOST for clients and for in-process checks

    @property
    def socket(self) -> str:
        return os.path.join(self.env["PYCONTAINER_RUN_DIR"], "docker.sock")

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                raw: bytes | None = None) -> tuple[int, Any, dict[str, str]]:
        conn = UnixHTTPConnection(self.socket)
        try:
            data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
            hdrs = {"Content-Type": "application/json", **(headers or {})}
            conn.request(method, path, body=data, headers=hdrs)
            r = conn.getresponse()
            payload = r.read()
            try:
                parsed: Any = json.loads(payload) if payload else None
            except ValueError:
                parsed = payload
            return r.status, parsed, {k.lower(): v for k, v in r.getheaders()}
        finally:
            conn.close()

    def docker(self, *args: str, cli: str | None = None, check: bool = False, timeout: float = 60,
               input: bytes | None = None) -> subprocess.CompletedProcess[str]:
        exe = cli or docker_clis()[0]
        r = subprocess.run([exe, *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                           input=input.decode() if input is not None else None)
        if check and r.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} -> {r.returncode}: {r.stderr}")
        return r

    def records(self) -> list[dict[str, Any]]:
        base = os.path.join(self.env["PYCONTAINER_STATE_DIR"], "engine", "containers")
        out = []
        for d in sorted(os.listdir(base)) if os.path.isdir(base) else []:
            with contextlib.suppress(OSError, ValueError), open(os.path.join(base, d, "state.json")) as f:
                out.append({"Id": d, **json.load(f)})
        return out

    def supervisors(self) -> list[int]:
        return [r["Supervisor"] for r in self.records() if r.get("Supervisor")]


def start_daemon(root: str, *extra: str) -> Daemon:
    env = {**os.environ, "PYCONTAINER_STATE_DIR": os.path.join(root, "state"),
           "PYCONTAINER_RUN_DIR": os.path.join(root, "run"), "DOCKER_CONFIG": os.path.join(root, "dockercfg"),
           "DOCKER_BUILDKIT": "0"}
    env["DOCKER_HOST"] = "unix://" + os.path.join(env["PYCONTAINER_RUN_DIR"], "docker.sock")
    env.pop("DOCKER_CONTEXT", None)
    os.makedirs(env["DOCKER_CONFIG"], exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "pycontainer_magics", "serve", *extra], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    d = Daemon(root, proc, env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the daemon exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            if d.request("GET", "/_ping")[0] == 200:
                return d
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the daemon did not answer in 30 s")


def stop_daemon(d: Daemon, sig: int = signal.SIGTERM) -> None:
    if d.proc.poll() is None:
        d.proc.send_signal(sig)
        try:
            d.proc.wait(60)
        except subprocess.TimeoutExpired:
            d.proc.kill()
            d.proc.wait()
    if d.proc.stderr is not None:
        d.proc.stderr.close()


def make_image(state_dir: str, ref: str = IMAGE) -> str:
    """A busybox image (the applets of tests/helpers.py as links) in the daemon's store."""
    import tempfile

    sys.path.insert(0, os.path.dirname(__file__))
    from helpers import make_busybox_rootfs

    from pycontainer_magics.images import ImageConfig, Store

    with tempfile.TemporaryDirectory() as tmp:
        rootfs = make_busybox_rootfs(os.path.join(tmp, "rootfs"))
        img = Store(os.path.join(state_dir, "images")).create_image(ref, [rootfs], ImageConfig(
            cmd=("sh",), env=("PATH=/usr/sbin:/usr/bin:/sbin:/bin",)), history=["ADD busybox /"])
    return str(img.id)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def prune_state(d: Daemon) -> None:
    """What the daemon's containers left on the host for their state dir (the default bridge) goes."""
    subprocess.run([sys.executable, "-m", "pycontainer_magics", "prune"], env=d.env, capture_output=True,
                   timeout=120)


def our_links(d: Daemon) -> list[str]:
    old = os.environ.get("PYCONTAINER_STATE_DIR")
    os.environ["PYCONTAINER_STATE_DIR"] = d.env["PYCONTAINER_STATE_DIR"]
    try:
        from pycontainer_magics.network import networks
        return [name for name, _ in networks._our_host_links()]
    finally:
        if old is None:
            del os.environ["PYCONTAINER_STATE_DIR"]
        else:
            os.environ["PYCONTAINER_STATE_DIR"] = old


@contextlib.contextmanager
def daemon(root: str, *extra: str) -> Iterator[Daemon]:
    if os.geteuid() != 0:
        pytest.skip("the daemon needs root")
    if not docker_clis():
        pytest.skip("no docker CLI installed (apt-get install docker.io)")
    make_image(os.path.join(root, "state"))
    d = start_daemon(root, *extra)
    try:
        yield d
    finally:
        stop_daemon(d)
        kill_leftovers(d)


def kill_leftovers(d: Daemon) -> None:
    """A failed test must not leave a container running: SIGKILL each recorded PID 1 still alive (its
    supervisor then records the exit and removes its cgroup)."""
    for r in d.records():
        pid, sup = r.get("Pid"), r.get("Supervisor")
        if r.get("Status") in ("running", "paused") and sup and alive(sup) and pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while alive(sup) and time.monotonic() < deadline:
                time.sleep(0.05)
