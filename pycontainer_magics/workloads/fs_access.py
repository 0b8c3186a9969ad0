"""A container's filesystem from outside it (`docker cp`, `docker export`), seen from inside its root so
that no symlink of the container's can point a path at the host's files.

Run as a process of its own (it changes its mount namespace and root):

    python -m pycontainer_magics.workloads.fs_access pid:PID OP [ARG]
    python -m pycontainer_magics.workloads.fs_access layers:UPPER:WORK:LOWER[:LOWER...] OP [ARG]

pid:PID enters the mount namespace of a running container's PID 1 (its root is the container's root,
volumes and all). layers:... mounts the container's overlay (its kept writable layer over its image's
layers) in a private mount namespace of this process, for a container that does not run.

    stat PATH    a JSON line: name, size, mode (Go's FileMode bits, as dockerd reports them), mtime, linkTarget
    get PATH     the stat line's length (4 bytes, big-endian) and the line, then a tar of PATH (named by its
                 last component, as `docker cp` expects)
    put DIR      extract the tar on stdin into DIR (through directory fds, never following a symlink)
    export       a tar of the whole root filesystem (what is mounted over it left out)

Exit status 2 with a one-line message on stderr: the path does not exist (dockerd's 404).
"""

from __future__ import annotations

import json
import os
import stat
import struct
import sys
import tarfile
import time
from typing import Any, NoReturn

NOT_FOUND = 2


def _fail(msg: str, code: int = 1) -> NoReturn:
    sys.stderr.write(msg + "\n")
    raise SystemExit(code)


def resolve_in_root(root: str, path: str, limit: int = 40) -> str:
    """`path` as the container sees it, resolved below `root` (its symlinks, absolute ones included, taken
    relative to `root`; `..` never above it): a host path with no symlink left in it."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    while parts:
        name = parts.pop(0)
        if name == "..":
            if done:
                done.pop()
            continue
        here = os.path.join(root, *done, name)
        if os.path.islink(here):
            limit -= 1
            if limit < 0:
                raise OSError(40, f"too many levels of symbolic links in {path}")
            target = os.readlink(here)
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        done.append(name)
    return os.path.join(root, *done)


def enter(root: str, writable: bool) -> str | None:
    """Make the container's root our `/`; for a `put` into a container that does not run, return the
    mounted root instead (the host's /proc stays ours: extraction applies metadata through it)."""
    from ..linux import libc
    from ..linux.libc import MS_PRIVATE, MS_RDONLY, MS_REC
    from ..linux.namespaces import CLONE_NEWNS

    kind, _, rest = root.partition(":")
    if kind == "pid":
        fd = os.open(f"/proc/{int(rest)}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        libc.setns(fd, CLONE_NEWNS)  # root and working directory become the namespace's root
        os.close(fd)
        os.chdir("/")
        if writable:
            # A private copy of its mount namespace with a /proc of ours over the container's (whose
            # /proc/self is not us): extraction applies metadata through /proc/self/fd.
            libc.unshare(CLONE_NEWNS)
            libc.mount(None, "/", None, MS_REC | MS_PRIVATE)
            libc.mount("proc", "/proc", "proc", 0)
        return None
    if kind != "layers":
        _fail(f"unknown root {root!r}: pid:PID or layers:UPPER:WORK:LOWER")
    upper, work, lower = rest.split(":", 2)
    libc.unshare(CLONE_NEWNS)
    libc.mount(None, "/", None, MS_REC | MS_PRIVATE)
    # Over /tmp, in this private mount namespace only: a directory made for it on the host would be left behind
    # (this process ends chrooted in it), one per `docker cp` or export of a container that does not run.
    target = "/tmp"
    if writable:
        os.makedirs(upper, exist_ok=True)
        os.makedirs(work, exist_ok=True)
        libc.mount("overlay", target, "overlay", 0, f"lowerdir={lower},upperdir={upper},workdir={work}")
        return target
    else:
        lowers = f"{upper}:{lower}" if os.path.isdir(upper) else lower
        libc.mount("overlay", target, "overlay", MS_RDONLY, f"lowerdir={lowers}")
    os.chroot(target)
    os.chdir("/")
    return None


def _go_mode(st: os.stat_result) -> int:
    m = stat.S_IMODE(st.st_mode) & 0o777
    bits = {stat.S_ISUID: 1 << 23, stat.S_ISGID: 1 << 22, stat.S_ISVTX: 1 << 20}
    for k, v in bits.items():
        if st.st_mode & k:
            m |= v
    if stat.S_ISDIR(st.st_mode):
        m |= 1 << 31
    elif stat.S_ISLNK(st.st_mode):
        m |= 1 << 27
    elif stat.S_ISFIFO(st.st_mode):
        m |= 1 << 25
    elif stat.S_ISSOCK(st.st_mode):
        m |= 1 << 24
    elif stat.S_ISCHR(st.st_mode):
        m |= (1 << 26) | (1 << 21)
    elif stat.S_ISBLK(st.st_mode):
        m |= 1 << 26
    return m


def stat_of(path: str) -> dict[str, Any]:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        _fail(f"Could not find the file {path} in container", NOT_FOUND)
    t = st.st_mtime
    return {"name": os.path.basename(path.rstrip("/")) or "/", "size": st.st_size, "mode": _go_mode(st),
            "mtime": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e9):09d}Z",
            "linkTarget": os.readlink(path) if stat.S_ISLNK(st.st_mode) else ""}


