"""A daemon container's supervisor (what containerd's shim or conmon is to dockerd): a process of its own
session that runs the container to its end, appends its output to the json log and records in the state
file when it started and how it ended. It does not depend on the daemon: a daemon killed with SIGKILL
leaves its containers running, and the next one finds them through these records.

Forked by the launcher (launcher.py), never by the daemon itself: the daemon is threaded, and the
supervisor goes on running Python after fork.
"""

from __future__ import annotations

import errno
import json
import os
import signal
from typing import Any, NoReturn

from . import daemon_store as store
from .json_log import Writer, rfc3339_nano


def supervise(cid: str, spec: Any, report_fd: int, exit_fd: int = -1, io: dict[str, Any] | None = None,
              channel_fd: int = -1, keep_fds: tuple[int, ...] = ()) -> NoReturn:
    """Run `spec` as container `cid`; tell `report_fd` once it runs (or why it could not start); close
    `exit_fd` as soon as its end is recorded (the daemon learns of it there, before this process has removed
    the cgroup and exited). `io`: {"tty", "stdin", "size"} of `docker run -t/-i` (container_io.py), its first
    channel to the daemon `channel_fd`. `keep_fds`: what was prepared for it stays open (spare())."""
    code = 0
    reported = False
    me = os.getpid()
    me_start = store.start_time(me)

    def report(msg: dict[str, Any]) -> None:
        nonlocal reported
        if reported:
            return
        reported = True
        try:
            os.write(report_fd, json.dumps(msg).encode())
        except OSError:
            pass  # the daemon went away while starting us: the record tells the next one
        finally:
            os.close(report_fd)

    try:
        os.chdir("/")
        devnull = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        keep = sorted(fd for fd in (report_fd, exit_fd, channel_fd, *keep_fds) if fd >= 0)
        low = 3
        for fd in keep:
            os.closerange(low, fd)
            low = fd + 1
        os.closerange(low, 1 << 16)
        for s in (signal.SIGHUP, signal.SIGINT, signal.SIGPIPE):
            signal.signal(s, signal.SIG_IGN)
        log = Writer(store.log_path(cid))

        def on_output(stream: str, text: str) -> None:
            log.write(stream, text.encode())

        stdio = None
        if io and (io.get("tty") or io.get("stdin")):
            from .container_io import StdioRelay
            stdio = StdioRelay(cid, log, tty=bool(io.get("tty")), open_stdin=bool(io.get("stdin")),
                               size=tuple(io.get("size") or (0, 0)), channel=channel_fd)
            channel_fd = -1

        def on_start(running: Any) -> None:
            pid = running.pid1
            if stdio is not None:
                stdio.start()  # the payload's first output and input are relayed (a terminal holds them till then)
            # (Prepared: its PID 1 was made ahead by a spare supervisor, up to the payload: see spare().)
            prepared = any("prepared ahead" in stage for stage, _ in running.run.timeline)
            try:
                store.update_state(cid, Status="running", Running=True, Paused=False, Pid=pid,
                                   PidStart=store.start_time(pid), Supervisor=me, SupervisorStart=me_start,
                                   RunId=running.run.id, StartedAt=rfc3339_nano(),
                                   FinishedAt="0001-01-01T00:00:00Z", ExitCode=0, OOMKilled=False, Error="",
                                   Prepared=prepared)
            finally:
                report({"ok": True, "pid": pid, "supervisor": me, "supervisor_start": me_start})

        from ..runtime.run import run

        # PID 1 looks its executable up before it is ready: a command that cannot be executed fails the start
        # (dockerd's 400, exit code 127), not the run after it.
        r = run(spec, on_output=on_output, helper=False, on_start=on_start, check_executable=True,
                stdin_fd=stdio.stdin_r if stdio is not None else None,
                terminal=stdio.terminal() if stdio is not None else None)
        if stdio is not None:
            stdio.finish()  # the terminal's last output logged and sent before the end is recorded
        if not reported:  # it ended before its payload ran: a failed start
            msg = r.error or "the container could not be started"
            store.update_state(cid, Error=msg, ExitCode=r.exit_code if r.exit_code is not None else 128)
            report({"error": msg, "status": 500})
        else:
            store.update_state(cid, Status="exited", Running=False, Paused=False, Pid=0,
                               ExitCode=r.exit_code if r.exit_code is not None else 255,
                               OOMKilled=r.oom_killed, FinishedAt=rfc3339_nano(), Error=r.error or "")
        log.close()
        if exit_fd >= 0:
            os.close(exit_fd)  # recorded: the daemon may answer `docker wait` now
            exit_fd = -1
    except BaseException as e:  # noqa: BLE001
        code = 1
        msg = str(e) or type(e).__name__
        status = _status_of(msg, e)
        try:
            if not reported:
                store.update_state(cid, Error=msg, ExitCode=_exit_code_of(msg, e))
            else:
                store.update_state(cid, Status="exited", Running=False, Paused=False, Pid=0, ExitCode=255,
                                   FinishedAt=rfc3339_nano(), Error=msg)
        except OSError:
            pass
        report({"error": msg, "status": status})
    try:
        # What the interpreter would do at exit for the run: the cgroup's removal (deferred to the
        # background) and the then empty parent cgroup.
        from ..runtime import cleanup
        from ..runtime.run import _leave_no_parent, hierarchy
        h = hierarchy()
        if h is not None:
            _leave_no_parent(h)
        cleanup.settle()
    finally:
        os._exit(code)


