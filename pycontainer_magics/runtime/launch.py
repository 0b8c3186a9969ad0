"""The container's PID 1: what runs after fork() in a single-threaded child, up to the payload.

Two ways in (see holder.py for the namespace holder both rely on):

  nested  PID 1 is forked by the holder, inside the holder's user namespace. It joins the cgroup,
          takes its own mount and cgroup namespaces, rebinds the root (mounts inherited across a user
          namespace are locked and pivot_root refuses them), mounts /proc /dev /sys ..., pivot_root.
          Used for commands (the holder is a small helper) and without root.

  direct  PID 1 is forked by the caller itself (cell_fork.py), right after the caller unshared a PID namespace, so a
          Python cell costs one fork of the notebook kernel, not two. Still host root, it joins the
          cgroup, enters the holder's time, IPC, UTS, network and mount namespaces, takes a private
          copy of the mount namespace (nothing is locked: host root made it), mounts, pivot_root, and
          only then enters the holder's user namespace. Used for Python cells as root.

Both then drop capabilities, set no_new_privs, and exec the command or run the cell. Reports go to the
caller over STATUS_FD (channel.send).
"""

from __future__ import annotations

import errno
import fcntl
import io
import os
import pickle
import select
import socket
import stat
import sys
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from types import CodeType
from typing import Any, NoReturn

from .. import errors as E
from ..linux import libc, pty, rlimits
from ..linux.cpus_apart import CpusApart
from ..linux.libc import MS_BIND, PR_SET_PDEATHSIG, mount, prctl
from ..linux.namespaces import CLONE_NEWUSER, NAMESPACES, link_inode
from . import environ, rootfs
from .channel import recv_ctl, send, send_ctl
from .plan import PrivilegeStep, Seccomp, SetRlimit, SetUser, run_steps

STATUS_FD = 3
# PID 1 (a fresh fork: every object it touches is a page copied) handles signals through _signal, with plain ints:
# the signal module's wrappers turn every number into an enum member, 62 copy-on-write faults for the reset alone.
_sig: Any = __import__("_signal")
_RESET = (_sig.SIGINT, _sig.SIGTERM, _sig.SIGQUIT, _sig.SIGHUP, _sig.SIGCHLD, _sig.SIGUSR1, _sig.SIGUSR2,
          _sig.SIGALRM, _sig.SIGPIPE)
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


EnvChanges = tuple[tuple[str, ...], tuple[tuple[str, str], ...]]  # (names to remove, names and values to set)


