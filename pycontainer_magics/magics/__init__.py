"""IPython skin: the `%%container` magic. Loaded by `%load_ext pycontainer_magics`.

`ContainerMagics` is imported lazily so the CLI can use the shared option table (`magics.args`)
without importing IPython.

No logic of its own: parse arguments, call the library, display the result. May import every layer
below (display/ and down). Never cli/ or kernel/.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ContainerMagics", "magic_classes"]


def magic_classes() -> tuple[type, ...]:
    """Every Magics class `%load_ext pycontainer_magics` registers (and `%unload_ext` removes)."""
    from .cgroup import CgroupMagics
    from .compose import ComposeMagics
    from .container import ContainerMagics
    from .image import ImageMagics
    from .kube import KubeMagics
    from .netns import NetnsMagics

    return (ContainerMagics, CgroupMagics, ImageMagics, NetnsMagics, ComposeMagics, KubeMagics)


def __getattr__(name: str) -> Any:
    if name == "ContainerMagics":
        from .container import ContainerMagics

        return ContainerMagics
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
