"""The daemon's warm launcher: a small single-threaded process, started once, with the runtime already
imported, that forks each container's supervisor (supervisor.py).

The daemon is threaded (its event loop hands blocking work to threads), and a supervisor goes on running
Python after fork: forking it from the daemon could inherit a lock some other thread held. Forking from
this process is safe, and cheap (it is small), and the imports are paid once, not per container.

    python -m pycontainer_magics.workloads.launcher FD

Protocol (channel.py control messages on a SOCK_SEQPACKET socket): {"start": (cid, spec)} with two fds,
the write ends of the daemon's report and exit pipes; the reply {"forked": pid} comes once the supervisor
exists. The supervisor writes its report (JSON: ok and pid, or error and status) to the first, and closes
the second once the container's end is recorded.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import subprocess
import sys
import threading
from typing import Any

from ..errors import OSFailure
from ..runtime.channel import recv_ctl, send_ctl


class LauncherError(OSFailure):
    """The daemon's launcher could not be started or stopped answering."""


class Launcher:
    """The daemon's handle on its launcher (started on first use, restarted if it died)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def _start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "pycontainer_magics.workloads.launcher", str(theirs.fileno())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=None, cwd="/", start_new_session=True)
        finally:
            theirs.close()
        self._sock = ours
        send_ctl(ours, {"ping": True})  # answered once its imports are done
        reply, _ = recv_ctl(ours)
        if reply is None:
            raise LauncherError(None, "the launcher did not start")

    def start(self) -> None:
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._start()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def launch(self, cid: str, spec: Any, report_w: int, exit_w: int, io: dict[str, Any] | None = None,
               channel: int | None = None) -> int:
        """Fork the supervisor of container `cid`; returns its pid. `io` and `channel`: its stdin and terminal
        (supervisor.supervise)."""
        with self._lock:
            for _attempt in (1, 2):
                if self._proc is None or self._proc.poll() is not None:
                    self._start()
                assert self._sock is not None
                try:
                    send_ctl(self._sock, {"start": (cid, spec, io)},
                             [report_w, exit_w] + ([channel] if channel is not None else []))
                    reply, _ = recv_ctl(self._sock)
                except OSError:
                    reply = None
                if reply is not None:
                    if "error" in reply:
                        raise LauncherError(None, reply["error"])
                    return int(reply["forked"])
                self._stop()
            raise LauncherError(None, "the launcher does not answer")

    def _stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            self._proc = None

    def stop(self) -> None:
        with self._lock:
            self._stop()


def _fork_supervisor(cid: str, spec: Any, report_w: int, exit_w: int, io: dict[str, Any] | None = None,
                     channel: int = -1) -> int:
    """Double fork: the supervisor belongs to no one (init reaps it), so it outlives us and the daemon."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(r)
            os.setsid()
            pid = os.fork()
            if pid == 0:
                os.close(w)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                from .supervisor import supervise
                supervise(cid, spec, report_w, exit_w, io, channel)
            os.write(w, str(pid).encode())
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(child, 0)
    data = os.read(r, 32)
    os.close(r)
    return int(data)


def _warm_up() -> None:
    """What every supervisor needs, done once here and inherited by each fork: the runtime, the image
    store and the network layer imported, the cgroup hierarchy opened, Docker's default seccomp profile
    compiled."""
    import importlib

    for name in ("runtime.run", "runtime.image_source", "runtime.networking", "images", "images.store",
                 "network", "workloads.supervisor", "workloads.json_log", "workloads.container_io", "linux.pty"):
        try:
            importlib.import_module(f"pycontainer_magics.{name}")
        except ImportError:  # pragma: no cover - an optional part missing: the supervisor imports it itself
            pass
    from ..runtime.run import hierarchy, seccomp_filter
    from ..runtime.spec import ContainerSpec

    hierarchy()
    try:
        seccomp_filter(ContainerSpec(command=("true",)))
    except OSError:
        pass


def main(fd: int) -> None:
    from ..linux.libc import PR_SET_PDEATHSIG, prctl

    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # go with the daemon
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=fd)
    _warm_up()
    gc.freeze()
    while True:
        try:
            msg, fds = recv_ctl(sock)
        except OSError:
            break
        if msg is None:
            break
        if "ping" in msg:
            send_ctl(sock, {"pong": True})
            continue
        try:
            cid, spec, io = msg["start"]
            pid = _fork_supervisor(cid, spec, fds[0], fds[1], io, fds[2] if len(fds) > 2 else -1)
            send_ctl(sock, {"forked": pid})
        except Exception as e:  # noqa: BLE001 - answered, the launcher goes on
            send_ctl(sock, {"error": f"{type(e).__name__}: {e}"})
        finally:
            for f in fds:
                os.close(f)


if __name__ == "__main__":
    main(int(sys.argv[1]))
