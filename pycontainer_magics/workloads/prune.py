"""Remove what a killed kernel left behind: pods, cgroups, and network endpoints, networks and namespaces
of owners that are gone."""

from __future__ import annotations

from ..runtime.run import hierarchy


def prune() -> list[str]:
    """Remove the project's leftovers whose owner process is dead; returns what was removed."""
    removed: list[str] = []
    try:
        from . import pods
        removed += pods.prune()  # first: a dead pod's infra and endpoint, before the network's sweep
    except OSError:
        pass
    h = hierarchy()
    if h is not None:
        removed += [f"cgroup {name}" for name in h.prune()]
    try:
        from .. import network
        removed += network.prune()
    except OSError:
        pass  # no netlink here (unprivileged): nothing of ours can exist either
    return removed
