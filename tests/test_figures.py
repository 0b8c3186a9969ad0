"""The lecture figures of display/: what they draw follows the data (no kernel needed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from pycontainer_magics.display import oci_views as O
from pycontainer_magics.lab.startup import StartupSample


def _texts(fig: Any) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts] + [t.get_text() for t in fig.texts]


def test_conformance_grid_marks_who_differs_and_what_the_spec_fixes() -> None:
    rows = [
        {"key": "hostname", "a": "conf", "b": "conf", "c": "conf", "spec_fixes": True},
        {"key": "cgroup.memory", "a": "64", "b": "64", "c": "32", "spec_fixes": True},
        {"key": "ns.pid", "a": "1", "b": "2", "c": "2", "spec_fixes": False},
        {"key": "devlink.core", "a": "x", "b": None, "c": "x", "spec_fixes": False},
    ]
    keys, states = O.conformance_grid(rows, ["a", "b", "c"])
    assert keys == ["hostname", "cgroup.memory", "ns.pid", "devlink.core"]
    assert states.tolist() == [[O.AGREE] * 3, [O.AGREE, O.AGREE, O.DIFFERS],
                               [O.DIFFERS_ALLOWED, O.AGREE, O.AGREE], [O.AGREE, O.MISSING, O.AGREE]]
    fig = O.plot_conformance(rows, ["a", "b", "c"])
    assert "1 of 2 rows the runtime spec fixes agree" in fig._suptitle.get_text()  # type: ignore[union-attr]
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[:2] == ["cgroup.memory", "hostname"] and set(labels[2:]) == {"ns.pid", "devlink.core"}


def test_startup_plot_orders_by_median_and_names_it() -> None:
    samples = [StartupSample(n, i, s, 0) for i in range(3) for n, s in (("slow", 0.2 + i / 100), ("fast", 0.01))]
    fig = O.plot_startup(samples)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["fast\nmedian 10 ms", "slow\nmedian 210 ms"]
    bars = [p.get_width() for p in fig.axes[0].patches]
    assert np.allclose(bars, [10, 210])


def test_compose_graph_has_each_service_its_state_and_each_dependency() -> None:
    from pycontainer_magics.display.compose_views import plot_compose
    from pycontainer_magics.workloads.compose import load

    cf = load("services:\n"
              "  web: {image: host, command: [sleep, '1'], healthcheck: {test: ['CMD', 'true']}}\n"
              "  job: {image: host, command: [sleep, '1'], depends_on: {web: {condition: service_healthy}}}\n"
              "  client: {image: host, command: [sleep, '1'], depends_on: [web]}\n", project="demo")

    @dataclass
    class St:
        service: str
        status: str
        health: str | None
        exit_code: int | None

    fig = plot_compose(cf, [St("web", "running", "healthy", None), St("job", "exited (3)", None, 3),
                            St("client", "running", None, None)])
    texts = _texts(fig)
    assert {"web", "job", "client", "healthy", "started"} <= set(texts)
    assert "running (healthy)" in texts and "exited (3)" in texts
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["healthy", "running", "failed"]  # the job's non-zero exit is a failure


@pytest.mark.parametrize("n", [1, 3])
def test_figures_render_to_png(n: int) -> None:
    from pycontainer_magics.display.plots import figure_png

    samples = [StartupSample(f"r{k}", 0, 0.01 * (k + 1), 0) for k in range(n)]
    assert figure_png(O.plot_startup(samples)).startswith(b"\x89PNG")
