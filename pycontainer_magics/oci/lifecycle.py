"""runc's container lifecycle, the runtime's side: create, start, state, kill, delete, list, pause, resume,
update, ps (and `run --bundle DIR ID`'s record while it runs: recorded_run). No process of ours outlives
a command: the container's init belongs to whoever reaps orphans above the caller (containerd's shim and
conmon are subreapers), and every command reads the state from `<root>/<id>/state` and the kernel.

Errors are StateError/ConfigError/OSError with one line; the command line turns them into runc's exit
status 1 and a log entry.
"""

from __future__ import annotations

import errno
import os
import time

from . import state as st
from .state import StateError

LifecycleError = StateError  # the name callers of the earlier lifecycle module catch
SIGKILL = 9  # the signal module costs an enum import on every call

TYPE_CHECKING = False  # typing itself is not imported: the command line's start-up
if TYPE_CHECKING:
    from typing import Any

if TYPE_CHECKING:

    from .cgroups import OciCgroup
    from .config import Config


class CreateOptions:
    """`create`'s flags (a plain class: dataclasses costs the command line an import of inspect)."""

    def __init__(self, bundle: str = ".", pid_file: str | None = None, console_socket: str | None = None,
                 no_pivot: bool = False, no_new_keyring: bool = False, preserve_fds: int = 0,
                 systemd_cgroup: bool = False) -> None:
        self.bundle, self.pid_file, self.console_socket = bundle, pid_file, console_socket
        self.no_pivot, self.no_new_keyring, self.preserve_fds = no_pivot, no_new_keyring, preserve_fds
        self.systemd_cgroup = systemd_cgroup


def create(root: str, cid: str, opts: CreateOptions) -> int:
    """Set the container up and leave its init waiting for `start`; returns the init's host pid. On any
    error nothing is left: no state directory, process or cgroup. Call from a single-threaded process."""
    from .cgroups import OciCgroup, resolve
    from .config import ConfigError, load
    from .init import InitContext, bootstrap, recv, send, socketpair
    from .process import plan_process

    st.check_id(cid)
    bundle = os.path.abspath(opts.bundle)
    if not os.path.isdir(bundle):
        raise StateError(errno.ENOENT, f"chdir {opts.bundle}: no such file or directory")
    cfg = load(bundle)
    plan = plan_process(cfg.process, cfg.linux, cache_dir=os.path.join(root, ".seccomp"))
    if plan.terminal and not opts.console_socket:
        raise ConfigError("cannot allocate tty if runc will detach without setting console socket")
    if opts.console_socket and not plan.terminal:
        raise ConfigError("cannot use console socket if runc will not detach or allocate tty")
    cgroup_paths = resolve(cfg.linux.get("cgroupsPath"), cid, opts.systemd_cgroup)
    directory = st.new_dir(root, cid)
    cg = OciCgroup(cgroup_paths)
    opened: list[int] = []
    child_pid = init_pid = None
    made: list[str] = []
    try:
        rec: dict[str, Any] = {"id": cid, "bundle": bundle, "rootfs": cfg.rootfs, "created": st.now_rfc3339(),
                               "owner": "", "annotations": cfg.annotations, "status": "creating",
                               "creator": os.getpid(), "creator_start": st.start_time(os.getpid()),
                               "cgroup": cgroup_paths, "cgroup_default": not cfg.linux.get("cgroupsPath"),
                               "config": cfg.raw, "pid": None, "pid_start": None}
        st.save(directory, rec)
        try:
            made = cg.create()
        except PermissionError:
            # Without root and without a delegated cgroup, runc (--rootless auto) goes on without one when the
            # config asks for no limits; limits it cannot apply are an error.
            if os.geteuid() == 0 or _has_limits(cfg.linux.get("resources")):
                raise
            cg, cgroup_paths = OciCgroup({}), {}
            rec["cgroup"] = None
            st.save(directory, rec)
        cg.apply(cfg.linux.get("resources"))
        join_fds = [_open(f, os.O_WRONLY) for f in cg.join_files()]
        opened += join_fds
        fifo_path = os.path.join(directory, st.FIFO)
        os.mkfifo(fifo_path, 0o622)
        if cfg.rootfs == "/":
            cfg.host_root_mount = os.path.join(directory, "rootfs")
            os.mkdir(cfg.host_root_mount, 0o755)
        fifo = _open(fifo_path, os.O_RDWR)
        opened.append(fifo)
        console_fd = None
        if opts.console_socket:
            from .console import connect
            console_fd = connect(opts.console_socket)
            opened.append(console_fd)
        ns_fds = []
        for n in cfg.namespaces:
            if n.path:
                try:
                    fd = _open(n.path, os.O_RDONLY)
                except OSError as e:
                    raise OSError(e.errno, f"the {n.type} namespace at {n.path}: {e.strerror}", n.path) from None
                opened.append(fd)
                ns_fds.append((n.type, fd, n.flag))
        listen = int(os.environ.get("LISTEN_FDS", "0") or 0) if os.environ.get("LISTEN_PID") else 0
        ours, theirs = socketpair()
        opened += [ours, theirs]
        # A subreaper until we exit: the init (forked by an intermediate that exits) is our child meanwhile, so
        # a failed one is reaped here; a good one passes on to our own subreaper (a shim, conmon) when we exit.
        from ..linux import libc
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
        ctx = InitContext(cid=cid, cfg=cfg, plan=plan, sock=theirs, fifo=fifo, console=console_fd,
                          join_fds=join_fds, ns_fds=ns_fds, unshare=cfg.new_ns_flags(), cgroup_paths=cgroup_paths,
                          preserve=opts.preserve_fds + listen, no_pivot=opts.no_pivot,
                          no_new_keyring=opts.no_new_keyring)
        child_pid = os.fork()
        if child_pid == 0:  # pragma: no cover - the container's side
            os.close(ours)
            bootstrap(ctx)
        os.close(theirs)
        opened.remove(theirs)
        while True:
            msg = recv(ours)
            if msg is None:
                raise OSError(errno.EPIPE, "container init exited before it was ready")
            if "error" in msg:
                raise OSError(msg.get("errno") or errno.EIO, msg["error"])
            if msg.get("maps"):
                assert child_pid is not None
                _write_maps(child_pid, cfg)
                send(ours, {"ok": True})
            elif "pid" in msg:
                init_pid = int(msg["pid"])  # the intermediate is exiting now: reaped below, not waited for here
            elif msg.get("hooks"):
                _run_create_hooks(cfg, cid, init_pid or int(msg["host_pid"]))
                send(ours, {"ok": True})
            elif msg.get("ready"):
                break
        assert init_pid is not None
        if child_pid is not None:
            _reap(child_pid)
            child_pid = None
        # the parents made for a cgroupsPath whose parents did not exist go with the container (when empty):
        # runc leaves them, and a relative path (under the caller's own cgroup) left them in the caller's
        leaves = set(cgroup_paths.values())
        rec.update(status="created", pid=init_pid, pid_start=st.start_time(init_pid), creator=None,
                   creator_start=None, cgroup_made=[d for d in made if d not in leaves])
        st.save(directory, rec)
        if opts.pid_file:
            _write_pid_file(opts.pid_file, init_pid)
        return init_pid
    except BaseException:
        for p in (init_pid, child_pid):
            if p:
                try:
                    os.kill(p, SIGKILL)
                except ProcessLookupError:
                    pass
                _reap(p)
        try:
            cg.destroy()
        except OSError:
            pass
        for d in reversed(made):
            try:
                os.rmdir(d)
            except OSError:
                pass
        st.remove(directory)
        raise
    finally:
        for fd in opened:
            try:
                os.close(fd)
            except OSError:
                pass


