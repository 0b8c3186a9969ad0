"""Which code cells of the lecture notebooks check themselves — run with `python tests/notebook_checks.py`
for the table; tests/test_notebook_checks.py holds the bar.

Under `pytest --nbval-lax` (the README's and CI's way) a cell fails only when it raises, unless its output is
compared. So a cell CHECKS what it shows when either

- it is COMPARED: a `# NBVAL_CHECK_OUTPUT` comment line or the tag `nbval-check-output`, not overridden by
  `# NBVAL_IGNORE_OUTPUT` (nbval's own reading of tags and markers decides), and its stored output holds
  text nbval compares — stream text, a text/plain or text/html result, an error's name and message (a
  figure's `<Figure size ...>` repr alone says nothing: nbval does not compare the picture); or
- it ASSERTS: an `assert` statement (or `raise AssertionError(...)`) in the cell's code (a `%%container` /
  `%%cgroup run` body written in Python counts: an assertion failing there fails the workload and so the
  cell), or an expectation flag on a magic (`--expect ...`, `--expect-exit N`), which fails the cell when
  the workload does otherwise.

Not checking, whatever else it holds: a cell skipped (`nbval-skip`, `# NBVAL_SKIP`), and a cell tagged
`raises-exception` that is not compared — nbval lets any exception through there, a failing assert too.
Comments and strings never count: the cell is turned into Python the way IPython runs it and parsed.
"""

from __future__ import annotations

import ast
import re
import sys
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

# Magics whose cell body is Python run as the workload (an assert there fails the cell).
PYTHON_BODY_MAGICS = {"container", "cgroup", "netns"}
EXPECT_FLAG = re.compile(r"(^|\s)--expect(-exit)?(\s|=|$)")
REPR_ONLY = re.compile(r"^<(Figure size [^>]*|IPython\.core\.display\.\w+ object|matplotlib\.[^>]*)>$")


@dataclass
class CellCheck:
    index: int
    compared: bool
    asserts: bool
    skipped: bool
    raises: bool
    first_line: str

    @property
    def checks(self) -> bool:
        if self.skipped:
            return False
        if self.raises:
            return self.compared
        return self.compared or self.asserts


@dataclass
class NotebookChecks:
    path: Path
    cells: list[CellCheck] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.cells)

    @property
    def checked(self) -> int:
        return sum(c.checks for c in self.cells)

    @property
    def unchecked(self) -> list[CellCheck]:
        return [c for c in self.cells if not c.checks]


def _first_line(source: str) -> str:
    lines = source.lstrip().splitlines()
    return lines[0].strip() if lines else ""


def _compared_text(outputs: list[Any]) -> bool:
    """Has the stored output something nbval compares and that says something?"""
    for o in outputs:
        kind = o.get("output_type")
        if kind == "stream" and str(o.get("text", "")).strip():
            return True
        if kind == "error" and (o.get("ename") or o.get("evalue")):
            return True
        if kind in ("execute_result", "display_data"):
            data = o.get("data", {})
            if str(data.get("text/html", "")).strip():
                return True
            plain = str(data.get("text/plain", "")).strip()
            if plain and not REPR_ONLY.match(plain):
                return True
    return False


def _python(source: str) -> str:
    from IPython.core.inputtransformer2 import TransformerManager

    return str(TransformerManager().transform_cell(source))


def _is_assertion(node: ast.AST) -> bool:
    """`assert ...`, or `raise AssertionError(...)` (a for/else or a branch that fails the cell)."""
    if isinstance(node, ast.Assert):
        return True
    if isinstance(node, ast.Raise) and node.exc is not None:
        exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        return isinstance(exc, ast.Name) and exc.id == "AssertionError"
    return False


def _asserts(source: str) -> bool:
    """An assert statement in the code, in a Python cell body of a workload magic, or an expectation flag."""
    try:
        tree = ast.parse(_python(source))
    except SyntaxError:
        return False
    for node in ast.walk(tree):
        if _is_assertion(node):
            return True
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("run_cell_magic", "run_line_magic")):
            continue
        args = [a.value if isinstance(a, ast.Constant) and isinstance(a.value, str) else "" for a in node.args]
        if len(args) >= 2 and EXPECT_FLAG.search(args[1].split(" -- ")[0]):
            return True
        if node.func.attr == "run_cell_magic" and len(args) == 3 and args[0] in PYTHON_BODY_MAGICS \
                and " -- " not in f" {args[1]} ":
            try:
                body = ast.parse(args[2])
            except SyntaxError:
                continue
            if any(_is_assertion(n) for n in ast.walk(body)):
                return True
    return False


def check_notebook(path: Path) -> NotebookChecks:
    import nbformat
    from nbval.plugin import find_comment_markers, find_metadata_tags

    nb = nbformat.read(str(path), as_version=4)
    result = NotebookChecks(path)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        # nbval's own reading of a cell's tags and marker comments (comments win), as --nbval-lax runs it
        with warnings.catch_warnings():  # a conflict of markers: nbval warns and takes the latest, as here
            warnings.simplefilter("ignore")
            options: defaultdict[str, bool] = defaultdict(bool, find_metadata_tags(cell.metadata))
            options.update(dict(find_comment_markers(cell.source)))
        result.cells.append(CellCheck(
            index=i,
            compared=options["check"] and _compared_text(cell.get("outputs", [])),
            asserts=_asserts(cell.source),
            skipped=options["skip"],
            raises=options["check_exception"],
            first_line=_first_line(cell.source)[:70],
        ))
    return result


def all_notebooks() -> list[NotebookChecks]:
    return [check_notebook(p) for p in sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))]


def main(argv: list[str]) -> int:
    results = all_notebooks()
    for r in results:
        print(f"{r.path.name:48} {r.checked:3}/{r.total:3} {100 * r.checked / max(r.total, 1):5.1f}%")
        if "-v" in argv:
            for c in r.unchecked:
                print(f"    cell {c.index:3}: {c.first_line}")
    checked, total = sum(r.checked for r in results), sum(r.total for r in results)
    print(f"{'all notebooks':48} {checked:3}/{total:3} {100 * checked / max(total, 1):5.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
