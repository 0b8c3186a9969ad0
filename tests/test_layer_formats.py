"""The layer unpacker's own tar reader (images/tarstream.py) against what tar writes: every header format
(ustar, pax, GNU, old GNU), long names, base-256 numbers, pax xattrs and global headers, GNU sparse files in
all four map formats, hard links across directories, gzip/zstd with and without zlib-ng — each unpacked
tree compared with what GNU tar extracts from the same archive."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import stat
import subprocess
import tarfile

import pytest

from pycontainer_magics.images import unpack as unpack_mod
from pycontainer_magics.images.errors import LayoutError
from pycontainer_magics.images.unpack import diff_id_of, unpack_layer

root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (ownership)")
gnu_tar = pytest.mark.skipif(shutil.which("tar") is None, reason="needs GNU tar")


def _tree(path: str) -> dict[str, tuple]:
    """What a directory holds: per path, type, mode, size, content/target, mtime, owner, link count."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            rel = os.path.relpath(full, path)
            if stat.S_ISREG(st.st_mode):
                with open(full, "rb") as f:
                    what: object = f.read()
            elif stat.S_ISLNK(st.st_mode):
                what = os.readlink(full)
            else:
                what = None
            out[rel] = (stat.S_IFMT(st.st_mode), st.st_mode & 0o7777, st.st_size, what, int(st.st_mtime),
                        st.st_uid, st.st_gid, st.st_nlink if stat.S_ISREG(st.st_mode) else 0)
    return out


def _sample_tree(src) -> None:
    (src / "dir" / "sub").mkdir(parents=True)
    (src / "dir" / "file").write_bytes(b"hello\n")
    (src / "dir" / "big").write_bytes(os.urandom(3 << 20) + b"tail")  # spans several 1 MiB chunks
    (src / ("long-" + "n" * 150)).write_bytes(b"a long name\n")  # > 100 bytes: prefix, pax or GNU long name
    deep = src / "a" / ("d" * 90) / ("e" * 90)
    deep.mkdir(parents=True)
    (deep / "f").write_bytes(b"deep\n")
    (src / "dir" / "link").symlink_to("file")
    (src / ("sym-" + "t" * 120)).symlink_to("x" * 120)  # long link target
    os.link(src / "dir" / "file", src / "a" / "hard")  # hard link into another directory
    (src / "empty").write_bytes(b"")
    (src / "exec").write_bytes(b"#!/bin/sh\n")
    os.chmod(src / "exec", 0o751)
    os.chmod(src / "dir" / "sub", 0o700)
    os.mkfifo(src / "fifo")
    (src / "ünïcode").write_bytes(b"utf-8 name\n")
    for p in src.rglob("*"):
        os.utime(p, (1_600_000_000, 1_600_000_000), follow_symlinks=False)


@gnu_tar
@pytest.mark.parametrize("fmt", ["gnu", "oldgnu", "ustar", "posix", "v7"])
def test_every_header_format_unpacks_as_tar_does(tmp_path, fmt):
    src = tmp_path / "src"
    src.mkdir()
    _sample_tree(src)
    if fmt in ("ustar", "v7"):  # no name component over 100 bytes, no long link targets there
        for p in sorted(src.iterdir()):
            if p.name.startswith(("long-", "sym-")):
                p.unlink()
    if fmt == "v7":  # no name prefix either (ustar splits the deep path into prefix + name), no fifos
        shutil.rmtree(src / "a" / ("d" * 90))
        (src / "fifo").unlink()
    layer = tmp_path / "layer.tar"
    subprocess.run(["tar", f"--format={fmt}", "-cf", str(layer), "-C", str(src), "."], check=True)
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    theirs.mkdir()
    subprocess.run(["tar", "-xpf", str(layer), "-C", str(theirs)], check=True)
    res = unpack_layer(str(layer), str(ours), mode="apply")
    assert _tree(str(ours)) == _tree(str(theirs))
    assert res.diff_id == diff_id_of(str(layer)) and res.size == layer.stat().st_size
    assert res.entries >= 10


