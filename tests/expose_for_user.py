"""Run a command (as root) in a private mount namespace where the given paths are reachable by any user.

    python expose_for_user.py PATH... -- COMMAND...

A checkout in a home directory other users cannot enter (0700), or an interpreter under /root (pyenv),
cannot be used by a throw-away test user. The host's modes are never changed: in a mount namespace of
the command's own, each directory on the way that others cannot enter is covered with a 0755 tmpfs
holding only what leads to the paths (the original entries bind-mounted back, so the paths stay the
same). Everything vanishes with the namespace when the command ends. Needs open_tree/move_mount (5.2+).
"""

from __future__ import annotations

import ctypes
import os
import stat
import sys

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
SYS_open_tree, SYS_move_mount = 428, 429  # x86_64, as the rest of the project
AT_FDCWD = -100
OPEN_TREE_CLONE, AT_RECURSIVE = 1, 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 4
CLONE_NEWNS, MS_REC, MS_PRIVATE = 0x20000, 0x4000, 1 << 18


def _check(ret: int, what: str) -> int:
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")
    return ret


def blocked_dirs(paths: list[str]) -> dict[str, set[str] | None]:
    """{directory others cannot enter (or, for a path itself, list): the entries to keep (None: all)}."""
    out: dict[str, set[str] | None] = {}
    for path in paths:
        parts = path.strip("/").split("/")
        for i in range(len(parts)):
            d = "/" + "/".join(parts[:i])
            if d != "/" and not os.stat(d).st_mode & 0o001:
                if out.get(d, set()) is not None:
                    out.setdefault(d, set()).add(parts[i])  # type: ignore[union-attr]
        if os.path.isdir(path) and os.stat(path).st_mode & 0o005 != 0o005:
            out[path] = None
    return out


def expose(paths: list[str]) -> None:
    _check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
    for d, keep in sorted(blocked_dirs(paths).items(), key=lambda kv: kv[0].count("/")):
        names = sorted(os.listdir(d)) if keep is None else sorted(keep)
        # Take each entry (a detached copy of its mount tree) before the tmpfs hides it.
        taken = []
        for name in names:
            full = os.path.join(d, name)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                taken.append((name, "link", os.readlink(full)))
            else:
                fd = _check(libc.syscall(SYS_open_tree, AT_FDCWD, os.fsencode(full),
                                         OPEN_TREE_CLONE | AT_RECURSIVE | os.O_CLOEXEC), f"open_tree {full}")
                taken.append((name, "dir" if stat.S_ISDIR(st.st_mode) else "file", fd))
        _check(libc.mount(b"tmpfs", os.fsencode(d), b"tmpfs", 0, b"mode=0755"), f"mount tmpfs on {d}")
        for name, kind, what in taken:
            full = os.path.join(d, name)
            if kind == "link":
                os.symlink(what, full)
                continue
            if kind == "dir":
                os.mkdir(full)
            else:
                open(full, "w").close()
            _check(libc.syscall(SYS_move_mount, what, b"", AT_FDCWD, os.fsencode(full), MOVE_MOUNT_F_EMPTY_PATH),
                   f"move_mount onto {full}")
            os.close(what)


def main(argv: list[str]) -> None:
    split = argv.index("--")
    expose([os.path.realpath(p) for p in argv[:split]])
    os.execvp(argv[split + 1], argv[split + 1:])


if __name__ == "__main__":
    main(sys.argv[1:])
