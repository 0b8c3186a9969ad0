"""The caller's side of a run: plan, take a holder, fork PID 1 or have it forked, relay output, sample,
wait, clean up.

    run(spec, python_globals=..., on_output=...) -> ContainerRun

Output is relayed from the calling thread (so a notebook puts it in the right cell). What a run makes on
the host is its cgroup: the final counters are read before `run` returns and the cgroup is removed right
after, in the background (cleanup.settle() waits for it); mounts and namespaces live only inside the
container's own namespaces and vanish with it. The namespaces come from a holder (holder.py), usually
prepared ahead of time (pool.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import os
import selectors
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, Protocol, TypeVar

from .. import paths
from ..errors import CGROUP, NETWORKS, USERNS, OSFailure
from ..linux import idmap, libc, proc, pty, seccomp
from ..linux.cgroups import Cgroup, CgroupError, CgroupLimits, CgroupStats, Hierarchy, open_hierarchy
from ..linux.cgroups.devices import DEFAULT_DEVICES
from ..linux.namespaces import (
    CLONE_NEWNS,
    CLONE_NEWUTS,
    flags_for,
    ns_inodes,
)
from . import cleanup, image_source, plan_cache, rootfs, state
from .cell_fork import fork_pid1
from .channel import decode_frames, encode_ctl, feed, send_ctl
from .holder import HolderPlan, SetupFailed, prepare_holder
from .image_source import ImageSource
from .launch import DEFAULT_PATH, Launch, compiled_cell
from .monitor import Monitor
from .plan import Exec, RunPython, SetupPlan, privilege_steps, setup_plan
from .pool import Holder, Recipe, finish_rebound, kind_of, pool
from .relay import QUIET, OutputFn, OutputRelay
from .result import HOLDER_LOST, STATUS_LOST, ContainerRun, DiffEntry, NamespaceRow, Sample
from .seccomp_profile import profile_for
from .spec import POD_SHARED, ContainerSpec, IdMap, Mount, SpecError

REMAP_DEFAULT = IdMap(0, 100000, 65536)


class LaunchError(OSFailure):
    """The container could not be set up. str() is one line: the stage, the file, the reason; `needs` names
    the capability when the stage that failed needs one (launch.STAGE_NEEDS)."""


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
    if _hierarchy is False or _hierarchy is None:  # None: asked again (a cgroup may have been delegated since)
        try:
            h = open_hierarchy()
            _hierarchy = h if h.writable else None
        except OSError:
            _hierarchy = None
        if _hierarchy is not None:
            cleanup.at_exit(functools.partial(_leave_no_parent, _hierarchy), cleanup.PARENT)
    return _hierarchy  # type: ignore[return-value]


def no_cgroup_message(what: str) -> str:
    """One line: `what` needs a writable cgroup, and what root runs to delegate one to this user."""
    from ..linux.cgroups.delegation import for_this_user

    d = for_this_user() if os.geteuid() != 0 else None
    if d is None:
        return f"{what} need a writable cgroup hierarchy, and none is available here (run as root)"
    return f"{what} need a writable cgroup hierarchy, and this user has none: {d.one_line()}"


def _leave_no_parent(h: Hierarchy) -> None:
    """At exit: drop what was made ahead of time, finish the background clean-up, and remove the
    project's parent cgroup if no other process has containers under it."""
    pool.drain()
    cleanup.settle()
    try:
        h.remove_parent()
    except OSError:
        pass  # another process made a container there meanwhile: it is theirs to leave
    remove_empty_parents()


def remove_empty_parents(root: str = "/sys/fs/cgroup") -> None:
    """rmdir the project's parent in every hierarchy where it is empty: runc and crun, running a bundle of
    ours (its cgroupsPath is under our parent), make it in hierarchies we never touch ourselves."""
    from ..linux.cgroups import DEFAULT_PARENT

    candidates = [os.path.join(root, DEFAULT_PARENT)]
    try:
        candidates += [os.path.join(root, d, DEFAULT_PARENT) for d in os.listdir(root)]
    except OSError:
        return
    for path in candidates:
        try:
            if os.path.isdir(path) and not any(e.is_dir() for e in os.scandir(path)):
                os.rmdir(path)
        except OSError:
            pass  # in use, or not ours to remove after all


def _limits(spec: ContainerSpec) -> CgroupLimits:
    # Device nodes: runc's allow-list (linux/cgroups/devices.py), whatever nodes the image or the host holds.
    return CgroupLimits(memory=spec.memory, memory_swap=spec.memory_swap, cpus=spec.cpus,
                        cpu_shares=spec.cpu_shares, cpuset_cpus=spec.cpuset_cpus, pids_max=spec.pids_limit,
                        devices=DEFAULT_DEVICES)


# -- id maps -----------------------------------------------------------------------------------------

def seccomp_filter(spec: ContainerSpec) -> bytes | None:
    """The spec's seccomp profile compiled for PID 1 (None: unconfined, or no filter for this machine)."""
    if spec.seccomp == "unconfined" or not seccomp.supported():
        return None
    return _compiled(spec.seccomp, spec.capabilities)


@functools.lru_cache(maxsize=16)
def _compiled(profile_text: str, capabilities: frozenset[str]) -> bytes | None:
    # Keyed on what the profile derives from: a repeated cell neither rebuilds nor hashes the profile.
    profile = profile_for(profile_text, capabilities)
    return None if profile is None else seccomp.compile_profile(profile)


def id_maps(spec: ContainerSpec) -> tuple[str, str, bool]:
    """(uid_map, gid_map, deny_setgroups) text for the container's user namespace."""
    if spec.uid_map:
        # Without root the kernel takes a gid_map only after setgroups is denied (a rootless bundle's maps).
        return idmap.format_map([(m.inside, m.outside, m.count) for m in spec.uid_map]), \
            idmap.format_map([(m.inside, m.outside, m.count) for m in spec.gid_map]), os.geteuid() != 0
    if os.geteuid() != 0:
        # An unprivileged user may map only itself (to root), and must deny setgroups first.
        return f"0 {os.geteuid()} 1\n", f"0 {os.getegid()} 1\n", True
    if spec.userns == "remap":
        u = idmap.subid_range("containers", "uid") or (REMAP_DEFAULT.outside, REMAP_DEFAULT.count)
        g = idmap.subid_range("containers", "gid") or (REMAP_DEFAULT.outside, REMAP_DEFAULT.count)
        return f"0 {u[0]} {u[1]}\n", f"0 {g[0]} {g[1]}\n", False
    # As root: container root is host root, so the host image stays writable through the overlay.
    return "0 0 4294967295\n", "0 0 4294967295\n", False


# -- planning ----------------------------------------------------------------------------------------

def container_env(spec: ContainerSpec, python: bool, image_env: dict[str, str] | None = None) -> dict[str, str]:
    if python:
        env = dict(os.environ)  # a Python cell is a snapshot of the caller: keep its environment
    else:
        env = {"PATH": DEFAULT_PATH, "HOME": "/root"}
    env.update(image_env or {})  # the image's ENV, then -e (as Docker)
    env["HOSTNAME"] = spec.hostname or (os.uname().nodename if "uts" in spec.share else "")
    if not env["HOSTNAME"]:
        del env["HOSTNAME"]
    env.update(dict(spec.env))
    return env


def _host_id(map_text: str, inside: int) -> int | None:
    """The host id that `inside` maps to in a uid_map/gid_map text, or None when unmapped."""
    for line in map_text.splitlines():
        first, outside, count = (int(x) for x in line.split())
        if first <= inside < first + count:
            return outside + inside - first
    return None