@gnu_tar
@pytest.mark.parametrize("version", ["0.0", "0.1", "1.0", "oldgnu"])
def test_sparse_files_in_every_map_format(tmp_path, version):
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        for i in range(40):  # 40 data segments: more than an old GNU header's 4, so extension blocks too
            f.seek(i * (256 << 10))
            f.write(b"segment %d\n" % i)
        f.truncate(12 << 20)  # ends in a hole
    cmd = ["tar", "--sparse", "-cf", str(tmp_path / "l.tar"), "-C", str(src), "sparse"]
    cmd[1:1] = ["--format=gnu"] if version == "oldgnu" else ["--format=posix", f"--sparse-version={version}"]
    subprocess.run(cmd, check=True)
    raw = (tmp_path / "l.tar").read_bytes()
    assert len(raw) < 1 << 20  # really stored sparse
    unpack_layer(str(tmp_path / "l.tar"), str(tmp_path / "ours"), mode="apply")
    got = tmp_path / "ours" / "sparse"
    assert got.read_bytes() == (src / "sparse").read_bytes()
    assert got.stat().st_blocks * 512 < 4 << 20  # the holes stayed holes


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_large_numbers_xattrs_and_global_headers(tmp_path, fmt):
    """Ids beyond octal's 8 digits (GNU base-256 or pax), sub-second mtimes, pax xattrs, a pax global header."""
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=fmt,
                      pax_headers={"comment": "global"} if fmt == tarfile.PAX_FORMAT else None) as tf:
        ti = tarfile.TarInfo("big-ids")
        ti.uid, ti.gid, ti.mode, ti.size, ti.mtime = 3_000_000_000, 2_500_000_000, 0o640, 2, 1_700_000_000
        if fmt == tarfile.PAX_FORMAT:
            ti.mtime = 1_700_000_000.5
            ti.pax_headers = {"SCHILY.xattr.user.lab": "value \xe9"}
        tf.addfile(ti, io.BytesIO(b"ok"))
    res = unpack_layer(io.BytesIO(b.getvalue()), str(tmp_path / "l"), mode="apply")
    st = os.lstat(tmp_path / "l" / "big-ids")
    assert st.st_mode & 0o7777 == 0o640 and (tmp_path / "l" / "big-ids").read_bytes() == b"ok"
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (3_000_000_000, 2_500_000_000)
    if fmt == tarfile.PAX_FORMAT:
        assert st.st_mtime == 1_700_000_000.5
        try:
            assert os.getxattr(tmp_path / "l" / "big-ids", "user.lab") == "value \xe9".encode()
        except OSError:  # a file system without user xattrs: reported, not fatal
            assert any("user.lab" in s for s in res.skipped)


def test_hard_link_into_another_directory_lands_there(tmp_path):
    """A hard link whose target lives in another directory is made in its own directory (the target's
    directory fd must not stand in for the link's: they were once the same descriptor number)."""
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w") as tf:
        for name in ("b", "a"):
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            tf.addfile(ti)
        ti = tarfile.TarInfo("b/l")
        ti.size = 3
        tf.addfile(ti, io.BytesIO(b"hi\n"))
        ti = tarfile.TarInfo("a/f")
        ti.type, ti.linkname = tarfile.LNKTYPE, "b/l"
        tf.addfile(ti)
    unpack_layer(io.BytesIO(b.getvalue()), str(tmp_path / "l"), mode="apply")
    assert sorted(os.listdir(tmp_path / "l" / "a")) == ["f"] and sorted(os.listdir(tmp_path / "l" / "b")) == ["l"]
    assert os.stat(tmp_path / "l" / "a" / "f").st_ino == os.stat(tmp_path / "l" / "b" / "l").st_ino


def test_corrupt_headers_fail_and_a_clean_end_without_zero_blocks_is_fine(tmp_path):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        ti = tarfile.TarInfo("f")
        ti.size = 5
        tf.addfile(ti, io.BytesIO(b"12345"))
        ti = tarfile.TarInfo("g")
        tf.addfile(ti, io.BytesIO(b""))
    good = b.getvalue()
    assert unpack_layer(io.BytesIO(good[:1536]), str(tmp_path / "noend")).entries == 2  # no end-of-archive blocks
    bad = bytearray(good)
    bad[20] ^= 0x55  # in the first header's name: the checksum no longer matches
    with pytest.raises(LayoutError, match="checksum"):
        unpack_layer(io.BytesIO(bytes(bad)), str(tmp_path / "bad"))
    with pytest.raises(LayoutError, match="corrupt or truncated.*ends inside the data of 'f'"):
        unpack_layer(io.BytesIO(good[:514]), str(tmp_path / "cut"))
    with pytest.raises(LayoutError, match="corrupt or truncated.*inside a header"):
        unpack_layer(io.BytesIO(good[:1024 + 100]), str(tmp_path / "cut2"))


