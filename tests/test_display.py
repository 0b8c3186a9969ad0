"""display/: DataFrames, figures, HTML and the live widget, from hand-built ContainerRuns (no root)."""

from __future__ import annotations

import dataclasses
import math

import matplotlib
import pytest

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from pycontainer_magics.display import RunView, human_bytes, human_duration  # noqa: E402
from pycontainer_magics.display.frames import usage_frame  # noqa: E402
from pycontainer_magics.display.plots import OOM_GID, figure_png, plot_run  # noqa: E402
from pycontainer_magics.runtime.result import ContainerRun, DiffEntry, NamespaceRow, Sample  # noqa: E402
from pycontainer_magics.runtime.spec import ContainerSpec  # noqa: E402

MiB = 2**20
KINDS = ["mount", "uts", "ipc", "pid", "net", "user", "cgroup", "time"]
USAGE_COLUMNS = ["t", "memory", "memory_mib", "cpu_s", "cpu_percent", "pids"]


def _namespaces(shared: tuple[str, ...] = ()) -> list[NamespaceRow]:
    rows = []
    for i, k in enumerate(["mnt", "uts", "ipc", "pid", "net", "user", "cgroup", "time"]):
        host = 4026531800 + i
        ctr = host if k in shared else 4026532200 + i
        rows.append(NamespaceRow(k, ctr, host))
    return rows


@pytest.fixture
def oom_run() -> ContainerRun:
    spec = ContainerSpec(command=("true",), memory=50 * MiB, pids_limit=20, name="hog")
    # Memory rises 10 MiB per 0.1 s up to the 50 MiB limit; CPU 0.05 s per 0.1 s (50 %).
    samples = [Sample(0.1 * i, i * 10 * MiB, i * 50_000_000, 1 + (i % 2)) for i in range(1, 6)]
    return ContainerRun(
        id="1a2b3c4d5e6f7a8b9c0d",
        spec=spec,
        exit_code=137,
        signal=9,
        oom_killed=True,
        oom_kills=1,
        duration=0.5123,
        peak_memory=50 * MiB,
        memory_limit=50 * MiB,
        cpu_time=0.25,
        cpu_user=0.2,
        cpu_system=0.05,
        peak_pids=2,
        pids_limit=20,
        cgroup_version="v1",
        samples=samples,
        namespaces=_namespaces(),
        diff=[
            DiffEntry("A", "/tmp/hog.bin", 4096),
            DiffEntry("C", "/etc", 0, is_dir=True),
            DiffEntry("D", "/etc/motd", 0),
            DiffEntry("A", "/tmp", 0, is_dir=True),
        ],
        stderr="Killed <script>alert(1)</script>\n",
        notes=["memory.swappiness set to 0"],
    )


@pytest.fixture
def ok_run() -> ContainerRun:
    samples = [
        Sample(0.0, 1 * MiB, 0, 1),
        Sample(0.05, 2 * MiB, 25_000_000, 1),  # 0.025 s CPU over 0.05 s -> 50 %
        Sample(0.10, 3 * MiB, 125_000_000, 2),  # 0.1 s CPU over 0.05 s -> 200 % (two cores)
        Sample(0.20, 3 * MiB, 125_000_000, 2),  # idle -> 0 %
    ]
    return ContainerRun(
        id="abcdef0123456789",
        spec=ContainerSpec(command=("true",)),
        exit_code=0,
        duration=0.0352,
        peak_memory=int(12.3 * MiB),
        cpu_time=0.125,
        samples=samples,
        namespaces=_namespaces(shared=("net", "user")),
        stdout="hello\n",
    )


@pytest.fixture
def empty_run() -> ContainerRun:
    return ContainerRun(id="0000000000000000", spec=ContainerSpec(command=("true",)))


# -- formatting -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n", "text"),
    [(None, "-"), (0, "0 B"), (512, "512 B"), (1023, "1023 B"), (1024, "1.0 KiB"),
     (52_218_880, "49.8 MiB"), (50 * MiB, "50.0 MiB"), (1024 * MiB - 1, "1.0 GiB"), (3 * 2**40, "3.0 TiB"),
     (-2048, "-2.0 KiB")],
)
def test_human_bytes(n, text):
    assert human_bytes(n) == text


