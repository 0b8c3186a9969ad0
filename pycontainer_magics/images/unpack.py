"""Safe unpacking of layer tarballs (plain, gzip, zstd) into a directory.

Three modes:
  overlay  the layer's own directory, ready to be an overlayfs lower layer: OCI whiteouts (`.wh.NAME`)
           become overlay whiteouts (a 0/0 character device), opaque markers (`.wh..wh..opq`) the
           `trusted.overlay.opaque=y` xattr on their directory. Needs root (mknod, trusted xattrs).
  apply    onto a flattened rootfs that already holds the layers below: whiteouts delete, an opaque
           marker empties its directory of what lower layers put there.
  archive  an archive ADD extracts: whiteouts mean nothing there (as in Docker), so a `.wh.` name is refused.

Everything from a layer is hostile. Every write goes through directory file descriptors (linux/fdtree.py):
no symlink is followed at any step (a parent that is one is refused, a final component that is one is
replaced), `..` components are refused, a whiteout must name an entry of its own directory (not `.` or
`..`), metadata is applied to the inode that was made (a directory's deferred mode too: a directory a
later entry replaced gets nothing), hard links must point inside `dest`, device nodes are made only as
root (skipped and reported otherwise), ownership is kept only as root. Pax and long-name headers over
1 MiB and layers expanding beyond a size limit are refused. The sha256 of the uncompressed stream is the
layer's diff_id, checked against the expected one.
"""

from __future__ import annotations

import bz2
import errno
import functools
import gzip
import hashlib
import io
import lzma
import os
import queue
import re
import stat
import tarfile
import threading
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import IO, Any, BinaryIO, cast

from ..linux.fdtree import (
    DirTree,
    NotBelow,
    SymlinkOnPath,
    check_name,
    fd_path,
    open_node,
    set_owner_mode_times,
    set_symlink_owner_times,
)
from . import native
from .errors import DigestMismatch, ImageError, LayerTooLarge, LayoutError, UnsafeLayer
from .tarstream import BLOCKDEV, CHAR, DIR, FIFO, FILE, HARDLINK, SYMLINK, Entry, PlainFile, TarReader

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@dataclass
class UnpackResult:
    diff_id: str  # sha256 of the uncompressed tar
    size: int  # uncompressed bytes
    entries: int = 0
    skipped: list[str] = field(default_factory=list)  # "path: why" (e.g. device nodes without root)


class _Hashing(io.RawIOBase):
    """Reads through `inner`, hashing every byte. The hashing runs on a thread of its own (hashlib lets go of
    the GIL on large buffers), so it overlaps with decompressing and writing files instead of adding to them."""

    def __init__(self, inner: IO[bytes], limit: int | None = None, what: str = "layer"):
        self.inner = inner
        self.limit = limit
        self.what = what
        self._sha = hashlib.sha256()
        self.count = 0
        self._chunks: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    @property
    def sha(self) -> Any:
        """The hash of everything read so far (waits for the hashing thread)."""
        if self._thread is not None:
            self._chunks.put(None)
            self._thread.join()
            self._thread = None
        return self._sha

    def _hash(self) -> None:
        while (chunk := self._chunks.get()) is not None:
            self._sha.update(chunk)

    def _feed(self, data: bytes) -> None:
        self.count += len(data)
        if self.limit is not None and self.count > self.limit:
            raise LayerTooLarge(f"{self.what}: more than {self.limit} bytes uncompressed; raise the limit with "
                                "PYCONTAINER_MAX_LAYER_SIZE if this layer is genuine")
        if len(data) < 65536:  # small reads: hashing here is cheaper than a hand-off
            if self._thread is None:
                self._sha.update(data)
                return
        elif self._thread is None:
            self._thread = threading.Thread(target=self._hash, name="pcm-layer-sha256", daemon=True)
            self._thread.start()
        self._chunks.put(bytes(data))

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:  # tarfile's stream reader calls read(): no copy through readinto
        data = self.inner.read(n)
        self._feed(data)
        return data

    def readinto(self, b: Any) -> int:
        data = self.inner.read(len(b))
        n = len(data)
        b[:n] = data
        self._feed(data)
        return n

    def close(self) -> None:
        self.sha  # noqa: B018 - ends the hashing thread
        super().close()

    def drain(self) -> None:
        while self.inner and self.read(1 << 20):
            pass


