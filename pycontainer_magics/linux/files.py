"""Files the project writes for itself: the atomic writes and the one lock.

`atomic_write` (and `write_json`) replace a file all at once: readers see the old content or the new,
never a half-written file, also when the writer is killed (a temporary file in the same directory, then
rename). `FileLock` is an exclusive lock across processes (flock) and threads, re-entrant within a thread.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import IO, Any

from . import libc


@contextlib.contextmanager
def atomic_writer(path: str, *, mode: int = 0o644, tmp_dir: str | None = None,
                  durable: bool = False) -> Iterator[IO[bytes]]:
    """A binary file that becomes `path` (with `mode`) when the block ends; removed if it raises.
    tmp_dir: where the temporary file is made (the same filesystem as `path`; default its directory).
    durable: on the disk when this returns (the file and its directory synced), also after a machine crash."""
    fd, tmp = tempfile.mkstemp(dir=tmp_dir or os.path.dirname(os.path.abspath(path)), prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            os.fchmod(f.fileno(), mode)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            sync_dir(os.path.dirname(os.path.abspath(path)))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def sync_dir(path: str) -> None:
    """The directory's entries on the disk (the names of files made or renamed in it)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes | str, *, mode: int = 0o644, tmp_dir: str | None = None,
                 durable: bool = False) -> None:
    """Replace `path` with `data` at once (durable: see atomic_writer)."""
    with atomic_writer(path, mode=mode, tmp_dir=tmp_dir, durable=durable) as f:
        f.write(data.encode() if isinstance(data, str) else data)


def write_all(fd: int, data: bytes) -> None:
    """Write all of `data` to `fd` (os.write may take less than it is given)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def swap_in(path: str, data: bytes, *, mode: int = 0o644) -> None:
    """Replace `path` with `data` at once, as atomic_write does, for a file a machine crash may leave empty (one that
    describes what dies with the machine: processes, links). The new file is exchanged with the old one (renameat2
    RENAME_EXCHANGE), which then goes: a rename over a file makes ext4 write the new one's data out first
    (auto_da_alloc: 0.25-0.5 ms here, most of a container's claim of its network endpoint), an exchange does not — the
    data goes with the next writeback, and a crash before it may leave the file empty."""
    head, tail = os.path.split(os.path.abspath(path))
    tmp = os.path.join(head, f".tmp-{tail}.{os.getpid()}.{threading.get_ident()}")  # (no random name: 0.05 ms)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
        try:
            os.fchmod(fd, mode)
            write_all(fd, data)
        finally:
            os.close(fd)
        try:
            libc.rename_exchange(tmp, path)
        except OSError as e:  # no file there yet (a plain rename writes nothing out), or no exchange on this filesystem
            if e.errno not in (errno.ENOENT, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # the old file, once exchanged


def write_json(path: str, doc: Any, *, mode: int = 0o644, indent: int | None = 2, sort_keys: bool = False,
               newline: bool = True, make_dirs: int | None = None) -> None:
    """Replace `path` with `doc` as JSON at once. make_dirs: create the directory with this mode first."""
    if make_dirs is not None:
        os.makedirs(os.path.dirname(path), mode=make_dirs, exist_ok=True)
    text = json.dumps(doc, indent=indent, sort_keys=sort_keys) + ("\n" if newline else "")
    atomic_write(path, text, mode=mode)


class FileLock:
    """An exclusive lock over `path` (a lock file, made on first use, or a directory): flock across
    processes, an RLock across threads, re-entrant in one thread (only the outermost `with` takes and
    releases the flock). The descriptor is close-on-exec and above 10, so a process forked while the
    lock is held (which keeps its low fds) never holds it too.

    path: a string, or a callable giving it when the lock is taken (state directories can change).
    directory: lock the directory `path` itself (it must exist), not a lock file.
    make_dir: the mode to create the lock file's directory with (None: it must exist)."""

    def __init__(self, path: str | Callable[[], str], *, directory: bool = False, make_dir: int | None = None) -> None:
        self._path = path
        self._directory = directory
        self._make_dir = make_dir
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd = -1

    @property
    def path(self) -> str:
        return self._path() if callable(self._path) else self._path

    def __enter__(self) -> FileLock:
        self._thread_lock.acquire()
        try:
            if self._depth == 0:
                self._fd = self._take()
            self._depth += 1
        except BaseException:
            self._thread_lock.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._depth -= 1
            if self._depth == 0:
                fd, self._fd = self._fd, -1
                os.close(fd)  # closing releases the flock
        finally:
            self._thread_lock.release()

    def _take(self) -> int:
        path = self.path
        if self._directory:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        else:
            if self._make_dir is not None:
                os.makedirs(os.path.dirname(path), mode=self._make_dir, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
        finally:
            os.close(fd)
        try:
            fcntl.flock(high, fcntl.LOCK_EX)
        except BaseException:
            os.close(high)
            raise
        return high


__all__ = ["FileLock", "atomic_write", "atomic_writer", "swap_in", "sync_dir", "write_all", "write_json"]
