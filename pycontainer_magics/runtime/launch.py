"""The container's side of a launch: what runs in the forked child (the "setup" process) and in the
container's PID 1. Everything here runs after fork() in a single-threaded copy of the caller.

Sequence (each step is forced by the kernel, see DESIGN.md):
  setup process: new session, fds 0-3 only, join the cgroup (writing 0 into `tasks`/`cgroup.procs`),
    unshare the mount namespace and build the overlay while still real root (an overlay over the host's
    / is refused inside a user namespace), unshare the user namespace and let the parent write the id
    maps, unshare the rest (a second mount namespace owned by the new user namespace), set time
    offsets and the hostname, fork PID 1, wait for it, compute the layer diff, report.
  PID 1: rebind the merged root (mounts inherited across a user namespace are locked and pivot_root
    refuses them), mount /proc /dev /sys ..., pivot_root, drop capabilities, no_new_privs, run the cell.

Messages to the parent go over fd 3 as length-prefixed pickles (the child is a copy of the caller, so
the parent trusts them).
"""

from __future__ import annotations

import errno
import fcntl
import io
import os
import pickle
import signal
import struct
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, NoReturn

from ..linux import libc
from ..linux.caps import restrict_to
from ..linux.libc import MS_BIND, MS_NODEV, MS_NOSUID, PR_SET_PDEATHSIG, mount, prctl
from ..linux.namespaces import CLONE_NEWNS, CLONE_NEWUSER, NAMESPACES
from . import rootfs

STATUS_FD = 3
SYNC_FD = 4
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_HDR = struct.Struct(">I")


@dataclass
class Launch:
    """Everything the child needs, computed by the parent before fork (the child only interprets it)."""

    flags_first: int  # unshared before the user namespace (mount)
    flags_user: int  # CLONE_NEWUSER or 0
    flags_rest: int  # unshared after the user namespace
    pid1_unshare: int  # PID 1's own mount and cgroup namespaces
    join_files: list[str]
    scratch: str | None  # mount point for the per-container tmpfs (None: no new mount ns)
    plan: rootfs.RootfsPlan | None
    hostname: str | None
    time_offsets: tuple[tuple[str, int], ...]
    workdir: str
    env: dict[str, str]
    capabilities: frozenset[str]
    no_new_privileges: bool
    command: tuple[str, ...] = ()
    python_code: str | None = None
    outputs: tuple[str, ...] = ()
    want_diff: bool = True
    become_root: bool = True  # setresuid(0) after the maps are written
    rootless: bool = False  # not host root: the user namespace comes first
    python_globals: dict[str, Any] | None = field(default=None, repr=False)


def send(fd: int, msg: dict[str, Any]) -> None:
    msg["t"] = time.monotonic()  # every message is also a point on the launch timeline
    data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
    buf = memoryview(_HDR.pack(len(data)) + data)
    while buf:
        n = os.write(fd, buf)
        buf = buf[n:]


def decode_frames(buf: bytearray) -> list[dict[str, Any]]:
    """Pop every complete frame from the front of buf."""
    out = []
    while len(buf) >= 4:
        (n,) = _HDR.unpack_from(buf)
        if len(buf) < 4 + n:
            break
        out.append(pickle.loads(bytes(buf[4:4 + n])))
        del buf[:4 + n]
    return out


def setup_fds(stdin: int, stdout: int, stderr: int, status: int, sync: int) -> None:
    """Put our pipes on 0-4 and close every other inherited fd (the kernel's zmq sockets among them)."""
    # Move them above 100 first so placing one on 0-4 cannot clobber another.
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in (stdin, stdout, stderr, status, sync)]
    for i, fd in enumerate(high):
        os.dup2(fd, i, inheritable=i < 3)
    os.closerange(5, 1 << 20)


def _reset_signals() -> None:
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP, signal.SIGCHLD, signal.SIGUSR1,
              signal.SIGUSR2, signal.SIGALRM, signal.SIGPIPE):
        try:
            signal.signal(s, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _streams() -> None:
    sys.stdin = open(0, "r", closefd=False)  # noqa: SIM115
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8",
                                  errors="backslashreplace", line_buffering=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                  errors="backslashreplace", line_buffering=True)


