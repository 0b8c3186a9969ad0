"""The container's filesystem as a plan of mount operations, the interpreter that runs it, and the
layer diff.

The plan is data (built in the caller, shown by a dry run, tested without root); `apply_plan` runs in
the container's PID 1 before `pivot_root`. Paths in the plan are container paths, already resolved
against the root filesystem so a symlink inside an image cannot point a mount outside it.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
import sys
from dataclasses import dataclass

from ..linux import libc
from ..linux.libc import (
    MS_BIND,
    MS_MOVE,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    mount,
)
from . import host_masks as hm  # here, not where used: the launch helper has it loaded before forking holders
from .result import DiffEntry
from .spec import ContainerSpec

# What runc/Docker mask and make read-only (see DESIGN.md "Security defaults").
MASKED_PATHS = (
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
             ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx"), ("core", "/proc/kcore"))
NOSUID_NODEV_NOEXEC = MS_NOSUID | MS_NODEV | MS_NOEXEC


@dataclass(frozen=True)
class MountOp:
    """One step of building the container's filesystem.

    action: mount | bind | mkdir | devnode | symlink | mask | readonly | remount_ro
    """

    action: str
    target: str  # path inside the container
    source: str | None = None
    fstype: str | None = None
    flags: int = 0
    data: str | None = None
    fallback: str | None = None  # host path to bind (read-only) when the mount itself is refused
    read_only: bool = False


@dataclass(frozen=True)
class RootfsPlan:
    lower: str  # the image's root: "/" for the host image, or the --rootfs directory
    mountpoints: tuple[tuple[str, str], ...]  # (path, "dir"|"file") made in a tiny extra lower layer
    ops: tuple[MountOp, ...]
    writable: bool  # has an upper layer (False with --read-only)

    def describe(self) -> list[str]:
        """The plan as lines a person can read (the dry run)."""
        out = [f"overlay lower={self.lower} {'+ writable upper' if self.writable else '(read-only)'}"]
        for path, kind in self.mountpoints:
            out.append(f"mountpoint {kind} {path}")
        for op in self.ops:
            src = f" {op.source}" if op.source else ""
            fs = f" type {op.fstype}" if op.fstype else ""
            ro = " ro" if op.read_only or op.flags & MS_RDONLY else ""
            out.append(f"{op.action}{src} -> {op.target}{fs}{ro}")
        return out


class LayerView:
    """The union of read-only layers as overlayfs will show it, for looking paths up before mounting.

    `lower` is what overlayfs gets: one directory ("/" for the host, or a --rootfs), or an image's layer
    directories joined with ":", topmost first. A whiteout (a 0/0 character device) hides the path in
    the layers below; an opaque directory hides their contents."""

    def __init__(self, lower: str) -> None:
        self.layers = lower.split(":") if lower != "/" else ["/"]

    def find(self, rel: str) -> str | None:
        rel = rel.lstrip("/")
        parts = rel.split("/") if rel else []
        for layer in self.layers:
            p = os.path.join(layer, rel)
            try:
                st = os.lstat(p)
            except OSError:
                # an opaque parent in this layer hides the rest below
                if any(_opaque(os.path.join(layer, *parts[:i])) for i in range(1, len(parts))):
                    return None
                continue
            return None if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0 else p
        return None

    def lexists(self, rel: str) -> bool:
        return self.find(rel) is not None

    def readlink(self, rel: str) -> str | None:
        p = self.find(rel)
        return os.readlink(p) if p is not None and os.path.islink(p) else None


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def secure_join(root: str, path: str, _depth: int = 0) -> str:
    """Resolve `path` inside `root` (a lower as LayerView takes it) as the container would see it: symlinks
    are followed relative to the root and `..` never climbs above it. Returns the container path."""
    if root == "/":
        return "/" + os.path.normpath(path).lstrip("/")
    view = LayerView(root)
    parts = [p for p in path.split("/") if p and p != "."]
    resolved: list[str] = []
    links = 0
    while parts:
        p = parts.pop(0)
        if p == "..":
            if resolved:
                resolved.pop()
            continue
        target = view.readlink("/".join([*resolved, p]))
        if target is not None:
            links += 1
            if links > 40:
                raise OSError(errno.ELOOP, "too many symlinks", path)
            if target.startswith("/"):
                resolved = []
            parts = [x for x in target.split("/") if x and x != "."] + parts
            continue
        resolved.append(p)
    return "/" + "/".join(resolved)


def python_paths() -> list[str]:
    """Directories the running interpreter imports from, without nested duplicates: bound read-only into
    a foreign rootfs so a Python cell can import there."""
    dirs = sorted({os.path.realpath(p) for p in sys.path if p and os.path.isdir(p)})
    out: list[str] = []
    for d in dirs:
        if d == "/" or any(d.startswith(o.rstrip("/") + "/") for o in out):
            continue
        out.append(d)
    return out


def cgroup_ops(version: str | None, host_dirs: dict[str, str]) -> list[MountOp]:
    """/sys/fs/cgroup read-only, showing the container's own cgroup as the root (cgroup namespace).

    v2: one cgroup2 mount. v1: a tmpfs with one mount per hierarchy, as runc lays it out. When the
    kernel refuses a mount (e.g. a shared cgroup namespace), the container's cgroup directory on the
    host is bound instead. host_dirs: controller (v1, "cpu,cpuacct" when co-mounted) or "unified" -> dir.
    """
    ro = NOSUID_NODEV_NOEXEC | MS_RDONLY
    if version == "v2":
        return [MountOp("mount", "/sys/fs/cgroup", "cgroup2", "cgroup2", ro,
                        fallback=host_dirs.get("unified"), read_only=True)]
    if version != "v1":
        # No cgroup of our own (rootless without delegation): the host's view, read-only.
        return [MountOp("bind", "/sys/fs/cgroup", "/sys/fs/cgroup", read_only=True)]
    ctrls = tuple(sorted(host_dirs))
    top, dirs, remount = _v1_frame(ctrls)
    ops = [top]
    for ctrl, made in zip(ctrls, dirs, strict=True):
        ops.append(made)
        ops.append(MountOp("mount", f"/sys/fs/cgroup/{ctrl}", "cgroup", "cgroup", ro, ctrl,
                           fallback=host_dirs[ctrl], read_only=True))
    ops.append(remount)
    return ops


@functools.lru_cache(maxsize=4)
def _v1_frame(ctrls: tuple[str, ...]) -> tuple[MountOp, tuple[MountOp, ...], MountOp]:
    """The operations of a v1 cgroup view that name no cgroup (the tmpfs, a directory per hierarchy, the remount):
    the same objects for every run, so a plan made again from a kept one compares them by identity (plan_cache,
    run._take_premounted: they are among the operations a holder makes ahead)."""
    return (MountOp("mount", "/sys/fs/cgroup", "tmpfs", "tmpfs", NOSUID_NODEV_NOEXEC, "mode=755"),
            tuple(MountOp("mkdir", f"/sys/fs/cgroup/{ctrl}") for ctrl in ctrls),
            MountOp("remount_ro", "/sys/fs/cgroup", flags=NOSUID_NODEV_NOEXEC, data="mode=755"))


def build_plan(spec: ContainerSpec, *, volume_sources: dict[str, str], cgroup_mount_ops: list[MountOp],
               pts_gid: int | None, owner: tuple[int | None, int | None] | None = None,
               lower: str | None = None, host_masks: bool = False) -> RootfsPlan:
    """Turn a spec into mount operations. volume_sources: volume name -> host directory. pts_gid: the tty
    group for /dev/pts as the mounting process sees it (None: unmapped, left out). owner: the host ids of
    container root when PID 1 mounts as host root under a remapped user namespace (tmpfs owners).
    host_masks: hide the host's secrets in an image that is the host's / (see host_masks.py)."""
    own = ""
    if owner is not None and owner[0] is not None and owner[1] is not None:
        own = f",uid={owner[0]},gid={owner[1]}"
    lower = lower or spec.rootfs or "/"  # an image's layers come joined with ":" (see LayerView)
    new = set(spec.new_namespaces)
    ops: list[MountOp] = []
    mountpoints: dict[str, str] = {}

    view = LayerView(lower)

    def need(path: str, kind: str = "dir") -> str:
        real = secure_join(lower, path)
        if not view.lexists(real):
            mountpoints[real] = kind
        return real

    # /proc: a fresh instance for a new PID namespace; refused when the PID namespace is shared while a
    # user namespace is new (the proc mount must belong to a PID namespace our user namespace owns).
    ops.append(MountOp("mount", need("/proc"), "proc", "proc", NOSUID_NODEV_NOEXEC, fallback="/proc"))
    # /dev: a small tmpfs with the standard nodes bound from the host (mknod is refused in a user ns).
    ops.append(MountOp("mount", need("/dev"), "tmpfs", "tmpfs", MS_NOSUID, "mode=755,size=65536k" + own))  # as runc
    for d in DEVICES:
        ops.append(MountOp("devnode", f"/dev/{d}", f"/dev/{d}"))
    for name, target in DEV_LINKS:
        ops.append(MountOp("symlink", f"/dev/{name}", target))
    pts = "newinstance,ptmxmode=0666,mode=0620" + (f",gid={pts_gid}" if pts_gid is not None else "")
    ops.append(MountOp("mkdir", "/dev/pts"))
    ops.append(MountOp("mount", "/dev/pts", "devpts", "devpts", MS_NOSUID | MS_NOEXEC, pts))
    ops.append(MountOp("mkdir", "/dev/shm"))
    ops.append(MountOp("mount", "/dev/shm", "shm", "tmpfs", NOSUID_NODEV_NOEXEC, "mode=1777,size=65536k" + own))
    # POSIX message queues belong to the IPC namespace: a fresh mqueue for a new one, the host's otherwise.
    if "ipc" in new:
        ops.append(MountOp("mkdir", "/dev/mqueue"))
        ops.append(MountOp("mount", "/dev/mqueue", "mqueue", "mqueue", NOSUID_NODEV_NOEXEC))
    elif os.path.isdir("/dev/mqueue"):
        ops.append(MountOp("mkdir", "/dev/mqueue"))
        ops.append(MountOp("bind", "/dev/mqueue", "/dev/mqueue"))
    # /sys read-only: sysfs needs a network namespace our user namespace owns; else bind the host's.
    ops.append(MountOp("mount", need("/sys"), "sysfs", "sysfs", NOSUID_NODEV_NOEXEC | MS_RDONLY, fallback="/sys",
                       read_only=True))
    if "cgroup" in new:
        ops.extend(cgroup_mount_ops)
    # Volumes, bind mounts and tmpfs, in the order given.
    for m in spec.mounts:
        src = volume_sources[m.source] if m.kind == "volume" else m.source
        kind = "file" if os.path.isfile(src) else "dir"
        ops.append(MountOp("bind", need(m.target, kind), src, read_only=m.read_only))
    for t in spec.tmpfs:
        data = f"mode={t.mode:o}" + (f",size={t.size}" if t.size else "") + own
        ops.append(MountOp("mount", need(t.target), "tmpfs", "tmpfs", MS_NOSUID | MS_NODEV, data))
    # A foreign rootfs gets this interpreter's import path, read-only, so a Python cell runs there.
    if spec.python_code is not None and lower != "/":
        for p in python_paths():
            ops.append(MountOp("bind", need(p), p, read_only=True))
    for p in MASKED_PATHS:
        if "ALL" not in spec.unmask and p not in spec.unmask:
            ops.append(MountOp("mask", p))
    for p in READONLY_PATHS:
        ops.append(MountOp("readonly", p))
    if lower == "/":  # (an image built FROM host: its layers sit above, not below, the mount-point layer)
        try:
            cwd = os.getcwd()
        except OSError:
            cwd = "/"
        targets = [m.target for m in spec.mounts] + [t.target for t in spec.tmpfs] + [spec.workdir or "/"]
        if host_masks:
            from .state import data_dirs

            for path, kind in hm.masks(cwd=cwd, mount_targets=targets, data_dirs=data_dirs(), unmask=spec.unmask):
                mountpoints.setdefault(path, kind)
        else:  # rootless: the container is you and sees what you see, but not your session's sockets
            for path in hm.rootless_masks(cwd=cwd, mount_targets=targets, unmask=spec.unmask):
                mountpoints.setdefault(path, f"tmpfs:{spec.storage_size or 0}")  # as bounded as the layer
    return RootfsPlan(lower=lower, mountpoints=tuple(sorted(mountpoints.items())), ops=tuple(ops),
                      writable=not spec.read_only)


# -- executed in the container (after fork; the caller reports OSError to the parent) ----------------

def make_mountpoints(layer: str, mountpoints: tuple[tuple[str, str], ...]) -> None:
    """The mount-point layer: empty directories and files to mount on, and the host image's masks
    (host_masks.py: whiteouts, opaque directories, sanitized copies)."""
    for path, kind in mountpoints:
        p = layer + path
        if kind == "dir":
            os.makedirs(p, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(p), exist_ok=True)
        if kind == "file":
            os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o644))
        elif kind.startswith("tmpfs:"):  # (rootless host tree: `layer` is the merged root) a /tmp of its own
            size = int(kind[6:])
            mount("tmpfs", p, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777" + (f",size={size}" if size else ""))
        elif kind == "whiteout":
            os.mknod(p, stat.S_IFCHR, 0)
        elif kind == "opaque":
            st = os.stat(path)
            os.mkdir(p, stat.S_IMODE(st.st_mode))
            os.chown(p, st.st_uid, st.st_gid)
            os.setxattr(p, "trusted.overlay.opaque", b"y")
        elif kind == "sanitized":
            st = os.stat(path)
            fd = os.open(p, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
            try:
                os.write(fd, hm.sanitized(path))
                os.fchown(fd, st.st_uid, st.st_gid)
                os.fchmod(fd, stat.S_IMODE(st.st_mode))
            finally:
                os.close(fd)


def mount_overlay(lower: str, mp_layer: str, upper: str | None, work: str | None, merged: str) -> None:
    layers = lower.split(":")
    if len(layers) > 1 and layers[-1] == "/":
        # An image built FROM host: its layers lie on the host's own filesystem, inside the lower "/", and
        # overlayfs refuses a lower inside another (ELOOP). A read-only overlay of / (a filesystem of its own)
        # becomes the bottom layer instead.
        base = os.path.join(os.path.dirname(merged), "host")
        os.mkdir(base)
        mount("overlay", base, "overlay", MS_RDONLY, f"lowerdir={mp_layer}:/")
        layers[-1] = base
    lowers = ":".join([mp_layer, *layers])
    data = f"lowerdir={lowers}"
    if upper is not None:
        data += f",upperdir={upper},workdir={work}"
    mount("overlay", merged, "overlay", 0, data)


def mount_host_tree(merged: str, upper: str | None, work: str | None, mountpoints: tuple[tuple[str, str], ...],
                    size: int | None = None) -> None:
    """The host image inside a user namespace (rootless): the kernel refuses an overlay whose lower layer
    is the host's / (it has locked submounts), so the root is a tmpfs holding one overlay per top-level
    directory of the host, its symlinks, and empty mount points for /proc, /sys and /dev."""
    mount("tmpfs", merged, "tmpfs", MS_NOSUID, "mode=0755" + (f",size={size}" if size else ""))  # new top-levels
    submounts = {m.split("/")[1] for m in _mount_points() if m.count("/") >= 1 and m != "/"}
    for name in sorted(os.listdir("/")):
        src, dst = "/" + name, os.path.join(merged, name)
        if os.path.islink(src):
            os.symlink(os.readlink(src), dst)
            continue
        if not os.path.isdir(src):
            continue
        os.mkdir(dst, 0o755)
        if name in ("proc", "sys", "dev"):
            continue  # fresh mounts go here
        if name in submounts:
            _bind(src, dst, True)  # has mounts of its own below it: an overlay would be refused
            continue
        if upper is not None and work is not None:
            u, w = os.path.join(upper, name), os.path.join(work, name)
            os.mkdir(u)
            os.mkdir(w)
            mount("overlay", dst, "overlay", 0, f"lowerdir={src},upperdir={u},workdir={w}")
        else:
            _bind(src, dst, True)
    make_mountpoints(merged, mountpoints)


def _mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split(" ")[4] for line in f]


def _bind(source: str, target: str, read_only: bool, recursive: bool = True) -> None:
    mount(source, target, None, MS_BIND | (MS_REC if recursive else 0))
    if read_only:
        # A read-only bind needs a remount; keep the flags a locked mount already has or the kernel refuses.
        flags = MS_BIND | MS_REMOUNT | MS_RDONLY
        st = os.statvfs(target)
        if st.f_flag & os.ST_NOSUID:
            flags |= MS_NOSUID
        if st.f_flag & os.ST_NODEV:
            flags |= MS_NODEV
        if st.f_flag & os.ST_NOEXEC:
            flags |= MS_NOEXEC
        mount(None, target, None, flags)


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top + "/")


def _overlap(a: str, b: str) -> bool:
    return _under(a, b) or _under(b, a)


AHEAD_TOPS = ("/dev", "/sys")  # the filesystems a holder's root may get made ahead, beside it (ahead_ops)


def ahead_ops(plan: RootfsPlan) -> tuple[int, ...]:
    """Which of the plan's operations can be done before PID 1 exists, by the launch helper in the holder's mount,
    network and IPC namespaces (holder.premount): the /dev tmpfs with its nodes, links, pts, shm and mqueue, sysfs
    and the masks under /sys, the tmpfs at /sys/fs/cgroup and its directories — what depends on neither PID 1's PID
    namespace (/proc and what lies under it) nor its cgroup namespace (the cgroup filesystems mounted at
    /sys/fs/cgroup, and the read-only remount after them). They are made in a directory beside the root and PID 1
    moves the two trees in (move_ahead): an operation is ahead only inside the /dev or /sys mount made ahead. Not a
    bind of a host path (a volume, the host's mqueue: bound at the run, as the path then is), and nothing whose
    target meets that of an earlier operation left to PID 1 (done first, it would change what that one mounts
    over). Returns their indices, in the plan's order."""
    ahead: list[int] = []
    later: list[str] = []
    tops: list[str] = []
    for i, op in enumerate(plan.ops):
        t = op.target
        inside = any(t != top and _under(t, top) for top in tops)
        top = t in AHEAD_TOPS and op.action == "mount" and t not in tops
        if (inside or top) and op.action != "bind" and op.fstype not in ("cgroup", "cgroup2") \
                and not any(_overlap(t, x) for x in later):
            ahead.append(i)
            if top:
                tops.append(t)
        else:
            later.append(t)
    return tuple(ahead)


def ahead_tops(plan: RootfsPlan, ahead: tuple[int, ...]) -> tuple[str, ...]:
    """The mounts made ahead that PID 1 moves into its root (with everything mounted below them)."""
    return tuple(plan.ops[i].target for i in ahead if plan.ops[i].target in AHEAD_TOPS)


def host_sourced(plan: RootfsPlan, skip: tuple[int, ...]) -> bool:
    """Does an operation of `plan` but those in `skip` take a host path as its source (a bind: a volume, the hosts
    file, the interpreter's paths; a device node)? Made inside a root pivoted into ahead, it would find the
    container's own path there instead (holder.pivoted_root)."""
    skipped = frozenset(skip)
    return any(op.action in ("bind", "devnode") for i, op in enumerate(plan.ops) if i not in skipped)


def apply_ahead(root: str, plan: RootfsPlan) -> None:
    """The operations of `plan` (ahead_ops of a container's plan) under `root`, a directory beside the container's
    root (holder.premount). Strict: no fallback, a refused mount fails."""
    for op in plan.ops:
        if op.target in AHEAD_TOPS:
            os.makedirs(root + op.target, exist_ok=True)
    apply_plan(root, plan, strict=True)


def move_ahead(root: str, ahead_root: str, tops: tuple[str, ...]) -> None:
    """PID 1's part of the mounts made ahead: move each tree made under `ahead_root` to its place in the root."""
    for t in tops:
        mount(ahead_root + t, root + t, None, MS_MOVE)


def apply_plan(root: str, plan: RootfsPlan, skip: tuple[int, ...] = (), strict: bool = False) -> list[str]:
    """Run the plan under `root` (the merged directory). Returns notes about fallbacks taken. `skip`: operations
    done ahead already (ahead_ops); `strict`: no fallback, a refused mount fails."""
    notes: list[str] = []
    skipped = frozenset(skip)
    for i, op in enumerate(plan.ops):
        if i in skipped:
            continue
        t = root + op.target
        try:
            if op.action == "mount":
                mount(op.source, t, op.fstype, op.flags, op.data)
            elif op.action == "remount_ro":
                mount(None, t, None, MS_REMOUNT | MS_RDONLY | op.flags, op.data)
            elif op.action == "bind":
                _bind(op.source or "", t, op.read_only)
            elif op.action == "mkdir":
                try:
                    os.mkdir(t)  # (its parent is there, as a rule: one system call, not makedirs' walk)
                except FileExistsError:
                    pass
                except FileNotFoundError:
                    os.makedirs(t, exist_ok=True)
            elif op.action == "devnode":
                os.close(os.open(t, os.O_CREAT | os.O_WRONLY, 0o666))
                mount(op.source, t, None, MS_BIND)
            elif op.action == "symlink":
                os.symlink(op.source or "", t)
            elif op.action == "mask":
                _mask(root, t)
            elif op.action == "readonly":
                if os.path.lexists(t):
                    _bind(t, t, True)
            else:
                raise ValueError(f"unknown mount action {op.action}")
        except OSError as e:
            if op.fallback and e.errno in (errno.EPERM, errno.EACCES, errno.EINVAL) and not strict:
                _bind(op.fallback, t, op.read_only or bool(op.flags & MS_RDONLY))
                notes.append(f"{op.target}: {op.fstype} mount refused ({errno.errorcode.get(e.errno)}); "
                             f"bound the host's {op.fallback}")
            else:
                raise
    return notes


def _mask(root: str, path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        mount("tmpfs", path, "tmpfs", MS_RDONLY | NOSUID_NODEV_NOEXEC, "size=0")
    else:
        mount(root + "/dev/null", path, None, MS_BIND)


def pivot_into(root: str) -> None:
    """Make `root` the process's /: pivot_root(".", ".") stacks the old root on top of the new one,
    then a lazy unmount drops it (runc's way: no put_old directory needed)."""
    os.chdir(root)
    libc.pivot_root(".", ".")
    libc.umount2(".", libc.MNT_DETACH)
    os.chdir("/")


def make_private_root() -> None:
    mount(None, "/", None, MS_REC | MS_PRIVATE)


# -- the layer diff (`docker diff`) ------------------------------------------------------------------

def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def layer_diff(upper: str, lower: str, mp_layer: str | None = None, split_top: bool = False,
               top: str | None = None, mountpoints: tuple[tuple[str, str], ...] = ()) -> list[DiffEntry]:
    """What the writable layer holds relative to the image: A(dded), C(hanged), D(eleted).

    A path present in the upper layer and in the image is C, one only in the upper layer is A, a
    whiteout is D; a directory that exists in both is C when something below it changed (Docker's rule).
    With split_top (rootless: one overlay per top-level directory), `top` is the tmpfs holding them: what
    was added or removed at the top level itself lives there, not in an upper layer (the container's
    `mountpoints` made there are not changes).
    """
    out: list[DiffEntry] = _top_level_diff(top, lower, mountpoints) if split_top and top else []
    if not split_top:
        with os.scandir(upper) as entries:
            if next(entries, None) is None:  # nothing written (a cell that only computed): one read, not a walk
                return out
    base = len(upper)

    view = LayerView(lower)

    def in_image(rel: str) -> bool:
        if mp_layer:
            try:
                return not _is_whiteout(os.lstat(mp_layer + rel))  # a mask hides the host's file
            except OSError:
                pass
        return view.lexists(rel)

    # Through directory descriptors (os.fwalk: each one opened from its parent's and checked to be the directory
    # listed): what the container left running may still swap a directory for a symlink, which a walk by path
    # would follow onto the host's tree.
    for dirpath, dirnames, filenames, dirfd in os.fwalk(upper):
        if dirpath == upper and split_top:
            # one overlay per top-level directory (mount_host_tree): an untouched one is not a change
            dirnames[:] = [d for d in dirnames if _has_entries(dirfd, d)]
        for name in sorted(dirnames) + sorted(filenames):
            rel = os.path.join(dirpath, name)[base:]
            try:
                st = os.lstat(name, dir_fd=dirfd)
            except OSError:
                continue
            if _is_whiteout(st):
                out.append(DiffEntry("D", rel, 0))
                continue
            isdir = stat.S_ISDIR(st.st_mode)
            kind = "C" if in_image(rel) else "A"
            out.append(DiffEntry(kind, rel, 0 if isdir else st.st_size, isdir))
    out.sort(key=lambda e: e.path)
    return out


def _has_entries(dirfd: int, name: str) -> bool:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
    except OSError:
        return False
    try:
        return bool(os.listdir(fd))
    finally:
        os.close(fd)


def _top_level_diff(top: str, lower: str, mountpoints: tuple[tuple[str, str], ...]) -> list[DiffEntry]:
    """Entries of the rootless root tmpfs that mount_host_tree did not put there (A, with everything below
    them on the same filesystem), and the host's top-level directories and symlinks the container removed (D).
    Mount points (volumes, tmpfs) made for the container are not changes, as with an overlay's mp layer."""
    out: list[DiffEntry] = []
    try:
        names = set(os.listdir(top))
        host = {n for n in os.listdir(lower) if os.path.islink(os.path.join(lower, n))
                or os.path.isdir(os.path.join(lower, n))}
        dev = os.lstat(top).st_dev
    except OSError:
        return out
    ours = {"proc", "sys", "dev"} | {path.strip("/").split("/")[0] for path, _kind in mountpoints}
    for name in sorted(names - host - ours):
        p = os.path.join(top, name)
        stack = [p]
        while stack:
            q = stack.pop()
            try:
                st = os.lstat(q)
            except OSError:
                continue
            if st.st_dev != dev:
                continue  # something mounted there: not the container's writes
            isdir = stat.S_ISDIR(st.st_mode)
            out.append(DiffEntry("A", "/" + os.path.relpath(q, top), 0 if isdir else st.st_size, isdir))
            if isdir:
                try:
                    stack += [os.path.join(q, n) for n in os.listdir(q)]
                except OSError:
                    pass
    out += [DiffEntry("D", "/" + name, 0) for name in sorted(host - names - ours)]
    return out