def _has_limits(res: dict[str, Any] | None) -> bool:
    """Anything in linux.resources beyond the device rules (which a rootless container gets from its user
    namespace anyway: it cannot mknod)."""
    return any(v for k, v in (res or {}).items() if k != "devices")


def _open(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_CLOEXEC)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _write_maps(pid: int, cfg: Config) -> None:
    from .config import id_map_text
    linux = cfg.linux
    if os.geteuid() != 0:
        with open(f"/proc/{pid}/setgroups", "w") as f:
            f.write("deny")
    for kind, key in (("uid", "uidMappings"), ("gid", "gidMappings")):
        path = f"/proc/{pid}/{kind}_map"
        try:
            with open(path, "w") as f:
                f.write(id_map_text(linux.get(key)))
        except OSError as e:
            raise OSError(e.errno, f"writing {path}: {e.strerror}", path) from None


def _run_create_hooks(cfg: Config, cid: str, pid: int) -> None:
    if not cfg.hooks.get("prestart") and not cfg.hooks.get("createRuntime"):
        return  # hooks' import (json, select, signal: ~7 ms) only where a config has hooks
    from .hooks import run_hooks
    for kind in ("prestart", "createRuntime"):
        if cfg.hooks.get(kind):
            # the conformance suite (and crun) give prestart hooks "created"; createRuntime sees "creating"
            status = "created" if kind == "prestart" else "creating"
            state: dict[str, Any] = {"ociVersion": st.OCI_VERSION, "id": cid, "status": status, "pid": pid,
                                     "bundle": cfg.bundle}
            if cfg.annotations:
                state["annotations"] = cfg.annotations
            run_hooks(kind, cfg.hooks[kind], state)


def _write_pid_file(path: str, pid: int) -> None:
    path = os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path))
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.replace(tmp, path)


# -- the other commands -----------------------------------------------------------------------------