def setup_process(L: Launch, fds: tuple[int, int, int, int, int]) -> NoReturn:
    """Entry point of the forked setup process. Never returns."""
    stage = "start"
    try:
        os.setsid()
        _reset_signals()
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        setup_fds(*fds)
        _streams()
        send(STATUS_FD, {"setup_pid": os.getpid()})
        # PID 1 joins the cgroup, through files opened here while still real root (the kernel checks the
        # opener's credentials), so this setup process never counts against the container's limits.
        join_fds = [os.open(f, os.O_WRONLY | os.O_CLOEXEC) for f in L.join_files]
        merged = upper = mp = None
        # As root the overlay is built before the user namespace exists (an overlay over the host's / is
        # refused inside one); without root there is no mount namespace to be had before it.
        if L.flags_user and L.rootless:
            _enter_user_namespace()
        if L.flags_first & CLONE_NEWNS and L.scratch and L.plan:
            stage = "building the overlay root filesystem"
            merged, upper, mp = _build_rootfs(L.scratch, L.plan, L.rootless)
        if L.flags_user and not L.rootless:
            stage = "creating the user namespace"
            _enter_user_namespace()
        os.close(SYNC_FD)
        stage = "creating namespaces"
        if L.flags_rest:
            libc.unshare(L.flags_rest)
        if L.time_offsets:
            stage = "setting time namespace offsets"
            with open("/proc/self/timens_offsets", "w") as f:
                for clock, secs in L.time_offsets:
                    f.write(f"{clock} {secs} 0\n")
        if L.hostname:
            stage = "setting the hostname"
            libc.sethostname(L.hostname)
        if L.flags_user and L.become_root:
            # Last: changing credentials makes the process non-dumpable, which hands its /proc/self
            # files (timens_offsets among them) to host root.
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
            try:
                os.setgroups([])
            except OSError:
                pass  # setgroups is denied in a rootless user namespace
        stage = "starting PID 1"
        pid = os.fork()
        if pid == 0:
            pid1(L, merged, join_fds)
        for fd in join_fds:
            os.close(fd)
        os.close(0)
        os.close(1)
        os.close(2)
        send(STATUS_FD, {"pid1": pid})
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except ChildProcessError:
                status = -1
                break
            except InterruptedError:
                continue
        exited = time.monotonic()
        diff = None
        if L.want_diff and upper is not None and L.plan is not None:
            stage = "computing the layer diff"
            diff = rootfs.layer_diff(upper, L.plan.lower, mp, split_top=L.rootless and L.plan.lower == "/")
        send(STATUS_FD, {"exit_status": status, "exited": exited, "diff": diff})
        os._exit(0)
    except BaseException as e:  # noqa: BLE001 - everything must be reported, nothing may escape a fork
        _report_failure(stage, e)
        os._exit(125)


def _enter_user_namespace() -> None:
    libc.unshare(CLONE_NEWUSER)
    send(STATUS_FD, {"need_maps": True})
    if os.read(SYNC_FD, 1) != b"1":
        raise OSError(errno.EPIPE, "the parent could not write the id maps")


