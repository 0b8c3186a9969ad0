"""The cgroup experiments as a lecturer draws them on the board: one figure per experiment, showing its point.

- OOM: memory climbing in steps to the limit, the limit line, the kill marked.
- CPU quota: CPU used per window (windows are whole CFS periods, so sampling cannot alias), flat at the quota
  line, and the throttled periods per second.
- Fork bomb: pids pinned at pids.max, the forks the kernel refused per second.
- Shares: two groups competing for one CPU, each one's CPU per window and its fair share.
Time axes start at the first sample; counts have integer ticks; legends sit where the data is not.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..lab.experiments import Competition
from ..lab.group_run import GroupRun
from .format import MiB
from .plots import OOM_COLOUR, OOM_GID

CFS_PERIOD = 0.1  # seconds: the kernel's default cpu.cfs_period_us (v1) / cpu.max period (v2), which we keep


def window_series(t: Sequence[float] | np.ndarray, cumulative: Sequence[float] | np.ndarray, window: float,
                  start: float | None = None, end: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(edges, rate per second between consecutive edges) of a cumulative counter sampled at times `t`, over
    consecutive windows about `window` seconds long from the first sample (or `start`). Each edge is a
    sample (no interpolation: a counter moves in bursts), the one nearest to each multiple of `window`. A
    CPU quota's usage over any stretch of whole CFS periods is the quota times their number, so with samples
    at a divisor of the period and windows of whole periods the quota shows as a flat line, where rates
    between consecutive samples zig-zag (aliasing against the period)."""
    ts = np.asarray(t, dtype=float)
    ys = np.asarray(cumulative, dtype=float)
    ok = np.isfinite(ys)
    ts, ys = ts[ok], ys[ok]
    empty = (np.array([]), np.array([]))
    if len(ts) < 2:
        return empty
    lo = ts[0] if start is None else max(start, ts[0])
    hi = ts[-1] if end is None else min(end, ts[-1])
    if hi - lo < window * 0.75:
        return empty
    targets = np.arange(lo, hi + window * 0.25, window)
    idx = np.unique(np.abs(ts[None, :] - targets[:, None]).argmin(axis=1))
    if len(idx) < 2:
        return empty
    return ts[idx], np.diff(ys[idx]) / np.diff(ts[idx])