@dataclass
class Launch:
    """What PID 1 does, decided by the caller before fork (the child only interprets it)."""

    mode: str  # "nested" or "direct"
    pid1_unshare: int  # PID 1's own mount and cgroup namespaces
    merged: str | None  # the root to pivot into (None: no new mount namespace)
    plan: rootfs.RootfsPlan | None
    hostname: str | None
    env: dict[str, str]
    # The last steps before the payload (plan.py): rlimits, working directory, capabilities, user,
    # no_new_privs, seccomp; interpreted by plan.run_steps, in this order.
    steps: tuple[PrivilegeStep, ...] = ()
    command: tuple[str, ...] = ()
    python_code: str | None = None
    # python_code compiled by the caller when it planned the run (compiled_cell; None: PID 1 compiles it). A re-run
    # cell's kept plan carries it: PID 1 does not compile the same cell again.
    python_compiled: CodeType | None = field(default=None, repr=False, compare=False)
    outputs: tuple[str, ...] = ()
    want_diff: bool = True
    export_layer: str | None = None  # the holder writes the writable layer here as a layer tarball (builds)
    rebind_root: bool = True  # nested as root: the inherited root mount is locked
    # The executable is looked up before "ready" (so a command that cannot run fails the start, as runc's
    # create does, not the run after it: the engine daemon's `docker start` answers 400 and exit code 127).
    check_executable: bool = False
    terminal: bool = False  # `docker run -t`: PID 1 makes a pty in the container, sends the master back (run.Terminal)
    terminal_size: tuple[int, int] = (0, 0)  # rows, columns (0: unknown, the client sets it later)
    python_globals: dict[str, Any] | None = field(default=None, repr=False)
    # Direct: the plan's operations the holder has made ahead (holder.premount; PID 1 skips them), and the trees
    # PID 1 moves into its root for them: (where they were made, their targets).
    premounted: tuple[int, ...] = ()
    moves: tuple[str, tuple[str, ...]] | None = None
    # Direct: the mount namespace PID 1 enters has the root pivoted into already (holder.pivoted_root): PID 1 takes
    # no copy of it, mounts the rest of the plan under its / and does not pivot.
    root_ns: bool = False
    # Direct: rootfs.ahead_ops of `plan` when already known (plan_cache keeps it with a plan it reuses), and
    # rootfs.host_sourced of the plan past them.
    ahead_ops: tuple[int, ...] | None = None
    ahead_host_sourced: bool | None = None
    # Direct: the namespaces PID 1 makes itself, the ones it reports (cell_fork.reported_namespaces; the caller knows
    # the rest): (kind, name under /proc/self/ns).
    report_ns: tuple[tuple[str, str], ...] = ()
    # Direct: how `env` differs from the environment PID 1 inherits (environ_changes, taken just before the fork).
    env_changes: EnvChanges | None = None
    # Direct, a reused plan (plan_cache): does what the host's file system said when it was made still hold? Asked
    # after PID 1's fork, before anything of the cell's; False: the run starts again from a fresh plan.
    host_check: Callable[[], bool] | None = field(default=None, repr=False, compare=False)

    @property
    def rlimits(self) -> tuple[tuple[str, int, int], ...]:
        """The --ulimit values (PID 1 raises hard limits as host root before entering the user namespace)."""
        return tuple((s.name, s.soft, s.hard) for s in self.steps if isinstance(s, SetRlimit))

    def for_holder(self) -> Launch:
        """A copy without the caller's globals, to send to a helper process."""
        return Launch(**{**self.__dict__, "python_globals": None, "host_check": None, "python_compiled": None})

    def binds_host_paths(self, ahead: tuple[int, ...]) -> bool:
        """rootfs.host_sourced of the plan past `ahead`, its operations made ahead: kept with a reused plan for its
        ahead_ops (ahead_host_sourced), worked out for any other."""
        if self.ahead_host_sourced is not None and (ahead is self.ahead_ops or ahead == self.ahead_ops):
            return self.ahead_host_sourced
        assert self.plan is not None
        return rootfs.host_sourced(self.plan, ahead)

    def parkable(self) -> bool:
        """Can PID 1 be prepared ahead of its cell (pid1_parked)? A command forked by the holder (nested), not a
        Python cell (that needs the caller's memory), nor one with a terminal (made at its start)."""
        return self.mode == "nested" and self.python_code is None and not self.terminal

    def park_key(self) -> tuple[Any, ...]:
        """What a PID 1 prepared ahead has done already: a run whose key is equal can take it over (its
        command, environment and hostname come with the run). The privilege steps are part of it: a parked
        PID 1 has dropped its privileges before it waits (early_steps), off the cell's path."""
        return (self.mode, self.pid1_unshare, self.merged, self.plan, self.rebind_root, self.terminal, self.steps)


def early_steps(steps: tuple[PrivilegeStep, ...]) -> int:
    """How many of the privilege steps a parked PID 1 takes before it waits for its run (the rest after): the
    steps up to the first one that could stop it receiving the run — a resource limit (the run's descriptors
    arrive as new fds), a seccomp filter other than the default profile (which allows what PID 1 does from
    there: recvmsg, dup, close, write, stat, execve)."""
    for i, step in enumerate(steps):
        if isinstance(step, SetRlimit) or (isinstance(step, Seccomp) and step.profile != "default"):
            return i
    return len(steps)


def setup_fds(stdin: int, stdout: int, stderr: int, status: int, keep: tuple[int, ...] = ()) -> list[int]:
    """Put our pipes on 0-3, `keep` right after, and close every other inherited fd (the kernel's zmq
    sockets among them). Returns the new numbers of `keep`."""
    wanted = (stdin, stdout, stderr, status, *keep)
    # Placed straight when none is where another goes (as a rule: the caller's own 0-3 are in use); else moved above
    # 100 first, so placing one cannot clobber another.
    high = wanted if min(wanted) >= len(wanted) else [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in wanted]
    for i, fd in enumerate(high):
        os.dup2(fd, i, inheritable=i < 3)
    os.closerange(len(wanted), 1 << 20)
    return list(range(4, len(wanted)))


