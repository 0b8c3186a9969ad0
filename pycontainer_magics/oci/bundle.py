"""A ContainerSpec as an OCI runtime bundle: `config.json` (runtime-spec 1.x) plus the root filesystem.

Everything of a spec that the runtime specification can express goes into the config: the process
(args, env, cwd, user, capabilities, rlimits, no_new_privileges), hostname, mounts (the standard ones
plus volumes and tmpfs), namespaces, id mappings, time offsets, cgroup resources, masked and read-only
paths. The result validates against the runtime-spec JSON schemas shipped in `schemas/runtime-spec/`
and runs under crun and runc.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
from functools import cache
from typing import Any

from ..errors import InvalidInput
from ..linux import libc
from ..linux.cgroups import DEFAULT_PARENT
from ..linux.files import write_json
from ..linux.namespaces import NAMESPACE_KINDS
from ..linux.rlimits import NAMES as RLIMIT_NAMES
from ..linux.seccomp import SeccompError, compile_profile
from ..runtime.plan import (
    Chdir,
    Exec,
    JoinCgroup,
    KeepCapabilities,
    MapIds,
    NoNewPrivs,
    Seccomp,
    SetHostname,
    SetRlimit,
    SetupPlan,
    SetUser,
    Unshare,
)
from ..runtime.rootfs import MountOp
from ..runtime.run import bundle_plan
from ..runtime.seccomp_profile import from_json, profile_for, to_oci
from ..runtime.spec import ContainerSpec

OCI_VERSION = "1.0.2"  # what runc 1.1 and crun 1.8 accept; the fields used here are all in the schema
SCHEMA_DIR = os.path.join(os.path.dirname(__file__), "schemas", "runtime-spec")
# Our namespace names -> the spec's (it says "network" where /proc says "net").
OCI_NAMESPACE = {"mount": "mount", "uts": "uts", "ipc": "ipc", "pid": "pid", "net": "network", "user": "user",
                 "cgroup": "cgroup", "time": "time"}
CPU_PERIOD = 100000


class BundleError(InvalidInput):
    """The spec cannot be written as a bundle, or a config is not valid: one line, naming the field."""


def _maps(text: str) -> list[dict[str, int]]:
    out = []
    for line in text.splitlines():
        inside, outside, count = (int(x) for x in line.split())
        out.append({"containerID": inside, "hostID": outside, "size": count})
    return out


_FLAG_WORDS = ((libc.MS_NOSUID, "nosuid"), (libc.MS_NODEV, "nodev"), (libc.MS_NOEXEC, "noexec"),
               (libc.MS_RDONLY, "ro"))


def _options(op: MountOp) -> list[str]:
    words = [w for bit, w in _FLAG_WORDS if op.flags & bit]
    if op.read_only and "ro" not in words:
        words.append("ro")
    return words + (op.data.split(",") if op.data else [])


def _mounts(plan: SetupPlan, new: set[str]) -> list[dict[str, Any]]:
    """The plan's mount steps as the spec's `mounts`. The runtime makes /dev's nodes and links itself
    (devnode, symlink and mkdir steps are ours alone); masks and read-only paths go to `linux`."""
    out: list[dict[str, Any]] = []
    for op in plan.of(MountOp):
        if op.action == "bind":
            out.append({"destination": op.target, "type": "bind", "source": op.source,
                        "options": ["rbind", "ro" if op.read_only else "rw"]})
        elif op.action == "mount" and op.fstype == "sysfs" and "net" not in new:
            # sysfs belongs to a network namespace: with the host's, bind the host's /sys (runc's rootless spec)
            out.append({"destination": op.target, "type": "none", "source": op.fallback or "/sys",
                        "options": ["rbind", *_options(op)]})
        elif op.action == "mount":
            out.append({"destination": op.target, "type": op.fstype, "source": op.source, "options": _options(op)})
    return out


def _rlimits(plan: SetupPlan) -> list[dict[str, Any]]:
    """The plan's rlimit steps (--ulimit); the open-files limit, which matters most, is the caller's unless
    given (what our containers inherit)."""
    steps = plan.of(SetRlimit)
    out = [{"type": "RLIMIT_" + st.name.upper(), "soft": _rlim(st.soft), "hard": _rlim(st.hard)} for st in steps]
    if not any(st.name == "nofile" for st in steps):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        out.append({"type": "RLIMIT_NOFILE", "hard": hard, "soft": soft})
    return out


def _rlim(v: int) -> int:
    return 2**64 - 1 if v == -1 else v  # RLIM_INFINITY, as the spec's uint64 writes it


def _resources(limits: dict[str, Any]) -> dict[str, Any]:
    """The cgroup step's limits as the spec's `linux.resources`."""
    res: dict[str, Any] = {}
    if limits.get("memory") is not None:
        # runc's swap is memory + swap, as Docker's --memory-swap; no --memory-swap means no swap.
        res["memory"] = {"limit": limits["memory"], "swap": limits.get("memory_swap", limits["memory"])}
    cpu: dict[str, Any] = {}
    if "cpus" in limits:
        cpu.update(quota=int(limits["cpus"] * CPU_PERIOD), period=CPU_PERIOD)
    if "cpu_shares" in limits:
        cpu["shares"] = limits["cpu_shares"]
    if "cpuset_cpus" in limits:
        cpu["cpus"] = limits["cpuset_cpus"]
    if cpu:
        res["cpu"] = cpu
    if "pids" in limits:
        res["pids"] = {"limit": limits["pids"]}
    return res


def config_for(spec: ContainerSpec, root_path: str = "rootfs") -> dict[str, Any]:
    """The config.json of a bundle running `spec` (a command: a Python cell lives in the kernel's memory,
    which no bundle can carry). Read from the spec's setup plan (runtime/plan.py), the same steps a run
    takes, so the export is not a second description of the container."""
    if spec.python_code is not None:
        raise BundleError("a Python cell cannot be written as a bundle (it runs in a fork of the notebook "
                          "kernel): give a command, like `-- sh -c '...'`")
    plan = bundle_plan(spec)
    unshare = plan.of(Unshare)[0]
    mounts = plan.of(MountOp)
    exe = plan.of(Exec)[0]
    caps = sorted(f"CAP_{c}" for c in plan.of(KeepCapabilities)[0].keep)
    user = next(iter(plan.of(SetUser)), None)
    # A new time namespace only with offsets: without them it changes nothing, and runc before 1.2 refuses
    # the "time" type (the spec has it since 1.1).
    new = [k for k in unshare.namespaces if k != "time" or unshare.time_offsets]
    linux: dict[str, Any] = {
        # Under the project's own parent, as our containers are (a runtime's default would be the root).
        "cgroupsPath": f"/{DEFAULT_PARENT}/bundle-{os.urandom(4).hex()}",
        "namespaces": [{"type": OCI_NAMESPACE[k]} for k in new],
        "resources": _resources(dict(plan.of(JoinCgroup)[0].limits)),
        "maskedPaths": [m.target for m in mounts if m.action == "mask"],
        "readonlyPaths": [m.target for m in mounts if m.action == "readonly"],
    }
    for ids in plan.of(MapIds):
        linux["uidMappings"] = _maps(ids.uid_map)
        linux["gidMappings"] = _maps(ids.gid_map)
    if unshare.time_offsets:
        linux["timeOffsets"] = {clock: {"secs": secs, "nanosecs": 0} for clock, secs in unshare.time_offsets}
    config: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": user.uid, "gid": user.gid} if user else {"uid": 0, "gid": 0},
            "args": list(exe.argv),
            "env": [f"{k}={v}" for k, v in exe.env],
            "cwd": plan.of(Chdir)[0].path,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": _rlimits(plan),
            "noNewPrivileges": bool(plan.of(NoNewPrivs)),
        },
        "root": {"path": root_path, "readonly": spec.read_only},
        "mounts": _mounts(plan, set(unshare.namespaces)),
        "linux": linux,
    }
    for h in plan.of(SetHostname):
        config["hostname"] = h.name
    if plan.of(Seccomp):
        profile = profile_for(spec.seccomp, spec.capabilities)
        if profile is not None:
            linux["seccomp"] = to_oci(profile)
    return config


@cache
def _validator(schema_name: str = "config-schema.json") -> Any:
    from ..linux.jsonschema_import import import_jsonschema

    jsonschema = import_jsonschema()
    from referencing import Registry
    from referencing.jsonschema import DRAFT4

    resources = []
    for name in os.listdir(SCHEMA_DIR):
        if name.endswith(".json"):
            with open(os.path.join(SCHEMA_DIR, name)) as f:  # draft-04, not every file says so
                resources.append((name, DRAFT4.create_resource(json.load(f))))
    registry = Registry().with_resources(resources)
    schema = registry.contents(schema_name)
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, registry=registry)


def validate_config(config: dict[str, Any]) -> None:
    """Raise BundleError naming the first field that violates the runtime-spec schema."""
    from ..linux.jsonschema_import import import_jsonschema

    best_match = import_jsonschema().exceptions.best_match

    e = best_match(_validator().iter_errors(config))
    if e is not None:
        while e.context:  # inside anyOf/oneOf: the branch that got furthest says what is wrong
            e = best_match(e.context) or e
            if not e.context:
                break
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise BundleError(f"config.json: {where}: {e.message}")


def validate_state(state: dict[str, Any]) -> None:
    """Raise BundleError naming the first field of a runtime state that violates state-schema.json."""
    from ..linux.jsonschema_import import import_jsonschema

    e = import_jsonschema().exceptions.best_match(_validator("state-schema.json").iter_errors(state))
    if e is not None:
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise BundleError(f"state: {where}: {e.message}")


def write_bundle(spec: ContainerSpec, directory: str, *, copy_rootfs: bool = False) -> str:
    """Write `directory`/config.json for `spec`; returns its path. The root filesystem is `--rootfs` (the
    bundle points at it, or holds a copy with copy_rootfs) or, for the host image, the host's / read-only."""
    if spec.rootfs is None:
        root_path, spec = "/", spec.with_(read_only=True)  # the host image: its files, never written
    elif copy_rootfs:
        root_path = "rootfs"
        shutil.copytree(spec.rootfs, os.path.join(directory, "rootfs"), symlinks=True)
    else:
        root_path = spec.rootfs
    config = config_for(spec, root_path)
    validate_config(config)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "config.json")
    write_json(path, config)
    return path


