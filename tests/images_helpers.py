"""Helpers for the image tests: tarballs in memory, a busybox rootfs, a loopback registry."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import subprocess
import tarfile
import time
import urllib.request
from collections.abc import Iterator

BUSYBOX = "/bin/busybox"


def make_tar(entries: list[tuple], gzip: bool = False) -> bytes:
    """entries: (name, bytes) file | (name, None) dir | (name, "->", target) symlink |
    (name, "=>", target) hard link | (name, "chr", major, minor) device."""
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w:gz" if gzip else "w") as tf:
        for e in entries:
            ti = tarfile.TarInfo(e[0])
            ti.mtime = 1_700_000_000
            data = None
            if len(e) == 2 and e[1] is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            elif len(e) == 2:
                ti.size, ti.mode, data = len(e[1]), 0o644, io.BytesIO(e[1])
            elif e[1] == "->":
                ti.type, ti.linkname = tarfile.SYMTYPE, e[2]
            elif e[1] == "=>":
                ti.type, ti.linkname = tarfile.LNKTYPE, e[2]
            elif e[1] == "chr":
                ti.type, ti.devmajor, ti.devminor, ti.mode = tarfile.CHRTYPE, e[2], e[3], 0o666
            tf.addfile(ti, data)
    return b.getvalue()


def busybox_layer() -> bytes:
    """A tiny rootfs: /bin/busybox, /bin/sh, /bin/ls, /bin/cat links, /etc/os-release."""
    with open(BUSYBOX, "rb") as f:
        bb = f.read()
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w:gz") as tf:
        for d in ("bin", "etc", "tmp"):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            tf.addfile(ti)
        ti = tarfile.TarInfo("bin/busybox")
        ti.size, ti.mode = len(bb), 0o755
        tf.addfile(ti, io.BytesIO(bb))
        for name in ("sh", "ls", "cat", "echo"):
            ti = tarfile.TarInfo(f"bin/{name}")
            ti.type, ti.linkname = tarfile.SYMTYPE, "busybox"
            tf.addfile(ti)
        data = b"NAME=lab-busybox\n"
        ti = tarfile.TarInfo("etc/os-release")
        ti.size, ti.mode = len(data), 0o644
        tf.addfile(ti, io.BytesIO(data))
    return b.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def registry_server(tmp: str) -> Iterator[str]:
    """Debian's docker-registry on 127.0.0.1:<free port>, storage in `tmp`; yields "127.0.0.1:PORT"."""
    exe = shutil.which("docker-registry")
    if exe is None:
        import pytest

        pytest.skip("docker-registry not installed (apt-get install docker-registry)")
    port = free_port()
    cfg = os.path.join(tmp, "config.yml")
    with open(cfg, "w") as f:
        f.write(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {tmp}/data\n"
                f"  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n")
    log = open(os.path.join(tmp, "registry.log"), "wb")  # noqa: SIM115
    proc = subprocess.Popen([exe, "serve", cfg], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("registry did not start: " + open(log.name).read()[-2000:]) from None
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("skopeo") is None:
        import pytest

        pytest.skip("skopeo not installed")
    return subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, text=True, check=True,
                          timeout=60)


def unpack_from_file(real, tmp: str):  # type: ignore[no-untyped-def]
    """`unpack_layer` as a plain layer from a FILE is unpacked (the kernel copies large members from it, the
    diff_id is hashed from it): an in-memory layer (BytesIO) is written to a file under `tmp` and unpacked
    from there, opened at a nonzero offset half the time (a caller's file positioned past a prefix)."""
    count = [0]

    def unpack(blob, dest, **kw):  # type: ignore[no-untyped-def]
        if not isinstance(blob, io.BytesIO):
            return real(blob, dest, **kw)
        count[0] += 1
        prefix = b"p" * (count[0] % 2) * 1000
        path = os.path.join(tmp, f"layer-{count[0]}.tar")
        with open(path, "wb") as f:
            f.write(prefix + blob.getvalue())
        with open(path, "rb") as f:
            f.seek(len(prefix))
            return real(f, dest, **kw)

    return unpack
