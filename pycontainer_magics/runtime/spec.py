"""ContainerSpec: everything one container run needs, as plain frozen data.

The magics and the CLI parse user input into a ContainerSpec; `runtime.run` interprets it. Nothing
here touches the kernel, so a spec can be built, validated, shown and exported without root.
"""

from __future__ import annotations

import keyword
import math
import os
import re
import signal
from dataclasses import dataclass, replace
from typing import Literal

from ..errors import InvalidInput
from ..linux.caps import DEFAULT_CAPS
from ..linux.namespaces import NAMESPACE_KINDS
from ..linux.rlimits import NAMES as RLIMIT_NAMES


class SpecError(InvalidInput):
    """A ContainerSpec field is invalid: one line saying what was wrong and what would be right."""


DEFAULT_STOP_TIMEOUT = 5.0  # seconds between the stop signal and SIGKILL (docker stop: 10)
TIME_CLOCKS = ("monotonic", "boottime")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME_RE = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
VOLUME_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Mount:
    """A bind mount (`-v /host:/ctr[:ro]`) or a named volume (`-v NAME:/ctr`)."""

    source: str  # absolute host path, or a volume name when kind == "volume"
    target: str  # absolute path inside the container
    read_only: bool = False
    kind: Literal["bind", "volume"] = "bind"


@dataclass(frozen=True)
class Tmpfs:
    """`--tmpfs /run:size=64m`."""

    target: str
    size: int | None = None  # bytes
    mode: int = 0o1777


@dataclass(frozen=True)
class IdMap:
    """One line of /proc/PID/uid_map or gid_map: container id, host id, count."""

    inside: int
    outside: int
    count: int


UsernsMode = Literal["private", "remap", "custom"]


