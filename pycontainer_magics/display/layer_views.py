"""The union filesystem as a stack: an image's layers bottom to top, each with what it Added, Changed and
Deleted (`docker diff` letters), and a container's writable layer on top. What the container sees is the
union, the highest copy of a path winning."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from .format import human_bytes

LETTER_COLOURS = {"A": "#2ca02c", "C": "#d4a017", "D": "#d62728"}
Change = tuple[str, str, int, bool]  # (A|C|D, path, bytes, is a directory)


def layer_changes(files: Any) -> list[list[Change]]:
    """Per layer of `%image files` (a DataFrame or FileEntry list), bottom first: what it added (a path no
    lower layer has), changed (a path a lower layer has: the layer's copy replaces it) and deleted (whiteouts)."""
    rows = files.to_dict("records") if hasattr(files, "to_dict") else [e.__dict__ for e in files]
    layers: dict[int, list[Change]] = {}
    seen: set[str] = set()
    for r in sorted(rows, key=lambda r: (r["layer"], r["path"])):
        path, kind = r["path"], r["kind"]
        if kind == "opaque":
            continue
        letter = "D" if kind == "whiteout" else "C" if path in seen else "A"
        layers.setdefault(r["layer"], []).append((letter, path, int(r["size"] or 0), kind == "dir"))
        if kind != "whiteout":
            seen.add(path)
    return [layers.get(i, []) for i in range(max(layers, default=-1) + 1)]


def container_changes(run: Any) -> list[Change]:
    """A container's layer diff (a ContainerRun, or the RunView around it) as changes."""
    run = getattr(run, "run", run)
    return [(e.kind, e.path, e.size, e.is_dir) for e in run.diff]


def _shown(changes: Sequence[Change], limit: int) -> tuple[list[Change], str]:
    """The changes worth a line (deletions and changed files first, then the largest files), and a summary
    of the rest."""
    files = [c for c in changes if not c[3]]
    ranked = sorted(files or list(changes), key=lambda c: ({"D": 0, "C": 1, "A": 2}[c[0]], -c[2], c[1]))
    shown = ranked[:limit]
    rest = [c for c in changes if c not in shown]
    if not rest:
        return shown, ""
    counts = {k: sum(1 for c in rest if c[0] == k) for k in "ACD"}
    return shown, "and " + ", ".join(f"{k} {n}" for k, n in counts.items() if n) + " more"


def plot_layer_stack(layers: Sequence[tuple[str, Sequence[Change]]], *, writable: Sequence[Change] | None = None,
                     title: str = "", lines: int = 3) -> Figure:
    """`layers`: (label, changes) bottom first (see image_layer_stack); `writable`: a container's changes,
    drawn as the top layer (dashed: it goes with the container)."""
    stack = [(label, list(ch), False) for label, ch in layers]
    if writable is not None:
        stack.append(("writable layer (the container's, thrown away with it)", list(writable), True))
    heights = [0.55 + 0.27 * (len(_shown(ch, lines)[0]) + bool(_shown(ch, lines)[1])) for _, ch, _ in stack]
    fig = Figure(figsize=(9, 0.9 + 0.62 * sum(heights)), layout="constrained")
    ax = fig.add_subplot()
    y = 0.0
    for (label, changes, dashed), h in zip(stack, heights, strict=True):
        ax.add_patch(FancyBboxPatch((0, y + 0.06), 10, h - 0.12, boxstyle="round,pad=0,rounding_size=0.08",
                                    facecolor="#fff7e6" if dashed else "#eef3fa", edgecolor="0.35",
                                    linestyle="--" if dashed else "-"))
        ax.text(0.15, y + h - 0.2, label, fontsize=9, weight="bold", va="center")
        shown, more = _shown(changes, lines)
        for k, (letter, path, size, is_dir) in enumerate(shown):
            ly = y + h - 0.47 - 0.27 * k
            ax.text(0.35, ly, letter, fontsize=9, weight="bold", color=LETTER_COLOURS[letter], va="center",
                    family="monospace")
            what = "directory" if is_dir else "whiteout" if letter == "D" else human_bytes(size)
            ax.text(0.7, ly, f"{path}  ({what})", fontsize=8.5, va="center", family="monospace")
        if more:
            ax.text(0.7, y + h - 0.47 - 0.27 * len(shown), more, fontsize=8, va="center", color="0.35",
                    style="italic")
        if not changes:
            ax.text(0.35, y + h - 0.47, "no files (a configuration-only step)", fontsize=8, color="0.35", va="center")
        y += h
    ax.set_xlim(-0.1, 10.1)
    ax.set_ylim(0, y + 0.05)
    ax.axis("off")
    ax.set_title(title or "the union, as the container sees it: for each path the highest layer's copy wins",
                 fontsize=10)
    return fig


def image_layer_stack(files: Any, history: Any) -> list[tuple[str, list[Change]]]:
    """(label, changes) per layer, bottom first, from `%image files` and `%image history` (DataFrames):
    each label is the step that made the layer and the layer's size."""
    per_layer = layer_changes(files)
    recs = history.to_dict("records") if hasattr(history, "to_dict") else [h.__dict__ for h in history]
    steps = [h for h in reversed(recs) if h.get("layer") not in (None, "", "<missing>")]
    out = []
    for i, changes in enumerate(per_layer):
        step = steps[i] if i < len(steps) else {}
        made_by = str(step.get("created_by", "")).strip() or "?"
        if len(made_by) > 60:
            made_by = made_by[:57] + "..."
        out.append((f"layer {i}: {made_by}  ({human_bytes(step.get('size', 0))} compressed)", changes))
    return out


__all__ = ["container_changes", "image_layer_stack", "layer_changes", "plot_layer_stack"]
