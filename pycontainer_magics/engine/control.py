"""Starting and stopping the daemon from Python (`%container serve`, tests, the bench), and the daemon's
containers as the magics and the CLI handle them: one state, whichever front end made the container.

    client = start_background()      # the running daemon, or a new one in its own session
    c = find("web")                  # a container of the daemon's records (by name or id prefix), or None
    c.logs(); c.stop(); c.update(memory=128 * 2**20); c.top()
    stop()                           # SIGTERM: the daemon stops its containers (unless --live-restore)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import OSFailure
from ..paths import run_dir
from ..workloads import daemon_store as store
from .client import Client, EngineError, connect, default_socket

START_TIMEOUT = 30.0


class EngineUnavailable(OSFailure):
    """The engine daemon is not running or does not answer: one line."""


def pid_file() -> str:
    return os.path.join(run_dir(), "engine.pid")


def daemon_pid() -> int | None:
    try:
        with open(pid_file()) as f:
            pid = int(f.read().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def start_background(live_restore: bool = False, timeout: float = START_TIMEOUT) -> Client:
    """The daemon on the default socket: the one running, or a new one (own session, logs to its file)."""
    c = connect()
    if c is not None:
        return c
    args = [sys.executable, "-m", "pycontainer_magics", "serve"] + (["--live-restore"] if live_restore else [])
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True, cwd="/")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
            raise EngineUnavailable(f"the daemon exited: {err.splitlines()[-1] if err else proc.returncode}")
        c = connect()
        if c is not None:
            if proc.stderr is not None:
                proc.stderr.close()
            return c
        time.sleep(0.05)
    proc.kill()
    raise EngineUnavailable(f"the daemon did not answer on {default_socket()} within {timeout:g} s")


def stop(timeout: float = 60.0) -> bool:
    """SIGTERM the daemon and wait for it to exit; False if none was running."""
    pid = daemon_pid()
    if pid is None:
        return False
    start = store.start_time(pid)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)  # ours (started by start_background): reap it
        except ChildProcessError:
            pass
        if not store.alive(pid, start):  # gone, or a zombie
            return True
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    return True


def client() -> Client:
    c = connect()
    if c is None:
        raise EngineUnavailable("the engine daemon is not running: start it with %container serve "
                                "(or `pycontainer serve`)")
    return c


# -- the daemon's containers, for the magics and the CLI ---------------------------------------------

@dataclass
class Outcome:
    """How a daemon container ended, in the fields the magics' expectations read."""

    exit_code: int | None
    oom_killed: bool = False
    signal: int | None = None
    stderr: str = ""
    memory_limit: int | None = None
    error: str | None = None


@dataclass
class RecordSpec:
    """The few fields of a ContainerSpec that `%container ps` shows, from a daemon record."""

    command: tuple[str, ...]
    image: str
    network: str
    publish: tuple[Any, ...] = ()
    python_code: str | None = None
    rootfs: str | None = None
    pod: str | None = None


