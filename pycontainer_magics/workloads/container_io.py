"""A daemon container's standard input and terminal, relayed by its supervisor (what containerd's shim does
with a container's stdio, conmon with its attach socket): `docker run -i` feeds a pipe, `docker run -t` a
pseudo-terminal whose output is also logged.

The daemon talks to it over SOCK_SEQPACKET channels, one message a packet, the first byte saying what:

    daemon -> supervisor   i<bytes>  standard input      e  close it (StdinOnce: the client is done)
                           r<rows:u16><cols:u16>  the terminal's window size
    supervisor -> daemon   o<bytes>  terminal output (also appended to the json log)
                           x         the end: the container is gone and its output drained

The first channel comes with the supervisor's birth (a socketpair end the daemon passes at start: nothing is
missed between start and attach); a daemon started later connects to `attach.sock` in the container's
directory. Without a terminal the output goes to the json log only (the daemon follows it).
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import struct
import threading
from typing import Any

from ..runtime.run import Terminal
from . import daemon_store as store
from .json_log import Writer

STDIN, EOF, RESIZE, OUTPUT, END = b"i", b"e", b"r", b"o", b"x"
SOCKET = "attach.sock"
MAX_MESSAGE = 1 << 16
_SIZE = struct.Struct(">HH")
MAX_PENDING = 1 << 20  # stdin held for a container that reads slower than its client sends: no more is taken
SEND_TIMEOUT = 5.0  # a daemon that does not read its channel for this long loses it (the container goes on)


def resize_message(rows: int, cols: int) -> bytes:
    return RESIZE + _SIZE.pack(max(0, min(rows, 0xFFFF)), max(0, min(cols, 0xFFFF)))


def connect(cid: str) -> socket.socket:
    """A new channel to the supervisor of running container `cid` (a daemon that did not start it). The path
    goes through a directory fd: a unix socket's path is limited to 108 bytes, a state directory is not."""
    d = os.open(store.container_dir(cid), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        s.connect(f"/proc/self/fd/{d}/{SOCKET}")
    except BaseException:
        s.close()
        raise
    finally:
        os.close(d)
    return s


class StdioRelay:
    """The supervisor's side: the container's stdin (a pipe, or the terminal's master) fed from the channels,
    the terminal's output logged and sent to them. Started once the container's processes are forked (a
    thread must not be running while the runtime forks), finished once the run has returned."""

    def __init__(self, cid: str, log: Writer, *, tty: bool, open_stdin: bool, size: tuple[int, int] = (0, 0),
                 channel: int = -1) -> None:
        self.cid = cid
        self.log = log
        self.tty = tty
        self.size = size
        self.channels: list[socket.socket] = []
        if channel >= 0:
            self.channels.append(socket.socket(fileno=channel))
        self.stdin_r: int | None = None  # the container's stdin (run's stdin_fd) when it is a pipe
        self.stdin_w: int | None = None
        if open_stdin and not tty:
            self.stdin_r, self.stdin_w = os.pipe2(os.O_CLOEXEC)
            os.set_blocking(self.stdin_w, False)
        self.master: int | None = None
        self.master_open = False  # read until EIO
        self.pending = b""  # stdin not written yet (the container reads slower than the client sends)
        self.close_after_pending = False
        self.listener: socket.socket | None = None
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._finishing = False
        self._thread: threading.Thread | None = None
        self._sel: selectors.BaseSelector | None = None  # the loop's, while it runs (_drop unregisters from it)

    # -- what the runtime is given ------------------------------------------------------------------------
    def terminal(self) -> Terminal | None:
        return Terminal(self._got_master, self.size) if self.tty else None

    def _got_master(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.master = fd
        self.master_open = True
        if self.stdin_w is None:
            self.stdin_w = fd

    # -- life ------------------------------------------------------------------------------------------
    def start(self) -> None:
        """The container runs (its processes are forked): serve the channels and `attach.sock`."""
        if self.stdin_r is not None:
            os.close(self.stdin_r)  # the container has its copy
            self.stdin_r = None
        self.listener = self._listen()
        self._thread = threading.Thread(target=self._loop, name="stdio", daemon=True)
        self._thread.start()

    def finish(self) -> None:
        """The run is over: the terminal's last output is logged and sent, the channels told, all closed."""
        self._finishing = True
        if self._thread is not None:
            os.write(self._wake_w, b"x")
            self._thread.join(30)
        else:
            self._drain_master()
            self._end_channels()
        for fd in (self.stdin_r, self.stdin_w if self.stdin_w != self.master else None, self.master,
                   self._wake_r, self._wake_w):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.stdin_r = self.stdin_w = self.master = None
        if self.listener is not None:
            self.listener.close()
            self.listener = None
            try:
                os.unlink(os.path.join(store.container_dir(self.cid), SOCKET))
            except OSError:
                pass

    def _listen(self) -> socket.socket | None:
        d = os.open(store.container_dir(self.cid), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        path = f"/proc/self/fd/{d}/{SOCKET}"
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            s.bind(path)
            s.listen(8)
            return s
        except OSError:
            s.close()
            return None  # attaching works through the first channel still
        finally:
            os.close(d)

    # -- the loop ----------------------------------------------------------------------------------------
    def _loop(self) -> None:
        sel = self._sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        if self.listener is not None:
            sel.register(self.listener, selectors.EVENT_READ, "listener")
        for ch in self.channels:
            sel.register(ch, selectors.EVENT_READ, "channel")
        try:
            while not self._finishing:
                self._interest(sel)
                for key, events in sel.select():
                    what = key.data
                    if what == "listener":
                        self._accept(sel)
                    elif what == "channel":
                        self._from_channel(sel, key.fileobj)  # type: ignore[arg-type]
                    elif what == "stdin" or (what == "master" and events & selectors.EVENT_WRITE):
                        self._write_stdin(sel)
                    if what == "master" and events & selectors.EVENT_READ and not self._read_master():
                        sel.unregister(key.fd)  # EIO: every process holding the terminal is gone
                        self.master_open = False
        finally:
            self._sel = None
            sel.close()
        self._drain_master()
        self._end_channels()

    def _interest(self, sel: selectors.BaseSelector) -> None:
        """Watch the terminal for output (and for room, when input waits), a stdin pipe for room, the channels
        while there is room for their input."""
        def want(fd: int | socket.socket, events: int, what: str) -> None:
            if fd in sel.get_map():
                if events:
                    sel.modify(fd, events, what)
                else:
                    sel.unregister(fd)
            elif events:
                sel.register(fd, events, what)

        write = selectors.EVENT_WRITE if self.pending else 0
        # Full: the channels are not read until the container has taken some (the daemon's send waits, and with it
        # the client's), as a pipe holds its writer; else a client could pile up any amount here.
        full = len(self.pending) >= MAX_PENDING
        for ch in self.channels:
            want(ch, 0 if full else selectors.EVENT_READ, "channel")
        if self.master is not None and self.master_open:
            want(self.master, selectors.EVENT_READ | (write if self.stdin_w == self.master else 0), "master")
        if self.stdin_w is not None and self.stdin_w != self.master:
            want(self.stdin_w, write, "stdin")

    def _accept(self, sel: selectors.BaseSelector) -> None:
        assert self.listener is not None
        try:
            ch, _ = self.listener.accept()
        except OSError:
            return
        ch.setblocking(True)
        self.channels.append(ch)
        sel.register(ch, selectors.EVENT_READ, "channel")

    def _from_channel(self, sel: selectors.BaseSelector, ch: socket.socket) -> None:
        try:
            msg = ch.recv(MAX_MESSAGE + 1)
        except OSError:
            msg = b""
        if not msg:
            self._drop(ch)
            return
        kind, data = msg[:1], msg[1:]
        if kind == STDIN and self.stdin_w is not None and not self.close_after_pending:
            self.pending += data
            self._write_stdin(sel)
        elif kind == EOF and not self.tty:  # a terminal has no end of input to close (^D is a byte)
            self.close_after_pending = True
            self._write_stdin(sel)
        elif kind == RESIZE and self.master is not None and len(data) == _SIZE.size:
            from ..linux.pty import set_size

            try:
                set_size(self.master, *_SIZE.unpack(data))
            except OSError:
                pass

    def _write_stdin(self, sel: selectors.BaseSelector) -> None:
        fd = self.stdin_w
        if fd is None:
            self.pending = b""
            return
        while self.pending:
            try:
                n = os.write(fd, self.pending[:65536])
            except BlockingIOError:
                return
            except OSError:  # the container closed its stdin (EPIPE) or the terminal is gone (EIO)
                self.pending = b""
                break
            self.pending = self.pending[n:]
        if self.close_after_pending and fd != self.master:
            if fd in sel.get_map():
                sel.unregister(fd)
            os.close(fd)
            self.stdin_w = None

    def _read_master(self, draining: bool = False) -> bool:
        """Log and send what the terminal has; False once it is gone for good (EIO), or, `draining`, empty."""
        assert self.master is not None
        try:
            data = os.read(self.master, 65536)
        except BlockingIOError:
            return not draining
        except OSError as e:
            if e.errno == errno.EIO:
                return False
            raise
        if not data:
            return False
        self.log.write("stdout", data)
        self._send(OUTPUT + data)
        return True

    def _drain_master(self) -> None:
        """After the run: what the terminal still holds (its processes are gone, so it ends in EIO)."""
        if self.master is None or not self.master_open:
            return
        try:
            while self._read_master(draining=True):
                pass
        except OSError:
            pass
        self.master_open = False

    def _send(self, msg: bytes) -> None:
        for ch in list(self.channels):
            try:
                ch.settimeout(SEND_TIMEOUT)
                ch.send(msg)
            except OSError:
                self._drop(ch)

    def _drop(self, ch: socket.socket) -> None:
        if ch in self.channels:
            self.channels.remove(ch)
        # Out of the loop's selector before it is closed: a stale entry would refuse the next channel accepted
        # under the same fd number (KeyError), ending the relay for every session.
        if self._sel is not None and ch.fileno() >= 0 and ch.fileno() in self._sel.get_map():
            self._sel.unregister(ch)
        ch.close()

    def _end_channels(self) -> None:
        self._send(END)
        for ch in list(self.channels):
            self._drop(ch)


__all__: list[Any] = ["END", "EOF", "OUTPUT", "RESIZE", "SOCKET", "STDIN", "StdioRelay", "connect",
                      "resize_message"]
