"""The unpacker's fast lane in C (tarlane.c), when the install built it: `lane` is the module, else None and
the Python lanes do the same work (images/tarstream.py TarReader.files, images/unpack.py _Extractor.files).
It is built by the package's build hook (build_hook.py) where a C compiler and Python's headers are, installed
beside the package as `_pycontainer_tarlane`, and used only with the source it was built from (an editable
install keeps it through a change of tarlane.c: reinstall). PYCONTAINER_TARLANE=python leaves it unused."""

from __future__ import annotations

import hashlib
import importlib
import os
from types import ModuleType


def _load() -> ModuleType | None:
    if os.environ.get("PYCONTAINER_TARLANE") == "python":
        return None
    try:
        lane = importlib.import_module("_pycontainer_tarlane")
    except ImportError:
        return None
    # an editable install keeps the module it built: after tarlane.c changed (a pull), not that one
    try:
        with open(os.path.join(os.path.dirname(__file__), "tarlane.c"), "rb") as f:
            source = hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return lane
    return lane if getattr(lane, "SOURCE", "") == source else None


lane = _load()
