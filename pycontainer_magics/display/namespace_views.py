"""Namespaces as a lecturer draws them: one column per process (the host's, the container's, a pod's
containers), one row per namespace kind; a box is one namespace, labelled with its inode, and a box that
spans several columns is a namespace they share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Patch

KINDS = ("mount", "uts", "ipc", "pid", "net", "user", "cgroup", "time")
WHAT = {"mount": "mount table", "uts": "host name", "ipc": "SysV IPC, mqueues", "pid": "process ids",
        "net": "interfaces, ports", "user": "uid/gid maps", "cgroup": "cgroup root", "time": "boot/monotonic clocks"}
_SHARED, _OWN = "#c6dbef", "#fdd0a2"


def namespace_columns(run: Any) -> list[tuple[str, dict[str, int | None]]]:
    """[("host", {kind: inode}), ("container", {...})] of a ContainerRun (or the RunView around it)."""
    run = getattr(run, "run", run)
    rows = run.namespaces
    return [("host (the notebook's kernel)", {r.kind: r.host_inode for r in rows}),
            (f"container {run.spec.name}" if run.spec.name else "container", {r.kind: r.container_inode for r in rows})]


def plot_namespaces(columns: Any, *, title: str = "") -> Figure:
    """`columns`: a ContainerRun / RunView (host vs container), or a sequence of (label, {kind: inode}).
    Adjacent columns with the same inode for a kind are drawn as one box: that namespace is shared."""
    cols: Sequence[tuple[str, Mapping[str, int | None]]] = (
        namespace_columns(columns) if hasattr(columns, "namespaces") or hasattr(columns, "run") else columns)
    kinds = [k for k in KINDS if any(k in c for _, c in cols)]
    n = len(cols)
    fig = Figure(figsize=(2.2 + 2.3 * n, 0.9 + 0.5 * len(kinds)), layout="constrained")
    ax = fig.add_subplot()
    shared_kinds = 0
    for row, kind in enumerate(kinds):
        y = len(kinds) - 1 - row
        j = 0
        while j < n:
            inode = cols[j][1].get(kind)
            k = j + 1
            while k < n and inode is not None and cols[k][1].get(kind) == inode:
                k += 1
            shared = k - j > 1
            shared_kinds += shared
            ax.add_patch(FancyBboxPatch((j + 0.06, y + 0.12), (k - j) - 0.12, 0.76,
                                        boxstyle="round,pad=0,rounding_size=0.08",
                                        facecolor=_SHARED if shared else _OWN, edgecolor="0.35"))
            ax.text((j + k) / 2, y + 0.5, "—" if inode is None else f"{kind}:[{inode}]", ha="center", va="center",
                    fontsize=8, family="monospace")
            j = k
        ax.text(-0.08, y + 0.5, f"{kind}\n({WHAT.get(kind, '')})", ha="right", va="center", fontsize=8)
    for j, (label, _) in enumerate(cols):
        ax.text(j + 0.5, len(kinds) + 0.1, label, ha="center", va="bottom", fontsize=9, weight="bold")
    ax.set_xlim(-1.5, n)
    ax.set_ylim(0, len(kinds) + 0.6)
    ax.axis("off")
    fig.legend(handles=[Patch(facecolor=_OWN, edgecolor="0.35", label="a namespace of its own"),
                        Patch(facecolor=_SHARED, edgecolor="0.35", label="shared (the same inode)")],
               loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    if not title and n == 2:
        title = f"{len(kinds) - shared_kinds} of {len(kinds)} namespace kinds are the container's own"
    ax.set_title(title or "one box per namespace; a box across columns is shared", fontsize=10)
    return fig


__all__ = ["KINDS", "namespace_columns", "plot_namespaces"]
