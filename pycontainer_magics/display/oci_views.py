"""Pictures of runtimes compared: the conformance table as a coloured grid, and start-up times side by side."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

# cell states of the conformance grid
AGREE, DIFFERS_ALLOWED, DIFFERS, MISSING = 0, 1, 2, 3
_COLOURS = ["#8fd18f", "#f6d776", "#e8746a", "#d9d9d9"]
_LEGEND = ["agrees with the others", "differs (the spec leaves it open)", "differs (the spec fixes it)",
           "not observed"]


def conformance_grid(rows: Sequence[dict[str, Any]], runtimes: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """(row keys, states): per key and runtime, whether its value agrees with the majority of the runtimes
    that observed the key. `rows` are `oci.conformance.compare()`'s."""
    keys: list[str] = []
    states = np.zeros((len(rows), len(runtimes)), dtype=int)
    for i, row in enumerate(rows):
        keys.append(str(row["key"]))
        values = [row.get(r) for r in runtimes]
        seen = [v for v in values if v is not None]
        majority = max(set(seen), key=seen.count) if seen else None
        for j, v in enumerate(values):
            if v is None:
                states[i, j] = MISSING
            elif v == majority:
                states[i, j] = AGREE
            else:
                states[i, j] = DIFFERS if row.get("spec_fixes") else DIFFERS_ALLOWED
    return keys, states


def _grouped(rows: Sequence[dict[str, Any]], runtimes: Sequence[str]) -> tuple[list[str], np.ndarray, list[str]]:
    """Rows the spec fixes one by one; the others (each runtime's choice) one row per kind (`ns.*`, `mount.*`,
    ...), green only when every key of the kind agrees. Returns labels, states and each cell's text."""
    fixed = sorted((r for r in rows if r.get("spec_fixes")), key=lambda r: str(r["key"]))
    keys, states = conformance_grid(fixed, runtimes)
    texts = [""] * (len(keys) * len(runtimes))
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if not r.get("spec_fixes"):
            groups.setdefault(str(r["key"]).split(".")[0], []).append(r)
    for kind, members in sorted(groups.items()):
        _, st = conformance_grid(members, runtimes)
        keys.append(f"{kind}.* ({len(members)} keys)" if len(members) > 1 else str(members[0]["key"]))
        row = []
        for j in range(len(runtimes)):
            agree = int((st[:, j] == AGREE).sum())
            row.append(AGREE if agree == len(members) else MISSING if (st[:, j] == MISSING).all()
                       else DIFFERS_ALLOWED)
            texts.append(f"{agree}/{len(members)}" if len(members) > 1 else "")
        states = np.vstack([states, row])
    return keys, states, texts


def plot_conformance(rows: Sequence[dict[str, Any]], runtimes: Sequence[str], *,
                     title: str = "What the container observes, per runtime") -> Figure:
    """One row per key the runtime spec fixes, then one row per kind of key it leaves to the runtime (namespace
    inodes, mount options, /dev extras), one column per runtime; green where a runtime agrees with the others
    (for a kind: how many of its keys agree)."""
    keys, states, texts = _grouped(rows, runtimes)
    fixed = sum(1 for r in rows if r.get("spec_fixes"))
    fig = Figure(figsize=(3.4 + 1.4 * len(runtimes), 1.9 + 0.2 * len(keys)), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(states, cmap=ListedColormap(_COLOURS), vmin=0, vmax=len(_COLOURS) - 1, aspect="auto",
              interpolation="nearest")
    for k, text in enumerate(texts):
        if text:
            ax.text(k % len(runtimes), k // len(runtimes), text, ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(runtimes)), list(runtimes))
    ax.xaxis.tick_top()
    ax.set_yticks(range(len(keys)), keys, fontsize=7)
    ax.set_xticks(np.arange(-0.5, len(runtimes)), minor=True)
    ax.set_yticks(np.arange(-0.5, len(keys)), minor=True)
    ax.grid(which="minor", color="white", linewidth=1)
    ax.tick_params(which="minor", length=0)
    if 0 < fixed < len(keys):
        ax.axhline(fixed - 0.5, color="black", linewidth=1.5)
        for lo, hi, text in ((0, fixed, "fixed by the spec"), (fixed, len(keys), "the runtime's choice")):
            ax.annotate(text, xy=(1.02, 1 - (lo + hi) / 2 / len(keys)), xycoords="axes fraction", rotation=-90,
                        va="center", fontsize=8)
    agree = int((states[:fixed] == AGREE).all(axis=1).sum())
    fig.suptitle(f"{title}\n{agree} of {fixed} rows the runtime spec fixes agree", fontsize=10)
    fig.legend(handles=[Patch(color=c, label=t) for c, t in zip(_COLOURS, _LEGEND, strict=True)],
               loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    return fig


def plot_startup(samples: Sequence[Any], *, title: str = "Start-up of one container, /bin/true") -> Figure:
    """Each runtime's runs as dots and its median as a bar (milliseconds), fastest first. `samples` are
    `lab.startup.StartupSample`s (runtime, seconds)."""
    by: dict[str, list[float]] = {}
    for s in samples:
        by.setdefault(s.runtime, []).append(s.seconds * 1000)
    order = sorted(by, key=lambda k: float(np.median(by[k])))
    fig = Figure(figsize=(7, 0.9 + 0.55 * len(order)), layout="constrained")
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)  # jitter only, for dots that overlap
    for i, name in enumerate(order):
        ms = np.asarray(by[name])
        med = float(np.median(ms))
        ax.barh(i, med, height=0.6, color="C2" if "in-process" in name else "C0", alpha=0.35)
        ax.plot(ms, i + rng.uniform(-0.18, 0.18, len(ms)), "o", color="0.25", markersize=3)
    ax.set_yticks(range(len(order)), [f"{name}\nmedian {float(np.median(by[name])):.0f} ms" for name in order])
    ax.invert_yaxis()
    ax.set_xlabel("milliseconds per container (bar: median; dots: each run)")
    ax.set_xlim(0, max(max(v) for v in by.values()) * 1.15)
    n = max(len(v) for v in by.values())
    ax.set_title(f"{title} ({n} runs each, round-robin)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return fig


__all__ = ["conformance_grid", "plot_conformance", "plot_startup"]
