"""Views for `%cgroup`: DataFrames of the hierarchy, memberships, stats and control files; plots of a
group's samples (OOM kill marked with the counters that moved), of a CPU competition; ipywidgets for
`watch` and the OOM slider. Every frame carries `attrs["cgroup"]` ("v1"/"v2"): which version it read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..lab.experiments import Competition
from ..lab.group_run import GroupRun, GroupSample
from ..linux.cgroups import Cgroup, explore
from .format import MiB, human_bytes
from .plots import OOM_COLOUR, OOM_GID, figure_png


def _frame(rows: list[dict[str, Any]], columns: list[str], version: str) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=columns)
    df.attrs["cgroup"] = version
    return df


def tree_frame(nodes: Sequence[explore.TreeNode]) -> pd.DataFrame:
    version = nodes[0].version if nodes else "?"
    rows = [{
        "cgroup": "  " * n.depth + (n.path.rsplit("/", 1)[-1] or "/") if n.path != "/" else "/",
        "path": n.path, "controllers": " ".join(n.controllers), "procs": n.nprocs,
        "memory": n.memory_current, "memory_limit": n.memory_limit, "cpus": n.cpu_quota,
        "pids": n.pids_current, "pids_limit": n.pids_limit,
    } for n in nodes]
    cols = ["cgroup", "path", "controllers", "procs", "memory", "memory_limit", "cpus", "pids", "pids_limit"]
    df = _frame(rows, cols, version)
    for c in ("procs", "memory", "memory_limit", "pids", "pids_limit"):
        df[c] = df[c].astype("Int64")
    return df


def membership_frame(rows: Sequence[explore.Membership]) -> pd.DataFrame:
    version = "v2" if rows and all(r.version == "v2" for r in rows) else "v1"
    data = [{"hierarchy": r.hierarchy_id, "controllers": ",".join(r.controllers) or "(unified)",
             "path": r.path, "version": r.version} for r in rows]
    return _frame(data, ["hierarchy", "controllers", "path", "version"], version)


def stats_frame(cg: Cgroup) -> pd.DataFrame:
    """memory.stat, memory events, cpu.stat, pids and io counters as (source, key, value) rows."""
    rows: list[dict[str, Any]] = []
    v2 = cg.version == "v2"
    sources = [
        ("memory.stat", explore.memory_stat(cg)),
        ("memory.events" if v2 else "memory.oom_control+failcnt", explore.memory_events(cg)),
        ("cpu.stat", explore.cpu_stat(cg)),
        ("pids.events", explore.pids_events(cg)),
        ("io.stat" if v2 else "io (v1: blkio not managed, see note)", explore.io_stat(cg)),
    ]
    for src, values in sources:
        for k, v in values.items():
            rows.append({"source": src, "key": k, "value": v})
    st = cg.stats()
    for k in ("memory_current", "memory_peak", "memory_limit", "swap_current", "pids_current", "pids_peak",
              "pids_limit"):
        rows.append({"source": "summary", "key": k, "value": getattr(st, k)})
    pr = explore.pressure(cg)
    if pr is not None:
        for res in ("cpu", "memory", "io"):
            for k, v in getattr(pr, res).items():
                rows.append({"source": f"pressure {res} ({pr.scope})", "key": k, "value": v})
    df = _frame(rows, ["source", "key", "value"], cg.version)
    if not v2:
        df.attrs["note"] = "cgroup v1: " + explore.V2_ONLY["psi"]
    return df


def files_frame(files: Sequence[explore.ControlFile], version: str, width: int = 120) -> pd.DataFrame:
    rows = []
    for f in files:
        value = f.value if f.value is not None else f"({f.error})"
        one = value.replace("\n", " | ")
        rows.append({"controller": f.controller, "file": f.name,
                     "value": one if len(one) <= width else one[: width - 1] + "…",
                     "writable": f.writable, "path": f.path})
    return _frame(rows, ["controller", "file", "value", "writable", "path"], version)


def samples_frame(samples: Sequence[GroupSample], version: str = "?") -> pd.DataFrame:
    rows = [s.__dict__ for s in samples]
    cols = ["t", "memory", "cpu_ns", "pids", "oom_kill", "nr_throttled", "throttled_usec", "psi_cpu", "psi_memory",
            "pids_refused"]
    df = _frame(rows, cols, version)
    if len(df) > 1:
        dt = df["t"].diff()
        df["cpu_percent"] = (df["cpu_ns"].diff() / 1e9 / dt * 100).fillna(0.0)
    else:
        df["cpu_percent"] = 0.0
    return df


def counters_frame(r: GroupRun) -> pd.DataFrame:
    keys = sorted(set(r.before) | set(r.after))
    rows = [{"counter": k, "before": r.before.get(k), "after": r.after.get(k),
             "delta": (r.after.get(k) or 0) - (r.before.get(k) or 0)} for k in keys]
    return _frame(rows, ["counter", "before", "after", "delta"], r.version)


# -- plots ------------------------------------------------------------------------------------------


def plot_samples(samples: Sequence[GroupSample], *, title: str = "", version: str = "?",
                 memory_limit: int | None = None, memory_high: int | None = None, pids_limit: int | None = None,
                 oom_at: float | None = None, oom_text: str = "", throttling: bool = True) -> Figure:
    """Memory, CPU %, pids and (with throttling) nr_throttled/PSI over time."""
    df = samples_frame(samples, version)
    n = 4 if throttling else 3
    fig = Figure(figsize=(8, 1.9 * n), layout="constrained")
    axes = fig.subplots(n, 1, sharex=True)
    t = df["t"].to_numpy(dtype=float)
    ax = axes[0]
    ax.plot(t, df["memory"].to_numpy(dtype=float) / MiB, label="memory", color="C0")
    if memory_limit is not None:
        ax.axhline(memory_limit / MiB, ls="--", color="C3", label="memory limit")
    if memory_high is not None:
        ax.axhline(memory_high / MiB, ls=":", color="C1", label="memory.high")
    ax.set_ylabel("memory (MiB)")
    axes[1].plot(t, df["cpu_percent"].to_numpy(dtype=float), color="C1", label="CPU")
    axes[1].set_ylabel("CPU %")
    axes[2].step(t, df["pids"].to_numpy(dtype=float), where="post", color="C2", label="pids")
    if pids_limit is not None:
        axes[2].axhline(pids_limit, ls="--", color="C3", label="pids limit")
    axes[2].set_ylabel("pids")
    if throttling:
        thr = df["nr_throttled"].astype(float).to_numpy()
        axes[3].plot(t, thr - (thr[0] if len(thr) and not np.isnan(thr[0]) else 0), color="C4",
                     label="nr_throttled")
        axes[3].set_ylabel("throttled periods")
        if df["psi_cpu"].notna().any():
            ax2 = axes[3].twinx()
            ax2.plot(t, df["psi_cpu"].astype(float), color="C5", ls=":", label="PSI cpu some avg10")
            ax2.plot(t, df["psi_memory"].astype(float), color="C6", ls=":", label="PSI memory some avg10")
            ax2.set_ylabel("PSI %")
            ax2.legend(loc="upper right", fontsize="small")
    if oom_at is not None:
        for a in axes:
            a.axvline(oom_at, color=OOM_COLOUR, lw=1.5, gid=OOM_GID)
        axes[0].annotate("OOM kill" + (f"\n{oom_text}" if oom_text else ""), (oom_at, axes[0].get_ylim()[1]),
                         color=OOM_COLOUR, fontsize="small", va="top", ha="right")
    for a in axes:
        if a.get_legend_handles_labels()[0]:
            a.legend(loc="upper left", fontsize="small")
    axes[-1].set_xlabel("seconds")
    fig.suptitle(f"{title} [cgroup {version}]".strip())
    return fig


def plot_group_run(r: GroupRun, title: str = "") -> Figure:
    moved = ", ".join(f"{k} {a}→{b}" for k, (a, b) in r.moved.items())
    mem = r.limits.get("memory")
    return plot_samples(r.samples, title=title or f"{r.group}: {r.status}", version=r.version,
                        memory_limit=mem, memory_high=r.limits.get("memory_high"),
                        pids_limit=r.limits.get("pids_max"), oom_at=r.oom_at if r.oom_killed else None,
                        oom_text=moved)


def plot_competition(c: Competition) -> Figure:
    fig = Figure(figsize=(8, 3.2), layout="constrained")
    ax = fig.subplots()
    for i, (label, run) in enumerate(zip(c.labels, c.runs, strict=True)):
        df = samples_frame(run.samples, run.version)
        ax.plot(df["t"], df["cpu_percent"], label=f"{label}: {c.cpu_seconds[i]:.2f} CPU s", color=f"C{i}")
    ax.set_ylabel("CPU %")
    ax.set_xlabel("seconds")
    ax.legend(loc="upper right", fontsize="small")
    where = f"pinned to CPU {c.cpuset}" if c.cpuset else "all CPUs"
    fig.suptitle(f"two groups competing ({where}), ratio {c.ratio:.2f} [cgroup {c.runs[0].version}]")
    return fig


def run_summary(r: GroupRun) -> str:
    moved = ", ".join(f"{k} {a}→{b}" for k, (a, b) in r.moved.items()) or "none"
    peak = r.after.get("memory_peak")
    lines = [f"[cgroup {r.version}] {r.group}: {r.status} after {r.duration:.2f} s; "
             f"peak memory {human_bytes(peak)}; counters moved: {moved}"]
    lines += [f"kernel: {m}" for m in r.kernel_messages]
    return "\n".join(lines)


# -- widgets ----------------------------------------------------------------------------------------


class WatchView:
    """A live figure (PNG in an ipywidgets.Image) and a label, redrawn at most every `min_interval` s."""

    def __init__(self, title: str, version: str, min_interval: float = 0.5, **plot_kwargs: Any) -> None:
        import ipywidgets as widgets

        self.title = title
        self.version = version
        self.plot_kwargs = plot_kwargs
        self.samples: list[GroupSample] = []
        self.min_interval = min_interval
        self._last = 0.0
        self.redraws = 0
        self.label = widgets.HTML(value=f"<b>{title}</b> [cgroup {version}]")
        self.image = widgets.Image(format="png")
        self.box = widgets.VBox([self.label, self.image])

    def push(self, s: GroupSample) -> None:
        self.samples.append(s)
        now = time.monotonic()
        if now - self._last >= self.min_interval:
            self.refresh()

    def refresh(self) -> None:
        self._last = time.monotonic()
        s = self.samples[-1] if self.samples else None
        if s is not None:
            self.label.value = (f"<b>{self.title}</b> [cgroup {self.version}] t {s.t:.1f} s, "
                                f"memory {human_bytes(s.memory)}, pids {s.pids}, oom_kill {s.oom_kill}, "
                                f"nr_throttled {s.nr_throttled}")
        if len(self.samples) > 1:
            fig = plot_samples(self.samples, title=self.title, version=self.version, **self.plot_kwargs)
            self.image.value = figure_png(fig, dpi=72)
            self.redraws += 1

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.box._repr_mimebundle_(**kwargs)


class OomExplorer:
    """A memory-limit slider that re-runs a memory hog and shows where (and whether) it is killed."""

    def __init__(self, run: Callable[[int], GroupRun], hog: int, start_mib: int, max_mib: int) -> None:
        import ipywidgets as widgets

        self._run = run
        self.hog = hog
        self.slider = widgets.IntSlider(value=start_mib, min=16, max=max_mib, step=4, description="limit MiB",
                                        continuous_update=False)
        self.label = widgets.HTML()
        self.image = widgets.Image(format="png")
        self.box = widgets.VBox([self.slider, self.label, self.image])
        self.results: list[GroupRun] = []
        self.slider.observe(lambda change: self.update(change["new"]), names="value")

    def update(self, mib: int | None = None) -> GroupRun:
        r = self._run((mib if mib is not None else self.slider.value) * MiB)
        self.results.append(r)
        self.label.value = "<pre>" + run_summary(r).replace("<", "&lt;") + "</pre>"
        from .experiment_plots import plot_oom

        self.image.value = figure_png(plot_oom(r), dpi=72)
        return r

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.box._repr_mimebundle_(**kwargs)


__all__ = ["OomExplorer", "WatchView", "counters_frame", "files_frame", "membership_frame", "plot_competition",
           "plot_group_run", "plot_samples", "run_summary", "samples_frame", "stats_frame", "tree_frame"]
