"""matplotlib views of a ContainerRun, built with the object-oriented API (no pyplot state).

Every figure is a plain `matplotlib.figure.Figure`, so it renders headless (Agg) and in notebooks.
Lines carry labels and gids so tests (and users) can find them: "memory limit", "pids limit",
"CPU limit" and gid "oom-kill" for the OOM marker.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..runtime.result import ContainerRun
from .format import MiB, memory_limit_of, pids_limit_of, status_text
from .usage import usage_columns

OOM_GID = "oom-kill"
OOM_COLOUR = "red"


def draw_usage(
    axes: Sequence[Axes],
    t: Any,
    memory_mib: Any,
    cpu_percent: Any,
    pids: Any,
    *,
    memory_limit: int | None = None,
    pids_limit: int | None = None,
    cpu_limit: float | None = None,
    oom_at: float | None = None,
    peak_memory: int | None = None,
) -> None:
    """Draw up to three panels (memory MiB, CPU %, pids) on `axes`, in that order.

    Limits are dashed horizontal lines; `oom_at` (seconds) adds a red vertical line on every
    panel and a red cross on the memory panel, at the kernel's peak when known. The kernel's peak
    counter is drawn dotted: a short spike between two samples still shows.
    """
    t = np.asarray(t, dtype=float)
    series = (
        (np.asarray(memory_mib, dtype=float), "memory", "memory (MiB)", "C0"),
        (np.asarray(cpu_percent, dtype=float), "CPU", "CPU %", "C1"),
        (np.asarray(pids, dtype=float), "pids", "pids", "C2"),
    )
    limits = (
        None if memory_limit is None else memory_limit / MiB,
        None if cpu_limit is None else cpu_limit * 100.0,
        None if pids_limit is None else float(pids_limit),
    )
    limit_labels = ("memory limit", "CPU limit", "pids limit")
    for i, ax in enumerate(list(axes)[:3]):
        values, label, ylabel, colour = series[i]
        if i == 2:
            ax.step(t, values, where="post", label=label, color=colour)
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # processes come whole
        else:
            ax.plot(t, values, label=label, color=colour, marker="o" if len(t) <= 200 else None, markersize=2)
        limit = limits[i]
        if limit is not None:
            ax.axhline(limit, linestyle="--", color="0.35", linewidth=1, label=limit_labels[i])
        if oom_at is not None:
            ax.axvline(oom_at, color=OOM_COLOUR, linewidth=1, alpha=0.8, gid=OOM_GID,
                       label="OOM kill" if i == 0 else "_oom")
            if i == 0 and (len(t) or peak_memory is not None):
                y = peak_memory / MiB if peak_memory is not None else values[-1]
                ax.plot([oom_at], [y], marker="X", markersize=9, color=OOM_COLOUR,
                        linestyle="none", gid=OOM_GID, label="_oom marker")
        if i == 0 and peak_memory is not None:
            ax.axhline(peak_memory / MiB, linestyle=":", color="C0", linewidth=1, label="peak (kernel)")
            limit = max(limit or 0.0, peak_memory / MiB)
        ax.set_ylabel(ylabel)
        finite = values[np.isfinite(values)]
        top = max(float(finite.max()) if finite.size else 0.0, limit or 0.0)
        ax.set_ylim(0, top * 1.12 if top > 0 else 1.0)
        if len(t) and t.max() > t.min():  # from the first sample: the launch before it shows nothing
            ax.set_xlim(t.min(), t.max() + 0.02 * (t.max() - t.min()))
        ax.grid(True, alpha=0.3)
        if i == 0 and not len(t):
            ax.text(0.5, 0.5, "no samples", transform=ax.transAxes, ha="center", va="center",
                    color="0.5")
        handles, _ = ax.get_legend_handles_labels()
        if len(handles) > 1:
            ax.legend(loc="best", fontsize="small", framealpha=0.8)


def _oom_time(run: ContainerRun) -> float | None:
    """When the OOM killer struck, as well as the samples tell: the first sample after the last one near the
    peak (memory falls right after the kill); the run's end without samples."""
    if not run.oom_killed:
        return None
    if not run.samples:
        return run.duration
    top = max(s.memory for s in run.samples)
    last_high = max(i for i, s in enumerate(run.samples) if s.memory >= 0.9 * top)
    return run.samples[min(last_high + 1, len(run.samples) - 1)].t


def plot_title(run: ContainerRun) -> str:
    """What a figure of `run` is about, for a reader: its name, else its limits (never a container id)."""
    if run.spec.name:
        return f"container {run.spec.name}"
    spec = run.spec
    limits = [f"--memory {spec.memory / MiB:g}M" if spec.memory else "", f"--cpus {spec.cpus:g}" if spec.cpus else "",
              f"--pids-limit {spec.pids_limit}" if spec.pids_limit else ""]
    shown = " ".join(x for x in limits if x)
    return f"container with {shown}" if shown else "container without limits"


def _title(run: ContainerRun) -> str:
    """The figure's title: what it is about, then how it ended — on two lines when one would run past the
    figure's edges (matplotlib neither wraps nor shrinks a title: it is cut off on both sides)."""
    about, ended = plot_title(run), status_text(run)
    return f"{about}: {ended}" if len(about) + len(ended) <= 56 else f"{about}\n{ended}"


def plot_run(run: ContainerRun, ax: Axes | Sequence[Axes] | None = None) -> Figure:
    """Memory (MiB), CPU % and pids over time, with limits dashed and the OOM kill in red.

    ax=None makes a new three-panel Figure; one Axes draws only the memory panel on it; a sequence
    of Axes draws memory, CPU and pids on them in turn. Returns the Figure drawn on.
    """
    cols = usage_columns(run.samples)  # (not frames.usage_frame: a plot imports no pandas)
    if ax is None:
        # Margins fixed for this size, not matplotlib's constrained layout: that measures every text of the figure
        # before drawing it, 60 of the 150 ms a card's plot took.
        title = _title(run)
        fig = Figure(figsize=(7.0, 5.6))
        fig.subplots_adjust(left=0.12, right=0.98, bottom=0.085, top=0.895 if "\n" in title else 0.935, hspace=0.12)
        axes: list[Axes] = list(fig.subplots(3, 1, sharex=True))
        fig.suptitle(title)
        axes[-1].set_xlabel("seconds since the launch")
        fig.align_ylabels(axes)
    else:
        axes = [ax] if isinstance(ax, Axes) else list(ax)
        if not axes:
            raise ValueError("plot_run: ax is an empty sequence")
        fig = axes[0].get_figure(root=True)  # type: ignore[assignment]
        axes[0].set_title(_title(run))
        axes[-1].set_xlabel("seconds since the launch")
    draw_usage(
        axes,
        cols["t"],
        cols["memory_mib"],
        cols["cpu_percent"],
        cols["pids"],
        memory_limit=memory_limit_of(run),
        pids_limit=pids_limit_of(run),
        cpu_limit=run.spec.cpus,
        oom_at=_oom_time(run),
        peak_memory=run.peak_memory,
    )
    return fig


def figure_png(fig: Figure, dpi: float = 100) -> bytes:
    """The figure as PNG bytes (works without any pyplot backend)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def ensure_figure_formatter() -> None:
    """Make IPython render bare Figures as PNG even when pyplot (and with it the inline backend's
    formatters) was never imported. A formatter already registered is left alone."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency of the magics
        return
    ip = get_ipython()
    if ip is None:
        return
    fmt = ip.display_formatter.formatters["image/png"]
    try:
        fmt.lookup_by_type(Figure)
    except KeyError:
        fmt.for_type(Figure, figure_png)
