"""A small helper process that forks the setup process of command containers.

fork() costs grow with the forking process's memory: a notebook kernel holding a gigabyte pays tens of
milliseconds per fork and as much again when the child's copy of it is torn down. A shell cell needs
none of the kernel's memory, so its container is forked from this helper instead, a fresh interpreter
that imports only the launch code. The kernel keeps everything else (the pipes, the id maps, the
relay); it passes the child's ends of the pipes over a Unix socket with the plan.

    python -m pycontainer_magics.runtime.zygote FD
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading

from ..linux.libc import PR_SET_PDEATHSIG, prctl
from .launch import Launch, setup_process

MAX_MESSAGE = 1 << 20


class Zygote:
    """The caller's handle on the helper; started on first use, restarted if it died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def _start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "pycontainer_magics.runtime.zygote", str(theirs.fileno())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, cwd="/", start_new_session=True)
        finally:
            theirs.close()
        self._sock = ours

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        with self._lock:
            if not self.alive():
                self._start()

    def spawn(self, launch: Launch, fds: tuple[int, ...]) -> int:
        """Fork a setup process running `launch` with `fds` as its pipes; returns its pid."""
        data = pickle.dumps(launch, protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            for attempt in (1, 2):
                if not self.alive():
                    self._start()
                assert self._sock is not None
                try:
                    socket.send_fds(self._sock, [data], list(fds))
                    reply = self._sock.recv(64)
                except OSError:
                    reply = b""
                if reply:
                    return int(reply)
                self.stop()  # died under us: start a fresh one and try once more
            raise OSError("the launch helper did not answer")

    def stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            self._proc = None


_zygote: Zygote | None = None


def zygote() -> Zygote:
    global _zygote
    if _zygote is None:
        _zygote = Zygote()
    return _zygote


def _reap(_signum: int, _frame: object) -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main(fd: int) -> None:
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # go with the kernel that started us
    sock = socket.socket(fileno=fd)
    signal.signal(signal.SIGCHLD, _reap)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.freeze()
    while True:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, 8)
        except OSError:
            break
        if not msg:
            break  # the caller closed its end
        launch: Launch = pickle.loads(msg)
        pid = os.fork()
        if pid == 0:
            sock.close()
            setup_process(launch, tuple(fds))  # never returns
        for f in fds:
            os.close(f)
        sock.send(str(pid).encode())


if __name__ == "__main__":
    main(int(sys.argv[1]))
