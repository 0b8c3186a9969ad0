"""The container's side of `create` (runc's nsexec and init, in two forks of the runtime):

  bootstrap (first child)   joins the cgroup, sets rlimits and oom_score_adj while still host root, joins
                            the namespaces given by path (the user namespace first), unshares the user
                            namespace (the runtime writes its id maps) and then the others, writes time
                            offsets, forks the init, reports its host pid and exits — so the init is no
                            process's child but the caller's subreaper's (a shim, conmon) once `create`
                            has exited too.
  init (second child)       PID 1 of a new PID namespace (if any): cgroup namespace, the root filesystem
                            (rootfs.py), hooks, pivot_root, console, hostname, sysctl, masked and read-only
                            paths, keyring, no_new_privs, seccomp, user and capabilities (process.py),
                            "ready" — then waits on exec.fifo until `start`, runs startContainer hooks and
                            executes the process.

Everything here runs in a single-threaded fork of the CLI and ends in execve or os._exit. Messages to the
runtime go over a SOCK_SEQPACKET socketpair, one JSON object per datagram.
"""

from __future__ import annotations

import _socket
import marshal
import os

from ..linux import libc
from ..linux.namespaces import CLONE_NEWCGROUP, CLONE_NEWTIME, CLONE_NEWUSER
from . import process, rootfs
from .config import Config
from .forward import FORWARDED
from .process import ProcessPlan

TYPE_CHECKING = False  # typing is not imported at run time: every engine call pays its imports
if TYPE_CHECKING:
    from typing import Any, NoReturn


class InitContext:
    """What the runtime decided before forking; the children only interpret it."""

    def __init__(self, cid: str, cfg: Config, plan: ProcessPlan, sock: int, fifo: int, console: int | None,
                 join_fds: list[int], ns_fds: list[tuple[str, int, int]], unshare: int, cgroup_paths: dict[str, str],
                 preserve: int, no_pivot: bool = False, no_new_keyring: bool = False,
                 keep: list[int] | None = None) -> None:
        self.cid = cid
        self.cfg = cfg
        self.plan = plan
        self.sock = sock
        self.fifo = fifo
        self.console = console
        self.join_fds = join_fds  # cgroup files to write "0" to
        self.ns_fds = ns_fds  # (type, fd, clone flag) of namespaces joined by path
        self.unshare = unshare  # namespaces made new, the user namespace included
        self.cgroup_paths = cgroup_paths
        self.preserve = preserve  # fds 3 .. 3+preserve-1 go to the process as they are
        self.no_pivot = no_pivot
        self.no_new_keyring = no_new_keyring
        self.keep: list[int] = keep if keep is not None else []


# The signal module imports enum (and it functools, collections: ~2.5 ms of every `create`); _signal is what
# it wraps. console (termios, socket, struct) and hooks (json, select) are imported where a config uses them.
_signal: Any = __import__("_signal")


def send(fd: int, msg: dict[str, Any]) -> None:
    # marshal, not json: both ends are this module, and json's import (re, enum) is ~5 ms of every `create`
    os.write(fd, marshal.dumps(msg))


def recv(fd: int) -> dict[str, Any] | None:
    data = os.read(fd, 1 << 16)
    if not data:
        return None
    out: dict[str, Any] = marshal.loads(data)
    return out


def failure(stage: str, e: BaseException) -> dict[str, Any]:
    msg = str(e) if isinstance(e, OSError) and e.strerror and str(e) == e.strerror else None
    if msg is None:
        msg = f"{e.strerror or e}" if isinstance(e, OSError) else str(e)
        if isinstance(e, OSError) and e.filename and str(e.filename) not in msg:
            msg = f"{msg}: {e.filename}"
    return {"error": f"{stage}: {msg}", "errno": getattr(e, "errno", None)}


