"""Packaging: a core install (no notebook stack) runs the command line and the OCI verbs; the notebook
stack, zstd and fast gzip are extras; the package ships its types (py.typed).

The core install is simulated in a fresh interpreter where importing IPython, ipykernel, jupyter_client,
ipywidgets, matplotlib, pandas, zstandard or zlib_ng raises ImportError, as it would without them installed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parent.parent
NOTEBOOK_STACK = {"ipython", "ipykernel", "jupyter_client", "ipywidgets", "matplotlib", "pandas"}
BLOCKED = ("IPython", "ipykernel", "jupyter_client", "ipywidgets", "matplotlib", "pandas", "zstandard", "zlib_ng")


def _names(reqs: list[str]) -> set[str]:
    return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower().replace("-", "_") for r in reqs}


def _project() -> dict:
    with open(TOP / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def test_core_dependencies_leave_out_the_notebook_stack():
    proj = _project()
    core = _names(proj["dependencies"])
    assert not core & (NOTEBOOK_STACK | {"zstandard"}), core
    assert "pyroute2" in core
    pin = next(r for r in proj["dependencies"] if r.startswith("pyroute2"))
    assert "<" in pin, f"pyroute2 is pinned to a tested range: {pin}"
    extras = proj["optional-dependencies"]
    assert _names(extras["notebook"]) == NOTEBOOK_STACK
    for name in ("lab", "test"):  # what the README's two commands install
        assert any("[notebook,zstd]" in r for r in extras[name]), name
        assert any("[gzip]" in r for r in extras[name]), name


def test_the_package_ships_its_types_and_schemas(tmp_path: Path) -> None:
    """The wheel holds py.typed and the OCI JSON schemas (data files the library reads at run time)."""
    import zipfile

    assert (TOP / "pycontainer_magics" / "py.typed").exists()
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(TOP)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "pycontainer_magics/py.typed" in names
    assert "pycontainer_magics/oci/schemas/runtime-spec/config-schema.json" in names
    assert "pycontainer_magics/images/schemas/image-manifest-schema.json" in names
    assert "pycontainer_magics/SECURITY.md" in names  # the threat model the README points to


def _core_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `code` where the notebook stack and zstandard cannot be imported."""
    prelude = textwrap.dedent(f"""
        import sys, importlib.abc
        class _Missing(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {BLOCKED!r}:
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                return None
        sys.meta_path.insert(0, _Missing())
    """)
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code), *args], capture_output=True,
                          text=True, timeout=120)


def test_a_core_install_refuses_install_kernel_in_one_line(tmp_path):
    p = _core_python("""
        from pycontainer_magics.cli import main
        raise SystemExit(main(sys.argv[1:]))
    """, "install-kernel", "--prefix", str(tmp_path))
    assert p.returncode == 125
    assert p.stderr.count("\n") == 1 and "pycontainer_magics[notebook]" in p.stderr, p.stderr


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_a_core_install_runs_containers_and_the_oci_verbs(tmp_path):
    root, bundle = tmp_path / "state", tmp_path / "bundle"
    p = _core_python(f"""
        import json
        from pycontainer_magics.cli import main
        def call(*argv):
            try:
                return main(list(argv))
            except SystemExit as e:
                return e.code
        assert call("run", "-q", "--memory", "32m", "--", "sh", "-c", "echo core") == 0
        assert call("bundle", {str(bundle)!r}, "--", "sleep", "30") == 0
        assert call("create", "--root", {str(root)!r}, "--bundle", {str(bundle)!r}, "core1") == 0
        assert call("state", "--root", {str(root)!r}, "core1") == 0
        assert call("delete", "--root", {str(root)!r}, "--force", "core1") == 0
        print("LOADED:" + json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {BLOCKED!r})))
    """)
    assert p.returncode == 0, p.stderr
    assert "core\n" in p.stdout and '"status": "created"' in p.stdout
    assert p.stdout.rsplit("LOADED:", 1)[1].strip() == "[]"
