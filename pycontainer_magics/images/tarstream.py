"""A one-pass tar reader made for unpacking layers: it reads the uncompressed stream in large chunks and hands
out each entry's data as views of those chunks, so a file's bytes are copied once (into the kernel) and an
entry's header costs a few slices — where `tarfile`'s stream mode re-copies its whole read buffer for every
512-byte header and builds its members through several layers of Python calls (ten times `tar -x`'s time on
a layer of many small files).

Formats: ustar/POSIX (name prefix), pax extended and global headers (path, linkpath, size, uid, gid, mtime,
SCHILY.xattr.*), GNU long names and links, GNU sparse files (old GNU headers and pax 0.0, 0.1 and 1.0 maps),
GNU base-256 numbers: what Docker, BuildKit, Go's archive/tar and GNU tar write. Checksums are verified (a
corrupt header fails; `tarfile` would stop there silently). The archive ends at its first zero block or at a
clean end of the stream between entries. Pax and long-name headers over 1 MiB are refused before they are read
(a gzip bomb of a header would otherwise take the kernel's memory), as Go's archive/tar does.

Knows nothing of files on disk: images/unpack.py writes what this reads.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from zlib import adler32

from . import native
from .errors import LayoutError, UnsafeLayer

BLOCK = 512
MAX_SPECIAL_HEADER = 1 << 20
_ZERO_BLOCK = bytes(BLOCK)
Buffer = bytes | bytearray | memoryview

# entry kinds (what an entry makes)
FILE, DIR, SYMLINK, HARDLINK, CHAR, BLOCKDEV, FIFO, OTHER = (
    "file", "dir", "symlink", "hardlink", "char", "block", "fifo", "other")
_KINDS = {ord("0"): FILE, 0: FILE, ord("7"): FILE, ord("5"): DIR, ord("2"): SYMLINK, ord("1"): HARDLINK,
          ord("3"): CHAR, ord("4"): BLOCKDEV, ord("6"): FIFO, ord("S"): FILE}
_HEADER_ONLY = frozenset((DIR, SYMLINK, HARDLINK, CHAR, BLOCKDEV, FIFO))  # their size field means nothing
_PAX, _PAX_GLOBAL, _PAX_SOLARIS, _LONGNAME, _LONGLINK, _OLD_SPARSE = (ord(c) for c in "xgXLKS")
_SPECIAL = {_PAX: "pax", _PAX_GLOBAL: "pax global", _PAX_SOLARIS: "pax", _LONGNAME: "GNU long name",
            _LONGLINK: "GNU long link"}
_POSIX_MAGIC = b"ustar\x00"
_REGULAR = ord("0")


@dataclass(slots=True)
class Entry:
    name: str
    kind: str  # FILE, DIR, ... (OTHER: a type this reader does not know; `type` says which)
    type: str  # the header's type flag, for messages
    mode: int
    uid: int
    gid: int
    mtime: int | float
    size: int  # bytes of data in the stream
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    xattrs: dict[str, bytes] | None = None  # SCHILY.xattr.* from pax headers
    sparse: list[tuple[int, int]] | None = None  # (offset, length) of the data segments of a sparse file
    realsize: int = 0  # a sparse file's size (holes included)


# A plain file from the fast lane (TarReader.files): name (bytes), mode, uid, gid, mtime, data (a view of the chunk)
PlainFile = tuple[bytes, int, int, int, int | float, memoryview]


class _Truncated(Exception):
    pass


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _cstr(field: bytes) -> bytes:
    return field.partition(b"\0")[0]


def _num(field: bytes) -> int:
    """A numeric header field: octal digits (spaces and NULs around them; what follows a NUL ignored), or GNU
    base-256 for large values. Only digits: Python's int(x, 8) also takes `0o3`, `0_3`, `+3`, `-0` and
    tabs, which GNU tar and Go's archive/tar refuse."""
    first = field[0]
    if first == 0o200 or first == 0o377:
        n = int.from_bytes(field[1:], "big")
        return n - 256 ** (len(field) - 1) if first == 0o377 else n
    text = field.strip(b" \0").partition(b"\0")[0].rstrip(b" ")
    if not text:
        return 0
    try:
        if text.isdigit():
            return int(text, 8)
    except ValueError:  # an 8 or a 9
        pass
    raise LayoutError(f"corrupt tar header: {field!r} is not an octal number")


