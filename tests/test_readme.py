"""The README's notebook examples, run as a newcomer pastes them: each block a cell of a real kernel
(nbclient), in the README's order. A cell the README shows must not fail, and must print what the README
says it prints. The blocks are read from README.md itself, so an edit there is tested here."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

README = Path(__file__).resolve().parent.parent / "README.md"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (containers with cgroup limits)")


def fenced_blocks(text: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"^```[a-z]*\n(.*?)^```", text, re.S | re.M)]


def block_starting(text: str, first_line: str) -> str:
    found = [b for b in fenced_blocks(text) if b.startswith(first_line)]
    assert found, f"README.md has no block starting with {first_line!r}"
    return found[0].rstrip("\n")


def commands_after(text: str, block: str, until: str) -> list[str]:
    """The `%container ...` commands the prose right after `block` names, in order, up to `until`."""
    rest = text[text.index(block) + len(block):]
    rest = rest[:rest.index(until)]
    return re.findall(r"`(%container [^`]+)`", rest)


def execute(cells: list[str], tmp_path: Path) -> list[Any]:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True,
                                     resources={"metadata": {"path": str(tmp_path)}})
    old = os.environ.copy()
    os.environ.setdefault("PYCONTAINER_STATE_DIR", str(tmp_path / "state"))
    ours = "PYCONTAINER_RUN_DIR" not in os.environ
    os.environ.setdefault("PYCONTAINER_RUN_DIR", f"/run/pcm-readme-{os.getpid()}")
    run_dir = os.environ["PYCONTAINER_RUN_DIR"]
    try:
        client.execute()  # (the kernel is shut down when it returns)
    finally:
        os.environ.clear()
        os.environ.update(old)
        if ours:
            shutil.rmtree(run_dir, ignore_errors=True)  # (one per run of the suite was left in /run)
    return list(nb.cells)


def text_of(cell: Any) -> str:
    out = []
    for o in cell.outputs:
        if o.output_type == "stream":
            out.append(o.text)
        elif o.output_type == "error":
            out.append(f"ERROR {o.ename}: {o.evalue}")
        else:
            out.append(o.get("data", {}).get("text/plain", ""))
    return "".join(out)


def errors_of(cells: list[Any]) -> list[str]:
    return [f"cell {c.source.splitlines()[0]!r}: {o.ename}: {o.evalue}"
            for c in cells for o in c.outputs if o.output_type == "error"]


@pytest.mark.root
@needs_root
def test_the_first_example_runs_as_written(tmp_path: Path) -> None:
    """`%load_ext`, then the OOM cell: it prints `1 lab`, ends OOMKilled, and the cell passes (it says so)."""
    readme = README.read_text()
    cells = [block_starting(readme, "%load_ext pycontainer_magics"), block_starting(readme, "%%container --memory 50M"),
             "assert _container.oom_killed and _container.exit_code == 137, _container"]
    ran = execute(cells, tmp_path)
    assert errors_of(ran) == []
    assert "1 lab" in text_of(ran[1]), text_of(ran[1])
    assert "OOMKilled" in text_of(ran[1])


@pytest.mark.root
@needs_root
def test_the_background_container_example_runs_as_written(tmp_path: Path) -> None:
    """The `--detach` block and the commands the README lists after it, in that order: ps, logs, exec,
    stats, stop, wait (after a stop: its exit code, not a failure), rm."""
    readme = README.read_text()
    block = block_starting(readme, "%%container --detach --name web")
    then = commands_after(readme, block, "They end with the kernel")
    assert [c.split()[1] for c in then] == ["ps", "logs", "exec", "stats", "stop", "wait", "rm"], then
    cells = ["%load_ext pycontainer_magics", block,
             "import time\nfrom pycontainer_magics.workloads.containers import containers\n"
             "deadline = time.monotonic() + 30\n"
             "while 'tick' not in containers.get('web').logs() and time.monotonic() < deadline:\n"
             "    time.sleep(0.1)",
             *[c.replace(" stop web", " stop -t 1 web") for c in then]]
    ran = execute(cells, tmp_path)
    assert errors_of(ran) == []
    by_verb = {c.source.split()[1]: text_of(c) for c in ran[3:]}
    assert "tick" in by_verb["logs"]
    assert by_verb["stop"].strip() == "web" and by_verb["rm"].strip() == "web"
    assert by_verb["wait"].strip() in ("137", "143"), by_verb["wait"]  # SIGKILL after -t, or SIGTERM


@pytest.mark.root
@needs_root
def test_wait_still_fails_for_a_container_that_failed_on_its_own(tmp_path: Path) -> None:
    """Stopping forgives only what the stop caused: a container that exited 5 by itself still fails `wait`,
    and a stop of an ended container changes nothing."""
    ran = execute(["%load_ext pycontainer_magics",
                   "%container --quiet -d --name rd-fail -- sh -c 'exit 5'",
                   "from pycontainer_magics.workloads.containers import containers\n"
                   "containers.get('rd-fail').wait(30); None",
                   "%container stop rd-fail",
                   "%container wait rd-fail",
                   "%container rm rd-fail"], tmp_path)
    errs = errors_of(ran)
    assert len(errs) == 1 and "wait" in errs[0] and "exited with code 5" in errs[0], errs