@dataclass(frozen=True)
class ContainerSpec:
    """What to run and how to isolate it. Sizes in bytes, times in seconds."""

    # What runs: a Python cell (code run in a fork of the caller, seeing its variables) or a command.
    python_code: str | None = None
    command: tuple[str, ...] = ()
    # Replaces the image's ENTRYPOINT (and so its CMD, as Docker's --entrypoint does); None: the image's.
    entrypoint: tuple[str, ...] | None = None
    stdin_data: bytes | None = None  # fed to the command's stdin (a shell cell's body, like %%script)
    python_globals_name: str | None = None  # informational: where the globals came from

    # Root filesystem: "host" (the host's / as a read-only lower layer) or a directory.
    image: str = "host"
    rootfs: str | None = None
    read_only: bool = False
    # A directory that keeps the writable layer (its upper and work directories) across runs, as a Docker
    # container's survives stop and start; None: a tmpfs that vanishes with the container.
    writable_layer: str | None = None
    mounts: tuple[Mount, ...] = ()
    tmpfs: tuple[Tmpfs, ...] = ()
    workdir: str | None = None  # None: the image's WORKDIR, else /
    user: str | None = None  # "uid[:gid]" or a name from the image's /etc/passwd (Docker's -u)
    env: tuple[tuple[str, str], ...] = ()
    hostname: str | None = None

    # Namespaces: all eight are new unless named here.
    share: frozenset[str] = frozenset()
    userns: UsernsMode = "private"  # private: identity map as root, your user as root without root
    uid_map: tuple[IdMap, ...] = ()
    gid_map: tuple[IdMap, ...] = ()
    time_offsets: tuple[tuple[str, int], ...] = ()  # (clock, seconds)
    # Network: "none" (only lo; the default here, as attaching costs tens of ms), "host" (see share),
    # "bridge" (the default network of Docker: addresses, no names) or a user network's name.
    network: str = "none"
    publish: tuple[tuple[str, int, int, str], ...] = ()  # (host_ip, host_port, container_port, proto)
    expose: tuple[str, ...] = ()  # EXPOSE-style metadata ("80/tcp"): documents a port, publishes nothing
    # A pod (workloads/pods.py): the container joins the pod's user, network, IPC and UTS namespaces.
    pod: str | None = None
    network_aliases: tuple[str, ...] = ()  # more names on the network (compose: the service's name)
    extra_networks: tuple[str, ...] = ()  # user networks joined too, before PID 1 runs (same aliases)

    # cgroup limits (None: not limited)
    memory: int | None = None
    memory_swap: int | None = None  # memory + swap, as Docker's --memory-swap; -1 = unlimited swap
    cpus: float | None = None
    cpu_shares: int | None = None
    cpuset_cpus: str | None = None
    pids_limit: int | None = None
    # The writable layer's size (bytes; Docker's --storage-opt size=); None: tmpfs's own, half the RAM
    storage_size: int | None = None
    # Which of the fields above hold the lab's defaults (runtime/config.py) rather than a value asked for:
    # shown as such, and dropped, not refused, where no cgroup can be had (rootless without delegation)
    default_bounds: tuple[str, ...] = ()

    # Security
    cap_add: frozenset[str] = frozenset()
    cap_drop: frozenset[str] = frozenset()
    no_new_privileges: bool = True
    ulimits: tuple[tuple[str, int, int], ...] = ()  # (name, soft, hard) as Docker's --ulimit; -1 unlimited
    # "default" (Docker's profile in effect), "unconfined", or a profile's JSON text (OCI or Docker format)
    seccomp: str = "default"
    # Masks lifted (podman's --security-opt unmask=): paths at or below which /proc's masked paths and the
    # host image's hidden secrets (host_masks.py) show; "ALL": every one
    unmask: tuple[str, ...] = ()

    # Run control
    name: str | None = None
    timeout: float | None = None
    # Stopping (an interrupt, `stop`), as `docker stop`: this signal to PID 1, SIGKILL after stop_timeout s.
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = DEFAULT_STOP_TIMEOUT
    interval: float = 0.01  # sampling interval of the monitor (each sample is three small reads)
    outputs: tuple[str, ...] = ()  # variable names a Python cell sends back
    diff: bool = True  # compute the layer diff at exit

    def __post_init__(self) -> None:
        validate(self)

    # -- derived views ---------------------------------------------------------------------
    @property
    def new_namespaces(self) -> tuple[str, ...]:
        return tuple(k for k in NAMESPACE_KINDS if k not in self.share)

    @property
    def capabilities(self) -> frozenset[str]:
        if "ALL" in self.cap_drop:
            base: frozenset[str] = frozenset()
        else:
            base = DEFAULT_CAPS - self.cap_drop
        return base | (self.cap_add - {"ALL"}) if "ALL" not in self.cap_add else _all_caps()

    @property
    def has_limits(self) -> bool:
        return any(v is not None for v in (self.memory, self.cpus, self.cpu_shares, self.cpuset_cpus,
                                           self.pids_limit))

    def with_(self, **changes: object) -> ContainerSpec:
        return replace(self, **changes)  # type: ignore[arg-type]


def _all_caps() -> frozenset[str]:
    from ..linux.caps import CAP_NUMBERS
    return frozenset(CAP_NUMBERS)


def _fail(msg: str) -> None:
    raise SpecError(msg)


def validate(s: ContainerSpec) -> None:
    """Check a spec field by field; raise SpecError with one line for the first problem."""
    for check in _CHECKS:
        check(s)


def _check_payload(s: ContainerSpec) -> None:
    """What runs: Python code or a command, not both."""
    if s.python_code is None and not s.command and s.image == "host":
        _fail("nothing to run: give Python code or a command (e.g. `-- sh`)")
    if s.python_code is not None and s.command:
        _fail("give either Python code or a command, not both")


def _check_sharing(s: ContainerSpec) -> None:
    """--share and --pod."""
    unknown = set(s.share) - set(NAMESPACE_KINDS)
    if unknown:
        _fail(f"unknown namespace {sorted(unknown)[0]!r} in --share: expected some of {', '.join(NAMESPACE_KINDS)}")
    if s.pod is not None:  # first: say "conflicts with --pod" rather than what the option alone would need
        _validate_pod(s)