def reset_signals() -> None:
    for s in _RESET:
        try:
            _sig.signal(s, _sig.SIG_DFL)
        except (OSError, ValueError):
            pass
    _sig.pthread_sigmask(_sig.SIG_SETMASK, ())


def report_failure(stage: str, e: BaseException, fd: int = STATUS_FD) -> None:
    try:
        send(fd, {"setup_error": failure(stage, e)})
    except BaseException:  # noqa: BLE001
        pass


# The capability each setup stage needs (a key of the doctor's table): a failure there, with a "not allowed"
# errno, is explained to the user as that capability missing here (magics/errors.py).
STAGE_NEEDS = {
    "creating the user namespace": E.USERNS, "writing the id maps": E.USERNS, "entering the user namespace": E.USERNS,
    "creating namespaces": E.NAMESPACES, "creating the mount and cgroup namespaces": E.NAMESPACES,
    "entering the holder's namespaces": E.NAMESPACES, "opening the pod's namespaces": E.NAMESPACES,
    "joining the pod's namespaces": E.NAMESPACES, "setting time namespace offsets": E.NAMESPACES,
    "building the overlay root filesystem": E.OVERLAY, "mounting the container's filesystems": E.PROC,
    "pivot_root": E.PIVOT_ROOT, "joining the cgroup": E.CGROUP,
}


def failure(stage: str, e: BaseException) -> dict[str, Any]:
    return {"stage": stage, "errno": getattr(e, "errno", None), "strerror": getattr(e, "strerror", None),
            "filename": getattr(e, "filename", None), "message": f"{type(e).__name__}: {e}",
            "needs": STAGE_NEEDS.get(stage)}


def become_root() -> None:
    """Container root: uid and gid 0 of the user namespace we are in (caps there are full already)."""
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    try:
        os.setgroups([])
    except OSError:
        pass  # setgroups is denied in a rootless user namespace


def _join_cgroup(join_fds: list[int]) -> None:
    # Files opened by the caller as real root: the kernel checks the opener's credentials.
    for fd in join_fds:
        os.write(fd, b"0")
        os.close(fd)


def _namespaces_report() -> dict[str, int | None]:
    return {k: _ns_inode(v[0]) for k, v in NAMESPACES.items()}


class _Stage:
    """Where PID 1 is, for the one-line error if a step fails."""

    def __init__(self, stage: str) -> None:
        self.stage = stage


def _enter_root(L: Launch, at: _Stage, rebind: bool) -> list[str]:
    """Mount the container's filesystems under the merged root and pivot into it; returns notes about
    fallbacks taken."""
    if L.merged is None or L.plan is None:
        return []
    at.stage = "mounting the container's filesystems"
    if L.root_ns:  # (strict: a fallback would bind a host path, and the host's tree is not in this namespace)
        return rootfs.apply_plan("", L.plan, skip=L.premounted, strict=True)
    if rebind:
        mount(L.merged, L.merged, None, MS_BIND)
    if L.moves is not None:  # what the holder made ahead (holder.premount), moved in; then the rest of the plan
        rootfs.move_ahead(L.merged, *L.moves)
    notes = rootfs.apply_plan(L.merged, L.plan, skip=L.premounted)
    at.stage = "pivot_root"
    rootfs.pivot_into(L.merged)
    return notes


