"""Docker's container configuration (the body of `POST /containers/create`: Config fields, HostConfig,
NetworkingConfig) turned into this project's ContainerSpec, and checked the way dockerd checks it.
Everything the spec cannot express is refused with Docker's 400, not silently dropped."""

from __future__ import annotations

import json
from typing import Any

from ..linux.caps import normalize_cap
from ..runtime.parse import build_spec
from ..runtime.spec import ContainerSpec, Mount, SpecError, Tmpfs
from .http import ApiError

DEFAULT_STOP_TIMEOUT = 10


def _list(v: Any) -> list[Any]:
    if v is None:
        return []
    if isinstance(v, str):
        return [v]
    return list(v)


def network_mode(host_config: dict[str, Any]) -> str:
    mode = host_config.get("NetworkMode") or "default"
    return "bridge" if mode == "default" else mode


# The fields whose JSON type dockerd's decoder enforces (a Go struct): a wrong type is its 400, not a 500 (a
# TypeError deep in the checks) nor a container made with nonsense in its record.
_INT_FIELDS = ("Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuShares", "CpuQuota", "CpuPeriod",
               "PidsLimit", "ShmSize", "KernelMemory", "BlkioWeight", "OomScoreAdj", "MemorySwappiness")
_STRING_LIST_FIELDS = ("Binds", "CapAdd", "CapDrop", "Dns", "DnsSearch", "DnsOptions", "ExtraHosts", "GroupAdd",
                       "SecurityOpt", "Links", "VolumesFrom")
_CONFIG_STRING_LISTS = ("Cmd", "Entrypoint", "Env")  # a string is taken too (the API's shell form)


def _type_error(field: str, expected: str, value: Any) -> ApiError:
    return ApiError(400, f"json: cannot unmarshal {type(value).__name__} {json.dumps(value)[:40]} into "
                    f"{field} (expected {expected})")


def check_string_list(field: str, value: Any) -> None:
    """None, or a list of strings (dockerd's []string), else its 400."""
    if value is not None and not (isinstance(value, list) and all(isinstance(x, str) for x in value)):
        raise _type_error(field, "a list of strings", value)


def check_string(field: str, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise _type_error(field, "a string", value)


def check_console_size(field: str, value: Any) -> None:
    """None, or [rows, cols] (dockerd's [2]uint; a terminal's window size is 16 bits each), else its 400."""
    if value is not None and not (isinstance(value, list) and len(value) == 2 and all(
            isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= 0xFFFF for x in value)):
        raise _type_error(field, "[rows, cols], two integers 0-65535", value)


def _check_types(config: dict[str, Any], host_config: dict[str, Any]) -> None:
    if not isinstance(host_config, dict):
        raise _type_error("HostConfig", "an object", host_config)
    check_console_size("HostConfig.ConsoleSize", host_config.get("ConsoleSize"))
    for key in _INT_FIELDS:
        v = host_config.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise _type_error(f"HostConfig.{key}", "an integer", v)
    for key in _STRING_LIST_FIELDS:
        v = host_config.get(key)
        if v is not None and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            raise _type_error(f"HostConfig.{key}", "a list of strings", v)
    for key in _CONFIG_STRING_LISTS:
        v = config.get(key)
        if v is not None and not isinstance(v, str) and \
                not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            raise _type_error(key, "a list of strings", v)
    for key in ("PortBindings", "Tmpfs", "RestartPolicy", "LogConfig", "StorageOpt", "Sysctls"):
        v = host_config.get(key)
        if v is not None and not isinstance(v, dict):
            raise _type_error(f"HostConfig.{key}", "an object", v)
    retries = (host_config.get("RestartPolicy") or {}).get("MaximumRetryCount")
    if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int)):
        raise _type_error("HostConfig.RestartPolicy.MaximumRetryCount", "an integer", retries)


def check(config: dict[str, Any], host_config: dict[str, Any]) -> None:
    """What dockerd refuses at create time (400), before anything is made."""
    _check_types(config, host_config)
    mem = host_config.get("Memory") or 0
    if mem and mem < 6 * 2**20:
        raise ApiError(400, "Minimum memory limit allowed is 6MB")
    swap = host_config.get("MemorySwap") or 0
    if swap and swap != -1:
        if not mem:
            raise ApiError(400, "You should always set the Memory limit when using Memoryswap limit")
        if swap < mem:
            raise ApiError(400, "Minimum memoryswap limit should be larger than memory limit, see usage")
    if host_config.get("NanoCpus") and host_config.get("CpuQuota"):
        raise ApiError(400, "Conflicting options: Nano CPUs and CPU Period cannot both be set")
    mode = network_mode(host_config)
    if mode.startswith("container:"):
        raise ApiError(400, "network mode container:NAME is not supported by this engine (use a pod: "
                       "%container pod create)")
    rp = (host_config.get("RestartPolicy") or {}).get("Name") or "no"
    if rp not in ("", "no", "always", "on-failure", "unless-stopped"):
        raise ApiError(400, f"invalid restart policy '{rp}'")
    if host_config.get("AutoRemove") and rp not in ("", "no"):
        raise ApiError(400, "can't create 'AutoRemove' container with restart policy")
    _refuse_what_is_not_honoured(config, host_config)