def _get(root: str, cid: str) -> tuple[str, dict[str, Any]]:
    directory = st.container_dir(root, cid)
    return directory, st.load(directory)


def state(root: str, cid: str) -> dict[str, Any]:
    directory, rec = _get(root, cid)
    return st.public(directory, rec)


def list_states(root: str) -> list[dict[str, Any]]:
    out = []
    for cid in st.list_ids(root):
        try:
            directory, rec = _get(root, cid)
        except StateError:
            continue
        s = st.public(directory, rec)
        s["owner"] = st.owner_name()
        out.append(s)
    return out


def start(root: str, cid: str) -> None:
    directory, rec = _get(root, cid)
    with st.locked(directory, cid):
        status = st.status(directory, rec)
        if status == "stopped":
            raise StateError(errno.EINVAL, "cannot start a container that has stopped")
        if status != "created":
            raise StateError(errno.EINVAL, f"cannot start an already {status} container")
        fifo = os.path.join(directory, st.FIFO)
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:  # ENXIO: no reader, the init is gone
            raise StateError(e.errno, "cannot start a container that has stopped") from None
        hooks = (rec.get("config") or {}).get("hooks") or {}
        try:
            os.write(fd, b"0")
            if hooks.get("poststart"):
                _wait_executed(fd)
        finally:
            os.close(fd)
        os.unlink(fifo)
    if hooks.get("poststart"):
        from .hooks import HookError, run_hooks
        state = {**st.public(directory, rec), "status": "running", "pid": rec["pid"]}  # as it was started
        try:
            run_hooks("poststart", hooks["poststart"], state)
        except HookError as e:  # the spec: log it, the container goes on
            from .log import warn
            warn(str(e))


def _wait_executed(fd: int, timeout: float = 60.0) -> None:
    """poststart hooks run once the process is executed (after the init's startContainer hooks): the
    init's end of the fifo closes at execve (close-on-exec), and our write end then reports POLLERR, no
    reader being left."""
    import select
    p = select.poll()
    p.register(fd, 0)  # POLLERR and POLLHUP are reported whatever is asked
    p.poll(int(timeout * 1000))


def parse_signal(text: str) -> int:
    """`KILL`, `SIGKILL`, `kill` or `9` (runc's rules). Engines send numbers: the signal module (an enum
    import) is loaded for names only."""
    t = text.strip().upper().removeprefix("SIG")
    if t.isdigit():
        n = int(t)
        if 0 < n < 65:  # NSIG
            return n
    else:
        import signal
        names = {s.name.removeprefix("SIG"): int(s) for s in signal.Signals}
        if t in names:
            return names[t]
    raise StateError(errno.EINVAL, f"unknown signal {text!r}")


def kill(root: str, cid: str, sig: int, all_processes: bool = False) -> None:
    directory, rec = _get(root, cid)
    status = st.status(directory, rec)
    if all_processes:
        if not rec.get("cgroup"):
            raise StateError(errno.ESRCH, "container not running")
        _cgroup(rec).signal_all(sig)
        return
    if status == "stopped":
        raise StateError(errno.ESRCH, "container not running")
    try:
        os.kill(rec["pid"], sig)
    except ProcessLookupError:
        raise StateError(errno.ESRCH, "container not running") from None


def delete(root: str, cid: str, force: bool = False) -> None:
    try:
        directory, rec = _get(root, cid)
    except StateError as e:
        if force and e.errno == errno.ENOENT:  # runc: --force of what is gone (or half made) succeeds
            st.remove(st.container_dir(root, cid))
            return
        raise
    with st.locked(directory, cid):
        status = st.status(directory, rec)
        if status in ("running", "paused", "creating") and not force:
            raise StateError(errno.EBUSY, f"cannot delete container {cid} that is not stopped: {status}")
        if status != "stopped":
            _kill_init(directory, rec)
        _destroy(directory, rec)


def _kill_init(directory: str, rec: dict[str, Any]) -> None:
    from .cgroups import OciCgroup  # here, not at the top: `start` and `state` do not need it
    cg = OciCgroup(rec["cgroup"]) if rec.get("cgroup") else None
    if cg is not None and st.status(directory, rec) == "paused":
        cg.freeze(False)
    try:
        os.kill(rec["pid"], SIGKILL)
    except (ProcessLookupError, TypeError):
        pass
    _wait_gone(rec, 10.0)
    if st.alive(rec):
        raise StateError(errno.EBUSY, "container init still running")


def _wait_gone(rec: dict[str, Any], timeout: float) -> None:
    """Until the init has exited (a zombie counts: its parent reaps it), woken by its pidfd, not polled."""
    import select
    try:
        fd = os.pidfd_open(rec["pid"])
    except (ProcessLookupError, TypeError):
        return
    try:
        deadline = time.monotonic() + timeout
        while st.alive(rec) and (left := deadline - time.monotonic()) > 0:
            select.select([fd], [], [], min(left, 0.1))
    finally:
        os.close(fd)


