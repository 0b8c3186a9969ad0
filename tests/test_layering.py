"""The package's shape: layers import only downwards, no two files import each other (directly or round
a longer circle), and the command line and kernel set-up never load the notebook stack.

    linux < images, network < runtime < workloads < oci < lab < display < magics, kernel < cli

Read with `ast` (nothing is imported), so the tests also cover modules that need root or optional
packages. Package-internal imports count wherever they appear (a function-level import of an upper
layer is still a dependency); heavy third-party imports only at module level, since a lazy import inside
a function is how a lower layer may offer an optional view. The top-level modules (__init__.py,
__main__.py) sit above every layer; paths.py and errors.py below every layer (errors.py imports nothing of
the package, paths.py only errors.py).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pycontainer_magics

PKG = "pycontainer_magics"
ROOT = Path(pycontainer_magics.__file__).resolve().parent

RANK = {"linux": 0, "images": 1, "network": 1, "runtime": 2, "workloads": 3, "oci": 4, "kube": 4, "lab": 5,
        "engine": 5.5, "display": 6, "magics": 7, "kernel": 7, "cli": 8}
BOTTOM = {"paths", "errors", "sizes"}  # top-level helpers every layer may use; they import nothing of the package
HEAVY = {"pandas", "matplotlib", "ipywidgets"}
HEAVY_OK = {"display", "magics"}
NOTEBOOK_STACK = HEAVY | {"IPython", "ipykernel"}
# The layers below the skin do not import IPython either (design: "No IPython ... here").
NO_IPYTHON = {"linux", "images", "network", "runtime", "workloads", "oci", "kube", "lab", "engine", "kernel", "cli"}


def _modules(root: Path = ROOT) -> list[tuple[str, Path]]:
    """(dotted name, path) of every module of the package."""
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
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


def _graph(modules: list[tuple[str, Path]]) -> dict[str, dict[str, tuple[int, bool]]]:
    """module -> {module it imports: (line, at module level)}, package-internal only. `from a import b`
    counts as importing the submodule a.b when there is one, else a itself. Imports under
    TYPE_CHECKING count too: a circle that only type checkers walk is still a circle of meaning."""
    known = {m for m, _ in modules}
    graph: dict[str, dict[str, tuple[int, bool]]] = {}
    for module, path in modules:
        edges: dict[str, tuple[int, bool]] = {}
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {(n, line) for n, line, t in _imports(module, path) if t}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base, *subs = _resolve(module, path, node)
                targets = [s for s in subs if s in known] or [base]
                if len(targets) < len(subs):  # some names are attributes of base, not submodules
                    targets.append(base)
            else:
                continue
            for t in targets:
                if t in known and t != module:
                    at_top = any((name, node.lineno) in top for name in (t, *[t.rsplit(".", 1)[0]]))
                    old = edges.get(t)
                    edges[t] = (node.lineno, at_top or (old is not None and old[1]))
        graph[module] = edges
    return graph


def _cycles(graph: dict[str, dict[str, tuple[int, bool]]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, {})))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def _describe(graph: dict[str, dict[str, tuple[int, bool]]], comp: list[str]) -> str:
    inside = set(comp)
    return "; ".join(f"{a} -> {b} (line {graph[a][b][0]})" for a in comp for b in sorted(graph[a]) if b in inside)


MODULES = _modules()
GRAPH = _graph(MODULES)


def test_package_has_the_layers():
    layers = {_layer(m) for m, _ in MODULES}
    assert set(RANK) <= layers


def test_every_layer_says_what_it_owns_and_may_import():
    for layer in RANK:
        doc = ast.get_docstring(ast.parse((ROOT / layer / "__init__.py").read_text(encoding="utf-8"))) or ""
        assert "import" in doc, f"{layer}/__init__.py: the docstring should say what the layer may import"


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_imports_go_downwards(module, path):
    layer = _layer(module)
    if layer is None:
        if module.split(".")[-1] in BOTTOM:
            bad = [f"{name} (line {line})" for name, line, _ in _imports(module, path)
                   if name.startswith(PKG) and name.split(".")[1:2] != ["errors"] and name != PKG]
            assert not bad, f"{module} sits below every layer and imports only errors.py of the package: {bad}"
        else:
            pytest.skip("top-level module (__init__.py, __main__.py): exempt")
        return
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


def test_no_import_cycles():
    cycles = _cycles(GRAPH)
    assert not cycles, "files that import each other:\n" + "\n".join(_describe(GRAPH, c) for c in cycles)


def _reached_from(starts: list[str]) -> set[str]:
    """Modules loaded on the command line's paths: everything its own modules import (its commands
    import what they need inside the command), and from there what is imported at module level, plus
    the packages each module sits in (importing a.b.c runs a/__init__ and a/b/__init__)."""
    seen: set[str] = set()
    todo = list(starts)
    while todo:
        m = todo.pop()
        if m in seen or m not in GRAPH:
            continue
        seen.add(m)
        parts = m.split(".")
        todo += [".".join(parts[:i]) for i in range(2, len(parts))]
        own = _layer(m) in {"cli", "kernel"}
        todo += [t for t, (_line, top) in GRAPH[m].items() if own or top]
    return seen


def test_cli_and_kernel_paths_never_import_the_notebook_stack():
    starts = [m for m, _ in MODULES if _layer(m) in {"cli", "kernel"}]
    paths = dict(MODULES)
    bad = []
    for m in sorted(_reached_from(starts)):
        path = paths[m]
        typing_only = _type_checking_lines(path)
        for name, line, top in _imports(m, path):
            own = _layer(m) in {"cli", "kernel"}
            if (top or own) and name.split(".")[0] in NOTEBOOK_STACK and line not in typing_only:
                bad.append(f"{path.relative_to(ROOT.parent)}:{line} imports {name}")
    assert not bad, "the command line / kernel set-up would load the notebook stack:\n" + "\n".join(bad)


def test_commands_load_no_notebook_stack(tmp_path):
    """The same, measured: what `pycontainer --help`, `run --help` and an OCI `state` call leave in
    sys.modules (the import paths engines and terminals take)."""
    code = textwrap.dedent(f"""
        import sys
        from pycontainer_magics.cli import main
        for argv in (["--help"], ["run", "--help"], ["install-kernel", "--help"],
                     ["state", "--root", {str(tmp_path)!r}, "nosuch"]):
            try:
                main(argv)
            except SystemExit:
                pass
        from pycontainer_magics.oci import lifecycle  # noqa: F401 - the state call's module, loaded
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in {sorted(NOTEBOOK_STACK)!r})
        print("LOADED:" + ",".join(heavy))
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    loaded = p.stdout.rsplit("LOADED:", 1)[1].strip()
    assert "usage: pycontainer" in p.stdout  # the commands did run
    assert loaded == "", f"loaded by the command line: {loaded}"


def test_checker_sees_violations(tmp_path):
    """The helpers above resolve relative imports, tell module level from function level and find
    circles, also round three files and through function-level imports."""
    pkg = tmp_path / PKG / "linux"
    pkg.mkdir(parents=True)
    (tmp_path / PKG / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
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

    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("from .c import X\n")
    (pkg / "c.py").write_text("def f():\n    from .a import g\n")
    (pkg / "d.py").write_text("from . import c\n")
    graph = _graph(_modules(tmp_path / PKG))
    assert _cycles(graph) == [[f"{PKG}.linux.a", f"{PKG}.linux.b", f"{PKG}.linux.c"]]
    (pkg / "c.py").write_text("def f():\n    pass\n")
    assert _cycles(_graph(_modules(tmp_path / PKG))) == []
