"""Run another process inside a running container (`docker exec`): join its cgroup and each of its PID 1's
namespaces, then fork once more so the process is inside the PID namespace too.

The joining child stays host root until the last step: it enters the namespaces that host root made
(a Python cell's mount and PID namespaces) and those of the container's user namespace (host root holds
every capability over it), and only then the user namespace itself. The process then gets the container's
capabilities, no_new_privs, environment and working directory, as PID 1 did.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import OSFailure
from ..linux import libc, pty
from ..linux.cgroups import Cgroup
from ..linux.namespaces import NAMESPACES
from ..runtime.channel import decode_frames, feed, send
from ..runtime.image_source import resolve_user
from ..runtime.launch import STATUS_FD, become_root, failure, reset_signals, setup_fds
from ..runtime.plan import privilege_steps, run_steps
from ..runtime.relay import QUIET, OutputRelay
from ..runtime.run import Terminal

# Entered in this order; the user namespace last (see module docstring).
_ORDER = ("cgroup", "ipc", "uts", "net", "time", "pid", "mount")


@dataclass
class ExecResult:
    exit_code: int
    signal: int | None
    stdout: str
    stderr: str
    duration: float


FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


class ExecError(OSFailure):
    """A command could not be run in a running container: one line."""


def exec_in(pid1: int, cgroup: Cgroup | None, command: tuple[str, ...], *, env: dict[str, str],
            workdir: str = "/", capabilities: frozenset[str], no_new_privileges: bool = True,
            on_output: Callable[[str, str], None] | None = None, stdin_data: bytes | None = None,
            timeout: float | None = None, seccomp_filter: bytes | None = None, stdin_fd: int | None = None,
            terminal: Terminal | None = None, user: str | None = None,
            rlimits_: tuple[tuple[str, int, int], ...] = (), stop_signal: int = signal.SIGTERM,
            stop_timeout: float = 5.0) -> ExecResult:
    """Run `command` in the container whose PID 1 is `pid1` (a host pid); returns when it exits. The
    process gets PID 1's capabilities, no_new_privs, seccomp filter (`seccomp_filter`), rlimits and user
    (`user`: "uid[:gid]" or names from the container's /etc/passwd; None: root) through the same privilege
    steps as PID 1 (runtime.plan), as docker exec gives the container's.
    stdin_fd: its standard input (the caller's copy stays the caller's); terminal: a pseudo-terminal made in
    the container instead (`docker exec -t`), its master handed to terminal.on_master before the command runs.
    An interrupt stops the process as `docker stop` stops a container: `stop_signal`, SIGKILL after
    `stop_timeout` seconds or at a second interrupt; the KeyboardInterrupt is raised again once it has ended."""
    if not command:
        raise ExecError(errno.EINVAL, "exec needs a command")
    ns_paths = {k: f"/proc/{pid1}/ns/{NAMESPACES[k][0]}" for k in (*_ORDER, "user")}
    host = {k: _inode(f"/proc/self/ns/{NAMESPACES[k][0]}") for k in ns_paths}
    ns_fds: dict[str, int] = {}
    join_fds: list[int] = []
    try:  # (PID 1 may end between two opens — a probe's exec as the container restarts: what was opened is closed)
        for k, p in ns_paths.items():
            if _inode(p) != host[k]:
                ns_fds[k] = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
        for f in cgroup.join_files() if cgroup else ():
            join_fds.append(os.open(f, os.O_WRONLY | os.O_CLOEXEC))
    except BaseException as gone:
        for fd in [*ns_fds.values(), *join_fds]:
            os.close(fd)
        if isinstance(gone, FileNotFoundError):
            raise ExecError(errno.ESRCH, f"the container (PID 1 = {pid1}) is not running") from None
        raise
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    st_r, st_w = os.pipe()
    if stdin_fd is not None:
        in_r, in_w = os.dup(stdin_fd), -1
    else:
        in_r, in_w = os.pipe() if stdin_data is not None else (os.open("/dev/null", os.O_RDONLY), -1)
    console: socket.socket | None = None  # the terminal's master comes back on it
    theirs = -1
    if terminal is not None:
        console, other = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        theirs = other.detach()
    t0 = time.monotonic()
    gc.freeze()
    try:
        pid = os.fork()
        if pid == 0:
            _joiner((in_r, out_w, err_w, st_w), ns_fds, join_fds, command, env, workdir, capabilities,
                    no_new_privileges, seccomp_filter, theirs, terminal.size if terminal else (0, 0), user, rlimits_)
    finally:
        gc.unfreeze()
        for fd in [in_r, out_w, err_w, st_w, *join_fds, *ns_fds.values(), *([theirs] if theirs >= 0 else [])]:
            os.close(fd)
    output = OutputRelay(on_output)
    streams = {out_r: "stdout", err_r: "stderr"}
    status_buf = bytearray()
    sel = selectors.DefaultSelector()
    for fd in (out_r, err_r, st_r):
        sel.register(fd, selectors.EVENT_READ)
    if console is not None:
        sel.register(console, selectors.EVENT_READ)
    pending = memoryview(stdin_data or b"")
    if in_w >= 0:
        os.set_blocking(in_w, False)
        sel.register(in_w, selectors.EVENT_WRITE)
    deadline = t0 + timeout if timeout else None
    interrupted = joiner_done = False
    joiner_fd = os.pidfd_open(pid)
    sel.register(joiner_fd, selectors.EVENT_READ)
    drain_until: float | None = None  # interrupted: what a process it left behind writes is not waited for
    try:
        while sel.get_map():
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if output.holding:  # a partial line: show it once the pipes go quiet
                left = QUIET if left is None else min(left, QUIET)
            if drain_until is not None:
                rest = max(0.0, drain_until - time.monotonic())
                left = rest if left is None else min(left, rest)
            try:
                events = sel.select(left)
            except KeyboardInterrupt:
                # the joiner passes the stop signal on; killed, it takes the process along (its death signal)
                first, interrupted = not interrupted, True
                now = time.monotonic()
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, stop_signal if first and stop_timeout > 0 else signal.SIGKILL)
                deadline = now + stop_timeout if first and stop_timeout > 0 else None
                if joiner_done:
                    drain_until = now + 0.5
                continue
            if drain_until is not None and time.monotonic() >= drain_until:
                break
            if not events:
                output.flush()
            if not events and deadline is not None and time.monotonic() >= deadline:
                os.kill(pid, signal.SIGKILL)
                deadline = None
                continue
            for key, _ in events:
                fd = key.fd
                if console is not None and fd == console.fileno():
                    sel.unregister(fd)
                    _hand_master(console, terminal)
                    console = None
                    continue
                if fd == in_w:
                    in_w, pending = feed(sel, in_w, pending)
                    continue
                if fd == joiner_fd:  # the process has ended (the joiner waits for it)
                    sel.unregister(fd)
                    joiner_done = True
                    if interrupted:
                        drain_until = time.monotonic() + 0.5
                    continue
                data = os.read(fd, 65536)
                if fd == st_r:
                    if not data:
                        sel.unregister(fd)
                    status_buf += data
                    continue
                output.feed(streams[fd], data)
                if not data:
                    sel.unregister(fd)
    finally:
        sel.close()
        if console is not None:
            console.close()  # the process never got as far as its terminal
        for fd in (out_r, err_r, st_r, in_w, joiner_fd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
    _, status = os.waitpid(pid, 0)
    for msg in decode_frames(status_buf):
        if "setup_error" in msg:
            e = msg["setup_error"]
            raise ExecError(e.get("errno") or errno.EIO, f"exec failed while {e['stage']}: "
                            f"{e.get('strerror') or e.get('message')}")
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    code = 128 + sig if sig else os.WEXITSTATUS(status)
    output.flush()
    if interrupted:
        raise KeyboardInterrupt(f"exec {command[0]}: stopped ({signal.Signals(stop_signal).name}, "
                                f"exit code {code})")
    return ExecResult(code, sig, output.text("stdout"), output.text("stderr"), time.monotonic() - t0)


def _hand_master(console: socket.socket, terminal: Terminal | None) -> None:
    try:
        master = pty.recv_master(console)
    except OSError:
        master = None
    finally:
        console.close()
    if master is not None and terminal is not None:
        terminal.on_master(master)
    elif master is not None:
        os.close(master)


def _inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _joiner(fds: tuple[int, int, int, int], ns_fds: dict[str, int], join_fds: list[int],
            command: tuple[str, ...], env: dict[str, str], workdir: str, capabilities: frozenset[str],
            no_new_privileges: bool, seccomp_filter: bytes | None, console: int = -1,
            size: tuple[int, int] = (0, 0), user: str | None = None,
            rlimits_: tuple[tuple[str, int, int], ...] = ()) -> None:
    """In the forked child: join, fork into the PID namespace, wait and pass the exit status on."""
    stage = "joining the cgroup"
    status_fd = fds[3]
    try:
        os.setsid()
        reset_signals()
        libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
        for fd in join_fds:
            os.write(fd, b"0")
        stage = "entering the container's namespaces"
        for kind in _ORDER:
            if kind in ns_fds:
                libc.setns(ns_fds[kind], NAMESPACES[kind][1])
        if "user" in ns_fds:
            libc.setns(ns_fds["user"], NAMESPACES["user"][1])
            become_root()
        kept = setup_fds(*fds, keep=(console,) if console >= 0 else ())
        status_fd = STATUS_FD
        pid = os.fork()
        if pid == 0:
            stage = f"entering the working directory {workdir}"
            os.chdir(workdir)
            if kept:  # `docker exec -t`: a pty of the container's devpts, the master back to the caller
                stage = "making the terminal"
                master, slave = pty.open_pty(size)
                pty.send_master(kept[0], master)
                os.close(master)
                os.close(kept[0])
                pty.become_controlled(slave)
            uid = gid = None
            if user:
                stage = f"looking up the user {user}"
                uid, gid = resolve_user(user, "/")  # the container's /etc/passwd: its mount namespace is ours
            # PID 1's own steps, in its order: seccomp goes in before the capabilities are dropped when there
            # is no no_new_privs (the kernel takes a filter only from a holder of CAP_SYS_ADMIN then)
            stage = "dropping privileges"
            run_steps(privilege_steps(rlimits_=rlimits_, workdir=workdir, capabilities=capabilities, uid=uid, gid=gid,
                                      no_new_privileges=no_new_privileges, seccomp_program=seccomp_filter))
            os.set_inheritable(STATUS_FD, False)
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            # killed, the joiner takes the process along (set after the user change, which clears it)
            libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
            try:
                os.execvpe(command[0], list(command), env)
            except OSError as e:
                os.write(2, f"{command[0]}: {e.strerror}\n".encode())
                os._exit(127 if e.errno == errno.ENOENT else 126)
        for sig in FORWARDED:  # a stop signal for the process, not for the joiner
            signal.signal(sig, lambda s, _f: os.kill(pid, s))
        os.close(STATUS_FD)
        os.closerange(0, 3)
        for fd in kept:
            os.close(fd)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
            os.kill(os.getpid(), os.WTERMSIG(status))
        os._exit(os.WEXITSTATUS(status))
    except BaseException as e:  # noqa: BLE001
        try:
            send(status_fd, {"setup_error": failure(stage, e)})
        finally:
            os._exit(125)
