"""A bundle's config.json read the way runc reads it: mount options to mount(2) flags, namespaces with
their paths, capabilities as masks, id maps, rlimits, hooks.

This is the runtime side of the OCI runtime spec (what a runtime does with a config written by someone
else: containerd, podman, the conformance suite), kept lean because every engine call pays for its
imports: plain dicts and small dataclasses, no JSON-schema validation on this path (the checks here are
the ones runc makes, with one line naming the field). Config files of our own are validated against the
schema where they are written (oci/bundle writing).
"""

from __future__ import annotations

import os

from ..errors import InvalidInput
from ..linux.libc import (
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    MS_SILENT,
    MS_SLAVE,
    MS_STRICTATIME,
)
from ..linux.namespaces import (
    CLONE_NEWCGROUP,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWTIME,
    CLONE_NEWUSER,
    CLONE_NEWUTS,
)
from .jsonin import loads  # not json: its import is ~5 ms of every create

TYPE_CHECKING = False  # typing is not imported at run time: every engine call pays its imports
if TYPE_CHECKING:
    from typing import Any

MS_SYNCHRONOUS = 16
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NODIRATIME = 2048
MS_POSIXACL = 1 << 16
MS_UNBINDABLE = 1 << 17
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_I_VERSION = 1 << 23
MS_LAZYTIME = 1 << 25

# option -> (clear, flag), as runc's specconv (a "clear" option removes the flag its "no" form sets)
MOUNT_FLAGS: dict[str, tuple[bool, int]] = {
    "acl": (False, MS_POSIXACL), "async": (True, MS_SYNCHRONOUS), "atime": (True, 1024), "bind": (False, MS_BIND),
    "defaults": (False, 0), "dev": (True, MS_NODEV), "diratime": (True, MS_NODIRATIME),
    "dirsync": (False, MS_DIRSYNC), "exec": (True, MS_NOEXEC), "iversion": (False, MS_I_VERSION),
    "lazytime": (False, MS_LAZYTIME), "loud": (True, MS_SILENT), "mand": (False, MS_MANDLOCK),
    "noacl": (True, MS_POSIXACL), "noatime": (False, 1024), "nodev": (False, MS_NODEV),
    "nodiratime": (False, MS_NODIRATIME), "noexec": (False, MS_NOEXEC), "noiversion": (True, MS_I_VERSION),
    "nolazytime": (True, MS_LAZYTIME), "nomand": (True, MS_MANDLOCK), "norelatime": (True, MS_RELATIME),
    "nostrictatime": (True, MS_STRICTATIME), "nosuid": (False, MS_NOSUID), "nosymfollow": (False, MS_NOSYMFOLLOW),
    "rbind": (False, MS_BIND | MS_REC), "relatime": (False, MS_RELATIME), "remount": (False, MS_REMOUNT),
    "ro": (False, MS_RDONLY), "rw": (True, MS_RDONLY), "silent": (False, MS_SILENT),
    "strictatime": (False, MS_STRICTATIME), "suid": (True, MS_NOSUID), "sync": (False, MS_SYNCHRONOUS),
    "symfollow": (True, MS_NOSYMFOLLOW),
}
PROPAGATION: dict[str, int] = {
    "rprivate": MS_PRIVATE | MS_REC, "private": MS_PRIVATE, "rslave": MS_SLAVE | MS_REC, "slave": MS_SLAVE,
    "rshared": MS_SHARED | MS_REC, "shared": MS_SHARED, "runbindable": MS_UNBINDABLE | MS_REC,
    "unbindable": MS_UNBINDABLE,
}
# mount_setattr(2) attributes for the recursive options (rro, rnosuid, ...): (clear, attr)
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC = 0x1, 0x2, 0x4, 0x8
MOUNT_ATTR__ATIME, MOUNT_ATTR_RELATIME, MOUNT_ATTR_NOATIME, MOUNT_ATTR_STRICTATIME = 0x70, 0x0, 0x10, 0x20
MOUNT_ATTR_NODIRATIME, MOUNT_ATTR_NOSYMFOLLOW = 0x80, 0x200000
REC_ATTRS: dict[str, tuple[bool, int]] = {
    "rro": (False, MOUNT_ATTR_RDONLY), "rrw": (True, MOUNT_ATTR_RDONLY),
    "rnosuid": (False, MOUNT_ATTR_NOSUID), "rsuid": (True, MOUNT_ATTR_NOSUID),
    "rnodev": (False, MOUNT_ATTR_NODEV), "rdev": (True, MOUNT_ATTR_NODEV),
    "rnoexec": (False, MOUNT_ATTR_NOEXEC), "rexec": (True, MOUNT_ATTR_NOEXEC),
    "rnodiratime": (False, MOUNT_ATTR_NODIRATIME), "rdiratime": (True, MOUNT_ATTR_NODIRATIME),
    "rrelatime": (False, MOUNT_ATTR_RELATIME), "rnorelatime": (True, MOUNT_ATTR_RELATIME),
    "rnoatime": (False, MOUNT_ATTR_NOATIME), "ratime": (True, MOUNT_ATTR_NOATIME),
    "rstrictatime": (False, MOUNT_ATTR_STRICTATIME), "rnostrictatime": (True, MOUNT_ATTR_STRICTATIME),
    "rnosymfollow": (False, MOUNT_ATTR_NOSYMFOLLOW), "rsymfollow": (True, MOUNT_ATTR_NOSYMFOLLOW),
}
EXTENSIONS = ("tmpcopyup",)

