"""IPython skin: the `%%container` magic. Loaded by `%load_ext pycontainer_magics`.

`ContainerMagics` is imported lazily so the CLI can use the shared option table (`magics.args`)
without importing IPython.

No logic of its own: parse arguments, call the library, display the result. May import every layer
below (display/ and down). Never cli/ or kernel/.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ContainerMagics"]


def __getattr__(name: str) -> Any:
    if name == "ContainerMagics":
        from .container import ContainerMagics

        return ContainerMagics
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
