"""Writing below a directory without ever leaving it: every path is resolved one component at a time through
directory file descriptors (`openat` with `O_NOFOLLOW`), so no symlink — one the content being written
planted a moment ago, or one anyone else put there — is followed at any step, and `..` is never a
component. Metadata (owner, mode, times, xattrs) is applied through a descriptor of the very inode that
was made (`O_PATH` + `/proc/self/fd/N`), never by path, so a directory replaced by a symlink between its
creation and its deferred `chmod` cannot redirect the `chmod` to a host file.

This is the primitive layer unpacking stands on (the same discipline as runc's `securejoin`/`openat2`-based
rootfs code and moby's `pkg/archive`), kept free of any notion of tar or layers.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Sequence

from ..errors import OSFailure

_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CACHED_DEPTH = 64  # directory fds kept open along the current path; deeper levels are opened per call


class SymlinkOnPath(OSFailure):
    """A path component below the tree's root is a symlink: refused, never followed."""

    def __init__(self, where: str):
        super().__init__(None, f"{where!r} is a symlink", where)
        self.where = where


class NotBelow(OSFailure):
    """A component that would leave the tree (`..`) or is not a plain name (`/`, empty, `.`)."""


def fd_path(fd: int) -> str:
    """A path naming exactly the inode `fd` holds (the kernel resolves /proc/self/fd/N to the open file
    itself, not by name): how an `O_PATH` descriptor gets chmod/chown/utime/xattrs applied."""
    return f"/proc/self/fd/{fd}"


def check_name(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise NotBelow(None, f"{name!r} is not a plain file name")
    return name


class DirTree:
    """A directory opened once (`root`); `dir(parts)` gives a descriptor of a directory below it, walking
    component by component with `O_NOFOLLOW`. Descriptors along the most recent path are cached (tar
    streams visit one directory after another), and dropped with `forget` when something at or below a
    path is removed or replaced."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self.fd = os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self._chain: list[tuple[str, int]] = []  # (component, fd) for a prefix of the last path walked
        self._deep: list[int] = []  # fds opened beyond the cached depth for the last call, closed on the next
        # The parts of the last `dir` call and its fd, while that fd is open (None otherwise): a caller may use
        # `last_fd` without a call when it wants `last` again (a tar stream's usual next entry).
        self.last: list[str] | None = None
        self.last_fd = -1

    def close(self) -> None:
        self.last = None
        self._drop(0)
        self._close_deep()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> DirTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _drop(self, keep: int) -> None:
        while len(self._chain) > keep:
            os.close(self._chain.pop()[1])
            self.last = None

    def _close_deep(self) -> None:
        while self._deep:
            os.close(self._deep.pop())

    def forget(self, parts: Sequence[str]) -> None:
        """`parts` (and everything below it) is about to be removed or replaced: cached fds there go."""
        n = len(parts)
        if len(self._chain) >= n and all(self._chain[i][0] == parts[i] for i in range(n)):
            self._drop(n - 1 if n else 0)

    def _step(self, parent: int, name: str, parts: Sequence[str], i: int, make: bool, mode: int) -> int:
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not make:
                raise
            os.mkdir(name, mode, dir_fd=parent)
        except NotADirectoryError:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                raise SymlinkOnPath("/".join(parts[: i + 1])) from None
            if not make:
                raise
            os.unlink(name, dir_fd=parent)  # a file where a directory is wanted: replaced, as tar does
            os.mkdir(name, mode, dir_fd=parent)
        return os.open(name, _DIR_FLAGS, dir_fd=parent)

    def dir(self, parts: Sequence[str], *, make: bool = False, mode: int = 0o755) -> int:
        """A descriptor (O_PATH, owned by the tree: valid until the next call) of the directory `parts` below
        the root; `make` creates missing directories (and replaces non-directories) on the way. Raises
        SymlinkOnPath for a symlink anywhere on the way, FileNotFoundError/NotADirectoryError without `make`."""
        if parts == self.last:  # the same directory as the last call (a tar stream's usual next entry)
            return self.last_fd
        for p in parts:
            check_name(p)
        self._close_deep()
        keep = 0
        while keep < len(self._chain) and keep < len(parts) and self._chain[keep][0] == parts[keep]:
            keep += 1
        self._drop(keep)
        fd = self._chain[-1][1] if self._chain else self.fd
        for i in range(keep, len(parts)):
            fd = self._step(fd, parts[i], parts, i, make, mode)
            if i < _CACHED_DEPTH:
                self._chain.append((parts[i], fd))
            else:  # past the cached depth only the newest fd is kept (a hostile path may be 2000 deep)
                self._close_deep()
                self._deep.append(fd)
        self.last = list(parts) if not self._deep else None
        self.last_fd = fd
        return fd

    def open_dir(self, parts: Sequence[str], **kw: bool | int) -> int:
        """As `dir`, but a descriptor of the caller's own (close it)."""
        return os.dup(self.dir(parts, **kw))  # type: ignore[arg-type]

    @staticmethod
    def remove(parent: int, name: str) -> bool:
        """Remove `name` in directory `parent` whatever it is; a directory with everything below it, through
        fds (shutil.rmtree's fd-based walk follows no symlink). True when it was a directory."""
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=parent)
            return True
        os.unlink(name, dir_fd=parent)
        return False

    @staticmethod
    def lstat(parent: int, name: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None


def open_node(parent: int, name: str) -> int:
    """An O_PATH descriptor of `name` itself (never a symlink's target; a device is not opened)."""
    return os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)


def set_owner_mode_times(fd: int, *, uid: int | None, gid: int | None, mode: int | None, mtime: float | None) -> None:
    """Owner (when given: root only), then mode (chown clears set-id bits, so mode comes after), then times,
    all on the inode `fd` holds (O_PATH or a real descriptor; not a symlink)."""
    path = fd_path(fd)
    if uid is not None and gid is not None:
        os.chown(path, uid, gid)
    if mode is not None:
        os.chmod(path, mode)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def set_symlink_owner_times(parent: int, name: str, *, uid: int | None, gid: int | None,
                            mtime: float | None) -> None:
    """A symlink's own owner and times (lchown/lutimes relative to its directory's fd)."""
    if uid is not None and gid is not None:
        os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)
    if mtime is not None:
        os.utime(name, (mtime, mtime), dir_fd=parent, follow_symlinks=False)


def set_xattr(parent: int, name: str, key: str, value: bytes) -> None:
    """An xattr on `name` itself (a symlink's own, not its target's): the directory is pinned by its fd, the
    last component is not followed."""
    os.setxattr(f"{fd_path(parent)}/{name}", key, value, follow_symlinks=False)
