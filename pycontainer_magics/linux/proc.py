"""Processes as /proc shows them: the one reader of /proc/<pid>/stat.

A pid alone may name a later process that reused the number; `pid:starttime` (a token) names one process
for good, which is how records on disk (OCI state, pods, network endpoints) name their owners.
"""

from __future__ import annotations

import os


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name, from the state on (proc(5) field 3 is [0],
    starttime, field 22, is [19]); None when there is no such process. The name is skipped by the last
    ')', since a command name may hold spaces and parentheses."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)  # (no file object: this is on a cell's path)
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:
        stat = os.read(fd, 4096)  # (the whole of it in one read: a few hundred bytes, a 64-byte name at most)
    except ProcessLookupError:  # (gone between the open and the read)
        return None
    finally:
        os.close(fd)
    return stat[stat.rindex(b")") + 2:].decode("ascii", "replace").split()


def start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot); None when it is gone, a zombie or dead."""
    try:
        fields = stat_fields(pid)
    except OSError:
        return None
    if not fields or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def alive(pid: int | None) -> bool:
    """Is `pid` a live process (a zombie counts as dead)? When /proc cannot say (it is hidden from us),
    a process that signals reach is taken as alive."""
    if not pid or pid <= 0:
        return False
    try:
        fields = stat_fields(pid)
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return fields is not None and fields[0] not in ("Z", "X")


def children(pid: int) -> list[int]:
    """The live (not zombie) children of `pid`."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            fields = stat_fields(int(d))
        except OSError:
            continue
        if fields and fields[0] not in ("Z", "X") and int(fields[1]) == pid:
            out.append(int(d))
    return out


def token(pid: int | None = None) -> str:
    """`PID:STARTTIME` of a process (default: this one); `PID:0` when it is gone already."""
    pid = os.getpid() if pid is None else pid
    return f"{pid}:{start_time(pid) or 0}"


def token_alive(tok: str | None, *, unknown_start: bool = False) -> bool:
    """Is the process a token names still that same live process? A token without a start time (`PID`,
    `PID:0`) never matches, unless `unknown_start` (records written before start times were kept)."""
    if not tok:
        return False
    pid_s, _, start_s = tok.partition(":")
    try:
        pid = int(pid_s)
    except ValueError:
        return False
    st = start_time(pid)
    if st is None:
        return False
    if not start_s or start_s == "0":
        return unknown_start
    return str(st) == start_s


__all__ = ["alive", "start_time", "stat_fields", "token", "token_alive"]
