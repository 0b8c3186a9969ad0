"""A container's output as Docker's json-file log driver keeps it: one JSON object a line,
`{"log": "hi\\n", "stream": "stdout", "time": "2024-05-01T12:00:00.123456789Z"}`.

The supervisor appends; the daemon reads (logs, attach) and follows by polling the file's size, so a
restarted daemon finds the whole history where it was. Lines are written with one write() each, so a
reader never sees half a record (it skips a torn last line until its newline arrives)."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from typing import BinaryIO

LOG_FILE = "container.log"
MAX_RECORD = 16 * 1024  # longer output is split into records of this size, as dockerd's 16K buffer
_LINES = re.compile(rb"[^\n]*\n|[^\n]+")


def rfc3339_nano(t: float | None = None) -> str:
    t = time.time() if t is None else t
    secs = int(t)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{int((t - secs) * 1e9):09d}Z"


def parse_time(text: str) -> float:
    """An RFC 3339 time (as written above, or with fewer digits) to seconds since the epoch."""
    import calendar

    s = text.strip().rstrip("Z")
    frac = 0.0
    if "." in s:
        s, f = s.split(".", 1)
        frac = float("0." + f[:9])
    return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%S")) + frac


@dataclass(frozen=True)
class Record:
    stream: str
    data: bytes
    time: str  # RFC 3339 with nanoseconds

    @property
    def t(self) -> float:
        return parse_time(self.time)


class Writer:
    """Appends records; the file is opened with O_APPEND so each line lands whole."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)

    def write(self, stream: str, data: bytes) -> None:
        """One record per line (a line's newline included), as dockerd's; what follows the last newline is
        a record of its own, and so is each 16 KiB of a longer line."""
        for piece in _LINES.findall(data):
            for i in range(0, len(piece), MAX_RECORD):
                self._record(stream, piece[i:i + MAX_RECORD])

    def _record(self, stream: str, chunk: bytes) -> None:
        buf = (json.dumps({"log": chunk.decode("utf-8", "replace"), "stream": stream,
                           "time": rfc3339_nano()}) + "\n").encode()
        while buf:
            try:
                buf = buf[os.write(self.fd, buf):]
            except InterruptedError:
                continue
            except OSError:
                return  # a full disk must not end the container

    def close(self) -> None:
        os.close(self.fd)


class Reader:
    """Reads records from an offset on; `read()` returns what is complete now (call again to follow).
    The file is held open from the first look: what a removed container (`--rm`) wrote is still read."""

    def __init__(self, path: str, offset: int = 0) -> None:
        self.path = path
        self.offset = offset
        self._partial = b""
        self._f: BinaryIO | None = None
        self._open()

    def _open(self) -> None:
        if self._f is None:
            try:
                self._f = open(self.path, "rb")  # noqa: SIM115 - kept open across reads, closed by close()
            except FileNotFoundError:
                pass

    @staticmethod
    def end_of(path: str) -> int:
        try:
            return os.stat(path).st_size
        except FileNotFoundError:
            return 0

    def read(self) -> list[Record]:
        self._open()
        if self._f is None:
            return []
        self._f.seek(self.offset)
        data = self._f.read()
        self.offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        out = []
        for line in lines:
            try:
                d = json.loads(line)
                out.append(Record(d["stream"], d["log"].encode(), d["time"]))
            except (ValueError, KeyError):
                continue
        return out

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def __del__(self) -> None:
        self.close()


def read_all(path: str) -> list[Record]:
    r = Reader(path)
    try:
        return r.read()
    finally:
        r.close()
