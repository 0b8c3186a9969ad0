"""The layers import only downwards: linux < images, network < runtime < display < magics.

Read with `ast` (nothing is imported), so the test also covers modules that need root or optional
packages. Package-internal imports are checked wherever they appear (a function-level import of an
upper layer is still a dependency); heavy third-party imports only at module level, since a lazy
import inside a function is how a lower layer may offer an optional view.
cli.py and __init__.py at the package's top level sit above every layer and are exempt.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pycontainer_magics.runtime

PKG = "pycontainer_magics"
ROOT = Path(pycontainer_magics.runtime.__file__).resolve().parent.parent

RANK = {"linux": 0, "images": 1, "network": 1, "runtime": 2, "display": 3, "magics": 4, "kernel": 4}
HEAVY = {"pandas", "matplotlib", "ipywidgets"}
HEAVY_OK = {"display", "magics"}
# The kernel-facing layers do not import IPython either (design: "No IPython ... here").
NO_IPYTHON = {"linux", "images", "network", "runtime"}


def _modules() -> list[tuple[str, Path]]:
    """(dotted name, path) of every module of the package."""
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = [PKG, *rel.parts]
        if parts[-1] == "__init__":
            parts.pop()
        out.append((".".join(parts), path))
    return out


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in RANK) else None


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> list[str]:
    """Absolute names imported by a `from ... import ...` (each name may be a submodule)."""
    if node.level == 0:
        base = node.module or ""
    else:
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        if node.level > 1:
            package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    return [base] + [f"{base}.{a.name}" for a in node.names if a.name != "*"]


def _imports(module: str, path: Path) -> list[tuple[str, int, bool]]:
    """(imported name, line, at module level) for every import statement in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    top_level = set()

    def mark(body: list[ast.stmt]) -> None:
        # Module level includes `if`/`try`/`with` blocks, but not function or class bodies.
        for stmt in body:
            top_level.add(id(stmt))
            if isinstance(stmt, ast.If | ast.Try | ast.With):
                for field in ("body", "orelse", "finalbody"):
                    mark(getattr(stmt, field, []))
                for handler in getattr(stmt, "handlers", []):
                    mark(handler.body)

    mark(tree.body)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = _resolve(module, path, node)
        else:
            continue
        for name in names:
            found.append((name, node.lineno, id(node) in top_level))
    return found


def _type_checking_lines(path: Path) -> set[int]:
    """Lines inside `if TYPE_CHECKING:` blocks: imports there never run."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for stmt in node.body:
                lines.update(range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1))
    return lines


MODULES = _modules()


def test_package_has_the_layers():
    layers = {_layer(m) for m, _ in MODULES}
    assert {"linux", "runtime", "display"} <= layers


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_imports_go_downwards(module, path):
    layer = _layer(module)
    if layer is None:
        pytest.skip("top-level module (cli.py, __init__.py): exempt")
    assert layer in RANK, f"{module}: unknown layer {layer!r}; add it to RANK in this test"
    bad = []
    for name, line, _top in _imports(module, path):
        parts = name.split(".")
        if parts[0] != PKG or len(parts) < 2:
            continue
        target = parts[1]
        if target not in RANK or target == layer:
            continue  # top-level helpers are checked by their own rules; same layer is fine
        if RANK[target] >= RANK[layer]:
            bad.append(f"{path.relative_to(ROOT.parent)}:{line} imports {name} ({layer} -> {target})")
    assert not bad, "upward or sideways imports:\n" + "\n".join(bad)


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_heavy_libraries_only_in_views(module, path):
    layer = _layer(module)
    if layer is None or layer in HEAVY_OK:
        pytest.skip("display/, magics/ and top-level modules may import pandas/matplotlib/ipywidgets")
    typing_only = _type_checking_lines(path)
    forbidden = HEAVY | ({"IPython", "ipykernel"} if layer in NO_IPYTHON else set())
    bad = [
        f"{path.relative_to(ROOT.parent)}:{line} imports {name}"
        for name, line, top in _imports(module, path)
        if top and name.split(".")[0] in forbidden and line not in typing_only
    ]
    assert not bad, "module-level imports of view libraries in a lower layer:\n" + "\n".join(bad)


def test_checker_sees_violations(tmp_path):
    """The helpers above resolve relative imports and tell module level from function level."""
    pkg = tmp_path / PKG / "linux"
    pkg.mkdir(parents=True)
    src = pkg / "bad.py"
    src.write_text(
        "import pandas as pd\n"
        "from ..runtime import result\n"
        "from .. import display\n"
        "def f():\n"
        "    import matplotlib\n"
        "try:\n"
        "    import ipywidgets\n"
        "except ImportError:\n"
        "    pass\n"
    )
    found = {(n, top) for n, _line, top in _imports(f"{PKG}.linux.bad", src)}
    assert ("pandas", True) in found
    assert (f"{PKG}.runtime", True) in found and (f"{PKG}.runtime.result", True) in found
    assert (f"{PKG}.display", True) in found
    assert ("matplotlib", False) in found
    assert ("ipywidgets", True) in found
