"""The unpacker's fast lane in C (images/native/tarlane.c) against the Python lanes it stands in for: the Python
code is the reference. Its reader must take a prefix of what the Python lane takes, with the very same values
(on clean layers all of it), whatever the header bytes say — checked on tens of thousands of mutated headers —
and a layer unpacked through it must give the same tree as through the Python lane, byte for byte and
nanosecond for nanosecond, replaced names, whiteouts, odd names, owners and modes included."""

from __future__ import annotations

import io
import os
import random
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pycontainer_magics.images import native
from pycontainer_magics.images.tarstream import TarReader
from pycontainer_magics.images.unpack import unpack_layer

LANE = native.lane


def test_the_c_lane_is_built_and_used() -> None:
    """The test environment builds it (gcc and python3-dev are among tests/run-all.sh's packages); a build
    without a compiler would silently be the slow one."""
    if os.environ.get("PYCONTAINER_TARLANE") == "python":
        pytest.skip("PYCONTAINER_TARLANE=python: the Python lanes by request")
    assert LANE is not None, "the C fast lane (_pycontainer_tarlane) was not built by the install"


needs_lane = pytest.mark.skipif(LANE is None, reason="the C fast lane is not built here")


@pytest.fixture
def python_lane() -> Iterator[None]:
    """Within the block the Python lanes run (as without the C module)."""
    saved = native.lane
    native.lane = None
    try:
        yield
    finally:
        native.lane = saved


def _layer(fmt: int, n: int, rnd: random.Random, pax_mtime: bool = True) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tf:
        for i in range(n):
            long = rnd.choice((0, 60, 95)) if i % 5 == 0 else 0
            name = f"pkg{i % 7}/" + ("p" * long + "/" if long else "") + f"f{i}.js"
            data = rnd.randbytes(rnd.choice((0, 1, 511, 512, 513, 2000)))
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = rnd.choice((0o644, 0o755, 0o600, 0o4755, 0o100644))
            ti.uid, ti.gid = rnd.choice(((0, 0), (1000, 1000), (65534, 12)))
            ti.mtime = rnd.randrange(0, 2**33) + (rnd.random() if pax_mtime and fmt == tarfile.PAX_FORMAT else 0)
            tf.addfile(ti, io.BytesIO(data))
    return out.getvalue()


def _python_files(view: memoryview, end: int, pos: int = 0) -> tuple[list[tuple], int]:
    reader = TarReader(iter([view, b""]).__next__)
    reader._more()
    reader._pos = pos
    saved = native.lane
    native.lane = None
    try:
        got = reader.files()
    finally:
        native.lane = saved
    return [(*f[:5], bytes(f[5])) for f in got], reader._pos


def _c_files(view: memoryview, end: int, pos: int = 0) -> tuple[list[tuple], int]:
    assert LANE is not None
    got, pos = LANE.files(view, pos, end)
    return [(*f[:5], bytes(f[5])) for f in got], pos


def _same(c: list[tuple], py: list[tuple]) -> None:
    assert c == py[:len(c)]
    for a, b in zip(c, py, strict=False):
        assert type(a[4]) is type(b[4])  # int from a ustar header, float from a pax one


def _fix_checksum(buf: bytearray, at: int) -> None:
    buf[at + 148:at + 156] = b" " * 8
    buf[at + 148:at + 156] = b"%06o\0 " % sum(buf[at:at + 512])


@needs_lane
@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT])
def test_clean_layers_read_alike(fmt: int) -> None:
    """From every header on (a run ends at the first entry that is not a plain file: a long name's, here)."""
    rnd = random.Random(fmt)
    raw = _layer(fmt, 300, rnd)
    view = memoryview(raw)
    taken = 0
    for start in _header_offsets(raw):
        c, cpos = _c_files(view, len(raw), start)
        py, ppos = _python_files(view, len(raw), start)
        assert c == py and cpos == ppos
        taken += len(c)
    assert taken > 1000  # (runs overlap: each start counts the run after it)