def _check_security(s: ContainerSpec) -> None:
    """--ulimit, --security-opt unmask and seccomp."""
    for name, soft, hard in s.ulimits:
        if name not in RLIMIT_NAMES:
            _fail(f"unknown --ulimit {name!r}: expected one of {', '.join(sorted(RLIMIT_NAMES))}")
        if soft < -1 or hard < -1 or (hard != -1 and (soft == -1 or soft > hard)):
            _fail(f"--ulimit {name}={soft}:{hard}: the soft limit must not exceed the hard one (-1: unlimited)")
    for u in s.unmask:
        if u != "ALL" and not u.startswith("/"):
            _fail(f"--security-opt unmask={u}: expected ALL or absolute paths joined with ':'")
    if len({u[0] for u in s.ulimits}) != len(s.ulimits):
        _fail("--ulimit: each limit once")
    if s.seccomp not in ("default", "unconfined"):
        from ..linux.seccomp import SeccompError, compile_profile
        from .seccomp_profile import profile_for
        try:
            profile = profile_for(s.seccomp, s.capabilities)
            if profile is not None:
                compile_profile(profile)
        except SeccompError as e:
            _fail(str(e))


def _check_root_filesystem(s: ContainerSpec) -> None:
    """--image, --rootfs and the writable layer's directory."""
    if s.image != "host":
        if s.rootfs is not None:
            _fail(f"--image {s.image!r} conflicts with --rootfs {s.rootfs!r}: give one root filesystem")
        from ..images.errors import InvalidReference
        from ..images.reference import parse_reference
        try:
            parse_reference(s.image)
        except InvalidReference as e:
            _fail(str(e))
    if s.writable_layer is not None and not os.path.isabs(s.writable_layer):
        _fail(f"writable layer directory {s.writable_layer!r} must be an absolute path")
    if s.rootfs is not None:
        if not os.path.isabs(s.rootfs):
            _fail(f"--rootfs {s.rootfs!r} must be an absolute path")
        if not os.path.isdir(s.rootfs):
            _fail(f"--rootfs {s.rootfs!r} is not a directory")


def _check_hostname(s: ContainerSpec) -> None:
    """--hostname."""
    if s.hostname is not None:
        if "uts" in s.share:
            _fail("--hostname needs a new UTS namespace: remove 'uts' from --share")
        if not HOSTNAME_RE.match(s.hostname) or len(s.hostname) > 64:
            _fail(f"invalid hostname {s.hostname!r}: letters, digits, '-' and '.', at most 64 characters")


def _check_limits(s: ContainerSpec) -> None:
    """The cgroup limits."""
    if s.memory is not None and s.memory < 6 * 2**20:
        _fail(f"--memory {s.memory} bytes is too small: the minimum is 6m")
    if s.memory_swap is not None:
        if s.memory is None:
            _fail("--memory-swap needs --memory as well")
        if s.memory_swap != -1 and s.memory is not None and s.memory_swap < s.memory:
            _fail("--memory-swap must be at least --memory (it is memory plus swap), or -1 for unlimited")
    if s.cpus is not None and not (0.01 <= s.cpus <= (os.cpu_count() or 1)):
        _fail(f"--cpus {s.cpus} is out of range: 0.01 to {os.cpu_count()} on this machine")
    if s.cpu_shares is not None and not (2 <= s.cpu_shares <= 262144):
        _fail(f"--cpu-shares {s.cpu_shares} is out of range: 2 to 262144")
    if s.cpuset_cpus is not None and not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", s.cpuset_cpus):
        _fail(f"invalid --cpuset-cpus {s.cpuset_cpus!r}: a list like 0 or 0-1 or 0,2")
    if s.cpuset_cpus is not None:
        online = _online_cpus()
        wanted = _cpu_list(s.cpuset_cpus)
        if online and not wanted <= online:  # else the cgroup write fails with a bare ERANGE/EINVAL
            _fail(f"--cpuset-cpus {s.cpuset_cpus}: CPUs {_cpu_text(wanted - online)} are not available "
                  f"(this machine has {_cpu_text(online)})")
    if s.storage_size is not None and s.storage_size < 1 << 20:
        _fail(f"--storage-opt size={s.storage_size}: at least 1m")
    if s.pids_limit is not None and s.pids_limit < 1:
        _fail(f"--pids-limit {s.pids_limit} must be a positive number")