_TIME_RANGE = 1 << 63  # a file's time in seconds: what a 64-bit time_t holds (utime refuses more)
_ID_LIMIT = (1 << 32) - 1  # uid/gid: 2**32-1 is (uid_t)-1, which chown takes as "leave it"


def _time(value: int | float, what: object) -> int | float:
    """An mtime a file can have (-2**63 <= t < 2**63 seconds), else LayoutError (inf and nan included)."""
    if -_TIME_RANGE <= value < _TIME_RANGE:
        return value
    raise LayoutError(f"corrupt tar header: mtime {what!r} out of range")


def _owner(value: int, key: str) -> int:
    if 0 <= value < _ID_LIMIT:
        return value
    raise LayoutError(f"corrupt tar header: {key} {value} (an owner is 0 to {_ID_LIMIT - 1})")


# name, mode+uid+gid (one field: the three repeat from entry to entry, so they are parsed once per distinct value),
# size, mtime, chksum, typeflag, linkname, magic+version, (uname, gname: not used), devmajor, devminor, prefix
# (POSIX; GNU keeps times there)
_HEADER = struct.Struct("100s24s12s12s8sB100s8s64x8s8s155s")
_IDS_KEPT = 256  # distinct mode/uid/gid fields remembered
# The fast lane's views: a pax header's size and checksum fields (its body, one mtime record, at most _PAX_BODY
# bytes), and a file's header without the fields a plain file does not use (name, mode+uid+gid, size, mtime,
# chksum, typeflag, magic+version, prefix)
_PAX_BODY = 64
_PAX_HEAD = struct.Struct("124x12s12x8s")
_LANE_HEADER = struct.Struct("100s24s12s12s8sB100x8s80x155s")
_SPACES = b" " * 8


def _signed_checksum_ok(block: Buffer, stored: int) -> bool:
    """Some old tars summed the header as signed chars (the checksum field counted as spaces)."""
    raw = bytes(block)
    return stored == sum(b - 256 if b > 127 else b for b in raw[:148] + _SPACES + raw[156:])


_TYPE_CHARS = [chr(i) for i in range(256)]


