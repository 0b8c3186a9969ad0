"""Docker-style option strings -> ContainerSpec values.

Pure functions: no kernel access, no IPython. Each raises SpecError with one line that names the bad
value and shows the form that would be right. `build_spec` is the single entry point the magic and
the CLI share, so both accept exactly the same options with the same meaning.
"""

from __future__ import annotations

import math
import os
import re
import signal
from collections.abc import Iterable
from typing import Any

from ..linux.caps import CAP_NUMBERS, normalize_cap
from ..linux.namespaces import NAMESPACE_KINDS, canonical
from ..sizes import size_bytes
from .spec import ENV_NAME_RE, TIME_CLOCKS, VOLUME_NAME_RE, ContainerSpec, Mount, SpecError, Tmpfs

# --- sizes ---------------------------------------------------------------------------------------

# Docker (go-units RAMInBytes): binary units, case-insensitive, "512m" == "512mb" == "512MiB".


def parse_size(value: str | int, flag: str = "--memory") -> int:
    """'512m' -> 536870912. Units b, k, m, g, t (powers of 1024), no unit = bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise SpecError(f"invalid size {value!r} for {flag}: expected a positive number of bytes")
        return value
    n = size_bytes(str(value))
    if n is None:
        raise SpecError(f"invalid size {str(value)!r} for {flag}: expected a number with an optional unit "
                        "b, k, m or g, like 512m")
    return n


def parse_memory_swap(value: str | int) -> int:
    """Docker's --memory-swap: memory plus swap as a size, or -1 for unlimited swap."""
    if str(value).strip() == "-1":
        return -1
    return parse_size(value, "--memory-swap")


# --- numbers -------------------------------------------------------------------------------------

def parse_cpus(value: str | float) -> float:
    """'0.5' -> 0.5 (CPUs' worth of time per period, as Docker's --cpus)."""
    try:
        cpus = float(value)
    except (TypeError, ValueError):
        cpus = math.nan
    if not math.isfinite(cpus) or cpus <= 0:
        raise SpecError(f"invalid --cpus {str(value)!r}: expected a positive number of CPUs, like 0.5 or 1.5")
    return cpus


def parse_int(value: str | int, flag: str, *, unlimited: int | None = None) -> int | None:
    """An integer option; `unlimited` (e.g. -1 for --pids-limit) maps to None (no limit)."""
    try:
        n = int(str(value).strip())
    except ValueError:
        raise SpecError(f"invalid {flag} {str(value)!r}: expected a whole number"
                        + (f", or {unlimited} for no limit" if unlimited is not None else "")) from None
    if unlimited is not None and n == unlimited:
        return None
    return n


# --- durations -----------------------------------------------------------------------------------

_DUR_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", re.IGNORECASE)
_DUR_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_signal(value: str | int, flag: str = "--stop-signal") -> int:
    """`TERM`, `SIGTERM`, `term` or `15` -> 15."""
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    else:
        text = str(value).strip().upper().removeprefix("SIG")
        if text.isdigit():
            n = int(text)
        else:
            try:
                n = int(signal.Signals["SIG" + text])
            except KeyError:
                raise SpecError(f"unknown signal {value!r} for {flag}: a name like TERM, INT, QUIT or a number "
                                "like 15") from None
    if not 0 < n < signal.NSIG:
        raise SpecError(f"invalid signal {value!r} for {flag}: a number from 1 to {signal.NSIG - 1}")
    return n


