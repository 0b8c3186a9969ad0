"""Where a runc-style container lives between commands: `<root>/<id>/` with

    state.json   the record (id, bundle, rootfs, created, owner, init pid and its start time, cgroup
                 directories, the config as it was at create: a bundle edited later changes nothing)
    exec.fifo    until `start`: the created container's init waits on it

No process of ours stays with the container: the status is read from the kernel each time, as runc does —
stopped once the init process is gone (or a zombie its parent has not reaped yet), created while the fifo
is there, paused while its cgroup is frozen, running otherwise.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from collections.abc import Iterator

from ..errors import OSFailure
from ..linux.proc import start_time

TYPE_CHECKING = False  # typing itself is not imported: the command line's start-up
if TYPE_CHECKING:
    from typing import Any

STATE_FILE = "state.json"
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


@contextlib.contextmanager
def locked(directory: str, cid: str) -> Iterator[None]:
    """The container's directory locked (flock) for a command that changes it."""
    from ..linux.files import FileLock
    try:
        with FileLock(directory, directory=True):
            yield
    except FileNotFoundError as e:
        if e.filename == directory or not os.path.isdir(directory):
            raise StateError(errno.ENOENT, "container does not exist") from None
        raise


def load(directory: str) -> dict[str, Any]:
    try:
        with open(os.path.join(directory, STATE_FILE), "rb") as f:
            rec: dict[str, Any] = json.loads(f.read())
            return rec
    except (FileNotFoundError, NotADirectoryError):
        raise StateError(errno.ENOENT, "container does not exist") from None
    except ValueError:
        raise StateError(errno.EIO, f"{directory}/{STATE_FILE}: damaged state record") from None


def save(directory: str, rec: dict[str, Any]) -> None:
    from ..linux.files import write_json
    write_json(os.path.join(directory, STATE_FILE), rec, mode=0o600, indent=None)


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
        return sorted(n for n in os.listdir(root) if valid_id(n))
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
           "list_ids", "load", "locked", "new_dir", "now_rfc3339", "owner_name", "public", "save", "start_time",
           "status"]
