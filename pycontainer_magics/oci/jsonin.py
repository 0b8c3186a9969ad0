"""JSON read without the json package, for `create` (config.json on every container an engine starts):
json.decoder imports re, and re enum, functools and collections — ~5 ms of CPU per call. The parsing is
_json's C scanner, the one json.loads itself runs; a document it does not take whole goes to json.loads
for json's own error message."""

from __future__ import annotations

import _json

TYPE_CHECKING = False  # typing is not imported at run time either
if TYPE_CHECKING:
    from typing import Any

_WHITESPACE = " \t\n\r"
_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}


class _Context:
    """The attributes json.JSONDecoder gives the scanner, with json.loads' defaults."""
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__
    memo: dict[str, str] = {}


_scan = _json.make_scanner(_Context())  # type: ignore[arg-type]


def loads(data: bytes | str) -> Any:
    """json.loads(data) for a UTF-8 document; ValueError (json.JSONDecodeError) when it is not JSON."""
    if isinstance(data, bytes):  # a BOM as json.loads takes it (not through the utf-8-sig codec: an import)
        text = (data[3:] if data.startswith(b"\xef\xbb\xbf") else data).decode()
    else:
        text = data
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        obj, end = _scan(text, start)
    except StopIteration:
        obj, end = None, -1
    if end < 0 or text[end:].strip(_WHITESPACE):
        import json
        return json.loads(text)  # raises json's error for what the scanner left (or took in part)
    return obj


__all__ = ["loads"]