# -- the other way: a bundle (ours, crun's or runc's) as a ContainerSpec --------------------------------

STANDARD_MOUNTS = {"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"}
OUR_NAMESPACE = {v: k for k, v in OCI_NAMESPACE.items()}


def _size_option(options: list[str]) -> int | None:
    for o in options:
        if o.startswith("size="):
            v = o[5:].lower()
            mult = {"k": 2**10, "m": 2**20, "g": 2**30}.get(v[-1:], 1)
            return int(v[:-1] if v[-1:] in "kmg" else v) * mult
    return None


def spec_from_config(config: dict[str, Any], bundle: str, name: str | None = None
                     ) -> tuple[ContainerSpec, list[str]]:
    """A ContainerSpec that runs what `config` describes, and notes on what it could not carry over
    (rlimits, a terminal). Raises BundleError naming the field for what this runtime cannot do."""
    from ..runtime.spec import IdMap, Mount, SpecError, Tmpfs

    validate_config(config)
    notes: list[str] = []
    for kind, hooks in (config.get("hooks") or {}).items():
        if hooks:  # a hook skipped in silence would be a setup step (a network, a mount) that never happened
            raise BundleError(f"config.json: hooks/{kind}: this path runs the bundle as a container of the lab and "
                              "runs no hooks: run it with `pycontainer create` and `pycontainer start` (the OCI "
                              "runtime, which runs hooks as the spec says), or remove the hooks")
    root = config.get("root") or {}
    root_path = root.get("path")
    if not root_path:
        raise BundleError("config.json: root/path: missing: the bundle must name its root filesystem")
    root_path = root_path if os.path.isabs(root_path) else os.path.join(bundle, root_path)
    if not os.path.isdir(root_path):
        raise BundleError(f"config.json: root/path: {root_path} is not a directory")
    proc = config.get("process") or {}
    if not proc.get("args"):
        raise BundleError("config.json: process/args: missing: nothing to run")
    if proc.get("terminal"):
        notes.append("process/terminal: no terminal here; the process gets pipes")
    ulimits: list[tuple[str, int, int]] = []
    for i, rl in enumerate(proc.get("rlimits") or []):
        kind = str(rl.get("type", ""))
        name = kind.removeprefix("RLIMIT_").lower()
        if not kind.startswith("RLIMIT_") or name not in RLIMIT_NAMES:
            raise BundleError(f"config.json: process/rlimits/{i}/type: unknown {kind!r}: expected one of "
                              + ", ".join("RLIMIT_" + n.upper() for n in sorted(RLIMIT_NAMES)))
        soft, hard = (-1 if int(rl[k]) >= 2**63 else int(rl[k]) for k in ("soft", "hard"))
        ulimits.append((name, soft, hard))
    env = []
    for item in proc.get("env", []):
        k, _, v = item.partition("=")
        env.append((k, v))
    user = proc.get("user") or {}
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    caps = {c.removeprefix("CAP_") for c in (proc.get("capabilities") or {}).get("effective", [])}
    from ..linux.caps import CAP_NUMBERS, DEFAULT_CAPS
    unknown = caps - set(CAP_NUMBERS)
    if unknown:
        raise BundleError(f"config.json: process/capabilities/effective: unknown {sorted(unknown)[0]}")
    linux = config.get("linux") or {}
    kinds = []
    for i, ns in enumerate(linux.get("namespaces", [])):
        if ns.get("path"):
            raise BundleError(f"config.json: linux/namespaces/{i}/path: joining an existing namespace is not "
                              "supported here")
        kinds.append(OUR_NAMESPACE[ns["type"]])
    share = frozenset(k for k in NAMESPACE_KINDS if k not in kinds)
    maps: dict[str, Any] = {}
    if "user" in kinds and linux.get("uidMappings"):
        maps = {"userns": "custom",
                "uid_map": tuple(IdMap(m["containerID"], m["hostID"], m["size"]) for m in linux["uidMappings"]),
                "gid_map": tuple(IdMap(m["containerID"], m["hostID"], m["size"])
                                 for m in linux.get("gidMappings", []))}
    res = linux.get("resources") or {}
    mem, cpu, pids = res.get("memory") or {}, res.get("cpu") or {}, res.get("pids") or {}
    cpus = cpu["quota"] / cpu.get("period", CPU_PERIOD) if cpu.get("quota", -1) > 0 else None
    mounts, tmpfs = [], []
    for i, m in enumerate(config.get("mounts", [])):
        dest, opts = m["destination"], m.get("options", [])
        if dest in STANDARD_MOUNTS:
            continue  # this runtime mounts its own (DESIGN.md's security defaults)
        if m.get("type") == "bind" or "bind" in opts or "rbind" in opts:
            src = m.get("source", "")
            src = src if os.path.isabs(src) else os.path.join(bundle, src)
            mounts.append(Mount(src, dest, read_only="ro" in opts))
        elif m.get("type") == "tmpfs":
            tmpfs.append(Tmpfs(dest, size=_size_option(opts)))
        else:
            raise BundleError(f"config.json: mounts/{i}: a {m.get('type')} mount at {dest} is not supported here")
    offsets = tuple((clock, int(v.get("secs", 0))) for clock, v in (linux.get("timeOffsets") or {}).items())
    # no linux.seccomp: no filter, as runc and crun run such a bundle
    seccomp = json.dumps(linux["seccomp"]) if linux.get("seccomp") else "unconfined"
    if linux.get("seccomp"):
        try:
            compile_profile(from_json(linux["seccomp"], frozenset(caps), "linux/seccomp"))
        except SeccompError as e:
            raise BundleError(f"config.json: {e}") from None
    try:
        spec = ContainerSpec(
            command=tuple(proc["args"]), env=tuple(env), workdir=proc.get("cwd") or "/",
            user=None if (uid, gid) == (0, 0) else f"{uid}:{gid}", rootfs=os.path.realpath(root_path),
            read_only=bool(root.get("readonly")), hostname=config.get("hostname") if "uts" in kinds else None,
            share=share, network="host" if "net" in share else "none", time_offsets=offsets,
            cap_add=frozenset(caps - DEFAULT_CAPS), cap_drop=frozenset(DEFAULT_CAPS - caps),
            no_new_privileges=bool(proc.get("noNewPrivileges")),
            memory=mem.get("limit"), memory_swap=mem.get("swap") if mem.get("limit") else None, cpus=cpus,
            cpu_shares=cpu.get("shares"), cpuset_cpus=cpu.get("cpus") or None, pids_limit=pids.get("limit"),
            mounts=tuple(mounts), tmpfs=tuple(tmpfs), ulimits=tuple(ulimits), seccomp=seccomp, name=name, **maps)
    except SpecError as e:
        raise BundleError(f"config.json: {e}") from None
    return spec, notes


def load_bundle(directory: str, name: str | None = None) -> tuple[ContainerSpec, list[str]]:
    path = os.path.join(directory, "config.json")
    try:
        with open(path) as f:
            config = json.load(f)
    except FileNotFoundError:
        raise BundleError(f"{path}: no such file: a bundle is a directory with config.json") from None
    except json.JSONDecodeError as e:
        raise BundleError(f"{path}: not JSON: {e}") from None
    return spec_from_config(config, os.path.abspath(directory), name)