# The spec's namespace names -> (/proc/PID/ns name, clone flag)
NAMESPACES: dict[str, tuple[str, int]] = {
    "user": ("user", CLONE_NEWUSER), "pid": ("pid", CLONE_NEWPID), "network": ("net", CLONE_NEWNET),
    "ipc": ("ipc", CLONE_NEWIPC), "uts": ("uts", CLONE_NEWUTS), "mount": ("mnt", CLONE_NEWNS),
    "cgroup": ("cgroup", CLONE_NEWCGROUP), "time": ("time", CLONE_NEWTIME),
}
# The order a new process joins existing namespaces in: the user namespace first (joining the others
# needs its capabilities), the mount namespace last (after it, /proc paths of the host may be gone).
JOIN_ORDER = ("user", "ipc", "uts", "network", "pid", "cgroup", "time", "mount")

HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
SUPPORTED_VERSIONS = ("1.0", "1.1", "1.2", "1.3")


class ConfigError(InvalidInput):
    """config.json asks for something invalid or unsupported: one line naming the field."""


class MountSpec:
    def __init__(self, destination: str, type: str, source: str, flags: int = 0, propagation: list[int] | None = None,
                 data: str = "", rec_set: int = 0, rec_clear: int = 0, copyup: bool = False) -> None:
        self.destination = destination
        self.type = type
        self.source = source
        self.flags = flags
        self.propagation: list[int] = propagation if propagation is not None else []
        self.data = data
        self.rec_set = rec_set
        self.rec_clear = rec_clear
        self.copyup = copyup

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & MS_BIND)


def parse_mount(m: dict[str, Any], bundle: str, where: str) -> MountSpec:
    """One `mounts` entry, as runc's parseMountOptions: unknown options are filesystem data."""
    dest = m.get("destination")
    if not isinstance(dest, str) or not dest:
        raise ConfigError(f"{where}/destination: missing")
    if "\0" in dest or "\0" in str(m.get("source", "")):
        raise ConfigError(f"{where}: contains a NUL byte")
    spec = MountSpec(destination=dest, type=str(m.get("type") or ""), source=str(m.get("source") or ""))
    data = []
    for o in m.get("options") or []:
        if o in MOUNT_FLAGS:
            clear, flag = MOUNT_FLAGS[o]
            spec.flags = spec.flags & ~flag if clear else spec.flags | flag
        elif o in PROPAGATION:
            spec.propagation.append(PROPAGATION[o])
        elif o in REC_ATTRS:
            clear, attr = REC_ATTRS[o]
            if clear:
                spec.rec_clear |= attr
            else:
                spec.rec_set |= attr
                if attr & MOUNT_ATTR__ATIME == attr:
                    spec.rec_clear |= MOUNT_ATTR__ATIME
        elif o == "tmpcopyup":
            spec.copyup = True
        else:
            data.append(o)
    spec.data = ",".join(data)
    if spec.is_bind:
        spec.type = "bind"  # the type is meaningless for a bind mount (runc)
        if not os.path.isabs(spec.source):
            spec.source = os.path.join(bundle, spec.source)
    return spec


