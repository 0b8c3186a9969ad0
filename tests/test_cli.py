"""`pycontainer` on the command line: exit codes like Docker's, one-line errors, output streamed."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import wait_for

from pycontainer_magics.cli import build_parser
from pycontainer_magics.cli.run import exit_code_of, summary_line
from pycontainer_magics.magics import args as shared_args
from pycontainer_magics.runtime.result import ContainerRun
from pycontainer_magics.runtime.spec import ContainerSpec

PYCONTAINER = str(Path(sys.executable).with_name("pycontainer"))
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def pycontainer(*argv: str, stdin: str | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYCONTAINER, *argv], input=stdin, capture_output=True, text=True, timeout=timeout)


# --- no root needed -------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, needles", [
    (["run", "--memory", "lots", "--", "true"], ["invalid size 'lots' for --memory", "like 512m"]),
    (["run", "--bogus", "--", "true"], ["unrecognized arguments: --bogus"]),
    (["run", "--network", "no good!", "--", "true"], ["invalid --network 'no good!'"]),
    (["run", "-v", "rel/dir:/x", "--", "true"], ["'rel/dir'", "absolute"]),
    (["run", "--memory"], ["--memory", "expected one argument"]),
    (["run"], ["nothing to run"]),
    (["run", "--"], ["nothing to run"]),
    (["frobnicate"], ["invalid choice", "frobnicate"]),
    ([], ["required"]),
])
def test_bad_options_exit_125_with_one_line(argv: list[str], needles: list[str]) -> None:
    r = pycontainer(*argv)
    assert r.returncode == 125, r
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pycontainer: error: "), r.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_help() -> None:
    r = pycontainer("run", "--help")
    assert r.returncode == 0
    for opt in ("--memory", "--pids-limit", "--cap-add", "--json", "--interactive", "--tty", "-- CMD"):
        assert opt in r.stdout
    assert "--result" not in r.stdout and "--no-plot" not in r.stdout  # notebook-only options


def test_python_dash_m_entry() -> None:
    r = subprocess.run([sys.executable, "-m", "pycontainer_magics", "run", "--memory", "x"],
                       capture_output=True, text=True)
    assert r.returncode == 125 and r.stderr.startswith("pycontainer: error: invalid size 'x'")


def test_command_after_double_dash_or_not() -> None:
    p = build_parser()
    for argv in (["run", "-m", "50m", "--", "sh", "-c", "echo -m"],
                 ["run", "-m", "50m", "sh", "-c", "echo -m"]):
        ns = p.parse_args(argv)
        assert shared_args.command_of(ns) == ["sh", "-c", "echo -m"]
        assert shared_args.spec_options(ns) == {"memory": "50m"}


def test_summary_line_and_exit_codes() -> None:
    spec = ContainerSpec(command=("true",))
    ok = ContainerRun(id="a", spec=spec, exit_code=0, duration=0.0123, peak_memory=int(4.1 * 2**20))
    assert summary_line(ok) == "exit 0, 12.3 ms, peak 4.1 MiB" and exit_code_of(ok) == 0
    oom = ContainerRun(id="b", spec=spec, exit_code=137, signal=9, oom_killed=True, duration=1.5)
    assert summary_line(oom) == "exit 137 (SIGKILL), 1.50 s, OOMKilled" and exit_code_of(oom) == 137
    assert exit_code_of(ContainerRun(id="c", spec=spec, exit_code=None, oom_killed=True)) == 137


# --- real containers ----------------------------------------------------------------------------

@pytest.mark.root
@needs_root
def test_true_exits_0_with_summary() -> None:
    r = pycontainer("run", "--", "/bin/true")
    assert r.returncode == 0 and r.stdout == ""
    assert r.stderr.startswith("exit 0, ") and "peak" in r.stderr and len(r.stderr.splitlines()) == 1


@pytest.mark.root
@needs_root
def test_exit_code_passes_through() -> None:
    assert pycontainer("run", "--", "sh", "-c", "exit 1").returncode == 1
    assert pycontainer("run", "sh", "-c", "exit 3").returncode == 3  # `--` is optional, as in docker run


@pytest.mark.root
@needs_root
def test_output_streams_and_options_apply() -> None:
    r = pycontainer("run", "--hostname", "lab", "-e", "GREETING=hi", "--", "sh", "-c",
                    "hostname; echo $$; echo $GREETING; echo oops >&2")
    assert r.returncode == 0
    assert r.stdout.split() == ["lab", "1", "hi"]
    assert r.stderr.startswith("oops\n")


@pytest.mark.root
@needs_root
def test_interactive_stdin_quiet() -> None:
    r = pycontainer("run", "-i", "-q", "--", "sh", stdin="echo piped $$\n")
    assert (r.returncode, r.stdout, r.stderr) == (0, "piped 1\n", "")


@pytest.mark.root
@needs_root
def test_json_summary_on_stderr() -> None:
    r = pycontainer("run", "--json", "--name", "j1", "--", "true")
    assert r.returncode == 0 and r.stdout == ""
    summary = json.loads(r.stderr)
    assert summary["exit_code"] == 0 and summary["status"] == "exited" and summary["name"] == "j1"


@pytest.mark.root
@needs_root
def test_missing_command_is_127() -> None:
    r = pycontainer("run", "--", "/nonexistent-command")
    assert r.returncode == 127
    assert r.stderr.count("/nonexistent-command: No such file or directory") == 1


@pytest.mark.root
@needs_root
def test_oom_exits_137() -> None:
    r = pycontainer("run", "--memory", "20m", "--memory-swap", "20m", "--", sys.executable, "-c",
                    "b = bytearray(200 * 2**20)")
    assert r.returncode == 137, r.stderr
    assert "OOMKilled" in r.stderr


@pytest.mark.root
@needs_root
def test_timeout_kills() -> None:
    r = pycontainer("run", "--timeout", "300ms", "--", "sleep", "30")
    assert r.returncode == 137 and "timed out" in r.stderr


def _payload_running(ancestor: int, cmdline: bytes) -> bool:
    """Is a descendant of `ancestor` running `cmdline` (NUL-separated, as /proc/PID/cmdline has it)?"""
    parents: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    stat = f.read()
                parents[int(d)] = int(stat[stat.rindex(")") + 2:].split()[1])
            except (OSError, ValueError):
                continue
    for pid in parents:
        p, hops = pid, 0
        while p in parents and p != ancestor and hops < 50:
            p, hops = parents[p], hops + 1
        if p == ancestor and pid != ancestor:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if f.read() == cmdline:
                        return True
            except OSError:
                continue
    return False


@pytest.mark.root
@needs_root
def test_interrupt_exits_130() -> None:
    p = subprocess.Popen([PYCONTAINER, "run", "--", "sleep", "30"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    # interrupt once the container's payload runs (not after a fixed second, which a loaded machine may need
    # for the launch alone)
    assert wait_for(lambda: _payload_running(p.pid, b"sleep\x0030\x00"), 30), "the container never started"
    p.send_signal(signal.SIGINT)
    _out, err = p.communicate(timeout=20)
    assert p.returncode == 130 and "interrupted" in err


@pytest.mark.root
@needs_root
def test_interrupt_while_output_streams_exits_130() -> None:
    """A container printing without pause keeps the CLI's loop busy handling output: the interrupt lands there,
    not in its wait, and must still be a docker stop (the CLI hung with PID 1 running, or died of SIGINT)."""
    loop = "while :; do echo xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; done"
    cmdline = b"sh\x00-c\x00" + loop.encode() + b"\x00"
    for _ in range(3):
        p = subprocess.Popen([PYCONTAINER, "run", "--", "sh", "-c", loop], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        try:
            pid = p.pid
            assert wait_for(functools.partial(_payload_running, pid, cmdline), 30), "the container never started"
            time.sleep(0.3)
            p.send_signal(signal.SIGINT)
            _out, err = p.communicate(timeout=20)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        assert p.returncode == 130 and "interrupted" in err, (p.returncode, err[-300:])


@pytest.mark.root
@needs_root
def test_prune() -> None:
    r = pycontainer("prune")
    assert r.returncode == 0 and "removed" in r.stderr


@pytest.mark.parametrize("argv", [["kube", "play", "{missing}"], ["kube", "validate", "{missing}"],
                                  ["kube", "generate", "--compose", "{missing}"], ["kube", "validate", "{binary}"]])
def test_kube_commands_given_a_file_they_cannot_read_say_so_in_one_line(argv: list[str], tmp_path: Path) -> None:
    """Was `pycontainer: error: [Errno 2] No such file or directory: '...'` (play, generate), or a traceback
    for a binary file."""
    binary = tmp_path / "blob"
    binary.write_bytes(bytes(range(256)) * 4)
    p = pycontainer(*[a.format(missing=tmp_path / "nope.yaml", binary=binary) for a in argv])
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 125 and len(lines) == 1, p.stderr
    assert "cannot read" in lines[0] and "No such file or directory" in lines[0] or "not a text file" in lines[0], \
        lines[0]
