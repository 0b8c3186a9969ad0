"""Pods, as in Kubernetes and podman: containers that share one network, IPC and UTS namespace.

A pod is an *infra* holder (holder.py, never given a run order) that makes a user namespace and, owned by
it, a network namespace (lo up; on a bridge or user network when the pod was created with one: one
address, published ports), an IPC and a UTS namespace (host name = the pod's name unless given). Each
container run with `--pod NAME` has its holder join those four namespaces (setns on /proc/<infra>/ns/*)
instead of making them, and keeps its own mount, PID, cgroup and time namespaces. So a detached server in
the pod listening on 127.0.0.1 is reached by another container of the pod over localhost, a SysV or POSIX
message queue made by one is seen by the others, and all see the same host name. The user namespace is
the pod's too (as in podman's pods): namespaces it owns are fully usable by each container's root (sysfs
and mqueue mounts, binding low ports), and the id maps are the pod's.

The infra lives as long as the control socket this process keeps (its parent is the launch helper,
which goes with the kernel); `remove` closes it. A record per pod in the run directory (owner, infra pid
and start time, members) lets `pycontainer run --pod NAME` join a notebook's pod, `ls` list pods of every
process, and `prune` remove what a killed kernel left. Pods go at exit, and by prune after a kill.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..errors import USERNS
from ..linux import proc
from ..linux.files import FileLock
from ..linux.namespaces import NAMESPACE_KINDS, flags_for, ns_inode
from ..paths import run_dir
from ..runtime import cleanup
from ..runtime.holder import HolderPlan, SetupFailed, prepare_holder
from ..runtime.launch import Launch
from ..runtime.run import LaunchError, Running, StartFn, id_maps, set_pod_resolver
from ..runtime.spec import HOSTNAME_RE, POD_SHARED, VOLUME_NAME_RE, ContainerSpec, Mount, UsernsMode


class PodError(LaunchError):
    """A pod could not be made, found or removed. str() is one line."""


@dataclass(frozen=True)
class PodMember:
    id: str
    name: str | None
    pid1: int
    pid1_start: str  # owner token of PID 1 (`pid:starttime`): a recycled pid is not taken for it
    owner: str  # token of the process that runs it


@dataclass
class Pod:
    name: str
    hostname: str
    network: str  # none, bridge or a user network's name
    publish: list[tuple[str, int, int, str]]
    created: float
    owner: str  # `pid:starttime` of the process that made it (and removes it at exit)
    infra_pid: int
    infra: str  # `pid:starttime` of the infra holder
    net_inode: int
    namespaces: dict[str, int | None]  # the infra's, by kind
    address: str | None = None  # on its network
    share_pid: bool = False  # one PID namespace for all its containers (Kubernetes' shareProcessNamespace)
    members: list[PodMember] = field(default_factory=list)
    userns: str = "private"  # private (as root: root is host root) or remap (root is an unprivileged host uid)
    id_maps: tuple[str, str, bool] | None = None  # uid_map, gid_map, setgroups denied: its user namespace's

    @property
    def maps(self) -> tuple[str, str, bool] | None:
        """The id maps of its user namespace, which its containers join (they plan with these)."""
        return self.id_maps

    @property
    def id(self) -> str:
        """The pod's id on its network (endpoint, hosts file, veth names)."""
        return f"pod-{self.name}"

    @property
    def running(self) -> list[PodMember]:
        return [m for m in self.members if proc.token_alive(m.pid1_start)]

    @property
    def status(self) -> str:
        return "running" if self.running else "created"

    def file_mounts(self) -> tuple[Mount, ...]:
        """On a network: the pod's hosts file (its name and the network's other members) and an empty
        resolv.conf, bound into each of its containers."""
        if self.network == "none":
            return ()
        from ..network.hosts import hosts_path
        return (Mount(hosts_path(self.id), "/etc/hosts", read_only=True),
                Mount(os.path.join(run_dir(), "resolv.conf"), "/etc/resolv.conf", read_only=True))

    @property
    def shared(self) -> list[str]:
        """The namespace kinds its containers share."""
        return [*POD_SHARED, *(["pid"] if self.share_pid else [])]

    def admit(self, run_id: str, spec: ContainerSpec, hp: HolderPlan, L: Launch,
              on_start: StartFn | None) -> tuple[HolderPlan, StartFn]:
        """A member's holder plan (join the infra's namespaces) and an on_start that records the member
        once its PID 1 runs (so `ls`, `inspect` and `rm` see it)."""
        L.env["HOSTNAME"] = self.hostname
        if self.share_pid:
            if "pid" in spec.share:
                raise PodError(errno.EINVAL, f"--share pid conflicts with --pod {self.name}: the pod's containers "
                               "share the pod's PID namespace")
            # Forked by the holder, which joined the pod's PID namespace (a Python cell's PID 1 is otherwise
            # forked by the caller straight into a PID namespace of its own).
            L.mode = "nested"

        def started(running: Running) -> None:
            if running.pid1:
                member = PodMember(run_id, spec.name, running.pid1, proc.token(running.pid1), proc.token())
                _add_member(self.name, member)
            if on_start is not None:
                on_start(running)

        return replace(hp, join=(self.infra_pid, self.net_inode), join_pid=self.share_pid), started

    def release(self, run_id: str) -> None:
        with _locked():
            p = _load(self.name)
            if p is not None and any(m.id == run_id for m in p.members):
                p.members = [m for m in p.members if m.id != run_id]
                _save(p)


