"""The package's build hook (pyproject.toml: [tool.hatch.build.targets.wheel.hooks.custom]): compiles tarlane.c
into `_pycontainer_tarlane`, a module installed beside the package (the editable install's too: nothing is
written into the checkout), with the C compiler Python was built with and Python's headers. Where they are
missing the build says why and goes on: the package is then pure Python, its Python lanes doing the work."""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sysconfig
import tempfile
from typing import Any

try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # imported outside a build (the package's own module walk): nothing uses it
    BuildHookInterface = object

MODULE = "_pycontainer_tarlane"


class TarLaneHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        self._tmp = tempfile.mkdtemp(prefix="pcm-tarlane-")
        src = os.path.join(self.root, "pycontainer_magics", "images", "native", "tarlane.c")
        target = MODULE + (sysconfig.get_config_var("EXT_SUFFIX") or ".so")
        out = os.path.join(self._tmp, target)
        # the compiler Python was built with, else the system's
        ccs = [shlex.split(c) for c in (os.environ.get("CC"), sysconfig.get_config_var("CC"), "cc", "gcc") if c]
        cc = next((c for c in ccs if c and shutil.which(c[0])), ccs[0])
        with open(src, "rb") as f:  # (native/__init__.py uses the module only with the source it was built from)
            source = hashlib.sha256(f.read()).hexdigest()
        cmd = [*cc, "-O2", "-shared", "-fPIC", f'-DTARLANE_SOURCE="{source}"', "-I", sysconfig.get_paths()["include"],
               src, "-o", out, "-lm"]
        try:
            subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.SubprocessError) as e:
            detail = getattr(e, "stderr", "") or str(e)
            self.app.display_warning(f"pycontainer_magics: the C fast lane for unpacking layers was not built "
                                     f"({detail.strip().splitlines()[-1] if detail.strip() else e}); the Python one "
                                     "does the same work, slower (apt-get install gcc python3-dev to build it)")
            return
        build_data["force_include_editable" if version == "editable" else "force_include"][out] = target
        build_data["pure_python"] = False
        if version != "editable":
            build_data["infer_tag"] = True

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)
