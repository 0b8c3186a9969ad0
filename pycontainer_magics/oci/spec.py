"""`spec`: write a default config.json, as `runc spec` does (the bundle template lives with the rest of the
project's bundle code)."""

from __future__ import annotations


def write_spec(directory: str = ".", rootless: bool = False) -> str:
    from ..runtime.oci_lifecycle import write_spec as _write
    return _write(directory, rootless=rootless)


__all__ = ["write_spec"]