def plan_launch(spec: ContainerSpec, cg: Cgroup | None, python_globals: dict[str, Any] | None,
                source: ImageSource | None = None, *,
                cgroup_view: tuple[str | None, dict[str, str]] | None = None,
                maps: tuple[str, str, bool] | None = None) -> tuple[HolderPlan, Launch]:
    """Everything the holder and PID 1 will do, decided before any fork (so a bad spec fails here, with
    nothing made). A Python cell as root goes "direct" (see launch.py), everything else "nested".
    cgroup_view: (version, host dirs) of the cgroup to show at /sys/fs/cgroup when `cg` is not made yet
    (explain); when given, nothing on the host is changed. maps: the id maps of a user namespace the container
    joins (its pod's) instead of making its own from the spec."""
    new = set(spec.new_namespaces)
    root = os.geteuid() == 0
    if "mount" not in new and (spec.rootfs or spec.mounts or spec.tmpfs or spec.read_only):
        raise LaunchError(errno.EINVAL, "--rootfs, volumes, --tmpfs and --read-only need a new mount "
                          "namespace: remove 'mount' from --share")
    if not root and "user" not in new:
        raise LaunchError(errno.EPERM, "without root, a container needs a new user namespace: "
                          "remove 'user' from --share", needs=USERNS)
    if not root and spec.userns == "remap":
        raise LaunchError(errno.EPERM, "--userns remap needs root (it maps a range of host ids); without "
                          "root your own user is the container's root", needs=USERNS)
    if source is None:
        if spec.image == "host":
            source = image_source.resolve(spec)
        else:
            from ..images import ImageError  # the image store and registry client load only when used
            try:
                source = image_source.resolve(spec)
            except ImageError as e:
                raise LaunchError(errno.ENOENT, f"--image {spec.image}: {e}") from None
    if "mount" not in new and spec.image != "host":
        raise LaunchError(errno.EINVAL, "--image needs a new mount namespace: remove 'mount' from --share")
    uid = gid = None
    if source.user:
        try:
            uid, gid = image_source.resolve_user(source.user, source.lower)
        except LookupError as e:
            raise LaunchError(errno.ENOENT, str(e)) from None
    if maps is None:
        maps = id_maps(spec) if "user" in new else ("0 0 4294967295\n", "0 0 4294967295\n", False)
    remapped_gid = _host_id(maps[1], 0) if root and "user" in new else None
    if remapped_gid and cgroup_view is None:  # container root is not host root: through the private data root
        paths.let_group_traverse(paths.state_dir(), remapped_gid)
        paths.let_group_traverse(paths.run_dir(), remapped_gid)
    # Direct PID 1 lives in mount and PID namespaces that host root made: container root has no
    # CAP_SYS_ADMIN over them. A cell granted SYS_ADMIN (to mount, say) goes nested, where it does.
    mode = "direct" if spec.python_code is not None and root and "SYS_ADMIN" not in spec.capabilities \
        else "nested"
    plan = None
    if "mount" in new:
        # (An explained plan (cgroup_view given) runs nothing: it names a volume's directory without making it.)
        volume_sources = {m.source: state.volume_path(m.source, create=cgroup_view is None)
                          for m in spec.mounts if m.kind == "volume"}
        cg_ops = rootfs.cgroup_ops(*(cgroup_view or (cg.version if cg else None, cg.paths if cg else {})))
        if mode == "direct":
            # PID 1 mounts as host root: ids in mount options are host ids.
            owner = (_host_id(maps[0], 0), _host_id(maps[1], 0)) if "user" in new else (0, 0)
            pts_gid = _host_id(maps[1], 5) if "user" in new else 5
        else:
            owner, pts_gid = None, 5 if _host_id(maps[1], 5) is not None else None
        plan = rootfs.build_plan(spec, volume_sources=volume_sources, cgroup_mount_ops=cg_ops,
                                 pts_gid=pts_gid, owner=owner if owner != (0, 0) else None, lower=source.lower,
                                 host_masks=root)  # (rootless: the container is you, and sees what you see)
    holder_plan = HolderPlan(
        new_mount="mount" in new,
        new_user="user" in new,
        flags_rest=flags_for([k for k in new if k in ("net", "uts", "ipc", "pid", "time")]),
        scratch=state.scratch_dir() if plan else None,
        storage_size=spec.storage_size,
        lower=plan.lower if plan else None,
        mountpoints=plan.mountpoints if plan else (),
        writable=plan.writable if plan else True,
        time_offsets=spec.time_offsets,
        maps=maps,
        rootless=not root,
        loopback="net" in new,  # lo up in a new network namespace, as Docker has it (127.0.0.1 works)
        raise_rlimits=spec.ulimits if root else (),
        upper_dir=spec.writable_layer if plan and root else None,
    )
    launch = Launch(
        mode=mode,
        pid1_unshare=flags_for([k for k in new if k in ("mount", "cgroup")]),
        merged=holder_plan.merged,
        plan=plan,
        hostname=spec.hostname,
        env=container_env(spec, spec.python_code is not None, source.env),
        steps=privilege_steps(rlimits_=spec.ulimits, workdir=source.workdir, capabilities=spec.capabilities,
                              uid=uid, gid=gid, no_new_privileges=spec.no_new_privileges,
                              seccomp_program=seccomp_filter(spec), seccomp_profile=_profile_label(spec.seccomp)),
        command=source.command,
        python_code=spec.python_code,
        python_compiled=compiled_cell(spec.python_code) if cgroup_view is None else None,  # (not for an explained plan)
        outputs=spec.outputs,
        want_diff=spec.diff,
        rebind_root=root,
        python_globals=python_globals,
    )
    return holder_plan, launch


def _profile_label(seccomp_text: str) -> str:
    return seccomp_text if seccomp_text in ("default", "unconfined") else "custom"


def _limit_items(spec: ContainerSpec) -> tuple[tuple[str, Any], ...]:
    items = (("memory", spec.memory), ("memory_swap", spec.memory_swap), ("cpus", spec.cpus),
             ("cpu_shares", spec.cpu_shares), ("cpuset_cpus", spec.cpuset_cpus), ("pids", spec.pids_limit))
    return tuple((k, v) for k, v in items if v is not None)


def describe_launch(spec: ContainerSpec, hp: HolderPlan, L: Launch, cgroup: str | None) -> SetupPlan:
    """The setup plan of a launch (plan.py): the steps the holder and PID 1 take, as data."""
    payload: Exec | RunPython
    if L.python_code is not None:
        payload = RunPython(L.python_code.count("\n") + 1, tuple(L.env.items()))
    else:
        payload = Exec(L.command, tuple(L.env.items()))
    return setup_plan(new=spec.new_namespaces, joined=POD_SHARED if hp.join else (), time_offsets=hp.time_offsets,
                      maps=hp.maps if hp.new_user else None, limits=_limit_items(spec), cgroup=cgroup,
                      hostname=L.hostname, rootfs=L.plan, merged=L.merged, privileges=L.steps, payload=payload)


def explain(spec: ContainerSpec) -> SetupPlan:
    """What running `spec` would do, step by step, without running anything (`%%container --explain`)."""
    h = hierarchy()
    view: tuple[str | None, dict[str, str]] = (None, {})
    if h is not None:
        mps = getattr(h, "mount_points", None) or {"unified": getattr(h, "root", "/sys/fs/cgroup")}
        parent = getattr(h, "parent", "")
        view = (h.version, {c: os.path.join(mp, parent, "<container>") for c, mp in mps.items()})
    hp, L = plan_launch(spec, None, None, cgroup_view=view)
    return describe_launch(spec, hp, L, None)


def bundle_plan(spec: ContainerSpec) -> SetupPlan:
    """The setup plan an OCI runtime carries out for `spec` (oci/bundle.config_for writes it as config.json):
    the same steps as a run's, without what only this host decides (its cgroup, the holder's scratch
    directory): /sys/fs/cgroup is the runtime's cgroup mount; the command runs as given."""
    new = spec.new_namespaces
    maps = id_maps(spec) if "user" in new else None
    volume_sources = {m.source: state.volume_path(m.source) for m in spec.mounts if m.kind == "volume"}
    cgroup_mount = [rootfs.MountOp("mount", "/sys/fs/cgroup", "cgroup", "cgroup",
                                   rootfs.NOSUID_NODEV_NOEXEC | libc.MS_RDONLY, read_only=True)]
    fs = rootfs.build_plan(spec, volume_sources=volume_sources, cgroup_mount_ops=cgroup_mount, pts_gid=5) \
        if "mount" in new else None
    uid = gid = None
    if spec.user:
        u, _, g = spec.user.partition(":")
        if u.isdigit() and (not g or g.isdigit()):
            uid, gid = int(u), int(g) if g else int(u)
    steps = privilege_steps(rlimits_=spec.ulimits, workdir=spec.workdir or "/", capabilities=spec.capabilities,
                            uid=uid, gid=gid, no_new_privileges=spec.no_new_privileges,
                            seccomp_program=None if spec.seccomp == "unconfined" else b"",
                            seccomp_profile=_profile_label(spec.seccomp))
    env = container_env(spec, False, {})
    return setup_plan(new=new, time_offsets=spec.time_offsets, maps=maps, limits=_limit_items(spec), cgroup=None,
                      hostname=spec.hostname, rootfs=fs, merged=None, privileges=steps,
                      payload=Exec(spec.command, tuple(env.items())))


# -- the run -----------------------------------------------------------------------------------------

