"""The caller's side of a run: plan, fork, relay output, write id maps, sample, wait, clean up.

    run(spec, python_globals=..., on_output=...) -> ContainerRun

Output is relayed from the calling thread (so a notebook puts it in the right cell). Everything the
run creates on the host (the cgroup) is removed before `run` returns, whatever happened; mounts and
namespaces live only inside the container's own namespaces and vanish with it.
"""

from __future__ import annotations

import codecs
import errno
import gc
import os
import selectors
import signal
import time
from collections.abc import Callable
from typing import Any

from ..linux import idmap
from ..linux.cgroups import Cgroup, CgroupError, CgroupLimits, Hierarchy, open_hierarchy
from ..linux.namespaces import CLONE_NEWNS, CLONE_NEWUSER, flags_for, ns_inodes
from . import rootfs, state
from .launch import DEFAULT_PATH, Launch, decode_frames, setup_process
from .monitor import Monitor
from .zygote import zygote
from .result import ContainerRun, DiffEntry, NamespaceRow
from .spec import ContainerSpec, IdMap

OutputFn = Callable[[str, str], None]
MAX_CAPTURE = 1 << 20  # characters of stdout/stderr kept in the result (all of it is relayed live)
REMAP_DEFAULT = IdMap(0, 100000, 65536)


