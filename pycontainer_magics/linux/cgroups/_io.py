"""Small file helpers shared by the v1 and v2 backends.

Every failure becomes a `CgroupError` that names the control file and keeps the errno, so the layers
above can tell the user which file refused which value.
"""

from __future__ import annotations

import errno as _errno
import os
import threading
import time
from collections.abc import Callable

from .base import CgroupError

# A v1 counter at or above this means "no limit" (the kernel reports PAGE_COUNTER_MAX * PAGE_SIZE,
# 9223372036854771712 on x86-64).
V1_UNLIMITED = 2**62


def error(exc: OSError, action: str, path: str) -> CgroupError:
    """Wrap an OSError into a CgroupError naming the file."""
    code = exc.errno or _errno.EIO
    return CgroupError(code, f"{action}: {os.strerror(code)}", path)


def write(path: str, data: str | bytes) -> None:
    """Write one value to a control file (one write(2) call, as the kernel expects)."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise error(
            exc, f"cannot open cgroup file for writing {raw.decode(errors='replace')!r}", path
        ) from None
    try:
        os.write(fd, raw)
    except OSError as exc:
        raise error(exc, f"cannot write {raw.decode(errors='replace')!r}", path) from None
    finally:
        os.close(fd)


def read(path: str) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise error(exc, "cannot open cgroup file", path) from None
    try:
        chunks = []
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks).decode()
    except OSError as exc:
        raise error(exc, "cannot read cgroup file", path) from None
    finally:
        os.close(fd)


def read_optional(path: str) -> str | None:
    """The file's content, or None when the file does not exist (an older kernel, a missing controller)."""
    try:
        return read(path)
    except CgroupError as exc:
        if exc.errno == _errno.ENOENT:
            return None
        raise


def parse_int(text: str) -> int:
    return int(text.strip())


def parse_max(text: str) -> int | None:
    """v2 style: "max" -> None, else the integer."""
    s = text.strip()
    return None if s == "max" else int(s)


def parse_kv(text: str) -> dict[str, int]:
    """Lines of "key value" (cpu.stat, memory.events, memory.oom_control, cpuacct.stat)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                pass
    return out


def kv_value(text: str, key: bytes | str) -> int:
    """One value out of a "key value" file without building a dict (hot path)."""
    k = key.decode() if isinstance(key, bytes) else key
    for line in text.splitlines():
        if line.startswith(k + " "):
            return int(line[len(k) + 1 :])
    raise KeyError(k)


class Counters:
    """A cgroup's counter files, each read with one pread(2) on a kept fd once it is open; and its join files, opened
    ahead by keep_open() for the run that joins it (take_join: handed over once).

    The sampler's files (`hot`) are kept open from their first reading. The others — what stats() reads, a dozen
    files in v1 — are kept open only after keep_open(), which the pool calls where it makes a cgroup ahead of its
    run: their open + read + close was 0.3-0.6 ms of a Python cell's path after PID 1's exit, and a process with
    many long-lived cgroups (the engine daemon) does not hold a dozen fds for each. A file the kernel does not
    have (pids.peak before 6.x, say) is remembered as missing once keep_open() has looked.

    Measured on the 2-core dev VM (kernel 6.18, v1 memory.usage_in_bytes, from Python): open + read + close
    12.4 us, pread on a kept fd 3.4 us.
    """

    __slots__ = ("_paths", "_hot", "_fds", "join_paths", "_join", "_closed", "_lock")

    def __init__(self, paths: dict[str, str], hot: tuple[str, ...] = (), join: list[str] | None = None) -> None:
        self._paths = paths
        self._hot = frozenset(hot)
        self._fds: dict[str, int | None] = {}  # name -> kept fd, or None: the kernel has no such file
        self.join_paths = join or []
        self._join: list[int] | None = None  # the join files opened ahead
        self._closed = False
        self._lock = threading.Lock()  # the sampler's thread and the caller's may open the same file at once

    def read(self, name: str) -> bytes | None:
        """The file's content; None when it does not exist."""
        path = self._paths.get(name)
        if path is None:  # (no such controller here)
            return None
        try:
            # Under the lock: a kept fd read while close() (the clean-up thread's remove) closes it could by then be
            # another file's, opened meanwhile with the same number.
            with self._lock:
                fd = self._fds.get(name, -1)
                if fd is None:
                    return None
                if fd < 0 and name in self._hot and not self._closed:
                    try:
                        fd = self._fds[name] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                    except FileNotFoundError:
                        self._fds[name] = None
                        return None
                if fd >= 0:
                    return os.pread(fd, 4096, 0)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return None
            try:
                return os.pread(fd, 4096, 0)
            finally:
                os.close(fd)
        except OSError as exc:
            raise error(exc, "cannot read cgroup file", path) from None

    def text(self, name: str) -> str:
        """The content of a file the controller always has (a missing one is an error naming it)."""
        b = self.read(name)
        if b is None:
            raise error(FileNotFoundError(_errno.ENOENT, "missing"), "cannot open cgroup file", self._paths[name])
        return b.decode()

    def optional(self, name: str) -> str | None:
        b = self.read(name)
        return None if b is None else b.decode()

    def keep_open(self) -> None:
        """Open every counter file and the join files now (off the path of the run that will use them)."""
        with self._lock:
            if self._closed:
                return
            for name, path in self._paths.items():
                if name in self._fds:
                    continue
                try:
                    self._fds[name] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    self._fds[name] = None
                except OSError:
                    pass  # (read later the usual way, which reports it)
            if self._join is None and self.join_paths:
                try:
                    self._join = open_for_join(self.join_paths)
                except OSError:
                    pass  # (take_join() finds none: the run opens them, and reports)

    def take_join(self) -> list[int] | None:
        """The join files opened ahead, handed over once (the taker closes them); None: none kept."""
        with self._lock:
            kept, self._join = self._join, None
        return kept

    def fds(self) -> list[int]:
        """The fds kept open (counters and join files)."""
        with self._lock:
            return [fd for fd in self._fds.values() if fd is not None] + list(self._join or ())

    def close(self) -> None:
        """Close the kept fds for good: a later read opens and closes the file each time (reopening and keeping it
        would leak an fd that nothing closes any more)."""
        with self._lock:
            self._closed = True
            fds, self._fds = self._fds, {}
            join, self._join = self._join, None
        close_all([fd for fd in fds.values() if fd is not None] + list(join or ()))

    def kept(self) -> int:
        """How many fds are kept open (tests)."""
        return len(self.fds())


