"""Run containers: ContainerSpec -> run -> ContainerRun."""

from __future__ import annotations

from .prune import prune
from .result import ContainerRun, DiffEntry, NamespaceRow, Sample
from .run import ContainerInterrupted, LaunchError, run
from .spec import ContainerSpec, IdMap, Mount, SpecError, Tmpfs

__all__ = ["ContainerInterrupted", "ContainerRun", "ContainerSpec", "DiffEntry", "IdMap", "LaunchError", "Mount",
           "NamespaceRow", "Sample", "SpecError", "Tmpfs", "prune", "run"]