@pytest.mark.parametrize("fast", [True, False], ids=["zlib-ng", "stdlib-gzip"])
def test_gzip_with_and_without_zlib_ng(tmp_path, monkeypatch, fast):
    if not fast:
        monkeypatch.setattr(unpack_mod, "_gzip", lambda: gzip)
    elif unpack_mod._gzip() is gzip:
        pytest.skip("zlib-ng not installed (the gzip extra)")
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w") as tf:
        ti = tarfile.TarInfo("data")
        payload = os.urandom(1 << 20) * 3
        ti.size = len(payload)
        tf.addfile(ti, io.BytesIO(payload))
    plain = b.getvalue()
    packed = gzip.compress(plain[: len(plain) // 2]) + gzip.compress(plain[len(plain) // 2:])  # two members
    res = unpack_layer(io.BytesIO(packed), str(tmp_path / "l"))
    assert (tmp_path / "l" / "data").read_bytes() == payload
    assert res.diff_id == diff_id_of(io.BytesIO(plain)) == diff_id_of(io.BytesIO(packed))
    with pytest.raises(LayoutError, match="corrupt or truncated"):
        unpack_layer(io.BytesIO(packed[: len(packed) // 3]), str(tmp_path / "cut"))
    broken = bytearray(packed)
    broken[len(broken) // 4] ^= 0xFF
    with pytest.raises(LayoutError):
        unpack_layer(io.BytesIO(bytes(broken)), str(tmp_path / "broken"))


def _sized_members() -> list[tuple[str, bytes]]:
    """Files around every size boundary of the file path: the kernel-copy threshold, the short read after a
    copy, the 1 MiB chunk; small files between large ones (the reads grow back)."""
    sizes = [unpack_mod._SPAN_MIN - 1, unpack_mod._SPAN_MIN, unpack_mod._SPAN_MIN + 1, 100, unpack_mod._SPAN_READ - 512,
             unpack_mod._SPAN_READ + 1, unpack_mod._CHUNK - 1, unpack_mod._CHUNK, unpack_mod._CHUNK + 513, 1, 0,
             3 * unpack_mod._CHUNK + 7, 5000]
    return [(f"d/f{i}-{n}", os.urandom(n)) for i, n in enumerate(sizes)]


@gnu_tar
@root
def test_a_plain_layer_from_a_file_unpacks_as_from_a_stream_and_as_tar_does(tmp_path, monkeypatch):
    """The file path (large members copied by the kernel from the layer file at their offset, the diff_id
    hashed from the file) gives the tree the stream path gives and GNU tar extracts: sizes across every
    boundary, hard links to large files, whiteouts (apply mode deletes what a lower layer had)."""
    import hashlib

    from images_helpers import make_tar

    members = _sized_members()
    big = members[-2][0]
    layer_bytes = make_tar([("d", None), *members, ("d/hard", "=>", big), ("d/sym", "->", "f0"),
                            ("lower/.wh.gone", b""), ("tail", b"after the large files\n")])
    layer = tmp_path / "layer.tar"
    layer.write_bytes(layer_bytes)
    copied: list[int] = []  # the file path's large members go through the kernel (else it is the stream path)
    real_sendfile = os.sendfile
    monkeypatch.setattr(os, "sendfile", lambda *a: copied.append(a[3]) or real_sendfile(*a))
    trees = {}
    for how in ("file", "stream", "tar"):
        dest = tmp_path / how
        (dest / "lower").mkdir(parents=True)
        (dest / "lower" / "gone").write_bytes(b"from a lower layer")
        if how == "tar":
            subprocess.run(["tar", "-xpf", str(layer), "-C", str(dest), "--exclude=*.wh.*"], check=True)
            (dest / "lower" / "gone").unlink()
        else:
            res = unpack_layer(str(layer) if how == "file" else io.BytesIO(layer_bytes), str(dest), mode="apply")
            assert res.diff_id == "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
            assert res.size == len(layer_bytes)
        os.utime(dest / "lower", (0, 0))  # changed now by the whiteout (or the unlink)
        trees[how] = _tree(str(dest))
    assert trees["file"] == trees["stream"] == trees["tar"]
    assert copied and sum(copied) >= len(dict(members)[big]) - unpack_mod._CHUNK
    assert trees["file"]["d/hard"][-1] == 2 and trees["file"]["d/hard"][3] == dict(members)[big]
    assert "lower/gone" not in trees["file"]


def test_a_plain_layer_file_at_an_offset_cut_short_or_too_large(tmp_path):
    """A caller's file positioned past a prefix is read from there (diff_id of what follows); a layer file that
    ends inside a large member's data fails as a truncated layer; one larger than the limit is refused before
    anything is written."""
    import hashlib

    from images_helpers import make_tar

    layer_bytes = make_tar([("d", None), *_sized_members()])
    path = tmp_path / "l.tar"
    path.write_bytes(b"junk before the layer" + layer_bytes)
    with open(path, "rb") as f:
        f.seek(len(b"junk before the layer"))
        res = unpack_layer(f, str(tmp_path / "at"), mode="apply")
    assert res.diff_id == "sha256:" + hashlib.sha256(layer_bytes).hexdigest() and res.size == len(layer_bytes)
    unpack_layer(io.BytesIO(layer_bytes), str(tmp_path / "ref"), mode="apply")
    assert _tree(str(tmp_path / "at")) == _tree(str(tmp_path / "ref"))
    path.write_bytes(layer_bytes[:len(layer_bytes) - (2 << 20)])  # inside the 3 MiB file
    with pytest.raises(LayoutError, match="corrupt or truncated.*ends inside the data"):
        unpack_layer(str(path), str(tmp_path / "cut"), mode="apply")
    path.write_bytes(layer_bytes)
    from pycontainer_magics.images.errors import LayerTooLarge

    with pytest.raises(LayerTooLarge):
        unpack_layer(str(path), str(tmp_path / "big"), mode="apply", max_size=len(layer_bytes) - 1)
    assert os.listdir(tmp_path / "big") == []


def _header(name: bytes, type_: bytes, size: int, signed: bool = False) -> bytes:
    """One ustar header, its checksum summed as unsigned bytes (POSIX) or as signed chars (some old tars)."""
    h = bytearray(512)
    h[0:len(name)] = name
    h[100:108], h[108:116], h[116:124] = b"0000644\0", b"0000000\0", b"0000000\0"
    h[124:136], h[136:148] = b"%011o\0" % size, b"00000000000\0"
    h[156:157], h[257:265], h[265:269] = type_, b"ustar\x0000", b"\xe9t\xe9\0"  # a high byte in the user name
    h[148:156] = b" " * 8
    total = sum(b - 256 if signed and b > 127 else b for b in h)
    h[148:156] = b"%06o\0 " % (total & 0o777777 if not signed else total)
    return bytes(h)


def _pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % 512)


def test_pax_records_and_signed_checksums(tmp_path):
    """Pax records are parsed by length (a key with a space, a value with '=' and a newline, binary xattrs),
    parsing stops quietly at padding after the last record, a record whose length is wrong fails; a header
    summed as signed chars (old tars) is accepted as it was."""
    from pycontainer_magics.images.tarstream import TarReader

    def entries(raw: bytes) -> list:
        chunks = iter([raw])
        reader = TarReader(lambda: next(chunks, b""))
        return [(e, bytes(b"".join(reader.data(e)))) for e in reader]

    records = b"".join(b"%d %s\n" % (len(r) + len(str(len(r) + 3)) + 2, r) for r in
                       (b"path=a b=c\nd", b"SCHILY.xattr.user.k y=\x00\xff\n", b"mtime=1.5"))
    body = records + b"\0" * 20  # NUL padding after the records: ignored
    raw = _header(b"pax", b"x", len(body)) + _pad(body) + _header(b"file", b"0", 3) + _pad(b"abc") + bytes(1024)
    [(e, data)] = entries(raw)
    assert (e.name, e.mtime, e.xattrs, data) == ("a b=c\nd", 1.5, {"user.k y": b"\x00\xff\n"}, b"abc")
    bad = b"99 mtime=1\n"
    with pytest.raises(LayoutError, match="corrupt pax header"):
        entries(_header(b"pax", b"x", len(bad)) + _pad(bad) + _header(b"file", b"0", 0) + bytes(1024))
    [(e, data)] = entries(_header(b"old", b"0", 2, signed=True) + _pad(b"hi") + bytes(1024))
    assert (e.name, data) == ("old", b"hi")
    broken = bytearray(_header(b"old", b"0", 2, signed=True))
    broken[300] ^= 1
    with pytest.raises(LayoutError, match="checksum"):
        entries(bytes(broken) + _pad(b"hi") + bytes(1024))


@root
def test_owners_are_right_with_and_without_the_chown_a_new_file_does_not_need(tmp_path):
    """A file whose entry names our own uid:gid is not chowned in a fresh destination (it is ours already);
    other owners are set; in a set-group-ID destination, or applied onto a lower layer's set-group-ID
    directory, files take that directory's group on creation and are chowned back to what the entry says."""
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("d")
        ti.type, ti.mode = tarfile.DIRTYPE, 0o755
        tf.addfile(ti)
        for name, uid, gid in (("d/root", 0, 0), ("d/other", 1000, 1001)):
            ti = tarfile.TarInfo(name)
            ti.size, ti.uid, ti.gid = 1, uid, gid
            tf.addfile(ti, io.BytesIO(b"x"))
        for name, uid, gid in (("d/root-dir", 0, 0), ("d/other-dir", 1000, 1001)):  # chowned unless theirs already
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.uid, ti.gid = tarfile.DIRTYPE, 0o2750, uid, gid
            tf.addfile(ti)
    layer = b.getvalue()

    def owners(dest) -> dict[str, tuple[int, int]]:
        got = {n: (os.lstat(dest / "d" / n).st_uid, os.lstat(dest / "d" / n).st_gid)
               for n in ("root", "other", "root-dir", "other-dir")}
        assert stat.S_IMODE(os.lstat(dest / "d" / "other-dir").st_mode) == 0o2750
        return got

    want = {"root": (0, 0), "other": (1000, 1001), "root-dir": (0, 0), "other-dir": (1000, 1001)}
    unpack_layer(io.BytesIO(layer), str(tmp_path / "fresh"))
    assert owners(tmp_path / "fresh") == want
    sgid = tmp_path / "sgid"
    sgid.mkdir()
    os.chown(sgid, 0, 4242)
    sgid.chmod(0o2755)
    unpack_layer(io.BytesIO(layer), str(sgid))
    assert owners(sgid) == want
    lower = tmp_path / "lower"
    (lower / "d").mkdir(parents=True)
    os.chown(lower / "d", 0, 4242)
    (lower / "d").chmod(0o2775)
    unpack_layer(io.BytesIO(layer), str(lower), mode="apply")
    assert owners(lower) == want


# -- the fast lane (TarReader.files + _Extractor.files) ----------------------------------------------------------


def _no_lane(monkeypatch) -> None:
    from pycontainer_magics.images.tarstream import TarReader

    monkeypatch.setattr(TarReader, "files", lambda self: [])


def _lane_counter(monkeypatch) -> list[int]:
    """Counts the plain files the fast lane handed over (with what `member` then took back)."""
    seen: list[int] = []
    real = unpack_mod._Extractor.files

    def files(self, batch):
        seen.append(len(batch))
        return real(self, batch)

    monkeypatch.setattr(unpack_mod._Extractor, "files", files)
    return seen


def _lane_layer() -> bytes:
    """Plain files the lane takes (pax mtime alone, ustar alone, set-uid, someone else's, at the root, in a
    directory not yet made) mixed with everything it must hand back to `member` at the very point it meets it:
    a name seen before, whiteouts, `.`/empty/absolute components, pax records beside the mtime, a file larger
    than the chunk, links."""
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.PAX_FORMAT) as tf:
        def add(name, data=b"", mode=0o644, mtime=1_600_000_000.25, uid=0, gid=0, type_=tarfile.REGTYPE,
                link="", pax=None):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime, ti.uid, ti.gid, ti.type, ti.linkname = (len(data), mode, mtime, uid, gid,
                                                                                 type_, link)
            ti.pax_headers = pax or {}
            tf.addfile(ti, io.BytesIO(data) if data else None)

        add("d", type_=tarfile.DIRTYPE, mode=0o755)
        for i in range(40):
            add(f"d/f{i}", b"x" * i, mtime=1_600_000_000 + i / 8)
        add("d/int-mtime", b"no pax header", mtime=1_600_000_123)
        add("d/setuid", b"#!", mode=0o4755)
        add("d/writable-by-all", b"w", mode=0o666)  # the umask would take bits: chmod after
        add("d/theirs", b"t", uid=1234, gid=5678)
        add("d/f3", b"replaced")  # a name the lane made a moment ago
        add("d/.wh.f4")  # a whiteout of one
        add("./d/dot", b"dot")
        add("d//double", b"double")
        add("/abs", b"absolute")
        add("top", b"at the root")
        add("e/f/g", b"deep, directories made on the way")
        add("d/xattr", b"x", pax={"SCHILY.xattr.user.k": "v"})
        add("d/big", os.urandom((1 << 20) + 5))
        add("d/after-big", b"after")
        add("d/sym", type_=tarfile.SYMTYPE, link="f1")
        add("d/hard", type_=tarfile.LNKTYPE, link="d/f2")
        add("d/last", b"last")
    return b.getvalue()


def _snapshot(path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            data = open(full, "rb").read() if stat.S_ISREG(st.st_mode) else None
            out[os.path.relpath(full, path)] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, st.st_rdev, data,
                                                st.st_nlink if stat.S_ISREG(st.st_mode) else 0)
    return out


@root
@pytest.mark.parametrize("mode", ["overlay", "apply"])
@pytest.mark.parametrize("source", ["file", "stream"])
def test_the_fast_lane_unpacks_what_member_would(tmp_path, monkeypatch, mode, source):
    """The same layer with the fast lane and without it: the same tree to the nanosecond (modes, owners, data,
    whiteouts, links), from a file and from a stream; and the lane did take most files."""
    layer = tmp_path / "layer.tar"
    layer.write_bytes(_lane_layer())
    umask = os.umask(0o022)
    try:
        def unpack(dest):
            if mode == "apply":  # onto a lower layer: a file of it is replaced, a whiteout removes one
                (dest / "d").mkdir(parents=True)
                (dest / "d" / "f10").write_bytes(b"lower")
                (dest / "d" / "lower-only").write_bytes(b"kept")
                os.utime(dest / "d" / "lower-only", (1, 1))
            blob = str(layer) if source == "file" else io.BytesIO(layer.read_bytes())
            return unpack_layer(blob, str(dest), mode=mode)

        seen = _lane_counter(monkeypatch)
        lane = unpack(tmp_path / "lane")
        assert sum(seen) >= 40, seen
        monkeypatch.undo()
        _no_lane(monkeypatch)
        plain = unpack(tmp_path / "plain")
    finally:
        os.umask(umask)
    got, want = _snapshot(tmp_path / "lane"), _snapshot(tmp_path / "plain")
    for made in ("e", "e/f", "d/f4"):  # no entry of their own (made on the way, a whiteout): made "now"
        for tree in (got, want):
            if made in tree:
                tree[made] = tree[made][:3] + tree[made][4:]
    assert got == want
    assert (lane.entries, lane.skipped) == (plain.entries, plain.skipped)
    assert got["d/f3"][5] == b"replaced" and got["d/f7"][3] == 1_600_000_000_875_000_000
    assert stat.S_IMODE(got["d/setuid"][0]) == 0o4755 and stat.S_IMODE(got["d/writable-by-all"][0]) == 0o666
    assert got["d/theirs"][1:3] == (1234, 5678) and got["e/f/g"][5].startswith(b"deep")
    assert got["abs"][5] == b"absolute" and got["d/double"][5] == b"double" and got["d/dot"][5] == b"dot"
    if mode == "overlay":
        assert stat.S_ISCHR(got["d/f4"][0]) and got["d/f4"][3] == 0
    else:
        assert "d/f4" not in got and got["d/f10"][5] == b"x" * 10 and got["d/lower-only"][5] == b"kept"


def _record(text: bytes) -> bytes:
    n = len(text) + 3
    n += len(str(n + 1)) - 1
    return b"%d %s\n" % (n, text)


def _raw_file(name: bytes, data: bytes, pax: bytes | None = None) -> bytes:
    out = b""
    if pax is not None:
        out += _header(b"pax", b"x", len(pax)) + _pad(pax)
    return out + _header(name, b"0", len(data)) + _pad(data)


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "member"])
def test_the_fast_lane_refuses_and_fails_as_member_does(tmp_path, monkeypatch, lane):
    """What the lane meets that it must not write: `..`, a directory that is a symlink, a bad checksum, a bad
    pax mtime, a size over the limit — the same errors with and without it, nothing written outside."""
    if not lane:
        _no_lane(monkeypatch)
    ok = b"".join(_raw_file(b"d/f%d" % i, b"data", _record(b"mtime=1600000000.25")) for i in range(5))
    outside = tmp_path / "outside"
    outside.mkdir()

    def unpack(raw: bytes, **kw):
        dest = tmp_path / f"dest{len(list(tmp_path.iterdir()))}"
        return unpack_layer(io.BytesIO(raw + bytes(1024)), str(dest), mode="apply", **kw), dest

    result, dest = unpack(ok)
    assert result.entries == 5 and (dest / "d" / "f4").read_bytes() == b"data"
    assert os.stat(dest / "d" / "f4").st_mtime_ns == 1_600_000_000_250_000_000
    with pytest.raises(unpack_mod.UnsafeLayer, match=r"\.\."):
        unpack(ok + _raw_file(b"d/../../escape", b"x"))
    link = _header(b"d/s", b"2", 0)
    link = bytearray(link)
    link[157:157 + len(str(outside))] = str(outside).encode()
    link[148:156] = b" " * 8
    link[148:156] = b"%06o\0 " % sum(link)
    with pytest.raises(unpack_mod.UnsafeLayer, match="symlink"):
        unpack(ok + bytes(link) + _raw_file(b"d/s/f", b"x", _record(b"mtime=1600000000.25")))
    assert list(outside.iterdir()) == []
    broken = bytearray(_raw_file(b"d/g", b"x"))
    broken[10] ^= 1
    with pytest.raises(LayoutError, match="checksum"):
        unpack(ok + bytes(broken))
    with pytest.raises(LayoutError, match="mtime"):
        unpack(ok + _raw_file(b"d/g", b"x", _record(b"mtime=abcd")))
    with pytest.raises(unpack_mod.LayerTooLarge, match="more than 14 bytes"):
        unpack(ok, max_size=14)


def _layer_of(*entries: tuple[str, str, bytes | str]) -> bytes:
    """A ustar layer of (name, kind, data or link target) entries: kind file, dir or symlink."""
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, kind, what in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1_600_000_000
            if kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            elif kind == "symlink":
                ti.type, ti.linkname = tarfile.SYMTYPE, str(what)
                tf.addfile(ti)
            else:
                assert isinstance(what, bytes)
                ti.size, ti.mode = len(what), 0o644
                tf.addfile(ti, io.BytesIO(what))
    return b.getvalue()


@pytest.mark.parametrize("name", ["d/e/", "d/e/."])
@pytest.mark.parametrize("there", ["symlink-here", "symlink-below", "file-below"])
def test_the_fast_lane_replaces_what_a_file_named_with_a_slash_names(tmp_path, monkeypatch, name, there):
    """A regular file ('0') named `d/e/` or `d/e/.` is the file `d/e` (as Go and Docker read it): the lane
    replaces a symlink or file there as `member` does — it does not walk `d/e` as a directory (which refused
    the symlink as a path through it, and made a directory of the file first)."""
    entries = [("d", "dir", b"")]
    if there == "symlink-here":
        entries.append(("d/e", "symlink", "/tmp/x"))
    entries += [("d/a", "file", b"a"), (name, "file", b"new")]
    layer = _layer_of(*entries)

    def unpack(dest):
        if there != "symlink-here":  # a lower layer's
            (dest / "d").mkdir(parents=True)
            if there == "symlink-below":
                (dest / "d" / "e").symlink_to("/tmp/x")
            else:
                (dest / "d" / "e").write_bytes(b"lower")
        unpack_layer(io.BytesIO(layer), str(dest), mode="apply")
        return _snapshot(dest)

    seen = _lane_counter(monkeypatch)
    got = unpack(tmp_path / "lane")
    assert sum(seen) >= 2, seen  # the lane had `d/a` and the file named with a slash
    monkeypatch.undo()
    _no_lane(monkeypatch)
    assert got == unpack(tmp_path / "plain")
    assert got["d/e"][5] == b"new" and stat.S_ISREG(got["d/e"][0])


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "member"])
def test_an_archive_whiteout_name_is_refused_before_its_directory_is_walked(tmp_path, monkeypatch, lane):
    """ADD of an archive holding the file `e` and then `e/.wh.x`: refused either way, and `e` is still the
    file (the lane walked `e/` as a directory first, replacing the file by one, before it looked at the name)."""
    if not lane:
        _no_lane(monkeypatch)
    layer = _layer_of(("d", "dir", b""), ("e", "file", b"data"), ("e/.wh.x", "file", b""))
    with pytest.raises(unpack_mod.UnsafeLayer, match=r"\.wh\."):
        unpack_layer(io.BytesIO(layer), str(tmp_path / "dest"), mode="archive")
    assert (tmp_path / "dest" / "e").read_bytes() == b"data"


