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
              channel_fd: int = -1) -> NoReturn:
    """Run `spec` as container `cid`; tell `report_fd` once it runs (or why it could not start); close
    `exit_fd` as soon as its end is recorded (the daemon learns of it there, before this process has removed
    the cgroup and exited). `io`: {"tty", "stdin", "size"} of `docker run -t/-i` (container_io.py), its first
    channel to the daemon `channel_fd`."""
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

    gate = ""
    try:
        os.chdir("/")
        devnull = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        keep = sorted(fd for fd in (report_fd, exit_fd, channel_fd) if fd >= 0)
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

        # PID 1 waits at this gate, set up and its executable found, until on_start opens it: a command
        # that cannot be executed fails the start (dockerd's 400, exit code 127), not the run after it.
        gate = os.path.join(store.container_dir(cid), "start.fifo")
        if os.path.lexists(gate):
            os.unlink(gate)
        os.mkfifo(gate, 0o600)

        stdio = None
        if io and (io.get("tty") or io.get("stdin")):
            from .container_io import StdioRelay
            stdio = StdioRelay(cid, log, tty=bool(io.get("tty")), open_stdin=bool(io.get("stdin")),
                               size=tuple(io.get("size") or (0, 0)), channel=channel_fd)
            channel_fd = -1

        def on_start(running: Any) -> None:
            pid = running.pid1
            if stdio is not None:
                stdio.start()  # before the payload runs: its first output and input are relayed
            fd = os.open(gate, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)
                os.unlink(gate)
            try:
                store.update_state(cid, Status="running", Running=True, Paused=False, Pid=pid,
                                   PidStart=store.start_time(pid), Supervisor=me, SupervisorStart=me_start,
                                   RunId=running.run.id, StartedAt=rfc3339_nano(),
                                   FinishedAt="0001-01-01T00:00:00Z", ExitCode=0, OOMKilled=False, Error="")
            finally:
                report({"ok": True, "pid": pid, "supervisor": me, "supervisor_start": me_start})

        from ..runtime.run import run

        r = run(spec, on_output=on_output, helper=False, on_start=on_start, gate=gate,
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
        if os.path.lexists(gate):
            os.unlink(gate)
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