def parse_duration(value: str | float, flag: str = "--timeout") -> float:
    """'20ms' -> 0.02, '1.5s' -> 1.5, '2m' -> 120, '1m30s' -> 90 (Go's units); a bare number is seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        secs = float(value)
    else:
        text = str(value).strip()
        try:
            secs = float(text)
        except ValueError:
            parts = _DUR_PART.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise SpecError(f"invalid duration {text!r} for {flag}: expected seconds or a number with a "
                                "unit ms, s, m or h, like 1.5s or 20ms") from None
            secs = sum(float(n) * _DUR_UNITS[u.lower()] for n, u in parts)
    if not math.isfinite(secs) or secs < 0:
        raise SpecError(f"invalid duration {str(value)!r} for {flag}: "
                        "expected a positive time, like 1.5s or 20ms")
    return secs


# --- volumes, tmpfs, env -------------------------------------------------------------------------

def parse_volume(value: str) -> Mount:
    """`-v /host:/ctr[:ro|rw]` (bind mount) or `-v NAME:/ctr[:ro|rw]` (named volume)."""
    parts = value.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise SpecError(f"invalid -v {value!r}: "
                        "expected /host/path:/container/path[:ro] or NAME:/container/path")
    source, target = parts[0], parts[1]
    read_only = False
    if len(parts) == 3:
        for opt in parts[2].split(","):
            if opt == "ro":
                read_only = True
            elif opt == "rw":
                read_only = False
            else:
                raise SpecError(f"unknown volume option {opt!r} in -v {value!r}: expected ro or rw")
    if source.startswith("/"):
        kind = "bind"
    elif VOLUME_NAME_RE.match(source) and "/" not in source:
        kind = "volume"
    else:
        raise SpecError(f"invalid -v {value!r}: host path {source!r} is relative; give an absolute path "
                        f"(like {os.path.abspath(source)}) or a volume name (letters, digits, '_', '.', '-')")
    if not target.startswith("/"):
        raise SpecError(f"invalid -v {value!r}: container path {target!r} must be absolute, like /data")
    return Mount(source=os.path.normpath(source) if kind == "bind" else source,
                 target=os.path.normpath(target), read_only=read_only, kind=kind)  # type: ignore[arg-type]


def parse_tmpfs(value: str) -> Tmpfs:
    """`--tmpfs /run[:size=64m,mode=1777]`."""
    target, _, opts = value.partition(":")
    if not target.startswith("/"):
        raise SpecError(f"invalid --tmpfs {value!r}: "
                        "expected an absolute path with options, like /run:size=64m")
    size: int | None = None
    mode = 0o1777
    for opt in filter(None, opts.split(",")):
        key, eq, val = opt.partition("=")
        if key == "size" and eq:
            size = parse_size(val, "--tmpfs size")
        elif key == "mode" and eq:
            if not re.fullmatch(r"[0-7]{1,4}", val):
                raise SpecError(f"invalid mode {val!r} in --tmpfs {value!r}: "
                                "expected octal digits, like 1777")
            mode = int(val, 8)
        elif opt == "rw":
            pass
        else:
            raise SpecError(f"unsupported option {opt!r} in --tmpfs {value!r}: "
                            "expected size=SIZE and mode=OCTAL, like /run:size=64m,mode=1777")
    return Tmpfs(target=os.path.normpath(target), size=size, mode=mode)


def parse_env(value: str) -> tuple[str, str] | None:
    """`-e K=V` -> (K, V); `-e K` takes K's value from this process's environment, and like Docker
    leaves it out (None) when K is not set here."""
    name, eq, val = value.partition("=")
    if not ENV_NAME_RE.match(name):
        raise SpecError(f"invalid -e {value!r}: expected NAME=VALUE or NAME, with NAME like MY_VAR")
    if eq:
        return name, val
    if name in os.environ:
        return name, os.environ[name]
    return None


# --- namespaces, clocks, capabilities ------------------------------------------------------------

def parse_share(value: str | Iterable[str]) -> frozenset[str]:
    """`--share net,ipc`: namespaces the container shares with the host instead of getting new ones.
    Aliases mnt -> mount, network -> net; `all` means all eight, `none` none."""
    items = value.split(",") if isinstance(value, str) else list(value)
    out: set[str] = set()
    for raw in items:
        item = raw.strip()
        if not item or item.lower() == "none":
            continue
        if item.lower() == "all":
            out.update(NAMESPACE_KINDS)
            continue
        kind = canonical(item)
        if kind not in NAMESPACE_KINDS:
            raise SpecError(f"unknown namespace {item!r} in --share: expected some of "
                            f"{', '.join(NAMESPACE_KINDS)}, or all")
        out.add(kind)
    return frozenset(out)


def parse_time_offset(value: str) -> tuple[str, int]:
    """`--time-offset boottime=3600` (or `monotonic=-1h`): (clock, whole seconds)."""
    clock, eq, amount = value.partition("=")
    clock = clock.strip().lower()
    if not eq or clock not in TIME_CLOCKS:
        raise SpecError(f"invalid --time-offset {value!r}: expected CLOCK=SECONDS with CLOCK monotonic or "
                        "boottime, like boottime=3600")
    amount = amount.strip()
    sign = -1 if amount.startswith("-") else 1
    try:
        secs = parse_duration(amount.lstrip("+-"), "--time-offset")
    except SpecError:
        raise SpecError(f"invalid --time-offset {value!r}: expected CLOCK=SECONDS with CLOCK monotonic or "
                        "boottime, like boottime=3600") from None
    return clock, sign * round(secs)


def parse_ulimit(value: str) -> tuple[str, int, int]:
    """`--ulimit nofile=1024:2048` (soft:hard), `nofile=1024` (both), -1 or `unlimited` for no limit."""
    name, eq, rest = value.partition("=")
    soft_s, _, hard_s = rest.partition(":")

    def num(v: str) -> int:
        if v in ("-1", "unlimited"):
            return -1
        if not v.isdigit():
            raise SpecError(f"invalid --ulimit {value!r}: expected NAME=SOFT[:HARD], like nofile=1024:2048")
        return int(v)

    if not eq or not name or not soft_s:
        raise SpecError(f"invalid --ulimit {value!r}: expected NAME=SOFT[:HARD], like nofile=1024:2048")
    soft = num(soft_s)
    return name.strip().lower(), soft, num(hard_s) if hard_s else soft


def parse_security_opt(values: Iterable[str]) -> str:
    """`--security-opt seccomp=unconfined|default|PROFILE.json` (Docker's); `no-new-privileges` is always on.
    Returns the spec's `seccomp` value (a profile file's JSON text)."""
    seccomp = "default"
    for v in values:
        key, sep, val = v.partition("=") if "=" in v else v.partition(":")
        if key == "seccomp" and sep:
            if val in ("unconfined", "default"):
                seccomp = val
            else:
                try:
                    with open(val) as f:
                        seccomp = f.read()
                except OSError as e:
                    raise SpecError(f"--security-opt seccomp={val}: cannot read the profile ({e.strerror})") from None
        elif key == "no-new-privileges" and val in ("", "true"):
            continue  # always on here
        elif key == "unmask" and sep:
            continue  # parse_unmask
        else:
            raise SpecError(f"unsupported --security-opt {v!r}: expected seccomp=unconfined, seccomp=PROFILE.json, "
                            "unmask=ALL|PATH[:PATH...] or no-new-privileges")
    return seccomp


def parse_storage_opt(values: Iterable[str]) -> int | None:
    """`--storage-opt size=1g` (Docker's) -> bytes; `size=unlimited` -> -1; none given -> None."""
    size: int | None = None
    for v in values:
        key, sep, val = v.partition("=")
        if key.strip() != "size" or not sep:
            raise SpecError(f"unsupported --storage-opt {v!r}: expected size=SIZE (the writable layer's), "
                            "like size=2g, or size=unlimited")
        size = -1 if val.strip().lower() == "unlimited" else parse_size(val, "--storage-opt size")
    return size


def parse_unmask(values: Iterable[str]) -> tuple[str, ...]:
    """`--security-opt unmask=ALL|/root:/proc/keys` (podman's): the masks to lift."""
    out: list[str] = []
    for v in values:
        key, sep, val = v.partition("=")
        if key == "unmask" and sep:
            out += [p.rstrip("/") or "/" if p != "ALL" else p for p in val.split(":") if p]
    return tuple(dict.fromkeys(out))


def parse_caps(value: str | Iterable[str], flag: str = "--cap-add") -> frozenset[str]:
    """`--cap-add NET_ADMIN,cap_sys_time` -> {'NET_ADMIN', 'SYS_TIME'}; `ALL` stays 'ALL'."""
    items = value.split(",") if isinstance(value, str) else list(value)
    out: set[str] = set()
    for raw in items:
        if not raw.strip():
            continue
        cap = normalize_cap(raw)
        if cap != "ALL" and cap not in CAP_NUMBERS:
            raise SpecError(f"unknown capability {raw.strip()!r} in {flag}: expected names like NET_ADMIN or "
                            "CAP_SYS_TIME, or ALL")
        out.add(cap)
    return frozenset(out)


# --- the whole spec ------------------------------------------------------------------------------

NETWORK_MODES = ("none", "host")
# Docker's meaning of --userns host: no user namespace at all (it shares the host's).
USERNS_MODES = {"host": "host", "private": "private", "remap": "remap", "auto": "remap"}


def _many(value: Any) -> list[Any]:
    """None -> [], a string -> [it], a list/tuple -> as is (repeatable options)."""
    if value is None:
        return []
    if isinstance(value, str | bytes | int | float | Mount | Tmpfs):
        return [value]
    return list(value)


def _split_list(values: Any) -> list[str]:
    """Repeatable comma lists (`-o a,b -o c`) -> ['a', 'b', 'c']."""
    return [p.strip() for v in _many(values) for p in str(v).split(",") if p.strip()]


def _payload_fields(python_code: str | None, command: Iterable[str] | None,
                    stdin_data: bytes | str | None) -> dict[str, Any]:
    """What runs: Python code or a command, and its standard input."""
    f: dict[str, Any] = {}
    if python_code is not None:
        f["python_code"] = python_code
    if command:
        f["command"] = tuple(command)
    if stdin_data is not None:
        f["stdin_data"] = stdin_data.encode() if isinstance(stdin_data, str) else bytes(stdin_data)
    return f


def _limit_fields(memory: str | int | None, memory_swap: str | int | None, cpus: str | float | None,
                  cpu_shares: str | int | None, cpuset_cpus: str | None, pids_limit: str | int | None,
                  storage_opt: str | Iterable[str] | None) -> dict[str, Any]:
    """The cgroup limits and the writable layer's size, with the lab's default bounds where none is given."""
    f: dict[str, Any] = {}
    if memory is not None:
        f["memory"] = parse_size(memory, "--memory")
    if memory_swap is not None:
        f["memory_swap"] = parse_memory_swap(memory_swap)
    if cpus is not None:
        f["cpus"] = parse_cpus(cpus)
    if cpu_shares is not None:
        f["cpu_shares"] = parse_int(cpu_shares, "--cpu-shares")
    if cpuset_cpus is not None:
        f["cpuset_cpus"] = str(cpuset_cpus).replace(" ", "")
    from .config import defaults

    lab = defaults()  # bounds Docker leaves off (runtime/config.py): a fork bomb, a full disk stop there
    bounds: list[str] = []
    if pids_limit is not None:
        f["pids_limit"] = parse_int(pids_limit, "--pids-limit", unlimited=-1)
    elif lab.pids_limit is not None:
        f["pids_limit"] = lab.pids_limit
        bounds.append("pids_limit")
    size = parse_storage_opt(_many(storage_opt))
    if size is not None:
        f["storage_size"] = None if size == -1 else size
    elif lab.storage_size is not None:
        f["storage_size"] = lab.storage_size
        bounds.append("storage_size")
    f["default_bounds"] = tuple(bounds)
    return f


def _network_fields(share: str | Iterable[str] | None, pod: str | None, network: str | None,
                    expose: str | Iterable[str] | None, publish: str | Iterable[str] | None) -> dict[str, Any]:
    """--share, --pod, --network, --expose, -p (a pod's network is the pod's)."""
    f: dict[str, Any] = {}
    shared = parse_share(_split_list(share)) if share is not None else frozenset()
    if pod is not None:
        f["pod"] = pod
        if network is not None:  # even `none`: the pod's network is what the container gets
            raise SpecError(f"--network {network} conflicts with --pod {pod}: a pod's containers share the pod's "
                            f"network; give it when creating the pod (%container pod create {pod} --network NET)")
    if network is not None:
        if network not in NETWORK_MODES and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", network):
            raise SpecError(f"invalid --network {network!r}: none (a new, empty network namespace), host (the "
                            "host's), bridge (the default network) or the name of a network you created")
        f["network"] = network
        if network == "none" and "net" in shared:
            raise SpecError("--network none conflicts with --share net: none gives the container a new, "
                            "empty network namespace; use --network host to share the host's")
        if network == "host":
            shared |= {"net"}
    f["share"] = shared
    if expose is not None:
        ports = []
        for e in _many(expose):
            port, _, proto = str(e).partition("/")
            if not port.isdigit() or not 0 < int(port) < 65536 or proto not in ("", "tcp", "udp"):
                raise SpecError(f"invalid --expose {e!r}: a port, optionally /tcp or /udp, like 80 or 53/udp")
            ports.append(f"{int(port)}/{proto or 'tcp'}")
        f["expose"] = tuple(ports)
    if publish is not None:
        from ..network import NetworkError, parse_publish
        try:
            f["publish"] = tuple(parse_publish(p) for p in _many(publish))
        except NetworkError as e:
            raise SpecError(str(e)) from None
    return f


def _namespace_fields(userns: str | None, time_offset: str | Iterable[str] | None,
                      share: frozenset[str]) -> dict[str, Any]:
    """--userns (host: share the user namespace) and --time-offset."""
    f: dict[str, Any] = {}
    if userns is not None:
        mode = USERNS_MODES.get(str(userns).strip().lower())
        if mode is None:
            raise SpecError(f"unknown --userns {userns!r}: expected private (the default: a new user "
                            "namespace, container root is host root), remap (container root maps to an "
                            "unprivileged host range) or host (share the host's user namespace)")
        if mode == "host":
            f["share"] = share | {"user"}
            mode = "private"
        f["userns"] = mode
    offsets = [parse_time_offset(v) for v in _many(time_offset)]
    clocks = [c for c, _ in offsets]
    dup = next((c for c in clocks if clocks.count(c) > 1), None)
    if dup:
        raise SpecError(f"--time-offset {dup} given twice: give each clock once")
    f["time_offsets"] = tuple(offsets)
    return f


def _filesystem_fields(image: str | None, rootfs: str | None, read_only: bool,
                       volume: str | Iterable[str | Mount] | None, tmpfs: str | Iterable[str | Tmpfs] | None,
                       workdir: str | None, user: str | None) -> dict[str, Any]:
    """The root filesystem, volumes, tmpfs, working directory and user."""
    f: dict[str, Any] = {}
    if image is not None and image != "host" and rootfs is not None:
        raise SpecError(f"--image {image!r} conflicts with --rootfs {rootfs!r}: give one root filesystem")
    if image is not None:
        f["image"] = image
    if rootfs is not None:
        f["rootfs"] = rootfs
    f["read_only"] = bool(read_only)
    f["mounts"] = tuple(v if isinstance(v, Mount) else parse_volume(v) for v in _many(volume))
    f["tmpfs"] = tuple(v if isinstance(v, Tmpfs) else parse_tmpfs(v) for v in _many(tmpfs))
    if workdir is not None:
        f["workdir"] = workdir
    if user is not None:
        f["user"] = user
    return f


def _env_items(env: str | Iterable[str] | dict[str, str] | None) -> tuple[tuple[str, str], ...]:
    """-e K=V (or a dict): the last value of a name wins."""
    env_items: list[tuple[str, str]] = []
    if isinstance(env, dict):
        env_items = [(str(k), str(v)) for k, v in env.items()]
    else:
        for v in _many(env):
            kv = parse_env(v)
            if kv is not None:
                env_items = [e for e in env_items if e[0] != kv[0]] + [kv]  # the last -e K=... wins
    return tuple(env_items)


def _security_fields(cap_add: str | Iterable[str] | None, cap_drop: str | Iterable[str] | None,
                     ulimit: str | Iterable[str | tuple[str, int, int]] | None,
                     security_opt: str | Iterable[str] | None) -> dict[str, Any]:
    """Capabilities, rlimits, seccomp and unmasked paths."""
    f: dict[str, Any] = {}
    f["cap_add"] = parse_caps(_split_list(cap_add), "--cap-add")
    f["cap_drop"] = parse_caps(_split_list(cap_drop), "--cap-drop")
    both = (f["cap_add"] & f["cap_drop"]) - {"ALL"}
    if both:
        raise SpecError(f"capability {sorted(both)[0]} is in both --cap-add and --cap-drop: give it once")

    f["ulimits"] = tuple(v if isinstance(v, tuple) else parse_ulimit(v) for v in _many(ulimit))
    f["seccomp"] = parse_security_opt(_many(security_opt))
    f["unmask"] = parse_unmask(_many(security_opt))
    return f


def _run_control_fields(timeout: str | float | None, stop_signal: str | int | None,
                        stop_timeout: str | float | None, interval: str | float | None, name: str | None,
                        output: str | Iterable[str] | None, no_diff: bool) -> dict[str, Any]:
    """--timeout, stopping, sampling, the name, outputs, the diff."""
    f: dict[str, Any] = {}
    if timeout is not None:
        f["timeout"] = parse_duration(timeout, "--timeout")
    if stop_signal is not None:
        f["stop_signal"] = parse_signal(stop_signal)
    if stop_timeout is not None:
        f["stop_timeout"] = parse_duration(stop_timeout, "--stop-timeout")
    if interval is not None:
        f["interval"] = parse_duration(interval, "--interval")
    if name is not None:
        f["name"] = name
    f["outputs"] = tuple(dict.fromkeys(_split_list(output)))
    f["diff"] = not no_diff
    return f


def build_spec(
    *,
    python_code: str | None = None,
    command: Iterable[str] | None = None,
    stdin_data: bytes | str | None = None,
    memory: str | int | None = None,
    memory_swap: str | int | None = None,
    cpus: str | float | None = None,
    cpu_shares: str | int | None = None,
    cpuset_cpus: str | None = None,
    pids_limit: str | int | None = None,
    hostname: str | None = None,
    share: str | Iterable[str] | None = None,
    userns: str | None = None,
    time_offset: str | Iterable[str] | None = None,
    rootfs: str | None = None,
    image: str | None = None,
    read_only: bool = False,
    volume: str | Iterable[str | Mount] | None = None,
    tmpfs: str | Iterable[str | Tmpfs] | None = None,
    workdir: str | None = None,
    user: str | None = None,
    env: str | Iterable[str] | dict[str, str] | None = None,
    cap_add: str | Iterable[str] | None = None,
    cap_drop: str | Iterable[str] | None = None,
    ulimit: str | Iterable[str | tuple[str, int, int]] | None = None,
    security_opt: str | Iterable[str] | None = None,
    storage_opt: str | Iterable[str] | None = None,
    network: str | None = None,
    pod: str | None = None,
    publish: str | Iterable[str] | None = None,
    expose: str | Iterable[str] | None = None,
    timeout: str | float | None = None,
    stop_signal: str | int | None = None,
    stop_timeout: str | float | None = None,
    interval: str | float | None = None,
    name: str | None = None,
    output: str | Iterable[str] | None = None,
    no_diff: bool = False,
) -> ContainerSpec:
    """Turn option values (strings as typed, or already-typed values) into a validated ContainerSpec.

    The keyword names are the options' long names with '-' -> '_' (`--memory-swap` -> memory_swap);
    repeatable options take a list. Conflicting options raise SpecError.
    """
    f: dict[str, Any] = _payload_fields(python_code, command, stdin_data)
    f |= _limit_fields(memory, memory_swap, cpus, cpu_shares, cpuset_cpus, pids_limit, storage_opt)
    if hostname is not None:
        f["hostname"] = hostname

    f |= _network_fields(share, pod, network, expose, publish)
    f |= _namespace_fields(userns, time_offset, f["share"])
    f |= _filesystem_fields(image, rootfs, read_only, volume, tmpfs, workdir, user)
    f["env"] = _env_items(env)
    f |= _security_fields(cap_add, cap_drop, ulimit, security_opt)
    f |= _run_control_fields(timeout, stop_signal, stop_timeout, interval, name, output, no_diff)
    return ContainerSpec(**f)


__all__ = [
    "build_spec", "parse_caps", "parse_cpus", "parse_duration", "parse_env", "parse_int", "parse_memory_swap",
    "parse_security_opt", "parse_share", "parse_signal", "parse_size", "parse_storage_opt", "parse_time_offset",
    "parse_tmpfs", "parse_unmask", "parse_ulimit", "parse_volume",
]
