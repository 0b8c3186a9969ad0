"""`pycontainer install-runtime`: the launcher engines are given — this project's runc command line
(cli/oci.runc_main) started as `python -IS`, i.e. without site-packages and the environment's PYTHON*
variables, so each of the many calls an engine makes starts in a few milliseconds. The runtime's path
needs nothing outside the standard library."""

from __future__ import annotations

import os
import sys

LAUNCHER = """#!{python} -IS
# pycontainer's runc-compatible command line for engines (dockerd --add-runtime, containerd's BinaryName,
# podman --runtime): Python without site-packages (-S) and without the environment (-I), so each of the
# many calls an engine makes starts in a few milliseconds. Written by `pycontainer install-runtime`.
import sys
sys.path.insert(0, {top!r})
from pycontainer_magics.linux import pdeathsig  # first: no parent-death signal from the engine's thread
pdeathsig.clear()  # (cli/oci.py says why; _ctypes alone, not ctypes: every call pays its imports)
from pycontainer_magics.cli.oci import runc_main
sys.exit(runc_main())
"""


def install_runtime(output: str | None = None) -> str:
    """Write the fast launcher (default: next to this `pycontainer`, else the state directory's bin/) and
    return its path. The package needs nothing outside the standard library on this path."""
    import pycontainer_magics
    top = os.path.dirname(os.path.dirname(os.path.abspath(pycontainer_magics.__file__)))
    if output is None:
        here = os.path.dirname(os.path.abspath(sys.argv[0])) if sys.argv and sys.argv[0] else ""
        if here and os.access(here, os.W_OK) and os.path.exists(os.path.join(here, "pycontainer")):
            output = os.path.join(here, "pycontainer-runc")
        else:
            from ..paths import state_dir
            output = os.path.join(state_dir(), "bin", "pycontainer-runc")
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    text = LAUNCHER.format(python=sys.executable, top=top)
    tmp = output + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o755)
    os.replace(tmp, output)
    return os.path.abspath(output)


__all__ = ["LAUNCHER", "install_runtime"]