def pid1_nested(L: Launch, join_fds: list[int], console: int | None = None) -> NoReturn:
    """PID 1 forked by the holder, already inside the container's user namespace. `console`: a unix socket the
    master end of its terminal goes back on (L.terminal)."""
    at = _Stage("joining the cgroup")
    try:
        prctl(PR_SET_PDEATHSIG, _sig.SIGKILL)
        _join_cgroup(join_fds)
        # The cgroup namespace is taken after joining, so its root is the container's cgroup. pivot_root
        # moves the root of every process of the mount namespace that is at the old root: PID 1 takes a
        # mount namespace of its own so the holder keeps its view (it reads the upper layer afterwards).
        at.stage = "creating the mount and cgroup namespaces"
        if L.pid1_unshare:
            libc.unshare(L.pid1_unshare)
        send(STATUS_FD, {"namespaces": _namespaces_report()})
        # An unlocked mount of the root that pivot_root accepts. Without root the tree was built inside the
        # user namespace: nothing is locked, and a non-recursive bind would drop the per-directory overlays.
        notes = _enter_root(L, at, rebind=L.rebind_root)
        if console is not None:
            at.stage = "making the terminal"
            _make_terminal(L, console)
    except BaseException as e:  # noqa: BLE001
        report_failure(at.stage, e)
        os._exit(125)
    _drop_privileges_and_run(L, notes)


def pid1_parked(L: Launch, join_fds: list[int], ctl: socket.socket, run_channel: socket.socket) -> NoReturn:
    """PID 1 prepared ahead of its cell (holder.py parks it right after the holder is ready): what pid1_nested
    does before the privilege drop — the cgroup, its own mount and cgroup namespaces, the container's
    filesystems, pivot_root — then it tells the holder on `ctl` that it is ready and waits for the run: the
    launch, and the status pipe, stdin, stdout and stderr, which the caller sends on `run_channel` (run._give_run),
    or else the holder on `ctl` (holder._hand_over); and goes on as pid1_nested would. The early privilege steps
    (early_steps) come before the wait, the rest after it: a seccomp profile may refuse the recvmsg that brings
    the run."""
    at = _Stage("joining the cgroup")
    try:
        prctl(PR_SET_PDEATHSIG, _sig.SIGKILL)
        _join_cgroup(join_fds)
        at.stage = "creating the mount and cgroup namespaces"
        if L.pid1_unshare:
            libc.unshare(L.pid1_unshare)
        namespaces = _namespaces_report()
        notes = _enter_root(L, at, rebind=L.rebind_root)
        at.stage = "dropping privileges"
        early = early_steps(L.steps)
        run_steps(L.steps[:early])  # (a run takes this PID 1 only with the same steps: its park_key)
        # A change of credentials among them (a user) dropped the parent-death signal: set again, we still die with
        # the holder, also once the caller has given us a run (a run never outlives the holder it was ordered from).
        prctl(PR_SET_PDEATHSIG, _sig.SIGKILL)
        send_ctl(ctl, {"parked": True})  # (from here on the run sent to us is ours: holder._took_run)
    except BaseException as e:  # noqa: BLE001 - the holder forks a PID 1 the usual way, which reports it
        try:
            send_ctl(ctl, {"parked": False, "error": failure(at.stage, e)})
        finally:
            os._exit(125)
    try:
        # The run comes from the caller, or, when the caller could not send it (rootless, with a host name to set)
        # and closed its end, from the holder on `ctl`. The holder keeps its end open until it has reaped us: an end
        # of file there means it has gone, and a run the caller sent must not run then (run._execute fails it).
        readable, _, _ = select.select([run_channel, ctl], [], [])
        if ctl in readable:
            msg, fds = recv_ctl(ctl)
        else:
            msg, fds = recv_ctl(run_channel)
            if msg is None:
                msg, fds = recv_ctl(ctl)
        if msg is None:
            os._exit(0)  # let go without a run
        run_L: Launch = msg["launch"]
        for i, fd in enumerate(fds):  # status, stdin, stdout, stderr
            os.dup2(fd, (STATUS_FD, 0, 1, 2)[i], inheritable=i > 0)
            os.close(fd)
        run_channel.close()
        ctl.close()
    except BaseException:  # noqa: BLE001 - nowhere to report yet: the holder sees us die, and forks none
        os._exit(125)
    _drop_privileges_and_run(run_L, notes, namespaces, done=early)


