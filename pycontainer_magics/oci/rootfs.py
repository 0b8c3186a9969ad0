"""The container's filesystem from config.json, in runc's order (libcontainer/rootfs_linux.go), run by the
container's init inside its new mount namespace:

    prepare_root      / made rslave (or rootfsPropagation), the rootfs bound onto itself
    mount_all         each `mounts` entry in order, destinations resolved inside the rootfs (securejoin);
                      bind mounts remounted with their flags, propagation applied, cgroup mounts per version
    setup_dev         when /dev is not a bind mount: the default and configured device nodes (mknod, or a
                      bind of the host's node in a user namespace), /dev/ptmx -> pts/ptmx, /dev/fd & co.
    ... prestart/createRuntime hooks (by the runtime), createContainer hooks (here) ...
    enter             pivot_root (or MS_MOVE + chroot with --no-pivot, or chroot without a mount namespace)
    finalize          read-only tmpfs and /dev remounted, the root read-only, umask
    mask, readonly    maskedPaths, readonlyPaths (after sysctl, in the caller)
"""

from __future__ import annotations

import errno
import os
import stat

from ..linux.libc import MNT_DETACH, MS_BIND, MS_PRIVATE, MS_RDONLY, MS_REC, MS_REMOUNT, MS_SLAVE, mount, umount2
from ..linux.securejoin import secure_join
from .config import Config, MountSpec

TYPE_CHECKING = False  # typing is not imported at run time: every engine call pays its imports
if TYPE_CHECKING:
    from typing import Any

MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
DEFAULT_FLAGS = MS_NOEXEC | MS_NOSUID | MS_NODEV
PROC_SUPER_MAGIC = 0x9FA0
VALID_PROC_MOUNTS = ("/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat", "/proc/swaps", "/proc/uptime",
                     "/proc/loadavg", "/proc/slabinfo", "/proc/net/dev", "/proc/sys/kernel/ns_last_pid")
DEFAULT_DEVICES = (("/dev/null", 1, 3), ("/dev/random", 1, 8), ("/dev/full", 1, 7), ("/dev/tty", 5, 0),
                   ("/dev/zero", 1, 5), ("/dev/urandom", 1, 9))


def _clean(p: str) -> str:
    return os.path.normpath("/" + p) if p else "/"


def needs_dev(cfg: Config) -> bool:
    return not any(m.type == "bind" and _clean(m.destination) == "/dev" for m in cfg.mounts)


def prepare_root(cfg: Config) -> None:
    """Our copy of the host's mounts made rslave (rprivate when asked) so nothing we mount reaches the
    host, then the rootfs bound onto itself. The configured rootfsPropagation is given to the container's
    / after pivot_root (apply_root_propagation): a shared or unbindable host / would let the container's
    mounts out, or refuse the bind."""
    prop = cfg.linux.get("rootfsPropagation")
    mount(None, "/", None, MS_PRIVATE | MS_REC if prop in ("private", "rprivate") else MS_SLAVE | MS_REC)
    if cfg.rootfs == "/" and cfg.host_root_mount:
        # The host's own tree as the root (the project's host image, `root.path: "/"`): pivot_root cannot
        # make / the new root of itself, so it is bound (recursively, in this private copy) to a directory
        # of the container's state and used from there, read-only as the config says.
        mount("/", cfg.host_root_mount, None, MS_BIND | MS_REC)
        cfg.rootfs = cfg.host_root_mount
    _parent_private(cfg.rootfs)
    mount(cfg.rootfs, cfg.rootfs, "bind", MS_BIND | MS_REC)


def apply_root_propagation(cfg: Config) -> None:
    prop = cfg.linux.get("rootfsPropagation")
    if prop:
        from .config import PROPAGATION
        if prop not in PROPAGATION:
            raise OSError(errno.EINVAL, f"linux.rootfsPropagation: unknown {prop!r}")
        mount(None, "/", None, PROPAGATION[prop])