def bootstrap(ctx: InitContext) -> NoReturn:
    stage = "joining the cgroup"
    try:
        # Imported now, while the package is in reach (init() uses them after pivot_root, from sys.modules).
        if ctx.console is not None:
            from . import console  # noqa: F401
        if any(ctx.cfg.hooks.values()):
            from . import hooks  # noqa: F401
        _signal.pthread_sigmask(_signal.SIG_SETMASK, [])
        # Forked with run's forwarding handlers (oci/forward.py) in place: all of them back to the default, so
        # a signal before the exec acts as it would after it (a caught one would be held in this copy, and lost).
        for s in (*FORWARDED, _signal.SIGWINCH, _signal.SIGPIPE, _signal.SIGCHLD):
            _signal.signal(s, _signal.SIG_DFL)
        for fd in ctx.join_fds:
            os.write(fd, b"0")
            os.close(fd)
        stage = "setting resource limits"
        process.set_rlimits(ctx.plan)
        stage = "setting oom_score_adj"
        process.set_oom_score_adj(ctx.plan)
        stage = "joining namespaces"
        joined_user = False
        for kind, fd, flag in ctx.ns_fds:
            if kind == "user":
                libc.setns(fd, flag)
                joined_user = True
        for kind, fd, flag in ctx.ns_fds:
            if kind not in ("user", "mount"):
                try:
                    libc.setns(fd, flag)
                except OSError as e:
                    raise OSError(e.errno, f"joining the {kind} namespace: {e.strerror}") from None
        if ctx.unshare & CLONE_NEWUSER:
            stage = "creating the user namespace"
            libc.unshare(CLONE_NEWUSER)
            send(ctx.sock, {"maps": True})
            reply = recv(ctx.sock)
            if not reply or not reply.get("ok"):
                os._exit(1)
        if ctx.unshare & CLONE_NEWUSER or joined_user:
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        for kind, fd, flag in ctx.ns_fds:
            if kind == "mount":
                libc.setns(fd, flag)
        for _, fd, _ in ctx.ns_fds:
            os.close(fd)
        stage = "creating namespaces"
        rest = ctx.unshare & ~(CLONE_NEWUSER | CLONE_NEWCGROUP)
        if rest:
            libc.unshare(rest)
        offsets = ctx.cfg.linux.get("timeOffsets")
        if offsets and ctx.unshare & CLONE_NEWTIME:
            stage = "setting time namespace offsets"
            with open("/proc/self/timens_offsets", "w") as f:
                for clock, v in offsets.items():
                    f.write(f"{clock} {int(v.get('secs', 0))} {int(v.get('nanosecs', 0))}\n")
        stage = "starting the init process"
        pid = os.fork()
        if pid == 0:
            init(ctx)
        send(ctx.sock, {"pid": pid})
    except BaseException as e:  # noqa: BLE001
        try:
            send(ctx.sock, failure(stage, e))
        finally:
            os._exit(1)
    os._exit(0)


def _host_pid() -> int:
    # The host's /proc is still mounted here (before pivot_root): its idea of "self" is our host pid.
    try:
        return int(os.readlink("/proc/self"))
    except (OSError, ValueError):
        return os.getpid()


def _hook_state(ctx: InitContext, status: str, pid: int) -> dict[str, Any]:
    st: dict[str, Any] = {"ociVersion": "1.0.2", "id": ctx.cid, "status": status, "pid": pid,
                          "bundle": ctx.cfg.bundle}
    if ctx.cfg.annotations:
        st["annotations"] = ctx.cfg.annotations
    return st