def _drop_privileges_and_run(L: Launch, notes: list[str], namespaces: dict[str, int | None] | None = None,
                             done: int = 0) -> NoReturn:
    """The last steps of a PID 1 made by the holder (pid1_nested, pid1_parked): drop privileges, check the
    executable is there, report ready, then the payload. `namespaces`: the report still to send (parked);
    `done`: how many of the privilege steps were taken already (parked)."""
    at = _Stage("dropping privileges")
    try:
        if namespaces is not None:
            send(STATUS_FD, {"namespaces": namespaces})
        run_steps(L.steps[done:])
        if L.check_executable:
            at.stage = "looking up the executable"
            _check_executable(L)
        send(STATUS_FD, {"ready": True, "notes": notes})
    except BaseException as e:  # noqa: BLE001
        report_failure(at.stage, e)
        os._exit(125)
    _payload(L)


def _make_terminal(L: Launch, console: int) -> None:
    """`docker run -t`: a pty from the container's own /dev/ptmx (so it is /dev/pts/0 inside); the master goes
    back over `console`, the slave becomes stdin, stdout, stderr and the controlling terminal of a session of
    our own, owned by the user the payload runs as."""
    master, slave = pty.open_pty(L.terminal_size)
    try:
        pty.send_master(console, master)
    finally:
        os.close(master)
        os.close(console)
    user = next((s for s in L.steps if isinstance(s, SetUser)), None)
    pty.become_controlled(slave, (user.uid, user.gid) if user is not None else None)


def _check_executable(L: Launch) -> None:
    cmd = L.command[0] if L.command else ""
    dirs = [""] if "/" in cmd else L.env.get("PATH", DEFAULT_PATH).split(":")
    if not any(os.path.isfile(os.path.join(d, cmd)) and os.access(os.path.join(d, cmd), os.X_OK) for d in dirs):
        raise FileNotFoundError(errno.ENOENT, f"{cmd!r}: executable file not found in $PATH")


def pid1_direct(L: Launch, fds: tuple[int, int, int, int], ns_fds: list[tuple[int, int]], user_fd: int | None,
                join_fds: list[int], apart: CpusApart | None = None) -> NoReturn:
    """PID 1 forked by the caller (see module docstring). fds: stdin, stdout, stderr, status. apart: the caller
    moves us to another CPU than its own as we start (cell_fork.fork_pid1); we take our CPUs back once in the
    holder's namespaces (its word that it has moved us came long before, as a rule), as our cgroup's cpuset bounds
    them, and before anything of the cell's."""
    at = _Stage("starting PID 1")
    status = fds[3]  # where a failure is reported until setup_fds (fd 3 is one of the caller's until then)
    try:
        os.setsid()
        reset_signals()
        prctl(PR_SET_PDEATHSIG, _sig.SIGKILL)
        at.stage = "joining the cgroup"
        _join_cgroup(join_fds)
        at.stage = "entering the holder's namespaces"
        for fd, nstype in ns_fds:
            libc.setns(fd, nstype)
            os.close(fd)
        if L.pid1_unshare:
            libc.unshare(L.pid1_unshare)
        if apart is not None:
            at.stage = "taking back its CPUs"
            apart.child()  # (before setup_fds closes its pipe)
        keep = setup_fds(*fds, keep=(user_fd,) if user_fd is not None else ())
        status = STATUS_FD
        user_fd = keep[0] if keep else None
        if L.hostname:
            libc.sethostname(L.hostname)
        notes = _enter_root(L, at, rebind=False)  # host root made these mounts: nothing is locked
        if L.rlimits:  # still host root: hard limits can be raised here, not in the user namespace
            at.stage = "setting resource limits"
            rlimits.raise_hard(L.rlimits)
        if user_fd is not None:
            at.stage = "entering the user namespace"
            libc.setns(user_fd, CLONE_NEWUSER)
            os.close(user_fd)
            become_root()
        send(STATUS_FD, {"namespaces": {k: _ns_inode(name) for k, name in L.report_ns}, "ready": True,
                         "notes": notes})  # (one write, one wake-up)
        _drop_privileges(L)
    except BaseException as e:  # noqa: BLE001
        report_failure(at.stage, e, status)
        os._exit(125)
    _payload(L)


def _drop_privileges(L: Launch) -> None:
    run_steps(L.steps)  # rlimits, chdir, capabilities, user, no_new_privs, seccomp (last): plan.py