class Namespace:
    def __init__(self, type: str, path: str | None) -> None:
        self.type = type
        self.path = path

    @property
    def flag(self) -> int:
        return NAMESPACES[self.type][1]


class Config:
    """config.json with the fields a runtime acts on made typed; `raw` keeps the whole document."""

    def __init__(self, raw: dict[str, Any], bundle: str, rootfs: str, readonly_root: bool, process: dict[str, Any],
                 mounts: list[MountSpec], namespaces: list[Namespace], linux: dict[str, Any],
                 hooks: dict[str, list[dict[str, Any]]], annotations: dict[str, str]) -> None:
        self.raw = raw
        self.bundle = bundle
        self.rootfs = rootfs
        self.readonly_root = readonly_root
        self.process = process
        self.mounts = mounts
        self.namespaces = namespaces
        self.linux = linux
        self.hooks = hooks
        self.annotations = annotations
        self.host_root_mount: str | None = None  # where a root of "/" is bound (rootfs.prepare_root)

    def has_ns(self, kind: str) -> bool:
        return any(n.type == kind for n in self.namespaces)

    def ns(self, kind: str) -> Namespace | None:
        for n in self.namespaces:
            if n.type == kind:
                return n
        return None

    def new_ns_flags(self) -> int:
        f = 0
        for n in self.namespaces:
            if not n.path:
                f |= n.flag
        return f

    @property
    def hostname(self) -> str | None:
        h = self.raw.get("hostname")
        return h if isinstance(h, str) else None


