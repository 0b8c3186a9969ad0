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


# -- the cgroup experiments ----------------------------------------------------------------------------

def _run(samples: list[Any], limits: dict[str, Any], before: dict[str, int] | None = None,
         after: dict[str, int] | None = None, signal: int | None = None) -> Any:
    from pycontainer_magics.lab.group_run import GroupRun

    return GroupRun(group="g", version="v1", pid=1, exit_code=None if signal else 0, signal=signal,
                    samples=samples, limits=limits, before=before or {}, after=after or {})


def _sample(t: float, **kw: Any) -> Any:
    from pycontainer_magics.lab.group_run import GroupSample

    base = {"memory": 0, "cpu_ns": 0, "pids": 1, "oom_kill": 0}
    return GroupSample(t=t, **{**base, **kw})


def test_window_rates_of_whole_periods_do_not_alias() -> None:
    """A process allowed 20 ms per 100 ms period, sampled about every 50 ms: between consecutive samples the
    rate zig-zags between 0 and 0.4 CPU; per window of two periods it is 0.2 every time."""
    from pycontainer_magics.display.experiment_plots import window_rates

    rng = np.random.default_rng(1)
    t = np.arange(0, 2.0, 0.05) + rng.uniform(0, 0.002, 40)  # the sampler's jitter
    used = np.array([int(x / 0.1) * 0.02 + min(x % 0.1, 0.02) for x in t])  # runs the first 20 ms of each period
    per_sample = np.diff(used) / np.diff(t)
    assert per_sample.max() > 0.3 and per_sample.min() < 0.05
    starts, rate = window_rates(t, used, 0.2)
    assert len(starts) == 9 and np.allclose(rate, 0.2, atol=0.01)


def test_oom_figure_draws_the_limit_and_marks_the_kill() -> None:
    from pycontainer_magics.display.experiment_plots import plot_experiment
    from pycontainer_magics.display.plots import OOM_GID

    mib = 2**20
    samples = [_sample(0.01 * i, memory=4 * mib * i, oom_kill=0) for i in range(13)] + [_sample(0.13, oom_kill=1)]
    r = _run(samples, {"memory": 50 * mib, "hog": 100 * mib}, {"oom_kill": 0}, {"oom_kill": 1, "memory_peak": 50 * mib},
             signal=9)
    ax = plot_experiment(r).axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert "memory limit 50 MiB" in labels and "OOM kill (oom_kill 0→1)" in labels
    kill = [a for a in ax.get_children() if a.get_gid() == OOM_GID]
    assert kill and any(np.allclose(k.get_xdata(), [0.13]) for k in kill if hasattr(k, "get_xdata"))
    assert "100 MiB memory hog: OOMKilled" in ax.get_title()