def _parent_private(rootfs: str) -> None:
    """pivot_root refuses a root whose parent mount is shared, and the bind below must not propagate out."""
    best, shared = "", False
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left = line.split(" - ")[0].split()
            mp = _unescape(left[4])
            if (rootfs + "/").startswith(mp.rstrip("/") + "/") and len(mp) >= len(best):
                best, shared = mp, any(o.startswith("shared:") for o in left[6:])
    if best and shared:
        mount(None, best, None, MS_PRIVATE)


def _unescape(s: str) -> str:
    return s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def mount_all(cfg: Config, cgroupns: bool, cgroup_paths: dict[str, str]) -> None:
    for m in cfg.mounts:
        try:
            mount_entry(m, cfg.rootfs, cgroupns, cgroup_paths, cfg)
        except OSError as e:
            raise OSError(e.errno, f"error mounting {m.source!r} to rootfs at {m.destination!r}: "
                          f"{e.strerror or e}", e.filename) from None


def mount_entry(m: MountSpec, rootfs: str, cgroupns: bool, cgroup_paths: dict[str, str], cfg: Config) -> None:
    if m.type in ("proc", "sysfs"):
        dest = os.path.join(rootfs, _clean(m.destination).lstrip("/"))  # never through a symlink
        try:
            if not stat.S_ISDIR(os.lstat(dest).st_mode):
                raise OSError(errno.ENOTDIR, f"filesystem {m.type!r} must be mounted on ordinary directory", dest)
        except FileNotFoundError:
            pass
        os.makedirs(dest, 0o755, exist_ok=True)
        _mount_propagate(m, dest)
        return
    dest = secure_join(rootfs, m.destination)
    if m.type == "mqueue":
        os.makedirs(dest, 0o755, exist_ok=True)
        _mount_propagate(m, dest)
    elif m.type == "tmpfs":
        try:
            mode = stat.S_IMODE(os.stat(dest).st_mode)
        except FileNotFoundError:
            os.makedirs(dest, 0o755, exist_ok=True)
            mode = None
        if m.copyup:
            _tmpfs_copyup(m, dest)
        else:
            _mount_propagate(m, dest)
        if mode is not None:
            os.chmod(dest, mode)
    elif m.type == "bind":
        st = os.stat(m.source)  # a bind mount of something missing is an error
        _check_proc(rootfs, dest, m.source)
        _create_if_missing(dest, stat.S_ISDIR(st.st_mode))
        _mount_propagate(m, dest)
        if m.flags & ~(MS_REC | MS_REMOUNT | MS_BIND):
            _remount(m, dest)
        _set_rec_attr(m, dest)
    elif m.type == "cgroup":
        if list(cgroup_paths) == ["/sys/fs/cgroup"]:  # the one directory of cgroup v2
            _cgroup_v2(m, dest, cgroupns, cgroup_paths)
        else:
            _cgroup_v1(m, dest, rootfs, cgroupns, cfg)
    else:
        _check_proc(rootfs, dest, m.source)
        os.makedirs(dest, 0o755, exist_ok=True)
        _mount_propagate(m, dest)


def _mount_propagate(m: MountSpec, dest: str) -> None:
    flags = m.flags
    if m.type == "tmpfs" or _clean(m.destination) == "/dev":
        flags &= ~MS_RDONLY  # made read-only in finalize(), after /dev is filled
    mount(m.source, dest, m.type or None, flags, m.data or None)
    for p in m.propagation:
        mount(None, dest, None, p)


def _remount(m: MountSpec, dest: str) -> None:
    try:
        mount(m.source, dest, m.type, m.flags | MS_REMOUNT)
    except OSError as e:
        # a read-only source (its own mount flag locked in a user namespace) needs ro kept
        if os.statvfs(m.source).f_flag & os.ST_RDONLY:
            mount(m.source, dest, m.type, m.flags | MS_REMOUNT | MS_RDONLY)
        else:
            raise e


def _set_rec_attr(m: MountSpec, dest: str) -> None:
    if not (m.rec_set or m.rec_clear):
        return
    import ctypes

    from ..linux.libc import libc

    class MountAttr(ctypes.Structure):
        _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64), ("propagation", ctypes.c_uint64),
                    ("userns_fd", ctypes.c_uint64)]

    attr = MountAttr(m.rec_set, m.rec_clear, 0, 0)
    AT_FDCWD, AT_RECURSIVE, SYS_mount_setattr = -100, 0x8000, 442
    r = libc.syscall(SYS_mount_setattr, AT_FDCWD, dest.encode(), AT_RECURSIVE, ctypes.byref(attr),
                     ctypes.sizeof(attr))
    if r != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount_setattr {dest}: {os.strerror(e)}", dest)


