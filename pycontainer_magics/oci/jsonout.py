"""JSON written without the json module, for the runtime's hot commands (`state`, log lines): importing json
imports re and enum, about 8 ms of CPU at every one of the calls an engine makes, where the documents
written here are small: dicts, lists, strings, integers, booleans and None."""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time either
if TYPE_CHECKING:
    from typing import Any

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def _string(s: str) -> str:
    out = []
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch < " ":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def dumps(obj: Any, indent: int | None = None, _level: int = 0) -> str:
    """json.dumps(obj, indent=indent, separators=(",", ":") when indent is None) for plain documents."""
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if isinstance(obj, int):
        return str(obj)
    if isinstance(obj, float):
        return repr(obj)
    if isinstance(obj, str):
        return _string(obj)
    if isinstance(obj, dict):
        items = [f"{_string(str(k))}:{' ' if indent is not None else ''}{dumps(v, indent, _level + 1)}"
                 for k, v in obj.items()]
        return _wrap("{", "}", items, indent, _level)
    if isinstance(obj, (list, tuple)):
        return _wrap("[", "]", [dumps(v, indent, _level + 1) for v in obj], indent, _level)
    raise TypeError(f"not JSON: {type(obj).__name__}")


def _wrap(open_: str, close: str, items: list[str], indent: int | None, level: int) -> str:
    if not items:
        return open_ + close
    if indent is None:
        return open_ + ",".join(items) + close
    pad, inner = " " * (indent * level), " " * (indent * (level + 1))
    return open_ + "\n" + ",\n".join(inner + i for i in items) + "\n" + pad + close


__all__ = ["dumps"]
