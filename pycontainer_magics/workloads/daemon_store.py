"""The Engine API daemon's containers on disk: one directory each, so a daemon that was killed (or
restarted) finds every container again, running or exited, and a notebook can list them without a daemon.

    <state dir>/engine/containers/<64-hex id>/
        config.json     what `docker create` asked (Docker's Config and HostConfig, the name, the image id)
        state.json      how it is: Status, Pid, ExitCode, OOMKilled, StartedAt, ... (Docker's State) plus
                        the supervisor's pid and the run id (its cgroup's name); written by the daemon
                        and by the container's supervisor, under a lock, replaced atomically
        container.log   its output (json_log.py)
        layer/          its writable layer (upper and work), kept across stop and start as Docker's

Whether a recorded "running" container still runs is checked against the process itself (pid and start
time), so a record from before a reboot or a killed supervisor reads as exited.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import threading
from collections.abc import Iterator
from typing import Any

from ..paths import state_dir

ID_RE = re.compile(r"^[0-9a-f]{64}$")
NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")  # Docker's validContainerNamePattern
CONFIG = "config.json"
STATE = "state.json"


def root() -> str:
    return os.path.join(state_dir(), "engine", "containers")


def container_dir(cid: str) -> str:
    return os.path.join(root(), cid)


def new_id() -> str:
    return secrets.token_hex(32)


# -- processes ---------------------------------------------------------------------------------------

def start_time(pid: int | None) -> int | None:
    """A process's start time in clock ticks (None: gone or a zombie): with the pid it names one process."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def alive(pid: int | None, start: int | None) -> bool:
    return bool(pid) and start is not None and start_time(pid) == start


# -- the files ---------------------------------------------------------------------------------------

@contextlib.contextmanager
def locked(cid: str) -> Iterator[None]:
    fd = os.open(container_dir(cid), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _read(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        d: dict[str, Any] = json.load(f)
        return d


def _write(path: str, data: dict[str, Any]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def create(cid: str, config: dict[str, Any], state: dict[str, Any]) -> str:
    os.makedirs(root(), mode=0o700, exist_ok=True)
    d = container_dir(cid)
    os.mkdir(d, 0o700)
    try:
        _write(os.path.join(d, CONFIG), config)
        _write(os.path.join(d, STATE), state)
        # There from the start, so a reader attached before the first run holds it open (and still reads it
        # once an auto-removed container's directory is gone).
        os.close(os.open(log_path(cid), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o640))
    except BaseException:
        shutil.rmtree(d, ignore_errors=True)
        raise
    return d


def load_config(cid: str) -> dict[str, Any]:
    return _read(os.path.join(container_dir(cid), CONFIG))


def save_config(cid: str, config: dict[str, Any]) -> None:
    with locked(cid):
        _write(os.path.join(container_dir(cid), CONFIG), config)


def load_state(cid: str) -> dict[str, Any]:
    """The recorded state, corrected by what the processes say: a "running" container whose supervisor
    is gone has exited (the supervisor records the exit itself when it can)."""
    st = _read(os.path.join(container_dir(cid), STATE))
    if st.get("Status") in ("running", "paused") and not alive(st.get("Supervisor"), st.get("SupervisorStart")):
        st.update(Status="exited", Running=False, Paused=False, Pid=0,
                  ExitCode=st.get("ExitCode") or 255, Error=st.get("Error") or "the container's supervisor is gone")
    return st


def update_state(cid: str, **changes: Any) -> dict[str, Any]:
    with locked(cid):
        path = os.path.join(container_dir(cid), STATE)
        st = _read(path)
        st.update(changes)
        _write(path, st)
        return st


def trash_dir() -> str:
    return os.path.join(os.path.dirname(root()), "removed")


def remove(cid: str) -> None:
    """The record is gone at once (moved out of the containers' directory); its files, the writable layer among
    them, are deleted in the background (what a daemon killed meanwhile leaves, the next one deletes)."""
    d = container_dir(cid)
    trash = os.path.join(trash_dir(), f"{cid}-{secrets.token_hex(4)}")
    try:
        os.makedirs(trash_dir(), mode=0o700, exist_ok=True)
        os.rename(d, trash)
    except FileNotFoundError:
        return
    except OSError:
        trash = d  # (another filesystem?) deleted where it is
    threading.Thread(target=shutil.rmtree, args=(trash, True), name="rm-container", daemon=True).start()


def empty_trash() -> None:
    shutil.rmtree(trash_dir(), ignore_errors=True)


def ids() -> list[str]:
    try:
        return sorted(d for d in os.listdir(root()) if ID_RE.match(d)
                      and os.path.exists(os.path.join(root(), d, STATE)))
    except FileNotFoundError:
        return []


def log_path(cid: str) -> str:
    from .json_log import LOG_FILE

    return os.path.join(container_dir(cid), LOG_FILE)


def layer_dir(cid: str) -> str:
    return os.path.join(container_dir(cid), "layer")


def listing() -> list[dict[str, Any]]:
    """Every container's config and state (for `%container ps` without a daemon)."""
    out = []
    for cid in ids():
        try:
            out.append({"Id": cid, "Config": load_config(cid), "State": load_state(cid)})
        except (OSError, ValueError):
            continue  # being created or removed right now
    return out
