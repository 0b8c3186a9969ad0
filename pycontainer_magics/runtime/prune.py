"""Remove what a killed kernel left behind: cgroups of owners that are gone."""

from __future__ import annotations

from .run import hierarchy


def prune() -> list[str]:
    """Remove the project's leftovers whose owner process is dead; returns what was removed."""
    h = hierarchy()
    if h is None:
        return []
    return [f"cgroup {name}" for name in h.prune()]
