"""The one atomic write, the one lock (linux/files.py) and the one /proc/<pid>/stat reader (linux/proc.py)."""

from __future__ import annotations

import fcntl
import os
import stat
import subprocess
import sys
import threading
import time

import pytest

from pycontainer_magics.linux import proc
from pycontainer_magics.linux.files import FileLock, atomic_write, atomic_writer, swap_in, write_json


def test_atomic_write_replaces_and_sets_the_mode(tmp_path):
    p = tmp_path / "f.json"
    p.write_text("old")
    write_json(str(p), {"b": 1, "a": 2}, sort_keys=True, mode=0o600)
    assert p.read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    atomic_write(str(p), b"bytes")
    assert p.read_bytes() == b"bytes" and stat.S_IMODE(p.stat().st_mode) == 0o644
    assert sorted(os.listdir(tmp_path)) == ["f.json"]


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path):
    p = tmp_path / "f"
    p.write_text("old")
    with pytest.raises(RuntimeError), atomic_writer(str(p)) as f:
        f.write(b"half of the new")
        raise RuntimeError("the writer died")
    assert p.read_text() == "old"
    assert os.listdir(tmp_path) == ["f"]


def _try_lock(path: str) -> str:
    """Another process trying to take the flock without waiting."""
    code = ("import fcntl, os, sys\nfd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
            "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); print('took')\n"
            "except BlockingIOError:\n    print('busy')\n")
    return subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, check=True).stdout.strip()


def test_swap_in_replaces_the_file_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "m"
    swap_in(str(p), b"first", mode=0o600)  # (no file yet: renamed into place)
    ino = p.stat().st_ino
    assert p.read_bytes() == b"first" and stat.S_IMODE(p.stat().st_mode) == 0o600
    with open(p, "rb") as reader:  # one opened before keeps reading the old file whole
        swap_in(str(p), b"second" * 1000)
        assert reader.read() == b"first"
    assert p.read_bytes() == b"second" * 1000 and p.stat().st_ino != ino and stat.S_IMODE(p.stat().st_mode) == 0o644
    assert os.listdir(tmp_path) == ["m"]


_FS_IOC_FIEMAP = 0xC020660B
_FIEMAP_EXTENT_DELALLOC = 0x4


def _delalloc(path: str) -> bool:
    """Is the file's first extent still waiting for its blocks (ext4's delayed allocation: not written out yet)?"""
    req = bytearray(32 + 56)
    req[8:16] = (2**64 - 1).to_bytes(8, "little")  # fm_length: the whole file
    req[24:28] = (1).to_bytes(4, "little")  # fm_extent_count
    with open(path, "rb") as f:
        fcntl.ioctl(f.fileno(), _FS_IOC_FIEMAP, req)
    assert int.from_bytes(req[20:24], "little") == 1, "no extent"
    return bool(int.from_bytes(req[32 + 40:32 + 44], "little") & _FIEMAP_EXTENT_DELALLOC)


def test_swap_in_does_not_write_the_file_out_where_a_rename_over_it_does(tmp_path):
    """ext4 writes a file's data out when it is renamed over another (auto_da_alloc): a quarter to half a millisecond
    of each change of a network's members here. swap_in exchanges the files instead: the data stays delayed."""
    fs = subprocess.run(["stat", "-f", "-c", "%T", str(tmp_path)], capture_output=True, text=True).stdout.strip()
    mounts = open("/proc/self/mountinfo").read()
    if fs != "ext2/ext3" or "nodelalloc" in mounts or "noauto_da_alloc" in mounts:
        pytest.skip("ext4 with its delayed allocation and rename heuristic only")
    p, q = tmp_path / "swapped", tmp_path / "renamed"
    for f in (p, q):
        f.write_bytes(b"old")
    swap_in(str(p), b"new" * 100)
    tmp = tmp_path / "tmp"
    tmp.write_bytes(b"new" * 100)
    os.replace(tmp, q)
    assert _delalloc(str(p)), "swap_in wrote the file out"
    assert not _delalloc(str(q)), "a rename over a file was not written out: not the heuristic this avoids"


def test_file_lock_excludes_other_processes_and_is_reentrant(tmp_path):
    path = str(tmp_path / "sub" / "lock")
    lock = FileLock(lambda: path, make_dir=0o755)
    with lock:
        with lock:  # re-entrant in this thread: the inner `with` neither blocks nor releases
            assert _try_lock(path) == "busy"
        assert _try_lock(path) == "busy"
        fd = lock._fd
        assert fd >= 10 and fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    assert _try_lock(path) == "took"


def test_file_lock_excludes_other_threads(tmp_path):
    lock = FileLock(str(tmp_path / "lock"))
    order: list[str] = []

    def other() -> None:
        with lock:
            order.append("other")

    with lock:
        t = threading.Thread(target=other)
        t.start()
        time.sleep(0.1)
        order.append("first")
    t.join()
    assert order == ["first", "other"]


def test_directory_lock_needs_the_directory(tmp_path):
    with FileLock(str(tmp_path), directory=True):
        assert _try_lock(str(tmp_path / "x")) == "took"  # a directory lock is not a lock file inside it
    with pytest.raises(FileNotFoundError), FileLock(str(tmp_path / "gone"), directory=True):
        pass
    assert not (tmp_path / "gone").exists()


def test_proc_stat_reader_and_tokens():
    me = os.getpid()
    assert proc.alive(me) and proc.start_time(me)
    assert proc.token_alive(proc.token()) and proc.token() == f"{me}:{proc.start_time(me)}"
    assert not proc.token_alive(f"{me}:1")  # the same pid, another process
    # A command name with ") " in it does not shift the fields.
    p = subprocess.Popen(["sh", "-c", "printf 'a) b (c' > /proc/$$/comm; echo ok; exec 3<&0; read x"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "ok\n"
        fields = proc.stat_fields(p.pid)
        assert fields is not None and fields[0] in "RS" and int(fields[1]) == me  # state, then ppid
        tok = proc.token(p.pid)
        assert proc.token_alive(tok)
    finally:
        p.stdin.close()
        p.stdout.close()
    deadline = time.monotonic() + 30
    while proc.stat_fields(p.pid)[0] != "Z" and time.monotonic() < deadline:  # type: ignore[index]
        time.sleep(0.01)
    assert not proc.alive(p.pid)  # a zombie (not yet reaped) counts as dead
    assert not proc.token_alive(tok)
    p.wait()
    assert proc.start_time(p.pid) is None and proc.stat_fields(p.pid) is None
    assert not proc.token_alive(f"{p.pid}:0") and proc.token_alive(f"{me}:0", unknown_start=True)


def test_mount_paths_are_encoded_as_os_fsencode_does() -> None:
    # libc._b skips os.fsencode's Python frames (PID 1 calls it for every mount) but must encode the same.
    from pycontainer_magics.linux.libc import _b

    for p in ("/plain", "/caf\u00e9", "/bad\udcff", b"/bytes"):
        assert _b(p) == os.fsencode(p)
    assert _b(None) is None
