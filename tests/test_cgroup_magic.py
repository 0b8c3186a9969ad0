"""`%cgroup` / `%%cgroup run` on a real InteractiveShell against real cgroups (v1 on the host, v2 in the
VM harness). Groups go under a test-only parent (PYCONTAINER_CGROUP_PARENT); none is left behind."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import CGROUP_TEST_PARENT, cgroup_test_hierarchy  # type: ignore[import-not-found]

MiB = 2**20

VERSIONS = [
    pytest.param("v1", marks=[pytest.mark.root, pytest.mark.cgroup1], id="v1"),
    pytest.param("v2", marks=[pytest.mark.root, pytest.mark.cgroup2], id="v2"),
]


@pytest.fixture(params=VERSIONS)
def ip(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import matplotlib

    matplotlib.use("Agg")
    from IPython.core.interactiveshell import InteractiveShell

    from pycontainer_magics.lab.groups import Groups
    from pycontainer_magics.magics import cgroup as cgm
    from pycontainer_magics.magics.cgroup import CgroupMagics

    monkeypatch.setenv("PYCONTAINER_CGROUP_PARENT", CGROUP_TEST_PARENT)
    with cgroup_test_hierarchy(request.param, request.node.name) as (h, _):
        shell = InteractiveShell.instance()
        shell.register_magics(CgroupMagics)
        monkeypatch.setattr(cgm, "_groups", Groups(h))
        try:
            yield shell
        finally:
            cgm._groups.cleanup()


def test_create_set_stats_files_rm(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_line_magic("cgroup", "create demo --memory 100M --cpus 0.5 --pids-limit 50")
    out = capsys.readouterr().out
    version = "v2" if "v2" in out.split("]")[0] else "v1"
    assert f"[cgroup {version}" in out and "created demo" in out
    ip.run_line_magic("cgroup", "set demo --memory 80M")
    df = ip.run_line_magic("cgroup", "stats demo")
    assert df.attrs["cgroup"] == version
    summary = df[df.source == "summary"].set_index("key")["value"]
    assert summary["memory_limit"] == 80 * MiB and summary["pids_limit"] == 50
    files = ip.run_line_magic("cgroup", "files demo")
    want = "memory.max" if version == "v2" else "memory.limit_in_bytes"
    assert files.set_index("file").loc[want, "value"] == str(80 * MiB)
    lst = ip.run_line_magic("cgroup", "list")
    assert list(lst["name"]) == ["demo"]
    tree = ip.run_line_magic("cgroup", f"tree --root /{CGROUP_TEST_PARENT} --depth 1")
    assert tree["path"].str.endswith("named-demo").any()
    ls = ip.run_line_magic("cgroup", f"ls --pid {os.getpid()}")
    assert len(ls) >= 1 and ls.attrs["cgroup"] in ("v1", "v2")
    ip.run_cell_magic("cgroup", "run demo", "print('in', open('/proc/self/cgroup').read().count('named-demo') > 0)")
    assert "in True" in capsys.readouterr().out
    watch = ip.run_line_magic("cgroup", "watch demo --for 0.3s --interval 100ms")
    assert len(watch) >= 3 and watch.attrs["cgroup"] == version
    ip.run_line_magic("cgroup", "rm demo")
    assert ip.run_line_magic("cgroup", "list").empty


def test_bad_input_is_one_usage_error(ip: Any) -> None:
    from IPython.core.error import UsageError

    for line in ("", "frobnicate", "create", "create 9bad", "create x --memory lots", "set nosuch --memory 1M",
                 "set /sys/fs/cgroup/init.scope --memory 1M", "rm nosuch", "run x", "oom --hog x"):
        with pytest.raises(UsageError):
            ip.run_line_magic("cgroup", line)
    with pytest.raises(UsageError, match="refusing"):
        ip.run_line_magic("cgroup", "set /sys/fs/cgroup/system.slice --memory 1M")
    with pytest.raises(UsageError):
        ip.run_cell_magic("cgroup", "run", "pass")


def test_experiments_show_their_numbers(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    r = ip.run_line_magic("cgroup", "oom --hog 100M --memory 40M")
    assert r.oom_killed and r.delta("oom_kill") == 1
    out = capsys.readouterr().out
    assert "OOMKilled" in out and "oom_kill 0→1" in out
    r = ip.run_line_magic("cgroup", "forkbomb --pids-limit 15 --for 0.5s")
    assert r.delta("pids_max") > 0 and max(s.pids for s in r.samples) <= 15
    ex = ip.run_line_magic("cgroup", "oom --hog 60M --memory 30M --slider")
    assert ex.results[-1].oom_killed
    ex.slider.value = 100  # the slider re-runs the hog: no kill with a 100 MiB limit
    assert ex.results[-1].exit_code == 0 and ex.results[-1].delta("oom_kill") == 0


def test_plot_marks_the_oom_kill() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from pycontainer_magics.display.cgroup_views import plot_group_run
    from pycontainer_magics.display.plots import OOM_GID
    from pycontainer_magics.lab.group_run import GroupRun, GroupSample

    r = GroupRun("g", "v1", 1, signal=9, before={"oom_kill": 0}, after={"oom_kill": 1},
                 samples=[GroupSample(0.0, 0, 0, 1, 0), GroupSample(0.1, 40 * MiB, 10**7, 1, 1)],
                 limits={"memory": 40 * MiB})
    fig = plot_group_run(r)
    assert any(line.get_gid() == OOM_GID for ax in fig.axes for line in ax.lines)
    assert "cgroup v1" in fig.get_suptitle()


def test_oom_slider_is_shown_once(ip: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """`%cgroup oom --slider` as a cell: the explorer appears once (the cell's value), not twice."""
    from pycontainer_magics.display.cgroup_views import OomExplorer

    shown: list[object] = []
    original = OomExplorer._repr_mimebundle_

    def counting(self: OomExplorer, **kwargs: Any) -> Any:
        shown.append(self)
        return original(self, **kwargs)

    monkeypatch.setattr(OomExplorer, "_repr_mimebundle_", counting)
    result = ip.run_cell("%cgroup oom --hog 40M --memory 20M --slider")
    assert result.success, result.error_in_exec
    assert len(shown) == 1 and shown[0] is result.result
