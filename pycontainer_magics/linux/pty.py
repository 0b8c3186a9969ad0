"""Pseudo-terminals, as a container gets them (`docker run -t`, `docker exec -t`, runc's console socket).

The pair is made from the container's own /dev/ptmx (its devpts instance, mounted `newinstance`), so the
process sees /dev/pts/0 under its own /dev; the master end leaves the container over a unix socket
(SCM_RIGHTS) to whoever relays the terminal, and the slave end becomes the process's stdin, stdout, stderr
and controlling terminal. The window size lives on the pair: TIOCSWINSZ on the master, and the kernel sends
SIGWINCH to the terminal's foreground process group.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import termios

TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431
TIOCSCTTY = 0x540E
TIOCGPTPEER = 0x5441


def open_pty(size: tuple[int, int] | None = None, ptmx: str = "/dev/ptmx") -> tuple[int, int]:
    """A new pair from `ptmx` (the current root's): (master, slave), both close-on-exec. The slave is opened
    from the master (TIOCGPTPEER), not by a path another mount could hide."""
    master = os.open(ptmx, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
        if size:
            set_size(master, *size)
        try:
            slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        except OSError:  # before Linux 4.13: by the number, in ptmx's devpts
            n = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, struct.pack("I", 0)))[0]
            pts = os.path.dirname(os.path.realpath(ptmx))
            if os.path.basename(pts) != "pts":
                pts = os.path.join(pts, "pts")
            slave = os.open(os.path.join(pts, str(n)), os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except BaseException:
        os.close(master)
        raise
    return master, slave


def set_size(fd: int, rows: int, cols: int) -> None:
    """The terminal's window size (either end); 0 x 0 is left alone (a client that does not know)."""
    if rows > 0 and cols > 0:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def get_size(fd: int) -> tuple[int, int]:
    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    return rows, cols


def send_master(sock_fd: int, master: int, name: bytes = b"/dev/ptmx") -> None:
    """Hand the master end over a unix socket (the receiver relays the terminal); `name` goes with it, as
    runc's console socket sends it."""
    s = socket.socket(fileno=os.dup(sock_fd))
    try:
        socket.send_fds(s, [name], [master])
    finally:
        s.close()


def recv_master(sock: socket.socket) -> int | None:
    """The master end sent by send_master, or None if the sender went away without one."""
    _data, fds, _flags, _addr = socket.recv_fds(sock, 16, 1)
    return fds[0] if fds else None


def become_controlled(slave: int, owner: tuple[int, int] | None = None) -> None:
    """In the process that will run the payload: a session of its own whose controlling terminal is
    `slave`, which becomes its stdin, stdout and stderr (and is closed). `owner`: (uid, gid) the terminal is
    given (a non-root user must be able to use it)."""
    try:
        if owner is not None:
            try:
                os.fchown(slave, *owner)
            except OSError:
                pass  # an unmapped id: the terminal stays root's
        try:
            os.setsid()
        except PermissionError:
            pass  # a session leader already
        fcntl.ioctl(slave, TIOCSCTTY, 0)
        for fd in (0, 1, 2):
            os.dup2(slave, fd)
    finally:
        if slave > 2:
            os.close(slave)


__all__ = ["become_controlled", "get_size", "open_pty", "recv_master", "send_master", "set_size"]