class DaemonContainer:
    """A container of the daemon's, as the magics handle a container (name, status, logs, exec, stop ...).
    What it shows comes from the records on disk; what it does goes through the daemon's API."""

    def __init__(self, cid: str) -> None:
        self.id = cid
        self.reload()

    def reload(self) -> None:
        self.record = store.load_config(self.id)
        self.state = store.load_state(self.id)

    @property
    def name(self) -> str:
        return str(self.record["Name"]).lstrip("/")

    label = name

    @property
    def status(self) -> str:
        return str(self.state.get("Status") or "created")

    @property
    def running(self) -> bool:
        return self.status in ("running", "paused")

    @property
    def stop_requested(self) -> bool:
        """Ended by a stop or kill a client asked for (dockerd's manual stop)."""
        return bool(self.state.get("ManuallyStopped"))

    @property
    def pid1(self) -> int | None:
        return int(self.state["Pid"]) if self.running and self.state.get("Pid") else None

    @property
    def started_at(self) -> float:
        from ..workloads.json_log import parse_time

        t = self.state.get("StartedAt") or self.record.get("Created") or ""
        try:
            return parse_time(t) if not t.startswith("0001") else parse_time(self.record["Created"])
        except ValueError:
            return 0.0

    @property
    def spec(self) -> RecordSpec:
        cfg, hc = self.record["Config"], self.record["HostConfig"]
        argv = [self.record.get("Path") or "", *(self.record.get("Args") or [])]
        mode = hc.get("NetworkMode") or "default"
        return RecordSpec(tuple(a for a in argv if a), str(cfg.get("Image") or self.record["Image"]),
                          "bridge" if mode == "default" else mode)

    @property
    def engine(self) -> str:
        return "daemon"

    # -- what can be done, through the API ------------------------------------------------------
    def logs(self, follow: bool = False) -> Iterator[tuple[str, bytes]]:
        return client().logs(self.id, follow=follow)

    def exec(self, command: list[str], on_output: Callable[[str, str], None] | None = None) -> Outcome:
        c = client()
        frames, eid = c.exec(self.id, list(command))
        err = []
        for stream, data in frames:
            text = data.decode(errors="replace")
            if stream == "stderr":
                err.append(text)
            if on_output is not None:
                on_output(stream, text)
        return Outcome(c.exec_exit_code(eid), stderr="".join(err))

    def stop(self, timeout: float = 10.0) -> Outcome:
        client().post(f"/containers/{self.id}/stop", t=int(timeout))
        return self.wait()

    def kill(self) -> None:
        client().post(f"/containers/{self.id}/kill", signal="KILL")

    def wait(self, timeout: float | None = None) -> Outcome:
        r = client().wait(self.id)
        self.reload()
        err = (r.get("Error") or {}).get("Message") if r.get("Error") else None
        return Outcome(int(r.get("StatusCode", 0)), bool(self.state.get("OOMKilled")),
                       memory_limit=self.record["HostConfig"].get("Memory") or None, error=err)

    def remove(self, force: bool = False) -> None:
        client().delete(f"/containers/{self.id}", force=force)

    def stats(self) -> dict[str, Any]:
        if not self.running:
            return {}
        s = client().get(f"/containers/{self.id}/stats", stream=0)
        mem = s.get("memory_stats") or {}
        return {"memory": mem.get("usage", 0), "memory_limit": mem.get("limit"),
                "cpu_s": (s.get("cpu_stats") or {}).get("cpu_usage", {}).get("total_usage", 0) / 1e9,
                "pids": (s.get("pids_stats") or {}).get("current", 0)}

    def pause(self) -> None:
        client().post(f"/containers/{self.id}/pause")

    def unpause(self) -> None:
        client().post(f"/containers/{self.id}/unpause")

    def update(self, **limits: Any) -> None:
        body = {"Memory": limits.get("memory"), "MemorySwap": limits.get("memory_swap"),
                "NanoCpus": int(limits["cpus"] * 1e9) if limits.get("cpus") else None,
                "CpuShares": limits.get("cpu_shares"), "CpusetCpus": limits.get("cpuset_cpus"),
                "PidsLimit": limits.get("pids_limit")}
        client().post(f"/containers/{self.id}/update", {k: v for k, v in body.items() if v is not None})

    def top(self, ps_args: str = "-ef") -> dict[str, Any]:
        r: dict[str, Any] = client().get(f"/containers/{self.id}/top", ps_args=ps_args)
        return r

    def rename(self, new: str) -> None:
        client().post(f"/containers/{self.id}/rename", name=new)

    def commit(self, ref: str | None, changes: tuple[str, ...] | list[str] = ()) -> str:
        """The writable layer as a new image; `changes`: Dockerfile instructions for its config (--change)."""
        repo, _, tag = (ref or "").rpartition(":") if ref and ":" in ref.rsplit("/", 1)[-1] else (ref or "", "", "")
        return str(client().post("/commit", container=self.id, repo=repo or None, tag=tag or None,
                                 changes=list(changes) or None)["Id"])

    def diff(self) -> list[tuple[str, str]]:
        kinds = {0: "C", 1: "A", 2: "D"}
        return [(kinds[x["Kind"]], x["Path"]) for x in client().get(f"/containers/{self.id}/changes") or []]

    def copy_out(self, path: str, dest: str) -> None:
        """`docker cp NAME:PATH DEST`: PATH's tar, unpacked under DEST (a directory) as its last component."""
        import io

        from ..images.unpack import unpack_layer

        body = client().body("GET", f"/containers/{self.id}/archive", {"path": path})
        # what comes out of a container is hostile: unpacked through directory fds, no symlink followed
        unpack_layer(io.BytesIO(body), dest, mode="archive", what=f"{self.name}:{path}")

    def copy_in(self, src: str, path: str) -> None:
        """`docker cp SRC NAME:DIR`: SRC (file or directory) into the container's directory DIR."""
        import io
        import tarfile

        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            tf.add(src, arcname=os.path.basename(src.rstrip("/")))
        client().request("PUT", f"/containers/{self.id}/archive", params={"path": path}, raw=buf.getvalue())

    def export(self, dest: str) -> int:
        body = client().body("GET", f"/containers/{self.id}/export")
        with open(dest, "wb") as f:
            f.write(body)
        return len(body)

    def __repr__(self) -> str:
        return f"<DaemonContainer {self.name} {self.status}>"


def find(ref: str) -> DaemonContainer | None:
    """A daemon container by name, full id or unique id prefix (from its records: no daemon needed)."""
    ids = store.ids()
    for cid in ids:
        try:
            if ref == cid or store.load_config(cid)["Name"].lstrip("/") == ref.lstrip("/"):
                return DaemonContainer(cid)
        except (OSError, ValueError):
            continue
    hits = [cid for cid in ids if len(ref) >= 4 and cid.startswith(ref)]
    return DaemonContainer(hits[0]) if len(hits) == 1 else None


def listing(all: bool = True) -> list[DaemonContainer]:  # noqa: A002 - docker ps --all
    out = []
    for cid in store.ids():
        try:
            c = DaemonContainer(cid)
        except (OSError, ValueError):
            continue
        if all or c.running:
            out.append(c)
    return out


__all__ = ["DaemonContainer", "EngineError", "EngineUnavailable", "find", "listing", "start_background", "stop"]
