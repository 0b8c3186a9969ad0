"""Safe unpacking of layer tarballs (plain, gzip, zstd) into a directory.

Two modes:
  overlay  the layer's own directory, ready to be an overlayfs lower layer: OCI whiteouts (`.wh.NAME`)
           become overlay whiteouts (a 0/0 character device), opaque markers (`.wh..wh..opq`) the
           `trusted.overlay.opaque=y` xattr on their directory. Needs root (mknod, trusted xattrs).
  apply    onto a flattened rootfs that already holds the layers below: whiteouts delete, an opaque
           marker empties its directory of what lower layers put there.

Nothing is written outside `dest`: `..` components are refused, no entry is written through a
symlink (a parent that is a symlink is refused, a final component that is one is replaced), hard links
must point inside the layer, device nodes are made only as root (skipped and reported otherwise),
ownership is kept only as root. The sha256 of the uncompressed stream is the layer's diff_id, checked
against the expected one.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import queue
import shutil
import stat
import tarfile
import threading
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO, cast

from .errors import DigestMismatch, ImageError, LayoutError, UnsafeLayer

WHITEOUT_PREFIX = ".wh."
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

    def __init__(self, inner: IO[bytes]):
        self.inner = inner
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
        return zstandard.ZstdDecompressor().stream_reader(buf, read_across_frames=True)  # type: ignore[no-any-return]
    return buf


def _components(name: str, what: str) -> list[str]:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeLayer(f"{what}: entry {name!r} climbs out of the layer with '..'")
    return parts


class _Extractor:
    def __init__(self, dest: str, mode: str, what: str):
        if mode not in ("overlay", "apply"):
            raise ValueError(f"unknown unpack mode {mode!r}")
        self.dest = os.path.abspath(dest)
        self.mode = mode
        self.what = what
        self.root = os.geteuid() == 0
        self.written: set[str] = set()
        self.dirs: list[tuple[str, tarfile.TarInfo]] = []
        self.result = UnpackResult("", 0)

    def parent(self, parts: list[str], name: str) -> str:
        """Make (or check) the parent directories of an entry inside dest, refusing symlinks."""
        d = self.dest
        for p in parts[:-1]:
            d = os.path.join(d, p)
            try:
                st = os.lstat(d)
            except FileNotFoundError:
                os.mkdir(d, 0o755)
                continue
            if stat.S_ISLNK(st.st_mode):
                raise UnsafeLayer(f"{self.what}: entry {name!r} would be written through the symlink "
                                  f"{os.path.relpath(d, self.dest)!r}")
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(d)
                os.mkdir(d, 0o755)
        return d

    @staticmethod
    def remove(path: str) -> None:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)

    def member(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        parts = _components(m.name, self.what)
        if not parts:
            return  # the layer's root itself
        self.result.entries += 1
        parent = self.parent(parts, m.name)
        base = parts[-1]
        rel = "/".join(parts)
        if base == OPAQUE_MARKER:
            self.opaque(parent, "/".join(parts[:-1]))
            return
        if base.startswith(WHITEOUT_PREFIX):
            self.whiteout(os.path.join(parent, base[len(WHITEOUT_PREFIX):]))
            return
        path = os.path.join(parent, base)
        self.written.add(rel)
        if m.isdir():
            if not (os.path.isdir(path) and not os.path.islink(path)):
                self.remove(path)
                os.mkdir(path, 0o700)
            self.dirs.append((path, m))
            return
        self.remove(path)
        if m.isreg():
            src = tf.extractfile(m)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                if src is not None:
                    shutil.copyfileobj(src, out, 1 << 20)
        elif m.issym():
            os.symlink(m.linkname, path)
        elif m.islnk():
            lparts = _components(m.linkname, self.what)
            target = os.path.join(self.dest, *lparts)
            if not lparts or not os.path.lexists(target) or os.path.isdir(target) and not os.path.islink(target):
                raise UnsafeLayer(f"{self.what}: hard link {m.name!r} -> {m.linkname!r}: "
                                  "target not a file of this layer")
            self.parent(lparts, m.linkname)  # refuses a target reached through a symlink
            os.link(target, path, follow_symlinks=False)
            return  # the target's metadata is the link's
        elif m.ischr() or m.isblk():
            if not self.root:
                self.result.skipped.append(f"{rel}: device node {m.devmajor}:{m.devminor} needs root")
                return
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            os.mknod(path, kind | (m.mode & 0o7777), os.makedev(m.devmajor, m.devminor))
        elif m.isfifo():
            os.mkfifo(path, m.mode & 0o7777)
        else:
            raise UnsafeLayer(f"{self.what}: entry {m.name!r} has unsupported tar type {m.type!r}")
        self.metadata(path, m)

    def metadata(self, path: str, m: tarfile.TarInfo) -> None:
        link = m.issym()
        if self.root:
            os.lchown(path, m.uid, m.gid)
            for key, value in m.pax_headers.items():
                if key.startswith("SCHILY.xattr."):
                    try:
                        os.setxattr(path, key[13:], value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
                    except OSError:
                        self.result.skipped.append(f"{m.name}: xattr {key[13:]} not settable here")
        if not link:
            os.chmod(path, m.mode & 0o7777)
        os.utime(path, (m.mtime, m.mtime), follow_symlinks=False)

    def whiteout(self, path: str) -> None:
        self.remove(path)
        if self.mode == "overlay":
            try:
                os.mknod(path, stat.S_IFCHR, os.makedev(0, 0))
            except PermissionError:
                raise ImageError(f"{self.what}: an overlay whiteout needs root (mknod 0/0)") from None

    def opaque(self, parent: str, rel: str) -> None:
        if self.mode == "overlay":
            try:
                os.setxattr(parent, OPAQUE_XATTR, b"y")
            except PermissionError:
                raise ImageError(f"{self.what}: an opaque directory needs root (trusted.* xattr)") from None
            return
        prefix = rel + "/" if rel else ""
        for name in os.listdir(parent):
            if prefix + name not in self.written:
                self.remove(os.path.join(parent, name))

    def finish(self) -> None:
        for path, m in reversed(self.dirs):  # deepest last-written first, so a 0o555 dir is set after its children
            self.metadata(path, m)


def unpack_layer(blob: str | IO[bytes], dest: str, *, mode: str = "overlay", expected_diff_id: str | None = None,
                 what: str = "layer") -> UnpackResult:
    """Unpack a layer tarball (path or binary file object; gzip/zstd/plain) into `dest` (created if
    missing). Raises UnsafeLayer, DigestMismatch (diff_id) or LayoutError (corrupt/truncated stream);
    on error `dest` may hold a partial tree: the caller unpacks into a temporary directory."""
    os.makedirs(dest, exist_ok=True)
    raw: IO[bytes] = open(blob, "rb") if isinstance(blob, str) else blob  # noqa: SIM115
    stream: _Hashing | None = None
    try:
        stream = _Hashing(decompressed(raw))
        ex = _Extractor(dest, mode, what)
        try:
            with tarfile.open(fileobj=stream, mode="r|", errorlevel=2, bufsize=1 << 20) as tf:  # type: ignore[call-overload]
                for m in tf:
                    ex.member(tf, m)
            stream.drain()
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError) as e:
            raise LayoutError(f"{what}: corrupt or truncated layer tarball ({e or type(e).__name__})") from None
        except ImageError:
            raise
        except OSError as e:
            if "zstd" in type(e).__module__ or "zstd" in str(e).lower() or type(e).__name__ == "ZstdError":
                raise LayoutError(f"{what}: corrupt zstd stream ({e})") from None
            raise
        ex.finish()
    finally:
        if stream is not None:
            stream.close()  # the hashing thread ends, whatever happened
        if isinstance(blob, str):
            raw.close()
    ex.result.diff_id = "sha256:" + stream.sha.hexdigest()
    ex.result.size = stream.count
    if expected_diff_id and ex.result.diff_id != expected_diff_id:
        raise DigestMismatch(f"{what}: uncompressed content is {ex.result.diff_id}, "
                             f"expected diff_id {expected_diff_id}")
    return ex.result


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
        return "sha256:" + stream.sha.hexdigest()
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