def _cpu_list(text: str) -> set[int]:
    """"0-2,5" -> {0, 1, 2, 5} (the kernel's list format)."""
    out: set[int] = set()
    for part in text.strip().split(","):
        if part:
            lo, _, hi = part.partition("-")
            out.update(range(int(lo), int(hi or lo) + 1))
    return out


def _cpu_text(cpus: set[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def _online_cpus() -> set[int]:
    """The CPUs the kernel has online (empty if it cannot say)."""
    try:
        with open("/sys/devices/system/cpu/online") as f:
            return _cpu_list(f.read())
    except (OSError, ValueError):
        return set()


def _check_user_namespace(s: ContainerSpec) -> None:
    """--userns and id maps."""
    if s.userns not in ("private", "remap", "custom"):
        _fail(f"unknown --userns {s.userns!r}: expected private, remap or host")
    if "user" in s.share and (s.uid_map or s.userns == "remap"):
        _fail("--userns remap and uid maps need a new user namespace: remove 'user' from --share")
    if s.userns == "custom" and not (s.uid_map and s.gid_map):
        _fail("custom user namespace needs both uid and gid maps")


def _check_network(s: ContainerSpec) -> None:
    """--network, aliases, more networks, -p."""
    if s.network not in ("none", "host") and not VOLUME_NAME_RE.match(s.network):
        _fail(f"invalid --network {s.network!r}: none, host, bridge or a network's name")
    if s.network == "host" and "net" not in s.share:
        _fail("--network host means sharing the host's network namespace: add 'net' to --share")
    if s.network not in ("none", "host") and "net" in s.share:
        _fail(f"--network {s.network} needs a new network namespace: remove 'net' from --share")
    if s.network_aliases and s.network in ("none", "host", "bridge"):
        _fail(f"network aliases need a user network (names resolve only there), not --network {s.network}")
    if s.extra_networks and s.network in ("none", "host"):  # a container on `bridge` may join more, as Docker's
        _fail(f"more networks need a network namespace of the container's own, not --network {s.network}")
    for n in (*s.extra_networks, *s.network_aliases):
        if not VOLUME_NAME_RE.match(n):
            _fail(f"invalid network or alias name {n!r}: letters, digits, '_', '.', '-'")
    if s.publish and s.network in ("none", "host"):
        _fail("-p/--publish needs a bridge or user network (--network bridge or NAME): "
              f"with --network {s.network} there is nothing to publish from")


def _check_time(s: ContainerSpec) -> None:
    """--time-offset."""
    for clock, _secs in s.time_offsets:
        if clock not in TIME_CLOCKS:
            _fail(f"unknown clock {clock!r} in --time-offset: expected monotonic or boottime")
    if s.time_offsets and "time" in s.share:
        _fail("--time-offset needs a new time namespace: remove 'time' from --share")


def _check_process(s: ContainerSpec) -> None:
    """--workdir, --user, -e."""
    if s.workdir is not None and not os.path.isabs(s.workdir):
        _fail(f"--workdir {s.workdir!r} must be an absolute path")
    if s.user is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)?", s.user):
        _fail(f"invalid --user {s.user!r}: expected a name or uid, optionally :group or :gid, like 1000:1000")
    for k, _v in s.env:
        if not ENV_NAME_RE.match(k):
            _fail(f"invalid environment variable name {k!r}")


def _check_mounts(s: ContainerSpec) -> None:
    """Volumes, bind mounts and tmpfs: absolute targets, one mount per target."""
    targets: set[str] = set()
    for m in s.mounts:
        if not os.path.isabs(m.target) or m.target == "/":
            _fail(f"volume target {m.target!r} must be an absolute path other than /")
        if m.kind == "bind":
            if not os.path.isabs(m.source):
                _fail(f"bind source {m.source!r} must be an absolute path (or a volume name)")
            if not os.path.exists(m.source):
                _fail(f"bind source {m.source!r} does not exist")
        elif not VOLUME_NAME_RE.match(m.source):
            _fail(f"invalid volume name {m.source!r}: letters, digits, '_', '.', '-'")
        if os.path.normpath(m.target) in targets:
            _fail(f"two mounts on {m.target!r}")
        targets.add(os.path.normpath(m.target))
    for t in s.tmpfs:
        if not os.path.isabs(t.target) or t.target == "/":
            _fail(f"--tmpfs target {t.target!r} must be an absolute path other than /")
        if os.path.normpath(t.target) in targets:
            _fail(f"two mounts on {t.target!r}")
        targets.add(os.path.normpath(t.target))
        if t.size is not None and t.size <= 0:
            _fail(f"--tmpfs {t.target} size must be positive")


def _check_capabilities(s: ContainerSpec) -> None:
    """--cap-add and --cap-drop."""
    from ..linux.caps import CAP_NUMBERS
    for c in s.cap_add | s.cap_drop:
        if c != "ALL" and c not in CAP_NUMBERS:
            _fail(f"unknown capability {c!r}: expected a name like NET_ADMIN or CAP_NET_ADMIN")


def _check_run_control(s: ContainerSpec) -> None:
    """--timeout, --stop-signal, --stop-timeout, --interval, --name, -o."""
    if s.timeout is not None and not (math.isfinite(s.timeout) and s.timeout > 0):
        _fail(f"--timeout {s.timeout} must be positive")
    if not 0 < s.stop_signal < signal.NSIG:
        _fail(f"--stop-signal {s.stop_signal} is not a signal number (1-{signal.NSIG - 1})")
    if not (math.isfinite(s.stop_timeout) and s.stop_timeout >= 0):
        _fail(f"--stop-timeout {s.stop_timeout} must be 0 or more seconds")
    if not (0.001 <= s.interval <= 60):
        _fail(f"--interval {s.interval}s is out of range: 1ms to 60s")
    if s.name is not None and not VOLUME_NAME_RE.match(s.name):
        _fail(f"invalid name {s.name!r}: letters, digits, '_', '.', '-'")
    for o in s.outputs:
        if not o.isidentifier() or keyword.iskeyword(o):
            _fail(f"invalid output variable name {o!r}")
    if s.outputs and s.python_code is None:
        _fail("-o/--output only works with Python cells")


# In this order: the first problem found is the one reported.
_CHECKS = (_check_payload, _check_sharing, _check_security, _check_root_filesystem, _check_hostname, _check_limits,
           _check_user_namespace, _check_network, _check_time, _check_process, _check_mounts, _check_capabilities,
           _check_run_control)


POD_SHARED = ("net", "ipc", "uts", "user")  # what a pod's containers take from the pod


def _validate_pod(s: ContainerSpec) -> None:
    """A container in a pod takes its network, IPC and UTS namespaces (and so its host name, address and
    ports) from the pod: options that would set them for the container alone conflict."""
    create = f"%container pod create {s.pod}"
    if not VOLUME_NAME_RE.match(s.pod or ""):
        _fail(f"invalid --pod {s.pod!r}: letters, digits, '_', '.', '-'")
    if s.network != "none":
        _fail(f"--network {s.network} conflicts with --pod {s.pod}: a pod's containers share the pod's network; "
              f"give it when creating the pod ({create} --network NET)")
    if s.publish:
        _fail(f"-p/--publish conflicts with --pod {s.pod}: publish the pod's ports when creating it "
              f"({create} --network NET -p HOST:CTR)")
    if s.hostname is not None:
        _fail(f"--hostname conflicts with --pod {s.pod}: a pod's containers share its host name "
              f"({create} --hostname NAME)")
    clash = [k for k in POD_SHARED if k in s.share]
    if clash:
        _fail(f"--share {clash[0]} conflicts with --pod {s.pod}: a pod's containers share the pod's "
              f"{', '.join(POD_SHARED)} namespaces, not the host's")
    if s.userns != "private" or s.uid_map:
        _fail(f"--userns conflicts with --pod {s.pod}: a pod's containers use the pod's user namespace")


__all__ = ["POD_SHARED", "ContainerSpec", "IdMap", "Mount", "SpecError", "Tmpfs", "validate"]
