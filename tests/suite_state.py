"""The suite's own state and run directories (images, networks, volumes, sockets, the notebooks' too): made
when the session starts, unless the caller names them (PYCONTAINER_STATE_DIR / PYCONTAINER_RUN_DIR), and
removed when it ends with what the project made for them (a network's bridge, a killed kernel's leftovers).
A run leaves nothing of its own on the host, and a lab's state on this machine (/var/lib/pycontainer_magics)
is neither used nor pruned by it."""

from __future__ import annotations

import os
import shutil
import tempfile

MADE: dict[str, str] = {}  # variable -> the directory this session made for it


def make() -> None:
    for var, prefix, parent in (("PYCONTAINER_STATE_DIR", "pcm-tests-state-", "/var/tmp"),
                                ("PYCONTAINER_RUN_DIR", "pcm-tests-run-", "/run" if os.geteuid() == 0 else None)):
        if not os.environ.get(var):
            if parent is not None and not os.access(parent, os.W_OK):
                parent = None
            MADE[var] = os.environ[var] = tempfile.mkdtemp(prefix=prefix, dir=parent)


def remove() -> list[str]:
    """Remove what make() made; returns what could not go (a mount under it: never deleted through)."""
    if not MADE:
        return []
    left = []
    try:
        from pycontainer_magics.workloads.prune import prune

        prune()  # a killed kernel's pods, networks and namespaces, by their records in these directories
    except Exception as exc:  # noqa: BLE001 - reported, and the directories still checked below
        left.append(f"prune failed: {exc}")
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for var, path in MADE.items():
        mounted = [p for p in points if p == path or p.startswith(path + "/")]
        if mounted:
            left.append(f"{path} ({var}): still mounted under it: {', '.join(mounted[:5])}")
            continue
        shutil.rmtree(path, ignore_errors=True)
        if os.path.exists(path):
            left.append(f"{path} ({var}): could not be removed")
    state = MADE.get("PYCONTAINER_STATE_DIR")
    if state and os.geteuid() == 0 and not os.path.exists(state):
        left += _remove_links_of(state)
    return left


def _remove_links_of(state: str) -> list[str]:
    """The bridges and host veths the removed state dir's networks had (a default bridge outlives its
    containers, as docker0 does)."""
    try:
        from pycontainer_magics.network import links, networks
        from pycontainer_magics.network.netns import iproute
    except ImportError:
        return []
    with iproute() as ipr:
        names = [str(link.get("ifname")) for link in ipr.get_links()
                 if networks.alias_state_dir(link.get("IFLA_IFALIAS")) == state]
    return [f"link {name} of {state}" for name in names if not links.delete_link(name)]
