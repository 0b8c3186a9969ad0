"""Where the project keeps its state on the host, and container ids."""

from __future__ import annotations

import os

from ..linux.cgroups import new_name
from ..paths import run_dir, state_dir


def is_root() -> bool:
    return os.geteuid() == 0


def scratch_dir() -> str:
    d = os.path.join(run_dir(), "scratch")
    os.makedirs(d, mode=0o700, exist_ok=True)
    return d


def data_dirs() -> list[str]:
    """This project's directories on the host (configured and default): what a container must not see of
    the host-as-image (other containers' state, logs, images, volumes)."""
    return sorted({state_dir(), run_dir(), "/var/lib/pycontainer_magics", "/run/pycontainer_magics"})


def volumes_dir() -> str:
    return os.path.join(state_dir(), "volumes")


def volume_path(name: str, create: bool = True) -> str:
    """A named volume's data directory (created on first use, like `docker run -v NAME:/path`)."""
    p = os.path.join(volumes_dir(), name, "_data")
    if create:
        os.makedirs(p, mode=0o755, exist_ok=True)
    return p


def new_id() -> str:
    """`<owner pid>-<n>-<hex>`, the cgroup backends' name format: the owner pid lets prune tell a live
    kernel's containers from a dead one's."""
    return new_name()
