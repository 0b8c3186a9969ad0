"""`process.terminal`: a pseudo-terminal made inside the container (its own devpts), the master end sent to the
engine over `--console-socket` with SCM_RIGHTS (how containerd's shim and conmon receive it for
`docker run -t`/`podman run -t`), the slave end the process's stdin, stdout, stderr and controlling
terminal, and bound over /dev/console (runc's setupConsole)."""

from __future__ import annotations

import errno
import fcntl
import os
import socket

from ..linux import pty
from ..linux.libc import MS_BIND, mount
from ..linux.pty import TIOCSCTTY


def connect(path: str) -> int:
    """The console socket, connected by the runtime (which can reach the engine's path); passed down."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        s.close()
        raise OSError(e.errno, f"connecting to the console socket {path}: {e.strerror}", path) from None
    fd = s.detach()
    return fd


def setup(sock_fd: int, size: tuple[int, int] | None, uid: int, gid: int) -> None:
    """In the container, after pivot_root: make the pty, send its master, and make the slave our stdio
    and controlling terminal."""
    master, slave = pty.open_pty(size)
    try:
        _bind_console(os.ttyname(slave))
        pty.send_master(sock_fd, master)
    finally:
        os.close(master)
        os.close(sock_fd)
    try:
        os.fchown(slave, uid, gid)
    except OSError:
        pass  # an unmapped id: the terminal stays root's, as it would under runc
    # The terminal's settings stay the kernel's defaults (onlcr on): runc's ClearONLCR is in its own `run -t`
    # relay, not on this path; the shim or conmon that receives the master decides, and a `docker run -it`
    # user must get CR LF line ends, as under runc.
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    os.close(slave)


def set_controlling(fd: int = 0) -> None:
    fcntl.ioctl(fd, TIOCSCTTY, 0)


def _bind_console(slave_path: str) -> None:
    try:
        fd = os.open("/dev/console", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600)
        os.close(fd)
    except OSError as e:
        if e.errno != errno.EEXIST:
            raise
    mount(slave_path, "/dev/console", None, MS_BIND)


__all__ = ["connect", "set_controlling", "setup"]