# What a request may set that this engine does not do: refused with the option's name, never dropped (a
# `docker run --pid host` that quietly ran in a PID namespace of its own would mislead). Field, flag.
_NOT_HONOURED_HOST = (
    ("Sysctls", "--sysctl"), ("ExtraHosts", "--add-host"), ("Dns", "--dns"), ("DnsSearch", "--dns-search"),
    ("DnsOptions", "--dns-option"), ("Init", "--init"), ("Devices", "--device"),
    ("DeviceCgroupRules", "--device-cgroup-rule"), ("DeviceRequests", "--gpus"), ("GroupAdd", "--group-add"),
    ("OomKillDisable", "--oom-kill-disable"), ("OomScoreAdj", "--oom-score-adj"),
    ("MemoryReservation", "--memory-reservation"), ("KernelMemory", "--kernel-memory"),
    ("KernelMemoryTCP", "--kernel-memory-tcp"), ("BlkioWeight", "--blkio-weight"),
    ("BlkioWeightDevice", "--blkio-weight-device"), ("BlkioDeviceReadBps", "--device-read-bps"),
    ("BlkioDeviceWriteBps", "--device-write-bps"), ("BlkioDeviceReadIOps", "--device-read-iops"),
    ("BlkioDeviceWriteIOps", "--device-write-iops"), ("CpuRealtimePeriod", "--cpu-rt-period"),
    ("CpuRealtimeRuntime", "--cpu-rt-runtime"), ("CpusetMems", "--cpuset-mems"), ("CgroupParent", "--cgroup-parent"),
    ("Links", "--link"), ("VolumesFrom", "--volumes-from"),
    ("StorageOpt", "--storage-opt (a container's layer is a directory on disk here, as overlay2's on ext4)"),
    ("MaskedPaths", "--security-opt systempaths"), ("ReadonlyPaths", "--security-opt systempaths"),
)
_NOT_HONOURED_CONFIG = (("Domainname", "--domainname"), ("MacAddress", "--mac-address"),
                        ("NetworkDisabled", "--network-disabled"))
# Namespace modes: the values this engine honours (empty = its own namespace; "host" = the host's, as --share).
_NAMESPACE_MODES = {"PidMode": ("pid", ("", "host")), "IpcMode": ("ipc", ("", "private", "shareable", "host")),
                    "UTSMode": ("uts", ("", "host")), "UsernsMode": ("user", ("", "host")),
                    "CgroupnsMode": ("cgroup", ("", "private", "host"))}


def _is_set(value: Any) -> bool:
    return value not in (None, "", 0, False, [], {})


def _not_honoured(flag: str) -> ApiError:
    return ApiError(400, f"{flag} is not supported by this engine (pycontainer serve): run without it")