def _exit_code_of(msg: str, e: BaseException) -> int:
    """The exit code dockerd records for a container that could not start (the docker CLI exits with it)."""
    if "executable file not found" in msg or "no such file or directory" in msg.lower():
        return 127
    if "permission denied" in msg.lower():
        return 126
    return 128


def _status_of(msg: str, e: BaseException) -> int:
    """The HTTP status `docker start` answers with for a container that could not start."""
    from ..runtime.spec import SpecError

    if isinstance(e, SpecError) or _exit_code_of(msg, e) in (126, 127):
        return 400
    if getattr(e, "errno", None) == errno.ENOENT:
        return 404
    return 500


# -- spares ------------------------------------------------------------------------------------------

def spares_dir() -> str:
    return os.path.join(os.path.dirname(store.root()), "spares")


def spare(sock_fd: int, like: Any | None) -> NoReturn:
    """A supervisor forked before its container exists (the launcher keeps one): it waits on `sock_fd` for
    the launcher's order {"start": (cid, spec, io)} with supervise()'s fds, answers {"taken": pid} and becomes
    that container's supervisor. With `like` (the spec of the last container started), it first prepares
    a run like it (runtime.run.prepare: the cgroup, the namespaces, the root filesystem over a writable layer
    of its own, PID 1 parked up to the payload): a container whose spec plans the same then starts at once,
    its writable layer moved into place. Without an order (the launcher gone) it removes what it made."""
    import socket

    from ..runtime.channel import recv_ctl, send_ctl
    from ..runtime.pool import pool
    from ..runtime.run import prepare, prepared_for

    os.closerange(3, sock_fd)
    os.closerange(sock_fd + 1, 1 << 16)
    sock = socket.socket(fileno=sock_fd)
    layer = os.path.join(spares_dir(), str(os.getpid()))
    prepared = False
    holder = None
    reniced = True  # the holder's process group with its PID 1, if it parks one
    if like is not None:
        # At the lowest priority: this runs while the container before is still starting or ending, and must not
        # slow it down on a busy machine. (Undone below, for us and the holder's process group, PID 1 included.)
        os.setpriority(os.PRIO_PROCESS, 0, 19)
        try:
            os.makedirs(spares_dir(), mode=0o700, exist_ok=True)
            prepared = prepare(like.with_(writable_layer=layer))
        except BaseException:  # noqa: BLE001 - no head start, the order is served all the same
            prepared = False
        # Prepared: back to normal priority before waiting (waiting costs nothing), so the order is served at
        # once — woken at nice 19, the spare and the parked PID 1 waited behind the daemon's own threads.
        os.setpriority(os.PRIO_PROCESS, 0, 0)
        holder = pool.ready_holder()
        if holder is not None:
            reniced = _renice_holder(*holder, order=sock)
    try:
        msg, fds = recv_ctl(sock)
    except OSError:
        msg, fds = None, []
    if msg is None or "start" not in msg:  # the launcher went, or dropped us
        _drop_spare(layer)
        os._exit(0)
    cid, spec, io = msg["start"]
    send_ctl(sock, {"taken": os.getpid()})
    sock.close()
    if not reniced and holder is not None:
        # The order came while the holder was still forking PID 1: the run waits for that PID 1 anyway (bounded: a
        # holder whose fork failed forks PID 1 on the run's path instead).
        _renice_holder(*holder, wait=10.0)
    keep: tuple[int, ...] = ()
    target = store.layer_dir(cid)
    # Taken only by a container like the one prepared: a terminal or stdin is made at its start (not parked).
    mine = spec.with_(writable_layer=layer) if prepared and not io and spec.writable_layer == target else None
    if mine is not None and not os.path.lexists(target) and prepared_for(mine):
        os.rename(layer, target)  # its first start: the layer made ahead becomes the container's (the overlay
        spec = mine               # keeps its directories, not their paths); the plan still names where it was
        keep = pool.fds()
    else:
        _drop_spare(layer)
    supervise(cid, spec, fds[0], fds[1], io, fds[2] if len(fds) > 2 else -1, keep)


