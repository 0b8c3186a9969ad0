"""One container: ContainerSpec -> plan -> launch -> running -> ContainerRun.

Owns the spec and its parsing from option strings (spec.py, parse.py), the root filesystem (rootfs.py),
the launch itself (launch.py, holder.py, zygote.py, pool.py, channel.py), the run and its result (run.py,
result.py, monitor.py), a container's attachment to a network (networking.py), images as root
filesystems (image_source.py), the seccomp profile (seccomp_profile.py), state paths (state.py) and the
clean-up of what a run made (cleanup.py).

May import: linux/, images/, network/ and the package's top-level helpers (paths.py, errors.py). Never
workloads/, oci/, lab/, display/, magics/, cli/ or kernel/; never IPython, pandas, matplotlib or
ipywidgets.
"""

from __future__ import annotations

from .result import ContainerRun, DiffEntry, NamespaceRow, Sample
from .run import ContainerInterrupted, LaunchError, run
from .spec import ContainerSpec, IdMap, Mount, SpecError, Tmpfs

__all__ = ["ContainerInterrupted", "ContainerRun", "ContainerSpec", "DiffEntry", "IdMap", "LaunchError", "Mount",
           "NamespaceRow", "Sample", "SpecError", "Tmpfs", "run"]
