"""ctypes wrappers for the system calls Python's os module lacks.

Every wrapper raises OSError (errno, strerror, the path involved) on failure, so an error says
which file or mount point failed and why.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys


def _load_libc() -> ctypes.CDLL:
    # glibc's soname first: ctypes.util.find_library runs `ldconfig -p` in a subprocess (tens of ms).
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        from ctypes.util import find_library
        return ctypes.CDLL(find_library("c"), use_errno=True)


libc = _load_libc()

# mount(2) flags
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2

# prctl(2)
PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

SYS_pivot_root = 155  # x86_64
SYS_setns = 308


def check(ret: int, what: str, path: str | None = None) -> int:
    if ret == -1:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}", path)
    return ret


# The new mount API's numbers are the same on every architecture (from 424 on).
SYS_fsconfig, SYS_fspick = 431, 433
FSPICK_CLOEXEC = 0x1
AT_FDCWD = -100
FSCONFIG_SET_STRING, FSCONFIG_CMD_RECONFIGURE = 1, 7
RENAME_EXCHANGE = 2
SYS_renameat2 = 316  # x86_64 (a C library without its wrapper: glibc < 2.28)


def reconfigure(path: str, key: str, value: str) -> None:
    """Set one option of the filesystem mounted at `path` (fspick, fsconfig: a remount by the new mount API). Unlike
    mount(MS_REMOUNT), it needs no entry into the mount namespace the mount is in: a path through /proc/PID/root
    reaches it. The mount's own flags are left as they are."""
    fd = check(libc.syscall(SYS_fspick, AT_FDCWD, _b(path), FSPICK_CLOEXEC), "fspick", path)
    try:
        check(libc.syscall(SYS_fsconfig, fd, FSCONFIG_SET_STRING, _b(key), _b(value), 0), f"fsconfig {key}", path)
        check(libc.syscall(SYS_fsconfig, fd, FSCONFIG_CMD_RECONFIGURE, None, None, 0), "fsconfig", path)
    finally:
        os.close(fd)


def _b(s: str | bytes | None) -> bytes | None:
    if s is None:
        return None
    # (os.fsencode's encoding, without its Python frames: PID 1 of a Python cell calls this in a fresh fork for every
    # mount, where each frame's objects are pages to copy)
    return s if isinstance(s, bytes) else s.encode(_FS_ENCODING, _FS_ERRORS)


_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()


libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
libc.unshare.argtypes = [ctypes.c_int]
libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
libc.syscall.restype = ctypes.c_long


def mount(source: str | None, target: str, fstype: str | None = None, flags: int = 0,
          data: str | None = None) -> None:
    if libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)) == -1:  # (the message made only then)
        check(-1, f"mount {fstype or source or ''} on {target}", target)


def umount2(target: str, flags: int = 0) -> None:
    check(libc.umount2(_b(target), flags), f"umount {target}", target)


def unshare(flags: int) -> None:
    check(libc.unshare(flags), f"unshare({flags:#x})")


def setns(fd: int, nstype: int = 0) -> None:
    check(libc.setns(fd, nstype), "setns")


def pivot_root(new_root: str, put_old: str) -> None:
    check(libc.syscall(SYS_pivot_root, _b(new_root), _b(put_old)), f"pivot_root {new_root}", new_root)


def sethostname(name: str) -> None:
    b = name.encode()
    check(libc.sethostname(b, len(b)), "sethostname")


def prctl(option: int, a2: int = 0, a3: int = 0, a4: int = 0, a5: int = 0) -> int:
    return check(libc.prctl(option, a2, a3, a4, a5), f"prctl({option})")


def sched_getcpu() -> int:
    """The CPU this thread runs on (as it was a moment ago: the scheduler may move it any time)."""
    return check(libc.sched_getcpu(), "sched_getcpu")


def set_no_new_privs() -> None:
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


def rename_exchange(a: str, b: str) -> None:
    """Swap the files at two paths at once (renameat2 RENAME_EXCHANGE); both must exist."""
    fn = getattr(libc, "renameat2", None)
    if fn is not None:
        ret = fn(AT_FDCWD, _b(a), AT_FDCWD, _b(b), RENAME_EXCHANGE)
    elif os.uname().machine == "x86_64" and ctypes.sizeof(ctypes.c_void_p) == 8:  # (not a 32-bit userland)
        ret = libc.syscall(SYS_renameat2, AT_FDCWD, _b(a), AT_FDCWD, _b(b), RENAME_EXCHANGE)
    else:
        raise OSError(errno.ENOSYS, "renameat2: not in this C library", b)
    check(ret, "renameat2", b)
