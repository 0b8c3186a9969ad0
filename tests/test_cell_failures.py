"""A magic's failure fails the notebook: fixture notebooks run through a real kernel (nbclient) and nbval.

Each failure kind — a bad option, a library error, a workload that exits non-zero, is killed by a signal,
by the OOM killer or by its timeout, a Python cell that raises, an interrupt — must make its cell an error
(the execute reply is an error, so nbval and "Run all" stop), shown as ONE line. Each expectation flag must
fail its cell when the expectation is not met, and pass it when it is.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (containers with cgroup limits)")

SETUP = """\
%load_ext pycontainer_magics
import os, signal, threading"""

# (name, cell source, does the cell fail?)
CELLS: list[tuple[str, str, bool]] = [
    # bad input: one line, and the cell fails (a plain IPython UsageError would let nbval pass: nbval #147)
    ("bad-option", "%%container --memory bogus\npass", True),
    ("bad-subcommand", "%cgroup frobnicate", True),
    ("bad-expect", "%container --expect sometimes -- true", True),
    ("unknown-image", "%image inspect no-such-image:1", True),
    ("bad-compose-file", "%%compose up\nservices:\n  web:\n    image: host\n    prots: ['80']", True),
    ("failing-build-step", "%%dockerfile\nFROM host\nRUN exit 7", True),
    # how the workload ended
    ("exit-3", "%container --quiet -- sh -c 'echo broken >&2; exit 3'", True),
    ("segfault", "%%container --quiet\nimport ctypes\nctypes.string_at(0)", True),
    ("oom", "%%container --quiet --memory 32M\nhog = bytearray(128 * 2**20)", True),
    ("python-raises", "%%container --quiet\n1 / 0", True),
    ("timeout", "%container --quiet --timeout 300ms -- sleep 30", True),
    ("exec-fails", "%container --quiet -d --name cf-bg -- sleep 30", False),
    ("exec-fails-2", "%container exec cf-bg -- sh -c 'exit 4'", True),
    ("exec-expected", "%container exec --expect-exit 4 cf-bg -- sh -c 'exit 4'", False),
    ("bg-stop", "%container rm -f cf-bg", False),
    ("detached-ok", "%container --quiet -d --name cf-d -- sh -c 'exit 5'", False),
    ("detached-wait", "%container wait cf-d", True),
    ("detached-wait-expected", "%container wait --expect-exit 5 cf-d", False),
    ("detached-rm", "%container rm cf-d", False),
    ("cgroup-run-setup", "%cgroup create cf_group --memory 64M", False),
    ("cgroup-run-empty-body", "%%cgroup run cf_group -- true\n", True),  # IPython's own UsageError, about ours
    ("cgroup-run-exit", "%%cgroup run cf_group\nimport sys; sys.exit(2)", True),
    ("cgroup-run-expected", "%%cgroup run cf_group --expect-exit 2\nimport sys; sys.exit(2)", False),
    ("cgroup-run-command", "%%cgroup run cf_group --expect-exit 2 -- sh -c 'exit 2'\n# the command's stdin", False),
    ("cgroup-run-rm", "%cgroup rm cf_group", False),
    ("netns-setup", "%netns create cf-ns", False),
    ("netns-run-exit", "%%netns run cf-ns\nip link show lo && exit 6", True),
    ("netns-run-expected", "%%netns run --expect-exit 6 cf-ns\nexit 6", False),
    ("netns-rm", "%netns rm cf-ns", False),
    # expectations: met passes, not met fails
    ("expect-oom-met", "%%container --quiet --memory 32M --expect oom\nhog = bytearray(128 * 2**20)", False),
    ("expect-oom-unmet", "%%container --quiet --memory 32M --expect oom\nsmall = bytearray(2**20)", True),
    ("expect-exit-met", "%container --quiet --expect-exit 3 -- sh -c 'exit 3'", False),
    ("expect-exit-unmet", "%container --quiet --expect-exit 3 -- true", True),
    ("expect-exit-other", "%container --quiet --expect exit=3 -- sh -c 'exit 4'", True),
    ("expect-signal-met", "%%container --quiet --expect signal=SEGV\nimport ctypes\nctypes.string_at(0)", False),
    ("expect-signal-unmet", "%container --quiet --expect signal=KILL -- true", True),
    ("expect-timeout-met", "%container --quiet --expect timeout --timeout 300ms -- sleep 30", False),
    ("expect-timeout-unmet", "%container --quiet --expect timeout --timeout 30s -- true", True),
    ("expect-error-met", "%%container --quiet --expect error=ZeroDivisionError\n1 / 0", False),
    ("expect-error-unmet", "%%container --quiet --expect error=ZeroDivisionError\n1 / 1", True),
    ("expect-error-other", "%%container --quiet --expect error=KeyError\n1 / 0", True),
    ("no-raise-error", "%container --quiet --no-raise-error -- sh -c 'exit 9'", False),
    ("result-kept", "assert _container.exit_code == 9, _container.exit_code", False),
    # the stop button: a SIGINT to the kernel while a container runs
    ("interrupt", "threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()\n"
                  "%container --quiet -- sleep 30", True),
    ("after-interrupt", "%container --quiet -- true", False),
]


def _notebook(path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(SETUP)]
    for name, source, _ in CELLS:
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["name"] = name
        nb.cells.append(cell)
    nbformat.write(nb, str(path))


@pytest.fixture(scope="module")
def fixture_notebook(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cell-failures") / "failures.ipynb"
    _notebook(path)
    return path


_STATE = "/var/tmp/pycontainer-cell-failures"  # the notebooks' state directory when the caller names none


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYCONTAINER_STATE_DIR", _STATE)
    return env


@pytest.fixture(scope="module", autouse=True)
def _default_state_removed() -> Iterator[None]:
    """The default state directory (_env) goes after this module's notebooks when they made it (and nothing is mounted
    under it)."""
    made = "PYCONTAINER_STATE_DIR" not in os.environ and not os.path.exists(_STATE)
    yield
    with open("/proc/self/mountinfo") as f:
        mounted = any(line.split()[4].startswith(_STATE) for line in f)
    if made and not mounted:
        shutil.rmtree(_STATE, ignore_errors=True)


@pytest.mark.root
@needs_root
def test_each_failure_is_an_error_of_one_line_and_each_expectation_holds(fixture_notebook: Path) -> None:
    """All cells run (allow_errors), so each cell's own outcome is seen: an error output exactly where a
    failure is due, with a one-line traceback (no frames through the library)."""
    nb = nbformat.read(str(fixture_notebook), as_version=4)
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True,
                                     resources={"metadata": {"path": str(fixture_notebook.parent)}})
    old = os.environ.copy()
    os.environ.update(_env())
    try:
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    setup_errors = [o for o in nb.cells[0].outputs if o.output_type == "error"]
    assert not setup_errors, setup_errors
    wrong = []
    for cell, (name, _, fails) in zip(nb.cells[1:], CELLS, strict=True):
        errors = [o for o in cell.outputs if o.output_type == "error"]
        if bool(errors) != fails:
            wrong.append(f"{name}: {'no error' if fails else errors[0].traceback}")
            continue
        for e in errors:
            if len(e.traceback) != 1 or "\n" in e.traceback[0]:
                wrong.append(f"{name}: a traceback of {len(e.traceback)} lines: {e.traceback}")
    assert not wrong, "\n".join(wrong)
    by_name = {name: cell for cell, (name, _, _) in zip(nb.cells[1:], CELLS, strict=True)}
    line = by_name["oom"].outputs[-1].traceback[0]
    assert line.startswith("ContainerError:") and "OOMKilled" in line and "--expect oom" in line, line
    line = by_name["exit-3"].outputs[-1].traceback[0]
    assert "exited with code 3" in line and "stderr ends: broken" in line, line
    line = by_name["interrupt"].outputs[-1]
    assert line.ename == "CellInterrupted" and line.traceback[0].startswith("KeyboardInterrupt: %container"), line
    assert by_name["bad-option"].outputs[-1].traceback[0].startswith("UsageError: invalid size 'bogus'")


@pytest.mark.root
@needs_root
def test_nbval_fails_exactly_the_failing_cells(fixture_notebook: Path, tmp_path: Path) -> None:
    """nbval --nbval-lax, as lecturers run it: every failing cell is a failed test, every other one passes."""
    junit = tmp_path / "junit.xml"
    p = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--nbval-lax",
                        f"--junitxml={junit}", str(fixture_notebook)], capture_output=True, text=True,
                       timeout=600, env=_env(), cwd=str(fixture_notebook.parent))
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-2000:]
    cases = ET.parse(junit).getroot().iter("testcase")
    outcome = [not any(child.tag in ("failure", "error") for child in case) for case in cases]
    assert len(outcome) == 1 + len(CELLS), p.stdout[-3000:]
    assert outcome[0], "the setup cell failed"
    wrong = [name for ok, (name, _, fails) in zip(outcome[1:], CELLS, strict=True) if ok == fails]
    assert not wrong, f"nbval judged these cells wrongly: {wrong}\n{p.stdout[-3000:]}"


@pytest.mark.root
@needs_root
def test_run_all_stops_at_the_first_failing_cell(tmp_path: Path) -> None:
    """nbclient without allow_errors ("Run all"): the failing magic raises CellExecutionError there, and the
    cell after it never runs."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("%load_ext pycontainer_magics"),
                nbformat.v4.new_code_cell("%container --quiet -- sh -c 'exit 3'"),
                nbformat.v4.new_code_cell("print('never')")]
    client = nbclient.NotebookClient(nb, timeout=60, kernel_name="python3")
    with pytest.raises(nbclient.exceptions.CellExecutionError) as e:
        client.execute()
    assert "exited with code 3" in str(e.value)
    assert nb.cells[2].outputs == [] and nb.cells[2].get("execution_count") is None