def _payload(L: Launch) -> NoReturn:
    if L.python_code is not None:
        _run_python(L)
    _exec_command(L)


def _ns_inode(name: str) -> int | None:
    return link_inode(f"/proc/self/ns/{name}")


_prebuilt: tuple[io.TextIOWrapper, io.TextIOWrapper] | None = None  # sys.stdout and stderr for PID 1 (prebuilt_streams)
_tried = False


def _writer(fd: int) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding="utf-8", errors="backslashreplace",
                            line_buffering=True)


def prebuilt_streams() -> None:
    """A Python cell's sys.stdout and stderr over fds 1 and 2, made once in the caller (which never uses them) before
    it forks PID 1: made in that fresh fork, every object is an allocation on a page it copies (0.1-0.2 ms with stdin,
    which PID 1 makes: what its fd 0 is differs from run to run). Each PID 1 takes its own copy with its memory. Only
    when the caller's fds 1 and 2 are pipes, as PID 1's are (a kernel's are: ipykernel puts pipes there to forward
    what C code writes): a wrapper keeps what it found of its file when made (not seekable)."""
    global _prebuilt, _tried
    if not _tried:
        _tried = True
        try:
            if all(stat.S_ISFIFO(os.fstat(fd).st_mode) for fd in (1, 2)):
                _prebuilt = (_writer(1), _writer(2))
        except OSError:
            pass


def _python_streams() -> None:
    sys.stdin = open(0, closefd=False)  # noqa: SIM115
    sys.stdout, sys.stderr = _prebuilt if _prebuilt is not None else (_writer(1), _writer(2))


def _exec_command(L: Launch) -> NoReturn:
    os.set_inheritable(STATUS_FD, False)  # closes at exec: no fd of ours leaks into the payload
    _sig.signal(_sig.SIGPIPE, _sig.SIG_DFL)
    try:
        os.execvpe(L.command[0], list(L.command), L.env)
    except OSError as e:
        code = 127 if e.errno == errno.ENOENT else 126
        try:
            send(STATUS_FD, {"exec_error": {"errno": e.errno, "message": f"{L.command[0]}: {e.strerror}"}})
            os.write(2, f"{L.command[0]}: {e.strerror}\n".encode())
        finally:
            os._exit(code)


_last_changes: tuple[dict[bytes, bytes], dict[str, str], EnvChanges] | None = None


def environ_changes(env: dict[str, str]) -> EnvChanges:
    """(names to remove, names and values to set) that turn this process's environment into `env`: taken by the
    caller just before it forks a Python cell's PID 1, whose environment is the caller's with a few changes. The
    last answer is kept: a re-run cell asks again with the same two environments (compared in C; worked out, each
    name is decoded and encoded in Python: 40-50 us a cell)."""
    global _last_changes
    here = os.environ
    data = environ.raw()
    last = _last_changes
    if last is not None and data is not None and last[0] == data and last[1] == env:
        return last[2]
    changes = tuple(k for k in here if k not in env), tuple((k, v) for k, v in env.items() if here.get(k) != v)
    if data is not None:
        _last_changes = data.copy(), env.copy(), changes
    return changes


def _replace_environ(L: Launch) -> None:
    """The container's environment, in the C library's (what a subprocess of the cell inherits) and in os.environ.
    With the changes the caller worked out, only those: every inherited string this fresh fork reads or frees is a
    write to its page, a copy-on-write fault (os.environ.clear() and update: 0.3-0.4 ms for forty variables)."""
    if L.env_changes is None:
        os.environ.clear()
        os.environ.update(L.env)
        return
    gone, changed = L.env_changes
    for k in gone:
        os.environ.pop(k, None)  # (another thread of the caller may have removed it between the changes and the fork)
    for k, v in changed:
        os.environ[k] = v


def _terminated(signum: int, _frame: object) -> NoReturn:
    raise SystemExit(128 + signum)