def _destroy(directory: str, rec: dict[str, Any]) -> None:
    """Remove what is left: every process in the cgroup, the cgroup, the state; then poststop hooks."""
    if rec.get("cgroup"):
        from .cgroups import OciCgroup
        OciCgroup(rec["cgroup"]).destroy(parents=rec.get("cgroup_made") or (),
                                         project_parent=bool(rec.get("cgroup_default")))
    st.remove(directory)
    hooks = (rec.get("config") or {}).get("hooks") or {}
    if hooks.get("poststop"):
        from .hooks import HookError, run_hooks
        state = {"ociVersion": st.OCI_VERSION, "id": rec["id"], "status": "stopped", "pid": 0,
                 "bundle": rec["bundle"]}
        if rec.get("annotations"):
            state["annotations"] = rec["annotations"]
        try:
            run_hooks("poststop", hooks["poststop"], state)
        except HookError as e:
            from .log import warn
            warn(str(e))


def _cgroup(rec: dict[str, Any]) -> OciCgroup:
    from .cgroups import OciCgroup
    if not rec.get("cgroup"):
        raise StateError(errno.ENOTSUP, "the container has no cgroup (created without root and without a "
                         "delegated cgroup): nothing to freeze, limit or measure")
    return OciCgroup(rec["cgroup"])


def pause(root: str, cid: str) -> None:
    directory, rec = _get(root, cid)
    status = st.status(directory, rec)
    if status not in ("running", "created"):
        raise StateError(errno.EINVAL, "container not running" if status == "stopped" else
                         f"cannot pause a {status} container")
    _cgroup(rec).freeze(True)


def resume(root: str, cid: str) -> None:
    directory, rec = _get(root, cid)
    if st.status(directory, rec) != "paused":
        raise StateError(errno.EINVAL, "container not paused")
    _cgroup(rec).freeze(False)


def update(root: str, cid: str, resources: dict[str, Any]) -> None:
    directory, rec = _get(root, cid)
    if st.status(directory, rec) == "stopped":
        raise StateError(errno.EINVAL, "container not running")
    _cgroup(rec).apply(resources)
    with st.locked(directory, cid):
        rec = st.load(directory)
        linux = rec.setdefault("config", {}).setdefault("linux", {})
        merged = linux.setdefault("resources", {})
        for k, v in resources.items():
            if isinstance(v, dict) and isinstance(merged.get(k), dict):
                merged[k].update(v)
            else:
                merged[k] = v
        st.save(directory, rec)


def pids(root: str, cid: str) -> list[int]:
    directory, rec = _get(root, cid)
    if not rec.get("cgroup"):  # only the init is known
        return [rec["pid"]] if st.alive(rec) else []
    return _cgroup(rec).pids()


def stats(root: str, cid: str) -> dict[str, Any]:
    directory, rec = _get(root, cid)
    if st.status(directory, rec) == "stopped":
        raise StateError(errno.EINVAL, f"container with id {cid} is not running")
    return _cgroup(rec).stats()


class recorded_run:  # noqa: N801 - used as `with recorded_run(bundle, cid, root) as on_start:`
    """`pycontainer run --bundle DIR ID`, as runc's run: the container runs attached to the caller, and while
    it runs its state is there for `state`, `list` and `kill` from elsewhere; it is deleted when the run
    ends. Entering gives the on_start callback to hand `runtime.run`."""

    def __init__(self, bundle: str, cid: str, root: str | None = None) -> None:
        root = os.path.abspath(root) if root else st.default_root()
        self.directory = st.new_dir(root, cid)
        self.rec: dict[str, Any] = {
            "id": cid, "bundle": os.path.abspath(bundle), "rootfs": "", "created": st.now_rfc3339(), "owner": "",
            "annotations": {}, "status": "creating", "creator": os.getpid(),
            "creator_start": st.start_time(os.getpid()), "cgroup": None, "config": {}, "pid": None,
            "pid_start": None}

    def __enter__(self) -> Any:
        try:
            st.save(self.directory, self.rec)
        except BaseException:
            st.remove(self.directory)
            raise
        return self.on_start

    def on_start(self, running: Any) -> None:
        try:
            st.save(self.directory, {**self.rec, "status": "running", "pid": running.pid1,
                                     "pid_start": st.start_time(running.pid1)})
        except OSError:
            pass

    def __exit__(self, *exc: object) -> None:
        st.remove(self.directory)


__all__ = ["CreateOptions", "LifecycleError", "create", "delete", "kill", "list_states", "parse_signal", "pause",
           "pids", "recorded_run", "resume", "start", "state", "stats", "update"]