def window_rates(t: Sequence[float] | np.ndarray, cumulative: Sequence[float] | np.ndarray, window: float,
                 start: float | None = None, end: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """window_series as (window starts, rates)."""
    edges, rates = window_series(t, cumulative, window, start, end)
    return edges[:-1], rates


def _time_axis(ax: Axes, t: np.ndarray) -> None:
    if len(t):
        ax.set_xlim(float(t[0]), float(t[-1]) + 1e-3)
    ax.set_xlabel("seconds since the process started")


def plot_oom(r: GroupRun, title: str = "") -> Figure:
    """Memory of the group over time, the limit as a dashed line, the OOM kill as a red cross (at the
    kernel's peak) and a red line."""
    t = np.array([s.t for s in r.samples], dtype=float)
    mem = np.array([s.memory for s in r.samples], dtype=float) / MiB
    limit = r.limits.get("memory")
    fig = Figure(figsize=(8, 3.6), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(t, mem, "-o", markersize=2.5, color="C0", label="memory of the group (samples)")
    if limit:
        ax.axhline(limit / MiB, ls="--", color="0.3", label=f"memory limit {limit / MiB:g} MiB")
    peak = r.after.get("memory_peak")
    if r.oom_killed:
        at = r.oom_at if r.oom_at is not None else (float(t[-1]) if len(t) else 0.0)
        y = peak / MiB if peak else (float(mem.max()) if len(mem) else 0.0)
        ax.axvline(at, color=OOM_COLOUR, lw=1, alpha=0.7, gid=OOM_GID)
        ax.plot([at], [y], "X", color=OOM_COLOUR, markersize=11, gid=OOM_GID,
                label=f"OOM kill (oom_kill {r.before.get('oom_kill', 0)}→{r.after.get('oom_kill', 0)})")
    top = max([float(mem.max()) if len(mem) else 0.0, (limit or 0) / MiB, (peak or 0) / MiB])
    ax.set_ylim(0, top * 1.15 or 1)
    ax.set_ylabel("memory (MiB)")
    _time_axis(ax, t)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    hog = r.limits.get("hog")
    what = title or (f"a {hog / MiB:g} MiB memory hog" if hog else r.group)
    ax.set_title(f"{what}: {r.status} [cgroup {r.version}]", fontsize=11)
    return fig


def plot_cpu_quota(r: GroupRun, title: str = "", *, periods: int = 2) -> Figure:
    """Two panels over windows of `periods` CFS periods: CPU used (in CPUs) with the quota line, and the
    periods in which the group was throttled, per second."""
    t = np.array([s.t for s in r.samples], dtype=float)
    window = periods * CFS_PERIOD
    edges, cpu = window_series(t, [s.cpu_ns / 1e9 for s in r.samples], window)
    tedges, thr = window_series(t, [np.nan if s.nr_throttled is None else s.nr_throttled for s in r.samples], window)
    quota = r.limits.get("cpus")
    fig = Figure(figsize=(8, 4.6), layout="constrained")
    ax1, ax2 = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    if len(edges):
        ax1.stairs(cpu, edges, color="C1", lw=2, baseline=None, label=f"CPU used, per {window * 1000:.0f} ms window")
    if quota:
        ax1.axhline(quota, ls="--", color="0.3", label=f"quota {quota:g} CPU (--cpus {quota:g})")
    ax1.set_ylim(0, max(1.05, float(cpu.max()) * 1.1 if len(cpu) else 1.05))
    ax1.set_ylabel("CPUs")
    ax1.legend(loc="upper right", fontsize="small")
    ax1.grid(alpha=0.3)
    if len(tedges):
        ax2.bar(tedges[:-1], thr, width=np.diff(tedges), align="edge", color="C4", alpha=0.7, edgecolor="white",
                label="throttled periods per second")
    ax2.axhline(1 / CFS_PERIOD, ls=":", color="0.3", label=f"every period ({1 / CFS_PERIOD:g}/s)")
    ax2.set_ylim(0, 1.6 / CFS_PERIOD)
    ax2.set_ylabel("throttled / s")
    ax2.legend(loc="upper right", fontsize="small", ncols=2)
    ax2.grid(alpha=0.3)
    _time_axis(ax2, t)
    what = title or (f"a process spinning under --cpus {quota:g}" if quota else "a process spinning, no quota")
    fig.suptitle(f"{what} [cgroup {r.version}, CFS period {CFS_PERIOD * 1000:.0f} ms]", fontsize=11)
    return fig


def plot_fork_bomb(r: GroupRun, title: str = "") -> Figure:
    """pids in the group (pinned at pids.max) and the forks the kernel refused, per second."""
    t = np.array([s.t for s in r.samples], dtype=float)
    pids = np.array([s.pids for s in r.samples], dtype=float)
    limit = r.limits.get("pids_max")
    fig = Figure(figsize=(8, 4.6), layout="constrained")
    ax1, ax2 = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    if limit:
        ax1.axhline(limit, ls="--", color="C3", lw=1.2, label=f"pids.max {limit}", zorder=3)
    ax1.step(t, pids, where="post", color="C2", lw=2.5, label="processes in the group", zorder=2)
    ax1.set_ylim(0, max(float(pids.max()) if len(pids) else 1, limit or 0) * 1.2)
    ax1.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax1.set_ylabel("processes")
    ax1.legend(loc="lower right", fontsize="small")
    ax1.grid(alpha=0.3)
    refused = [np.nan if s.pids_refused is None else s.pids_refused for s in r.samples]
    edges, rate = window_series(t, refused, 0.05)
    if len(edges):
        ax2.bar(edges[:-1], rate, width=np.diff(edges), align="edge", color="C3", alpha=0.7, edgecolor="white",
                label="forks refused per second (pids.events max)")
        ax2.set_ylim(0, float(np.nanmax(rate)) * 1.45 if np.isfinite(rate).any() and np.nanmax(rate) > 0 else 1)
        ax2.legend(loc="upper right", fontsize="small")
    total = r.delta("pids_max")
    ax2.set_ylabel("refused / s")
    ax2.grid(alpha=0.3)
    _time_axis(ax2, t)
    what = title or (f"a fork bomb under pids.max {limit}" if limit else "a fork bomb")
    fig.suptitle(f"{what}: {total} forks refused [cgroup {r.version}]", fontsize=11)
    return fig


def plot_shares(c: Competition, *, periods: int = 2) -> Figure:
    """Two groups spinning on the same CPU, per window of whole CFS periods: the CPU each used (top), and
    each one's part of the CPU time the two got together (bottom, stacked), against the part its weight
    entitles it to. The parts do not depend on what else the machine runs; the CPU used does."""
    window = periods * CFS_PERIOD
    weights = [_weight(label) for label in c.labels]
    runs = [r for r in c.runs if r.samples]
    if c.window is not None:  # the measured window: from the moment all spinners ran to the last reading
        start, end = c.window
    else:
        start = max(r.t0 + r.samples[0].t for r in runs) if len(runs) == 2 else 0.0
        end = min(r.t0 + r.samples[-1].t for r in runs) if len(runs) == 2 else 0.0
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    rates = []
    first_edges = np.array([])
    for i, (label, run) in enumerate(zip(c.labels, c.runs, strict=True)):
        t = np.array([run.t0 + s.t for s in run.samples], dtype=float)
        edges, cpu = window_series(t, [s.cpu_ns / 1e9 for s in run.samples], window, start, end)
        rates.append(cpu)
        if i == 0:
            first_edges = edges - start
        if len(edges):
            ax1.stairs(cpu, edges - start, color=f"C{i}", lw=2, baseline=None,
                       label=f"{label}: {c.cpu_seconds[i]:.2f} CPU s")
    ax1.set_ylabel("CPUs")
    ax1.set_ylim(0, max(1.0, max((float(r.max()) for r in rates if len(r)), default=0.0)) * 1.3)
    ax1.legend(loc="upper right", fontsize="small", ncols=2)
    ax1.grid(alpha=0.3)
    ax1.set_title(f"CPU used, per {window * 1000:.0f} ms window", fontsize=10)
    if len(rates) == 2 and len(rates[0]) and len(rates[0]) == len(rates[1]):
        total = rates[0] + rates[1]
        part = np.divide(rates[0], total, out=np.full_like(total, np.nan), where=total > 0)
        edges = first_edges if len(first_edges) == len(part) + 1 else np.arange(len(part) + 1) * window
        ax2.stairs(part, edges, baseline=0, fill=True, color="C0", alpha=0.6, label=c.labels[0])
        ax2.stairs(np.ones_like(part), edges, baseline=part, fill=True, color="C1", alpha=0.6, label=c.labels[1])
        if all(w is not None for w in weights):
            fair = weights[0] / (weights[0] + weights[1])  # type: ignore[operator]
            ax2.axhline(fair, ls="--", color="black", lw=1.2,
                        label=f"{c.labels[0]} : {c.labels[1]} = {fair:.0%} : {1 - fair:.0%}")
    ax2.set_ylim(0, 1)
    ax2.yaxis.set_major_formatter(lambda v, _pos: f"{v:.0%}")
    ax2.set_ylabel("part of the pair's CPU")
    ax2.legend(loc="lower right", fontsize="small", ncols=3)
    ax2.set_xlabel("seconds since both groups were spinning")
    ax2.set_xlim(0, max(end - start, window))
    where = f"both pinned to CPU {c.cpuset}" if c.cpuset else "all CPUs"
    fig.suptitle(f"two groups competing ({where}): ratio {c.ratio:.2f} [cgroup {c.runs[0].version}]", fontsize=11)
    return fig


def _weight(label: str) -> float | None:
    """The relative weight in a Competition label like 'shares 1024' or 'weight 100'; None for a quota."""
    parts = label.split()
    if len(parts) == 2 and parts[0] in ("shares", "weight"):
        try:
            return float(parts[1])
        except ValueError:
            return None
    return None


def plot_experiment(r: GroupRun, title: str = "") -> Figure:
    """The figure that fits the experiment `r` came from (its limits say which: lab.experiments sets them)."""
    if "hog" in r.limits:
        return plot_oom(r, title)
    if "cpus" in r.limits:
        return plot_cpu_quota(r, title)
    if "pids_max" in r.limits:
        return plot_fork_bomb(r, title)
    raise ValueError(f"not one of the experiments (limits {sorted(r.limits)}): use cgroup_views.plot_group_run")


__all__ = ["CFS_PERIOD", "plot_cpu_quota", "plot_experiment", "plot_fork_bomb", "plot_oom", "plot_shares",
           "window_rates", "window_series"]