def _run_python(L: Launch) -> NoReturn:
    _python_streams()
    _replace_environ(L)
    _sig.signal(_sig.SIGPIPE, _sig.SIG_IGN)  # as in any Python process
    # Stopping (run.py: an interrupt sends the stop signal first): the cell gets to clean up (finally, with)
    # as a Python program would; as PID 1 it would otherwise ignore signals it has no handler for.
    _sig.signal(_sig.SIGINT, _sig.default_int_handler)
    _sig.signal(_sig.SIGTERM, _terminated)
    _sig.signal(_sig.SIGHUP, _terminated)
    g = L.python_globals if L.python_globals is not None else {"__name__": "__main__"}
    code = 0
    try:
        cell = L.python_compiled if L.python_compiled is not None else _compile(L.python_code or "")
        exec(cell, g)  # noqa: S102 - running the cell is the point
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if e.code is not None and not isinstance(e.code, int):
            print(e.code, file=sys.stderr)
    except BaseException as e:  # noqa: BLE001
        tb = traceback.TracebackException.from_exception(e)
        # Drop the frames before the cell's (this one; the compile's, for a SyntaxError, whose place is in the
        # exception) so the traceback starts in the cell.
        drop = 0
        while drop < len(tb.stack) and tb.stack[drop].filename != "<container>":
            drop += 1
        if drop:
            tb.stack = traceback.StackSummary.from_list(tb.stack[drop:])
        try:
            send(STATUS_FD, {"error": "".join(tb.format()), "error_name": type(e).__name__})
        except BaseException:  # noqa: BLE001
            pass
        code = 1
    if L.outputs:
        out: dict[str, Any] = {}
        missing: list[str] = []
        for name in L.outputs:
            if name not in g:
                missing.append(name)
                continue
            try:
                pickle.dumps(g[name])
                out[name] = g[name]
            except Exception as e:  # noqa: BLE001
                missing.append(f"{name} (cannot be pickled: {e})")
        try:
            send(STATUS_FD, {"outputs": out, "missing_outputs": missing})
        except OSError:
            pass
    for s in (sys.stdout, sys.stderr):
        try:
            s.flush()
        except (OSError, ValueError):
            pass
    # Let go of the output pipes, then say how we end, so the caller need not wait while the kernel tears
    # down this copy of its memory (the exit status proper is still reaped). In that order: the caller then
    # finds the output's end with the report, not after another wake-up.
    os.closerange(0, 3)
    try:
        send(STATUS_FD, {"exit_code": code & 0xFF})
    except OSError:
        pass
    os.close(STATUS_FD)
    exit_in_background(code & 0xFF)


def _compile(source: str) -> CodeType:
    # dont_inherit: not this module's `from __future__ import annotations` (a cell's annotations are evaluated, as
    # in IPython or a script; a cell's own future imports still count)
    return compile(source, "<container>", "exec", dont_inherit=True)


COMPILED_AHEAD_MAX = 64 << 10  # characters of a cell the caller compiles ahead (compiled_cell)


def compiled_cell(source: str | None) -> CodeType | None:
    """A cell's code compiled ahead, by the caller (20-50 us here; 0.2-0.6 ms in a fresh fork, every page the
    compiler writes a copy); None when compiling it says anything — a SyntaxError, a warning (`is` with a literal,
    an invalid escape) — for PID 1 then compiles it and says so in the cell's own output, as it always did. The
    warnings are made errors for the compile's moment: the filters are the process's, changed the way the standard
    library's codeop changes them around its own compile (to ignore them) when IPython checks a cell. Not a cell
    longer than COMPILED_AHEAD_MAX: its compile (a 600 kB sum: 0.2 s, 140 MiB) stays in PID 1, under the container's
    limits, not the kernel's."""
    if source is None or len(source) > COMPILED_AHEAD_MAX:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return _compile(source)
    except Exception:  # noqa: BLE001 - (ValueError: a null byte; RecursionError, MemoryError: deep nesting)
        return None


def exit_in_background(code: int) -> NoReturn:
    """Exit at idle priority. Nobody waits for this exit any more (its report is sent), but tearing down the
    process — for a Python cell, its copy of the notebook's memory — takes a core for a millisecond or more while
    the cell's caller is still finishing; at SCHED_IDLE that work waits for a free core."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # (lowering one's own priority needs no privilege)
    except OSError:
        pass
    os._exit(code)