class TarReader:
    """`for entry in TarReader(next_chunk)` yields the archive's entries; `data(entry)` gives its bytes as views,
    in order (what is not read before the next entry is skipped). `next_chunk()` returns the next piece of the
    stream (empty at its end); a piece must stay valid until the one after it was asked for."""

    def __init__(self, next_chunk: Callable[[], Buffer], seek: Callable[[int], None] | None = None):
        self._next_chunk = next_chunk
        self._seek = seek  # makes the stream's next chunk start at that offset (a file: see `span`)
        self._buf = memoryview(b"")
        self._base = 0  # the stream offset of the current chunk's first byte
        self._pos = 0
        self._end = 0
        self._left = 0  # the current entry's data not yet handed out
        self._pad = 0  # padding after it
        self.globals: dict[str, bytes] = {}
        self._seen_ids: dict[bytes, tuple[int, int, int]] = {}  # mode+uid+gid field -> numbers
        self._pax_seen: tuple[bytes, int] = (b"", 0)  # the last pax header block the fast lane checked, its size

    # -- the stream -------------------------------------------------------------------------------------------
    def _more(self) -> bool:
        chunk = memoryview(self._next_chunk())
        if not len(chunk):
            return False
        self._base += self._end
        self._buf, self._pos, self._end = chunk, 0, len(chunk)
        return True

    def _take(self, n: int) -> tuple[Buffer, int]:
        """The next `n` bytes, as (buffer, offset): a view into the current chunk, or a copy of the pieces
        when they straddle chunks."""
        if self._end - self._pos >= n:
            off = self._pos
            self._pos += n
            return self._buf, off
        pieces = [bytes(self._buf[self._pos:self._end])]
        got = self._end - self._pos
        self._pos = self._end
        while got < n:
            if not self._more():
                raise _Truncated
            take = min(n - got, self._end)
            pieces.append(bytes(self._buf[:take]))
            got += take
            self._pos = take
        return b"".join(pieces), 0

    def _skip(self, n: int) -> None:
        while n:
            avail = self._end - self._pos
            if avail >= n:
                self._pos += n
                return
            n -= avail
            self._pos = self._end
            if not self._more():
                raise _Truncated

    def _bytes(self, n: int) -> bytes:
        buf, off = self._take(n)
        self._skip(-n % BLOCK)
        return bytes(memoryview(buf)[off:off + n])

    def span(self) -> tuple[memoryview, int, int]:
        """The current entry's data as (the part already read, a view valid until the next chunk; the stream
        offset where the rest begins; the rest's length), for a reader made with `seek`: the rest is skipped
        in the stream, unread — the caller copies it from the source itself (kernel-side, from a file)."""
        assert self._seek is not None
        take = min(self._left, self._end - self._pos)
        head = self._buf[self._pos:self._pos + take]
        self._pos += take
        rest = self._left - take
        self._left = 0
        offset = self._base + self._pos
        if rest:  # the stream goes on past the rest and its padding
            self._base, self._pos, self._end = offset + rest + self._pad, 0, 0
            self._pad = 0
            self._seek(self._base)
        return head, offset, rest

    def data(self, entry: Entry) -> Iterator[memoryview]:
        """The entry's data, in views of the stream's chunks (each valid until the next is asked for)."""
        try:
            while self._left:
                avail = self._end - self._pos
                if not avail:
                    if not self._more():
                        raise _Truncated
                    avail = self._end
                take = avail if avail < self._left else self._left
                off = self._pos
                self._pos += take
                self._left -= take
                yield self._buf[off:off + take]
        except _Truncated:
            raise LayoutError(f"tar stream ends inside the data of {entry.name!r}") from None

    # -- headers ----------------------------------------------------------------------------------------------
    # The per-entry path is written out inline (a Python call costs about a tenth of a header here): the usual
    # header is a view into the chunk, its octal fields parsed in place, its checksum summed by adler32.
    def __iter__(self) -> Iterator[Entry]:
        try:
            while True:
                n = self._left + self._pad
                if n <= self._end - self._pos:
                    self._pos += n
                else:
                    self._skip(n)
                self._left = self._pad = 0
                entry = self._next()
                if entry is None:
                    return
                yield entry
        except _Truncated:
            raise LayoutError("tar stream ends inside a header") from None

    def whole(self) -> memoryview | None:
        """The current entry's data when all of it is in the chunk in hand (then it is consumed), else None
        (read it with `data`)."""
        left = self._left
        pos = self._pos
        if self._end - pos < left:
            return None
        self._pos = pos + left
        self._left = 0
        return self._buf[pos:pos + left]

    def files(self) -> list[PlainFile]:
        """The fast lane: the run of plain files that comes next, parsed in one loop — each a regular file ('0')
        whose headers and data lie in the chunk in hand, with at most a pax header holding its mtime alone (what
        this project's packer and most tars write for a small file), no global pax headers in force — as
        (name, mode, uid, gid, mtime, data) with the name as bytes and the data a view of the chunk. It stops
        before anything else (that entry is read by iterating, as usual), so an entry is read the same way by
        either path: the same checksums, numbers and names, the same errors."""
        out: list[PlainFile] = []
        if self.globals:
            return out
        buf, pos, end = self._buf, self._pos, self._end
        skip = self._left + self._pad  # the data and padding of the entry iterated last
        if skip > end - pos:
            return out
        pos += skip
        self._pos = pos
        self._left = self._pad = 0
        if native.lane is not None:  # the same loop in C (images/native/tarlane.c)
            out, self._pos = native.lane.files(buf, pos, end)
            return out
        seen = self._seen_ids
        pax_block, pax_size = self._pax_seen
        while end - pos >= BLOCK:
            mtime: int | float | None = None
            if buf[pos + 156] == _PAX:  # its one record must be the mtime: "NN mtime=VALUE\n" filling the body
                if end - pos < 3 * BLOCK:
                    return out
                header = bytes(buf[pos:pos + BLOCK])  # (a memoryview compares item by item: 5x slower)
                if header == pax_block:  # the same bytes as a pax header checked before: the same size
                    size = pax_size
                else:
                    field, chk = _PAX_HEAD.unpack_from(buf, pos)
                    t, f = chk.rstrip(b"\0 "), field.rstrip(b"\0 ")
                    if not t.isdigit() or not f.isdigit():
                        return out
                    try:
                        stored, size = int(t, 8), int(f, 8)
                    except ValueError:
                        return out
                    if stored != (adler32(header[:256]) & 0xFFFF) + (adler32(header[256:]) & 0xFFFF) + 254 - \
                            sum(chk) or not 0 < size <= _PAX_BODY:
                        return out
                    pax_block, pax_size = self._pax_seen = header, size
                body = bytes(buf[pos + BLOCK:pos + BLOCK + size])
                sp = body.find(b" ")
                length = body[:sp]
                if not body.startswith(b"mtime=", sp + 1) or not length.isdigit() or int(length) != size or \
                        body[-1] != 10:
                    return out
                value = body[sp + 7:-1]
                secs, _, frac = value.partition(b".")  # SECONDS[.FRACTION], in range: else as _pax_mtime says
                if not secs.isdigit() or len(secs) > 18 or frac and not frac.isdigit():
                    return out
                mtime = float(value)
                at = pos + 2 * BLOCK
            else:
                at = pos
            h = _LANE_HEADER.unpack_from(buf, at)
            type_ = h[5]
            # octal digits only (anything else: read by iterating, which refuses what it must)
            t, s, m = h[4].rstrip(b"\0 "), h[2].rstrip(b"\0 "), h[3].rstrip(b"\0 ")
            if not t.isdigit() or not s.isdigit() or not m.isdigit():
                return out
            try:
                stored, size, umtime = int(t, 8), int(s, 8), int(m, 8)
            except ValueError:
                return out
            if stored != (adler32(buf[at:at + 256]) & 0xFFFF) + (adler32(buf[at + 256:at + BLOCK]) & 0xFFFF) + \
                    254 - sum(h[4]):
                return out
            at += BLOCK
            if type_ != _REGULAR:
                return out
            after = at + size + (-size % BLOCK)
            if after > end:
                return out
            name = h[0].partition(b"\0")[0]
            if h[6][:6] == _POSIX_MAGIC and h[7][0]:
                name = _cstr(h[7]) + b"/" + name
            ids = seen.get(h[1])
            if ids is None:
                try:
                    ids = self._ids(h[1])
                except LayoutError:
                    return out
            out.append((name, ids[0], ids[1], ids[2], umtime if mtime is None else mtime, buf[at:at + size]))
            pos = self._pos = after
        return out

    def _ids(self, field: bytes) -> tuple[int, int, int]:
        """Mode, uid and gid from their three fields (24 bytes), remembered: a layer has few distinct ones."""
        ids = _num(field[:8]), _owner(_num(field[8:16]), "uid"), _owner(_num(field[16:]), "gid")
        if len(self._seen_ids) >= _IDS_KEPT:
            self._seen_ids.clear()
        self._seen_ids[field] = ids
        return ids

    def _next(self) -> Entry | None:
        pax: dict[str, bytes] = dict(self.globals) if self.globals else {}
        pax_sparse: list[int] = []  # GNU.sparse.offset / numbytes pairs of the 0.0 format, in order
        longname = longlink = None
        while True:
            pos = self._pos
            buf: Buffer
            if self._end - pos >= BLOCK:  # the usual case
                buf, off = self._buf, pos
                self._pos = pos + BLOCK
            elif pos == self._end and not self._more():
                return None  # a clean end between entries (no end-of-archive blocks)
            else:
                buf, off = self._take(BLOCK)
            h = _HEADER.unpack_from(buf, off)
            type_ = h[5]
            block = buf[off:off + BLOCK]
            if type_ == 0 and block == _ZERO_BLOCK:
                return None  # end of archive (`tar` stops here too)
            # octal digits (the usual field: parsed in place; anything else by _num, which may refuse it)
            field = h[4]
            t = field.rstrip(b"\0 ")
            try:
                stored = int(t, 8) if t.isdigit() else _num(field)
            except ValueError:
                stored = _num(field)
            # the exact byte sum with the checksum field counted as spaces: adler32's low half is 1 + the byte
            # sum modulo 65521, exact for a half block (256 * 255 < 65521)
            if stored != (adler32(block[:256]) & 0xFFFF) + (adler32(block[256:]) & 0xFFFF) + 254 - sum(field) and \
                    not _signed_checksum_ok(block, stored):
                raise LayoutError("corrupt tar header (checksum mismatch)")
            t = h[2].rstrip(b"\0 ")
            try:
                size = int(t, 8) if t.isdigit() else _num(h[2])
            except ValueError:
                size = _num(h[2])
            if type_ in _SPECIAL:
                if size > MAX_SPECIAL_HEADER:
                    raise UnsafeLayer(f"a {_SPECIAL[type_]} header of {size} bytes "
                                      f"(at most {MAX_SPECIAL_HEADER} accepted)")
                if size < 0:
                    raise LayoutError("corrupt tar header (negative size)")
                pos = self._pos
                end = pos + size + (-size % BLOCK)
                if end <= self._end:  # the body and its padding in this chunk
                    body = bytes(self._buf[pos:pos + size])
                    self._pos = end
                else:
                    body = self._bytes(size)
                if type_ == _PAX:
                    _parse_pax(body, pax, pax_sparse)
                elif type_ == _LONGNAME:
                    longname = _text(_cstr(body))
                elif type_ == _LONGLINK:
                    longlink = _text(_cstr(body))
                elif type_ == _PAX_GLOBAL:
                    _parse_pax(body, self.globals, [])
                    pax.update(self.globals)
                else:
                    _parse_pax(body, pax, pax_sparse)
                continue
            # the entry (inline: a call with its eight arguments cost a tenth of a header)
            kind = _KINDS.get(type_, OTHER)
            if longname is None:
                name = h[0].partition(b"\0")[0]
                if h[7][:6] == _POSIX_MAGIC and h[10][0]:
                    name = _cstr(h[10]) + b"/" + name
                longname = name.decode("utf-8", "surrogateescape")
            ids = self._seen_ids.get(h[1]) or self._ids(h[1])
            t = h[3].rstrip(b"\0 ")
            try:
                mtime = int(t, 8) if t.isdigit() else _time(_num(h[3]), h[3])
            except ValueError:
                mtime = _num(h[3])  # an 8 or a 9: refused
            e = Entry(longname, kind, _TYPE_CHARS[type_], ids[0], ids[1], ids[2], mtime, size)
            if kind == SYMLINK or kind == HARDLINK:
                e.linkname = longlink if longlink is not None else _text(_cstr(h[6]))
            elif kind == CHAR or kind == BLOCKDEV:
                e.devmajor, e.devminor = _num(h[8]), _num(h[9])
                if not (0 <= e.devmajor < 1 << 31 and 0 <= e.devminor < 1 << 31):  # os.makedev's range
                    raise LayoutError(f"entry {e.name!r}: device number {e.devmajor}:{e.devminor} out of range")
            elif type_ == 0 and longname.endswith("/"):
                e.kind = DIR
            if not pax:
                gnu_sparse = False
            elif len(pax) == 1 and "mtime" in pax:  # the usual pax header: sub-second mtime alone
                e.mtime = _pax_mtime(pax["mtime"])
                gnu_sparse = False
            else:
                gnu_sparse = _apply_pax(e, pax)
            if e.kind in _HEADER_ONLY:
                e.size = 0
            if e.size < 0:
                raise LayoutError(f"entry {e.name!r}: negative size")
            self._left, self._pad = e.size, -e.size % BLOCK
            if type_ == _OLD_SPARSE:
                self._old_gnu_sparse(e, buf, off)
            elif pax_sparse:
                e.sparse = list(zip(pax_sparse[0::2], pax_sparse[1::2], strict=False))
            elif not gnu_sparse:
                pass
            elif "GNU.sparse.map" in pax:
                nums = [_pax_int("GNU.sparse.map", x) for x in pax["GNU.sparse.map"].split(b",") if x.strip()]
                e.sparse = list(zip(nums[0::2], nums[1::2], strict=False))
            elif pax.get("GNU.sparse.major") == b"1" and pax.get("GNU.sparse.minor") == b"0":
                self._sparse_1_0(e)
            if e.sparse is not None:
                _check_sparse(e)
            return e

    def _old_gnu_sparse(self, e: Entry, header: Buffer, off: int) -> None:
        buf = bytes(memoryview(header)[off:off + BLOCK])
        segments = [(_num(buf[386 + 24 * i:398 + 24 * i]), _num(buf[398 + 24 * i:410 + 24 * i])) for i in range(4)]
        extended = buf[482]
        e.realsize = _num(buf[483:495])
        blocks = 0
        while extended:
            blocks += 1
            if blocks * BLOCK > MAX_SPECIAL_HEADER:
                raise UnsafeLayer(f"entry {e.name!r}: a sparse map of more than {MAX_SPECIAL_HEADER} bytes")
            ext = self._bytes(BLOCK)  # extended headers come before the data, outside its size
            segments += [(_num(ext[24 * i:12 + 24 * i]), _num(ext[12 + 24 * i:24 + 24 * i])) for i in range(21)]
            extended = ext[504]
        e.sparse = [(o, n) for o, n in segments if n]

    def _sparse_1_0(self, e: Entry) -> None:
        """The map is the start of the data: decimal lines (count, then offset/length pairs), in whole blocks."""
        text = b""
        while True:
            if len(text) >= MAX_SPECIAL_HEADER:
                raise UnsafeLayer(f"entry {e.name!r}: a sparse map of more than {MAX_SPECIAL_HEADER} bytes")
            if self._left < BLOCK:
                raise LayoutError(f"entry {e.name!r}: truncated sparse map")
            text += self._bytes(BLOCK)
            self._left -= BLOCK
            lines = text.split(b"\n")
            try:
                count = int(lines[0])
            except ValueError:
                raise LayoutError(f"entry {e.name!r}: corrupt sparse map") from None
            if len(lines) - 1 >= 1 + 2 * count:
                nums = [int(x) for x in lines[1:1 + 2 * count]]
                break
        e.size = self._left
        e.sparse = list(zip(nums[0::2], nums[1::2], strict=True))


