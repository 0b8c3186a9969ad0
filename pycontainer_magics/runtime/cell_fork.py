"""A Python cell's PID 1 (direct mode, see launch.py): a fork of the caller, which it needs for the notebook's memory.

The caller unshares a PID namespace for its children, forks, and sets its children's back (another thread must not
fork its children into the container's).
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import threading
from collections.abc import Callable

from ..linux import libc
from ..linux.cpus_apart import CpusApart
from ..linux.namespaces import (
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWTIME,
    CLONE_NEWUTS,
    NAMESPACES,
    link_inode,
)
from .holder import HolderPlan
from .launch import Launch, environ_changes, pid1_direct
from .launch import prebuilt_streams as _streams
from .plan import ready_steps

_own_pidns: int | None = None
fork_lock = threading.Lock()  # one fork into a new PID namespace at a time (see the module docstring)
# Context managers entered around the fork, for what the caller's other libraries must keep right across it (the
# magics layer's: IPython's history thread, magics/history_thread.py).
fork_guards: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] = {}  # by name: registered once

# The holder's namespaces a direct PID 1 enters when they are new: (kind, name under /proc/PID/ns, flag).
_ENTERED = (("time", "time_for_children", CLONE_NEWTIME), ("ipc", "ipc", CLONE_NEWIPC), ("uts", "uts", CLONE_NEWUTS),
            ("net", "net", CLONE_NEWNET), ("mount", "mnt", CLONE_NEWNS))


def own_pidns_fd() -> int:
    """An fd of our own PID namespace, kept open, to set our children's back after forking a PID 1."""
    global _own_pidns
    if _own_pidns is None:
        _own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    return _own_pidns


def _new_in_holder(hp: HolderPlan, kind: str, flag: int) -> bool:
    """Is the holder's namespace of this kind (flag: its clone flag) a new one (PID 1 enters those)?"""
    return hp.new_mount if kind == "mount" else bool(hp.flags_rest & flag)


HolderNamespaces = tuple[list[tuple[int, int]], int | None]  # ([(fd, clone flag)], the user namespace's fd)


def open_holder_namespaces(holder_pid: int, hp: HolderPlan) -> HolderNamespaces:
    """The holder's namespaces PID 1 enters, opened (the pool opens them ahead for a holder it prepares for a Python
    cell: a dozen microseconds each on the cell's path otherwise). The caller closes them (close_namespaces)."""
    ns_fds: list[tuple[int, int]] = []
    try:
        for kind, path, flag in _ENTERED:
            if _new_in_holder(hp, kind, flag):
                ns_fds.append((os.open(f"/proc/{holder_pid}/ns/{path}", os.O_RDONLY | os.O_CLOEXEC), flag))
        user_fd = os.open(f"/proc/{holder_pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC) if hp.new_user else None
    except BaseException:
        close_namespaces((ns_fds, None))
        raise
    return ns_fds, user_fd


def close_namespaces(ns: HolderNamespaces) -> None:
    for fd in [fd for fd, _ in ns[0]] + ([ns[1]] if ns[1] is not None else []):
        try:
            os.close(fd)
        except OSError:
            pass


def with_root_ns(ns: HolderNamespaces, root_ns: int) -> HolderNamespaces:
    """The namespaces to enter with the holder's mount namespace replaced by `root_ns` (one with the root pivoted
    into ahead, holder.pivoted_root; entered last, as the holder's). The replaced fd is closed."""
    ns_fds, user_fd = ns
    for fd, flag in ns_fds:
        if flag == CLONE_NEWNS:
            os.close(fd)
    return [(fd, flag) for fd, flag in ns_fds if flag != CLONE_NEWNS] + [(root_ns, CLONE_NEWNS)], user_fd


_KIND = {flag: kind for kind, _, flag in _ENTERED}


def entered_inodes(ns: HolderNamespaces) -> dict[str, int]:
    """The inodes of the namespaces PID 1 enters, read from the fds it enters them by (launch.reported_namespaces)."""
    ns_fds, user_fd = ns
    out = {_KIND[flag]: os.fstat(fd).st_ino for fd, flag in ns_fds}
    if user_fd is not None:
        out["user"] = os.fstat(user_fd).st_ino
    return out


def fork_pid1(L: Launch, holder_pid: int, hp: HolderPlan, fds: tuple[int, int, int, int],
              join_fds: list[int], ns: HolderNamespaces | None = None, root_ns: int | None = None,
              known: dict[str, int | None] | None = None, before_go: Callable[[], None] | None = None) -> int:
    """Fork PID 1 of a Python cell, straight into a new PID namespace when the plan has one. fds: stdin, stdout,
    stderr, status. ns: the holder's namespaces opened ahead (open_holder_namespaces); root_ns: the mount namespace
    PID 1 enters instead of the holder's (L.root_ns); both closed here. known: the caller's own namespaces, where
    those PID 1 is in (but the ones it makes itself: L.report_ns) are put, from its fds, while PID 1 starts.
    before_go: done after the fork, before PID 1 goes on past its namespaces (CpusApart's word); when it raises, PID 1
    is killed before anything of the cell's has run, and the error raised here."""
    try:
        ns_fds, user_fd = ns if ns is not None else open_holder_namespaces(holder_pid, hp)
    except BaseException:
        if root_ns is not None:
            os.close(root_ns)
        raise
    if root_ns is not None:
        ns_fds, user_fd = with_root_ns((ns_fds, user_fd), root_ns)
    new_pid = bool(hp.flags_rest & CLONE_NEWPID)
    pid = 0
    apart: CpusApart | None = None
    try:
        ready_steps(L.steps)  # (what PID 1's privilege steps use, made here: the capability count, the seccomp filter)
        own = own_pidns_fd()
        L.report_ns = reported_namespaces(L)
        _streams()
        with fork_lock, contextlib.ExitStack() as guards:
            for guard in list(fork_guards.values()):
                guards.enter_context(guard())
            L.env_changes = environ_changes(L.env)
            # (PID 1 starts on another CPU than ours, the caller having work left after the fork; and it waits for
            # before_go)
            apart = CpusApart(gate=before_go is not None)
            if new_pid:
                libc.unshare(CLONE_NEWPID)
            try:  # (from here on our children's PID namespace, and the collector, are set back whatever happens)
                gc.freeze()  # keep the child's collector from touching (and so copying) the caller's heap
                pid = os.fork()
                if pid == 0:
                    pid1_direct(L, fds, ns_fds, user_fd, join_fds, apart)  # never returns
                apart.parent(pid, before_go)
                if known is not None and new_pid:  # (ours to read while PID 1 is its reaper: no ptrace check)
                    known["pid"] = link_inode("/proc/thread-self/ns/pid_for_children")
            finally:
                gc.unfreeze()
                if new_pid:
                    libc.setns(own, CLONE_NEWPID)
        if known is not None:  # (PID 1 is on its way, on the other core)
            known.update(entered_inodes((ns_fds, user_fd)))
    except BaseException:
        if pid > 0:  # forked: PID 1 must not run the cell on its own
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        raise
    finally:
        close_namespaces((ns_fds, user_fd))
        if apart is not None:
            apart.close()
    return pid


def reported_namespaces(L: Launch) -> tuple[tuple[str, str], ...]:
    """The namespaces a direct PID 1 makes itself, which it reports: (kind, name under /proc/self/ns). The caller
    knows the others: the holder's it enters (from their fds), its own PID namespace's child, its own."""
    return tuple((kind, name) for kind, (name, flag) in NAMESPACES.items() if L.pid1_unshare & flag)
