"""A run's samples as numpy columns: what the usage DataFrame (frames.py) and the plot (plots.py) are made of.

Apart from frames.py so that a plot needs no pandas: a notebook whose cells show their plot would otherwise import
it (tens of MiB) into the kernel, and every later Python cell forks the kernel with those pages mapped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..runtime.result import Sample
from .format import MiB


def usage_columns(samples: Sequence[Sample]) -> dict[str, Any]:
    """t, memory, memory_mib, cpu_s, cpu_percent, pids: one entry per sample. cpu_percent is the CPU time used since
    the previous sample over the wall time between them; the first sample is measured from launch (t=0, no CPU used
    yet, as the cgroup is fresh). NaN where no time passed between two samples."""
    t = np.array([s.t for s in samples], dtype="float64")
    memory = np.array([s.memory for s in samples], dtype="int64")
    cpu_s = np.array([s.cpu_ns for s in samples], dtype="float64") / 1e9
    pids = np.array([s.pids for s in samples], dtype="int64")
    dt = np.diff(t, prepend=0.0)
    dcpu = np.diff(cpu_s, prepend=0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        cpu_percent = np.where(dt > 0, dcpu / np.where(dt > 0, dt, 1.0) * 100.0, np.nan)
    return {"t": t, "memory": memory, "memory_mib": memory / MiB, "cpu_s": cpu_s, "cpu_percent": cpu_percent,
            "pids": pids}


__all__ = ["usage_columns"]
