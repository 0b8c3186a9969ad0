"""Hostile layers and archives: nothing an entry names may touch anything outside the directory it is
unpacked into — not while writing, not when directory modes are applied at the end, not through
whiteouts. Each test here is a regression test for a finding of issue 16 (written to fail before the fix)."""

from __future__ import annotations

import io
import os
import tarfile

import pytest
from images_helpers import make_tar, unpack_from_file

from pycontainer_magics.images import UnsafeLayer, unpack_layer

root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (overlay whiteouts)")


@pytest.fixture(autouse=True, params=["stream", "file"])
def source(request, monkeypatch, tmp_path_factory):
    """Every test twice: the layer read as a stream, and as a plain layer from a file (the path that copies
    large members kernel-side from the file and hashes the file on a thread of its own)."""
    if request.param == "file":
        monkeypatch.setitem(globals(), "unpack_layer",
                            unpack_from_file(unpack_layer, str(tmp_path_factory.mktemp("layers"))))
    return request.param


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in members:
            if data is not None:
                ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return b.getvalue()


def _dir(name: str, mode: int = 0o755) -> tuple[tarfile.TarInfo, None]:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode = tarfile.DIRTYPE, mode
    return ti, None


def _sym(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname = tarfile.SYMTYPE, target
    return ti, None


def _file(name: str, data: bytes = b"x", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.mode = mode
    return ti, data


@pytest.mark.parametrize("mode", ["overlay", "apply", "archive"])
def test_deferred_directory_mode_does_not_follow_a_symlink_that_replaced_the_directory(tmp_path, mode):
    """HIGH 1: `d/` (mode 4777), then `d` replaced by a symlink to a host file: the directory's mode, applied at
    the end, must not land on the symlink's target."""
    if mode == "overlay" and os.geteuid() != 0:
        pytest.skip("overlay mode needs root")
    victim = tmp_path / "victim"
    victim.write_bytes(b"host file\n")
    victim.chmod(0o644)
    layer = _tar([_dir("d", 0o4777), _file("d/inside"), _sym("d", str(victim))])
    unpack_layer(io.BytesIO(layer), str(tmp_path / "dest"), mode=mode)
    assert victim.stat().st_mode & 0o7777 == 0o644
    assert os.readlink(tmp_path / "dest/d") == str(victim)


@pytest.mark.parametrize("mode", ["overlay", "apply", "archive"])
def test_deferred_directory_mode_does_not_follow_a_parent_replaced_by_a_symlink(tmp_path, mode):
    """The same through a parent: `a/b/` then `a` -> a host directory holding `b`."""
    if mode == "overlay" and os.geteuid() != 0:
        pytest.skip("overlay mode needs root")
    host = tmp_path / "host"
    (host / "b").mkdir(parents=True)
    (host / "b").chmod(0o755)
    layer = _tar([_dir("a"), _dir("a/b", 0o777), _sym("a", str(host))])
    unpack_layer(io.BytesIO(layer), str(tmp_path / "dest"), mode=mode)
    assert (host / "b").stat().st_mode & 0o7777 == 0o755


@pytest.mark.parametrize("name", [".wh...", "sub/.wh...", ".wh..", "sub/.wh."])
@pytest.mark.parametrize("mode", ["overlay", "apply"])
def test_a_whiteout_of_dot_or_dotdot_is_refused(tmp_path, name, mode):
    """HIGH 2: `.wh...` whited out `dest/..` (rm -rf of the directory above the layer)."""
    if mode == "overlay" and os.geteuid() != 0:
        pytest.skip("overlay mode needs root")
    sibling = tmp_path / "sibling"
    sibling.write_bytes(b"keep me\n")
    layer = _tar([_dir("sub"), _file("sub/keep"), _file(name, b"")])
    with pytest.raises(UnsafeLayer, match="whiteout"):
        unpack_layer(io.BytesIO(layer), str(tmp_path / "dest"), mode=mode)
    assert sibling.read_bytes() == b"keep me\n"
    assert (tmp_path / "dest/sub/keep").exists()


def test_an_archive_for_add_interprets_no_whiteout(tmp_path):
    """ADD extracts an archive as it is (Docker does not read whiteouts there): a `.wh.` name is refused, not
    taken as an order to delete what the destination already holds."""
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep").write_bytes(b"keep\n")
    for name in (".wh.keep", ".wh...", ".wh..wh..opq"):
        with pytest.raises(UnsafeLayer, match="'.wh.'"):
            unpack_layer(io.BytesIO(_tar([_file(name, b"")])), str(dest), mode="archive")
        assert (dest / "keep").read_bytes() == b"keep\n"
    assert sorted(os.listdir(tmp_path)) == ["dest"]


def test_writes_through_a_symlink_planted_earlier_are_refused(tmp_path):
    """A symlink to the outside, then a file, a directory, a hard link or a device below it."""
    out = tmp_path / "out"
    out.mkdir()
    for second in (_file("l/f"), _dir("l/d"), _file("l/d/f")):
        with pytest.raises(UnsafeLayer, match="through the symlink"):
            unpack_layer(io.BytesIO(_tar([_sym("l", str(out)), second])), str(tmp_path / "dest"))
    assert os.listdir(out) == []


def test_a_symlink_as_the_final_component_is_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"host\n")
    unpack_layer(io.BytesIO(_tar([_sym("f", str(victim)), _file("f", b"layer\n", 0o4755)])),
                 str(tmp_path / "dest"), mode="apply")
    assert victim.read_bytes() == b"host\n" and victim.stat().st_mode & 0o7777 == 0o644
    assert (tmp_path / "dest/f").read_bytes() == b"layer\n" and not (tmp_path / "dest/f").is_symlink()


def test_a_hard_link_through_a_symlink_is_refused(tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"secret\n")
    ti = tarfile.TarInfo("h")
    ti.type, ti.linkname = tarfile.LNKTYPE, "l/secret"
    with pytest.raises(UnsafeLayer):
        unpack_layer(io.BytesIO(_tar([_sym("l", str(tmp_path)), (ti, None)])), str(tmp_path / "dest"))
    assert not (tmp_path / "dest/h").exists()


def test_entries_are_unpacked_relative_to_the_layer(tmp_path):
    """Absolute names land inside the layer, as with Docker, containerd and tar (the leading / is dropped)."""
    res = unpack_layer(io.BytesIO(make_tar([("/abs", None), ("/abs/file", b"x")])), str(tmp_path / "l"))
    assert (tmp_path / "l/abs/file").read_bytes() == b"x" and res.entries == 2


def test_an_oversized_pax_header_is_refused_before_it_is_read(tmp_path):
    """A pax header claiming 64 MiB (a gzip bomb of a header) is refused from its size, not read into memory."""
    import gzip

    head = tarfile.TarInfo("././@PaxHeader")
    head.type, head.size = tarfile.XHDTYPE, 64 << 20
    blob = head.tobuf(tarfile.USTAR_FORMAT) + b"\0" * (64 << 20)
    with pytest.raises(UnsafeLayer, match="pax header of 67108864 bytes"):
        unpack_layer(io.BytesIO(gzip.compress(blob, 1)), str(tmp_path / "l"))
    long = tarfile.TarInfo("././@LongLink")
    long.type, long.size = tarfile.GNUTYPE_LONGNAME, 8 << 20
    with pytest.raises(UnsafeLayer, match="GNU long name header"):
        unpack_layer(io.BytesIO(long.tobuf(tarfile.GNU_FORMAT) + b"a" * (8 << 20)), str(tmp_path / "l2"))


def test_a_gzip_bomb_stops_at_the_size_limit(tmp_path, monkeypatch):
    import gzip

    from pycontainer_magics.images.errors import LayerTooLarge

    ti = tarfile.TarInfo("zeros")
    ti.size = 64 << 20
    b = io.BytesIO()
    with gzip.GzipFile(fileobj=b, mode="wb", compresslevel=9) as gz, tarfile.open(fileobj=gz, mode="w") as tf:
        tf.addfile(ti, io.BytesIO(bytes(ti.size)))
    assert len(b.getvalue()) < (1 << 20)  # 64 MiB from < 1 MiB
    monkeypatch.setenv("PYCONTAINER_MAX_LAYER_SIZE", "16m")
    with pytest.raises(LayerTooLarge, match="more than 16777216 bytes"):
        unpack_layer(io.BytesIO(b.getvalue()), str(tmp_path / "l"))
    assert not (tmp_path / "l/zeros").exists() or (tmp_path / "l/zeros").stat().st_size <= 16 << 20
    monkeypatch.setenv("PYCONTAINER_MAX_LAYER_SIZE", "lots")
    with pytest.raises(Exception, match="PYCONTAINER_MAX_LAYER_SIZE='lots': a size in bytes"):
        unpack_layer(io.BytesIO(b.getvalue()), str(tmp_path / "l3"))


def test_a_sparse_bomb_counts_what_it_writes(tmp_path):
    """A GNU sparse entry of a few bytes in the stream that expands to 1 GiB on disk."""
    from pycontainer_magics.images.errors import LayerTooLarge

    ti = tarfile.TarInfo("sparse")
    ti.type, ti.size = tarfile.GNUTYPE_SPARSE, 512
    buf = bytearray(ti.tobuf(tarfile.GNU_FORMAT))
    # the old-GNU sparse map lives at offset 386: (offset, numbytes) pairs, then isextended, then realsize
    def octal(n: int, width: int) -> bytes:
        return (b"%0*o" % (width - 1, n)) + b"\0"
    buf[386:398], buf[398:410] = octal(1 << 30, 12), octal(512, 12)
    buf[483:495] = octal((1 << 30) + 512, 12)
    buf[148:156] = b" " * 8
    buf[148:156] = b"%06o\0 " % sum(buf[:512])
    data = bytes(buf[:512]) + b"x" * 512 + b"\0" * 1024
    with pytest.raises(LayerTooLarge):
        unpack_layer(io.BytesIO(data), str(tmp_path / "l"), max_size=64 << 20)


def test_deep_paths_and_long_chains_unpack(tmp_path):
    """Deeper than the cached fd chain, and back up, without running out of descriptors."""
    deep = "/".join(["d"] * 300)
    members = [_dir("/".join(["d"] * i)) for i in range(1, 301)] + [_file(deep + "/f"), _file("top")]
    before = len(os.listdir("/proc/self/fd"))
    unpack_layer(io.BytesIO(_tar(members)), str(tmp_path / "l"))
    assert (tmp_path / "l" / deep / "f").read_bytes() == b"x" and (tmp_path / "l/top").exists()
    assert len(os.listdir("/proc/self/fd")) == before


def test_modes_and_set_id_bits_are_applied_to_what_was_made(tmp_path):
    """A 0555 directory gets its mode after its children were written; a set-uid file keeps its bits."""
    layer = _tar([_dir("ro", 0o555), _file("ro/f", b"x", 0o4755), _dir("ro/sub", 0o700), _file("g", b"", 0o2711)])
    unpack_layer(io.BytesIO(layer), str(tmp_path / "l"), mode="apply")
    mode = lambda p: (tmp_path / "l" / p).lstat().st_mode & 0o7777  # noqa: E731
    assert (mode("ro"), mode("ro/f"), mode("ro/sub"), mode("g")) == (0o555, 0o4755, 0o700, 0o2711)
    (tmp_path / "l/ro").chmod(0o755)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (builds)")
def test_add_of_a_hostile_archive_leaves_tmp_alone(tmp_path, monkeypatch):
    """HIGH 2 through a build: `ADD evil.tar /` with a `.wh...` entry deleted the whole of $TMPDIR."""
    import tempfile

    from helpers import make_busybox_rootfs

    from pycontainer_magics.images import ImageConfig, Store
    from pycontainer_magics.workloads.build import BuildError, build

    monkeypatch.setenv("PYCONTAINER_STATE_DIR", str(tmp_path / "state"))
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    (tmpdir / "someone-elses-file").write_bytes(b"keep\n")
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))
    store = Store()
    store.create_image("lab/bb:1", [make_busybox_rootfs(str(tmp_path / "base"))], ImageConfig(env=("PATH=/bin",)))
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "evil.tar").write_bytes(_tar([_dir("sub"), _file(".wh...", b"")]))
    with pytest.raises(BuildError, match=r"line 2: ADD evil.tar: entry '.wh...': a name starting with '.wh.'"):
        build("FROM lab/bb:1\nADD evil.tar /\n", context=str(ctx), store=store)
    assert (tmpdir / "someone-elses-file").read_bytes() == b"keep\n"
    assert [n for n in os.listdir(tmpdir) if n != "someone-elses-file"] == []


def test_symlink_and_hard_link_chains_stay_inside(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    chain = [_sym("a", "b"), _sym("b", str(out)), _file("a/x")]  # a -> b -> outside
    with pytest.raises(UnsafeLayer, match="through the symlink 'a'"):
        unpack_layer(io.BytesIO(_tar(chain)), str(tmp_path / "l1"))
    link = tarfile.TarInfo("h")
    link.type, link.linkname = tarfile.LNKTYPE, "s"  # a hard link to a symlink that points outside
    with pytest.raises(UnsafeLayer, match="through the symlink 'h'"):
        unpack_layer(io.BytesIO(_tar([_sym("s", str(out)), (link, None), _file("h/x")])), str(tmp_path / "l2"))
    assert os.listdir(out) == []
    h1, h2 = tarfile.TarInfo("h1"), tarfile.TarInfo("h2")
    h1.type, h1.linkname, h2.type, h2.linkname = tarfile.LNKTYPE, "f", tarfile.LNKTYPE, "h1"
    unpack_layer(io.BytesIO(_tar([_file("f", b"data"), (h1, None), (h2, None)])), str(tmp_path / "l3"))
    assert os.stat(tmp_path / "l3/h2").st_ino == os.stat(tmp_path / "l3/f").st_ino
