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
from .errors import DigestMismatch, ImageError, LayerTooLarge, LayoutError, UnsafeLayer

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
        return cast(IO[bytes], gzip.GzipFile(fileobj=buf, mode="rb"))
    if kind == "zstd":
        try:
            import zstandard
        except ImportError:
            raise ImageError("layer is zstd-compressed: install the 'zstandard' package") from None
        reader: IO[bytes] = zstandard.ZstdDecompressor().stream_reader(buf, read_across_frames=True)
        return reader
    return cast(IO[bytes], buf)


def _components(name: str, what: str) -> list[str]:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeLayer(f"{what}: entry {name!r} climbs out of the layer with '..'")
    return parts


class _BoundedTarInfo(tarfile.TarInfo):
    """Refuses pax and GNU long-name headers over 1 MiB before tarfile reads them into memory whole (a gzip
    bomb of a header would otherwise take the kernel's RAM): Go's archive/tar, which Docker and containerd
    unpack with, has the same limit."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> Any:
        if self.type in _SPECIAL_HEADERS and self.size > MAX_SPECIAL_HEADER:
            raise UnsafeLayer(f"a {_SPECIAL_HEADERS[self.type]} header of {self.size} bytes "
                              f"(at most {MAX_SPECIAL_HEADER} accepted)")
        return super()._proc_member(tarfile_)  # type: ignore[misc]


MAX_SPECIAL_HEADER = 1 << 20
_SPECIAL_HEADERS = {tarfile.XHDTYPE: "pax", tarfile.XGLTYPE: "pax global", tarfile.SOLARIS_XHDTYPE: "pax",
                    tarfile.GNUTYPE_LONGNAME: "GNU long name", tarfile.GNUTYPE_LONGLINK: "GNU long link"}


class _Extractor:
    """Writes tar members below `dest` through directory fds (linux/fdtree.py): no symlink is followed at any
    step, metadata lands on the inode that was made, a directory's deferred mode on that directory or nowhere.
    Whiteouts mean something only in the layer modes; `archive` (ADD) refuses `.wh.` names."""

    def __init__(self, dest: str, mode: str, what: str, max_size: int | None):
        if mode not in ("overlay", "apply", "archive"):
            raise ValueError(f"unknown unpack mode {mode!r}")
        self.tree = DirTree(dest)
        self.mode = mode
        self.what = what
        self.root = os.geteuid() == 0
        self.max_size = max_size
        self.written_bytes = 0
        self.written: set[str] = set()
        self.dirs: list[tuple[list[str], tarfile.TarInfo, tuple[int, int]]] = []
        self.result = UnpackResult("", 0)

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
        self.tree.remove(parent, name)

    def member(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        parts = _components(m.name, self.what)
        if not parts:
            return  # the layer's root itself
        self.result.entries += 1
        base = parts[-1]
        if base.startswith(WHITEOUT_PREFIX):
            if self.mode == "archive":
                raise UnsafeLayer(f"{self.what}: entry {m.name!r}: a name starting with '.wh.' reads as a whiteout "
                                  "in an image layer; an archive added to an image cannot hold one")
            self.special(parts, m.name)
            return
        parent = self.parent(parts, m.name)
        self.written.add("/".join(parts))
        old = self.tree.lstat(parent, base)
        if m.isdir():
            if old is None or not stat.S_ISDIR(old.st_mode):
                if old is not None:
                    self.remove(parts, parent, base)
                os.mkdir(base, 0o700, dir_fd=parent)
            fd = open_node(parent, base)
            try:
                st = os.fstat(fd)
            finally:
                os.close(fd)
            self.dirs.append((parts, m, (st.st_dev, st.st_ino)))
            return
        if old is not None:
            self.remove(parts, parent, base)
        if m.isreg():
            self.regular(tf, m, parent, base)
            return
        if m.issym():
            os.symlink(m.linkname, base, dir_fd=parent)
            self.symlink_metadata(parent, base, m)
            return
        if m.islnk():
            self.hardlink(m, parent, base)
            return  # the target's metadata is the link's
        if m.ischr() or m.isblk():
            if not self.root:
                self.result.skipped.append(f"{'/'.join(parts)}: device node {m.devmajor}:{m.devminor} needs root")
                return
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            os.mknod(base, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=parent)
        elif m.isfifo():
            os.mkfifo(base, 0o600, dir_fd=parent)
        else:
            raise UnsafeLayer(f"{self.what}: entry {m.name!r} has unsupported tar type {m.type!r}")
        fd = open_node(parent, base)  # O_PATH: the node itself, a device is not opened
        try:
            self.metadata(fd, parent, base, m)
        finally:
            os.close(fd)

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

    def regular(self, tf: tarfile.TarFile, m: tarfile.TarInfo, parent: int, base: str) -> None:
        src = tf.extractfile(m)
        fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent)
        try:
            if src is not None:
                while chunk := src.read(1 << 20):
                    self.count(len(chunk), m.name)
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
            self.metadata(fd, parent, base, m)
        finally:
            os.close(fd)

    def count(self, n: int, name: str) -> None:
        """Bytes written to disk, bounded (a sparse entry can expand far beyond the stream it came in)."""
        self.written_bytes += n
        if self.max_size is not None and self.written_bytes > self.max_size:
            raise LayerTooLarge(f"{self.what}: more than {self.max_size} bytes once unpacked (at {name!r}); "
                                "raise the limit with PYCONTAINER_MAX_LAYER_SIZE if this layer is genuine")

    def hardlink(self, m: tarfile.TarInfo, parent: int, base: str) -> None:
        lparts = _components(m.linkname, self.what)
        refused = UnsafeLayer(f"{self.what}: hard link {m.name!r} -> {m.linkname!r}: target not a file of this layer")
        if not lparts:
            raise refused
        try:
            tparent = self.tree.open_dir(lparts[:-1])
        except SymlinkOnPath as e:
            raise UnsafeLayer(f"{self.what}: hard link {m.name!r} -> {m.linkname!r} goes through the symlink "
                              f"{e.where!r}") from None
        except (FileNotFoundError, NotADirectoryError):
            raise refused from None
        try:
            st = self.tree.lstat(tparent, lparts[-1])
            if st is None or stat.S_ISDIR(st.st_mode):
                raise refused
            os.link(lparts[-1], base, src_dir_fd=tparent, dst_dir_fd=parent, follow_symlinks=False)
        finally:
            os.close(tparent)

    def metadata(self, fd: int, parent: int, base: str, m: tarfile.TarInfo) -> None:
        """Owner (root only), xattrs, mode, mtime on the inode `fd` holds."""
        if self.root:
            os.chown(fd_path(fd), m.uid, m.gid)  # first: chown drops set-id bits and file capabilities
            self.xattrs(m, f"{fd_path(parent)}/{base}", follow=False)
        set_owner_mode_times(fd, uid=None, gid=None, mode=m.mode & 0o7777, mtime=m.mtime)

    def symlink_metadata(self, parent: int, base: str, m: tarfile.TarInfo) -> None:
        set_symlink_owner_times(parent, base, uid=m.uid if self.root else None, gid=m.gid if self.root else None,
                                mtime=m.mtime)
        if self.root:
            self.xattrs(m, f"{fd_path(parent)}/{base}", follow=False)

    def xattrs(self, m: tarfile.TarInfo, path: str, follow: bool) -> None:
        for key, value in m.pax_headers.items():
            if key.startswith("SCHILY.xattr."):
                try:
                    os.setxattr(path, key[13:], value.encode("utf-8", "surrogateescape"), follow_symlinks=follow)
                except OSError:
                    self.result.skipped.append(f"{m.name}: xattr {key[13:]} not settable here")

    def finish(self) -> None:
        """Directory metadata, deepest last-written first (a 0o555 directory is set after its children), each
        on the directory that entry made — found again without following anything, and skipped if a later
        entry replaced it (by a symlink, a file or another directory)."""
        for parts, m, ident in reversed(self.dirs):
            try:
                fd = self.tree.open_dir(parts)
            except (SymlinkOnPath, FileNotFoundError, NotADirectoryError):
                continue
            try:
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) != ident:
                    continue
                if self.root:
                    os.chown(fd_path(fd), m.uid, m.gid)
                    self.xattrs(m, fd_path(fd), follow=True)  # the magic link leads to the directory itself
                set_owner_mode_times(fd, uid=None, gid=None, mode=m.mode & 0o7777, mtime=m.mtime)
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
    stream: _Hashing | None = None
    ex: _Extractor | None = None
    try:
        stream = _Hashing(decompressed(raw), limit=limit, what=what)
        ex = _Extractor(dest, mode, what, limit)
        name = ""
        try:
            with tarfile.open(fileobj=stream, mode="r|", errorlevel=2, bufsize=1 << 20,  # type: ignore[call-overload,unused-ignore]
                              tarinfo=_BoundedTarInfo) as tf:
                for m in tf:
                    name = m.name
                    ex.member(tf, m)
            stream.drain()
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError) as e:
            raise LayoutError(f"{what}: corrupt or truncated layer tarball ({e or type(e).__name__})") from None
        except ImageError as e:
            if isinstance(e, UnsafeLayer) and not str(e).startswith(what):
                raise UnsafeLayer(f"{what}: {e}") from None
            raise
        except OSError as e:
            if "zstd" in type(e).__module__ or "zstd" in str(e).lower() or type(e).__name__ == "ZstdError":
                raise LayoutError(f"{what}: corrupt zstd stream ({e})") from None
            if isinstance(e, NotBelow):
                raise UnsafeLayer(f"{what}: entry {name!r}: {e}") from None
            raise LayoutError(f"{what}: cannot unpack entry {name!r}: {e.strerror or e} "
                              f"[errno {e.errno}]") from None
        ex.finish()
    finally:
        if ex is not None:
            ex.close()
        if stream is not None:
            stream.close()  # the hashing thread ends, whatever happened
        if isinstance(blob, str):
            raw.close()
    result = ex.result
    result.diff_id = "sha256:" + stream.sha.hexdigest()
    result.size = stream.count
    if expected_diff_id and result.diff_id != expected_diff_id:
        raise DigestMismatch(f"{what}: uncompressed content is {result.diff_id}, "
                             f"expected diff_id {expected_diff_id}")
    return result


def diff_id_of(blob: str | IO[bytes]) -> str:
    """sha256 of the uncompressed content of a layer blob (without unpacking it)."""
    raw: IO[bytes] = open(blob, "rb") if isinstance(blob, str) else blob  # noqa: SIM115
    stream: _Hashing | None = None
    try:
        stream = _Hashing(decompressed(raw))
        try:
            stream.drain()
        except (EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError) as e:
            raise LayoutError(f"corrupt or truncated layer blob ({e or type(e).__name__})") from None
        return "sha256:" + str(stream.sha.hexdigest())
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
