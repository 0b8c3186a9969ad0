"""Docker's multiplexed stream format (attach, logs and exec without a TTY): each frame is an 8-byte
header - the stream (0 stdin, 1 stdout, 2 stderr), three zero bytes, the payload's length as a big-endian
uint32 - then the payload."""

from __future__ import annotations

import struct

STREAMS = {"stdin": 0, "stdout": 1, "stderr": 2}
_HDR = struct.Struct(">BxxxI")


def frame(stream: str, data: bytes) -> bytes:
    return _HDR.pack(STREAMS[stream], len(data)) + data


def unframe(buf: bytes) -> list[tuple[int, bytes]]:
    """Split a multiplexed byte string into (stream number, payload) pairs (tests and clients)."""
    out = []
    i = 0
    while i + 8 <= len(buf):
        kind, n = _HDR.unpack_from(buf, i)
        out.append((kind, buf[i + 8:i + 8 + n]))
        i += 8 + n
    return out