class _Chunks:
    """The uncompressed stream of a layer in chunks: read into a few buffers that are used again and again (a
    fresh 1 MiB object per read costs more in page faults than the copy it avoids), bounded by `limit`, and
    hashed (the diff_id) on a thread of its own while the extractor writes from the same buffer — hashlib and
    os.write both let go of the GIL, so on two cores the hash costs no time. A buffer is filled again only
    once its hash is done: a chunk stays valid until `ring - 1` further chunks were read."""

    def __init__(self, stream: IO[bytes], limit: int | None = None, what: str = "layer", size: int = 1 << 20,
                 ring: int = 3):
        self.stream = stream
        self.limit = limit
        self.what = what
        self.count = 0
        self._sha = hashlib.sha256()
        self._bufs = [bytearray(size) for _ in range(ring)]
        self._ticket = [0] * ring  # the hashing job each buffer waits for (0: none)
        self._next = 0
        self._jobs: queue.SimpleQueue[memoryview | None] = queue.SimpleQueue()
        self._submitted = 0
        self._hashed = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def _hash(self) -> None:
        while (view := self._jobs.get()) is not None:
            self._sha.update(view)
            with self._cond:
                self._hashed += 1
                self._cond.notify()

    def __call__(self) -> memoryview:
        """The next chunk (empty at the end of the stream)."""
        i = self._next
        self._next = (i + 1) % len(self._bufs)
        buf = self._bufs[i]
        if self._hashed < self._ticket[i]:
            with self._cond:
                while self._hashed < self._ticket[i]:
                    self._cond.wait()
        n = self.stream.readinto(buf)  # type: ignore[attr-defined]
        if not n:
            return memoryview(b"")
        self.count += n
        if self.limit is not None and self.count > self.limit:
            raise LayerTooLarge(f"{self.what}: more than {self.limit} bytes uncompressed; raise the limit with "
                                "PYCONTAINER_MAX_LAYER_SIZE if this layer is genuine")
        view = memoryview(buf)[:n]
        if self._thread is None and n < 65536:  # small reads: hashing here is cheaper than a hand-off
            self._sha.update(view)
            return view
        if self._thread is None:
            self._thread = threading.Thread(target=self._hash, name="pcm-layer-sha256", daemon=True)
            self._thread.start()
        self._submitted += 1
        self._ticket[i] = self._submitted
        self._jobs.put(view)
        return view

    def drain(self) -> None:
        """Read (and hash) what follows the end of the archive."""
        while self():
            pass

    def close(self) -> None:
        """Ends the hashing thread, whatever happened."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None

    def hexdigest(self) -> str:
        self.close()
        return self._sha.hexdigest()


class _FileSource:
    """A plain (uncompressed) layer that is a regular file: its headers and small members read in chunks by
    `pread` into one reused buffer, the rest of a large member's data copied by the kernel from the file at
    its offset (`span` and `copy`: `sendfile`, never through Python), and the diff_id — the sha256 of the
    file — hashed from the file by a thread of its own that waits for nothing (a GIL switch per 1 MiB)."""

    def __init__(self, fd: int, start: int, end: int, size: int = 1 << 20, what: str = "layer"):
        self.fd = fd
        self.what = what
        self.start = start
        self.count = end - start  # the uncompressed size: the file's
        self._pos = start
        self._buf = memoryview(bytearray(size))
        self._want = size
        self._sha = hashlib.sha256()
        self._stop = False
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._hash, args=(start, end), name="pcm-layer-sha256", daemon=True)
        self._thread.start()

    def _hash(self, pos: int, end: int) -> None:
        buf = memoryview(bytearray(1 << 20))
        try:
            while pos < end and not self._stop:
                n = os.preadv(self.fd, [buf[:min(len(buf), end - pos)]], pos)
                if not n:
                    raise LayoutError(f"{self.what}: the layer file got shorter while it was read")
                self._sha.update(buf[:n])
                pos += n
        except Exception as e:  # handed to whoever asks for the digest
            self._error = e

    def __call__(self) -> memoryview:
        """The next chunk (empty at the end). After a seek (the data of a large member skipped) the next read
        is small — the header that follows and the start of its data, when that is large again — and grows
        back to the full size over a run of small members."""
        view = self._buf[:self._want]
        self._want = min(self._want * 2, len(self._buf))
        n = os.preadv(self.fd, [view], self._pos)
        self._pos += n
        return view[:n]

    def seek(self, offset: int) -> None:
        self._pos = self.start + offset
        self._want = _SPAN_READ

    def copy(self, out: int, offset: int, n: int, name: str) -> None:
        """`n` bytes of the stream from `offset` into the file `out` (at its position), kernel-side."""
        pos = self.start + offset
        while n:
            sent = os.sendfile(out, self.fd, pos, min(n, _SENDFILE))
            if not sent:
                raise LayoutError(f"tar stream ends inside the data of {name!r}")
            pos += sent
            n -= sent

    def drain(self) -> None:
        pass

    def close(self) -> None:
        """Ends the hashing thread, whatever happened."""
        self._stop = True
        self._thread.join()

    def hexdigest(self) -> str:
        assert not self._stop, "hexdigest after close"
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._sha.hexdigest()


def _file_source(stream: IO[bytes], limit: int | None, what: str) -> _FileSource | None:
    """A _FileSource when the uncompressed stream is a regular file's own bytes (a plain layer from a file),
    from its current position on; else None (compressed, or a pipe or BytesIO: read as a stream)."""
    if not isinstance(stream, io.BufferedReader) or not isinstance(stream.raw, io.FileIO):
        return None
    try:
        fd = stream.fileno()
        st = os.fstat(fd)
        start = stream.tell()
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    if limit is not None and st.st_size - start > limit:
        raise LayerTooLarge(f"{what}: more than {limit} bytes uncompressed; raise the limit with "
                            "PYCONTAINER_MAX_LAYER_SIZE if this layer is genuine")
    return _FileSource(fd, start, st.st_size, size=_CHUNK, what=what)


DEFAULT_MAX_LAYER_SIZE = 32 << 30


def max_layer_size() -> int:
    """The most bytes one layer (or archive for ADD) may expand to: PYCONTAINER_MAX_LAYER_SIZE (bytes, or
    with a k/m/g suffix), else 32 GiB. A gzip bomb stops there instead of filling the disk."""
    text = os.environ.get("PYCONTAINER_MAX_LAYER_SIZE", "").strip()
    if not text:
        return DEFAULT_MAX_LAYER_SIZE
    m = re.fullmatch(r"(\d+)\s*([kmgt]?)i?b?", text, re.IGNORECASE)
    if m is None:
        raise ImageError(f"PYCONTAINER_MAX_LAYER_SIZE={text!r}: a size in bytes, like 8g or 500m")
    return int(m.group(1)) << (10 * " kmgt".index(m.group(2).lower() or " "))


def compression_of(head: bytes) -> str:
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if head.startswith(b"BZh"):  # bzip2 and xz: not layer media types, but what ADD extracts
        return "bzip2"
    if head.startswith(b"\xfd7zXZ"):
        return "xz"
    return "none"


def decompressed(raw: IO[bytes]) -> IO[bytes]:
    """The uncompressed stream of a layer blob (gzip, zstd or plain, by its magic bytes)."""
    buf: Any = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(cast(Any, raw))
    kind = compression_of(buf.peek(6)[:6])
    if kind == "bzip2":
        return cast(IO[bytes], bz2.BZ2File(buf))
    if kind == "xz":
        return cast(IO[bytes], lzma.LZMAFile(buf))
    if kind == "gzip":
        return cast(IO[bytes], _gzip().GzipFile(fileobj=buf, mode="rb"))
    if kind == "zstd":
        try:
            import zstandard
        except ImportError:
            raise ImageError("layer is zstd-compressed: install the 'zstandard' package") from None
        reader: IO[bytes] = zstandard.ZstdDecompressor().stream_reader(buf, read_across_frames=True)
        return reader
    return cast(IO[bytes], buf)


_CHUNK = 1 << 20  # bytes read from the uncompressed stream at a time
# A plain layer read from a file: members of at least _SPAN_MIN bytes have their data past the chunk in hand
# copied by the kernel (sendfile, _SENDFILE bytes a call); the read after such a copy is _SPAN_READ bytes.
_SPAN_MIN = 128 << 10
_SPAN_READ = 64 << 10
_SENDFILE = 8 << 20
# Bytes written per write(2). Measured on this project's Linux 6.18 VM: 100 MiB written to ext4 in 1 MiB
# writes took 260-280 ms of CPU, in 64 KiB writes 40-50 ms (from 128 KiB up, every write pays for large
# page-cache folios); tmpfs is indifferent. GNU tar writes 10 KiB records.
_WRITE = 64 << 10


@functools.cache
def _gzip() -> ModuleType:
    """zlib-ng's gzip module (the `gzip` extra: inflates 4-10 times faster than the system's zlib here, which
    makes gunzip the smaller part of unpacking a layer), else the standard library's."""
    try:
        from zlib_ng import gzip_ng
    except ImportError:
        return gzip
    module: ModuleType = gzip_ng  # typed whether zlib-ng (typed) is installed or not (then Any): no cast needed
    return module