def _tmpfs_copyup(m: MountSpec, dest: str) -> None:
    """`tmpcopyup`: the tmpfs starts with what the image had at that path."""
    import shutil
    import tempfile
    tmp = tempfile.mkdtemp(prefix="pyc-copyup-", dir="/tmp")
    try:
        mount(m.source, tmp, "tmpfs", m.flags & ~MS_RDONLY, m.data or None)
        for name in os.listdir(dest):
            s, d = os.path.join(dest, name), os.path.join(tmp, name)
            if os.path.isdir(s) and not os.path.islink(s):
                shutil.copytree(s, d, symlinks=True)
            else:
                shutil.copy2(s, d, follow_symlinks=False)
        from ..linux.libc import MS_MOVE
        mount(tmp, dest, None, MS_MOVE)
    finally:
        try:
            os.rmdir(tmp)
        except OSError:
            pass


def _check_proc(rootfs: str, dest: str, source: str) -> None:
    """No mount over /proc or inside it (a host's /proc/sys bound over the container's, say), except the
    files lxcfs emulates and a proc filesystem on /proc itself."""
    proc = os.path.join(rootfs, "proc")
    rel = os.path.relpath(dest, proc)
    if rel.startswith(".."):
        return
    if rel == ".":
        try:
            if os.statvfs(source) and _is_proc(source):
                return
        except OSError:
            pass
        raise OSError(errno.EPERM, f"{dest!r} cannot be mounted because it is not of type proc", dest)
    for ok in VALID_PROC_MOUNTS:
        if os.path.relpath(dest, os.path.join(rootfs, ok.lstrip("/"))) == ".":
            return
    raise OSError(errno.EPERM, f"{dest!r} cannot be mounted because it is inside /proc", dest)


def _is_proc(path: str) -> bool:
    import ctypes

    from ..linux.libc import libc
    buf = ctypes.create_string_buffer(120)
    if libc.statfs(path.encode(), buf) != 0:
        return False
    return int.from_bytes(buf.raw[:8], "little") == PROC_SUPER_MAGIC


def _create_if_missing(path: str, is_dir: bool) -> None:
    if os.path.exists(path):
        return
    if is_dir:
        os.makedirs(path, 0o755, exist_ok=True)
        return
    os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_CLOEXEC, 0o755))


def _cgroup_v1(m: MountSpec, dest: str, rootfs: str, cgroupns: bool, cfg: Config) -> None:
    """A tmpfs at the destination, then each hierarchy: mounted anew inside a cgroup namespace (its root is
    the container's cgroup), else the container's own directory of it bound."""
    tmpfs = MountSpec(destination=m.destination, type="tmpfs", source="tmpfs", flags=DEFAULT_FLAGS, data="mode=755",
                      propagation=m.propagation)
    os.makedirs(dest, 0o755, exist_ok=True)
    _mount_propagate(tmpfs, dest)
    own = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, names, path = line.rstrip("\n").split(":", 2)
            own[names] = path
    merged = []
    with open("/proc/self/mountinfo") as f:
        infos = [line for line in f if " - cgroup " in line]
    for line in infos:
        left, _, right = line.partition(" - ")
        lf, rf = left.split(), right.split()
        mp, root = _unescape(lf[4]), _unescape(lf[3])
        if not mp.startswith("/sys/fs/cgroup/"):
            continue
        name = os.path.basename(mp)
        opts = rf[2].split(",")
        ctrls = [o for o in opts if o not in ("rw", "ro", "relatime", "noatime", "nosuid", "nodev", "noexec", "xattr",
                                              "clone_children")]
        sub = os.path.join(dest, name)
        os.makedirs(sub, 0o755, exist_ok=True)
        flags = DEFAULT_FLAGS | (m.flags & MS_RDONLY)
        if cgroupns:
            data = ",".join(c for c in ctrls)
            mount("systemd" if "name=systemd" in ctrls else "cgroup", sub, "cgroup", flags, data)
        else:
            key = ",".join(ctrls)
            mine = own.get(key) or own.get(",".join(sorted(ctrls))) or "/"
            rel = os.path.relpath(mine, root) if root != "/" else mine.lstrip("/")
            src = os.path.join(mp, rel) if rel not in ("", ".") else mp
            mount(src, sub, None, MS_BIND | MS_REC | (m.flags & MS_RDONLY))
            if m.flags & MS_RDONLY:
                mount(src, sub, None, MS_BIND | MS_REC | MS_REMOUNT | MS_RDONLY | DEFAULT_FLAGS)
        if "," in name:
            merged.append(name)
    for mc in merged:
        for ss in mc.split(","):
            try:
                os.symlink(mc, os.path.join(dest, ss))
            except FileExistsError:
                pass
    if m.flags & MS_RDONLY:
        mount(None, dest, None, MS_REMOUNT | MS_BIND | MS_RDONLY | DEFAULT_FLAGS)