def _dir_entries(*dirs: tuple[str, int, int] | str) -> bytes:
    """A ustar layer of directories (name, mode, uid) and plain empty files (a bare name)."""
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for d in dirs:
            if isinstance(d, str):
                tf.addfile(tarfile.TarInfo(d))
                continue
            ti = tarfile.TarInfo(d[0])
            ti.type, ti.mode, ti.uid, ti.gid, ti.mtime = tarfile.DIRTYPE, d[1], d[2], d[2], 1_600_000_000
            tf.addfile(ti)
    return b.getvalue()


@root
def test_a_directory_listed_twice_takes_its_last_entrys_mode_and_owner(tmp_path):
    """GNU tar: the later entry of a directory wins (its deferred mode and owner are the last set)."""
    layer = _dir_entries(("x", 0o700, 1000), "x/f", ("x", 0o755, 0))
    unpack_layer(io.BytesIO(layer), str(tmp_path / "dest"))
    st = os.lstat(tmp_path / "dest" / "x")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o755, 0, 0)


@pytest.mark.parametrize("replace", ["whiteout", "file"])
def test_a_replaced_directory_s_mode_is_not_applied_to_its_successor(tmp_path, replace):
    """`p/x/` (and `p/x/y/`) removed by a whiteout or replaced by a file, then `p/x/` made again: the new
    directory gets the last entry's mode, `p/x/y` made on the way the default one — not the deleted ones'
    (the kernel often gives the new directory the deleted one's inode number, which the check by inode
    took for the same directory)."""
    gone = ["p/.wh.x"] if replace == "whiteout" else ["p/x"]
    again = [("p/x", 0o4755, 0)] if replace == "whiteout" else ["p/.wh.x", ("p/x", 0o4755, 0)]
    layer = _dir_entries(("p", 0o755, 0), ("p/x", 0o2711, 0), ("p/x/y", 0o700, 0), "p/x/y/f", *gone, *again,
                         "p/x/y/g")
    umask = os.umask(0o022)
    try:
        unpack_layer(io.BytesIO(layer), str(tmp_path / "dest"), mode="apply")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(os.lstat(tmp_path / "dest" / "p" / "x").st_mode) == 0o4755
    assert stat.S_IMODE(os.lstat(tmp_path / "dest" / "p" / "x" / "y").st_mode) == 0o755
    assert os.listdir(tmp_path / "dest" / "p" / "x" / "y") == ["g"]


