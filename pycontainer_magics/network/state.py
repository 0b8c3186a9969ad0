"""Where the network layer keeps its records, a lock shared by every process of the host, and owners.

Persistent records (networks, hosts files) live under the state dir (`PYCONTAINER_STATE_DIR`, else
/var/lib/pycontainer_magics as root); named network namespaces under the run dir
(`PYCONTAINER_RUN_DIR`, else /run/pycontainer_magics), since they do not survive a reboot anyway.
The same rules as runtime/state.py, repeated here because network/ sits below runtime/.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

from ..paths import run_dir, state_dir


def networks_dir() -> str:
    return os.path.join(state_dir(), "networks")


def hosts_dir() -> str:
    return os.path.join(state_dir(), "hosts")


def netns_dir() -> str:
    return os.path.join(run_dir(), "netns")


def netns_meta_dir() -> str:
    return os.path.join(run_dir(), "netns-meta")


_thread_lock = threading.RLock()
_depth = 0
_lock_fd: int | None = None


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """Exclusive, re-entrant lock over the network state: a thread lock plus flock on a file, so two
    kernels on one host never hand out the same address or bridge."""
    global _depth, _lock_fd
    with _thread_lock:
        if _depth == 0:
            d = state_dir()
            os.makedirs(d, mode=0o755, exist_ok=True)
            fd = os.open(os.path.join(d, "network.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            _lock_fd = fd
        _depth += 1
        try:
            yield
        finally:
            _depth -= 1
            if _depth == 0 and _lock_fd is not None:
                os.close(_lock_fd)  # closing releases the flock
                _lock_fd = None


def write_json(path: str, data: Any) -> None:
    """Atomically replace `path` with `data` as JSON."""
    d = os.path.dirname(path)
    os.makedirs(d, mode=0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


def _start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])  # field 22 of proc(5): starttime, counted from after the ")"


def owner_token(pid: int | None = None) -> str:
    """`PID:STARTTIME` of a process (default: this one), so a recycled pid is not taken for the owner."""
    pid = os.getpid() if pid is None else pid
    return f"{pid}:{_start_time(pid) or 0}"


def owner_alive(token: str | None) -> bool:
    """Is the process named by an `owner_token` still the same live process?"""
    if not token:
        return False
    pid_s, _, start_s = token.partition(":")
    try:
        pid = int(pid_s)
    except ValueError:
        return False
    st = _start_time(pid)
    return st is not None and (not start_s or start_s == "0" or str(st) == start_s)


def pid_alive(pid: int | None) -> bool:
    """Is process `pid` alive (a zombie counts as dead)?"""
    if not pid or pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"
