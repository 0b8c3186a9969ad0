"""`features`: what this runtime implements, as the runtime-spec's features document (features.md) that
`runc features` prints and containerd reads — derived from the tables the runtime itself uses, so it
cannot claim more than it does."""

from __future__ import annotations

from ..linux.caps import CAP_NUMBERS, last_cap
from ..linux.seccomp import ACTIONS
from .config import EXTENSIONS, HOOK_KINDS, MOUNT_FLAGS, NAMESPACES, PROPAGATION, REC_ATTRS
from .state import OCI_VERSION

TYPE_CHECKING = False  # typing is not imported at run time: every engine call pays its imports
if TYPE_CHECKING:
    from typing import Any


def features() -> dict[str, Any]:
    top = last_cap()
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": list(HOOK_KINDS),
        "mountOptions": sorted([*MOUNT_FLAGS, *PROPAGATION, *REC_ATTRS, *EXTENSIONS]),
        "linux": {
            "namespaces": sorted(NAMESPACES),
            "capabilities": ["CAP_" + n for n, i in sorted(CAP_NUMBERS.items(), key=lambda kv: kv[1]) if i <= top],
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": {"enabled": True, "actions": sorted(ACTIONS),
                        "operators": ["SCMP_CMP_EQ", "SCMP_CMP_MASKED_EQ"], "archs": ["SCMP_ARCH_X86_64"]},
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {"org.opencontainers.runc.checkpoint.enabled": "false",
                        "io.github.pycontainer_magics.runtime": "pycontainer"},
    }


__all__ = ["features"]