def _header_offsets(raw: bytes) -> list[int]:
    """Where each header block starts (pax and long-name headers included)."""
    starts = []
    pos = 0
    while pos + 512 <= len(raw) and any(raw[pos:pos + 512]):
        starts.append(pos)
        size = int(raw[pos + 124:pos + 136].rstrip(b"\0 ") or b"0", 8)
        pos += 512 + size + (-size % 512)
    return starts


@needs_lane
def test_mutated_headers_read_alike() -> None:
    """Every byte of the headers a run crosses, mutated (the checksum mended in most cases, so that the fields
    behind it are reached): the C lane stops where the Python lane stops, or earlier, never with another value."""
    rnd = random.Random(7)
    cases = stopped_earlier = 0
    for fmt in (tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT):
        raw = _layer(fmt, 12, rnd, pax_mtime=True)
        starts = _header_offsets(raw)
        for _ in range(12000):
            buf = bytearray(raw)
            at = rnd.choice(starts)
            for _ in range(rnd.choice((1, 1, 2, 3))):
                off = rnd.choice((rnd.randrange(512), rnd.randrange(100, 160), rnd.randrange(257, 265),
                                  512 + rnd.randrange(40)))  # anywhere, the numbers, the magic, a pax body
                buf[at + off] = rnd.choice((0, 32, 46, 47, 48, 55, 56, 57, 61, 10, 120, 128, 255, rnd.randrange(256)))
            if rnd.random() < 0.8:
                _fix_checksum(buf, at)
            view = memoryview(bytes(buf))
            c, cpos = _c_files(view, len(buf))
            py, ppos = _python_files(view, len(buf))
            _same(c, py)
            if len(c) == len(py):
                assert cpos == ppos
            else:
                stopped_earlier += 1
            cases += 1
    assert cases == 24000
    assert stopped_earlier < cases // 20, stopped_earlier  # a subset, not a different reader


@needs_lane
def test_a_view_out_of_range_is_refused() -> None:
    assert LANE is not None
    with pytest.raises(ValueError):
        LANE.files(memoryview(bytes(1024)), 0, 2048)
    assert LANE.files(memoryview(bytes(1024)), 512, 1024) == ([], 512)  # a zero block: not a plain file