def _parse_pax(body: bytes, into: dict[str, bytes], sparse: list[int]) -> None:
    """Records of `LEN KEY=VALUE\\n`; the values stay bytes (xattrs are binary). Parsing stops quietly where
    no record starts (padding after the last one)."""
    pos, n = 0, len(body)
    while pos < n:
        sp = body.find(b" ", pos)
        length = body[pos:sp]
        if sp <= pos or not length.isdigit():
            return
        eq = body.find(b"=", sp + 1)
        if eq <= sp + 1:
            return
        end = pos + int(length)
        if end <= eq or end > n or body[end - 1] != 10:
            raise LayoutError("corrupt pax header")
        key, value = body[sp + 1:eq].decode("utf-8", "surrogateescape"), body[eq + 1:end - 1]
        if key == "GNU.sparse.offset" or key == "GNU.sparse.numbytes":
            sparse.append(_pax_int(key, value))
        else:
            into[key] = value
        pos = end


def _pax_int(key: str, value: bytes) -> int:
    """Decimal digits only (int() would take signs, spaces and underscores)."""
    if value.isdigit():
        return int(value)
    raise LayoutError(f"corrupt pax header: {key}={value!r}")


def _pax_mtime(value: bytes) -> float:
    """`[-]SECONDS[.FRACTION]`, as Go's archive/tar reads it (float() would take inf, nan, 1e30, 1_0), within
    what a file's time can hold."""
    secs, _, frac = value.partition(b".")
    if secs[:1] == b"-":
        secs = secs[1:]
    if not secs.isdigit() or frac and not frac.isdigit():
        raise LayoutError(f"corrupt pax header: mtime={value!r}")
    return _time(float(value), value)