@pytest.mark.parametrize(
    ("s", "text"),
    [(None, "-"), (0, "0 s"), (850e-9, "850 ns"), (12.5e-6, "12.5 µs"), (0.0352, "35.2 ms"),
     (0.99996, "1.00 s"), (1.25, "1.25 s"), (12.34, "12.3 s"), (123, "2 min 3 s"), (3720, "1 h 2 min")],
)
def test_human_duration(s, text):
    assert human_duration(s) == text


# -- forwarding and text repr -------------------------------------------------------------------
def test_view_forwards_to_run(oom_run):
    v = RunView(oom_run)
    assert v.run is oom_run
    assert v.exit_code == 137 and v.oom_killed is True and v.status == "oomkilled"
    assert v.stderr == oom_run.stderr
    assert "exit_code" in dir(v) and "usage" in dir(v)
    with pytest.raises(AttributeError):
        v.no_such_field  # noqa: B018
    with pytest.raises(TypeError):
        RunView("not a run")  # type: ignore[arg-type]


def test_repr_one_line(ok_run, oom_run, empty_run):
    assert repr(RunView(ok_run)) == "<ContainerRun abcdef012345 exited 0 in 35.2 ms, peak 12.3 MiB>"
    assert repr(RunView(oom_run)) == (
        "<ContainerRun hog (1a2b3c4d5e6f) OOMKilled (exit 137, SIGKILL) in 512.3 ms, peak 50.0 MiB>")
    assert repr(RunView(empty_run)) == "<ContainerRun 000000000000 exited (no exit code) in 0 s>"

    class P:
        def text(self, s):
            self.out = s

    p = P()
    RunView(ok_run)._repr_pretty_(p, False)
    assert p.out == repr(RunView(ok_run))


# -- usage ----------------------------------------------------------------------------------------
def test_usage_columns_dtypes_values(ok_run):
    df = RunView(ok_run).usage
    assert list(df.columns) == USAGE_COLUMNS
    assert isinstance(df.index, pd.RangeIndex) and len(df) == 4
    assert dict(df.dtypes.astype(str)) == {
        "t": "float64", "memory": "int64", "memory_mib": "float64", "cpu_s": "float64",
        "cpu_percent": "float64", "pids": "int64"}
    assert df["memory"].tolist() == [MiB, 2 * MiB, 3 * MiB, 3 * MiB]
    assert df["memory_mib"].tolist() == [1.0, 2.0, 3.0, 3.0]
    assert df["cpu_s"].tolist() == pytest.approx([0.0, 0.025, 0.125, 0.125])
    # First sample at t=0: no time has passed, so no rate.
    assert math.isnan(df["cpu_percent"].iloc[0])
    assert df["cpu_percent"].iloc[1:].tolist() == pytest.approx([50.0, 200.0, 0.0])
    assert df["pids"].tolist() == [1, 1, 2, 2]


def test_usage_first_sample_measured_from_launch(oom_run):
    df = RunView(oom_run).usage
    # Each 0.1 s the cgroup uses 0.05 s of CPU, the first one too (cumulative from 0 at t=0).
    assert df["cpu_percent"].tolist() == pytest.approx([50.0] * 5)
    assert df["t"].tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    assert df["memory_mib"].iloc[-1] == 50.0


def test_usage_empty(empty_run):
    df = RunView(empty_run).usage
    assert df.empty and list(df.columns) == USAGE_COLUMNS
    assert df["memory"].dtype == np.int64 and df["t"].dtype == np.float64
    assert usage_frame([]).shape == (0, 6)


# -- namespaces -----------------------------------------------------------------------------------
def test_namespaces_frame(ok_run):
    df = RunView(ok_run).namespaces
    assert list(df.columns) == ["namespace", "container", "host", "isolated"]
    assert df["namespace"].tolist() == KINDS
    assert df["isolated"].dtype == bool
    assert dict(zip(df["namespace"], df["isolated"], strict=True)) == {
        k: k not in ("net", "user") for k in KINDS}
    row = df.set_index("namespace").loc["net"]
    assert row["container"] == row["host"]


