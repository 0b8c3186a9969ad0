"""Where the project keeps its state on the host (one answer for the images, network and runtime layers).

State that persists (images, named volumes, networks): /var/lib/pycontainer_magics as root, else under
XDG_DATA_HOME (~/.local/share/pycontainer_magics). Volatile state (scratch mount points, netns files):
/run/pycontainer_magics as root, else XDG_RUNTIME_DIR or /tmp/pycontainer_magics-UID.
PYCONTAINER_STATE_DIR and PYCONTAINER_RUN_DIR override them (tests, Binder).
"""

from __future__ import annotations

import os


def state_dir() -> str:
    env = os.environ.get("PYCONTAINER_STATE_DIR")
    if env:
        return env
    if os.geteuid() == 0:
        return "/var/lib/pycontainer_magics"
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "pycontainer_magics")


def run_dir() -> str:
    env = os.environ.get("PYCONTAINER_RUN_DIR")
    if env:
        return env
    if os.geteuid() == 0:
        return "/run/pycontainer_magics"
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(xdg, "pycontainer_magics") if xdg else f"/tmp/pycontainer_magics-{os.geteuid()}"