def _build_rootfs(scratch: str, plan: rootfs.RootfsPlan, rootless: bool) -> tuple[str, str | None, str]:
    """A tmpfs over the scratch directory (private to this mount namespace, so it vanishes with it) holding
    the upper and work directories, the mount-point layer and the merged root."""
    libc.unshare(CLONE_NEWNS)
    rootfs.make_private_root()
    mount("tmpfs", scratch, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    mp, merged = scratch + "/mp", scratch + "/merged"
    os.mkdir(mp)
    os.mkdir(merged)
    upper = work = None
    if plan.writable:
        upper, work = scratch + "/upper", scratch + "/work"
        os.mkdir(upper)
        os.mkdir(work)
    if rootless and plan.lower == "/":
        rootfs.mount_host_tree(merged, upper, work, plan.mountpoints)
    else:
        rootfs.make_mountpoints(mp, plan.mountpoints)
        rootfs.mount_overlay(plan.lower, mp, upper, work, merged)
    return merged, upper, mp


def _report_failure(stage: str, e: BaseException) -> None:
    try:
        send(STATUS_FD, {"setup_error": {
            "stage": stage, "errno": getattr(e, "errno", None), "strerror": getattr(e, "strerror", None),
            "filename": getattr(e, "filename", None), "message": f"{type(e).__name__}: {e}"}})
    except BaseException:  # noqa: BLE001
        pass


def pid1(L: Launch, merged: str | None, join_fds: list[int]) -> NoReturn:
    """The container's first process: finish the filesystem, drop privileges, run the payload."""
    stage = "joining the cgroup"
    try:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        for fd in join_fds:
            os.write(fd, b"0")
            os.close(fd)
        # The cgroup namespace is taken after joining, so its root is the container's cgroup. pivot_root
        # moves the root of every process of the mount namespace that is at the old root: PID 1 takes a
        # mount namespace of its own so the setup process keeps the host's view (it reads the upper
        # layer for the diff afterwards).
        stage = "creating the mount and cgroup namespaces"
        if L.pid1_unshare:
            libc.unshare(L.pid1_unshare)
        send(STATUS_FD, {"namespaces": {k: _ns_inode(v[0]) for k, v in NAMESPACES.items()}})
        notes: list[str] = []
        if merged is not None and L.plan is not None:
            stage = "mounting the container's filesystems"
            if not L.rootless:
                # An unlocked mount of the root that pivot_root accepts (see module docstring). Without
                # root the tree was built inside the user namespace: nothing is locked, and a
                # non-recursive bind would drop the per-directory overlays.
                mount(merged, merged, None, MS_BIND)
            notes = rootfs.apply_plan(merged, L.plan)
            stage = "pivot_root"
            rootfs.pivot_into(merged)
        send(STATUS_FD, {"ready": True, "notes": notes})
        stage = f"entering the working directory {L.workdir}"
        try:
            os.chdir(L.workdir)
        except FileNotFoundError:
            os.makedirs(L.workdir, exist_ok=True)
            os.chdir(L.workdir)
        stage = "dropping capabilities"
        try:
            restrict_to(L.capabilities)
        except PermissionError:
            if os.geteuid() == 0:
                raise
        if L.no_new_privileges:
            libc.set_no_new_privs()
    except BaseException as e:  # noqa: BLE001
        _report_failure(stage, e)
        os._exit(125)
    if L.python_code is not None:
        _run_python(L)
    _exec_command(L)


def _ns_inode(name: str) -> int | None:
    try:
        return os.stat(f"/proc/self/ns/{name}").st_ino
    except OSError:
        return None


def _exec_command(L: Launch) -> NoReturn:
    os.set_inheritable(STATUS_FD, False)  # closes at exec: no fd of ours leaks into the payload
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        os.execvpe(L.command[0], list(L.command), L.env)
    except OSError as e:
        code = 127 if e.errno == errno.ENOENT else 126
        try:
            send(STATUS_FD, {"exec_error": {"errno": e.errno, "message": f"{L.command[0]}: {e.strerror}"}})
            os.write(2, f"{L.command[0]}: {e.strerror}\n".encode())
        finally:
            os._exit(code)


def _run_python(L: Launch) -> NoReturn:
    os.environ.clear()
    os.environ.update(L.env)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as in any Python process
    g = L.python_globals if L.python_globals is not None else {"__name__": "__main__"}
    code = 0
    try:
        exec(compile(L.python_code or "", "<container>", "exec"), g)  # noqa: S102 - running the cell is the point
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if e.code is not None and not isinstance(e.code, int):
            print(e.code, file=sys.stderr)
    except BaseException as e:  # noqa: BLE001
        tb = traceback.TracebackException.from_exception(e)
        # Drop our own frame so the traceback starts in the cell.
        if tb.stack and tb.stack[0].filename == __file__:
            tb.stack = traceback.StackSummary.from_list(tb.stack[1:])
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
    os._exit(code & 0xFF)
