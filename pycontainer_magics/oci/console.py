"""`process.terminal`: a pseudo-terminal made inside the container (its own devpts), the master end sent to the
engine over `--console-socket` with SCM_RIGHTS (how containerd's shim and conmon receive it for
`docker run -t`/`podman run -t`), the slave end the process's stdin, stdout, stderr and controlling
terminal, and bound over /dev/console (runc's setupConsole)."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
import termios

from ..linux.libc import MS_BIND, mount

TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431
TIOCSCTTY = 0x540E


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
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
        n = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, struct.pack("I", 0)))[0]
        slave_path = f"/dev/pts/{n}"
        if size and size[0] and size[1]:
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
        _bind_console(slave_path)
        s = socket.socket(fileno=sock_fd)
        try:
            socket.send_fds(s, [b"/dev/ptmx"], [master])
        finally:
            s.close()
    finally:
        os.close(master)
    slave = os.open(slave_path, os.O_RDWR | os.O_NOCTTY)
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