def test_a_cell_that_shows_an_error_fails_when_the_error_does_not_happen(tmp_path: Path) -> None:
    """The notebooks' convention for a cell whose point is an error: tags `raises-exception` (nbval lets the
    error through) AND `nbval-check-output` (the stored error, its name and message, must come again). Alone,
    `raises-exception` passes a cell whether or not anything is raised."""
    def cell(source: str, tags: list[str]) -> Any:
        c = nbformat.v4.new_code_cell(source)
        c.metadata["tags"] = tags
        c.execution_count = 1  # a stored run, as in the lecture notebooks
        c.outputs = [nbformat.v4.new_output("error", ename="MagicUsageError", evalue="invalid size 'bogus' for "
                                            "--memory: expected a number with an optional unit b, k, m or g, like 512m",
                                            traceback=["UsageError: ..."])]
        return c

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    both = ["raises-exception", "nbval-check-output"]
    nb.cells = [nbformat.v4.new_code_cell("%load_ext pycontainer_magics"),
                cell("%container --memory bogus -- true", both),       # the error happens: passes
                cell("%container --memory 64m --quiet -- true", both),  # it does not: fails
                cell("%container --memory 64m --quiet -- true", ["raises-exception"])]  # alone: passes anyway
    path = tmp_path / "shows-an-error.ipynb"
    nbformat.write(nb, str(path))
    junit = tmp_path / "junit.xml"
    p = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--nbval-lax",
                        f"--junitxml={junit}", str(path)], capture_output=True, text=True, timeout=300, env=_env(),
                       cwd=str(tmp_path))
    outcome = [not any(child.tag in ("failure", "error") for child in case)
               for case in ET.parse(junit).getroot().iter("testcase")]
    if os.geteuid() != 0:  # without root, a 64m limit is itself refused: only the first two cells say anything
        outcome = outcome[:2]
    assert outcome == [True, True, False, True][:len(outcome)], p.stdout[-3000:]