def _apply_pax(e: Entry, pax: dict[str, bytes]) -> bool:
    """Pax records onto the entry; True when GNU sparse records are among them."""
    gnu_sparse = False
    for key, value in pax.items():
        if key == "mtime":
            e.mtime = _pax_mtime(value)
        elif key == "path":
            e.name = _text(value)
        elif key == "linkpath":
            e.linkname = _text(value)
        elif key == "size":
            e.size = _pax_int(key, value)
        elif key == "uid":
            e.uid = _owner(_pax_int(key, value), key)
        elif key == "gid":
            e.gid = _owner(_pax_int(key, value), key)
        elif key.startswith("SCHILY.xattr."):
            if e.xattrs is None:
                e.xattrs = {}
            e.xattrs[key[13:]] = value
        elif key.startswith("GNU.sparse."):
            gnu_sparse = True
    if gnu_sparse:
        if "GNU.sparse.name" in pax:
            e.name = _text(pax["GNU.sparse.name"])
        for key in ("GNU.sparse.size", "GNU.sparse.realsize"):
            if key in pax:
                e.realsize = _pax_int(key, pax[key])
    return gnu_sparse


def _check_sparse(e: Entry) -> None:
    assert e.sparse is not None
    if any(o < 0 or n < 0 for o, n in e.sparse) or sum(n for _, n in e.sparse) > e.size or e.realsize < 0:
        raise LayoutError(f"entry {e.name!r}: corrupt sparse map")
    e.realsize = max([e.realsize] + [o + n for o, n in e.sparse])