def _decompress_errors() -> tuple[type[BaseException], ...]:
    """What a corrupt or truncated compressed stream raises."""
    errors: tuple[type[BaseException], ...] = (EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError)
    if _gzip() is not gzip:
        from zlib_ng import zlib_ng

        errors += (cast(type[BaseException], zlib_ng.error),)
    return errors


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


_NOT_PLAIN = (b"", b".", b"..")  # a file name that is not one (a whiteout's `.wh.` prefix is checked apart)


class _Held:
    """A plain file's data the fast lane took from the reader already, handed to `_Extractor.regular`."""

    __slots__ = ("view",)

    def __init__(self, view: memoryview):
        self.view = view

    def whole(self) -> memoryview:
        return self.view


def _components(name: str, what: str) -> list[str]:
    parts = name.split("/")
    if "" in parts or "." in parts:
        parts = [p for p in parts if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeLayer(f"{what}: entry {name!r} climbs out of the layer with '..'")
    return parts


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_READ = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _umask() -> int:
    """The process's umask, read without changing it (os.umask would, for every thread)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o777  # unknown: every file gets an explicit chmod


class _Extractor:
    """Writes tar entries below `dest` through directory fds (linux/fdtree.py): no symlink is followed at any
    step, metadata lands on the inode that was made, a directory's deferred mode on that directory or nowhere.
    Whiteouts mean something only in the layer modes; `archive` (ADD) refuses `.wh.` names.
    Per entry it makes the syscalls `tar -x` makes, with descriptors instead of paths: a file is created
    (O_EXCL, replacing what was there only when that fails), written, and given owner, mode and times through
    its own descriptor."""

    def __init__(self, dest: str, mode: str, what: str, max_size: int | None, source: _FileSource | None = None):
        if mode not in ("overlay", "apply", "archive"):
            raise ValueError(f"unknown unpack mode {mode!r}")
        self.source = source  # a plain layer's file: large members are copied from it kernel-side
        self.tree = DirTree(dest)
        self.mode = mode
        self.what = what
        self.root = os.geteuid() == 0
        # Who a new file belongs to without a chown: this process's uid and gid, unless a directory is set-group-ID
        # (its files take its group). In a directory that was empty, is ours by group and not set-group-ID, every
        # directory is one this unpack made, set-group-ID only at the end: a file whose entry names our uid and
        # gid needs no fchown (20,000 of the small files' 110,000 syscalls). Anywhere else (apply mode onto
        # lower layers' directories, a set-group-ID destination) every file is chowned, as tar does.
        self.owner: tuple[int, int] | None = None
        if self.root:
            st = os.fstat(self.tree.fd)
            if not st.st_mode & stat.S_ISGID and st.st_gid == os.getegid() and not os.listdir(self.tree.root):
                self.owner = (os.geteuid(), os.getegid())
        self.max_size = max_size
        self.umask = _umask()
        self.written_bytes = 0
        self.written: set[str] = set()  # paths this layer wrote (apply mode: an opaque marker keeps them)
        # Each directory entry's deferred metadata, by path: a path listed again keeps its place (after its parent's,
        # before its children's) and takes the later entry (as GNU tar); a path removed loses its record and those
        # below it (a directory made there later is another one, even when the kernel gives it the same inode).
        self.dirs: dict[tuple[str, ...], tuple[list[str], Entry, tuple[int, int]]] = {}
        self.result = UnpackResult("", 0)
        self.at = ""  # the name of the fast lane's entry that failed (files())

    def close(self) -> None:
        self.tree.close()

    def parent(self, parts: list[str], name: str) -> int:
        """The fd of an entry's parent directory (made if missing), refusing a symlink on the way."""
        try:
            return self.tree.dir(parts[:-1], make=True)
        except SymlinkOnPath as e:
            raise UnsafeLayer(f"{self.what}: entry {name!r} would be written through the symlink {e.where!r}") from None

    def remove(self, parts: list[str], parent: int, name: str) -> None:
        self.tree.forget(parts)
        if self.tree.remove(parent, name) and self.dirs:  # a directory: its records and those below go
            key, n = tuple(parts), len(parts)
            for gone in [k for k in self.dirs if k[:n] == key]:
                del self.dirs[gone]

    def member(self, reader: TarReader, e: Entry) -> None:
        parts = e.name.split("/")
        if "" in parts or "." in parts or ".." in parts:  # _components inline (a call is a tenth of an entry)
            parts = _components(e.name, self.what)
            if not parts:
                return  # the layer's root itself
        self.result.entries += 1
        base = parts[-1]
        if base.startswith(WHITEOUT_PREFIX):
            if self.mode == "archive":
                raise UnsafeLayer(f"{self.what}: entry {e.name!r}: a name starting with '.wh.' reads as a whiteout "
                                  "in an image layer; an archive added to an image cannot hold one")
            self.special(parts, e.name)
            return
        tree = self.tree
        parent = tree.last_fd if parts[:-1] == tree.last else self.parent(parts, e.name)
        if self.mode == "apply":
            self.written.add("/".join(parts))
        kind = e.kind
        if kind == FILE:
            self.regular(reader, e, parts, parent, base)
        elif kind == DIR:
            self.directory(e, parts, parent, base)
        elif kind == SYMLINK:
            self.make(parts, parent, base, lambda: os.symlink(e.linkname, base, dir_fd=parent))
            self.symlink_metadata(parent, base, e)
        elif kind == HARDLINK:
            self.hardlink(e, parts, parent, base)  # the target's metadata is the link's
        elif kind == CHAR or kind == BLOCKDEV or kind == FIFO:
            if kind != FIFO and not self.root:
                self.result.skipped.append(f"{'/'.join(parts)}: device node {e.devmajor}:{e.devminor} needs root")
                return
            if kind == FIFO:
                self.make(parts, parent, base, lambda: os.mkfifo(base, 0o600, dir_fd=parent))
            else:
                node = (stat.S_IFCHR if kind == CHAR else stat.S_IFBLK) | 0o600
                self.make(parts, parent, base,
                          lambda: os.mknod(base, node, os.makedev(e.devmajor, e.devminor), dir_fd=parent))
            fd = open_node(parent, base)  # O_PATH: the node itself, a device is not opened
            try:
                self.node_metadata(fd, parent, base, e)
            finally:
                os.close(fd)
        else:
            raise UnsafeLayer(f"{self.what}: entry {e.name!r} has unsupported tar type {e.type!r}")

    def files(self, batch: list[PlainFile]) -> None:
        """The reader's fast lane (TarReader.files): for each plain file what `member` and `regular` do, inline —
        the same path checks, open, write, owner, mode and times — while it is a new file in the directory of the
        one before (its directory is walked once, as `member` would); anything else (a whiteout's name, a name
        already there, a `.` or `..` or empty component) goes through `member` as an Entry."""
        umask, root, owner, max_size = self.umask, self.root, self.owner, self.max_size
        written = self.written if self.mode == "apply" else None
        folder: bytes | None = None  # the directory `parent` holds (its path, as bytes), None: look it up
        parent = -1
        count = 0
        open_, write, utime, close = os.open, os.write, os.utime, os.close  # four calls a file: looked up once
        lane = native.lane
        lane_owner = owner or (-1, -1)
        k, total = 0, len(batch)
        while k < total:
            name, mode, uid, gid, mtime, data = batch[k]
            k += 1
            try:
                slash = name.rfind(b"/") + 1
                base, here = name[slash:], name[:slash]  # here: b"" or the directory with its slash
                perm = mode & 0o7777
                first = perm if not perm & ~0o777 and not perm & umask else 0o600
                # The name first: `d/e/` and `d/e/.` name the file `d/e` (a symlink or file there is replaced, by
                # `member`), a whiteout may be refused — `here` is walked (made) only for a plain file name.
                if base in _NOT_PLAIN or base.startswith(b".wh."):
                    fd = -1
                else:
                    if here != folder:  # a new directory: its components checked and walked (made if missing), once
                        parts = _text(here[:-1]).split("/") if here else []
                        if "" in parts or "." in parts or ".." in parts:
                            folder = None
                        else:
                            parent = self.parent(parts + [""], _text(name))
                            folder = here
                    if folder is None:
                        fd = -1
                    else:
                        err = 0
                        if lane is not None:  # this file and those after it in the same directory, in C
                            left = -1 if max_size is None else max_size - self.written_bytes
                            stop, nbytes, err = lane.write(parent, folder, batch, k - 1, umask, root, *lane_owner,
                                                           left if 0 <= left < 1 << 62 else -1)
                            self.written_bytes += nbytes
                            count += stop - (k - 1)
                            if written is not None:
                                written.update(_text(f[0]) for f in batch[k - 1:stop])
                            if err > 0:
                                name = batch[stop][0]
                                raise OSError(err, os.strerror(err), _text(name))
                            if stop >= k:
                                k = stop
                                continue
                            # (not taken there: a name already there (err -1), the size limit: as below)
                        try:
                            fd = open_(base, _NEW_FILE, first, dir_fd=parent) if err != -1 else -1
                        except FileExistsError:  # replaced by `member`
                            fd = -1
                if fd < 0:
                    folder = None  # `member` may move the tree's cached directories
                    e = Entry(_text(name), FILE, "0", mode, uid, gid, mtime, len(data))
                    self.member(cast(TarReader, _Held(data)), e)
                    continue
                try:
                    if n := len(data):
                        self.written_bytes += n
                        if max_size is not None and self.written_bytes > max_size:
                            self.count(0, _text(name))
                        w = write(fd, data) if n <= _WRITE else 0
                        while w < n:
                            w += write(fd, data[w:w + _WRITE])
                    if root and (uid, gid) != owner:
                        os.chown(fd, uid, gid)
                    if first != perm:
                        os.chmod(fd, perm)
                    utime(fd, (mtime, mtime))
                finally:
                    close(fd)
                if written is not None:
                    written.add(_text(name))
                count += 1
            except BaseException:
                self.at = _text(name)
                raise
        self.result.entries += count

    def make(self, parts: list[str], parent: int, base: str, create: Callable[[], object]) -> None:
        """Create a node; whatever was at its name before (a lower layer's, an earlier entry's) is replaced."""
        try:
            create()
        except FileExistsError:
            self.remove(parts, parent, base)
            create()

    def directory(self, e: Entry, parts: list[str], parent: int, base: str) -> None:
        try:
            os.mkdir(base, 0o700, dir_fd=parent)
        except FileExistsError:
            old = self.tree.lstat(parent, base)
            if old is None or not stat.S_ISDIR(old.st_mode):  # a file or symlink where a directory is wanted
                self.make(parts, parent, base, lambda: os.mkdir(base, 0o700, dir_fd=parent))
        st = os.stat(base, dir_fd=parent, follow_symlinks=False)  # the directory there now (made or kept)
        self.dirs[tuple(parts)] = (parts, e, (st.st_dev, st.st_ino))

    def special(self, parts: list[str], name: str) -> None:
        """A whiteout (`.wh.NAME`) or an opaque marker, in a layer."""
        base = parts[-1]
        if base.startswith(WHITEOUT_META_PREFIX):
            if base == OPAQUE_MARKER:
                self.opaque(parts[:-1], name)
            return  # other AUFS metadata (.wh..wh.plnk, ...): skipped, as Docker does
        hidden = base[len(WHITEOUT_PREFIX):]
        try:
            check_name(hidden)
        except NotBelow:
            raise UnsafeLayer(f"{self.what}: entry {name!r} is a whiteout of {hidden!r}: not a name in its "
                              "directory") from None
        target = parts[:-1] + [hidden]
        parent = self.parent(target, name)
        self.remove(target, parent, hidden)
        if self.mode == "overlay":
            try:
                os.mknod(hidden, stat.S_IFCHR, os.makedev(0, 0), dir_fd=parent)
            except PermissionError:
                raise ImageError(f"{self.what}: an overlay whiteout needs root (mknod 0/0)") from None

    def opaque(self, parts: list[str], name: str) -> None:
        parent = self.parent(parts + ["x"], name)  # the marker's directory itself
        if self.mode == "overlay":
            try:
                os.setxattr(fd_path(parent), OPAQUE_XATTR, b"y")
            except PermissionError:
                raise ImageError(f"{self.what}: an opaque directory needs root (trusted.* xattr)") from None
            return
        prefix = "/".join(parts) + "/" if parts else ""
        listing = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=parent)
        try:
            names = os.listdir(listing)
        finally:
            os.close(listing)
        for child in names:
            if prefix + child not in self.written:
                self.remove(parts + [child], self.parent(parts + ["x"], name), child)

    def regular(self, reader: TarReader, e: Entry, parts: list[str], parent: int, base: str) -> None:
        # Made with its final permission bits where the umask keeps them and no set-id bit needs to outlive the
        # chown (which clears them): then no chmod is needed. The descriptor is writable whatever the mode.
        perm = e.mode & 0o7777
        first = perm if not perm & ~0o777 and not perm & self.umask else 0o600
        try:
            fd = os.open(base, _NEW_FILE, first, dir_fd=parent)
        except FileExistsError:
            self.remove(parts, parent, base)
            fd = os.open(base, _NEW_FILE, first, dir_fd=parent)
        try:
            if e.sparse is not None:
                self.sparse(reader, e, fd)
            elif e.size:
                self.written_bytes += e.size  # self.count() inline
                if self.max_size is not None and self.written_bytes > self.max_size:
                    self.count(0, e.name)
                if (view := reader.whole()) is not None:  # all in the chunk in hand (a small file)
                    n = os.write(fd, view) if len(view) <= _WRITE else 0
                    while n < len(view):
                        n += os.write(fd, view[n:n + _WRITE])
                elif self.source is not None and e.size >= _SPAN_MIN:
                    view, offset, rest = reader.span()
                    while view:
                        view = view[os.write(fd, view[:_WRITE]):]
                    if rest:
                        self.source.copy(fd, offset, rest, e.name)
                else:
                    for view in reader.data(e):
                        while view:
                            view = view[os.write(fd, view[:_WRITE]):]
            if self.root:
                if (e.uid, e.gid) != self.owner:
                    os.chown(fd, e.uid, e.gid)  # first: chown drops set-id bits and file capabilities
                if e.xattrs:
                    self.xattrs(e, fd, follow=True)
            if first != perm:
                os.chmod(fd, perm)
            os.utime(fd, (e.mtime, e.mtime))
        finally:
            os.close(fd)

    def sparse(self, reader: TarReader, e: Entry, fd: int) -> None:
        """A sparse file: its data segments written where they belong, the holes left as holes. Its full
        size counts against the limit (a few bytes in the stream can claim terabytes)."""
        assert e.sparse is not None
        self.count(e.realsize, e.name)
        segments = iter(e.sparse)
        offset, left = 0, 0
        for view in reader.data(e):
            while view:
                while not left:
                    seg = next(segments, None)
                    if seg is None:
                        break
                    offset, left = seg
                if not left:
                    break  # data beyond the map: ignored, as tar does
                n = os.pwrite(fd, view[:min(left, _WRITE)], offset)
                view, offset, left = view[n:], offset + n, left - n
        os.ftruncate(fd, e.realsize)

    def count(self, n: int, name: str) -> None:
        """Bytes written to disk, bounded (a sparse entry can expand far beyond the stream it came in)."""
        self.written_bytes += n
        if self.max_size is not None and self.written_bytes > self.max_size:
            raise LayerTooLarge(f"{self.what}: more than {self.max_size} bytes once unpacked (at {name!r}); "
                                "raise the limit with PYCONTAINER_MAX_LAYER_SIZE if this layer is genuine")

    def hardlink(self, e: Entry, parts: list[str], parent: int, base: str) -> None:
        lparts = _components(e.linkname, self.what)
        refused = UnsafeLayer(f"{self.what}: hard link {e.name!r} -> {e.linkname!r}: target not a file of this layer")
        if not lparts:
            raise refused
        if lparts == parts:
            return  # a link to itself (a file archived twice): the file is there already
        try:
            tparent = self.tree.open_dir(lparts[:-1])
        except SymlinkOnPath as e2:
            raise UnsafeLayer(f"{self.what}: hard link {e.name!r} -> {e.linkname!r} goes through the symlink "
                              f"{e2.where!r}") from None
        except (FileNotFoundError, NotADirectoryError):
            raise refused from None
        try:
            st = self.tree.lstat(tparent, lparts[-1])
            if st is None or stat.S_ISDIR(st.st_mode):
                raise refused
            parent = self.parent(parts, e.name)  # open_dir may have moved the tree's cached chain
            self.make(parts, parent, base,
                      lambda: os.link(lparts[-1], base, src_dir_fd=tparent, dst_dir_fd=parent, follow_symlinks=False))
        finally:
            os.close(tparent)

    def node_metadata(self, fd: int, parent: int, base: str, e: Entry) -> None:
        """Owner (root only), xattrs, mode, mtime on the inode `fd` holds (O_PATH: a device or fifo)."""
        if self.root:
            os.chown(fd_path(fd), e.uid, e.gid)  # first: chown drops set-id bits and file capabilities
            if e.xattrs:
                self.xattrs(e, f"{fd_path(parent)}/{base}", follow=False)
        set_owner_mode_times(fd, uid=None, gid=None, mode=e.mode & 0o7777, mtime=e.mtime)

    def symlink_metadata(self, parent: int, base: str, e: Entry) -> None:
        set_symlink_owner_times(parent, base, uid=e.uid if self.root else None, gid=e.gid if self.root else None,
                                mtime=e.mtime)
        if self.root and e.xattrs:
            self.xattrs(e, f"{fd_path(parent)}/{base}", follow=False)

    def xattrs(self, e: Entry, target: str | int, follow: bool) -> None:
        for key, value in (e.xattrs or {}).items():
            try:
                os.setxattr(target, key, value, follow_symlinks=follow)
            except OSError:
                self.result.skipped.append(f"{e.name}: xattr {key} not settable here")

    def finish(self) -> None:
        """Directory metadata, deepest last-written first (a 0o555 directory is set after its children), a path's
        last entry on the directory that entry made — found again without following anything, and skipped if a
        later entry replaced it (by a symlink, a file or another directory)."""
        for parts, e, ident in reversed(self.dirs.values()):
            try:
                parent = self.tree.dir(parts[:-1])
                try:
                    fd, target = os.open(parts[-1], _DIR_READ, dir_fd=parent), None
                except PermissionError:  # not readable (rootless, a mode like 0o300): the node itself
                    fd = open_node(parent, parts[-1])
                    target = fd_path(fd)
            except (SymlinkOnPath, FileNotFoundError, NotADirectoryError):
                continue
            except OSError as err:
                if err.errno == errno.ELOOP:  # replaced by a symlink
                    continue
                raise
            try:
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) != ident:
                    continue
                if self.root:
                    if (st.st_uid, st.st_gid) != (e.uid, e.gid):  # the chmod below sets the mode either way
                        os.chown(fd, e.uid, e.gid)
                    if e.xattrs:
                        self.xattrs(e, fd, follow=True)
                if target is None:
                    os.chmod(fd, e.mode & 0o7777)
                    os.utime(fd, (e.mtime, e.mtime))
                else:
                    set_owner_mode_times(fd, uid=None, gid=None, mode=e.mode & 0o7777, mtime=e.mtime)
            finally:
                os.close(fd)


