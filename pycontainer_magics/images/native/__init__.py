"""The unpacker's fast lane in C (tarlane.c), when the install built it: `lane` is the module, else None and
the Python lanes do the same work (images/tarstream.py TarReader.files, images/unpack.py _Extractor.files).
It is built by the package's build hook (build_hook.py) where a C compiler and Python's headers are, installed
beside the package as `_pycontainer_tarlane`. PYCONTAINER_TARLANE=python leaves it unused."""

from __future__ import annotations

import importlib
import os
from types import ModuleType


def _load() -> ModuleType | None:
    if os.environ.get("PYCONTAINER_TARLANE") == "python":
        return None
    try:
        return importlib.import_module("_pycontainer_tarlane")
    except ImportError:
        return None


lane = _load()
