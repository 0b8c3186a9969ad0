"""Standard input and terminals for attach and exec (`docker run -it`, `echo hi | docker run -i`, `docker
attach`, `docker exec -it`): the daemon's end of a container's stdio channel (its supervisor holds the other,
workloads/container_io.py), the client's keystrokes pumped in with dockerd's detach keys (ctrl-p ctrl-q),
and writes to a non-blocking fd from the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable

from ..workloads.container_io import END, EOF, MAX_MESSAGE, OUTPUT, STDIN, resize_message
from .http import ApiError

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"
ATTACH_BUFFER = 64  # messages (of up to 64 KiB) of terminal output held for one attach session that lags


def listener_queue() -> asyncio.Queue[bytes | None]:
    """An attach session's queue of terminal output: bounded (see offer())."""
    return asyncio.Queue(maxsize=ATTACH_BUFFER)


def offer(q: asyncio.Queue[bytes | None], item: bytes | None) -> None:
    """Queue `item` without waiting: a session that does not keep up (a client that stopped reading) loses its
    oldest output, never holding up the container or the other sessions, nor growing without bound (as conmon
    drops for a slow attach socket; the container's log has all of it: `docker logs`). None, the end, always
    gets in."""
    while True:
        try:
            q.put_nowait(item)
            return
        except asyncio.QueueFull:
            with contextlib.suppress(asyncio.QueueEmpty):
                q.get_nowait()


class ContainerIO:
    """One channel to a running container's supervisor: stdin and window sizes go in; terminal output comes
    out to every queue in `listeners` (attach sessions; None at the end of the run)."""

    def __init__(self, sock: socket.socket, listeners: set[asyncio.Queue[bytes | None]]) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.listeners = listeners
        self.loop = asyncio.get_running_loop()
        self.ended = asyncio.Event()
        self.loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        while not self.ended.is_set():
            try:
                msg = self.sock.recv(MAX_MESSAGE + 1)
            except BlockingIOError:
                return
            except OSError:
                msg = b""
            if not msg or msg[:1] == END:
                self.close()
                return
            if msg[:1] == OUTPUT:
                for q in list(self.listeners):
                    offer(q, msg[1:])

    def close(self) -> None:
        """The run is over (or the supervisor gone): every listener is told, the channel closed."""
        if self.ended.is_set():
            return
        self.ended.set()
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        for q in list(self.listeners):
            offer(q, None)
        self.listeners.clear()

    async def _send(self, msg: bytes) -> None:
        if self.ended.is_set():
            return
        try:
            await self.loop.sock_sendall(self.sock, msg)
        except OSError:
            self.close()

    async def write(self, data: bytes) -> None:
        for i in range(0, len(data), MAX_MESSAGE):
            await self._send(STDIN + data[i:i + MAX_MESSAGE])

    async def close_stdin(self) -> None:
        await self._send(EOF)

    async def resize(self, rows: int, cols: int) -> None:
        await self._send(resize_message(rows, cols))


def parse_detach_keys(text: str | None) -> bytes:
    """dockerd's --detach-keys: comma-separated `ctrl-<key>` (a-z, @, [, \\, ], ^, _) or single characters."""
    out = bytearray()
    for item in (text if text is not None else DEFAULT_DETACH_KEYS).split(","):
        item = item.strip()
        if not item:
            continue
        if item.lower().startswith("ctrl-") and len(item) == 6:
            c = item[5].lower()
            if c.isalpha() or c in "@[\\]^_":
                out.append(ord(c.upper()) & 0x1F)
                continue
        elif len(item) == 1 and item.isascii():  # one byte, as dockerd's (a wider character was a 500 here)
            out.append(ord(item))
            continue
        raise ApiError(400, f"Invalid detach keys ({text}) provided: ctrl-<value> or single characters, "
                       "separated by commas")
    return bytes(out)


class DetachScanner:
    """Finds the detach sequence in the client's input across reads; what comes before it is passed on, a
    partial match is held back until it is known not to be one (as dockerd's escape proxy)."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to pass on, whether the sequence was typed)."""
        if not self.keys:
            return data, False
        buf = self.held + data
        self.held = b""
        at = buf.find(self.keys)
        if at >= 0:
            return buf[:at], True
        for n in range(min(len(self.keys) - 1, len(buf)), 0, -1):  # a prefix of the sequence at the end
            if buf.endswith(self.keys[:n]):
                self.held = buf[-n:]
                return buf[:-n], False
        return buf, False


async def pump_stdin(reader: asyncio.StreamReader, write: Callable[[bytes], Awaitable[None]],
                     detach_keys: bytes) -> bool:
    """The client's input to `write` until it ends it (False) or types the detach keys (True)."""
    scan = DetachScanner(detach_keys)
    while True:
        try:
            data = await reader.read(65536)
        except (ConnectionError, OSError):
            data = b""
        if not data:
            if scan.held:
                await write(scan.held)
            return False
        out, detached = scan.feed(data)
        if out:
            await write(out)
        if detached:
            return True


async def write_fd(fd: int, data: bytes) -> None:
    """All of `data` to a non-blocking fd (a pipe, a terminal's master), waiting for room in the loop."""
    loop = asyncio.get_running_loop()
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
            view = view[n:]
            continue
        except BlockingIOError:
            pass
        await _ready(loop, fd, write=True)


async def read_fd(fd: int, on_data: Callable[[bytes], Awaitable[None]]) -> None:
    """Everything a non-blocking fd gives (a terminal's master) to `on_data` until EOF or EIO."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            await _ready(loop, fd, write=False)
            continue
        except OSError:  # EIO: the terminal's last holder is gone
            return
        if not data:
            return
        await on_data(data)


async def _ready(loop: asyncio.AbstractEventLoop, fd: int, write: bool) -> None:
    """Until `fd` can be written (or read) without blocking."""
    fut: asyncio.Future[None] = loop.create_future()

    def done() -> None:
        if not fut.done():
            fut.set_result(None)

    (loop.add_writer if write else loop.add_reader)(fd, done)
    try:
        await fut
    finally:
        (loop.remove_writer if write else loop.remove_reader)(fd)


def drain_fd(fd: int) -> bytes:
    """What a non-blocking fd holds now (a terminal's master after its process ended)."""
    out = b""
    with contextlib.suppress(OSError):
        while data := os.read(fd, 65536):
            out += data
    return out


__all__ = ["ATTACH_BUFFER", "ContainerIO", "DetachScanner", "drain_fd", "listener_queue", "offer", "parse_detach_keys",
           "pump_stdin", "read_fd", "write_fd"]
