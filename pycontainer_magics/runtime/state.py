"""Where the project keeps its state on the host, and container ids."""

from __future__ import annotations

import os

from ..linux.cgroups import new_name


def is_root() -> bool:
    return os.geteuid() == 0


def state_dir() -> str:
    """Persistent state (named volumes): /var/lib/pycontainer_magics as root, else under XDG_DATA_HOME."""
    env = os.environ.get("PYCONTAINER_STATE_DIR")
    if env:
        return env
    if is_root():
        return "/var/lib/pycontainer_magics"
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "pycontainer_magics")


def run_dir() -> str:
    """Volatile state: the scratch mount point. Every container mounts its own tmpfs over it inside its
    private mount namespace, so one empty directory serves all of them and nothing is left behind."""
    env = os.environ.get("PYCONTAINER_RUN_DIR")
    if env:
        return env
    if is_root():
        return "/run/pycontainer_magics"
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(xdg, "pycontainer_magics") if xdg else f"/tmp/pycontainer_magics-{os.geteuid()}"


def scratch_dir() -> str:
    d = os.path.join(run_dir(), "scratch")
    os.makedirs(d, mode=0o700, exist_ok=True)
    return d


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
