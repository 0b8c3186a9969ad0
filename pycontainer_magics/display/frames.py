"""pandas views of a ContainerRun: usage time series, namespace table, layer diff, summary."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from ..runtime.result import ContainerRun, Sample
from .format import namespace_table
from .usage import usage_columns

USAGE_DTYPES: dict[str, str] = {
    "t": "float64",  # seconds since launch
    "memory": "int64",  # bytes
    "memory_mib": "float64",
    "cpu_s": "float64",  # cumulative CPU seconds (user + system) of the cgroup
    "cpu_percent": "float64",  # CPU use since the previous sample; 100 = one core busy
    "pids": "int64",
}
NAMESPACE_COLUMNS = ("namespace", "container", "host", "isolated")
DIFF_COLUMNS = ("kind", "path", "size", "is_dir")


def _empty(dtypes: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=d) for c, d in dtypes.items()})


def usage_frame(samples: ContainerRun | Sequence[Sample]) -> pd.DataFrame:
    """One row per sample (columns as usage.usage_columns: cpu_percent is the CPU time used since the previous
    sample over the wall time between them; NaN where no time passed between two samples)."""
    if isinstance(samples, ContainerRun):
        samples = samples.samples
    if not samples:
        return _empty(USAGE_DTYPES)
    return pd.DataFrame(usage_columns(samples))


def namespaces_frame(run: ContainerRun) -> pd.DataFrame:
    """namespace, container inode, host inode, isolated: the eight kinds in order mount, uts, ipc,
    pid, net, user, cgroup, time (inodes are nullable Int64: <NA> when not recorded)."""
    rows = namespace_table(run)
    return pd.DataFrame(
        {
            "namespace": pd.Series([r[0] for r in rows], dtype="str"),
            "container": pd.Series([r[1] for r in rows], dtype="Int64"),
            "host": pd.Series([r[2] for r in rows], dtype="Int64"),
            "isolated": pd.Series([r[3] for r in rows], dtype="bool"),
        }
    )


def diff_frame(run: ContainerRun) -> pd.DataFrame:
    """kind (A/C/D), path, size, is_dir — sorted by path, as `docker diff` lists them."""
    entries = sorted(run.diff, key=lambda e: e.path)
    return pd.DataFrame(
        {
            "kind": pd.Series([e.kind for e in entries], dtype="str"),
            "path": pd.Series([e.path for e in entries], dtype="str"),
            "size": pd.Series([e.size for e in entries], dtype="int64"),
            "is_dir": pd.Series([e.is_dir for e in entries], dtype="bool"),
        }
    )


def summary_series(run: ContainerRun) -> pd.Series:
    """run.summary() as an object Series indexed by field name (prints one field per line)."""
    s = pd.Series(run.summary(), dtype=object)
    s.index.name = "field"
    return s


def timeline_frame(run: ContainerRun) -> pd.DataFrame:
    """stage, at_ms (since launch), took_ms (since the previous stage): where a launch spends its time."""
    stages = sorted(run.timeline, key=lambda x: x[1])
    at = [t * 1000 for _, t in stages]
    return pd.DataFrame(
        {
            "stage": pd.Series([s for s, _ in stages], dtype="str"),
            "at_ms": pd.Series(at, dtype="float64"),
            "took_ms": pd.Series([b - a for a, b in zip([0.0, *at[:-1]], at, strict=True)], dtype="float64"),
        }
    )


def containers_frame(containers: Sequence[Any], prepared: Sequence[Any] = ()) -> pd.DataFrame:
    """`docker ps` (and podman's pod column): name, id, image, status, command, ports, network, pod, pid,
    created. `prepared` (runtime.pool.Prepared, for `ps --all`): what is kept ready for the next cell, one row
    each, status "prepared"."""
    import datetime as _dt

    rows = []
    for c in containers:
        spec = c.spec
        what = " ".join(spec.command) if spec.command else "python: " + (spec.python_code or "").strip().split("\n")[0]
        ports = ", ".join(f"{ip}:{hp}->{cp}/{proto}" for ip, hp, cp, proto in spec.publish)
        rows.append({"name": c.name or "", "id": c.id[:12], "image": spec.rootfs or spec.image, "status": c.status,
                     "command": what[:40], "ports": ports, "network": "" if spec.pod else spec.network,
                     "pod": spec.pod or "", "pid": c.pid1,
                     "created": _dt.datetime.fromtimestamp(c.started_at).strftime("%H:%M:%S")})
    for p in prepared:
        rows.append({"name": f"({p.kind})", "id": "", "image": "", "status": "prepared", "command": p.what[:60],
                     "ports": "", "network": "", "pod": "", "pid": p.pid, "created": ""})
    cols = ["name", "id", "image", "status", "command", "ports", "network", "pod", "pid", "created"]
    return pd.DataFrame(rows, columns=cols).astype({"pid": "Int64"})


def stats_frame(containers: Sequence[Any]) -> pd.DataFrame:
    """`docker stats`: name, memory, limit, mem %, CPU seconds, pids (of running containers)."""
    rows = []
    for c in containers:
        st = c.stats()
        if not st:
            continue
        limit = st["memory_limit"]
        rows.append({"name": c.label, "mem_usage": st["memory"], "mem_limit": limit,
                     "mem_percent": None if not limit else round(100 * st["memory"] / limit, 2),
                     "cpu_s": round(st["cpu_s"], 3), "pids": st["pids"]})
    cols = ["name", "mem_usage", "mem_limit", "mem_percent", "cpu_s", "pids"]
    return pd.DataFrame(rows, columns=cols)
