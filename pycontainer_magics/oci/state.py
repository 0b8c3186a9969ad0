"""Where a runc-style container lives between commands: `<root>/<id>/` with

    state        the record, in marshal's format (no json import on the hot path: `pycontainer state ID`
                 prints it as JSON) (id, bundle, rootfs, created, owner, init pid and its start time, cgroup
                 directories, the config as it was at create: a bundle edited later changes nothing)
    exec.fifo    until `start`: the created container's init waits on it

No process of ours stays with the container: the status is read from the kernel each time, as runc does —
stopped once the init process is gone (or a zombie its parent has not reaped yet), created while the fifo
is there, paused while its cgroup is frozen, running otherwise.
"""

from __future__ import annotations

import errno
import marshal
import os
import time

from ..errors import OSFailure
from ..linux.proc import start_time

TYPE_CHECKING = False  # typing itself is not imported: the command line's start-up
if TYPE_CHECKING:
    from typing import Any

STATE_FILE = "state"
FIFO = "exec.fifo"
ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")  # runc's rule
OCI_VERSION = "1.0.2"  # the runtime-spec version our state and features documents say they follow


class StateError(OSFailure):
    """A lifecycle command cannot be done. str() is one line (runc's wording where engines match on it)."""


def default_root() -> str:
    from ..paths import run_dir  # PYCONTAINER_RUN_DIR, or /run/pycontainer_magics as root
    return os.path.join(run_dir(), "oci")


def check_id(cid: str) -> str:
    if not valid_id(cid):
        raise StateError(errno.EINVAL, f"invalid container id {cid!r}: use letters, digits and + - . _")
    return cid


def valid_id(cid: str) -> bool:
    return bool(cid) and cid not in (".", "..") and all(c in ID_CHARS for c in cid)


def container_dir(root: str, cid: str) -> str:
    return os.path.join(root, check_id(cid))


def alive(rec: dict[str, Any]) -> bool:
    pid, st = rec.get("pid"), rec.get("pid_start")
    return bool(pid) and st is not None and start_time(int(pid)) == st  # type: ignore[arg-type]


def now_rfc3339() -> str:
    t = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t // 1_000_000_000)) + f".{t % 1_000_000_000:09d}Z"


class locked:  # noqa: N801 - used as `with locked(directory, cid):`
    """The container's directory flocked for a command that changes it. A class, not linux.files.FileLock or
    a contextmanager: their imports (threading, tempfile, contextlib) cost every engine call more than the
    lock itself, and a command line has no threads to exclude."""

    def __init__(self, directory: str, cid: str) -> None:
        self.directory, self.fd = directory, -1

    def __enter__(self) -> None:
        import fcntl
        try:
            self.fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise StateError(errno.ENOENT, "container does not exist") from None
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def load(directory: str) -> dict[str, Any]:
    try:
        with open(os.path.join(directory, STATE_FILE), "rb") as f:
            rec: dict[str, Any] = marshal.loads(f.read())
            return rec
    except (FileNotFoundError, NotADirectoryError):
        raise StateError(errno.ENOENT, "container does not exist") from None
    except (ValueError, EOFError, TypeError):
        raise StateError(errno.EIO, f"{directory}/{STATE_FILE}: damaged state record") from None


def save(directory: str, rec: dict[str, Any]) -> None:
    """Replace the record at once. Not linux.files.atomic_write: its tempfile import costs each engine call
    more than the write; a name of this process's own in the container's (root-only) directory will do."""
    path = os.path.join(directory, STATE_FILE)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, marshal.dumps(rec))
    finally:
        os.close(fd)
    os.replace(tmp, path)


def remove(directory: str) -> None:
    """The container's directory and the few files in it (no shutil: its import costs every command)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        try:
            os.unlink(os.path.join(directory, name))
        except IsADirectoryError:
            import shutil
            shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
        except FileNotFoundError:
            pass
    try:
        os.rmdir(directory)
    except FileNotFoundError:
        pass


def status(directory: str, rec: dict[str, Any]) -> str:
    if rec.get("status") == "creating":
        return "creating" if rec.get("creator") and start_time(rec["creator"]) == rec.get("creator_start") \
            else "stopped"
    if not alive(rec):
        return "stopped"
    if os.path.exists(os.path.join(directory, FIFO)):
        return "created"
    if rec.get("cgroup"):
        from .cgroups import OciCgroup
        if OciCgroup(rec["cgroup"]).frozen():
            return "paused"
    return "running"


def public(directory: str, rec: dict[str, Any]) -> dict[str, Any]:
    """The state as `runc state` prints it (the runtime-spec state plus runc's rootfs, created, owner)."""
    st = status(directory, rec)
    out: dict[str, Any] = {"ociVersion": OCI_VERSION, "id": rec["id"],
                           "pid": rec.get("pid") or 0 if st != "stopped" else 0, "status": st,
                           "bundle": rec["bundle"], "rootfs": rec.get("rootfs", ""), "created": rec["created"],
                           "owner": rec.get("owner", "")}
    if rec.get("annotations"):
        out["annotations"] = rec["annotations"]
    return out


def list_ids(root: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(root) if valid_id(n) and not n.startswith("."))  # .seccomp: a cache
    except FileNotFoundError:
        return []


def new_dir(root: str, cid: str) -> str:
    """Make `<root>/<id>` (the root private to its owner: the records name host paths and pids). An id
    in use is runc's error."""
    os.makedirs(root, mode=0o700, exist_ok=True)
    directory = container_dir(root, cid)
    try:
        os.mkdir(directory, 0o711)
    except FileExistsError:
        raise StateError(errno.EEXIST, f"container with id exists: {cid}") from None
    return directory


def owner_name() -> str:
    try:
        import pwd
        return pwd.getpwuid(os.geteuid()).pw_name
    except (KeyError, ImportError):
        return str(os.geteuid())


__all__ = ["FIFO", "OCI_VERSION", "STATE_FILE", "StateError", "alive", "check_id", "container_dir", "default_root",
           "list_ids", "load", "locked", "new_dir", "now_rfc3339", "owner_name", "public", "remove", "save",
           "start_time", "status"]
