"""Views of a container run: DataFrames, figures, HTML and widgets.

The only layer that imports pandas, matplotlib and ipywidgets. Importing this package is cheap:
pandas is loaded on the first DataFrame, matplotlib on the first plot, ipywidgets with LiveMonitor.

May import: lab/, oci/, workloads/, runtime/ and everything below them. Never magics/, cli/ or kernel/.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..runtime.result import ContainerRun
from .format import human_bytes, human_duration, one_line, status_text
from .html import render_html

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .widgets import LiveMonitor

__all__ = ["PLOT_MIN_SAMPLES", "LiveMonitor", "RunView", "has_curve", "human_bytes", "human_duration",
           "register_figure_formatter", "render_html", "status_text"]


def register_figure_formatter(shell: Any) -> None:
    """Let a notebook show every matplotlib Figure a cell returns (ours: `plot_*`) as a PNG, without pyplot
    or `%matplotlib inline`. Registered by name: matplotlib is imported only when a Figure is shown; a
    formatter registered for the type itself (the inline backend's) takes precedence."""
    shell.display_formatter.formatters["image/png"].for_type_by_name("matplotlib.figure", "Figure", _figure_png)


def _figure_png(fig: Any) -> bytes:
    from .plots import figure_png

    return figure_png(fig)


# The plot under a cell's card is drawn for a run with a time series to show: at the default 10 ms interval, one that
# ran for 30-40 ms or more (the first reading, three while it ran, the last); fewer make a straight line, which
# the card's figures say already. Drawing and encoding the figure is 80-150 ms of matplotlib: for a quick cell, ten
# to twenty times the cell, and matplotlib's import left in the kernel makes every later Python cell's fork slower.
PLOT_MIN_SAMPLES = 5


def has_curve(run: ContainerRun) -> bool:
    """Does the card of `run` get its plot? A time series of PLOT_MIN_SAMPLES samples or more, or an OOM kill to mark
    (however short: it is what the plot is for). `view.plot()` draws any run."""
    return len(run.samples) >= PLOT_MIN_SAMPLES or (run.oom_killed and bool(run.samples))


class RunView:
    """What a notebook holds after `%%container` (stored as `_container`).

    Attribute access falls through to the ContainerRun (`view.exit_code`, `view.oom_killed`,
    `view.stdout`); `view.run` is the run itself. On top of it: `usage`, `namespaces`, `diff`,
    `summary` as pandas objects, `plot()`, `show()` and an HTML repr. Note that `namespaces`, `diff`
    and `summary` shadow the run's own fields: use `view.run.diff` for the list of DiffEntry.
    """

    def __init__(self, run: ContainerRun) -> None:
        if not isinstance(run, ContainerRun):
            raise TypeError(f"RunView needs a ContainerRun, not {type(run).__name__}")
        self.run = run

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails; guard `run` so a half-built object cannot recurse.
        if name == "run" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.run, name)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | {n for n in dir(self.run) if not n.startswith("_")})

    # -- data ----------------------------------------------------------------------------------
    @property
    def usage(self) -> pd.DataFrame:
        """t, memory, memory_mib, cpu_s, cpu_percent, pids: one row per sample."""
        from .frames import usage_frame
        return usage_frame(self.run)

    @property
    def namespaces(self) -> pd.DataFrame:
        """namespace, container, host, isolated for the eight namespace kinds."""
        from .frames import namespaces_frame
        return namespaces_frame(self.run)

    @property
    def diff(self) -> pd.DataFrame:
        """kind (A/C/D), path, size, is_dir, sorted by path."""
        from .frames import diff_frame
        return diff_frame(self.run)

    @property
    def timeline(self) -> pd.DataFrame:
        """The launch, stage by stage (stage, at_ms, took_ms): where the time of a cell goes."""
        from .frames import timeline_frame
        return timeline_frame(self.run)

    @property
    def summary(self) -> pd.Series:
        """run.summary() as a Series indexed by field (status, exit_code, oom_killed, ...)."""
        from .frames import summary_series
        return summary_series(self.run)

    # -- pictures --------------------------------------------------------------------------------
    def plot(self, ax: Axes | list[Axes] | None = None) -> Figure:
        """Memory, CPU % and pids over time (see display.plots.plot_run)."""
        from .plots import ensure_figure_formatter, plot_run
        ensure_figure_formatter()
        return plot_run(self.run, ax=ax)

    def show(self, plot: bool = True) -> None:
        """Display the HTML card and, when the run has a time series to show (has_curve), the plot (as PNG)."""
        from IPython.display import Image, display
        display(self)
        if plot and has_curve(self.run):
            from .plot_worker import card_png  # (drawn in a helper: matplotlib stays out of the kernel)
            display(Image(data=card_png(self.run), format="png"))

    def _repr_html_(self) -> str:
        return render_html(self.run)

    def __repr__(self) -> str:
        return one_line(self.run)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))


def __getattr__(name: str) -> Any:
    if name == "LiveMonitor":
        from .widgets import LiveMonitor
        return LiveMonitor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