def test_cpu_quota_figure_is_flat_at_the_quota_and_counts_throttling() -> None:
    from pycontainer_magics.display.experiment_plots import plot_cpu_quota

    samples = [_sample(0.05 * i, cpu_ns=int(0.01e9 * i), nr_throttled=i // 2) for i in range(41)]  # 0.2 CPU
    fig = plot_cpu_quota(_run(samples, {"cpus": 0.2}))
    top, bottom = fig.axes
    stairs = [p for p in top.patches if type(p).__name__ == "StepPatch"]
    assert stairs and np.allclose(stairs[0].get_data().values, 0.2)
    assert "quota 0.2 CPU (--cpus 0.2)" in top.get_legend_handles_labels()[1]
    assert np.allclose([b.get_height() for b in bottom.patches], 10)  # one throttled period per 100 ms


def test_fork_bomb_figure_has_whole_process_counts_and_the_refusals() -> None:
    from pycontainer_magics.display.experiment_plots import plot_fork_bomb

    samples = [_sample(0.02 * i, pids=min(20, 1 + 4 * i), pids_refused=max(0, 40 * (i - 5))) for i in range(50)]
    fig = plot_fork_bomb(_run(samples, {"pids_max": 20}, {"pids_max": 0}, {"pids_max": 1760}))
    top, bottom = fig.axes
    assert all(float(v).is_integer() for v in top.get_yticks())
    assert "pids.max 20" in top.get_legend_handles_labels()[1]
    assert max(b.get_height() for b in bottom.patches) == pytest.approx(2000)
    assert "1760 forks refused" in fig._suptitle.get_text()  # type: ignore[union-attr]


def test_shares_figure_shows_each_groups_part_against_its_weight() -> None:
    from pycontainer_magics.display.experiment_plots import plot_shares
    from pycontainer_magics.lab.experiments import Competition

    a = _run([_sample(0.05 * i, cpu_ns=int(0.04e9 * i)) for i in range(41)], {})
    b = _run([_sample(0.05 * i, cpu_ns=int(0.01e9 * i)) for i in range(41)], {})
    fig = plot_shares(Competition(("shares 1024", "shares 256"), (a, b), (1.6, 0.4), "0"))
    bottom = fig.axes[1]
    part = [p for p in bottom.patches if type(p).__name__ == "StepPatch"][0]
    assert np.allclose(part.get_data().values, 0.8)
    assert "shares 1024 : shares 256 = 80% : 20%" in bottom.get_legend_handles_labels()[1]


# -- namespaces and layers -----------------------------------------------------------------------------

def test_namespace_figure_draws_a_shared_namespace_as_one_box() -> None:
    from pycontainer_magics.display.namespace_views import plot_namespaces

    cols = [("host", {"net": 1, "pid": 2}), ("container", {"net": 1, "pid": 3})]
    fig = plot_namespaces(cols)
    texts = _texts(fig)
    assert texts.count("net:[1]") == 1 and "pid:[2]" in texts and "pid:[3]" in texts
    assert fig.axes[0].get_title() == "1 of 2 namespace kinds are the container's own"


def test_layer_changes_letters_follow_the_lower_layers() -> None:
    from pycontainer_magics.display.layer_views import layer_changes, plot_layer_stack

    @dataclass
    class E:
        path: str
        layer: int
        kind: str
        size: int
        status: str = "visible"

    files = [E("/etc", 0, "dir", 0), E("/etc/motd", 0, "file", 10), E("/bin/vi", 0, "symlink", 0),
             E("/etc", 1, "dir", 0), E("/etc/motd", 1, "file", 12), E("/bin/vi", 1, "whiteout", 0),
             E("/data", 1, "dir", 0)]
    per = layer_changes(files)
    assert [c[:2] for c in per[1]] == [("D", "/bin/vi"), ("A", "/data"), ("C", "/etc"), ("C", "/etc/motd")]
    assert {c[0] for c in per[0]} == {"A"}
    fig = plot_layer_stack([("layer 0", per[0]), ("layer 1", per[1])], writable=[("A", "/new", 3, False)])
    texts = _texts(fig)
    assert texts.index("layer 0") < texts.index("layer 1") and "writable layer" in " ".join(texts)
    assert "/new  (3 B)" in texts and "/bin/vi  (whiteout)" in texts


def test_build_figure_sizes_each_steps_layer_and_marks_cache_hits() -> None:
    from pycontainer_magics.display.build_views import build_layer_sizes, plot_builds

    @dataclass
    class L:
        size: int

    @dataclass
    class Img:
        layers: list[L]

    class Store:
        def get(self, ref: str) -> Img:
            return Img([L(1), L({"aaa": 2048, "bbb": 300}[ref])])

    first = [{"line": 2, "instruction": "COPY x /x", "layer": True, "cached": False, "image": "aaa"},
             {"line": 3, "instruction": "ENV A=$B", "layer": False, "cached": False, "image": "ccc"}]
    again = [dict(r, cached=True) for r in first]
    assert [r["size"] for r in build_layer_sizes(first, Store())] == [2048, 0]
    fig = plot_builds({"first": first, "again": again}, Store())
    ax = fig.axes[0]
    assert "cache hits: first 0 of 2, again 2 of 2" in ax.get_title()
    assert [t.get_text() for t in ax.get_yticklabels()] == ["line 2: COPY x /x", "line 3: ENV A=\\$B"]
    hatched = [p.get_hatch() for p in ax.patches]
    assert hatched == [None, "///"]  # the first build ran the COPY; the second took it from the cache


def test_topology_draws_each_network_its_members_and_published_ports() -> None:
    from pycontainer_magics.display.net_views import plot_topology

    @dataclass
    class Ep:
        name: str
        container_id: str
        address: str
        ifname: str
        host_veth: str
        published: tuple[str, ...] = ()

    @dataclass
    class Net:
        name: str
        bridge: str
        subnet: str
        gateway: str
        endpoints: tuple[Ep, ...]

    nets = [Net("labnet", "pcm-1", "10.99.0.0/24", "10.99.0.1",
                (Ep("web", "c1", "10.99.0.2", "eth0", "pcv1", ("127.0.0.1:18080->80/tcp",)),
                 Ep("db", "c2", "10.99.0.3", "eth0", "pcv2"))),
            Net("other", "pcm-2", "10.98.0.0/24", "10.98.0.1", (Ep("db", "c2", "10.98.0.2", "eth1", "pcv3"),))]
    fig = plot_topology(nets)
    texts = _texts(fig)
    assert texts.count("web") == 1 and texts.count("db") == 1  # db, on both networks, is drawn once
    assert {"veth pcv1", "veth pcv2", "veth pcv3", "127.0.0.1:18080->80/tcp", "eth0 10.99.0.2"} <= set(texts)
    assert "network labnet: bridge pcm-1" in texts and "10.98.0.0/24, gateway 10.98.0.1" in texts
