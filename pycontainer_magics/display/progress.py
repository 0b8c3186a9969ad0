"""Pull and push progress as Docker shows it: one line per layer, here a progress bar per layer
(ipywidgets) with the layer's short digest, bytes done of its size, and Docker's status words.

LayerProgress is the callback `images.pull`/`images.push` take. In a notebook it shows the bars (updated
at most every `min_interval` seconds per layer, and on every status change); elsewhere (a terminal
IPython, tests) it writes one text line per status change, as `docker pull` does without a tty.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from .format import human_bytes

DONE = {"Already exists": "info", "Pull complete": "success", "Pushed": "success",
        "Layer already exists": "info", "Download complete": ""}


def in_notebook() -> bool:
    """True in a Jupyter kernel (where widgets have a front end to show them)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    ip = get_ipython()
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


class LayerProgress:
    """A progress bar per layer: `progress = LayerProgress(); pull(store, ref, progress=progress)`."""

    def __init__(self, *, widgets: bool | None = None, min_interval: float = 0.2, stream: Any = None) -> None:
        self.use_widgets = in_notebook() if widgets is None else widgets
        self.min_interval = min_interval
        self.stream = stream or sys.stdout
        self.rows: dict[str, dict[str, Any]] = {}  # key -> {"bar", "label", "status", "t"}
        self.box: Any = None

    def _row(self, key: str, title: str) -> dict[str, Any]:
        row = self.rows.get(key)
        if row is None:
            row = {"status": "", "t": 0.0, "current": 0, "total": 0}
            if self.use_widgets:
                import ipywidgets as w
                from IPython.display import display

                row["bar"] = w.IntProgress(value=0, min=0, max=1, layout={"width": "240px"})
                row["label"] = w.Label("")
                hbox = w.HBox([w.Label(title, layout={"width": "110px"}), row["bar"], row["label"]])
                if self.box is None:
                    self.box = w.VBox([hbox])
                    display(self.box)
                else:
                    self.box.children = (*self.box.children, hbox)
            self.rows[key] = row
        return row

    def __call__(self, e: Any) -> None:
        from ..images.progress import ONGOING
        from ..images.progress import title as layer_title

        key = e.digest or e.ref
        title = layer_title(e)
        row = self._row(key, title)
        changed = e.status != row["status"]
        row.update(status=e.status, current=e.current, total=e.total or row["total"])
        now = time.monotonic()
        if not changed and now - row["t"] < self.min_interval:
            return
        row["t"] = now
        if not self.use_widgets:
            if changed and e.status not in ONGOING:
                self.stream.write(f"{title}: {e.status}\n")
                self.stream.flush()
            return
        total = row["total"]
        bar = row["bar"]
        bar.max = max(total, 1)
        bar.value = min(total, e.current) if e.status not in DONE else bar.max
        if e.status in DONE and DONE[e.status]:
            bar.bar_style = DONE[e.status]
        sizes = f" {human_bytes(e.current)} / {human_bytes(total)}" if total and e.status not in DONE else ""
        row["label"].value = f"{e.status}{sizes}"

    def summary(self) -> dict[str, str]:
        """Each layer's (or item's) last status: what a test or a notebook can check."""
        return {key: row["status"] for key, row in self.rows.items()}


__all__ = ["LayerProgress", "in_notebook"]
