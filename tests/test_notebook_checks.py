"""The lecture notebooks check what they show (issue 15): at least 90% of the code cells of every notebook
either have their output compared by nbval or assert / expect what they show (tests/notebook_checks.py says
exactly what counts). A notebook that falls below fails here, so the bar cannot slip back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from notebook_checks import NOTEBOOKS, all_notebooks, check_notebook  # type: ignore[import-not-found]

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("IPython")

BAR = 0.90


def test_every_notebook_checks_at_least_90_percent_of_its_code_cells() -> None:
    results = all_notebooks()
    assert len(results) >= 12, [r.path.name for r in results]  # 00-11 at least: none left out
    low = [f"{r.path.name}: {r.checked}/{r.total}, unchecked cells "
           f"{[c.index for c in r.unchecked]}" for r in results if r.checked < BAR * r.total]
    assert not low, "notebooks below the bar (python tests/notebook_checks.py -v lists the cells):\n" + "\n".join(low)
    checked, total = sum(r.checked for r in results), sum(r.total for r in results)
    assert checked >= BAR * total, (checked, total)


def _cell(source: str, *, tags: tuple[str, ...] = (), outputs: list[Any] | None = None) -> Any:
    c = nbformat.v4.new_code_cell(source)
    c.metadata["tags"] = list(tags)
    c.outputs = outputs or []
    return c


def _judged(tmp_path: Path, *cells: Any) -> list[bool]:
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, str(path))
    return [c.checks for c in check_notebook(path).cells]


def _stream(text: str) -> Any:
    return nbformat.v4.new_output("stream", name="stdout", text=text)


def _result(plain: str) -> Any:
    return nbformat.v4.new_output("execute_result", data={"text/plain": plain}, execution_count=1)


def test_what_counts_as_a_check(tmp_path: Path) -> None:
    assert _judged(
        tmp_path,
        _cell("# NBVAL_CHECK_OUTPUT\nprint(1)", outputs=[_stream("1\n")]),          # compared
        _cell("print(1)", tags=("nbval-check-output",), outputs=[_stream("1\n")]),  # compared (tag)
        _cell("x = 1\nassert x == 1"),                                               # asserts
        _cell("%container --expect-exit 3 -- sh -c 'exit 3'"),                       # an expectation
        _cell("%%container --memory 50M --expect oom\nb = bytearray(2**30)"),
        _cell("%%container --quiet\nimport os\nassert os.getpid() == 1"),           # assert in the body
        _cell("for _ in range(3):\n    pass\nelse:\n    raise AssertionError('never')"),  # an explicit failure
        _cell("# NBVAL_CHECK_OUTPUT\n1 / 0", tags=("raises-exception",),            # an error, compared
              outputs=[nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="division by zero",
                                              traceback=[])]),
    ) == [True] * 8


def test_what_does_not_count(tmp_path: Path) -> None:
    assert _judged(
        tmp_path,
        _cell("print(1)", outputs=[_stream("1\n")]),                                 # shown, not compared
        _cell("# NBVAL_CHECK_OUTPUT\nx = 1"),                                        # compared, but empty
        _cell("# NBVAL_CHECK_OUTPUT\nfig", outputs=[_result("<Figure size 640x480 with 1 Axes>")]),  # repr only
        _cell("# NBVAL_CHECK_OUTPUT\n# NBVAL_IGNORE_OUTPUT\nprint(1)", outputs=[_stream("1\n")]),
        _cell("x = 1  # assert x == 1\ns = 'assert'"),                               # a comment, a string
        _cell("%container --quiet -- echo --expect"),                                # the command's argument
        _cell("%%container --quiet -- sh\nassert true"),                             # a shell body
        _cell("assert 1 / 0", tags=("raises-exception",)),                           # any exception passes
        _cell("# NBVAL_SKIP\nassert False"),                                         # never runs
        _cell("raise ValueError('shown')"),                                          # not an assertion
    ) == [False] * 10


def test_the_notebooks_directory_is_found() -> None:
    assert NOTEBOOKS.is_dir() and (NOTEBOOKS / "sanitize.cfg").exists()