def _cgroup_v2(m: MountSpec, dest: str, cgroupns: bool, cgroup_paths: dict[str, str]) -> None:
    os.makedirs(dest, 0o755, exist_ok=True)
    try:
        mount(m.source or "cgroup", dest, "cgroup2", m.flags, m.data or None)
        return
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EBUSY):
            raise
    src = cgroup_paths.get("/sys/fs/cgroup", "/sys/fs/cgroup") if cgroupns else "/sys/fs/cgroup"
    mount(src, dest, None, MS_BIND | MS_REC | m.flags)
    if m.flags & MS_RDONLY:
        mount(src, dest, None, MS_BIND | MS_REMOUNT | m.flags)


# -- /dev --------------------------------------------------------------------------------------------

def setup_dev(cfg: Config, in_userns: bool) -> None:
    old = os.umask(0)
    try:
        devices: list[dict[str, Any]] = [{"path": p, "type": "c", "major": ma, "minor": mi, "fileMode": 0o666,
                                          "uid": 0, "gid": 0} for p, ma, mi in DEFAULT_DEVICES]
        for d in cfg.linux.get("devices") or []:
            devices = [x for x in devices if x["path"] != d.get("path")] + [d]
        for d in devices:
            if _clean(d.get("path", "")) == "/dev/ptmx":
                continue
            _device_node(cfg.rootfs, d, in_userns)
    finally:
        os.umask(old)
    ptmx = os.path.join(cfg.rootfs, "dev/ptmx")
    try:
        os.unlink(ptmx)
    except FileNotFoundError:
        pass
    os.symlink("pts/ptmx", ptmx)
    links = [("/proc/self/fd", "fd"), ("/proc/self/fd/0", "stdin"), ("/proc/self/fd/1", "stdout"),
             ("/proc/self/fd/2", "stderr")]
    if os.path.exists("/proc/kcore"):
        links.append(("/proc/kcore", "core"))
    for src, name in links:
        try:
            os.symlink(src, os.path.join(cfg.rootfs, "dev", name))
        except FileExistsError:
            pass


def _device_node(rootfs: str, d: dict[str, Any], bind: bool) -> None:
    path = d.get("path")
    if not path:
        return
    dest = secure_join(rootfs, path)
    os.makedirs(os.path.dirname(dest), 0o755, exist_ok=True)
    kind = d.get("type", "c")
    if bind:
        _bind_device(dest, path)
        return
    mode = int(d["fileMode"]) & 0o7777 if d.get("fileMode") is not None else 0o666
    fmt = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}.get(kind)
    if fmt is None:
        raise OSError(errno.EINVAL, f"{kind!r} is not a valid device type for device {path}")
    try:
        os.mknod(dest, mode | fmt, os.makedev(int(d.get("major", 0)), int(d.get("minor", 0))))
    except FileExistsError:
        return
    except PermissionError:
        _bind_device(dest, path)
        return
    os.chown(dest, int(d.get("uid") or 0), int(d.get("gid") or 0))