class LaunchError(OSError):
    """The container could not be set up. str() is one line: the stage, the file, the reason."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


class ContainerInterrupted(KeyboardInterrupt):
    """The run was interrupted (the notebook's stop button); the container is gone, `.run` has the rest."""

    def __init__(self, run: ContainerRun) -> None:
        super().__init__("container interrupted")
        self.run = run


# -- cgroups -----------------------------------------------------------------------------------------

_hierarchy: Hierarchy | None | bool = False  # False: not looked up yet; None: no usable hierarchy


def hierarchy() -> Hierarchy | None:
    """The project's cgroup hierarchy, or None when cgroups cannot be used here (then limits are refused)."""
    global _hierarchy
    if _hierarchy is False:
        try:
            h = open_hierarchy()
            _hierarchy = h if h.writable else None
        except OSError:
            _hierarchy = None
    return _hierarchy  # type: ignore[return-value]


def _limits(spec: ContainerSpec) -> CgroupLimits:
    return CgroupLimits(memory=spec.memory, memory_swap=spec.memory_swap, cpus=spec.cpus,
                        cpu_shares=spec.cpu_shares, cpuset_cpus=spec.cpuset_cpus, pids_max=spec.pids_limit)


# -- id maps -----------------------------------------------------------------------------------------

def id_maps(spec: ContainerSpec) -> tuple[str, str, bool]:
    """(uid_map, gid_map, deny_setgroups) text for the container's user namespace."""
    if spec.uid_map:
        return idmap.format_map([(m.inside, m.outside, m.count) for m in spec.uid_map]), \
            idmap.format_map([(m.inside, m.outside, m.count) for m in spec.gid_map]), False
    if os.geteuid() != 0:
        # An unprivileged user may map only itself (to root), and must deny setgroups first.
        return f"0 {os.geteuid()} 1\n", f"0 {os.getegid()} 1\n", True
    if spec.userns == "remap":
        u = idmap.subid_range("containers", "uid") or (REMAP_DEFAULT.outside, REMAP_DEFAULT.count)
        g = idmap.subid_range("containers", "gid") or (REMAP_DEFAULT.outside, REMAP_DEFAULT.count)
        return f"0 {u[0]} {u[1]}\n", f"0 {g[0]} {g[1]}\n", False
    # As root: container root is host root, so the host image stays writable through the overlay.
    return "0 0 4294967295\n", "0 0 4294967295\n", False


def _gid5_mapped(gid_map: str) -> bool:
    for line in gid_map.splitlines():
        inside, _outside, count = (int(x) for x in line.split())
        if inside <= 5 < inside + count:
            return True
    return False


# -- planning ----------------------------------------------------------------------------------------

def container_env(spec: ContainerSpec, python: bool) -> dict[str, str]:
    if python:
        env = dict(os.environ)  # a Python cell is a snapshot of the caller: keep its environment
    else:
        env = {"PATH": DEFAULT_PATH, "HOME": "/root"}
    env["HOSTNAME"] = spec.hostname or (os.uname().nodename if "uts" in spec.share else "")
    if not env["HOSTNAME"]:
        del env["HOSTNAME"]
    env.update(dict(spec.env))
    return env


def plan_launch(spec: ContainerSpec, cg: Cgroup | None, python_globals: dict[str, Any] | None) -> Launch:
    """Everything the child will do, decided before fork (so a bad spec fails here, with nothing made)."""
    new = set(spec.new_namespaces)
    if "mount" not in new and (spec.rootfs or spec.mounts or spec.tmpfs or spec.read_only):
        raise LaunchError(errno.EINVAL, "--rootfs, volumes, --tmpfs and --read-only need a new mount "
                          "namespace: remove 'mount' from --share")
    if os.geteuid() != 0 and "user" not in new:
        raise LaunchError(errno.EPERM, "without root, a container needs a new user namespace: "
                          "remove 'user' from --share")
    if os.geteuid() != 0 and spec.userns == "remap":
        raise LaunchError(errno.EPERM, "--userns remap needs root (it maps a range of host ids); without "
                          "root your own user is the container's root")
    uid_map, gid_map, _deny = id_maps(spec) if "user" in new else ("0 0 4294967295\n",) * 2 + (False,)
    plan = None
    if "mount" in new:
        volume_sources = {m.source: state.volume_path(m.source) for m in spec.mounts if m.kind == "volume"}
        cg_ops = rootfs.cgroup_ops(cg.version if cg else None, cg.paths if cg else {})
        plan = rootfs.build_plan(spec, volume_sources=volume_sources, cgroup_mount_ops=cg_ops,
                                 gid5_mapped=_gid5_mapped(gid_map))
    flags_rest = flags_for([k for k in new if k not in ("user", "mount", "cgroup")])
    return Launch(
        flags_first=CLONE_NEWNS if "mount" in new else 0,
        flags_user=CLONE_NEWUSER if "user" in new else 0,
        flags_rest=flags_rest,
        pid1_unshare=flags_for([k for k in new if k in ("mount", "cgroup")]),
        join_files=cg.join_files() if cg else [],
        scratch=state.scratch_dir() if plan else None,
        plan=plan,
        hostname=spec.hostname,
        time_offsets=spec.time_offsets,
        workdir=spec.workdir,
        env=container_env(spec, spec.python_code is not None),
        capabilities=spec.capabilities,
        no_new_privileges=spec.no_new_privileges,
        command=spec.command,
        python_code=spec.python_code,
        outputs=spec.outputs,
        want_diff=spec.diff,
        python_globals=python_globals,
        rootless=os.geteuid() != 0,
    )


# -- the run -----------------------------------------------------------------------------------------

def run(spec: ContainerSpec, *, python_globals: dict[str, Any] | None = None,
        on_output: OutputFn | None = None, helper: bool | None = None) -> ContainerRun:
    """Run one container to completion and return what happened.

    helper: fork a command's container from the small launch helper (default for commands: its cost
    then does not grow with the caller's memory) or from the caller (False)."""
    r = ContainerRun(id=state.new_id(), spec=spec)
    h = hierarchy()
    if h is None and spec.has_limits:
        raise LaunchError(errno.EPERM, "resource limits need a writable cgroup hierarchy, and none is "
                          "available here (run as root, or delegate a cgroup: see `%container doctor`)")
    cg: Cgroup | None = None
    try:
        if h is not None:
            try:
                cg = h.create(r.id, _limits(spec))
            except CgroupError as e:
                raise LaunchError(e.errno or errno.EINVAL, f"cgroup: {e}", e.filename) from None
            r.cgroup_version = cg.version
        L = plan_launch(spec, cg, python_globals)
        _execute(r, L, cg, on_output, helper)
    finally:
        if cg is not None:
            _finish_cgroup(r, cg)
    return r


def _finish_cgroup(r: ContainerRun, cg: Cgroup) -> None:
    try:
        cg.kill_all()
        st = cg.stats()
        r.peak_memory = st.memory_peak if st.memory_peak is not None else \
            max((s.memory for s in r.samples), default=st.memory_current)
        r.memory_limit = st.memory_limit
        r.cpu_time = st.cpu_usage_ns / 1e9
        r.cpu_user = None if st.cpu_user_ns is None else st.cpu_user_ns / 1e9
        r.cpu_system = None if st.cpu_system_ns is None else st.cpu_system_ns / 1e9
        r.peak_pids = st.pids_peak if st.pids_peak is not None else max((s.pids for s in r.samples), default=0)
        r.pids_limit = st.pids_limit
        r.throttled_periods = st.nr_throttled
        r.throttled_time = None if st.throttled_ns is None else st.throttled_ns / 1e9
        r.oom_kills = st.oom_kill_count
        r.oom_killed = st.oom_kill_count > 0
    except OSError as e:
        r.notes.append(f"could not read the cgroup's final counters: {e}")
    finally:
        cg.remove()


def _execute(r: ContainerRun, L: Launch, cg: Cgroup | None, on_output: OutputFn | None,
             helper: bool | None) -> None:
    spec = r.spec
    host_ns = ns_inodes("self")
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    st_r, st_w = os.pipe()
    sync_r, sync_w = os.pipe()
    if spec.stdin_data is not None:
        in_r, in_w = os.pipe()
    else:
        in_r, in_w = os.open("/dev/null", os.O_RDONLY), -1
    child_ends = (in_r, out_w, err_w, st_w, sync_r)
    parent_ends = [out_r, err_r, st_r, sync_w] + ([in_w] if in_w >= 0 else [])
    monitor = Monitor(cg, spec.interval, time.monotonic()) if cg is not None else None
    t0 = time.monotonic()
    r.started_at = time.time()
    try:
        pid = _start_setup_process(L, child_ends, helper)
    except BaseException:
        for fd in list(child_ends) + parent_ends:
            os.close(fd)
        raise
    for fd in child_ends:
        os.close(fd)
    if monitor is not None:
        monitor.t0 = t0
        monitor.start()
    relay = _Relay(r, on_output, t0)
    try:
        relay.loop(pid, spec, out_r, err_r, st_r, sync_w, in_w, t0, cg)
    finally:
        for fd in parent_ends:
            try:
                os.close(fd)
            except OSError:
                pass
        _reap(pid, cg, relay)
        r.duration = relay.end - t0 if relay.end else time.monotonic() - t0
        r.timeline.append(("output relayed, setup process reaped", time.monotonic() - t0))
        if monitor is not None:
            r.samples = monitor.stop()
        r.namespaces = [NamespaceRow(k, relay.container_ns.get(k), host_ns.get(k)) for k in host_ns]
    if relay.interrupted:
        raise ContainerInterrupted(r)


def _start_setup_process(L: Launch, child_ends: tuple[int, ...], helper: bool | None) -> int:
    """A Python cell needs the caller's memory: fork the caller. A command does not: fork the small
    launch helper, so its cost does not grow with what the notebook kernel holds."""
    if helper is None:
        helper = not os.environ.get("PYCONTAINER_NO_HELPER")
    if L.python_code is None and helper:
        try:
            return zygote().spawn(L, child_ends)
        except OSError:
            pass  # no helper to be had: fork the caller after all
    gc.freeze()  # keep the child's collector from touching (and so copying) the caller's heap
    try:
        pid = os.fork()
        if pid == 0:
            setup_process(L, child_ends)  # never returns
    finally:
        gc.unfreeze()
    return pid


def _reap(pid: int, cg: Cgroup | None, relay: _Relay) -> None:
    """Wait for the setup process; if it lingers, kill it and its container."""
    deadline = time.monotonic() + 2.0
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        if time.monotonic() > deadline:
            relay.kill(pid, cg)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            return
        time.sleep(0.002)


class _Relay:
    """Reads the child's stdout, stderr and status pipes until they close, from the calling thread."""

    def __init__(self, r: ContainerRun, on_output: OutputFn | None, t0: float) -> None:
        self.r = r
        self.t0 = t0
        self.on_output = on_output
        self.container_ns: dict[str, int | None] = {}
        self.pid1: int | None = None
        self.setup_pid: int | None = None
        self.end = 0.0
        self.interrupted = False
        self.killed = False
        self.status_buf = bytearray()
        self.captured = {"stdout": [], "stderr": []}  # type: dict[str, list[str]]
        self.sizes = {"stdout": 0, "stderr": 0}

    def kill(self, setup_pid: int, cg: Cgroup | None) -> None:
        """End the container now: every process of its cgroup, or PID 1 (which takes its namespace with
        it), then the setup process."""
        self.killed = True
        if cg is not None:
            try:
                cg.kill_all()
            except OSError:
                pass
        for p in (self.pid1, setup_pid):
            if p:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def _emit(self, stream: str, text: str) -> None:
        if not text:
            return
        if self.sizes[stream] < MAX_CAPTURE:
            self.captured[stream].append(text)
            self.sizes[stream] += len(text)
        if self.on_output is not None:
            self.on_output(stream, text)

    STAGES = (("setup_pid", "setup process started"), ("need_maps", "overlay built, user namespace made"),
              ("pid1", "namespaces made, PID 1 forked"), ("namespaces", "PID 1 joined its cgroup"),
              ("ready", "filesystems mounted, pivot_root, privileges dropped"))

    def _handle(self, msg: dict[str, Any], pid: int, sync_w: int, spec: ContainerSpec) -> None:
        r = self.r
        for key, label in self.STAGES:
            if key in msg:
                r.timeline.append((label, msg["t"] - self.t0))
        if "exited" in msg:
            r.timeline.append(("payload exited", msg["exited"] - self.t0))
            r.timeline.append(("layer diff computed, setup process done", msg["t"] - self.t0))
        if "setup_pid" in msg:
            self.setup_pid = msg["setup_pid"]
        if msg.get("need_maps"):
            uid_map, gid_map, deny = id_maps(spec)
            try:
                idmap.write_maps(pid, uid_map, gid_map, deny)
                os.write(sync_w, b"1")
            except OSError as e:
                os.write(sync_w, b"0")
                self.setup_error = {"stage": "writing the id maps", "errno": e.errno, "strerror": e.strerror,
                                    "filename": e.filename, "message": str(e)}
        if "pid1" in msg:
            self.pid1 = msg["pid1"]
        if "namespaces" in msg:
            self.container_ns = msg["namespaces"]
        if msg.get("notes"):
            r.notes.extend(msg["notes"])
        if "setup_error" in msg:
            self.setup_error = msg["setup_error"]
        if "exec_error" in msg:
            r.error = msg["exec_error"]["message"]
            r.error_name = "ExecError"
        if "error" in msg:
            r.error = msg["error"]
            r.error_name = msg.get("error_name")
        if "outputs" in msg:
            r.outputs = msg["outputs"]
            for m in msg.get("missing_outputs", []):
                r.notes.append(f"output {m} was not sent back")
        if "exit_status" in msg:
            self.end = time.monotonic()
            status = msg["exit_status"]
            if status >= 0:
                if os.WIFSIGNALED(status):
                    r.signal = os.WTERMSIG(status)
                    r.exit_code = 128 + r.signal
                else:
                    r.exit_code = os.WEXITSTATUS(status)
            if msg.get("diff"):
                r.diff = [e if isinstance(e, DiffEntry) else DiffEntry(*e) for e in msg["diff"]]

    setup_error: dict[str, Any] | None = None

    def loop(self, pid: int, spec: ContainerSpec, out_r: int, err_r: int, st_r: int, sync_w: int, in_w: int,
             t0: float, cg: Cgroup | None) -> None:
        sel = selectors.DefaultSelector()
        decoders = {out_r: ("stdout", codecs.getincrementaldecoder("utf-8")("replace")),
                    err_r: ("stderr", codecs.getincrementaldecoder("utf-8")("replace"))}
        sel.register(out_r, selectors.EVENT_READ)
        sel.register(err_r, selectors.EVENT_READ)
        sel.register(st_r, selectors.EVENT_READ)
        pending = memoryview(spec.stdin_data or b"")
        if in_w >= 0:
            os.set_blocking(in_w, False)
            sel.register(in_w, selectors.EVENT_WRITE)
        deadline = t0 + spec.timeout if spec.timeout else None
        status_open = True
        drain_until: float | None = None
        try:
            while sel.get_map():
                timeout = None
                now = time.monotonic()
                if deadline is not None and not self.killed:
                    timeout = max(0.0, deadline - now)
                if drain_until is not None:
                    timeout = max(0.0, drain_until - now) if timeout is None else min(timeout, drain_until - now)
                try:
                    events = sel.select(timeout)
                except KeyboardInterrupt:
                    self.interrupted = True
                    self.r.interrupted = True
                    self.kill(pid, cg)
                    continue
                if not events:
                    now = time.monotonic()
                    if deadline is not None and now >= deadline and not self.killed:
                        self.r.timed_out = True
                        self.kill(pid, cg)
                    if drain_until is not None and now >= drain_until:
                        # The setup process is gone but something still holds stdout (a daemonised
                        # grandchild in a shared PID namespace): end it.
                        self.kill(pid, cg)
                        break
                    continue
                for key, _ in events:
                    fd = key.fd
                    if fd == in_w:
                        try:
                            n = os.write(in_w, pending[:65536])
                            pending = pending[n:]
                        except BrokenPipeError:
                            pending = pending[:0]
                        if not pending:
                            sel.unregister(in_w)
                            os.close(in_w)
                            in_w = -1
                        continue
                    try:
                        data = os.read(fd, 65536)
                    except OSError:
                        data = b""
                    if fd == st_r:
                        if not data:
                            sel.unregister(st_r)
                            status_open = False
                            drain_until = time.monotonic() + 1.0
                            continue
                        self.status_buf += data
                        for msg in decode_frames(self.status_buf):
                            self._handle(msg, pid, sync_w, spec)
                        continue
                    stream, dec = decoders[fd]
                    if not data:
                        self._emit(stream, dec.decode(b"", final=True))
                        sel.unregister(fd)
                        continue
                    self._emit(stream, dec.decode(data))
        finally:
            sel.close()
            if in_w >= 0:
                try:
                    os.close(in_w)
                except OSError:
                    pass
            del status_open
        r = self.r
        r.stdout = "".join(self.captured["stdout"])
        r.stderr = "".join(self.captured["stderr"])
        if self.setup_error and not self.killed:
            e = self.setup_error
            where = f" ({e['filename']})" if e.get("filename") else ""
            reason = e.get("strerror") or e.get("message")
            raise LaunchError(e.get("errno") or errno.EIO, f"container setup failed while {e['stage']}{where}: "
                              f"{reason}", e.get("filename"))
        if r.exit_code is None and self.killed:
            r.signal = signal.SIGKILL
            r.exit_code = 128 + signal.SIGKILL
        if not self.end:
            self.end = time.monotonic()