def _plain(name: bytes = b"d/bad", data: bytes = b"abc", fields: dict[int, bytes] | None = None, off_by: int = 0,
           type_: bytes = b"0", checksum: bytes = b"%06o\0 ") -> bytes:
    """A ustar file header (and its data) with `fields` written over it at their offsets (whole fields), its
    checksum the exact unsigned byte sum plus `off_by`, written as `checksum` says."""
    h = bytearray(512)
    h[0:len(name)] = name
    h[100:108], h[108:116], h[116:124] = b"0000644\0", b"0000000\0", b"0000000\0"
    h[124:136], h[136:148] = b"%011o\0" % len(data), b"13536560200\0"
    h[156:157], h[257:265] = type_, b"ustar\x0000"
    for at, value in (fields or {}).items():
        h[at:at + len(value)] = value
    h[148:156] = b" " * 8
    h[148:156] = checksum % (sum(h) + off_by)
    return bytes(h) + _pad(data)


def _unpack_after_a_run(tmp_path, raw: bytes):
    """`raw` after a directory and a run of plain files the fast lane takes (the bad entry comes inside its
    run); the layer unpacked in apply mode into a fresh directory."""
    ok = _header(b"d/", b"5", 0) + b"".join(_raw_file(b"d/f%d" % i, b"data", _record(b"mtime=1600000000.25"))
                                            for i in range(5))
    dest = tmp_path / f"dest{len(list(tmp_path.iterdir()))}"
    return unpack_layer(io.BytesIO(ok + raw + bytes(1024)), str(dest), mode="apply"), dest