def test_namespaces_order_and_missing_kinds(oom_run):
    oom_run.namespaces = list(reversed(oom_run.namespaces))[:5]  # time, cgroup, user, net, pid
    df = RunView(oom_run).namespaces
    assert df["namespace"].tolist() == KINDS
    missing = df[df["namespace"].isin(["mount", "uts", "ipc"])]
    assert not missing["isolated"].any() and missing["container"].isna().all()
    assert df[~df["namespace"].isin(["mount", "uts", "ipc"])]["isolated"].all()


def test_namespaces_empty(empty_run):
    df = RunView(empty_run).namespaces
    assert df.empty and list(df.columns) == ["namespace", "container", "host", "isolated"]


# -- diff -----------------------------------------------------------------------------------------
def test_diff_sorted_by_path(oom_run, empty_run):
    df = RunView(oom_run).diff
    assert list(df.columns) == ["kind", "path", "size", "is_dir"]
    assert df["path"].tolist() == ["/etc", "/etc/motd", "/tmp", "/tmp/hog.bin"]
    assert df["kind"].tolist() == ["C", "D", "A", "A"]
    assert df["size"].tolist() == [0, 0, 0, 4096] and df["size"].dtype == np.int64
    assert df["is_dir"].tolist() == [True, False, True, False] and df["is_dir"].dtype == bool
    assert isinstance(df.index, pd.RangeIndex)
    empty = RunView(empty_run).diff
    assert empty.empty and list(empty.columns) == ["kind", "path", "size", "is_dir"]


# -- summary --------------------------------------------------------------------------------------
def test_summary_series(oom_run):
    s = RunView(oom_run).summary
    assert isinstance(s, pd.Series)
    assert s["status"] == "oomkilled" and s["exit_code"] == 137 and s["oom_killed"] is True
    assert s["signal"] == "SIGKILL" and s["peak_memory"] == 50 * MiB
    assert list(s.index) == list(oom_run.summary())
    text = s.to_string()
    assert "oomkilled" in text and "137" in text and "True" in text
    assert s.to_string() == RunView(oom_run).summary.to_string()  # stable for nbval


# -- plot -----------------------------------------------------------------------------------------
def _labels(fig: Figure) -> list[list[str]]:
    return [[line.get_label() for line in ax.lines] for ax in fig.axes]


def _oom_lines(fig: Figure) -> list:
    return [line for ax in fig.axes for line in ax.lines if line.get_gid() == OOM_GID]


def test_plot_oom_run(oom_run):
    fig = RunView(oom_run).plot()
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    mem_ax, cpu_ax, pids_ax = fig.axes
    limit = [ln for ln in mem_ax.lines if ln.get_label() == "memory limit"]
    assert len(limit) == 1
    assert limit[0].get_linestyle() == "--"
    assert list(limit[0].get_ydata()) == [50.0, 50.0]
    pids_limit = [ln for ln in pids_ax.lines if ln.get_label() == "pids limit"]
    assert len(pids_limit) == 1 and list(pids_limit[0].get_ydata()) == [20.0, 20.0]
    oom = _oom_lines(fig)
    assert oom and all(matplotlib.colors.same_color(ln.get_color(), "red") for ln in oom)
    vline = [ln for ln in mem_ax.lines if ln.get_label() == "OOM kill"][0]
    assert list(vline.get_xdata()) == pytest.approx([0.5, 0.5])  # last sample time
    mem = [ln for ln in mem_ax.lines if ln.get_label() == "memory"][0]
    assert list(mem.get_ydata()) == pytest.approx([10, 20, 30, 40, 50])
    assert "hog" in fig._suptitle.get_text() and "OOMKilled" in fig._suptitle.get_text()
    assert figure_png(fig).startswith(b"\x89PNG")


def test_plot_normal_run_has_no_oom_marker_or_limit(ok_run):
    fig = RunView(ok_run).plot()
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    assert _oom_lines(fig) == []
    labels = _labels(fig)
    assert labels[0] == ["memory", "peak (kernel)"] and labels[1] == ["CPU"] and labels[2] == ["pids"]
    cpu = fig.axes[1].lines[0]
    assert np.isnan(cpu.get_ydata()[0])
    assert list(cpu.get_ydata()[1:]) == pytest.approx([50, 200, 0])