def init(ctx: InitContext) -> NoReturn:
    cfg, plan = ctx.cfg, ctx.plan
    stage = "starting the init process"
    try:
        if ctx.unshare & CLONE_NEWCGROUP:  # after joining the cgroup: it becomes the namespace's root
            stage = "creating the cgroup namespace"
            libc.unshare(CLONE_NEWCGROUP)
        os.setsid()
        host_pid = _host_pid()
        # A mount namespace of its own (new, or joined by path): without one the mounts would be made in the
        # runtime's, i.e. on the host (runc does that; we only chroot and leave config.mounts undone).
        new_mount = cfg.has_ns("mount")
        in_userns = cfg.has_ns("user")
        setup_dev = new_mount and rootfs.needs_dev(cfg)
        if new_mount:
            stage = "preparing the root filesystem"
            rootfs.prepare_root(cfg)
            stage = "mounting"
            rootfs.mount_all(cfg, bool(ctx.unshare & CLONE_NEWCGROUP), ctx.cgroup_paths)
            if setup_dev:
                stage = "creating device nodes"
                rootfs.setup_dev(cfg, in_userns)
        stage = "running prestart and createRuntime hooks"
        send(ctx.sock, {"hooks": True, "host_pid": host_pid})
        reply = recv(ctx.sock)
        if not reply or not reply.get("ok"):
            os._exit(1)
        os.chdir(cfg.rootfs)
        if cfg.hooks.get("createContainer"):
            stage = "running createContainer hooks"
            from . import hooks
            hooks.run_hooks("createContainer", cfg.hooks["createContainer"], _hook_state(ctx, "creating", host_pid))
        stage = "entering the root filesystem"
        if ctx.no_pivot and new_mount:
            rootfs.move_root(cfg.rootfs)
        elif new_mount:
            rootfs.pivot(cfg.rootfs)
            rootfs.apply_root_propagation(cfg)
        else:
            rootfs.chroot_here()
        if setup_dev:
            rootfs.reopen_dev_null()
        os.makedirs(plan.cwd, 0o755, exist_ok=True)
        if plan.terminal and ctx.console is not None:
            stage = "setting up the console"
            from . import console
            console.setup(ctx.console, plan.console_size, plan.uid, plan.gid)
            console.set_controlling(0)
        if new_mount:
            stage = "finishing the root filesystem"
            rootfs.finalize(cfg)
        if cfg.hostname:  # runc leaves an empty one alone
            stage = "setting the hostname"
            libc.sethostname(cfg.hostname)
        domain = cfg.raw.get("domainname")
        if domain:
            with open("/proc/sys/kernel/domainname", "w") as f:
                f.write(domain)
        stage = "applying AppArmor"
        process.apply_apparmor(plan)
        for key, value in (cfg.linux.get("sysctl") or {}).items():
            stage = f"setting sysctl {key}"
            rootfs.write_sysctl(key, str(value))
        for p in cfg.linux.get("readonlyPaths") or []:
            stage = f"making {p} read-only"
            rootfs.readonly_path(p)
        for p in cfg.linux.get("maskedPaths") or []:
            stage = f"masking {p}"
            rootfs.mask_path(p)
        if not ctx.no_new_keyring:
            stage = "creating the session keyring"
            process.keyring(f"_ses.{ctx.cid}")
        stage = "setting no_new_privileges"
        process.set_no_new_privs(plan)
        stage = "installing the seccomp filter"
        process.install_seccomp_early(plan)
        stage = "closing inherited files"
        _close_fds(ctx)
        stage = "setting the user and capabilities"
        process.become_user(plan, setgroups_allowed=process.setgroups_allowed())
        process.fill_home(plan)
        stage = "looking up the executable"
        path = process.look_path(plan)
        stage = "installing the seccomp filter"
        process.install_seccomp_late(plan)
        send(ctx.sock, {"ready": True})
        os.close(ctx.sock)
    except BaseException as e:  # noqa: BLE001
        try:
            send(ctx.sock, failure(stage, e))
        finally:
            os._exit(1)
    # Created: wait until `start` writes a byte to the fifo (opened by the runtime, read-write so that a byte
    # written before we read is not lost and `start` finds a reader while we wait).
    try:
        while not os.read(ctx.fifo, 1):
            pass
        # The fifo stays open until execve closes it (close-on-exec): `start` waits for that to run the
        # poststart hooks after the process is executed, startContainer hooks included.
        if cfg.hooks.get("startContainer"):
            from . import hooks
            hooks.run_hooks("startContainer", cfg.hooks["startContainer"], _hook_state(ctx, "created", os.getpid()))
        process.exec_process(plan, path)
    except BaseException as e:  # noqa: BLE001
        try:
            os.write(2, f"pycontainer: {failure('starting the process', e)['error']}\n".encode())
        finally:
            os._exit(127 if isinstance(e, FileNotFoundError) else 1)
    os._exit(1)


def _close_fds(ctx: InitContext) -> None:
    """Leave the process stdio, the preserved fds, and (close-on-exec) what we still need: nothing of the
    runtime's leaks into the container."""
    keep = {0, 1, 2, ctx.sock, ctx.fifo, *range(3, 3 + ctx.preserve)}
    try:
        fds = [int(n) for n in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc in the container
        fds = list(range(3, 1024))
    for fd in fds:
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    for fd in range(3, 3 + ctx.preserve):
        try:
            os.set_inheritable(fd, True)
        except OSError:
            pass


def socketpair() -> tuple[int, int]:
    a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    return a.detach(), b.detach()


__all__ = ["InitContext", "bootstrap", "failure", "recv", "send", "socketpair"]