_NOT_OCTAL = {  # what Python's int(x, 8) takes and GNU tar and Go's archive/tar refuse
    "size 0o": {124: b"0o000000003\0"}, "size _": {124: b"0000000_003\0"}, "size +": {124: b"+0000000003\0"},
    "size tab": {124: b"\t0000000003\0"}, "mode +": {100: b"+000644\0"}, "mode 0o": {100: b"0o00644\0"},
    "uid -0": {108: b"-000000\0"}, "gid _": {116: b"00_0000\0"}, "mtime +": {136: b"+3536560200\0"},
    "mtime -0": {136: b"-0000000000\0"}, "checksum +": b"+%05o\0 ", "checksum 0o": b"0o%04o\0 ",
    "checksum _": b"0_%04o\0 "}


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "member"])
@pytest.mark.parametrize("what", sorted(_NOT_OCTAL))
def test_a_number_field_is_octal_digits_only(tmp_path, monkeypatch, lane, what):
    if not lane:
        _no_lane(monkeypatch)
    bad = _NOT_OCTAL[what]
    raw = _plain(checksum=bad) if isinstance(bad, bytes) else _plain(fields=bad)
    with pytest.raises(LayoutError, match="octal|checksum"):
        _unpack_after_a_run(tmp_path, raw)


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "member"])
def test_a_checksum_off_by_a_multiple_of_65521_is_refused(tmp_path, monkeypatch, lane):
    """The checksum is compared with the exact byte sum (a sum taken modulo 65521 let these through); a header
    whose sum is above 65521 (high bytes in its name) still passes with its own checksum."""
    if not lane:
        _no_lane(monkeypatch)
    for off_by in (65521, 2 * 65521):
        with pytest.raises(LayoutError, match="checksum"):
            _unpack_after_a_run(tmp_path, _plain(off_by=off_by))
    high = b"d/" + b"\xff" * 98
    prefix = {345: b"\xfe" * 155}  # the POSIX name prefix: d/\xff.../ under a \xfe... directory
    assert sum(_plain(name=high, fields=prefix)[:512]) > 65521
    with pytest.raises(LayoutError, match="checksum"):
        _unpack_after_a_run(tmp_path, _plain(name=high, fields=prefix, off_by=-65521))
    result, dest = _unpack_after_a_run(tmp_path, _plain(name=high, fields=prefix))
    assert result.entries == 7


