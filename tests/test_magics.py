"""`%%container` through a real IPython InteractiveShell.

Three parts: option handling that needs no runtime (bad options become one UsageError line, help),
the skin's wiring against a stand-in `runtime.run` (what goes where after a run), and end-to-end
runs in real containers (root).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

import pycontainer_magics
from pycontainer_magics import runtime
from pycontainer_magics.magics.errors import ContainerError
from pycontainer_magics.runtime.result import ContainerRun
from pycontainer_magics.runtime.spec import ContainerSpec, SpecError

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.fixture(scope="module")
def ip() -> Iterator[InteractiveShell]:
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "pycontainer_magics")
    yield shell


@pytest.fixture(autouse=True)
def _clean_ns(ip: InteractiveShell) -> Iterator[None]:
    # Before too: the shell is the process's one instance, and another module's test may have left a result in it
    names = ("_container", "x", "y", "r1", "secret")
    for name in names:
        ip.user_ns.pop(name, None)
    yield
    for name in names:
        ip.user_ns.pop(name, None)


def usage_error(ip: InteractiveShell, line: str, cell: str | None = "pass") -> str:
    with pytest.raises(UsageError) as e:
        if cell is None:
            ip.run_line_magic("container", line)
        else:
            ip.run_cell_magic("container", line, cell)
    msg = str(e.value)
    assert "\n" not in msg and msg
    return msg


# --- no runtime needed ---------------------------------------------------------------------------

def test_package_import_is_cheap() -> None:
    code = ("import sys, pycontainer_magics, pycontainer_magics.magics.args,"
            " pycontainer_magics.runtime.parse, pycontainer_magics.cli;"
            "bad = [m for m in ('IPython', 'pandas', 'matplotlib', 'ipywidgets') if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_magic_registered(ip: InteractiveShell) -> None:
    assert "container" in ip.magics_manager.magics["cell"]
    assert "container" in ip.magics_manager.magics["line"]


def test_a_line_is_parsed_once_and_each_cell_gets_its_own_options(ip: InteractiveShell) -> None:
    # The options of a line are parsed once (a re-run cell does not pay argparse again); what a cell gets is its
    # own copy, and a line in error fails every time, not only the first.
    from pycontainer_magics.magics.container import _parse_line, _parsed

    parser = ip.magics_manager.registry["ContainerMagics"].container.parser
    line = "-e A=1 -e B=2 --memory 64m"
    first = _parsed(parser, line)
    hits = _parse_line.cache_info().hits
    first.env.append("C=3")
    again = _parsed(parser, line)
    assert _parse_line.cache_info().hits == hits + 1
    assert again.env == ["A=1", "B=2"] and again is not first
    for _ in range(2):
        assert usage_error(ip, "--memory lots").startswith("invalid size 'lots' for --memory")


def test_bad_memory_is_one_usage_error_line(ip: InteractiveShell) -> None:
    msg = usage_error(ip, "--memory lots")
    assert msg == ("invalid size 'lots' for --memory: expected a number with an optional unit b, k, m or g, "
                   "like 512m")


def test_usage_error_shown_without_traceback(ip: InteractiveShell,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    result = ip.run_cell("%%container --memory lots\npass\n")
    assert isinstance(result.error_in_exec, UsageError)
    err = capsys.readouterr()
    text = err.out + err.err
    assert "UsageError: invalid size 'lots' for --memory" in text
    assert "Traceback" not in text


@pytest.mark.parametrize("line, needles", [
    ("--memory 1k", ["--memory", "6m"]),
    ("--network 'no good!'", ["'no good!'", "none", "host", "bridge"]),
    ("--network none --share net", ["--network none", "--share net"]),
    ("--share pidd", ["'pidd'", "mount"]),
    ("-v ./data:/data", ["'./data'", "absolute"]),
    ("--tmpfs /run:size=huge", ["'huge'"]),
    ("-e 1X=2", ["'1X=2'"]),
    ("--cap-add FLY", ["'FLY'"]),
    ("--timeout soon", ["'soon'", "--timeout"]),
    ("--userns sometimes", ["'sometimes'"]),
    ("--time-offset realtime=5", ["'realtime=5'"]),
    ("--hostname bad_name!", ["'bad_name!'"]),
    ("-o not-a-name", ["'not-a-name'"]),
    ("-o x -- sh", ["-o/--output"]),
    ("--result 1bad", ["'1bad'"]),
    ("--memroy 5m", ["unrecognized arguments", "--memroy"]),
    ("--memory", ["--memory", "expected one argument"]),
    ("--env 'unbalanced", ["cannot split"]),
])
def test_bad_options_are_usage_errors(ip: InteractiveShell, line: str, needles: list[str]) -> None:
    msg = usage_error(ip, line)
    for n in needles:
        assert n in msg, (n, msg)


def test_line_magic_needs_a_command(ip: InteractiveShell) -> None:
    assert "needs a command after --" in usage_error(ip, "--memory 50m", cell=None)


def test_help_lists_the_options(ip: InteractiveShell) -> None:
    doc = ip.find_cell_magic("container").__doc__
    for opt in ("--memory", "--memory-swap", "--cpus", "--cpu-shares", "--cpuset-cpus", "--pids-limit",
                "--hostname", "--share", "--userns", "--time-offset", "--rootfs", "--image", "--read-only",
                "--volume", "--tmpfs", "--workdir", "--env", "--cap-add", "--cap-drop", "--network",
                "--timeout", "--interval", "--name", "--output", "--result", "--quiet", "--no-diff",
                "--no-plot", "-- CMD"):
        assert opt in doc, opt
    assert "--json" not in doc and "--interactive" not in doc  # terminal-only options


def test_question_mark_prints_help(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_cell("%%container?")
    out = capsys.readouterr().out
    assert "--memory" in out and "--pids-limit" in out


def test_unload_and_reload(ip: InteractiveShell) -> None:
    ip.run_line_magic("reload_ext", "pycontainer_magics")
    assert "container" in ip.magics_manager.magics["cell"]
    pycontainer_magics.unload_ipython_extension(ip)
    assert "container" not in ip.magics_manager.magics["cell"]
    pycontainer_magics.load_ipython_extension(ip)
    assert "container" in ip.magics_manager.magics["cell"]


def test_load_tolerates_prune_errors(ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    def broken() -> list[str]:
        raise PermissionError(13, "Permission denied", "/sys/fs/cgroup")

    from pycontainer_magics.workloads import prune as prune_module

    monkeypatch.setattr(prune_module, "prune", broken)
    pycontainer_magics.load_ipython_extension(ip)
    monkeypatch.setattr(prune_module, "prune", lambda: ["cgroup a", "state b"])
    pycontainer_magics.load_ipython_extension(ip)
    assert "removed 2 leftover(s)" in capsys.readouterr().out


_SHELL = ("import sys\n"
          "from IPython.core.interactiveshell import InteractiveShell\n"
          "ip = InteractiveShell.instance()\n")


def _in_a_fresh_kernel(script: str, tmp_path: Any) -> subprocess.CompletedProcess[str]:
    """`script` run by a new Python process, after an IPython shell `ip` is made there (and sys imported), with state
    and run directories of its own under tmp_path."""
    env = {**os.environ, "PYCONTAINER_STATE_DIR": str(tmp_path / "state"), "PYCONTAINER_RUN_DIR": str(tmp_path / "run")}
    return subprocess.run([sys.executable, "-c", _SHELL + script], capture_output=True, text=True, env=env,
                          timeout=120)


@needs_root
@pytest.mark.root
def test_a_kernel_that_uses_no_network_never_loads_the_netlink_library(tmp_path: Any) -> None:
    """pyroute2 is 8 MB of a kernel's memory, which every Python cell's fork copies the page tables of. Loading
    the extension (its prune of a killed kernel's leftovers) and cells without a network leave it unloaded, and the
    kube play machinery (http.client, ssl) and asyncio too, and the network, workloads and kube records modules
    the prune needs (it runs in a forked child); the first cell on a network loads pyroute2."""
    script = (
        "before = set(sys.modules)\n"
        "ip.run_line_magic('load_ext', 'pycontainer_magics')\n"
        "ip.run_cell_magic('container', '--quiet', 'pass')\n"
        "ip.run_line_magic('container', '--quiet -- true')\n"
        "heavy = ('asyncio', 'ssl', 'http.client', 'hashlib', 'pycontainer_magics.kube.play',\n"
        "         'pycontainer_magics.kube.records', 'pycontainer_magics.network', 'pycontainer_magics.workloads')\n"
        "print(sorted(m for m in heavy if m in sys.modules and m not in before))\n"
        "print('loaded' if any(m.startswith('pyroute2') for m in sys.modules) else 'not loaded')\n"
        "ip.run_line_magic('container', '--quiet --network bridge -- true')\n"
        "print('loaded' if any(m.startswith('pyroute2') for m in sys.modules) else 'not loaded')\n")
    import socket

    if any(name.startswith(("pcm-", "pcv")) for _, name in socket.if_nameindex()):
        pytest.skip("another process's network links are on this host: the prune at load asks netlink about them")
    out = _in_a_fresh_kernel(script, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "not", "loaded", "loaded"], (out.stdout, out.stderr)


def test_load_prunes_a_killed_kernels_leftovers_in_a_child_and_keeps_none_of_its_modules(tmp_path: Any) -> None:
    """The prune at %load_ext runs in a forked child (linux/forked_call.py): a dead kernel's pod record is removed
    and said so, and the modules the prune imported went with the child."""
    pods = tmp_path / "run" / "pods"
    pods.mkdir(parents=True)
    (pods / "gone.json").write_text("{cut short")  # a record a crash left half written: prune removes it
    script = (
        "ip.run_line_magic('load_ext', 'pycontainer_magics')\n"
        "print(sorted(m for m in ('pycontainer_magics.workloads', 'pycontainer_magics.network',\n"
        "                         'pycontainer_magics.kube.records') if m in sys.modules))\n")
    out = _in_a_fresh_kernel(script, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-2:] == ["pycontainer_magics: removed 1 leftover(s) of a previous kernel", "[]"], \
        (out.stdout, out.stderr)
    assert not (pods / "gone.json").exists()


@needs_root
@pytest.mark.root
def test_a_shown_cell_plots_only_a_curve_and_keeps_matplotlib_and_pandas_out_of_the_kernel(tmp_path: Any) -> None:
    """A cell shown as a notebook shows it (no --quiet): a quick one gets its card alone, without matplotlib or pandas
    imported (drawing its two-sample plot was 150-200 ms, twenty times the cell, and the two left 80-160 MB in the
    kernel for every later Python cell's fork); one that runs long enough for a curve gets the plot under its card,
    drawn by a helper (display/plot_worker.py), so neither is imported into the kernel; the helper goes with it."""
    script = (
        "import IPython.display\n"
        "ip.run_line_magic('load_ext', 'pycontainer_magics')\n"
        "shown = []\n"
        "IPython.display.display = lambda *objs, **kw: shown.extend(type(o).__name__ for o in objs)\n"
        "def cell(opts, body):\n"
        "    shown.clear()\n"
        "    ip.run_cell_magic('container', '--memory 64m ' + opts, body)\n"
        "    print(','.join(shown), 'pandas' in sys.modules, 'matplotlib' in sys.modules)\n"
        # (one reading a second: the quick cell has its first and last however slow the machine)
        "cell('--interval 1', 'pass')\n"
        "cell('--interval 0.01', 'import time; time.sleep(0.3)')\n"
        "from pycontainer_magics.display.plot_worker import worker\n"
        "print(worker().pid)\n")
    out = _in_a_fresh_kernel(script, tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:2] == ["RunView False False", "RunView,Image False False"], (out.stdout, out.stderr)
    from helpers import wait_for

    helper = int(lines[2])

    def gone() -> bool:  # (exited: reaped, or a zombie of whoever adopted it)
        try:
            with open(f"/proc/{helper}/stat") as f:
                stat = f.read()
        except FileNotFoundError:
            return True
        return stat[stat.rindex(")") + 2] == "Z" or "plot_worker" not in open(f"/proc/{helper}/cmdline").read()

    assert wait_for(gone), "the plot helper outlived its kernel"


# --- the skin's wiring, against a stand-in runtime ------------------------------------------------

class FakeInterrupted(KeyboardInterrupt):
    def __init__(self, run: ContainerRun) -> None:
        super().__init__()
        self.run = run


class FakeLaunchError(OSError):
    pass


class FakeRuntime:
    """Records what the magic passes to `runtime.run` and returns a canned ContainerRun."""

    def __init__(self) -> None:
        self.calls: list[tuple[ContainerSpec, dict[str, Any] | None]] = []
        self.behaviour: Callable[[ContainerSpec, dict[str, Any] | None, Callable[[str, str], None]],
                                 ContainerRun] = self.ok

    @staticmethod
    def ok(spec: ContainerSpec, g: dict[str, Any] | None, out: Callable[[str, str], None]) -> ContainerRun:
        out("stdout", "hello out\n")
        out("stderr", "hello err\n")
        outputs = {name: f"value of {name}" for name in spec.outputs}
        return ContainerRun(id="fake", spec=spec, exit_code=0, outputs=outputs)

    def run(self, spec: ContainerSpec, *, python_globals: dict[str, Any] | None = None,
            on_output: Callable[[str, str], None] | None = None) -> ContainerRun:
        self.calls.append((spec, python_globals))
        assert on_output is not None
        return self.behaviour(spec, python_globals, on_output)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeRuntime:
    f = FakeRuntime()
    monkeypatch.setattr(runtime, "run", f.run, raising=False)
    monkeypatch.setattr(runtime, "ContainerInterrupted", FakeInterrupted, raising=False)
    monkeypatch.setattr(runtime, "LaunchError", FakeLaunchError, raising=False)
    return f


@pytest.fixture
def shows(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    from pycontainer_magics.display import RunView

    calls: list[bool] = []
    monkeypatch.setattr(RunView, "show", lambda self, plot=True: calls.append(plot))
    return calls


def test_python_cell_wiring(ip: InteractiveShell, fake: FakeRuntime, shows: list[bool],
                            capsys: pytest.CaptureFixture[str]) -> None:
    from pycontainer_magics.display import RunView

    ip.run_cell_magic("container", "--memory 50M --hostname lab -o x,y", "x = 1\ny = 2\n")
    spec, g = fake.calls[-1]
    assert spec.python_code == "x = 1\ny = 2\n" and spec.command == ()
    assert spec.memory == 50 * 2**20 and spec.hostname == "lab" and spec.outputs == ("x", "y")
    assert g is ip.user_ns  # the cell sees the notebook's variables
    out = capsys.readouterr()
    assert out.out == "hello out\n" and out.err == "hello err\n"  # streamed to the cell's streams
    assert isinstance(ip.user_ns["_container"], RunView) and ip.user_ns["_container"].run.id == "fake"
    assert ip.user_ns["x"] == "value of x" and ip.user_ns["y"] == "value of y"
    assert shows == [True]


def test_command_cell_wiring(ip: InteractiveShell, fake: FakeRuntime, shows: list[bool]) -> None:
    ip.run_cell_magic("container", "--memory 50M --network host -- sh -c 'cat; echo done'", "echo $$\n")
    spec, g = fake.calls[-1]
    assert spec.command == ("sh", "-c", "cat; echo done") and spec.python_code is None
    assert spec.stdin_data == b"echo $$\n" and g is None and "net" in spec.share


def test_the_line_is_expanded_as_ipython_would_and_only_when_it_can_be(
        ip: InteractiveShell, fake: FakeRuntime, shows: list[bool], monkeypatch: pytest.MonkeyPatch) -> None:
    """`{expr}` and `$name` in a %%container / %container line expand against the notebook's variables, as IPython's
    own expansion does (the lecture notebooks use `-v {host_dir}:/src`); a line with neither is not given to the
    expansion at all (it copies the whole user namespace each time)."""
    expanded: list[str] = []
    real = InteractiveShell.var_expand

    def counting(self: InteractiveShell, cmd: str, depth: int = 0, **kw: Any) -> str:
        expanded.append(cmd)
        return str(real(self, cmd, depth + 1, **kw))

    monkeypatch.setattr(InteractiveShell, "var_expand", counting)
    ip.user_ns["mem"], ip.user_ns["tag"] = "48m", "lab"
    ip.run_cell_magic("container", "--memory {mem} --hostname $tag", "pass")
    assert fake.calls[-1][0].memory == 48 * 2**20 and fake.calls[-1][0].hostname == "lab"
    ip.run_line_magic("container", "--hostname {tag*2} -- echo $tag '$tag'")  # (IPython leaves a quoted $ alone)
    assert fake.calls[-1][0].hostname == "lablab" and fake.calls[-1][0].command == ("echo", "lab", "$tag")
    assert len(expanded) == 2
    ip.run_cell_magic("container", "--memory 50M --hostname plain", "pass")
    ip.run_line_magic("container", "--pids 5 -- true")
    assert fake.calls[-1][0].pids_limit == 5 and len(expanded) == 2  # nothing to expand: not expanded


def test_a_re_run_cell_is_prepared_once_unless_the_configuration_or_the_host_can_change_it(
        ip: InteractiveShell, fake: FakeRuntime, shows: list[bool], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Any) -> None:
    """The same line and body again: no parse, the same spec and expectation (magics.container._CELLS); a changed
    configuration file, `-e NAME` (read from this environment) and a bind mount (its source must exist) are
    prepared again each time."""
    from pycontainer_magics.magics import container as C

    parsed: list[str] = []
    real = C._parsed
    monkeypatch.setattr(C, "_parsed", lambda parser, line: parsed.append(line) or real(parser, line))
    monkeypatch.delenv("PYCONTAINER_CONFIG", raising=False)
    line = "--memory 50M --quiet --expect-exit 0 --result again1"
    for _ in range(3):
        ip.run_cell_magic("container", line, "pass")
    assert parsed == [line] and fake.calls[0][0] is fake.calls[2][0]
    config = tmp_path / "config.toml"
    config.write_text("[container]\npids-limit = 77\n")
    monkeypatch.setenv("PYCONTAINER_CONFIG", str(config))
    ip.run_cell_magic("container", line, "pass")
    assert len(parsed) == 2 and fake.calls[-1][0].pids_limit == 77
    monkeypatch.setenv("PCM_FROM_HERE", "one")
    for value in ("one", "two"):
        monkeypatch.setenv("PCM_FROM_HERE", value)
        ip.run_cell_magic("container", "--quiet -e PCM_FROM_HERE", "pass")
        assert ("PCM_FROM_HERE", value) in fake.calls[-1][0].env
    (tmp_path / "data").mkdir()
    for _ in range(2):
        ip.run_cell_magic("container", f"--quiet -v {tmp_path}/data:/data", "pass")
    assert len(parsed) == 2 + 2 + 2  # (each of those parsed again)


def test_line_magic_runs_a_command(ip: InteractiveShell, fake: FakeRuntime, shows: list[bool]) -> None:
    ip.run_line_magic("container", "run --cpus 0.5 -- hostname")
    spec, _ = fake.calls[-1]
    assert spec.command == ("hostname",) and spec.stdin_data is None and spec.cpus == 0.5
    ip.run_line_magic("container", "--pids 5 -- true")
    assert fake.calls[-1][0].command == ("true",) and fake.calls[-1][0].pids_limit == 5


def test_quiet_result_no_plot_no_diff(ip: InteractiveShell, fake: FakeRuntime, shows: list[bool]) -> None:
    ip.run_cell_magic("container", "--quiet --result r1 --no-diff", "pass")
    assert shows == [] and "r1" in ip.user_ns and "_container" not in ip.user_ns
    assert fake.calls[-1][0].diff is False
    ip.run_cell_magic("container", "--no-plot", "pass")
    assert shows == [False]


def test_cell_exception_shows_traceback(ip: InteractiveShell, fake: FakeRuntime, shows: list[bool],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    tb = 'Traceback (most recent call last):\n  File "<cell>", line 1\nZeroDivisionError: division by zero'
    fake.behaviour = lambda spec, g, out: ContainerRun(id="e", spec=spec, exit_code=1, error=tb,
                                                       error_name="ZeroDivisionError")
    ip.run_cell_magic("container", "--expect error=ZeroDivisionError", "1/0")
    assert tb in capsys.readouterr().err
    assert ip.user_ns["_container"].error_name == "ZeroDivisionError" and shows == [True]
    with pytest.raises(ContainerError) as e:  # not expected: the cell fails, after the traceback and the card
        ip.run_cell_magic("container", "", "1/0")
    assert "raised ZeroDivisionError: division by zero (exit code 1)" in str(e.value)
    assert tb in capsys.readouterr().err and shows == [True, True]


def test_launch_error_is_usage_error(ip: InteractiveShell, fake: FakeRuntime) -> None:
    def fail(spec: ContainerSpec, g: Any, out: Any) -> ContainerRun:
        raise FakeLaunchError(1, "Operation not permitted: unshare(CLONE_NEWUSER)")

    fake.behaviour = fail
    assert "Operation not permitted" in usage_error(ip, "")


def test_runtime_spec_error_is_usage_error(ip: InteractiveShell, fake: FakeRuntime) -> None:
    def fail(spec: ContainerSpec, g: Any, out: Any) -> ContainerRun:
        raise SpecError("--cpus needs the cpu controller, which this host does not have")

    fake.behaviour = fail
    assert usage_error(ip, "") == "--cpus needs the cpu controller, which this host does not have"


def test_interrupt_stores_run_and_reraises(ip: InteractiveShell, fake: FakeRuntime) -> None:
    def interrupted(spec: ContainerSpec, g: Any, out: Any) -> ContainerRun:
        raise FakeInterrupted(ContainerRun(id="int", spec=spec, interrupted=True, stop_signal=15,
                                           stop_killed="timeout"))

    fake.behaviour = interrupted
    with pytest.raises(KeyboardInterrupt) as e:
        ip.run_cell_magic("container", "", "while True: pass")
    assert ip.user_ns["_container"].run.id == "int"
    assert e.value._render_traceback_() == [  # type: ignore[attr-defined]
        "KeyboardInterrupt: %%container interrupted: the container was stopped and removed (SIGTERM, then SIGKILL "
        "after the 5 s grace period)"]


# --- end to end (real containers) ----------------------------------------------------------------

def _run_cell(ip: InteractiveShell, line: str, body: str,
              capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    ip.run_cell_magic("container", "--quiet " + line, body)
    out = capsys.readouterr()
    return out.out, out.err


@pytest.mark.root
@needs_root
def test_e2e_hostname(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = _run_cell(ip, "--hostname lab", "import socket; print(socket.gethostname())", capsys)
    assert out.strip() == "lab"
    assert ip.user_ns["_container"].exit_code == 0


@pytest.mark.root
@needs_root
def test_e2e_a_cells_spec_is_made_once_but_what_it_reads_from_here_each_time(
        ip: InteractiveShell, capsys: pytest.CaptureFixture[str], tmp_path, monkeypatch) -> None:
    # A re-run cell reuses its spec (magics.container._CELLS); `-e NAME` (a variable copied from here) and a bind
    # source (which must exist) are read at each run, not remembered.
    code = "import os; print(os.environ['PCM_HERE'], sorted(os.listdir('/data')))"
    (tmp_path / "one").touch()
    monkeypatch.setenv("PCM_HERE", "first")
    line = f"--quiet -e PCM_HERE -v {tmp_path}:/data"
    assert _run_cell(ip, line, code, capsys)[0].strip() == "first ['one']"
    monkeypatch.setenv("PCM_HERE", "second")
    assert _run_cell(ip, line, code, capsys)[0].strip() == "second ['one']"
    (tmp_path / "one").unlink()
    tmp_path.rmdir()
    with pytest.raises(UsageError, match="does not exist"):
        ip.run_cell_magic("container", line, code)
    pure = "--quiet -e PCM_FIXED=1"
    _run_cell(ip, pure, "pass", capsys)
    first = ip.user_ns["_container"].run.spec
    _run_cell(ip, pure, "pass", capsys)
    assert ip.user_ns["_container"].run.spec is first  # built once


@pytest.mark.root
@needs_root
def test_e2e_output_sent_back(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    ip.user_ns["secret"] = 20
    _run_cell(ip, "-o x", "x = secret + 1", capsys)
    assert ip.user_ns["x"] == 21


@pytest.mark.root
@needs_root
def test_e2e_exception_shows_traceback_and_kernel_survives(ip: InteractiveShell,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    _, err = _run_cell(ip, "--expect error", "def f():\n    return 1 / 0\nf()\n", capsys)
    assert "ZeroDivisionError" in err and "Traceback" in err
    assert ip.user_ns["_container"].error_name == "ZeroDivisionError"
    out, _ = _run_cell(ip, "", "print('alive')", capsys)  # the kernel is still here and runs the next cell
    assert out.strip() == "alive"


@pytest.mark.root
@needs_root
def test_e2e_shell_cell_is_pid_1(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = _run_cell(ip, "-- sh", "echo $$\n", capsys)
    assert out.strip() == "1"


@pytest.mark.root
@needs_root
def test_e2e_summary_card_stored(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_cell_magic("container", "--memory 50M", "print('card')")
    view = ip.user_ns["_container"]
    assert "card" in capsys.readouterr().out
    assert view.run.exit_code == 0 and "<" in view._repr_html_()


@needs_root
def test_unload_removes_every_magic_and_releases_what_was_prepared(ip: InteractiveShell) -> None:
    """What a cell keeps ready for the next one (the launch helper, a namespace holder, a cgroup) shows in
    `%container ps --all` and the doctor, and `%unload_ext` takes it all away with every magic of ours;
    `%reload_ext` brings the magics back and a cell runs."""
    from helpers import wait_for

    from pycontainer_magics.magics import magic_classes
    from pycontainer_magics.runtime.pool import pool, prepared

    def ours() -> list[str]:
        return [f"{kind}:{name}" for kind in ("line", "cell")
                for name, fn in ip.magics_manager.magics[kind].items()
                if isinstance(getattr(fn, "__self__", None), magic_classes())]

    def alive(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    try:
        pool.drain()
        ip.run_cell_magic("container", "--quiet --memory 64m", "pass")  # a Python cell, then a command:
        ip.run_cell_magic("container", "--quiet --memory 64m -- sh", "true")  # what each kind's next starts from
        assert wait_for(lambda: sorted(p.kind for p in prepared()) == ["cgroup", "cgroup", "holder", "holder",
                                                                       "launch helper"], 30), prepared()
        ps = ip.run_line_magic("container", "ps --all")
        assert sorted(ps[ps.status == "prepared"].name) == ["(cgroup)", "(cgroup)", "(holder)", "(holder)",
                                                            "(launch helper)"]
        assert "prepared" not in set(ip.run_line_magic("container", "ps").status)
        doc = ip.run_line_magic("container", "doctor")
        assert "launch helper" in doc.loc["prepared", "why"] and "holder" in doc.loc["prepared", "why"]
        items = prepared()
        pids = [p.pid for p in items if p.pid]
        dirs = [d for p in items for d in p.paths]
        assert len(pids) == 3 and dirs and all(os.path.isdir(d) for d in dirs)
        before = ours()
        assert {"cell:container", "line:cgroup", "line:netns", "line:image", "cell:compose",
                "cell:dockerfile"} <= set(before)

        ip.run_line_magic("unload_ext", "pycontainer_magics")
        assert ours() == []
        assert wait_for(lambda: not any(alive(p) for p in pids), 30), [p for p in pids if alive(p)]
        assert not any(os.path.isdir(d) for d in dirs)
        assert prepared() == []

        ip.run_line_magic("reload_ext", "pycontainer_magics")  # not loaded: loads
        ip.run_line_magic("reload_ext", "pycontainer_magics")  # loaded: unloads, loads
        assert sorted(ours()) == sorted(before)
        ip.run_cell_magic("container", "--quiet --result r1 -- sh", "echo back")
        assert ip.user_ns["r1"].stdout == "back\n"
    finally:
        if "container" not in ip.magics_manager.magics["cell"]:
            ip.run_line_magic("load_ext", "pycontainer_magics")


@needs_root
def test_unload_keeps_the_helper_a_background_container_runs_through(ip: InteractiveShell,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from pycontainer_magics.runtime.zygote import zygote
    from pycontainer_magics.workloads.containers import containers

    ip.run_cell_magic("container", "--detach --name bgkeep -- sh", "sleep 30")
    try:
        capsys.readouterr()
        ip.run_line_magic("unload_ext", "pycontainer_magics")
        assert "the launch helper stays while 1 background container" in capsys.readouterr().out
        assert containers.get("bgkeep").running and zygote().alive()
    finally:
        if "container" not in ip.magics_manager.magics["cell"]:
            ip.run_line_magic("load_ext", "pycontainer_magics")
        containers.remove("bgkeep", force=True)


@pytest.mark.root
@pytest.mark.parametrize("version", [pytest.param("v1", marks=pytest.mark.cgroup1),
                                     pytest.param("v2", marks=pytest.mark.cgroup2)])
def test_e2e_limits_and_expectations_on_each_cgroup_version(ip: InteractiveShell, version: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The magic on each cgroup version (v2: in the VM harness): an OOM kill the cell expects passes and
    reports the version; one it does not expect fails the cell with one line; a pids limit holds."""
    from conftest import require_cgroup  # type: ignore[import-not-found]

    require_cgroup(version)
    hog = ("import time\nchunks = []\nfor i in range(40):\n    chunks.append(bytearray(4 * 2**20))\n"
           "    time.sleep(0.005)\n")
    ip.run_cell_magic("container", "--quiet --memory 32M --expect oom", hog)
    run = ip.user_ns["_container"].run
    assert run.oom_killed and run.exit_code == 137 and run.cgroup_version == version
    assert run.peak_memory is not None and run.peak_memory <= 32 * 2**20
    with pytest.raises(ContainerError) as e:
        ip.run_cell_magic("container", "--quiet --memory 32M", hog)
    assert e.value.oom_killed and len(e.value._render_traceback_()) == 1
    # The children stay until the cell lets them go (the end of a pipe), not for a fixed second: a fork of the cell
    # is slow under the cgroup v2 VM's emulation, and a child gone before the fifth fork would make room for it.
    forks = ("import os\nr, w = os.pipe()\nkids = []\ntry:\n    for _ in range(10):\n        pid = os.fork()\n"
             "        if pid == 0:\n            os.close(w)\n            os.read(r, 1)\n            os._exit(0)\n"
             "        kids.append(pid)\nexcept OSError as e:\n    print('refused after', len(kids))\nos.close(w)\n"
             "for k in kids:\n    os.waitpid(k, 0)\n")
    ip.run_cell_magic("container", "--quiet --pids-limit 5", forks)
    assert capsys.readouterr().out.strip() == "refused after 4"


def test_every_magic_has_help_that_shows_how_to_use_it(ip: InteractiveShell) -> None:
    """`%netns?` and `%image?` said only "see `%netns?`" / "see the module help": a student typing `%NAME?`
    must see the commands."""
    from pycontainer_magics.magics import magic_classes

    for cls in magic_classes():
        for kind, table in cls.magics.items():
            for name in table:
                doc = (ip.find_magic(name, kind).__doc__ or "").strip()
                sigil = "%%" if kind == "cell" else "%"
                assert f"`{sigil}{name}?`" not in doc, f"{sigil}{name}? refers to itself: {doc!r}"
                lines = [ln for ln in doc.splitlines() if ln.strip()]
                assert len(lines) >= 3 and f"{sigil}{name}" in doc or kind == "cell" and name == "netns", \
                    f"{sigil}{name}? shows too little: {doc!r}"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_a_command_that_cannot_run_fails_with_its_exit_code_as_the_hint(ip: InteractiveShell) -> None:
    """A typo in a command (`%container frobnicate`): the line says it could not be run and suggests
    --expect-exit 127 (the exit code a shell and docker give it), not `--expect error=ExecError`."""
    with pytest.raises(ContainerError) as e:
        ip.run_line_magic("container", "--quiet -- no-such-command-qa")
    msg = str(e.value)
    assert "could not be run: no-such-command-qa" in msg and "--expect-exit 127" in msg, msg
    assert "ExecError" not in msg, msg
    ip.run_line_magic("container", "--quiet --expect-exit 127 -- no-such-command-qa")  # and that holds
