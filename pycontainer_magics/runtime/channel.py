"""Messages between the caller and the processes it starts: length-prefixed pickles on a pipe (status
reports) and pickles with file descriptors on a Unix socket (control). Every process involved is the
caller's own fork or helper, so the pickles are trusted."""

from __future__ import annotations

import os
import pickle
import socket
import struct
import time
from typing import Any

_HDR = struct.Struct(">I")
MAX_CONTROL = 1 << 20


def send(fd: int, msg: dict[str, Any]) -> None:
    """Write one report; `t` (CLOCK_MONOTONIC) makes every report a point on the launch timeline."""
    msg["t"] = time.monotonic()
    data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
    buf = memoryview(_HDR.pack(len(data)) + data)
    while buf:
        n = os.write(fd, buf)
        buf = buf[n:]


def decode_frames(buf: bytearray) -> list[dict[str, Any]]:
    """Pop every complete report from the front of buf."""
    out = []
    while len(buf) >= 4:
        (n,) = _HDR.unpack_from(buf)
        if len(buf) < 4 + n:
            break
        out.append(pickle.loads(bytes(buf[4:4 + n])))
        del buf[:4 + n]
    return out


def encode_ctl(msg: dict[str, Any]) -> bytes:
    """A control message as send_ctl sends it: for one message sent to two peers, pickled once."""
    return pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)


def send_ctl(sock: socket.socket, msg: dict[str, Any] | bytes, fds: list[int] | tuple[int, ...] = ()) -> None:
    """One control message (a dict, or one encode_ctl made) and the fds that go with it."""
    data = msg if isinstance(msg, bytes) else encode_ctl(msg)
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.send(data)


def recv_ctl(sock: socket.socket, maxfds: int = 16) -> tuple[dict[str, Any] | None, list[int]]:
    """One control message and the fds that came with it; (None, []) when the peer has gone."""
    data, fds, _flags, _addr = socket.recv_fds(sock, MAX_CONTROL, maxfds)
    if not data:
        for fd in fds:
            os.close(fd)
        return None, []
    return pickle.loads(data), list(fds)


def feed(sel: Any, fd: int, pending: memoryview) -> tuple[int, memoryview]:
    """Write to a non-blocking pipe what it takes now; once all is written (or the reader has gone), close it
    and stop watching it. Returns the fd (-1 once closed) and what is left to write."""
    try:
        n = os.write(fd, pending[:65536])
        pending = pending[n:]
    except BrokenPipeError:
        pending = pending[:0]
    if not pending:
        sel.unregister(fd)
        os.close(fd)
        fd = -1
    return fd, pending
