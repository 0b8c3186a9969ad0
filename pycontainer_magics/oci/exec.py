"""`exec`: another process in a running container, as runc's setns path does it — it joins the init's cgroup
and every one of its namespaces (the user namespace first), and gets the container's seccomp filter,
no_new_privs, capabilities, user and rlimits from its own process JSON (`--process FILE`, what containerd
and conmon pass) or from the container's process with the command line's changes (`exec ID CMD...`).

With --detach (how engines call it) the process is left to the caller's subreaper and `exec` returns once
it is running, its pid in --pid-file; without, `exec` waits for it (as a subreaper itself) and exits with
its status, forwarding signals.
"""

from __future__ import annotations

import copy
import errno
import json
import os
import signal

from ..linux import libc
from ..linux.namespaces import CLONE_NEWPID, CLONE_NEWUSER
from . import console, process
from . import state as st
from .cgroups import OciCgroup
from .config import JOIN_ORDER, NAMESPACES, ConfigError
from .forward import FORWARDED, Forwarder
from .state import StateError

TYPE_CHECKING = False  # typing is not imported at run time: every engine call pays its imports
if TYPE_CHECKING:
    from typing import Any, NoReturn

PR_SET_CHILD_SUBREAPER = 36


def build_process(rec: dict[str, Any], args: list[str], o: dict[str, Any]) -> dict[str, Any]:
    if o.get("process"):
        try:
            with open(o["process"], "rb") as f:
                proc: dict[str, Any] = json.loads(f.read())
        except FileNotFoundError:
            raise ConfigError(f"open {o['process']}: no such file or directory") from None
        except ValueError as e:
            raise ConfigError(f"{o['process']}: not valid JSON: {e}") from None
        if not isinstance(proc, dict):
            raise ConfigError(f"{o['process']}: must be a JSON object (an OCI process)")
        return proc
    if not args:
        raise ConfigError("exec: give a process JSON (--process) or a command")
    proc = copy.deepcopy((rec.get("config") or {}).get("process") or {})
    proc["args"] = args
    proc["terminal"] = bool(o.get("tty"))
    proc.pop("consoleSize", None)
    env = list(proc.get("env") or [])
    for item in o.get("env") or []:
        key = item.split("=", 1)[0]
        env = [x for x in env if x.split("=", 1)[0] != key] + [item]
    proc["env"] = env
    if o.get("cwd"):
        proc["cwd"] = o["cwd"]
    user = dict(proc.get("user") or {})
    if o.get("user"):
        u, _, gr = o["user"].partition(":")
        try:
            user["uid"] = int(u)
            if gr:
                user["gid"] = int(gr)
        except ValueError:
            raise ConfigError(f"--user {o['user']!r}: give uid[:gid] as numbers") from None
    if o.get("additional_gids"):
        user["additionalGids"] = [int(g) for g in o["additional_gids"]]
    proc["user"] = user
    if o.get("no_new_privs"):
        proc["noNewPrivileges"] = True
    if o.get("apparmor"):
        proc["apparmorProfile"] = o["apparmor"]
    if o.get("cap"):
        caps = proc.setdefault("capabilities", {})
        for kind in ("bounding", "effective", "permitted", "ambient", "inheritable"):
            have = caps.setdefault(kind, [])
            for c in o["cap"]:
                if c not in have and kind != "ambient" and kind != "inheritable":
                    have.append(c)
    return proc