def load(bundle: str) -> Config:
    """Read and check `bundle`/config.json. Raises ConfigError (one line) or OSError."""
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            raw = loads(f.read())
    except FileNotFoundError:
        raise ConfigError("JSON specification file config.json not found") from None
    except ValueError as e:
        raise ConfigError(f"config.json: not valid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError("config.json: the top level must be an object")
    return parse(raw, bundle)


def _obj(d: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    v = d.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ConfigError(f"config.json: {where}{key}: must be an object")
    return v


def parse(raw: dict[str, Any], bundle: str) -> Config:
    version = raw.get("ociVersion")
    if not isinstance(version, str) or not version:
        raise ConfigError("config.json: ociVersion: missing")
    if not version.startswith(tuple(v + "." for v in SUPPORTED_VERSIONS)) and version not in SUPPORTED_VERSIONS:
        raise ConfigError(f"config.json: ociVersion {version!r} is not supported (1.0 to 1.3)")
    root = _obj(raw, "root", "")
    root_path = root.get("path")
    if not isinstance(root_path, str) or not root_path:
        raise ConfigError("config.json: root/path: missing: the bundle must name its root filesystem")
    rootfs = root_path if os.path.isabs(root_path) else os.path.join(bundle, root_path)
    rootfs = os.path.realpath(rootfs)
    if not os.path.isdir(rootfs):
        raise ConfigError(f"rootfs ({rootfs}) does not exist")
    process = _obj(raw, "process", "")
    if not process:
        raise ConfigError("config.json: process: missing")
    args = process.get("args")
    if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
        raise ConfigError("config.json: process/args: must be a non-empty list of strings")
    cwd = process.get("cwd")
    if not isinstance(cwd, str) or not os.path.isabs(cwd):
        raise ConfigError(f"config.json: process/cwd: {cwd!r} must be an absolute path")
    linux = _obj(raw, "linux", "")
    namespaces = []
    seen = set()
    for i, n in enumerate(linux.get("namespaces") or []):
        t = n.get("type") if isinstance(n, dict) else None
        if t not in NAMESPACES:
            raise ConfigError(f"config.json: linux/namespaces/{i}/type: unknown {t!r}: expected one of "
                              + ", ".join(NAMESPACES))
        if t in seen:
            raise ConfigError(f"config.json: linux/namespaces/{i}: duplicate {t} namespace")
        seen.add(t)
        path = n.get("path") or None
        if path is not None and not os.path.isabs(path):
            raise ConfigError(f"config.json: linux/namespaces/{i}/path: {path!r} must be absolute")
        namespaces.append(Namespace(t, path))
    new_user = any(n.type == "user" for n in namespaces)
    if (linux.get("uidMappings") or linux.get("gidMappings")) and not new_user:
        raise ConfigError("config.json: linux/uidMappings: id mappings need a user namespace")
    if new_user and not any(n.type == "user" and n.path for n in namespaces):
        if not linux.get("uidMappings") or not linux.get("gidMappings"):
            raise ConfigError("config.json: linux/uidMappings: a new user namespace needs uidMappings and "
                              "gidMappings")
    hostname = raw.get("hostname")
    if hostname and not any(n.type == "uts" for n in namespaces):
        raise ConfigError("config.json: hostname: setting it needs a new UTS namespace")
    if linux.get("sysctl") and not isinstance(linux["sysctl"], dict):
        raise ConfigError("config.json: linux/sysctl: must be an object")
    mounts = [parse_mount(m, bundle, f"config.json: mounts/{i}") for i, m in enumerate(raw.get("mounts") or [])]
    hooks: dict[str, list[dict[str, Any]]] = {}
    for kind, entries in _obj(raw, "hooks", "").items():
        if kind not in HOOK_KINDS:
            continue  # unknown hook kinds are the spec's future, not an error
        for i, h in enumerate(entries or []):
            if not isinstance(h, dict) or not isinstance(h.get("path"), str) or not os.path.isabs(h["path"]):
                raise ConfigError(f"config.json: hooks/{kind}/{i}/path: must be an absolute path")
        hooks[kind] = list(entries or [])
    return Config(raw=raw, bundle=bundle, rootfs=rootfs, readonly_root=bool(root.get("readonly")),
                  process=process, mounts=mounts, namespaces=namespaces, linux=linux, hooks=hooks,
                  annotations=dict(raw.get("annotations") or {}))


def cap_mask(names: list[str] | None, where: str) -> int:
    """A capability list (`CAP_SYS_ADMIN`, ...) as a mask; capabilities this kernel lacks are ignored, as
    runc does (with a warning there)."""
    from ..linux.caps import CAP_NUMBERS, last_cap

    top = last_cap()
    m = 0
    for n in names or []:
        if not isinstance(n, str) or not n.startswith("CAP_"):
            raise ConfigError(f"config.json: {where}: unknown capability {n!r}")
        num = CAP_NUMBERS.get(n[4:])
        if num is None:
            raise ConfigError(f"config.json: {where}: unknown capability {n!r}")
        if num <= top:
            m |= 1 << num
    return m


def id_map_text(entries: list[dict[str, Any]] | None) -> str:
    return "".join(f"{int(e['containerID'])} {int(e['hostID'])} {int(e['size'])}\n" for e in entries or [])


def host_id(entries: list[dict[str, Any]] | None, inside: int) -> int | None:
    """The host id a container id maps to (None: unmapped)."""
    for e in entries or []:
        first, size = int(e["containerID"]), int(e["size"])
        if first <= inside < first + size:
            return int(e["hostID"]) + inside - first
    return None


__all__ = ["Config", "ConfigError", "HOOK_KINDS", "JOIN_ORDER", "MountSpec", "NAMESPACES", "Namespace", "cap_mask",
           "host_id", "id_map_text", "load", "parse", "parse_mount"]