class Running:
    """A live run, as its starter sees it: enough to signal, inspect and enter the container (on_start)."""

    def __init__(self, run: ContainerRun, relay: _Relay, cgroup: Cgroup | None) -> None:
        self.run = run
        self.cgroup = cgroup
        self._relay = relay

    @property
    def pid1(self) -> int | None:
        """PID 1 as the host sees it."""
        return self._relay.pid1

    def signal(self, sig: int) -> None:
        if self.pid1:
            try:
                os.kill(self.pid1, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        """SIGKILL everything in the container now."""
        self._relay.kill(self.cgroup)


StartFn = Callable[[Running], None]


class PodMembership(Protocol):
    """What a container run with `--pod NAME` needs from its pod. Pods are workloads (workloads/pods.py,
    above this layer): importing that module installs the resolver, so this layer never imports it."""

    def file_mounts(self) -> tuple[Mount, ...]: ...

    @property
    def maps(self) -> tuple[str, str, bool] | None:
        """The id maps of the pod's user namespace (its containers join it); None: a record without them."""

    def admit(self, run_id: str, spec: ContainerSpec, hp: HolderPlan, L: Launch,
              on_start: StartFn | None) -> tuple[HolderPlan, StartFn]: ...

    def release(self, run_id: str) -> None: ...


PodResolver = Callable[[str, bool], PodMembership]  # (name, helper) -> the pod, made on first use
_pod_resolver: PodResolver | None = None


def set_pod_resolver(resolve: PodResolver) -> None:
    global _pod_resolver
    _pod_resolver = resolve


def _pod(name: str, helper: bool) -> PodMembership:
    if _pod_resolver is None:
        raise LaunchError(errno.EINVAL, f"--pod {name}: pods are provided by pycontainer_magics.workloads; "
                          "import it before running a container in a pod")
    return _pod_resolver(name, helper)


@dataclass(frozen=True)
class Terminal:
    """`docker run -t`: PID 1 gets a pseudo-terminal (made in the container: /dev/pts/0 there) as its stdin,
    stdout, stderr and controlling terminal. `on_master` receives the master end, before the payload runs; the
    caller relays it (output, input, window size) and closes it. The run's stdout and stderr are then empty."""

    on_master: Callable[[int], None]
    size: tuple[int, int] = (0, 0)  # rows, columns; (0, 0): unknown yet


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _clean_up_after(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """The clean-up a run defers once its container has ended (reaping PID 1, letting the holder go, removing the
    cgroup) starts when the run returns (cleanup.held, hold_from_now)."""
    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with cleanup.held():
            return fn(*args, **kwargs)
    return wrapper


@_clean_up_after
def run(spec: ContainerSpec, *, python_globals: dict[str, Any] | None = None,
        on_output: OutputFn | None = None, helper: bool | None = None,
        on_start: StartFn | None = None, export_layer: str | None = None,
        check_executable: bool = False, stdin_fd: int | None = None,
        terminal: Terminal | None = None) -> ContainerRun:
    """Run one container to completion and return what happened.

    helper: prepare the container's namespaces in the small launch helper, ahead of time (the default:
    the cost then does not grow with the caller's memory), or in a fork of the caller (False: right for
    a small, short-lived caller such as the CLI). on_start: called (from the relaying thread) with a
    `Running` handle once PID 1 is about to run its payload. export_layer: a path where the writable layer
    is written, at exit, as a layer tarball (what a Dockerfile RUN step adds). check_executable: PID 1 looks
    the command up before it says it is ready, so one that cannot be executed is a failed start (LaunchError),
    not an exit code 127 after on_start (the engine daemon's `docker start`). stdin_fd: the
    container's standard input (a pipe the caller feeds, say; its own copy stays the caller's), instead of
    spec.stdin_data or /dev/null. terminal: a pseudo-terminal instead (see Terminal)."""
    cleanup.start_waiting()  # (what the last run left for its caller's starter, if it has not started it)
    r = ContainerRun(id="", spec=spec)
    h = hierarchy()
    if h is None and "pids_limit" in spec.default_bounds:  # a default bound, not asked for: dropped here
        spec = spec.with_(pids_limit=None, default_bounds=tuple(b for b in spec.default_bounds if b != "pids_limit"))
        r.spec = spec
    if h is None and spec.has_limits:
        raise LaunchError(errno.EPERM, no_cgroup_message("resource limits"), needs=CGROUP)
    if helper is None:
        helper = not os.environ.get("PYCONTAINER_NO_HELPER")
    cg: Cgroup | None = None
    pod: PodMembership | None = None
    executed = False
    then: list[Callable[[], None]] = []  # what _execute leaves for after the counters are read
    final_stats: list[CgroupStats] = []  # the counters as _execute read them last
    try:
        # Could this run take over a PID 1 prepared ahead (pool.py, holder.py)? A command, not in a pod: only
        # such a run may get the cgroup one waits in.
        parkable = spec.python_code is None and spec.pod is None
        if h is not None:
            try:
                cg = pool.take_cgroup(h, _limits(spec), parkable=parkable, python=spec.python_code is not None,
                                      network=spec.network if _networked(spec) else None)
            except CgroupError as e:
                raise _cgroup_failed(e) from None
            r.cgroup_version = cg.version
        r.id = cg.name if cg is not None else state.new_id()
        plan_spec = spec
        if spec.pod is not None:  # made on first use; its containers join its namespaces (workloads/pods.py)
            pod = _pod(spec.pod, helper)
            plan_spec = spec.with_(mounts=spec.mounts + pod.file_mounts())
        hp, L = _plan_run(plan_spec, r.id, cg, python_globals, pod, defer_host=True)
        parked = pool.parked_for(cg, spec.network if _networked(spec) else None, hp) \
            if cg is not None and h is not None else None
        if parked is not None and parked != L.park_key():  # prepared for other mounts, network or plan: not this cgroup
            assert h is not None and cg is not None
            _unplan_run(spec, r.id)
            pool.forsake(cg)  # (its holder is not taken: let go by take(), not left for another run)
            cg = _instead_of(cg, h, spec)  # (the prepared PID 1 in the old one)
            r.id = cg.name
            hp, L = _plan_run(plan_spec, r.id, cg, python_globals, pod)
        L.export_layer = export_layer
        if pod is not None:
            hp, on_start = pod.admit(r.id, spec, hp, L, on_start)
        if check_executable:
            if L.mode != "nested":
                raise LaunchError(errno.EINVAL, "an executable is looked up for a command, not a cell")
            L.check_executable = True
        if terminal is not None:
            if L.mode != "nested" or L.plan is None:
                raise LaunchError(errno.EINVAL, "a terminal (-t) is for a command in a new mount namespace, not a "
                                  "Python cell")
            L.terminal, L.terminal_size = True, terminal.size
        if L.mode != "direct":  # (direct: described while PID 1 starts, _execute)
            r.plan = describe_launch(spec, hp, L, cg.name if cg is not None else None)
        executed = True
        changed: tuple[Any, int] | None = None  # (the SIGINT handler, the SIGINTs held meanwhile)
        try:
            _execute(r, hp, L, cg, on_output, helper, on_start, stdin_fd, terminal, then, final_stats)
        except _HostChanged as e:
            changed = e.handler, e.interrupts  # (not the exception: its traceback would hold this frame)
        if changed is not None:  # (out of the handler: the fresh PID 1 must not inherit it as the exception at hand)
            # (seldom: a name appeared in /home, say) PID 1 ended before anything of the cell's, its holder let go.
            # A stop asked for meanwhile ends the run here; else again from a fresh plan, in a fresh cgroup (PID 1's
            # start was charged to this one).
            for _ in range(changed[1]):
                changed[0](signal.SIGINT, None)
            if cg is not None and h is not None:
                cg = _instead_of(cg, h, spec)
                r.id = cg.name
            r.timeline.clear()
            r.notes.append("planned again after PID 1's start: the host's files changed since this cell's last run "
                           "(a path hidden from containers, a --tmpfs target)")
            hp, L = _plan_run(plan_spec, r.id, cg, python_globals, pod)
            L.export_layer = export_layer
            _execute(r, hp, L, cg, on_output, helper, on_start, stdin_fd, terminal, then, final_stats)
    finally:
        if pod is not None:
            pod.release(r.id)
        if cg is not None:
            _finish_cgroup(r, cg, final_stats[0] if final_stats else None)
        # Also when PID 1 failed its set-up (a mount, the executable...): its endpoint would stay on the network,
        # holding its address and its name for good. After the counters are read: the clean-up thread's netlink
        # work would compete with this thread for the interpreter while it reads them.
        if executed:
            _leave_networks(r)
        # So does the preparation of the next cell's holder and cgroup (the pool's thread): started only now, after
        # this run's clean-up is queued (its network address given back before the next holder reserves one) — or
        # both once the caller's starter says so (cleanup.started_by: a kernel, once it has replied).
        cleanup.flush(then)
    return r


def prepare(spec: ContainerSpec) -> bool:
    """Make now, in this process, what a run of `spec` — or of one like it: another command, environment,
    hostname — starts from: its cgroup with the limits, a namespace holder with its root filesystem, and PID 1
    parked up to the payload. The next run() here whose plan matches takes them (pool.offer), helper or not;
    so a process that knows its next container (the engine daemon's spare supervisor) starts it at once.
    False when nothing is prepared (a network or a pod, a Python cell: their mounts name the container; a
    named volume or a bind: planning would re-create a volume removed meanwhile, and the host side of a bind
    may be gone or replaced by the next run)."""
    if spec.python_code is not None or _networked(spec) or spec.pod is not None or spec.mounts:
        return False
    h = hierarchy()
    limits = _limits(spec)
    cg = h.create(state.new_id(), limits) if h is not None else None
    try:
        hp, L = plan_launch(spec, cg, None)
        pid, sock = prepare_holder(hp)
    except BaseException:
        if cg is not None:
            cg.remove()
        raise
    pool.offer(Holder(pid, sock, hp, ours=True), (limits, cg) if cg is not None else None,
               L.for_holder() if L.parkable() else None)
    return True


def prepared_for(spec: ContainerSpec) -> bool:
    """Would run(spec) take what prepare() made (the cgroup, the holder and its parked PID 1)? Only a run
    that may take a parked PID 1 (run()'s `parkable`): a network's or a pod's mounts differ."""
    if spec.python_code is not None or _networked(spec) or spec.pod is not None:
        return False
    ready = pool.ready_cgroup()
    h = hierarchy()
    if h is not None and (ready is None or ready[0] != _limits(spec)):
        return False
    cg = ready[1] if ready is not None else None
    try:
        hp, L = plan_launch(spec, cg, None)
    except (LaunchError, SpecError, OSError):
        return False
    return pool.ready_for(hp, (L, cg))


def _instead_of(old: Cgroup, h: Hierarchy, spec: ContainerSpec) -> Cgroup:
    """A fresh cgroup for the run in place of `old`, which is removed in the background (with what is in it)."""
    try:
        cg = h.create(state.new_id(), _limits(spec))
    except CgroupError as e:
        raise _cgroup_failed(e) from None
    cleanup.defer(old.remove)
    return cg


def _cgroup_failed(e: CgroupError) -> LaunchError:
    """A run's cgroup that could not be made, as the one line a user sees."""
    return LaunchError(e.errno or errno.EINVAL, f"cgroup: {e}", e.filename, needs=CGROUP)


def _plan_run(spec: ContainerSpec, run_id: str, cg: Cgroup | None, python_globals: dict[str, Any] | None,
              pod: PodMembership | None, defer_host: bool = False) -> tuple[HolderPlan, Launch]:
    """plan_launch for the run `run_id`; on a network, with its hosts file and resolv.conf bound (the hosts
    file made now if missing, filled in place when the container joins the network). defer_host: a reused plan may
    leave the host's answers to L.host_check (plan_cache; _before_pid1_goes asks it)."""
    run_mounts: tuple[Mount, ...] = ()
    if _networked(spec):
        from . import networking  # pyroute2 loads only for containers on a network
        run_mounts = networking.file_mounts(spec, run_id)
    try:
        if pod is None:  # (a re-run's plan, when it still holds)
            return plan_cache.plan(spec, cg, python_globals, plan_launch, run_mounts,
                                   defer_host and not run_mounts)  # (not on a network: claimed before the fork)
        return plan_launch(spec.with_(mounts=spec.mounts + run_mounts), cg, python_globals, maps=pod.maps)
    except BaseException:
        _unplan_run(spec, run_id)
        raise


def _park_launch(spec: ContainerSpec, next_cg: Cgroup | None) -> Launch:
    """The launch of a run like the last one in the pooled cgroup `next_cg`, for a PID 1 prepared ahead; a run
    on a network is planned under the id it will have (the cgroup's name: its hosts file)."""
    if next_cg is None and _networked(spec):
        raise LookupError("no id for the next container's hosts file")
    return _plan_run(spec, next_cg.name if next_cg is not None else "", next_cg, None, None)[1].for_holder()


def _unplan_run(spec: ContainerSpec, run_id: str) -> None:
    if _networked(spec):
        from . import networking
        networking.disconnect(run_id)  # the hosts file written for it


def _finish_cgroup(r: ContainerRun, cg: Cgroup, st: CgroupStats | None = None) -> None:
    """Read the final counters now (`st`: read already, for the monitor's last sample); kill what is left and remove
    the cgroup in the background (the kernel may still be tearing down PID 1's memory, and the cell need not wait
    for that)."""
    try:
        if st is None:
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
        cleanup.defer(cg.remove)


def _networked(spec: ContainerSpec) -> bool:
    return spec.network not in ("none", "host")


def _take_holder(hp: HolderPlan, L: Launch, helper: bool, cg: Cgroup | None, network: str | None) -> Holder:
    # A Python cell that PID 1 of the holder runs (nested) needs the caller's memory: fork the caller.
    from_caller = not helper or (L.python_code is not None and L.mode == "nested")
    try:
        return pool.take(hp, helper=not from_caller, launch=L if from_caller else None, run=(L, cg), network=network)
    except SetupFailed as e:
        raise _launch_error(e.info) from None


class _HostChanged(Exception):
    """What the host's file system answered when a reused plan was made no longer holds (L.host_check). _execute
    puts on it the SIGINTs that came while it was held (`interrupts`, for `handler`)."""

    handler: Any = None
    interrupts = 0


def _before_pid1_goes(holder: Holder, L: Launch, st_w: int) -> None:
    """What a Python cell's run does after PID 1's fork, while PID 1 waits before anything of the cell's
    (cell_fork.fork_pid1's before_go): off the cell's path, beside PID 1's start; a failure ends PID 1 first.
    A reused plan's check of the host (_HostChanged: run() starts again); the bound of the writable layer, when
    take() left it to the run; the holder's order (what to do with the layer after: it forks nothing for a direct
    run) — sent before the fork, its wake-up of the holder took this CPU from the caller at times."""
    if L.host_check is not None and not L.host_check():
        raise _HostChanged
    _bound_layer(holder)
    try:
        _send_order(holder, L, [st_w])
    except OSError as e:
        raise LaunchError(e.errno or errno.EPIPE, "container setup failed while starting PID 1: its namespace "
                          "holder went away") from None


def _bound_layer(holder: Holder) -> None:
    """The bound of the holder's writable layer, when take() left it to the run (pool.finish_rebound)."""
    try:
        finish_rebound(holder)
    except OSError as e:
        raise LaunchError(e.errno or errno.EIO, f"container setup failed while bounding the writable layer: {e}") \
            from None


def _launch_error(e: dict[str, Any]) -> LaunchError:
    """A failure the holder or PID 1 reported (launch.failure): the stage, the file, the reason, and the
    capability that stage needs."""
    where = f" ({e['filename']})" if e.get("filename") else ""
    reason = e.get("strerror") or e.get("message")
    return LaunchError(e.get("errno") or errno.EIO, f"container setup failed while {e['stage']}{where}: {reason}",
                       e.get("filename"), needs=e.get("needs"))


def _leave_networks(r: ContainerRun) -> None:
    """The run's endpoints, published ports and hosts file go (in the background, off the cell's path)."""
    if _networked(r.spec):
        from . import networking
        cid = r.id
        cleanup.defer(lambda: networking.disconnect(cid))


def _send_order(holder: Holder, L: Launch, fds: list[int]) -> None:
    """The run to the holder: `fds` are the status pipe, stdin, stdout and stderr, then (nested) the terminal's
    socket and the cgroup's join files. A command's PID 1 parked in the holder gets the run first, straight."""
    if L.mode == "direct":  # the holder forks nothing: it needs to know only what to do with the layer after
        send_ctl(holder.sock, {"mode": "direct", "want_diff": L.want_diff, "export_layer": L.export_layer}, fds)
        return
    parked = holder.parked_channel is not None
    order = {"mode": L.mode, "launch": None if holder.has_launch and not parked else L.for_holder(), "parked": parked}
    data = encode_ctl(order)  # (pickled once: the same order goes to a parked PID 1, which reads its launch)
    if parked and not _give_run(holder, L, data, fds[:4]):
        data = encode_ctl({**order, "parked": False})
    send_ctl(holder.sock, data, fds)


def _give_run(holder: Holder, L: Launch, order: bytes, fds: list[int]) -> bool:
    """Send the run (the order, with its launch; the status pipe, stdin, stdout, stderr) straight to the PID 1 parked
    in the holder (pool._park: take() hands a run a holder with a PID 1 parked only when that PID 1 fits it), its
    hostname set first: PID 1 is on its way before the holder has read the same order, which says so
    (holder._took_run). False when it could not be given (rootless, with a hostname to set): the holder hands it
    over."""
    channel, holder.parked_channel = holder.parked_channel, None
    if channel is None:
        return False
    try:
        if L.hostname:
            if holder.parked_uts is None:
                return False
            _set_hostname(holder.parked_uts, L.hostname)
        send_ctl(channel, order, fds)
        holder.run_given = True
        return True
    except OSError:
        return False
    finally:
        channel.close()  # (what was sent stays for PID 1 to read)


def _set_hostname(uts: int, name: str) -> None:
    """Set the host name in the UTS namespace `uts` (the holder's, opened when its PID 1 was parked: pool._park) from
    this thread (setns of a UTS namespace is the calling thread's alone, unlike a mount or user namespace): 0.05 ms,
    where the holder's own sethostname would be after its wake-up, while PID 1 may already run. Needs CAP_SYS_ADMIN
    here too: EPERM when rootless."""
    own = os.open("/proc/thread-self/ns/uts", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if os.fstat(uts).st_ino == os.fstat(own).st_ino:  # (never the host's: spec._check_hostname)
            raise OSError(errno.EINVAL, "the holder shares this UTS namespace")
        try:  # (the way back also when something is raised as setns returns: an interrupt's handler)
            libc.setns(uts, CLONE_NEWUTS)
            libc.sethostname(name)
        finally:
            try:
                libc.setns(own, CLONE_NEWUTS)
            except OSError as e:  # (not an OSError: nothing may go on in a container's UTS namespace)
                raise RuntimeError(f"could not return to this thread's UTS namespace: {e}") from None
    finally:
        os.close(own)


def _execute(r: ContainerRun, hp: HolderPlan, L: Launch, cg: Cgroup | None, on_output: OutputFn | None,
             helper: bool, on_start: StartFn | None, stdin_fd: int | None,
             terminal: Terminal | None, then: list[Callable[[], None]],
             final_stats: list[CgroupStats]) -> None:
    """Run the planned container to its end. `then`: where the preparation of the next run is put, for the caller
    to start once it has read the cgroup's counters. `final_stats`: where the final reading of those goes."""
    spec = r.spec
    host_ns = ns_inodes("self") if L.mode != "direct" else {}  # (direct: read while PID 1 starts)
    t0 = time.monotonic()
    r.started_at = time.time()
    network = spec.network if _networked(spec) else None
    holder = _take_holder(hp, L, helper, cg, network)
    r.timeline.append(("namespaces and root filesystem ready", time.monotonic() - t0))
    if _networked(spec):
        try:
            claimed = _join_networks(r, holder)
        except BaseException:
            _end_holder(holder, kill=True)
            raise
        r.timeline.append((ENDPOINT_PREPARED if claimed else "network attached", time.monotonic() - t0))
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    st_r, st_w = os.pipe()
    if stdin_fd is not None:
        in_r, in_w = os.dup(stdin_fd), -1
    elif spec.stdin_data is not None:
        in_r, in_w = os.pipe()
    else:
        in_r, in_w = os.open("/dev/null", os.O_RDONLY), -1
    join_fds = cg.join_fds() if cg else []
    console: socket.socket | None = None  # PID 1 sends its terminal's master here (Terminal)
    console_fds: list[int] = []
    if terminal is not None:
        console, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        console_fds = [theirs.detach()]
    child_ends = [in_r, out_w, err_w, st_w, *console_fds, *join_fds]
    parent_ends = [out_r, err_r, st_r]  # in_w belongs to the relay, which closes it once stdin is written
    pid1 = pidfd = None
    ahead: tuple[int, ...] | None = None  # the plan's operations a holder may make ahead (rootfs.ahead_ops)
    order = [st_w, in_r, out_w, err_w, *console_fds, *join_fds]
    relay: _Relay | None = None
    monitor: Monitor | None = None
    held = _HeldInterrupts()  # from the order on, a Ctrl-C waits for the relay's loop (a docker stop there)
    try:
        try:
            def made_relay() -> _Relay:
                relay = _Relay(r, on_output, t0, holder)
                relay.keep_layer = L.want_diff and not L.export_layer
                if L.mode == "direct" and not L.export_layer:
                    relay.read_diff = functools.partial(_read_diff, holder.pid, hp, L.want_diff)
                if on_start is not None:
                    relay.on_ready = functools.partial(_on_ready, on_start, r, relay, cg)
                if console is not None and terminal is not None:
                    relay.console, relay.on_master = console, terminal.on_master
                return relay

            if L.mode == "nested":
                relay = made_relay()
                _bound_layer(holder)  # (take() leaves it to the run for a direct one only: a no-op)
                # What the caller needs while PID 1 runs is made before the holder forks it.
                monitor = _start_monitor(cg, spec, t0)
                relay.listen(out_r, err_r, st_r, in_w)
                try:
                    _send_order(holder, L, order)
                except OSError as e:  # a pooled holder that died: make a fresh one
                    if holder.run_given:  # (its PID 1 has the run, and dies with it: the run must not go twice)
                        raise LaunchError(e.errno or errno.EPIPE, "container setup failed while starting PID 1: "
                                          "its namespace holder went away") from None
                    holder.close()
                    holder = relay.holder = _take_holder(hp, L, False, cg, network)
                    if network is not None:  # (an endpoint claimed went with the dead holder's network namespace)
                        _join_networks(r, holder, again=True)
                        r.timeline.append(("network attached again (a fresh holder)", time.monotonic() - t0))
                    _send_order(holder, L, order)
            else:
                ahead, root_ns = _take_premounted(holder, L)
                known: dict[str, int | None] = {}  # (fork_pid1 puts in the namespaces PID 1 enters)
                pid1 = fork_pid1(L, holder.pid, hp, (in_r, out_w, err_w, st_w), join_fds, holder.take_namespaces(),
                                 root_ns, known, before_go=functools.partial(_before_pid1_goes, holder, L, st_w))
                r.timeline.append(("PID 1 forked", time.monotonic() - t0))
                # What the caller needs only once PID 1 reports is made while PID 1 starts: the fork puts it on the
                # idle core (the caller's work before the fork was on the cell's path, 0.3-0.4 ms of it).
                relay = made_relay()
                pidfd = os.pidfd_open(pid1)
                monitor = _start_monitor(cg, spec, t0)
                relay.listen(out_r, err_r, st_r, in_w)
                relay.forked(pid1, pidfd)
                host_ns = ns_inodes("self")
                relay.container_ns = {**host_ns, **known}  # (and PID 1 reports those it makes itself)
                r.plan = describe_launch(spec, hp, L, cg.name if cg is not None else None)
        finally:
            for fd in child_ends:
                os.close(fd)
    except BaseException as e:
        if pid1 is not None:  # forked (direct), and the relay's loop will not reap it
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid1, signal.SIGKILL)
            cleanup.defer(functools.partial(_waitpid, pid1))
            if pidfd is not None:
                os.close(pidfd)
        handler, came = held.release()
        if isinstance(e, _HostChanged):  # (run() starts again: unless the user asked for a stop meanwhile)
            e.handler, e.interrupts = handler, came
        if monitor is not None:
            monitor.stop()
        if relay is not None:
            relay.unlisten()
        for fd in parent_ends + ([in_w] if in_w >= 0 else []):
            os.close(fd)
        if console is not None:
            console.close()
        _end_holder(holder, kill=True)
        raise  # (run() takes the run off its networks)
    assert relay is not None
    relay.held = held
    if monitor is not None:
        monitor.arm()
    try:
        relay.loop(spec, out_r, err_r, st_r, in_w, pidfd, cg)
    finally:
        cleanup.hold_from_now()  # the container has ended: its clean-up waits for run()'s end (_clean_up_after)
        held.release()  # (put back in the loop already, unless it failed before)
        try:
            relay.take_console()  # closed if PID 1 never sent one
            # Each fd closed exactly once: a number closed twice may by then belong to another thread's file.
            for fd in parent_ends + ([pidfd] if pidfd is not None else []):
                try:
                    os.close(fd)
                except OSError:
                    pass
            relay.reap(cg)
        finally:  # (also after a Ctrl-C here: a direct run's holder goes only when let go)
            _end_holder(holder, kill=False, reap_later=True, close_later=L.mode == "direct" and relay.final)
        r.duration = relay.end - t0 if relay.end else time.monotonic() - t0
        r.timeline.append(("output relayed, processes reaped", time.monotonic() - t0))
        if monitor is not None and cg is not None:
            r.samples = monitor.stop()
            # The last sample is the final counters' reading (_finish_cgroup takes the rest of it from there).
            try:
                st = cg.stats()
                r.samples.append(Sample(time.monotonic() - t0, st.memory_current, st.cpu_usage_ns, st.pids_current))
                final_stats.append(st)
            except OSError:
                pass
        r.namespaces = [NamespaceRow(k, relay.container_ns.get(k), host_ns.get(k)) for k in host_ns]
    if helper:
        # The next cell of this kind on this network finds its namespaces, root filesystem and cgroup ready (the
        # pool's slot for them; the other kind's slot stays as it is): the pool's thread works out how from this run.
        then.append(functools.partial(
            pool.prefetch_later, (network, kind_of(spec.python_code is not None)),
            functools.partial(_next_recipe, spec, hp, L, holder.ours, network, hierarchy() if cg is not None else None,
                              ahead, relay.fell_back)))
    if relay.interrupted:
        raise ContainerInterrupted(r)


def _join_networks(r: ContainerRun, holder: Holder, again: bool = False) -> bool:
    """Put the holder's network namespace on the spec's networks, its ports published; True when it claimed the
    endpoint prepared ahead in it. again: a fresh holder in place of one that died, whose endpoints go first. Any
    error: LaunchError (a network's) or as raised, with the run on no network."""
    from ..network import NetworkError
    from . import networking

    spec = r.spec
    try:
        if again:
            networking.disconnect(r.id)
            r.notes = [n for n in r.notes if not n.startswith("network ")]
        # An endpoint attached ahead to a prepared holder is the container's from here on (not the holder's to
        # release when it goes).
        reserved, holder.endpoint = holder.endpoint, None
        claimed = networking.claim(spec, r.id, reserved) if reserved is not None else None
        ep, pubs = networking.connect(spec, r.id, holder.pid, endpoint=claimed, give_back=pool.give_back)
    except BaseException as e:
        networking.disconnect(r.id)
        if isinstance(e, NetworkError):
            raise LaunchError(e.errno or errno.EINVAL, f"--network {spec.network}: {e}", needs=NETWORKS) from None
        raise
    r.notes.append(f"network {ep.network}: {ep.address} on {ep.ifname}" +
                   "".join(f", {p.host_ip}:{p.host_port} -> {p.container_port}/{p.proto}" for p in pubs))
    return claimed is not None


def _next_recipe(spec: ContainerSpec, hp: HolderPlan, L: Launch, ours: bool, network: str | None,
                 h: Hierarchy | None, ahead: tuple[int, ...] | None, fell_back: bool) -> Recipe:
    """How the pool prepares for the next run like this one (made by the pool's thread: Pool.prefetch_later). `h`:
    the hierarchy of the run's cgroup (None: it had none), found by the run's thread (hierarchy() probes and
    registers what to remove at exit on first use: not from two threads)."""
    # A command's PID 1 is prepared too (parked in a cgroup of its own, past its mounts and pivot_root): its
    # launch is planned again for the next cgroup (the cgroup's directories are part of its mounts).
    # Not in a pod (its mounts name the pod's files); nor with a named volume or a bind mount: the host side may
    # be removed or replaced before the next cell, and planning the next launch must not create a volume the
    # user has just removed.
    # On a network used lately (a process that runs one container does not make an endpoint for nothing), the
    # next holder gets its endpoint attached ahead too (reserved: nobody's until a run claims it); a PID 1 is
    # parked for a run on a network only with it. A network is never made for it (pool._reserve).
    reserve = network if network is not None and pool.used_lately(network) and spec.pod is None else None
    park = None
    if not ours and L.parkable() and spec.pod is None \
            and not any(m.kind in ("volume", "bind") for m in spec.mounts) \
            and (network is None or reserve is not None):
        park = functools.partial(_park_launch, spec)
    # A Python cell's next holder gets the mounts of its root that need no PID 1 made ahead (holder.premount).
    premount = None
    if L.mode == "direct" and L.plan is not None and L.merged is not None and not ours:
        ops = ahead if ahead is not None else rootfs.ahead_ops(L.plan)
        # Its root pivoted into too, unless the plan binds host paths or PID 1 took a fallback (the host's /proc
        # bound, say): neither is found from inside that root.
        pivot = not fell_back and not L.binds_host_paths(ops)
        premount = (_ahead_root(L.merged), dataclasses.replace(L.plan, ops=tuple(L.plan.ops[i] for i in ops)),
                    L.merged if pivot else None)
    return Recipe(None if ours else hp, (h, _limits(spec)) if h is not None else None, park,
                  reserve if not ours else None, premount,
                  # (a kept plan takes the view of its cgroup worked out ahead; a plan made afresh, its own)
                  plan_cache.cgroup_made if L.mode == "direct" and plan_cache.eligible(spec) else None)


def _start_monitor(cg: Cgroup | None, spec: ContainerSpec, t0: float) -> Monitor | None:
    """The run's sampler, its first sample taken (armed once PID 1 is on its way)."""
    if cg is None:
        return None
    monitor = Monitor(cg, spec.interval, t0)
    try:
        monitor.start()
    except BaseException:
        monitor.stop()  # (registered with the sampler before its thread failed to start, say)
        raise
    return monitor


def _on_ready(on_start: StartFn, r: ContainerRun, relay: _Relay, cg: Cgroup | None) -> None:
    on_start(Running(r, relay, cg))


class _HeldInterrupts:
    """SIGINT (the notebook's stop button, Ctrl-C) held from the order to PID 1 until the relay's loop, which makes
    it a docker stop. One that came in between — the payload already running, the caller not yet in its loop
    (under load that is tens of milliseconds: a thread to start, a selector to fill) — escaped run() as a plain
    KeyboardInterrupt: the CLI died of SIGINT, the run's pipes stayed open. Only in the main thread (where Python
    handles signals) and over a Python-level handler; it is put back and called once for each SIGINT held."""

    def __init__(self) -> None:
        self.old: Any = None
        self.came = 0
        if threading.current_thread() is threading.main_thread():
            old = signal.getsignal(signal.SIGINT)
            if callable(old):
                self.old = old
                signal.signal(signal.SIGINT, self._hold)

    def _hold(self, _signum: int, _frame: Any) -> None:
        self.came += 1

    def release(self) -> tuple[Any, int]:
        """The handler put back, and how many SIGINTs came meanwhile (0 after the first call)."""
        old, self.old = self.old, None
        if old is None:
            return None, 0
        signal.signal(signal.SIGINT, old)
        came, self.came = self.came, 0
        return old, came


HOLDER_GRACE = 10.0  # seconds a killed container's holder has to report the layer diff (Relay.kill)
ENDPOINT_PREPARED = "network attached (its endpoint was prepared ahead)"  # the timeline's label for a claim
PREPARED_PID1 = "PID 1 was prepared ahead (cgroup, namespaces, filesystems)"  # its label for a parked PID 1


DIFF_READ = "layer diff read by the caller"  # the timeline's label when the caller read it (_read_diff)


def _read_diff(holder_pid: int, hp: HolderPlan, wanted: bool) -> list[DiffEntry]:
    """The layer diff of a direct run, read by the caller through the holder's root (its mount namespace, where
    the writable layer is: /proc/PID/root) as soon as PID 1 is done, instead of asking the holder for it and
    waiting for its answer: a wake-up of the holder and its walk, in a process that never ran that code, were
    most of a millisecond of every Python cell. The holder waits for the caller's word before it exits."""
    if not wanted or not hp.new_mount or not hp.writable or hp.lower is None or hp.scratch is None:
        return []
    at = f"/proc/{holder_pid}/root"
    upper = (hp.upper_dir or hp.scratch) + "/upper"
    return rootfs.layer_diff(at + upper, hp.lower, at + hp.scratch + "/mp",
                             split_top=hp.rootless and hp.lower == "/", top=at + hp.merged if hp.merged else None,
                             mountpoints=hp.mountpoints)


def _take_premounted(holder: Holder, L: Launch) -> tuple[tuple[int, ...] | None, int | None]:
    """A Python cell's PID 1 in a holder with mounts made ahead for its root (holder.premount) takes them when they
    are exactly what its plan asks for and skips those operations: it enters the mount namespace with the root
    pivoted into ahead, when there is one (the fd returned, for fork_pid1), else moves them in itself. Returns the
    plan's operations that may be made ahead (rootfs.ahead_ops), when computed, and that fd or None."""
    if L.plan is None or L.merged is None or not holder.premounted:
        return None, None
    ahead = L.ahead_ops if L.ahead_ops is not None else rootfs.ahead_ops(L.plan)
    if holder.premounted != tuple(L.plan.ops[i] for i in ahead):
        return ahead, None
    L.premounted = ahead
    # (Not for a plan that binds host paths, which are not in that namespace: PID 1 then takes a copy of the holder's.)
    root_ns = holder.take_root_ns() if not L.binds_host_paths(ahead) else None
    if root_ns is None:
        L.moves = (_ahead_root(L.merged), rootfs.ahead_tops(L.plan, ahead))
    else:
        L.root_ns = True
        L.pid1_unshare &= ~CLONE_NEWNS  # (that namespace is its own: no copy to take)
    return ahead, root_ns


def _ahead_root(merged: str) -> str:
    """Where a holder's mounts made ahead go: beside its root, in its scratch tmpfs."""
    return os.path.dirname(merged) + "/ahead"


def _waitpid(pid: int) -> int:
    try:
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return -1


def _end_holder(holder: Holder, kill: bool, reap_later: bool = False, close_later: bool = False) -> None:
    """Close our end of the holder (and kill it); reap it if it is our child. `reap_later`: in the background
    (a holder that reported the end exits on its own, but its exit tears down the container's mount namespace,
    overlay included: milliseconds the run need not wait for; cleanup.settle() waits). `close_later`: close it
    there too (a direct run's holder waits for that end of file, and wakes on it: not on the cell's path either;
    a nested run's has gone already, and a task for the clean-up thread would cost more than the close)."""
    if close_later:
        def end() -> None:
            # Shut down, not only closed: a fork of the caller made meanwhile (multiprocessing's workers, say) holds a
            # copy of our end, and the holder would wait for that copy's close too.
            with contextlib.suppress(OSError):
                holder.sock.shutdown(socket.SHUT_RDWR)
            holder.close()
            if holder.ours:
                _waitpid(holder.pid)
        cleanup.defer(end)
        return
    holder.close()
    if kill:
        try:
            os.kill(holder.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if holder.ours:
        pid = holder.pid
        if reap_later:
            cleanup.defer(lambda: _waitpid(pid))
        else:
            _waitpid(pid)


class _Relay:
    """Reads the container's stdout, stderr and status pipes until they close, from the calling thread;
    in direct mode also waits for PID 1 (the caller's own child) and tells the holder when it is gone."""

    STAGES = (("pid1", "PID 1 forked"), ("namespaces", "PID 1 in its namespaces and cgroup"),
              ("ready", "filesystems mounted, pivot_root, privileges dropped"))

    def __init__(self, r: ContainerRun, on_output: OutputFn | None, t0: float, holder: Holder) -> None:
        self.r = r
        self.t0 = t0
        self.on_output = on_output
        self.holder = holder
        self.pid1: int | None = None  # (nested: the holder reports it)
        self.pid1_ours = False  # direct mode: we forked it, we reap it (forked)
        self.direct = False
        self.container_ns: dict[str, int | None] = {}
        self.reported_exit = False  # PID 1 (a Python cell) said how it ended before exiting
        self.final = False  # the holder's last report came (the status pipe's end need not be waited for)
        self.on_ready: Callable[[], None] | None = None
        self.ready = False
        self.end = 0.0
        self.interrupted = False
        self.killed = False
        self.stop_deadline: float | None = None  # after the stop signal: SIGKILL at this time
        self.holder_deadline: float | None = None  # after a kill: the holder too, if it has not reported by then
        self.keep_layer = True  # a kill leaves the holder to report the layer's diff (not when none is wanted)
        self.holder_done = False  # it has reported all it will: never signalled again (its pid may be another's)
        self.setup_error: dict[str, Any] | None = None
        self.fell_back = False  # PID 1 bound a host path where a mount was refused (its notes say which)
        self.status_buf = bytearray()
        self.output = OutputRelay(on_output)
        self.console: socket.socket | None = None  # a Terminal's master comes on it (before "ready")
        self.on_master: Callable[[int], None] | None = None
        self.held: _HeldInterrupts | None = None  # the interrupts that came before the loop
        # Direct: the caller reads the layer diff itself once PID 1 is done (_read_diff), and does not wait for the
        # holder's last report; None: the holder reads it.
        self.read_diff: Callable[[], list[DiffEntry]] | None = None
        self.sel: selectors.BaseSelector | None = None  # (listen)

    def listen(self, out_r: int, err_r: int, st_r: int, in_w: int) -> None:
        """The loop's selector, with the run's pipes in it: made before PID 1 exists (see _execute)."""
        sel = selectors.DefaultSelector()
        try:
            for fd in (out_r, err_r, st_r):
                sel.register(fd, selectors.EVENT_READ)
            if in_w >= 0:
                os.set_blocking(in_w, False)
                sel.register(in_w, selectors.EVENT_WRITE)
        except BaseException:
            sel.close()
            raise
        self.sel = sel

    def unlisten(self) -> None:
        if self.sel is not None:
            self.sel.close()
            self.sel = None

    def forked(self, pid1: int, pidfd: int) -> None:
        """A Python cell's PID 1, our own child: waited for (its pidfd) and reaped by the loop."""
        self.pid1 = pid1
        self.pid1_ours = self.direct = True
        assert self.sel is not None
        self.sel.register(pidfd, selectors.EVENT_READ)

    def take_console(self, wait: bool = False) -> None:
        """Receive the terminal's master (PID 1 sends it before it says "ready": `wait` blocks for it then)
        and hand it to on_master; the socket is done either way (None if PID 1 died first)."""
        if self.console is None:
            return
        sock, self.console = self.console, None
        try:
            sock.setblocking(wait)
            master = pty.recv_master(sock)
        except OSError:
            master = None
        finally:
            sock.close()
        if master is not None and self.on_master is not None:
            self.on_master(master)
        elif master is not None:
            os.close(master)

    def _pid1_now(self) -> int | None:
        """PID 1's pid; for a run given straight to a PID 1 parked in the holder (run._give_run), also before the
        holder has said it (an interrupt as the command starts): the holder's only child."""
        if self.pid1 is None and self.holder.run_given:
            kids = proc.children(self.holder.pid)
            if len(kids) == 1:
                self.pid1 = kids[0]
        return self.pid1

    def _holder_reported(self) -> None:
        """The holder has said all it will: no grace to wait out, and never signalled again (its pid may be another
        process's soon)."""
        self.holder_deadline, self.holder_done = None, True

    def kill(self, cg: Cgroup | None, holder: bool = False) -> None:
        """End the container now: every process of its cgroup, and PID 1 (which takes its PID namespace with it).
        The holder, which keeps the writable layer, is left HOLDER_GRACE seconds to report its diff (as `docker diff`
        shows a killed container's) and go; then it is killed too — at once with `holder`, when no diff is wanted
        (a build step's layer is not packed for nothing), and before PID 1 is known (the holder would fork it)."""
        if not self.killed:
            self.killed = True
            self.holder_deadline = time.monotonic() + HOLDER_GRACE
        if cg is not None:
            try:
                cg.kill_all()
            except OSError:
                pass
        pid1 = self._pid1_now()
        now = holder or pid1 is None or not self.keep_layer
        if now:
            self.holder_deadline = None
        for p in (pid1, self.holder.pid if now and not self.holder_done else None):
            if p:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def _interrupt(self, spec: ContainerSpec, cg: Cgroup | None) -> None:
        """An interrupt (the notebook's stop button, Ctrl-C), as `docker stop`: the first sends PID 1 the stop
        signal and gives it spec.stop_timeout seconds to exit; a second (or no grace period) kills at once."""
        now = time.monotonic()
        self.interrupted = self.r.interrupted = True
        if self.killed:  # (the layer's diff not reported yet: it is not waited for any more)
            self.kill(cg, holder=True)
            return
        if self.stop_deadline is None and spec.stop_timeout > 0 and self._pid1_now():
            assert self.pid1 is not None
            self.r.stop_signal = spec.stop_signal
            self.r.timeline.append((f"interrupted: {signal.Signals(spec.stop_signal).name} sent to PID 1",
                                    now - self.t0))
            self.stop_deadline = now + spec.stop_timeout
            try:
                os.kill(self.pid1, spec.stop_signal)
            except ProcessLookupError:
                pass
            return
        self.r.stop_killed = "interrupt" if self.stop_deadline is not None else "at once"
        self.r.timeline.append(("interrupted: killed", now - self.t0))
        self.kill(cg)

    def reap(self, cg: Cgroup | None) -> None:
        """Reap PID 1 if it is our child (direct mode). When it already said how it ended, the kernel may
        still be tearing down its memory: reap it in the background. Otherwise kill it first."""
        if not self.pid1_ours or self.pid1 is None:
            return
        self.pid1_ours = False
        pid = self.pid1
        if self.reported_exit:
            cleanup.defer(lambda: _waitpid(pid))
            return
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
            if not done:
                self.kill(cg)
                done, status = os.waitpid(pid, 0)
            self._exit_status(status)
        except ChildProcessError:
            pass

    def _exit_status(self, status: int) -> None:
        r = self.r
        if r.exit_code is not None or status < 0:
            return
        if os.WIFSIGNALED(status):
            r.signal = os.WTERMSIG(status)
            r.exit_code = 128 + r.signal
        else:
            r.exit_code = os.WEXITSTATUS(status)

    def _pid1_exited(self, status: int | None) -> None:
        """PID 1 of a direct run is done: it reported its exit code, or the kernel reports its death.
        Either way the holder can now read the layer diff."""
        if status is not None:
            self._exit_status(status)
        self.end = time.monotonic()
        self.r.timeline.append(("payload exited", self.end - self.t0))
        read = False
        if self.read_diff is not None:
            try:
                self.r.diff = self.read_diff()
                read = True
                self.r.timeline.append((DIFF_READ, time.monotonic() - self.t0))
            except OSError:
                pass  # the holder reads it, as for a command
        if not read:
            try:
                send_ctl(self.holder.sock, {"done": True})  # the holder computes the diff (or the export) and exits
            except OSError:
                pass
        # Otherwise the holder is let go with its socket (_end_holder): its last report would only say that it is
        # done, and the run need not wait for it.
        self.final = read
        if read:
            self._holder_reported()

    def _handle(self, msg: dict[str, Any]) -> None:
        r = self.r
        for key, label in self.STAGES:
            if key in msg and not (key == "pid1" and msg.get("prepared")):
                r.timeline.append((label, msg["t"] - self.t0))
        if "pid1" in msg:
            self.pid1 = msg["pid1"]
            if self.killed and not self.holder_done and self.pid1 in proc.children(self.holder.pid):
                with contextlib.suppress(OSError):  # (killed before the holder said who PID 1 is)
                    os.kill(self.pid1, signal.SIGKILL)
            if msg.get("prepared"):  # (forked long ago, given its run by the caller: the holder's word comes after)
                r.timeline.append((PREPARED_PID1, msg["t"] - self.t0))
        if "namespaces" in msg:
            self.container_ns = {**self.container_ns, **msg["namespaces"]}
        if msg.get("notes"):
            r.notes.extend(msg["notes"])
            self.fell_back = True
        if msg.get("ready"):
            self.ready = True
            self.take_console(wait=True)  # its master is in the socket already: the caller wires it up first
        # Once PID 1 is set up and its host pid known (the holder's report may come second).
        if self.ready and self.pid1 and self.on_ready is not None:
            on_ready, self.on_ready = self.on_ready, None
            on_ready()
        if "setup_error" in msg:
            self.setup_error = msg["setup_error"]
        if "exec_error" in msg:
            r.error = msg["exec_error"]["message"]
            r.error_name = "ExecError"
        if "error" in msg:
            r.error = msg["error"]
            r.error_name = msg.get("error_name")
        if "exit_code" in msg and self.pid1_ours and not self.reported_exit:
            # A Python cell's PID 1 says how it ends before exiting: no need to wait for the kernel
            # to tear down its copy of the caller's memory.
            self.reported_exit = True
            r.exit_code = msg["exit_code"]
            self._pid1_exited(None)
        if "outputs" in msg:
            r.outputs = msg["outputs"]
            for m in msg.get("missing_outputs", []):
                r.notes.append(f"output {m} was not sent back")
        if "exited" in msg:
            self.final = True  # the holder's last report: nothing more comes on the status pipe
            if msg["exit_status"] is not None:
                self.end = msg["exited"]
                r.timeline.append(("payload exited", msg["exited"] - self.t0))
                self._exit_status(msg["exit_status"])
            r.timeline.append(("layer diff computed, holder done", msg["t"] - self.t0))
            if msg.get("diff"):
                r.diff = list(msg["diff"])

    def loop(self, spec: ContainerSpec, out_r: int, err_r: int, st_r: int, in_w: int, pidfd: int | None,
             cg: Cgroup | None) -> None:
        if self.sel is None:
            self.listen(out_r, err_r, st_r, in_w)
        sel = self.sel
        assert sel is not None
        if pidfd is not None and pidfd not in sel.get_map():
            sel.register(pidfd, selectors.EVENT_READ)
        streams = {out_r: "stdout", err_r: "stderr"}
        pending = memoryview(spec.stdin_data or b"")
        deadline = self.t0 + spec.timeout if spec.timeout else None
        drain_until: float | None = None
        try:
            # An interrupt outside the select (while an event is handled, under load) is a docker stop too,
            # not a KeyboardInterrupt escaping run() with PID 1 still running
            while True:
                try:
                    if self.held is not None:  # what came before the loop, now a docker stop like any other
                        handler, came = self.held.release()
                        self.held = None
                        for _ in range(came):
                            try:
                                handler(signal.SIGINT, None)
                            except KeyboardInterrupt:
                                self._interrupt(spec, cg)
                    while sel.get_map():
                        timeout = None
                        now = time.monotonic()
                        if deadline is not None and not self.killed:
                            timeout = max(0.0, deadline - now)
                        if drain_until is not None:
                            left = max(0.0, drain_until - now)
                            timeout = left if timeout is None else min(timeout, left)
                        if self.output.holding:  # a partial line: show it once the pipes go quiet
                            timeout = QUIET if timeout is None else min(timeout, QUIET)
                        if self.stop_deadline is not None and not self.killed:
                            left = max(0.0, self.stop_deadline - now)
                            timeout = left if timeout is None else min(timeout, left)
                        if self.holder_deadline is not None:
                            left = max(0.0, self.holder_deadline - now)
                            timeout = left if timeout is None else min(timeout, left)
                        elif timeout is None and not self.killed:  # (a kill from another thread: seen within this)
                            timeout = HOLDER_GRACE
                        try:
                            events = sel.select(timeout)
                        except KeyboardInterrupt:
                            self._interrupt(spec, cg)
                            continue
                        if not events:
                            self.output.flush()
                            now = time.monotonic()
                            if deadline is not None and now >= deadline and not self.killed:
                                self.r.timed_out = True
                                self.kill(cg)
                            if self.stop_deadline is not None and now >= self.stop_deadline and not self.killed:
                                self.r.stop_killed = "timeout"
                                self.kill(cg)
                            if self.holder_deadline is not None and now >= self.holder_deadline:
                                self.holder_deadline = None
                                self.kill(cg, holder=True)
                            if drain_until is not None and now >= drain_until:
                                # The holder is done but something still holds stdout (a daemonised grandchild in
                                # a shared PID namespace): end it.
                                self.kill(cg)
                                break
                            continue
                        for key, _ in events:
                            fd = key.fd
                            if fd == pidfd:
                                # the status report in this same batch may have said the exit code already
                                if pidfd in sel.get_map():
                                    sel.unregister(pidfd)
                                if not self.reported_exit and self.pid1_ours:
                                    assert self.pid1 is not None
                                    self.pid1_ours = False
                                    self._pid1_exited(_waitpid(self.pid1))
                                    if self.final and st_r in sel.get_map():
                                        sel.unregister(st_r)  # (as below: the holder's report is not waited for)
                                        drain_until = time.monotonic() + 1.0
                                continue
                            if fd == in_w:
                                in_w, pending = feed(sel, in_w, pending)
                                continue
                            try:
                                data = os.read(fd, 65536)
                            except OSError:
                                data = b""
                            if fd == st_r:
                                if not data:
                                    sel.unregister(st_r)
                                    drain_until = time.monotonic() + 1.0
                                    self._holder_reported()
                                    continue
                                self.status_buf += data
                                for msg in decode_frames(self.status_buf):
                                    self._handle(msg)
                                if self.final:
                                    # Its end comes when the holder's exit closes it: the holder is done
                                    # already, and that exit is milliseconds the run need not wait for.
                                    sel.unregister(st_r)
                                    drain_until = time.monotonic() + 1.0
                                    self._holder_reported()
                                if self.reported_exit and pidfd is not None and pidfd in sel.get_map():
                                    sel.unregister(pidfd)
                                continue
                            self.output.feed(streams[fd], data)
                            if not data:
                                sel.unregister(fd)
                    break
                except KeyboardInterrupt:
                    self._interrupt(spec, cg)
        finally:
            self.unlisten()
            if in_w >= 0:
                try:
                    os.close(in_w)
                except OSError:
                    pass
        r = self.r
        self.output.flush()
        r.stdout = self.output.text("stdout")
        r.stderr = self.output.text("stderr")
        if self.setup_error and not self.killed:
            raise _launch_error(self.setup_error)
        if r.exit_code is None and self.killed:
            r.signal = signal.SIGKILL
            r.exit_code = 128 + signal.SIGKILL
        elif r.exit_code is None and r.error is None:
            # Said, not left as a run without an exit code or a reason.
            if self.direct:  # our own child, whose status another part of this process took (SIGCHLD ignored?)
                r.error = ("the container ended without an exit status: PID 1 was reaped by someone else in this "
                           "process (is SIGCHLD ignored?)")
                r.error_name = STATUS_LOST
            else:  # the holder, which reports a command's exit, went without a word (killed from outside)
                r.error = ("the container ended without an exit status: its namespace holder was killed before it "
                           "could report PID 1's exit")
                r.error_name = HOLDER_LOST
        if not self.end:
            self.end = time.monotonic()