def exec_command(root: str, cid: str, args: list[str], o: dict[str, Any], g: dict[str, Any]) -> int:
    from .init import recv, socketpair

    directory = st.container_dir(root, cid)
    rec = st.load(directory)
    status = st.status(directory, rec)
    if status == "stopped":
        raise StateError(errno.EINVAL, "cannot exec in a stopped container")
    if status == "paused" and not o.get("ignore_paused"):
        raise StateError(errno.EINVAL, "cannot exec in a paused container (use --ignore-paused to override)")
    proc = build_process(rec, args, o)
    cfg_linux = (rec.get("config") or {}).get("linux") or {}
    plan = process.plan_process(proc, cfg_linux, "process", cache_dir=os.path.join(root, ".seccomp"))
    detach = bool(o.get("detach"))
    if plan.terminal and not o.get("console_socket"):
        raise ConfigError("cannot allocate tty if runc will detach without setting console socket"
                          if detach else "exec --tty without --console-socket is not supported by this runtime")
    if o.get("console_socket") and not plan.terminal:
        raise ConfigError("cannot use console socket if runc will not detach or allocate tty")
    init_pid = int(rec["pid"])
    opened: list[int] = []
    pid: int | None = None
    # Before the process exists: a signal that comes meanwhile is held for it (oci/forward.py).
    forwarder = None if detach else Forwarder(FORWARDED + (signal.SIGWINCH,))
    try:
        ns_fds = []
        for kind in JOIN_ORDER:
            if not any(n.get("type") == kind for n in cfg_linux.get("namespaces") or []):
                continue
            name, flag = NAMESPACES[kind]
            path = f"/proc/{init_pid}/ns/{name}"
            if os.stat(path).st_ino == os.stat(f"/proc/self/ns/{name}").st_ino:
                continue  # already there (setns into one's own user namespace is EINVAL)
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            opened.append(fd)
            ns_fds.append((kind, fd, flag))
        join = [os.open(f, os.O_WRONLY | os.O_CLOEXEC) for f in OciCgroup(rec.get("cgroup") or {}).join_files()]
        opened += join
        console_fd = console.connect(o["console_socket"]) if o.get("console_socket") else None
        if console_fd is not None:
            opened.append(console_fd)
        ours, theirs = socketpair()
        opened += [ours, theirs]
        # A subreaper until we exit: the process (forked by an intermediate that exits) is our child meanwhile,
        # so a failed one is reaped here; a detached one passes on to our own subreaper (the shim) when we exit.
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        preserve = int(o.get("preserve_fds") or 0)
        child = os.fork()
        if child == 0:  # pragma: no cover - the process's side
            os.close(ours)
            _join(plan, ns_fds, join, theirs, console_fd, preserve, cid, bool(g.get("no_new_keyring")))
        os.close(theirs)
        opened.remove(theirs)
        while True:
            msg = recv(ours)
            if msg is None:
                raise OSError(errno.EPIPE, "exec failed: the process exited before it was ready")
            if "error" in msg:
                raise OSError(msg.get("errno") or errno.EIO, msg["error"])
            if "pid" in msg:
                pid = int(msg["pid"])
                if pid != child:  # the intermediate that entered the PID namespace has exited
                    os.waitpid(child, 0)
            if msg.get("ready"):
                break
        assert pid is not None
        if o.get("pid_file"):
            from .lifecycle import _write_pid_file
            _write_pid_file(o["pid_file"], pid)
    except BaseException:
        if pid is not None:
            _kill_and_reap(pid)
        raise
    finally:
        for fd in opened:
            try:
                os.close(fd)
            except OSError:
                pass
    if forwarder is None:
        return 0
    forwarder.to(pid)
    return _wait(pid)


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _join(plan: process.ProcessPlan, ns_fds: list[tuple[str, int, int]], join: list[int], sock: int,
          console_fd: int | None, preserve: int, cid: str, no_new_keyring: bool) -> NoReturn:
    from .init import failure, send
    stage = "joining the cgroup"
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        for s in (*FORWARDED, signal.SIGWINCH, signal.SIGPIPE, signal.SIGCHLD):  # the Forwarder's too
            signal.signal(s, signal.SIG_DFL)
        for fd in join:
            os.write(fd, b"0")
            os.close(fd)
        stage = "setting resource limits"
        process.set_rlimits(plan)
        process.set_oom_score_adj(plan)
        stage = "joining the container's namespaces"
        for kind, fd, flag in ns_fds:
            try:
                libc.setns(fd, flag)
            except OSError as e:
                raise OSError(e.errno, f"joining the {kind} namespace: {e.strerror}") from None
            if flag == CLONE_NEWUSER:
                os.setresgid(0, 0, 0)
                os.setresuid(0, 0, 0)
        for _, fd, _ in ns_fds:
            os.close(fd)
        new_pid = any(flag == CLONE_NEWPID for _, _, flag in ns_fds)
        pid = os.fork() if new_pid else 0
        if pid:
            send(sock, {"pid": pid})
            os._exit(0)
        if not new_pid:
            send(sock, {"pid": os.getpid()})
        _setup(plan, sock, console_fd, preserve, cid, no_new_keyring)
    except BaseException as e:  # noqa: BLE001
        try:
            send(sock, failure(stage, e))
        finally:
            os._exit(1)


def _setup(plan: process.ProcessPlan, sock: int, console_fd: int | None, preserve: int, cid: str,
           no_new_keyring: bool) -> NoReturn:
    from .init import failure, send
    stage = "starting the process"
    try:
        os.setsid()
        if not no_new_keyring:
            process.keyring(f"_ses.{cid}")
        if plan.terminal and console_fd is not None:
            stage = "setting up the console"
            console.setup(console_fd, plan.console_size, plan.uid, plan.gid)
            console.set_controlling(0)
        process.set_no_new_privs(plan)
        stage = "installing the seccomp filter"
        process.install_seccomp_early(plan)
        keep = {0, 1, 2, sock, *range(3, 3 + preserve)}
        for fd in [int(n) for n in os.listdir("/proc/self/fd")]:
            if fd not in keep:
                try:
                    os.close(fd)
                except OSError:
                    pass
        for fd in range(3, 3 + preserve):
            os.set_inheritable(fd, True)
        stage = "setting the user and capabilities"
        process.become_user(plan, setgroups_allowed=process.setgroups_allowed())
        process.apply_apparmor(plan)
        process.fill_home(plan)
        stage = "looking up the executable"
        path = process.look_path(plan)
        process.install_seccomp_late(plan)
        send(sock, {"ready": True})
        os.close(sock)
        process.exec_process(plan, path)
    except BaseException as e:  # noqa: BLE001
        try:
            send(sock, failure(stage, e))
        finally:
            os._exit(1)
    os._exit(1)


def _wait(pid: int) -> int:
    """Wait for the exec'd process (our child now: we are a subreaper); the signals we get are passed on."""
    while True:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 255
        except InterruptedError:
            continue
        if got == pid:
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


__all__ = ["build_process", "exec_command"]