def _refuse_what_is_not_honoured(config: dict[str, Any], host_config: dict[str, Any]) -> None:
    for key, flag in _NOT_HONOURED_HOST:
        if _is_set(host_config.get(key)):
            raise _not_honoured(flag)
    for key, flag in _NOT_HONOURED_CONFIG:
        if _is_set(config.get(key)):
            raise _not_honoured(flag)
    for key, (_ns, allowed) in _NAMESPACE_MODES.items():
        mode = host_config.get(key) or ""
        if mode not in allowed:
            raise ApiError(400, f"{key} {mode!r} is not supported by this engine: "
                           f"{' or '.join(repr(a) for a in allowed if a)} (or leave it out)")
    if host_config.get("UTSMode") == "host" and config.get("Hostname"):
        raise ApiError(400, "Conflicting options: hostname and the UTS mode")
    swappiness = host_config.get("MemorySwappiness")
    if swappiness not in (None, -1):
        raise _not_honoured("--memory-swappiness")
    shm = host_config.get("ShmSize") or 0
    if shm and shm != 64 * 2**20:
        raise _not_honoured("--shm-size (/dev/shm is 64m here)")
    log_type = (host_config.get("LogConfig") or {}).get("Type") or ""
    if log_type not in ("", "json-file", "local"):
        raise _not_honoured(f"--log-driver {log_type} (logs are kept as json-file)")
    runtime = host_config.get("Runtime") or ""
    if runtime not in ("", "pycontainer"):
        raise ApiError(400, f"unknown or invalid runtime name: {runtime} (this engine's runtime is pycontainer)")
    if (host_config.get("VolumeDriver") or "local") != "local":
        raise _not_honoured("--volume-driver")
    hc_check = config.get("Healthcheck") or {}
    if _is_set(hc_check.get("Test")) and list(hc_check["Test"]) != ["NONE"]:
        raise _not_honoured("a health check (--health-cmd)")
    if _is_set(config.get("Volumes")):
        raise ApiError(400, "anonymous volumes are not supported by this engine: name the volume "
                       "(-v NAME:/path)")
    endpoints = (config.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
    for ep in endpoints.values():
        ep = ep or {}
        if _is_set(ep.get("IPAMConfig")) and any(_is_set(v) for v in ep["IPAMConfig"].values()):
            raise _not_honoured("--ip/--ip6 (addresses come from the network's pool)")
        for key, flag in (("Links", "--link"), ("MacAddress", "--mac-address"), ("DriverOpts", "--network driver-opt")):
            if _is_set(ep.get(key)):
                raise _not_honoured(flag)


def _shared_namespaces(host_config: dict[str, Any]) -> list[str]:
    """--pid/--ipc/--uts/--cgroupns host: the namespaces shared with the host (build_spec's `share`)."""
    return [ns for key, (ns, _) in _NAMESPACE_MODES.items() if key != "UsernsMode" and host_config.get(key) == "host"]


def _publish_all(config: dict[str, Any], host_config: dict[str, Any]) -> dict[str, Any]:
    """-P: every exposed port (the request's and the image's) not published already, on a free host port."""
    bindings = dict(host_config.get("PortBindings") or {})
    if host_config.get("PublishAllPorts"):
        for port in config.get("ExposedPorts") or {}:
            key = port if "/" in port else f"{port}/tcp"
            bindings.setdefault(key, [{"HostIp": "", "HostPort": ""}])
    return bindings


def check_networks(body: dict[str, Any], host_config: dict[str, Any]) -> None:
    """A network that does not exist is refused before anything is made (else the container was created and
    failed to start, and `docker run` printed the error twice). 400, not 404: the docker CLI takes a 404 from
    create for a missing image and tries to pull it."""
    from ..network import list_networks

    wanted = {network_mode(host_config), *((body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {})}
    wanted = {w for w in wanted if w not in ("bridge", "none", "host", "default") and not w.startswith("container:")}
    if wanted:
        missing = sorted(wanted - {n.name for n in list_networks()})
        if missing:
            raise ApiError(400, f"network {missing[0]} not found")


def _binds(host_config: dict[str, Any]) -> list[Mount | str]:
    out: list[Mount | str] = list(_list(host_config.get("Binds")))
    for m in _list(host_config.get("Mounts")):
        kind = (m.get("Type") or "").lower()
        target = m.get("Target") or ""
        if kind == "bind":
            src = m.get("Source") or ""
            import os
            if not os.path.exists(src):
                raise ApiError(400, f'invalid mount config for type "bind": bind source path does not exist: {src}')
            out.append(Mount(src, target, bool(m.get("ReadOnly")), "bind"))
        elif kind == "volume":
            if not m.get("Source"):
                raise ApiError(400, "anonymous volumes are not supported by this engine: name the volume")
            out.append(Mount(m["Source"], target, bool(m.get("ReadOnly")), "volume"))
        elif kind != "tmpfs":
            raise ApiError(400, f'mount type "{kind}" is not supported (bind, volume or tmpfs)')
    return out


def _tmpfs(host_config: dict[str, Any]) -> list[str | Tmpfs]:
    out: list[str | Tmpfs] = []
    for target, opts in (host_config.get("Tmpfs") or {}).items():
        out.append(f"{target}:{opts}" if opts else target)
    for m in _list(host_config.get("Mounts")):
        if (m.get("Type") or "").lower() == "tmpfs":
            o = m.get("TmpfsOptions") or {}
            out.append(Tmpfs(m.get("Target") or "", o.get("SizeBytes") or None, o.get("Mode") or 0o1777))
    return out


def _security(host_config: dict[str, Any]) -> str:
    """The spec's seccomp value from SecurityOpt (the docker CLI sends a profile file's content)."""
    seccomp = "default"
    for opt in _list(host_config.get("SecurityOpt")):
        key, sep, val = opt.partition("=") if "=" in opt else opt.partition(":")
        if key == "seccomp" and sep:
            seccomp = val if val in ("unconfined", "default") or val.lstrip().startswith("{") else seccomp
            if seccomp != val:
                raise ApiError(400, f"invalid --security-opt {opt!r}: seccomp=unconfined or a profile")
        elif key == "no-new-privileges":
            continue  # always on here
        elif key in ("apparmor", "label"):
            continue  # no LSM here: nothing to confine with
        else:
            raise ApiError(400, f"invalid --security-opt: {opt!r}")
    if host_config.get("Privileged"):
        seccomp = "unconfined"
    return seccomp


def spec_of(cid: str, name: str, image_id: str, config: dict[str, Any], host_config: dict[str, Any],
            endpoints: dict[str, Any], writable_layer: str | None) -> ContainerSpec:
    """The ContainerSpec that runs this container. Raises ApiError(400) with the reason."""
    mode = network_mode(host_config)
    publish = []
    for port, bindings in _publish_all(config, host_config).items():
        cport = port.split("/")[0]
        for b in bindings or [{}]:
            hip = (b or {}).get("HostIp") or "127.0.0.1"  # this lab publishes on loopback unless told
            hport = (b or {}).get("HostPort") or "0"
            publish.append(f"{hip}:{hport}:{cport}/{port.partition('/')[2] or 'tcp'}")
    cpus = None
    if host_config.get("NanoCpus"):
        cpus = host_config["NanoCpus"] / 1e9
    elif (host_config.get("CpuQuota") or 0) > 0:
        cpus = host_config["CpuQuota"] / (host_config.get("CpuPeriod") or 100000)
    pids = host_config.get("PidsLimit")
    if pids is not None and pids <= 0:
        pids = -1  # Docker's 0 or -1: no limit (left out, the lab's default bound applies)
    shared = _shared_namespaces(host_config)
    aliases: list[str] = []
    for ep_name, ep in (endpoints or {}).items():
        if ep_name == mode and ep:
            aliases += [a for a in _list(ep.get("Aliases")) if a not in (name, cid[:12])]
    entrypoint = config.get("Entrypoint")
    if isinstance(entrypoint, str):
        entrypoint = [entrypoint]
    cmd = config.get("Cmd")
    if isinstance(cmd, str):
        cmd = [cmd]
    cap_add = [normalize_cap(c) for c in _list(host_config.get("CapAdd"))]
    if host_config.get("Privileged"):
        cap_add = ["ALL"]
    try:
        spec = build_spec(
            command=cmd or None,
            image=image_id,
            memory=host_config.get("Memory") or None,
            memory_swap=(host_config.get("MemorySwap") or None) if host_config.get("Memory") else None,
            cpus=cpus,
            cpu_shares=host_config.get("CpuShares") or None,
            cpuset_cpus=host_config.get("CpusetCpus") or None,
            pids_limit=pids,
            hostname=None if "uts" in shared else config.get("Hostname") or cid[:12],
            share=",".join(shared) or None,
            userns="host" if host_config.get("UsernsMode") == "host" else None,
            network="host" if mode == "host" else mode,
            publish=publish or None,
            expose=list(config.get("ExposedPorts") or {}) or None,
            read_only=bool(host_config.get("ReadonlyRootfs")),
            volume=_binds(host_config),
            tmpfs=_tmpfs(host_config),
            workdir=config.get("WorkingDir") or None,
            user=config.get("User") or None,
            env=[e for e in _list(config.get("Env")) if "=" in e],
            cap_add=cap_add,
            cap_drop=[normalize_cap(c) for c in _list(host_config.get("CapDrop"))],
            ulimit=[(u["Name"], int(u["Soft"]), int(u["Hard"])) for u in _list(host_config.get("Ulimits"))],
            interval=60.0,  # no sampling: `docker stats` reads the cgroup when asked
            name=name,
            no_diff=True,
        )
    except SpecError as e:
        raise ApiError(400, str(e)) from None
    except (KeyError, TypeError, ValueError) as e:
        raise ApiError(400, f"invalid container configuration: {e}") from None
    changes: dict[str, Any] = {"seccomp": _security(host_config), "writable_layer": writable_layer}
    if entrypoint is not None:
        changes["entrypoint"] = tuple(e for e in entrypoint if e)
    if aliases and mode not in ("bridge", "none", "host"):
        changes["network_aliases"] = tuple(aliases)
    extra = tuple(n for n in (endpoints or {}) if n not in (mode, "default", host_config.get("NetworkMode")))
    if extra:
        changes["extra_networks"] = extra
    if mode == "host":
        changes["hostname"] = None  # the host's UTS namespace is not shared, but Docker keeps the host's name
    try:
        return spec.with_(**changes)
    except SpecError as e:
        raise ApiError(400, str(e)) from None


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)
