"""The launch helper: a small process that forks namespace holders (holder.py), ahead of time.

fork() costs grow with the forking process's memory: a notebook kernel holding a gigabyte pays tens of
milliseconds per fork and as much again when the child's copy is torn down. A holder needs none of the
kernel's memory, so it is forked from this helper, a fresh interpreter that imports only the launch
code; the helper also writes the holder's id maps. The caller gets back the holder's pid and control
socket, and keeps everything else (the pipes, the relay, PID 1 of a Python cell).

    python -m pycontainer_magics.runtime.zygote FD
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import subprocess
import sys
import threading

from ..errors import OSFailure
from ..linux import lifelong
from ..linux.libc import PR_SET_PDEATHSIG, prctl
from .channel import recv_ctl, send_ctl
from .holder import HolderPlan, SetupFailed, premount, prepare_holder, resize_writable_layer
from .launch import failure
from .rootfs import RootfsPlan

Premount = tuple[str, RootfsPlan, str | None]  # (where, the operations, the root to pivot into: holder.premount)


class HelperUnavailable(OSFailure):
    """The launch helper could not be started or stopped answering."""


class Zygote:
    """The caller's handle on the helper; started on first use, restarted if it died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def _start(self) -> None:
        self._proc, self._sock = lifelong.spawn("pycontainer_magics.runtime.zygote")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        with self._lock:
            if not self.alive():
                self._start()

    def prepare(self, plan: HolderPlan) -> tuple[int, socket.socket]:
        """A ready holder for `plan`: (pid, control socket). Raises SetupFailed or HelperUnavailable."""
        pid, sock, _, _ = self.prepare_premounted(plan, None)
        return pid, sock

    def prepare_premounted(self, plan: HolderPlan,
                           premount: Premount | None) -> tuple[int, socket.socket, bool, int | None]:
        """prepare(), and with `premount` some of its root's mounts made ahead of its PID 1 (holder.premount);
        the third value says whether they were (False also when they failed part way), the fourth is an fd of the
        mount namespace with the root pivoted into (None: not made)."""
        with self._lock:
            for _attempt in (1, 2):
                if not self.alive():
                    self._start()
                assert self._sock is not None
                try:
                    send_ctl(self._sock, {"prepare": plan, "premount": premount})
                    reply, fds = recv_ctl(self._sock, 2)
                except OSError:
                    reply, fds = None, []
                for fd in fds:
                    os.set_inheritable(fd, False)  # (recvmsg does not set close-on-exec: no program we run keeps them)
                if reply is not None:
                    if "setup_error" in reply:
                        raise SetupFailed(reply["setup_error"])
                    return reply["pid"], socket.socket(fileno=fds[0]), bool(reply.get("premounted")), \
                        fds[1] if len(fds) > 1 else None
                self.stop()  # died under us: start a fresh one and try once more
            raise HelperUnavailable(None, "the launch helper did not answer")

    def resize(self, pid: int, plan: HolderPlan, size: int | None) -> None:
        """Change the bound of the writable layer of a holder this helper prepared (holder.resize_writable_layer).
        Raises SetupFailed (the holder is then not to be used) or HelperUnavailable."""
        with self._lock:
            if not self.alive() or self._sock is None:
                raise HelperUnavailable(None, "the launch helper is not running")
            try:
                send_ctl(self._sock, {"resize": (pid, plan, size)})
                reply, _ = recv_ctl(self._sock)
            except OSError:
                reply = None
            if reply is None:
                self.stop()
                raise HelperUnavailable(None, "the launch helper did not answer")
            if "setup_error" in reply:
                raise SetupFailed(reply["setup_error"])

    def stop(self) -> None:
        proc, sock, self._proc, self._sock = self._proc, self._sock, None, None
        lifelong.end(proc, sock)


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
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.freeze()
    while True:
        try:
            msg, _fds = recv_ctl(sock)
        except OSError:
            break
        if msg is None:
            break  # the caller closed its end
        if "resize" in msg:
            try:
                resize_writable_layer(*msg["resize"])
                send_ctl(sock, {"resized": True})
            except OSError as e:
                send_ctl(sock, {"setup_error": failure("bounding the writable layer", e)})
            continue
        # Holders are reaped here, between requests; during one, prepare_holder waits for its own.
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        try:
            pid, ctl = prepare_holder(msg["prepare"])
        except SetupFailed as e:
            send_ctl(sock, {"setup_error": e.info})
            continue
        finally:
            signal.signal(signal.SIGCHLD, _reap)
            _reap(0, None)
        done, root_ns = False, None
        if msg.get("premount") is not None:
            try:
                root_ns = premount(pid, *msg["premount"])
                done = True
            except OSError:
                pass  # (the caller's PID 1 then rebinds the root and mounts it all: launch._enter_root)
        fds = [ctl.fileno()] + ([root_ns] if root_ns is not None else [])
        try:
            send_ctl(sock, {"pid": pid, "premounted": done}, fds)
        finally:
            ctl.close()
            if root_ns is not None:
                os.close(root_ns)


if __name__ == "__main__":
    main(int(sys.argv[1]))