def unpack_layer(blob: str | IO[bytes], dest: str, *, mode: str = "overlay", expected_diff_id: str | None = None,
                 what: str = "layer", max_size: int | None = None) -> UnpackResult:
    """Unpack a layer tarball (path or binary file object; gzip/zstd/plain) into `dest` (created if
    missing). mode: overlay | apply (see the module's doc) | archive (ADD: no whiteouts, `.wh.` names refused).
    Nothing outside `dest` is touched whatever the entries say. At most `max_size` bytes (default
    PYCONTAINER_MAX_LAYER_SIZE, else 32 GiB) are read uncompressed or written.
    Raises UnsafeLayer, LayerTooLarge, DigestMismatch (diff_id) or LayoutError (corrupt/truncated stream);
    on error `dest` may hold a partial tree: the caller unpacks into a temporary directory."""
    os.makedirs(dest, exist_ok=True)
    limit = max_layer_size() if max_size is None else max_size
    raw: IO[bytes] = open(blob, "rb") if isinstance(blob, str) else blob  # noqa: SIM115
    stream: _Chunks | _FileSource | None = None
    ex: _Extractor | None = None
    try:
        uncompressed = decompressed(raw)
        source = _file_source(uncompressed, limit, what)
        stream = source or _Chunks(uncompressed, limit=limit, what=what, size=_CHUNK)
        ex = _Extractor(dest, mode, what, limit, source)
        name = ""
        try:
            reader = TarReader(stream, source.seek if source is not None else None)
            for entry in reader:
                name = entry.name
                ex.member(reader, entry)
                if batch := reader.files():  # the plain files that follow, in one loop
                    ex.files(batch)
            stream.drain()
        except _decompress_errors() as e:
            raise LayoutError(f"{what}: corrupt or truncated layer tarball ({e or type(e).__name__})") from None
        except ImageError as e:
            if isinstance(e, LayoutError) and not str(e).startswith(what):
                raise LayoutError(f"{what}: corrupt or truncated layer tarball ({e})") from None
            if isinstance(e, UnsafeLayer) and not str(e).startswith(what):
                raise UnsafeLayer(f"{what}: {e}") from None
            raise
        except OSError as e:
            name = ex.at or name
            if "zstd" in type(e).__module__ or "zstd" in str(e).lower() or type(e).__name__ == "ZstdError":
                raise LayoutError(f"{what}: corrupt zstd stream ({e})") from None
            if isinstance(e, NotBelow):
                raise UnsafeLayer(f"{what}: entry {name!r}: {e}") from None
            raise LayoutError(f"{what}: cannot unpack entry {name!r}: {e.strerror or e} "
                              f"[errno {e.errno}]") from None
        ex.finish()
        digest = stream.hexdigest()
    finally:
        if ex is not None:
            ex.close()
        if stream is not None:
            stream.close()  # the hashing thread ends, whatever happened
        if isinstance(blob, str):
            raw.close()
    result = ex.result
    result.diff_id = "sha256:" + digest
    result.size = stream.count
    if expected_diff_id and result.diff_id != expected_diff_id:
        raise DigestMismatch(f"{what}: uncompressed content is {result.diff_id}, "
                             f"expected diff_id {expected_diff_id}")
    return result


