"""Validation of OCI documents against the image-spec JSON schemas shipped in `images/schemas/`."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from .errors import SchemaError

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
SCHEMAS = {
    "manifest": "image-manifest-schema.json",
    "index": "image-index-schema.json",
    "config": "config-schema.json",
    "layout": "image-layout-schema.json",
    "descriptor": "content-descriptor.json",
}


@functools.cache
def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    return data


@functools.cache
def _validator(kind: str) -> Any:
    from ..linux.jsonschema_import import import_jsonschema

    Draft4Validator = import_jsonschema().Draft4Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    def retrieve(uri: str) -> Resource:
        # The schemas refer to each other by relative names ("defs-descriptor.json") resolved against
        # whatever `id` is in scope; the file name is what identifies them.
        name = uri.rstrip("/").rsplit("/", 1)[-1].split("#", 1)[0]
        if not (SCHEMA_DIR / name).is_file():
            raise LookupError(uri)
        return Resource.from_contents(_load(name), default_specification=DRAFT4)

    registry: Registry = Registry(retrieve=retrieve)  # type: ignore[call-arg]
    return Draft4Validator(_load(SCHEMAS[kind]), registry=registry)


def validate(kind: str, document: Any, what: str = "") -> None:
    """Raise SchemaError (one line: what, the JSON path, the message) unless `document` is a valid
    `kind` ("manifest", "index", "config", "layout", "descriptor")."""
    errors = sorted(_validator(kind).iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        path = "/".join(str(p) for p in e.absolute_path) or "(top)"
        raise SchemaError(f"{what or kind}: not a valid OCI {kind} at {path}: {e.message}")


def is_valid(kind: str, document: Any) -> bool:
    return not any(True for _ in _validator(kind).iter_errors(document))
