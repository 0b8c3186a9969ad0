"""LiveMonitor: an ipywidgets view the magic updates while a container runs.

A row of labels (time, memory, CPU, pids) and, optionally, a small figure redrawn as a PNG in an
`ipywidgets.Image`. Points arrive as fast as the sampler takes them; the widgets are refreshed at
most every `min_interval` seconds (2 per second by default), and once more by `finish()`.
Setting an Image widget's value works from any thread, unlike writing into an `Output` context.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
from matplotlib.figure import Figure

from ..runtime.result import ContainerRun, Sample
from ..runtime.spec import ContainerSpec
from .format import MiB, human_bytes, human_duration, status_colour, status_text
from .plots import draw_usage, figure_png

_LABEL_LAYOUT = {"margin": "0 12px 0 0"}


class LiveMonitor:
    """Live time, memory, CPU and pids of a running container.

    monitor = LiveMonitor.for_spec(spec); display(monitor)
    monitor.update(t, memory, cpu_ns, pids)   # from the sampler, any rate
    monitor.finish(run)                       # final redraw and the outcome
    """

    def __init__(
        self,
        *,
        title: str = "",
        memory_limit: int | None = None,
        pids_limit: int | None = None,
        cpus: float | None = None,
        plot: bool = True,
        min_interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.memory_limit = memory_limit
        self.pids_limit = pids_limit
        self.cpus = cpus
        self.min_interval = min_interval
        self._clock = clock
        self._last_draw: float | None = None
        self.redraws = 0
        self.t: list[float] = []
        self.memory: list[int] = []
        self.cpu_ns: list[int] = []
        self.pids: list[int] = []
        self.cpu_percent: list[float] = []

        self._status = widgets.HTML(value=f"<b>{_esc(title)}</b> running" if title else "running")
        self._time = widgets.Label(value="t -", layout=_LABEL_LAYOUT)
        self._mem = widgets.Label(value="memory -", layout=_LABEL_LAYOUT)
        self._cpu = widgets.Label(value="CPU -", layout=_LABEL_LAYOUT)
        self._pids = widgets.Label(value="pids -", layout=_LABEL_LAYOUT)
        self._title = title
        row = widgets.HBox([self._status, self._time, self._mem, self._cpu, self._pids])
        children: list[Any] = [row]
        self._image: widgets.Image | None = None
        self._fig: Figure | None = None
        if plot:
            self._image = widgets.Image(format="png", layout={"max_width": "640px"})
            children.append(self._image)
        self.widget = widgets.VBox(children)

    @classmethod
    def for_spec(cls, spec: ContainerSpec, **kwargs: Any) -> LiveMonitor:
        """A monitor with the spec's limits and name."""
        kwargs.setdefault("title", spec.name or "")
        return cls(memory_limit=spec.memory, pids_limit=spec.pids_limit, cpus=spec.cpus, **kwargs)

    # -- feeding -------------------------------------------------------------------------------
    def update(self, t: float, memory: int, cpu_ns: int, pids: int) -> bool:
        """Add one point (cpu_ns cumulative, as in Sample). Returns True when the view was redrawn."""
        prev_t = self.t[-1] if self.t else 0.0
        prev_cpu = self.cpu_ns[-1] if self.cpu_ns else 0
        dt = t - prev_t
        self.cpu_percent.append((cpu_ns - prev_cpu) / 1e9 / dt * 100.0 if dt > 0 else float("nan"))
        self.t.append(t)
        self.memory.append(memory)
        self.cpu_ns.append(cpu_ns)
        self.pids.append(pids)
        now = self._clock()
        if self._last_draw is not None and now - self._last_draw < self.min_interval:
            return False
        self._last_draw = now
        self.refresh()
        return True

    def push(self, sample: Sample) -> bool:
        return self.update(sample.t, sample.memory, sample.cpu_ns, sample.pids)

    def finish(self, run: ContainerRun | None = None) -> None:
        """Redraw with every point and show the outcome (OOM marked when the run was OOM-killed)."""
        oom_at = None
        if run is not None:
            colour = status_colour(run)
            self._status.value = (f"<b>{_esc(self._title)}</b> " if self._title else "") + (
                f'<b style="color:{colour}">{_esc(status_text(run))}</b>')
            if run.oom_killed:
                oom_at = self.t[-1] if self.t else run.duration
            if run.memory_limit is not None:
                self.memory_limit = run.memory_limit
            if run.pids_limit is not None:
                self.pids_limit = run.pids_limit
        else:
            self._status.value = f"<b>{_esc(self._title)}</b> done" if self._title else "done"
        self.refresh(oom_at=oom_at)

    # -- drawing ---------------------------------------------------------------------------------
    def refresh(self, oom_at: float | None = None) -> None:
        """Update the labels and redraw the figure now (no throttling)."""
        self.redraws += 1
        if self.t:
            self._time.value = f"t {human_duration(self.t[-1])}"
            mem = human_bytes(self.memory[-1])
            if self.memory_limit:
                mem += f" / {human_bytes(self.memory_limit)}"
            self._mem.value = f"memory {mem}"
            cpu = self.cpu_percent[-1]
            self._cpu.value = "CPU -" if cpu != cpu else f"CPU {cpu:.0f}%"
            pids = str(self.pids[-1]) + (f" / {self.pids_limit}" if self.pids_limit else "")
            self._pids.value = f"pids {pids}"
        if self._image is None:
            return
        if self._fig is None:
            self._fig = Figure(figsize=(7.0, 2.2), layout="constrained")
        fig = self._fig
        fig.clear()
        axes = list(fig.subplots(1, 3))
        draw_usage(
            axes,
            self.t,
            [m / MiB for m in self.memory],
            self.cpu_percent,
            self.pids,
            memory_limit=self.memory_limit,
            pids_limit=self.pids_limit,
            cpu_limit=self.cpus,
            oom_at=oom_at,
        )
        for ax in axes:
            ax.set_xlabel("time (s)", fontsize="small")
            ax.tick_params(labelsize="small")
            legend = ax.get_legend()
            if legend is not None:
                legend.remove()
        self._image.value = figure_png(fig, dpi=72)

    # -- display ---------------------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def close(self) -> None:
        self.widget.close()


def _esc(text: str) -> str:
    from html import escape
    return escape(text, quote=True)