_BAD_IDS = {
    "uid -1 (base-256)": _plain(fields={108: b"\xff" * 8}),
    "gid 2**32-1 (base-256)": _plain(fields={116: b"\x80\0\0\0\xff\xff\xff\xff"}),
    "uid 2**32 (base-256)": _plain(fields={108: b"\x80\0\0\x01\0\0\0\0"}),
    "pax uid=-1": _raw_file(b"d/bad", b"abc", _record(b"uid=-1")),
    "pax gid=4294967295": _raw_file(b"d/bad", b"abc", _record(b"gid=4294967295")),
    "pax uid=+5": _raw_file(b"d/bad", b"abc", _record(b"uid=+5")),
}


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "member"])
@pytest.mark.parametrize("what", sorted(_BAD_IDS))
def test_an_owner_chown_cannot_take_is_refused(tmp_path, monkeypatch, lane, what):
    """uid/gid -1 (and 2**32-1, the same to the kernel) make a chown leave the file root's, set-uid bit and
    all: refused, as are ids beyond 32 bits."""
    if not lane:
        _no_lane(monkeypatch)
    with pytest.raises(LayoutError, match="uid|gid"):
        _unpack_after_a_run(tmp_path, _BAD_IDS[what])


_BAD_MTIMES = {
    "pax inf": _raw_file(b"d/bad", b"abc", _record(b"mtime=inf")),
    "pax nan": _raw_file(b"d/bad", b"abc", _record(b"mtime=nan")),
    "pax -inf": _raw_file(b"d/bad", b"abc", _record(b"mtime=-inf")),
    "pax 1e30": _raw_file(b"d/bad", b"abc", _record(b"mtime=1e30")),
    "pax 1e3": _raw_file(b"d/bad", b"abc", _record(b"mtime=1e3")),
    "pax 1_000": _raw_file(b"d/bad", b"abc", _record(b"mtime=1_000")),
    "pax 20 digits": _raw_file(b"d/bad", b"abc", _record(b"mtime=99999999999999999999")),
    "pax with xattr": _raw_file(b"d/bad", b"abc", _record(b"mtime=inf") + _record(b"SCHILY.xattr.user.k=v")),
    "base-256 2**63": _plain(fields={136: b"\x80\0\0\0" + (1 << 63).to_bytes(8, "big")}),
    "base-256 -2**63-1": _plain(fields={136: ((1 << 96) - (1 << 63) - 1).to_bytes(12, "big")}),
}


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "member"])
@pytest.mark.parametrize("what", sorted(_BAD_MTIMES))
def test_an_mtime_no_file_can_have_is_refused(tmp_path, monkeypatch, lane, what):
    """Not a number, infinite, or beyond a 64-bit time: one LayoutError (no OverflowError from utime)."""
    if not lane:
        _no_lane(monkeypatch)
    with pytest.raises(LayoutError, match="mtime"):
        _unpack_after_a_run(tmp_path, _BAD_MTIMES[what])


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "member"])
def test_numbers_tar_writes_are_still_read(tmp_path, monkeypatch, lane):
    """Old tars' leading spaces, NUL-terminated fields, base-256 ids and times, negative and fractional pax
    times, an id of 2**32-2."""
    if not lane:
        _no_lane(monkeypatch)
    raw = _plain(name=b"d/old", fields={100: b"   644 \0", 124: b"         3 ", 136: b"13536560200 "})
    raw += _plain(name=b"d/b256", fields={108: b"\x80\0\0\0\0\0\x03\xe8", 136: b"\x80" + bytes(7) + b"\0\0\x10\0"})
    raw += _raw_file(b"d/neg", b"abc", _record(b"mtime=-1.5"))
    raw += _raw_file(b"d/frac", b"abc", _record(b"mtime=1600000000."))
    raw += _raw_file(b"d/ids", b"abc", _record(b"uid=4294967294") + _record(b"gid=7"))
    result, dest = _unpack_after_a_run(tmp_path, raw)
    assert result.entries == 11
    assert stat.S_IMODE(os.stat(dest / "d" / "old").st_mode) == 0o644
    assert os.stat(dest / "d" / "old").st_mtime == 0o13536560200 and os.stat(dest / "d" / "b256").st_mtime == 4096
    assert os.stat(dest / "d" / "neg").st_mtime == -1.5 and os.stat(dest / "d" / "frac").st_mtime == 1600000000
    if os.geteuid() == 0:
        assert os.stat(dest / "d" / "b256").st_uid == 1000
        assert (os.stat(dest / "d" / "ids").st_uid, os.stat(dest / "d" / "ids").st_gid) == (4294967294, 7)


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "member"])
def test_a_device_number_makedev_cannot_take_is_refused(tmp_path, monkeypatch, lane):
    """A major beyond 31 bits (base-256): one LayoutError, not an OverflowError from os.makedev (or a skip)."""
    if not lane:
        _no_lane(monkeypatch)
    dev = _plain(name=b"d/dev", data=b"", type_=b"3", fields={329: b"\x80\0\0\x01\0\0\0\0", 337: b"0000000\0"})
    with pytest.raises(LayoutError, match="device number"):
        _unpack_after_a_run(tmp_path, dev)
