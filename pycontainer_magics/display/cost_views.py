"""What a process, a container and a virtual machine cost to start and to keep, side by side (notebook 01)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

_COLOURS = {"process": "C2", "container": "C0"}


def plot_runs(ms: Sequence[float], *, baseline_ms: float | None = None, baseline: str = "a bare process",
              title: str = "/bin/true in a fresh container, run after run") -> Figure:
    """Start-to-exit time of each run (milliseconds), with a baseline's median as a dashed line."""
    fig = Figure(figsize=(7, 2.8), layout="constrained")
    ax = fig.add_subplot()
    runs = np.arange(1, len(ms) + 1)
    ax.plot(runs, ms, marker="o", color="C0", label="container, each run")
    ax.axhline(float(np.median(ms)), color="C0", lw=1, ls=":", label=f"container, median {np.median(ms):.1f} ms")
    if baseline_ms is not None:
        ax.axhline(baseline_ms, color="C2", ls="--", label=f"{baseline}, median {baseline_ms:.1f} ms")
    ax.set_xlabel("run")
    ax.set_xticks(runs[:: max(1, len(runs) // 10)])
    ax.set_ylabel("start to exit (ms)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")
    ax.set_title(title, fontsize=10)
    return fig


def plot_costs(table: Any) -> Figure:
    """Two panels, log scale: start-up (ms) and peak memory (MiB) per row of `table` (index: what; columns
    start_ms, memory_mib), each bar labelled with its value."""
    names = list(table.index)
    fig = Figure(figsize=(9, 1.2 + 0.45 * len(names)), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    colours = [_COLOURS.get(n, "C3") for n in names]
    for ax, col, label, unit in zip(axes, ["start_ms", "memory_mib"], ["start-up", "peak memory"], ["ms", "MiB"],
                                    strict=True):
        values = [float(v) for v in table[col]]
        ax.barh(range(len(names)), values, color=colours)
        for i, v in enumerate(values):
            ax.annotate(f"{v:,.1f} {unit}", xy=(v, i), xytext=(3, 0), textcoords="offset points", va="center",
                        fontsize=8)
        ax.set_xscale("log")
        ax.set_xlim(min(values) / 2, max(values) * 8)
        ax.set_xlabel(f"{label} ({unit}, log scale)")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(names)), names)
    axes[0].invert_yaxis()
    fig.suptitle("what each costs: to start, and in memory", fontsize=10)
    return fig


__all__ = ["plot_costs", "plot_runs"]
