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
import time
from collections.abc import Callable
from typing import Any, NoReturn

from ..errors import OSFailure
from ..linux import lifelong
from ..runtime.channel import recv_ctl, send_ctl

REFILL_AFTER = 0.1  # s: a container still running by then has started; its spare is made beside it
SETTLE = 0.02  # s: after a container's end, its own teardown and its client's exit (measured: 2-3 ms less a run)


class LauncherError(OSFailure):
    """The daemon's launcher could not be started or stopped answering."""


class Launcher:
    """The daemon's handle on its launcher (started on first use, restarted if it died), and on the spare
    supervisor it forked last: a start goes straight to the spare (no hop through the launcher), and the
    launcher forks the next one in the background."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._spare: Spare | None = None
        self._spare_lock = threading.Lock()
        self._refills: list[threading.Thread] = []
        self._quiet: dict[str, threading.Event] = {}  # per container started: set once it has ended (ended())
        self._stopping = False
        self.spares = not os.environ.get("PYCONTAINER_NO_SPARE")

    def _start(self) -> None:
        self._proc, self._sock = lifelong.spawn("pycontainer_magics.workloads.launcher", stderr=None)
        ours = self._sock
        send_ctl(ours, {"ping": True})  # answered once its imports are done
        reply, _ = recv_ctl(ours)
        if reply is None:
            raise LauncherError(None, "the launcher did not start")

    def start(self) -> None:
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._start()
        self.refill(None)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _call(self, msg: dict[str, Any], fds: list[int]) -> tuple[dict[str, Any], list[int]]:
        with self._lock:
            for _attempt in (1, 2):
                if self._proc is None or self._proc.poll() is not None:
                    self._start()
                assert self._sock is not None
                try:
                    send_ctl(self._sock, msg, fds)
                    reply, got = recv_ctl(self._sock)
                except OSError:
                    reply, got = None, []
                if reply is not None:
                    if "error" in reply:
                        raise LauncherError(None, reply["error"])
                    return reply, got
                self._stop()
            raise LauncherError(None, "the launcher does not answer")

    def launch(self, cid: str, spec: Any, report_w: int, exit_w: int, io: dict[str, Any] | None = None,
               channel: int | None = None) -> int:
        """Start the supervisor of container `cid` (the spare, or one forked now); returns its pid. `io` and
        `channel`: its stdin and terminal (supervisor.supervise)."""
        order = {"start": (cid, spec, io)}
        fds = [report_w, exit_w] + ([channel] if channel is not None else [])
        with self._spare_lock:
            spare, self._spare = self._spare, None
        pid = spare.take(order, fds) if spare is not None else None
        if pid is None:
            reply, _ = self._call(order, fds)
            pid = int(reply["forked"])
        if self.spares and not self._stopping:  # the next one, ready for a container like this one
            quiet = threading.Event()
            t = threading.Thread(target=self._refill_when_quiet, args=(cid, _like(spec, io), quiet), daemon=True)
            with self._spare_lock:
                self._refills = [r for r in self._refills if r.is_alive()] + [t]
                self._quiet[cid] = quiet
            t.start()
        return pid

    def ended(self, cid: str) -> None:
        """Container `cid` has ended and its client has its answer: the spare for the next one may be made."""
        with self._spare_lock:
            quiet = self._quiet.pop(cid, None)
        if quiet is not None:
            quiet.set()

    def _refill_when_quiet(self, cid: str, like: Any | None, quiet: threading.Event) -> None:
        # Not while this container starts or ends: making a spare (the launcher's fork, a cgroup, a holder's
        # namespaces and mounts) takes kernel locks and a core from it even at nice 19 — made at once, it cost
        # `pycontainer run` a third of its time. After the container's end, or once it has run a while.
        if quiet.wait(REFILL_AFTER):
            time.sleep(SETTLE)
        with self._spare_lock:
            self._quiet.pop(cid, None)
        self.refill(like)

    def refill(self, like: Any | None) -> None:
        """Have the launcher fork a spare supervisor (prepared for containers like `like`) and keep it."""
        if not self.spares or self._stopping:
            return
        try:
            reply, fds = self._call({"spare": like}, [])
        except (LauncherError, OSError):
            return
        if not fds:
            return
        new = Spare(int(reply["spare"]), socket.socket(fileno=fds[0]))
        old: Spare | None = new  # the daemon is stopping: not kept
        with self._spare_lock:
            if not self._stopping:
                old, self._spare = self._spare, new
        if old is not None:
            old.drop()

    def _stop(self) -> None:
        proc, sock, self._proc, self._sock = self._proc, self._sock, None, None
        lifelong.end(proc, sock, grace=10)

    def stop(self) -> None:
        with self._spare_lock:
            self._stopping = True
            refills = list(self._refills)
            for quiet in self._quiet.values():
                quiet.set()
        for t in refills:
            t.join(30)
        with self._spare_lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.drop()  # it removes what it prepared (cgroup, holder, layer) before we return
        with self._lock:
            self._stop()


def _detached(body: Callable[[], NoReturn]) -> int:
    """Double fork: the process belongs to no one (init reaps it), so it outlives us and the daemon."""
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
                body()
            os.write(w, str(pid).encode())
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(child, 0)
    data = os.read(r, 32)
    os.close(r)
    return int(data)


def _fork_supervisor(cid: str, spec: Any, report_w: int, exit_w: int, io: dict[str, Any] | None = None,
                     channel: int = -1) -> int:
    from .supervisor import supervise

    return _detached(lambda: supervise(cid, spec, report_w, exit_w, io, channel))


class Spare:
    """A supervisor forked before its container exists (supervisor.spare): the fork and, for a container like
    the last one, its cgroup, namespaces, root filesystem and parked PID 1 leave the start's path. The daemon
    holds `sock`, its end of the order channel."""

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self.sock = sock

    def take(self, order: dict[str, Any], fds: list[int]) -> int | None:
        """Hand it the order; its pid, or None if it is gone (then fork one the usual way)."""
        try:
            send_ctl(self.sock, order, fds)
            reply, _ = recv_ctl(self.sock)
        except OSError:
            reply = None
        finally:
            self.sock.close()
        return int(reply["taken"]) if reply is not None and "taken" in reply else None

    def drop(self) -> None:
        """It removes what it prepared and exits; returns once it is done (its end of the socket closes)."""
        try:
            send_ctl(self.sock, {"drop": True})
            self.sock.settimeout(10)
            while recv_ctl(self.sock)[0] is not None:
                pass
        except OSError:
            pass
        finally:
            self.sock.close()


def _fork_spare(like: Any | None) -> tuple[int, socket.socket]:
    from .supervisor import spare

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        pid = _detached(lambda: spare(theirs.fileno(), like))
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return pid, ours


def _like(spec: Any, io: dict[str, Any] | None) -> Any | None:
    """What the next container will probably be: one like this (`pycontainer run` again, a benchmark, a
    lecture's loop); not one with a terminal or stdin (made at its start), nor one with a volume or a bind
    (preparing must not re-create a volume `docker volume rm` removed: the pool's own rule)."""
    if io or spec.python_code is not None or spec.network not in ("none", "host") or spec.pod is not None \
            or spec.mounts:
        return None
    return spec


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
    try:  # (the network package loads pyroute2 on its first request: here, once, not in every supervisor)
        importlib.import_module("pyroute2")
    except ImportError:  # pragma: no cover
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
            if "spare" in msg:  # the daemon keeps its end and sends the next order straight to it
                pid, spare_sock = _fork_spare(msg["spare"])
                try:
                    send_ctl(sock, {"spare": pid}, [spare_sock.fileno()])
                finally:
                    spare_sock.close()
                continue
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