def get(path: str) -> None:
    info = json.dumps(stat_of(path)).encode()
    out = sys.stdout.buffer
    out.write(struct.pack(">I", len(info)) + info)
    name = os.path.basename(path.rstrip("/")) or "."
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        tf.add(path.rstrip("/") or "/", arcname=name, recursive=True)
    out.flush()


def put(directory: str, root: str | None) -> None:
    from ..images.unpack import unpack_layer

    if root is not None:
        directory = resolve_in_root(root, directory)
    if not os.path.isdir(directory):
        _fail(f"Could not find the file {directory} in container", NOT_FOUND)
    unpack_layer(sys.stdin.buffer, directory, mode="archive", what="archive")


def export() -> None:
    """The root filesystem as a tar. Directories mounted over it (proc, sys, volumes) are left out: a
    directory on another device than the root's is a mount point. (Only directories are compared: on an
    overlay, a file reports the device of the layer it comes from.)"""
    root_dev = os.lstat("/").st_dev
    out = sys.stdout.buffer
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        for dirpath, dirnames, filenames in os.walk("/"):
            keep = []
            for d in sorted(dirnames):
                p = os.path.join(dirpath, d)
                try:
                    st = os.lstat(p)
                    tf.add(p, arcname=p.lstrip("/"), recursive=False)
                except OSError:
                    continue
                if stat.S_ISDIR(st.st_mode) and st.st_dev == root_dev:
                    keep.append(d)
            dirnames[:] = keep
            for f in sorted(filenames):
                p = os.path.join(dirpath, f)
                try:
                    tf.add(p, arcname=p.lstrip("/"), recursive=False)
                except OSError:
                    continue
    out.flush()


# -- the caller's side: run this module as a process -------------------------------------------------

def _run(root: str, *args: str, stdin: bytes | None = None) -> bytes:
    import subprocess

    r = subprocess.run([sys.executable, "-m", "pycontainer_magics.workloads.fs_access", root, *args], input=stdin,
                       capture_output=True, cwd="/")
    if r.returncode != 0:
        msg = r.stderr.decode(errors="replace").strip().splitlines()
        raise OSError(2 if r.returncode == NOT_FOUND else 5, msg[-1] if msg else f"{args[0]} failed")
    return r.stdout


def copy_out(root: str, path: str, dest: str) -> None:
    """PATH of the container (file or directory) into the host directory DEST, as `docker cp C:PATH DEST`."""
    import io

    out = _run(root, "get", path)
    n = struct.unpack(">I", out[:4])[0]
    from ..images.unpack import unpack_layer

    # what comes out of a container is hostile: unpacked through directory fds, no symlink followed
    unpack_layer(io.BytesIO(out[4 + n:]), dest, mode="archive", what=f"container {path}")


def copy_in(root: str, src: str, directory: str) -> None:
    """The host file or directory SRC into the container's directory DIRECTORY, as `docker cp SRC C:DIR`."""
    import io

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        tf.add(src, arcname=os.path.basename(src.rstrip("/")))
    _run(root, "put", directory, stdin=buf.getvalue())


def export_to(root: str, dest: str) -> int:
    """The container's root filesystem as a tar file DEST (streamed to it, never held in memory)."""
    import subprocess

    with open(dest, "wb") as f:
        r = subprocess.run([sys.executable, "-m", "pycontainer_magics.workloads.fs_access", root, "export"],
                           stdout=f, stderr=subprocess.PIPE, cwd="/")
    if r.returncode != 0:
        msg = r.stderr.decode(errors="replace").strip().splitlines()
        raise OSError(5, msg[-1] if msg else "export failed")
    return os.path.getsize(dest)


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        _fail(__doc__ or "usage")
    root, op, args = argv[0], argv[1], argv[2:]
    # Everything imported before entering: the container's root has no pycontainer_magics in it.
    from ..images import unpack  # noqa: F401
    from ..linux import libc, namespaces  # noqa: F401
    mounted = enter(root, writable=op == "put")
    if op == "stat":
        sys.stdout.write(json.dumps(stat_of(args[0])) + "\n")
    elif op == "get":
        get(args[0])
    elif op == "put":
        put(args[0], mounted)
    elif op == "export":
        export()
    else:
        _fail(f"unknown operation {op!r}: stat, get, put or export")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (OSError, tarfile.TarError, ValueError) as e:
        _fail(str(e))
