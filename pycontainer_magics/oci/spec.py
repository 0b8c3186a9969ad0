"""`spec`: a default config.json, as `runc spec` writes it (`--rootless`: for an unprivileged user)."""

from __future__ import annotations

import errno
import json
import os
from typing import Any

from .bundle import OCI_VERSION, validate_config
from .state import StateError


def default_config(rootless: bool = False) -> dict[str, Any]:
    """runc's default bundle config (args `sh`, root `rootfs` read-only, the standard mounts, masked and
    read-only paths, three capabilities), except that the process gets no terminal (this runtime gives
    none) and the hostname is ours. --rootless: a user namespace mapping the caller to root, no network
    namespace (an unprivileged user cannot configure one), /sys bound from the host."""
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    pts = ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] + ([] if rootless else ["gid=5"])
    sys_mount: dict[str, Any] = (
        {"destination": "/sys", "type": "none", "source": "/sys", "options": ["rbind", "nosuid", "noexec", "nodev",
                                                                              "ro"]}
        if rootless else
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]})
    linux: dict[str, Any] = {
        "namespaces": [{"type": t} for t in (("pid", "ipc", "uts", "mount", "user") if rootless else
                                             ("pid", "network", "ipc", "uts", "mount"))],
        "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                        "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
    }
    if rootless:
        linux["uidMappings"] = [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
    else:
        linux["resources"] = {"devices": [{"allow": False, "access": "rwm"}]}
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted", "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "pycontainer",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": pts},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            sys_mount,
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": linux,
    }


def write_spec(directory: str = ".", rootless: bool = False) -> str:
    """Write `directory`/config.json with the default config; refuses to overwrite one (as runc)."""
    path = os.path.join(directory, "config.json")
    if os.path.exists(path):
        raise StateError(errno.EEXIST, f"{path} exists: remove it first")
    if not os.path.isdir(directory):
        raise StateError(errno.ENOENT, f"{directory}: no such directory")
    config = default_config(rootless)
    validate_config(config)
    with open(path, "x") as f:
        json.dump(config, f, indent="\t")
        f.write("\n")
    return path


__all__ = ["default_config", "write_spec"]