def test_plot_on_given_axes(ok_run, oom_run):
    fig = Figure()
    ax = fig.add_subplot()
    assert RunView(oom_run).plot(ax=ax) is fig
    assert [ln.get_label() for ln in ax.lines][:2] == ["memory", "memory limit"]
    fig2 = Figure()
    axes = fig2.subplots(1, 3)
    assert plot_run(ok_run, ax=list(axes)) is fig2
    assert [ax.lines[0].get_label() for ax in axes] == ["memory", "CPU", "pids"]


def test_plot_empty_run(empty_run):
    fig = RunView(empty_run).plot()
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    assert any(t.get_text() == "no samples" for t in fig.axes[0].texts)
    figure_png(fig)
    oom_no_samples = ContainerRun(id="x" * 16, spec=ContainerSpec(command=("true",)), oom_killed=True,
                                  exit_code=137, signal=9, duration=0.3)
    assert _oom_lines(plot_run(oom_no_samples))


# -- HTML -----------------------------------------------------------------------------------------
def test_html_oom_card(oom_run):
    oom_run.error = 'Traceback:\n  <script>alert("x")</script>\nMemoryError'
    oom_run.error_name = "MemoryError"
    html = RunView(oom_run)._repr_html_()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # stderr
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html  # error
    assert "OOMKilled (exit 137, SIGKILL)" in html
    assert "50.0 MiB / 50.0 MiB (100%)" in html
    assert "512.3 ms" in html
    for k in KINDS:
        assert f">{k}<" in html
    assert "/tmp/hog.bin" in html and "4.0 KiB" in html
    assert "memory.swappiness set to 0" in html
    assert "#cf222e" in html  # red status


def test_html_ok_and_escapes_names(ok_run, empty_run):
    html = RunView(ok_run)._repr_html_()
    assert "exited 0" in html and "OOMKilled" in html  # the field label, value false
    assert "OOMKilled (exit" not in html
    assert "#1a7f37" in html and "35.2 ms" in html
    assert RunView(empty_run)._repr_html_().startswith("<div")
    ok_run.notes = ["a <b>bold</b> & note"]
    assert "a &lt;b&gt;bold&lt;/b&gt; &amp; note" in RunView(ok_run)._repr_html_()


def test_html_diff_capped(ok_run):
    ok_run.diff = [DiffEntry("A", f"/data/f{i:03d}", 10) for i in range(120)]
    html = RunView(ok_run)._repr_html_()
    assert "/data/f049" in html and "/data/f050" not in html
    assert "… 70 more" in html
    assert "120 added, 0 changed, 0 deleted" in html


def test_html_status_lines():
    spec = ContainerSpec(command=("true",))
    from pycontainer_magics.display.format import status_text

    assert status_text(ContainerRun("a", spec, exit_code=3)) == "exited 3"
    assert status_text(ContainerRun("a", spec, exit_code=137, signal=9, timed_out=True)) == \
        "timeout (exit 137, SIGKILL)"
    assert status_text(ContainerRun("a", spec, exit_code=139, signal=11)) == "killed by SIGSEGV (exit 139)"
    assert status_text(ContainerRun("a", spec, exit_code=1, error="tb", error_name="ZeroDivisionError")) \
        == "error ZeroDivisionError (exit 1)"