def _bind_device(dest: str, host_path: str) -> None:
    if not os.path.exists(dest):
        os.close(os.open(dest, os.O_CREAT | os.O_CLOEXEC, 0o644))
    mount(host_path, dest, "bind", MS_BIND)


# -- into the root -----------------------------------------------------------------------------------

def pivot(rootfs: str) -> None:
    from ..linux.libc import pivot_root
    old = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(new)
        pivot_root(".", ".")
        os.fchdir(old)
        # rslave first: our unmount must not propagate to the host
        mount(None, ".", None, MS_SLAVE | MS_REC)
        umount2(".", MNT_DETACH)
        os.chdir("/")
    finally:
        os.close(old)
        os.close(new)


def move_root(rootfs: str) -> None:
    """--no-pivot: cover the host's proc and sys mounts, move the rootfs onto /, chroot."""
    from ..linux.libc import MS_MOVE
    with open("/proc/self/mountinfo") as f:
        mps = [(_unescape(ln.split()[4]), ln.partition(" - ")[2].split()[0], _unescape(ln.split()[3])) for ln in f]
    for mp, fstype, root in mps:
        if root != "/" or fstype not in ("proc", "sysfs") or mp.startswith(rootfs):
            continue
        try:
            mount(None, mp, None, MS_SLAVE | MS_REC)
            umount2(mp, MNT_DETACH)
        except OSError as e:
            if e.errno == errno.ENOENT:
                continue
            if e.errno in (errno.EINVAL, errno.EPERM):
                mount("tmpfs", mp, "tmpfs", 0)
            else:
                raise
    os.chdir(rootfs)
    mount(rootfs, "/", None, MS_MOVE)
    chroot_here()


def chroot_here() -> None:
    os.chroot(".")
    os.chdir("/")


def reopen_dev_null() -> None:
    """stdio that was the host's /dev/null becomes the container's (runc)."""
    try:
        fd = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return  # no /dev/null in this root
    try:
        null = os.fstat(fd).st_rdev
        for i in (0, 1, 2):
            try:
                st = os.fstat(i)
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == null:
                os.dup2(fd, i)
    finally:
        os.close(fd)


def finalize(cfg: Config) -> None:
    for m in cfg.mounts:
        if m.flags & MS_RDONLY and (m.type == "tmpfs" or _clean(m.destination) == "/dev"):
            mount(None, _clean(m.destination), None, m.flags | MS_REMOUNT | MS_BIND | MS_RDONLY)
    if cfg.readonly_root:
        try:
            mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY)
        except OSError:
            flags = _statfs_flags("/")
            mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | flags)
    umask = (cfg.process.get("user") or {}).get("umask")
    os.umask(int(umask) if umask is not None else 0o022)


def _statfs_flags(path: str) -> int:
    v = os.statvfs(path)
    flags = 0
    for st_flag, ms in ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
                        (os.ST_RDONLY, MS_RDONLY)):
        if v.f_flag & st_flag:
            flags |= ms
    return flags


def readonly_path(path: str) -> None:
    try:
        mount(path, path, None, MS_BIND | MS_REC)
    except FileNotFoundError:
        return
    except OSError as e:
        if e.errno == errno.ENOENT:
            return
        raise
    flags = _statfs_flags(path) & (MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount(path, path, None, flags | MS_BIND | MS_REMOUNT | MS_RDONLY)


def mask_path(path: str) -> None:
    try:
        mount("/dev/null", path, None, MS_BIND)
    except OSError as e:
        if e.errno == errno.ENOENT:
            return
        if e.errno == errno.ENOTDIR:
            mount("tmpfs", path, "tmpfs", MS_RDONLY)
            return
        raise


def write_sysctl(key: str, value: str) -> None:
    with open(os.path.join("/proc/sys", key.replace(".", "/")), "w") as f:
        f.write(value)


__all__ = ["apply_root_propagation", "chroot_here", "finalize", "mask_path", "mount_all", "move_root", "needs_dev",
           "pivot", "prepare_root", "readonly_path", "reopen_dev_null", "setup_dev", "write_sysctl"]
