"""Import jsonschema without its optional URI grammar.

When rfc3987-syntax is installed (JupyterLab's jupyter-events brings it), `import jsonschema` imports it
and it builds a Lark grammar at import time: 2-3 s, on every import. The OCI schemas are checked without
format assertions, so that grammar is never used here: hide the module while jsonschema imports (it
tolerates its absence), then let it be imported normally by anyone who wants it.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import cast


def import_jsonschema() -> ModuleType:
    if "jsonschema" in sys.modules:
        return sys.modules["jsonschema"]
    hide = "rfc3987_syntax" not in sys.modules
    if hide:
        sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]  # makes `import` raise ImportError
    try:
        import jsonschema
    finally:
        if hide:
            del sys.modules["rfc3987_syntax"]
    return cast(ModuleType, jsonschema)
