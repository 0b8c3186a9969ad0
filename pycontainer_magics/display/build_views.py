"""Dockerfile builds drawn: per step, the size of the layer it added and whether the build cache answered it,
for one build or several side by side (a first build, a rebuild, a build after an edit)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .format import human_bytes


def build_layer_sizes(steps: Any, store: Any) -> list[dict[str, Any]]:
    """One row per step of a build (`%%dockerfile`'s DataFrame or BuildStep list): line, instruction, whether it
    added a layer, whether the cache answered it, and the compressed size of the layer it added (0 for a
    step that only changes the image's configuration)."""
    rows = steps.to_dict("records") if hasattr(steps, "to_dict") else [s if isinstance(s, dict) else s.__dict__
                                                                         for s in steps]
    out = []
    for r in rows:
        size = 0
        if r["layer"]:
            image = store.get(str(r.get("image") or r.get("image_id")))
            size = image.layers[-1].size if image.layers else 0
        out.append({"line": r["line"], "instruction": r["instruction"], "layer": bool(r["layer"]),
                    "cached": bool(r["cached"]), "size": size})
    return out


def plot_builds(builds: Mapping[str, Any], store: Any, *, title: str = "") -> Figure:
    """`builds`: {label: steps} in the order built. One row per Dockerfile line, one bar per build: the
    layer's size (log scale), solid when the step ran, hatched and pale when the cache answered it."""
    tables = {label: build_layer_sizes(steps, store) for label, steps in builds.items()}
    lines: dict[int, str] = {}
    for rows in tables.values():
        for r in rows:
            lines.setdefault(r["line"], r["instruction"])
    order = sorted(lines)
    n = len(tables)
    fig = Figure(figsize=(9, 1.3 + 0.42 * len(order) * max(1, n) ** 0.5), layout="constrained")
    ax = fig.add_subplot()
    height = 0.8 / max(n, 1)
    sizes = [r["size"] for rows in tables.values() for r in rows if r["size"] > 0]
    floor = min(sizes) / 3 if sizes else 1.0
    for k, rows in enumerate(tables.values()):
        by_line = {row["line"]: row for row in rows}
        for i, line in enumerate(order):
            if line not in by_line:
                continue
            r = by_line[line]
            y = i + (k - (n - 1) / 2) * height
            if not r["layer"]:
                ax.text(floor * 1.1, y, "config only" + (" (cached)" if r["cached"] else ""), va="center",
                        fontsize=7, color="0.45")
                continue
            ax.barh(y, r["size"], height=height * 0.9, left=0, color=f"C{k}", alpha=0.35 if r["cached"] else 0.9,
                    hatch="///" if r["cached"] else None, edgecolor=f"C{k}")
            ax.text(r["size"] * 1.15, y, human_bytes(r["size"]) + (" · cache hit" if r["cached"] else " · built"),
                    va="center", fontsize=7)
    labels = [(f"line {ln}: " + (lines[ln] if len(lines[ln]) <= 46 else lines[ln][:43] + "...")).replace("$", r"\$")
              for ln in order]  # a $ would start mathtext
    ax.set_yticks(range(len(order)), labels, fontsize=8)
    ax.set_ylim(len(order) - 0.5, -0.5)  # line 1 on top, each row's bars whole
    ax.set_xscale("log")
    ax.set_xlim(floor, max(sizes) * 30 if sizes else 10)
    ticks = [t for t in (100, 2**10, 10 * 2**10, 100 * 2**10, 2**20, 10 * 2**20, 100 * 2**20, 2**30)
             if floor <= t <= (max(sizes) * 30 if sizes else 10)]
    ax.set_xticks(ticks, [human_bytes(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("size of the layer the step added (compressed, log scale)")
    ax.grid(axis="x", alpha=0.3)
    handles = [Patch(color=f"C{k}", label=label) for k, label in enumerate(tables)]
    handles.append(Patch(facecolor="white", edgecolor="0.4", hatch="///", label="answered by the build cache"))
    fig.legend(handles=handles, loc="outside lower center", fontsize=8, ncols=len(handles), frameon=False)
    hits = {label: sum(r["cached"] for r in rows) for label, rows in tables.items()}
    ax.set_title(title or "the layer each Dockerfile step added\ncache hits: "
                 + ", ".join(f"{label} {hits[label]} of {len(rows)}" for label, rows in tables.items()), fontsize=10)
    return fig


__all__ = ["build_layer_sizes", "plot_builds"]
