"""KubeError: a Kubernetes document is invalid or cannot be played here. One line, naming the document
and the field path (`pod/web: spec.containers[1].name: ...`), as `kubectl` does."""

from __future__ import annotations

from ..errors import PycontainerError


class KubeError(PycontainerError, ValueError):
    """One line: which document, which field, what was wrong and what would be right."""


def field_path(parts: object) -> str:
    """`spec.containers[1].name` from ("spec", "containers", 1, "name")."""
    out = ""
    for p in parts:  # type: ignore[attr-defined]
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


__all__ = ["KubeError", "field_path"]