# -- show -----------------------------------------------------------------------------------------
def test_show_displays_card_and_plot(monkeypatch, ok_run, oom_run, empty_run):
    """The plot comes under the card for a run with a curve to show (PLOT_MIN_SAMPLES samples) or an OOM kill to
    mark; a quicker run gets the card alone (a straight line, at 80-150 ms of matplotlib for a cell of 10)."""
    import IPython.display

    from pycontainer_magics.display import PLOT_MIN_SAMPLES

    shown: list = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: shown.extend(objs))
    longer = dataclasses.replace(ok_run, samples=[*ok_run.samples, Sample(0.3, 3 * MiB, 125_000_000, 1)])
    assert len(longer.samples) == PLOT_MIN_SAMPLES
    quick_oom = dataclasses.replace(oom_run, samples=oom_run.samples[:2])  # killed within two samples
    for run in (longer, oom_run, quick_oom):
        shown.clear()
        RunView(run).show()
        assert isinstance(shown[0], RunView) and shown[0].run is run
        assert isinstance(shown[1], IPython.display.Image) and shown[1].data.startswith(b"\x89PNG")
    for run in (ok_run, empty_run):  # four samples; none
        shown.clear()
        RunView(run).show()
        assert len(shown) == 1 and isinstance(shown[0], RunView)
    shown.clear()
    RunView(longer).show(plot=False)  # --no-plot
    assert len(shown) == 1


def test_the_cards_plot_is_drawn_by_the_helper_or_here_when_it_cannot_be(monkeypatch, oom_run):
    """The card's PNG comes from the plot helper, started again once if it died; when it cannot be started the kernel
    draws the plot itself (the card never loses its plot to the helper)."""
    import os
    import signal

    from pycontainer_magics.display import plot_worker

    w = plot_worker.PlotWorker()
    try:
        png = w.png(oom_run)
        assert png is not None and png.startswith(b"\x89PNG")
        first = w.pid
        os.kill(first, signal.SIGKILL)  # died between two cards
        os.waitpid(first, 0)
        again = w.png(oom_run)
        assert again is not None and again.startswith(b"\x89PNG") and w.pid not in (None, first)
    finally:
        w.stop()
    assert w.pid is None and w.fd is None

    def cannot_start(self):
        raise OSError("no interpreter")

    monkeypatch.setattr(plot_worker.PlotWorker, "_start", cannot_start)
    monkeypatch.setattr(plot_worker, "_worker", None)
    assert plot_worker.worker().png(oom_run) is None
    assert plot_worker.card_png(oom_run).startswith(b"\x89PNG")  # drawn here


def test_an_interrupted_or_stuck_plot_helper_is_not_asked_again(monkeypatch, oom_run):
    """Interrupted while it draws, the helper is ended: its answer would otherwise go to the next card, which would show
    the plot of the cell before it. One that does not answer within ANSWER_WITHIN is ended, and the kernel draws
    from then on (no cell waits for it twice)."""
    from pycontainer_magics.display import plot_worker

    other = dataclasses.replace(oom_run, samples=oom_run.samples[:3], spec=ContainerSpec(command=("true",)))
    w = plot_worker.PlotWorker()
    try:
        mine, theirs = w.png(oom_run), w.png(other)
        assert mine and theirs and mine != theirs
        first = w.pid
        real = plot_worker._recv

        def interrupted(sock):
            monkeypatch.setattr(plot_worker, "_recv", real)
            raise KeyboardInterrupt

        monkeypatch.setattr(plot_worker, "_recv", interrupted)
        with pytest.raises(KeyboardInterrupt):
            w.png(oom_run)
        assert w.pid is None
        assert w.png(other) == theirs and w.pid not in (None, first)  # its own plot, not the interrupted one's
    finally:
        w.stop()
    monkeypatch.setattr(plot_worker, "ANSWER_WITHIN", 0.001)  # (its start alone takes longer)
    starts = []
    real_start = plot_worker.PlotWorker._start
    monkeypatch.setattr(plot_worker.PlotWorker, "_start", lambda self: (starts.append(1), real_start(self)))
    stuck = plot_worker.PlotWorker()
    assert stuck.png(oom_run) is None and stuck.pid is None
    assert stuck.png(oom_run) is None and stuck.pid is None
    assert len(starts) == 1  # not started again, not even once more as for a helper that died


def test_a_long_runs_plot_is_drawn_by_the_helper_too(oom_run):
    """Ten minutes of samples at the default interval (60,000: 3 MB pickled) go to the helper and come back drawn."""
    from pycontainer_magics.display import plot_worker

    long = dataclasses.replace(oom_run, samples=[Sample(i / 100, (i % 500) * MiB, i * 10**6, 1) for i in range(60_000)])
    w = plot_worker.PlotWorker()
    try:
        png = w.png(long)
        assert png is not None and png.startswith(b"\x89PNG") and w.pid is not None
    finally:
        w.stop()