def _renice_holder(holder: int, parking: bool, order: Any = None, wait: float = 30.0) -> bool:
    """The holder and its parked PID 1 back to nice 0 (the holder made its session: PID 1 is in its group).
    The holder forks PID 1 once asked (pool._park does not wait for it), and a fork under way while its group
    is reniced keeps the 19 it copied from the holder: so first wait until the holder has its child. At nice 19
    on a busy machine that fork can take seconds (a 1 s bound was not enough on one loaded core): up to `wait`
    seconds, or until `order` (the spare's socket) is readable — then False, and the caller does it again once
    its run needs that PID 1. True once PID 1 was there (or none was asked for) when the group was reniced."""
    import select
    import time

    deadline = time.monotonic() + wait
    seen = not parking
    while not seen and time.monotonic() < deadline:
        try:
            with open(f"/proc/{holder}/task/{holder}/children") as f:
                seen = bool(f.read().strip())
        except OSError:
            seen = True  # the holder gone, or a kernel without CONFIG_PROC_CHILDREN: renice what is there
        if seen:
            break
        if order is not None:
            if select.select([order], [], [], 0.0005)[0]:
                break  # the order (or the launcher's end) came: not held up by this
        else:
            time.sleep(0.0005)
    try:
        os.setpriority(os.PRIO_PGRP, holder, 0)
    except OSError:
        pass
    return seen


def _drop_spare(layer: str) -> None:
    """What a spare prepared and no container took: the holder and its PID 1 go, the cgroup and the layer too."""
    import shutil

    from ..runtime import cleanup
    from ..runtime.pool import pool

    try:
        ready = pool.drain()  # its socket closed, the holder exits (and its parked PID 1 with it); the cgroup goes
    except OSError:
        ready = None
    if ready is not None:
        try:
            os.waitpid(ready, 0)
        except ChildProcessError:
            pass
    cleanup.settle()
    shutil.rmtree(layer, ignore_errors=True)


def prune_spares() -> list[str]:
    """The layers of spares that died without cleaning up (killed with the daemon): removed."""
    import shutil

    gone = []
    try:
        names = os.listdir(spares_dir())
    except FileNotFoundError:
        return []
    for name in names:
        if name.isdigit() and not os.path.exists(f"/proc/{name}"):
            shutil.rmtree(os.path.join(spares_dir(), name), ignore_errors=True)
            gone.append(name)
    return gone
