"""The engine chain (lab/engine_chain.py) as a table and as the lecture's diagram, drawn from what was measured:
one column per runtime, a box per process (its pid, its parent, which namespaces are its own), solid arrows
for parent -> child, dashed ones for who asks whom (the docker CLI's request, containerd's gRPC to its shim,
the shim's calls of the runtime — a process that has exited by the time the tree is read)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

_COLOUR = {"dockerd": "#cfe2f3", "containerd": "#d9ead3", "shim": "#fff2cc", "container init": "#f4cccc",
           "container process": "#f4cccc", "runtime": "#eeeeee"}


def chain_frame(chain: Any) -> pd.DataFrame:
    """One row per process: role, pid, parent, command, then each namespace (host or new)."""
    rows = [{"role": p.role, "pid": p.pid, "parent": p.ppid, "command": p.command,
             **{f"{k} ns": v for k, v in p.namespaces.items()}}
            for p in chain.processes]
    return pd.DataFrame(rows)


def _box(ax: Any, x: float, y: float, text: str, colour: str, dashed: bool = False) -> None:
    ax.add_patch(FancyBboxPatch((x - 0.44, y - 0.3), 0.88, 0.6, boxstyle="round,pad=0.02", facecolor=colour,
                                edgecolor="#555555", linestyle="--" if dashed else "-", linewidth=1))
    ax.text(x, y, text, ha="center", va="center", fontsize=7.5)


def _arrow(ax: Any, x0: float, y0: float, x1: float, y1: float, dashed: bool, label: str = "") -> None:
    ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=9, color="#333333",
                                 linestyle="--" if dashed else "-", linewidth=1))
    if label:
        ax.text((x0 + x1) / 2 + 0.03, (y0 + y1) / 2, label, fontsize=6.5, va="center", color="#333333")


def plot_chains(chains: Sequence[Any], title: str = "docker run, measured") -> Figure:
    """The chain of each observation side by side, top (dockerd) to bottom (the container's processes)."""
    fig = Figure(figsize=(3.4 * len(chains), 6.2))
    ax = fig.add_subplot()
    ax.set_xlim(-0.55, len(chains) - 0.45)
    ax.set_ylim(-0.6, 6.6)
    ax.axis("off")
    ax.set_title(title, fontsize=10)
    for col, chain in enumerate(chains):
        procs = {p.role: p for p in chain.processes}
        by_pid = {p.pid: p for p in chain.processes}
        levels = {"dockerd": 6.0, "containerd": 4.8, "shim": 3.4, "container init": 1.2, "container process": 0.0}
        ax.text(col, 6.45, f"--runtime {chain.runtime}", ha="center", fontsize=9, weight="bold")
        for role, y in levels.items():
            p = procs.get(role)
            if p is None:
                continue
            own = [k for k, v in p.namespaces.items() if v == "new"]
            text = f"{role}\npid {p.pid}, parent {p.ppid}" + (f"\nown ns: {' '.join(own)}" if own else "\nhost ns")
            _box(ax, col, y, text, _COLOUR.get(role, "#ffffff"))
        # the runtime: called by the shim, gone by now
        calls = ", ".join(dict.fromkeys(chain.runtime_calls))  # as recorded (ours); runc's are not
        ax.text(col + 0.05, 2.3, f"{chain.runtime} {calls}\n(ran and exited)".replace("  ", " "), ha="center",
                va="center",
                fontsize=7, style="italic", color="#555555",
                bbox={"boxstyle": "round,pad=0.25", "facecolor": "#eeeeee", "edgecolor": "#999999",
                      "linestyle": "--"})
        _arrow(ax, col - 0.2, 5.7, col - 0.2, 5.1, "containerd" in procs and procs["containerd"].ppid
               != procs["dockerd"].pid, "child" if "containerd" in procs else "")
        _arrow(ax, col + 0.2, 4.5, col + 0.2, 3.7, True, "ttrpc")
        _arrow(ax, col, 3.1, col, 2.55, True)
        _arrow(ax, col, 2.05, col, 1.5, True)
        init = procs.get("container init")
        if init is not None and init.ppid in by_pid:
            _arrow(ax, col - 0.3, 3.1, col - 0.3, 1.5, False, "parent")
        _arrow(ax, col, 0.9, col, 0.3, False, "child")
    return fig


__all__ = ["chain_frame", "plot_chains"]