def test_a_plot_imports_no_pandas(tmp_path):
    """A notebook whose cells show their plot keeps pandas out of the kernel (tens of MiB each later Python cell's
    fork would copy the page tables of): the plot is drawn from numpy columns, not the usage DataFrame."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from pycontainer_magics.display import RunView\n"
        "from pycontainer_magics.display.plots import figure_png\n"
        "from pycontainer_magics.runtime.result import ContainerRun, Sample\n"
        "from pycontainer_magics.runtime.spec import ContainerSpec\n"
        "run = ContainerRun(id='a', spec=ContainerSpec(python_code='pass', memory=2**26), exit_code=0,\n"
        "                   samples=[Sample(i / 100, i * 2**20, i * 10**6, 1) for i in range(6)])\n"
        "png = figure_png(RunView(run).plot())\n"
        "assert png.startswith(b'\\x89PNG'), png[:8]\n"
        "print('pandas' in sys.modules, 'matplotlib' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert out.stdout.split() == ["False", "True"], out.stderr


# -- live monitor ---------------------------------------------------------------------------------
def test_live_monitor_throttles_and_finishes(oom_run):
    from pycontainer_magics.display.widgets import LiveMonitor

    now = [0.0]
    mon = LiveMonitor.for_spec(oom_run.spec, clock=lambda: now[0], min_interval=0.5)
    drawn = []
    for s in oom_run.samples:  # 5 points within 0.4 s of clock time
        drawn.append(mon.push(s))
        now[0] += 0.1
    assert drawn == [True, False, False, False, False]
    now[0] += 1.0
    assert mon.update(0.6, 50 * MiB, 300_000_000, 2) is True
    assert mon.cpu_percent == pytest.approx([50.0] * 6)
    assert mon._mem.value == "memory 50.0 MiB / 50.0 MiB"
    assert mon._pids.value == "pids 2 / 20"
    assert mon._cpu.value == "CPU 50%"
    before = mon.redraws
    mon.finish(oom_run)
    assert mon.redraws == before + 1
    assert "OOMKilled" in mon._status.value
    assert mon._image is not None and bytes(mon._image.value).startswith(b"\x89PNG")
    assert any(ln.get_gid() == OOM_GID for ax in mon._fig.axes for ln in ax.lines)
    mon.close()


def test_live_monitor_without_plot():
    from pycontainer_magics.display import LiveMonitor

    mon = LiveMonitor(plot=False, title="<x>")
    assert mon.update(0.0, 0, 0, 1) is True
    assert mon._cpu.value == "CPU -"
    assert "&lt;x&gt;" in mon._status.value
    mon.finish()
    assert "done" in mon._status.value


def test_timeline_frame_orders_stages_and_computes_steps() -> None:
    from pycontainer_magics.display import RunView
    from pycontainer_magics.runtime.result import ContainerRun
    from pycontainer_magics.runtime.spec import ContainerSpec

    run = ContainerRun(id="t", spec=ContainerSpec(command=("true",)),
                       timeline=[("b", 0.003), ("a", 0.001), ("c", 0.0065)])
    df = RunView(run).timeline
    assert list(df["stage"]) == ["a", "b", "c"]
    assert list(df["at_ms"].round(3)) == [1.0, 3.0, 6.5]
    assert list(df["took_ms"].round(3)) == [1.0, 2.0, 3.5]


def test_a_long_title_stays_inside_the_figure(oom_run):
    """The README's first example (three limits, OOMKilled): its title ran past both edges of the figure."""
    spec = ContainerSpec(command=("true",), memory=50 * MiB, cpus=0.5, pids_limit=20)
    run = dataclasses.replace(oom_run, spec=spec)
    fig = plot_run(run)
    fig.canvas.draw()
    box = fig._suptitle.get_window_extent()
    assert box.x0 >= 0 and box.x1 <= fig.bbox.x1, (box, fig.bbox)
    assert "--pids-limit 20" in fig._suptitle.get_text() and "OOMKilled" in fig._suptitle.get_text()
