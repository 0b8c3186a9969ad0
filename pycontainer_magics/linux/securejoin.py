"""Resolve a path inside a root directory as if that directory were `/` (filepath-securejoin's SecureJoin,
which runc uses for every mount destination): symlinks, absolute ones included, and `..` never lead out
of the root. A config's mount destination inside a hostile image cannot point a mount at the host."""

from __future__ import annotations

import errno
import os
import stat

MAX_SYMLINKS = 255


def secure_join(root: str, unsafe: str) -> str:
    """root + unsafe, with every symlink along the way resolved within root. Components that do not exist
    are kept as they are (the caller creates them)."""
    root = os.path.abspath(root)
    pending = [p for p in unsafe.split("/") if p and p != "."]
    done: list[str] = []
    links = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = os.path.join(root, *done, part)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            done.append(part)
            continue
        except NotADirectoryError:
            done.append(part)
            continue
        if not stat.S_ISLNK(st.st_mode):
            done.append(part)
            continue
        links += 1
        if links > MAX_SYMLINKS:
            raise OSError(errno.ELOOP, "too many symbolic links", os.path.join(root, unsafe.lstrip("/")))
        target = os.readlink(candidate)
        if target.startswith("/"):
            done = []
        pending = [p for p in target.split("/") if p and p != "."] + pending
    return os.path.join(root, *done)


__all__ = ["secure_join"]