def diff_id_of(blob: str | IO[bytes]) -> str:
    """sha256 of the uncompressed content of a layer blob (without unpacking it)."""
    raw: IO[bytes] = open(blob, "rb") if isinstance(blob, str) else blob  # noqa: SIM115
    stream: _Chunks | None = None
    try:
        stream = _Chunks(decompressed(raw), size=_CHUNK)
        try:
            stream.drain()
        except _decompress_errors() as e:
            raise LayoutError(f"corrupt or truncated layer blob ({e or type(e).__name__})") from None
        return "sha256:" + stream.hexdigest()
    finally:
        if stream is not None:
            stream.close()
        if isinstance(blob, str):
            raw.close()


def flatten(blobs: Iterable[str], dest: str, what: str = "image") -> list[str]:
    """Apply layer blobs (bottom first) onto `dest`: a single rootfs with whiteouts applied.
    Returns what was skipped."""
    skipped: list[str] = []
    for i, blob in enumerate(blobs):
        skipped += unpack_layer(blob, dest, mode="apply", what=f"{what} layer {i}").skipped
    return skipped


# -- reading overlay-ready layer directories ------------------------------------------------------------------


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def pack_dir(src: str, out: BinaryIO, *, compress: str = "gzip",
             owner_of: Callable[[str], tuple[int, int] | None] | None = None) -> None:
    """A layer tarball of directory `src` (overlay whiteouts and opaque dirs turned back into OCI
    `.wh.` entries), sorted, written to `out`; compress: gzip|none. `owner_of(relative path)` may give an
    owner (uid, gid) to record instead of the file's own (COPY --chown, which needs no root)."""

    def info(full: str, rel: str) -> tarfile.TarInfo:
        ti = tf.gettarinfo(full, arcname=rel)
        who = owner_of(rel) if owner_of is not None else None
        if who is not None:
            ti.uid, ti.gid, ti.uname, ti.gname = who[0], who[1], "", ""
        return ti

    target: IO[bytes] = cast(IO[bytes], gzip.GzipFile(fileobj=out, mode="wb", mtime=0)) if compress == "gzip" else out
    try:
        with tarfile.open(fileobj=target, mode="w|", format=tarfile.PAX_FORMAT) as tf:
            for dirpath, dirnames, filenames in os.walk(src):
                dirnames.sort()
                rel_dir = os.path.relpath(dirpath, src)
                if rel_dir != "." and is_opaque(dirpath):
                    tf.addfile(_marker(os.path.join(rel_dir, OPAQUE_MARKER)))
                for name in sorted(filenames) + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
                    full = os.path.join(dirpath, name)
                    rel = os.path.normpath(os.path.join(rel_dir, name))
                    st = os.lstat(full)
                    if is_whiteout(st):
                        tf.addfile(_marker(os.path.join(os.path.dirname(rel), WHITEOUT_PREFIX + name)))
                        continue
                    ti = info(full, rel)
                    if ti.isreg():
                        with open(full, "rb") as f:
                            tf.addfile(ti, f)
                    else:
                        tf.addfile(ti)
                for d in dirnames:
                    full = os.path.join(dirpath, d)
                    if not os.path.islink(full):
                        tf.addfile(info(full, os.path.normpath(os.path.join(rel_dir, d))))
    finally:
        if target is not out:
            target.close()


def _marker(name: str) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(os.path.normpath(name))
    ti.mode = 0o600
    return ti