class KeptOpen:
    """keep_open(), join_fds() and kept_fds(), the same for v1 and v2: a cgroup's files are in its Counters."""

    _counters: Counters

    def keep_open(self) -> None:
        """Open now, ahead of the run: the counter files, for a stats() that reads each with one pread, and the join
        files, for join_fds() (see Counters)."""
        self._counters.keep_open()

    def join_fds(self) -> list[int]:
        """The join files opened for writing (by keep_open, else now): the caller's to close."""
        kept = self._counters.take_join()
        return kept if kept is not None else open_for_join(self._counters.join_paths)

    def kept_fds(self) -> list[int]:
        """The fds kept open for it (keep_open): a process that closes every other fd must keep these."""
        return self._counters.fds()


def open_for_join(paths: list[str]) -> list[int]:
    """The join files (v1 `tasks`, v2 `cgroup.procs`) opened for the child that writes itself into the cgroup."""
    fds: list[int] = []
    try:
        for p in paths:
            fds.append(os.open(p, os.O_WRONLY | os.O_CLOEXEC))
    except OSError as exc:
        for fd in fds:
            os.close(fd)
        raise error(exc, "cannot open cgroup file for joining", p) from None
    return fds


def close_all(fds: list[int] | None) -> None:
    for fd in fds or ():
        try:
            os.close(fd)
        except OSError:
            pass


def rmdir(path: str, timeout: float = 2.0) -> None:
    """rmdir, retrying on EBUSY (tasks that are exiting still pin the cgroup for a moment).

    A directory that does not exist is fine (idempotent removal).
    """
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != _errno.EBUSY or time.monotonic() >= deadline:
                raise error(exc, "cannot remove cgroup", path) from None
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def wait_until(cond: Callable[[], bool], timeout: float) -> bool:
    """Poll cond() with a short back-off until true or timeout; returns the last result."""
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        if cond():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def read_pids(path: str) -> list[int]:
    """PIDs listed in a cgroup.procs / tasks file; a vanished cgroup has none."""
    text = read_optional(path)
    if not text:
        return []
    return [int(x) for x in text.split()]