def _tree(path: Path) -> dict[str, tuple]:
    """Per path: mode, owner, size, link count, content, and a file's mtime (a directory's the layer did not
    name, and a whiteout's, are when the unpack ran)."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            content = Path(full).read_bytes() if stat.S_ISREG(st.st_mode) else None
            mtime = st.st_mtime_ns if stat.S_ISREG(st.st_mode) else None
            out[os.path.relpath(full, path)] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, mtime, st.st_nlink,
                                                 content)
    return out


def _tricky_layer(path: Path) -> None:
    """Runs of plain files interrupted by everything the lane must hand back to the full path."""
    rnd = random.Random(3)

    def add(tf: tarfile.TarFile, name: str, data: bytes = b"x", **kw: object) -> None:
        ti = tarfile.TarInfo(name)
        ti.size = len(data)
        ti.mode, ti.uid, ti.gid = 0o644, 0, 0
        ti.mtime = 1_700_000_000.123456789
        for k, v in kw.items():
            setattr(ti, k, v)
        tf.addfile(ti, io.BytesIO(data))

    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for i in range(40):
            add(tf, f"a/f{i}", rnd.randbytes(i * 37), mode=rnd.choice((0o644, 0o4755, 0o2775, 0o777, 0o1600)),
                uid=rnd.choice((0, 1000, 4242)), gid=rnd.choice((0, 100, 4242)),
                mtime=rnd.choice((5, 1.5, 2**31 + 0.25)))
        add(tf, "a/f3", b"replaced")  # a name already there: the full path replaces it
        add(tf, "a/f4", b"again")
        add(tf, "a/.wh.f5", b"")  # a whiteout in the middle of a run
        add(tf, "a/./f6", b"dot")  # an odd name: the full path
        add(tf, "b/c/d/e", b"deep")  # a directory that is not there yet
        add(tf, "b/c/d/f", b"")
        add(tf, "top", b"at the root")
        ti = tarfile.TarInfo("a/sub")
        ti.type = tarfile.DIRTYPE
        ti.mode = 0o750
        tf.addfile(ti)
        add(tf, "a/sub/inner", b"inner")
        add(tf, "a/f7", b"after the directory")


@needs_lane
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (owners)")
def test_a_layer_unpacks_alike(tmp_path: Path, python_lane: None) -> None:
    layer = tmp_path / "layer.tar"
    _tricky_layer(layer)
    trees = []
    for lane in (LANE, None):
        native.lane = lane
        dest = tmp_path / f"out-{lane is None}"
        dest.mkdir()
        unpack_layer(str(layer), str(dest))
        trees.append(_tree(dest))
    assert trees[0] == trees[1]
    assert trees[0]["a/f3"][-1] == b"replaced" and stat.S_ISCHR(trees[0]["a/f5"][0])  # (overlay's whiteout)
    assert any(m[0] & 0o4000 for m in trees[0].values())  # a set-uid file's mode made it through
    assert {v[1] for v in trees[0].values()} >= {0, 1000, 4242}


@needs_lane
@pytest.mark.slow
def test_the_python_lanes_still_pass_the_layer_tests() -> None:
    """The rest of the suite unpacks through the C lane where it is built: the layer format and hostile-layer
    tests run once more through the Python lanes (what a machine without a compiler gets)."""
    here = Path(__file__).parent
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                        str(here / "test_layer_formats.py"), str(here / "security" / "test_layer_extraction.py"),
                        "-k", "not lane"], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PYCONTAINER_TARLANE": "python"}, cwd=str(here.parent))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert " passed" in p.stdout and " failed" not in p.stdout


def test_a_module_built_from_another_source_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """An editable install keeps the module it built; after tarlane.c changed, that one is left unused."""
    import types

    stale = types.ModuleType("_pycontainer_tarlane")
    stale.SOURCE = "0" * 64  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "_pycontainer_tarlane", stale)
    assert native._load() is None
    monkeypatch.setenv("PYCONTAINER_TARLANE", "python")
    assert native._load() is None


ERROR_MID_RUN = r"""
import json, resource, signal, sys
from pycontainer_magics.images import native
from pycontainer_magics.images.unpack import unpack_layer
if sys.argv[3] == "python":
    native.lane = None
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))  # the file of 4000 bytes fails with EFBIG
try:
    unpack_layer(sys.argv[1], sys.argv[2])
except Exception as e:
    print(json.dumps([type(e).__name__, str(e)]))
"""


@needs_lane
def test_an_error_in_the_middle_of_a_run_is_the_same(tmp_path: Path) -> None:
    layer = tmp_path / "layer.tar"
    with tarfile.open(layer, "w", format=tarfile.PAX_FORMAT) as tf:
        for i, size in enumerate((10, 20, 4000, 30)):
            ti = tarfile.TarInfo(f"d/f{i}")
            ti.size = size
            tf.addfile(ti, io.BytesIO(bytes(size)))
    out = []
    for lane in ("c", "python"):
        dest = tmp_path / lane
        p = subprocess.run([sys.executable, "-c", ERROR_MID_RUN, str(layer), str(dest), lane], capture_output=True,
                           text=True, timeout=60)
        out.append((p.stdout, sorted(os.listdir(dest / "d"))))
    assert out[0] == out[1]
    assert "cannot unpack entry 'd/f2': File too large [errno 27]" in out[0][0], out  # EFBIG, at the file that failed
    assert out[0][1] == ["f0", "f1", "f2"]