# -- state ---------------------------------------------------------------------------------------------

_infras: dict[str, tuple[Any, bool]] = {}  # name -> (control socket, forked by us) of the pods we made


def pods_dir() -> str:
    return os.path.join(run_dir(), "pods")


# One writer of the records at a time, across threads and processes.
_records_lock = FileLock(lambda: os.path.join(pods_dir(), ".lock"), make_dir=0o755)


def _locked() -> FileLock:
    return _records_lock


def _path(name: str) -> str:
    return os.path.join(pods_dir(), f"{name}.json")


def _load(name: str) -> Pod | None:
    try:
        with open(_path(name)) as f:
            d = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None
    d["members"] = [PodMember(**m) for m in d.get("members", [])]
    d["publish"] = [tuple(p) for p in d.get("publish", [])]
    if d.get("id_maps") is not None:
        d["id_maps"] = tuple(d["id_maps"])
    return Pod(**d)


def _save(p: Pod) -> None:
    # Overwritten in place, then cut to length: ext4 flushes a file renamed over another or truncated to
    # zero and rewritten (auto_da_alloc), a millisecond or more paid twice per container. Every reader
    # holds the lock; a record cut short by a crash reads as none (prune removes it).
    data = json.dumps(asdict(p)).encode()
    fd = os.open(_path(p.name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def _usable(p: Pod) -> bool:
    """The pod's owner and infra are the processes the record names, and the infra still holds its
    network namespace."""
    return proc.token_alive(p.owner) and proc.token_alive(p.infra) and ns_inode(p.infra_pid, "net") == p.net_inode


# -- the pod's life ------------------------------------------------------------------------------------

def check_name(name: str) -> str:
    if not VOLUME_NAME_RE.match(name or ""):
        raise PodError(errno.EINVAL, f"invalid pod name {name!r}: letters, digits, '_', '.', '-'")
    return name


def create(name: str, *, network: str | None = None, publish: tuple[tuple[str, int, int, str], ...] = (),
           hostname: str | None = None, share_pid: bool = False, helper: bool = True,
           aliases: tuple[str, ...] = (), userns: UsernsMode = "private") -> Pod:
    """Make pod `name`: its infra holder (user, network, IPC, UTS namespaces; lo up; the host name), and
    with `network` (bridge or a user network) one address and the published ports; with `share_pid` a PID
    namespace too, whose PID 1 is a small init of the infra's (then a container's payload is not PID 1,
    and each sees the others' processes); `aliases` are more names for it on its network (a Kubernetes
    Service's name, when kube play runs the pod); `userns` "remap" maps the pod's root to an unprivileged
    range of host ids (`--userns remap`, Kubernetes' hostUsers: false) for all its containers. On any error
    nothing is left behind."""
    check_name(name)
    network = network or "none"
    hostname = hostname or name
    if not HOSTNAME_RE.match(hostname) or len(hostname) > 64:
        raise PodError(errno.EINVAL, f"invalid --hostname {hostname!r}: letters, digits, '-' and '.', "
                       "at most 64 characters")
    if network == "host" or (network != "none" and not VOLUME_NAME_RE.match(network)):
        raise PodError(errno.EINVAL, f"invalid pod --network {network!r}: none (only lo), bridge or a network's "
                       "name (a pod has a network namespace of its own)")
    if userns not in ("private", "remap"):
        raise PodError(errno.EINVAL, f"invalid pod --userns {userns!r}: private or remap")
    if userns == "remap" and os.geteuid() != 0:
        raise PodError(errno.EPERM, "a pod with --userns remap needs root (it maps a range of host ids); without "
                       "root your own user is the pod's root", needs=USERNS)
    if publish and network == "none":
        raise PodError(errno.EINVAL, "-p/--publish needs a network for the pod (--network bridge or NAME): "
                       "with none there is nothing to publish from")
    with _locked():
        old = _load(name)
        if old is not None:
            if _usable(old):
                raise PodError(errno.EEXIST, f"pod {name!r} already exists: use it (--pod {name}) or remove it "
                               f"first (%container pod rm {name})")
            _discard(old)
        maps = id_maps(ContainerSpec(command=("pod",), userns=userns))
        plan = HolderPlan(new_mount=False, new_user=True,
                          flags_rest=flags_for(["net", "ipc", "uts", *(["pid"] if share_pid else [])]),
                          scratch=None, lower=None, mountpoints=(), writable=True, time_offsets=(),
                          maps=maps, rootless=os.geteuid() != 0,
                          hostname=hostname, loopback=True, pid_init=share_pid)
        pid, sock, ours = _start_infra(plan, helper)
        try:
            p = Pod(name=name, hostname=hostname, network=network, publish=list(publish), created=time.time(),
                    owner=proc.token(), infra_pid=pid, infra=proc.token(pid), net_inode=ns_inode(pid, "net") or 0,
                    namespaces={k: ns_inode(pid, k) for k in NAMESPACE_KINDS}, share_pid=share_pid, userns=userns,
                    id_maps=maps)
            if share_pid:  # the infra itself is outside it: the one its children (the init) are in
                p.namespaces["pid"] = os.stat(f"/proc/{pid}/ns/pid_for_children").st_ino
            if network != "none":
                from ..network import NetworkError
                from ..runtime import networking
                stand_in = ContainerSpec(command=("pod",), network=network, publish=tuple(publish), name=name,
                                         network_aliases=tuple(a for a in aliases if a != name))
                try:
                    networking.file_mounts(stand_in, p.id)  # the resolv.conf, and a hosts file connect fills
                    ep, _ = networking.connect(stand_in, p.id, pid)
                except NetworkError as e:
                    networking.disconnect(p.id)
                    raise PodError(e.errno or errno.EINVAL, f"pod {name} --network {network}: {e}") from None
                p.address = ep.address
            _save(p)
        except BaseException:
            _end_infra(pid, sock, ours)
            raise
        _infras[name] = (sock, ours)
        _register_exit()
        return p


def _start_infra(plan: HolderPlan, helper: bool) -> tuple[int, Any, bool]:
    """The infra holder, forked by the launch helper (it goes with the kernel) or, without one, by us."""
    try:
        if helper:
            from ..runtime.zygote import HelperUnavailable, zygote
            try:
                pid, sock = zygote().prepare(plan)
                return pid, sock, False
            except HelperUnavailable:
                pass
        pid, sock = prepare_holder(plan)
        return pid, sock, True
    except SetupFailed as e:
        raise PodError(e.info.get("errno") or errno.EIO,
                       f"the pod's namespaces could not be made while {e.info.get('stage')}: "
                       f"{e.info.get('strerror') or e.info.get('message')}") from None


def _end_infra(pid: int, sock: Any, ours: bool) -> None:
    """Close its control socket (it exits at once) and wait until it is gone."""
    if sock is not None:
        sock.close()
    if ours:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        return
    _wait_gone(proc.token(pid), 5.0)


def _wait_gone(token: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while proc.token_alive(token):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def get(name: str) -> Pod:
    """The pod named `name` (of any process), or PodError ENOENT."""
    with _locked():
        p = _load(name)
        if p is None or not _usable(p):
            raise PodError(errno.ENOENT, f"no such pod: {name} (see %container pod ls; %container pod create "
                           f"{name} makes one)")
        return p


def ensure(name: str, helper: bool = True) -> Pod:
    """The pod `name`, made now (with only lo, as `%container pod create NAME`) if there is none."""
    with _locked():
        p = _load(name)
        if p is not None and _usable(p):
            return p
        return create(check_name(name), helper=helper)


def _record_names() -> list[str]:
    """The pods with a record on this host (live or not), by name."""
    try:
        return sorted(f[:-5] for f in os.listdir(pods_dir()) if f.endswith(".json"))
    except FileNotFoundError:
        return []


def list_pods() -> list[Pod]:
    """Every live pod on this host (stale records are prune's)."""
    out = []
    with _locked():
        for n in _record_names():
            p = _load(n)
            if p is not None and _usable(p):
                out.append(p)
    return out


def _add_member(name: str, m: PodMember) -> None:
    with _locked():
        p = _load(name)
        if p is not None:
            p.members = [x for x in p.members if proc.token_alive(x.pid1_start) and x.id != m.id] + [m]
            _save(p)


def remove(name: str, force: bool = False, timeout: float = 10.0) -> Pod:
    """`podman pod rm`: refuse while containers run (unless `force`, which kills them first), then end the
    infra (its namespaces go with the last process in them), take it off its network, drop the record."""
    p = get(name)
    running = p.running
    if running and not force:
        labels = ", ".join(m.name or m.id[:12] for m in running)
        raise PodError(errno.EBUSY, f"pod {name} has {len(running)} running container(s) ({labels}): stop them "
                       f"first, or use -f to stop them")
    if running:
        _stop_members(running, timeout)
    with _locked():
        p = _load(name) or p
        _discard(p)
    return p


def _stop_members(members: list[PodMember], timeout: float) -> None:
    from .containers import containers

    ours = {c.id: c for c in containers.list() if c.running}
    for m in members:
        c = ours.get(m.id)
        if c is not None:
            c.kill()
        elif proc.token_alive(m.pid1_start):
            with contextlib.suppress(ProcessLookupError):
                os.kill(m.pid1, signal.SIGKILL)  # PID 1 takes its PID namespace, the whole container, along
    for m in members:
        c = ours.get(m.id)
        if c is not None:
            with contextlib.suppress(BaseException):
                c.wait(timeout=timeout)
        else:
            _wait_gone(m.pid1_start, timeout)


def _discard(p: Pod) -> None:
    """End the infra and remove what the pod made on the host (called with the lock held)."""
    sock, ours = _infras.pop(p.name, (None, False))
    if sock is not None:
        _end_infra(p.infra_pid, sock, ours)
    elif proc.token_alive(p.infra):
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.infra_pid, signal.SIGKILL)  # another process's pod (or a killed kernel's)
        _wait_gone(p.infra, 5.0)
    if p.network != "none":
        from ..runtime import networking
        with contextlib.suppress(Exception):
            networking.disconnect(p.id)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_path(p.name))
    # A holder prepared ahead of time for the next identical cell may have joined this pod's namespaces.
    from ..runtime.pool import pool
    pool.drain()


def prune() -> list[str]:
    """Remove pods whose owner process is gone (a killed kernel) or whose infra died."""
    removed = []
    with _locked():
        for n in _record_names():
            p = _load(n)
            if p is None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(_path(n))
                removed.append(f"pod record {n}")
            elif not _usable(p):
                _discard(p)
                removed.append(f"pod {n}")
    return removed


def _register_exit() -> None:
    cleanup.at_exit(remove_own, cleanup.WORKLOADS)


def remove_own() -> None:
    """At exit: the pods this process made go, with their containers."""
    for name in list(_infras):
        with contextlib.suppress(PodError):
            remove(name, force=True, timeout=5.0)


# -- what a pod looks like ----------------------------------------------------------------------------

def inspect(name: str) -> dict[str, Any]:
    """The pod's settings, its infra's namespaces and its running containers with theirs."""
    p = get(name)
    members = []
    for m in p.running:
        members.append({"name": m.name, "id": m.id, "pid": m.pid1,
                        "namespaces": {k: ns_inode(m.pid1, k) for k in NAMESPACE_KINDS}})
    return {"name": p.name, "hostname": p.hostname, "network": p.network, "address": p.address, "userns": p.userns,
            "publish": [f"{ip}:{hp}->{cp}/{proto}" for ip, hp, cp, proto in p.publish],
            "created": p.created, "status": p.status, "infra_pid": p.infra_pid, "owner_pid": int(p.owner.split(":")[0]),
            "shared": p.shared, "namespaces": dict(p.namespaces), "containers": members}


def namespace_table(name: str) -> tuple[list[str], dict[str, dict[str, int | None]]]:
    """(columns, rows): one row per namespace kind; columns `infra` and each running container's name;
    values are namespace inodes (compare them: equal inode, same namespace)."""
    info = inspect(name)
    cols = ["infra"]
    rows: dict[str, dict[str, int | None]] = {k: {"infra": info["namespaces"].get(k)} for k in NAMESPACE_KINDS}
    for c in info["containers"]:
        label = c["name"] or c["id"][:12]
        cols.append(label)
        for k in NAMESPACE_KINDS:
            rows[k][label] = c["namespaces"].get(k)
    return cols, rows


__all__ = ["Pod", "PodError", "PodMember", "check_name", "create", "ensure", "get", "inspect",
           "list_pods", "namespace_table", "prune", "remove", "remove_own"]


set_pod_resolver(ensure)  # runtime.run finds `--pod NAME` through this (it never imports workloads)
