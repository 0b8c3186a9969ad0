"""ConfigMaps and Secrets of a play: their keys as bytes, the files of a configMap or secret volume, the
values env and envFrom take from them.

A ConfigMap's `data` is text and `binaryData` base64; a Secret's `data` is base64 and `stringData` text
(which wins over `data` for the same key), as the API server merges them. A volume holds every key as a file,
or the listed `items` (key -> path, each with its own mode), with the volume's `defaultMode` (0644) —
written below the play's directory through directory fds that never follow a symlink (keys and paths are
input from elsewhere), owned by `owner` (a remapped pod's root, so mode 0400 still lets it read).
"""

from __future__ import annotations

import base64
import contextlib
import os
from typing import Any

from ..linux.files import write_all
from ..runtime.spec import ENV_NAME_RE
from .errors import KubeError

KEY_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._")
KINDS = {"ConfigMap": "configmap", "Secret": "secret"}
DEFAULT_MODE = 0o644


def safe_relpath(p: str) -> bool:
    parts = p.split("/")
    return bool(p) and not p.startswith("/") and all(x not in ("", ".", "..") for x in parts)


def _b64(value: Any, where: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except ValueError:
        raise KubeError(f"{where}: not base64") from None


def _mode(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0o777:
        raise KubeError(f"{where}: {value!r}: a file mode, 0 to 0777 (0o644 is 420 in YAML's decimal)")
    return value


class Sources:
    """The ConfigMaps and Secrets of one YAML, by kind and name."""

    def __init__(self) -> None:
        self.docs: dict[tuple[str, str], dict[str, bytes]] = {}

    def add(self, doc: dict[str, Any]) -> None:
        kind, name = doc["kind"], str(doc["metadata"]["name"])
        res = f"{KINDS[kind]}/{name}"
        data: dict[str, bytes] = {}
        if kind == "ConfigMap":
            data = {str(k): str(v).encode() for k, v in (doc.get("data") or {}).items()}
            for k, v in (doc.get("binaryData") or {}).items():
                data[str(k)] = _b64(v, f"{res}: binaryData.{k}")
        else:
            data = {str(k): _b64(v, f"{res}: data.{k}") for k, v in (doc.get("data") or {}).items()}
            data.update({str(k): str(v).encode() for k, v in (doc.get("stringData") or {}).items()})
        for k in data:
            if not k or not set(k) <= KEY_CHARS or k in (".", ".."):
                raise KubeError(f"{res}: data.{k}: a key is letters, digits, '-', '_', '.'")
        self.docs[(kind, name)] = data

    def get(self, kind: str, name: Any) -> dict[str, bytes] | None:
        return self.docs.get((kind, str(name)))

    # -- volumes ------------------------------------------------------------------------------------------
    def volume_files(self, kind: str, source: dict[str, Any], where: str) -> dict[str, tuple[bytes, int]]:
        """path -> (content, mode) of a configMap or secret volume (`source`: the volume's configMap/secret)."""
        name = source.get("name" if kind == "ConfigMap" else "secretName")
        what = "configMap" if kind == "ConfigMap" else "secret"
        data = self.get(kind, name)
        if data is None:
            if not source.get("optional"):
                key = "name" if kind == "ConfigMap" else "secretName"
                raise KubeError(f"{where}.{what}.{key}: no {kind} {name!r} in this YAML")
            data = {}
        default = _mode(source["defaultMode"], f"{where}.{what}.defaultMode") \
            if source.get("defaultMode") is not None else DEFAULT_MODE
        items = source.get("items")
        if not items:
            return {k: (v, default) for k, v in data.items()}
        out = {}
        for i, it in enumerate(items):
            key, path = it.get("key"), it.get("path")
            if key not in data:
                if source.get("optional"):
                    continue
                raise KubeError(f"{where}.{what}.items[{i}].key: {key!r} is not a key of {KINDS[kind]}/{name}")
            if not isinstance(path, str) or not safe_relpath(path):
                raise KubeError(f"{where}.{what}.items[{i}].path: {path!r} must be a relative path without '..'")
            mode = _mode(it["mode"], f"{where}.{what}.items[{i}].mode") if it.get("mode") is not None else default
            out[path] = (data[key], mode)
        return out

    # -- env ------------------------------------------------------------------------------------------------
    def env_from(self, ef: dict[str, Any], where: str) -> dict[str, str]:
        """An envFrom entry (configMapRef or secretRef): its keys that are variable names, with the prefix."""
        kind, ref = ("ConfigMap", ef.get("configMapRef")) if "configMapRef" in ef else ("Secret", ef.get("secretRef"))
        if not isinstance(ref, dict):
            raise KubeError(f"{where}: configMapRef or secretRef")
        data = self.get(kind, ref.get("name"))
        if data is None:
            if ref.get("optional"):
                return {}
            field = "configMapRef" if kind == "ConfigMap" else "secretRef"
            raise KubeError(f"{where}.{field}.name: no {kind} {ref.get('name')!r} in this YAML")
        prefix = str(ef.get("prefix") or "")
        return {prefix + k: _text(v, f"{where}: {KINDS[kind]}/{ref.get('name')} key {k}") for k, v in data.items()
                if ENV_NAME_RE.match(prefix + k)}  # as the kubelet, keys that are no variable name are skipped

    def env_value(self, vf: dict[str, Any], where: str) -> str | None:
        """A valueFrom (configMapKeyRef or secretKeyRef); None when optional and missing."""
        for field, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
            ref = vf.get(field)
            if ref is None:
                continue
            data = self.get(kind, ref.get("name"))
            val = None if data is None else data.get(str(ref.get("key")))
            if val is None:
                if ref.get("optional"):
                    return None
                raise KubeError(f"{where}.{field}: no key {ref.get('key')!r} in {kind} {ref.get('name')!r} of this "
                                "YAML")
            return _text(val, f"{where}.{field}")
        kinds = [k for k in vf if k not in ("configMapKeyRef", "secretKeyRef")]
        raise KubeError(f"{where}: {kinds[0] if kinds else 'nothing'}: only configMapKeyRef and secretKeyRef are "
                        "played here")


def _text(value: bytes, where: str) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise KubeError(f"{where}: not UTF-8 text (mount it as a file instead)") from None


def write_tree(directory: str, files: dict[str, tuple[bytes, int]], owner: tuple[int, int] | None = None) -> None:
    """Make `directory` and write `files` (relative path -> (content, mode)) below it through directory fds,
    never following a symlink; with `owner`, files and directories are given to it."""
    os.makedirs(directory, 0o755)
    base = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        if owner is not None:
            os.fchown(base, *owner)
        for rel, (data, mode) in files.items():
            _write_file(base, rel, data, mode, owner)
    finally:
        os.close(base)


def _write_file(base_fd: int, rel: str, data: bytes, mode: int, owner: tuple[int, int] | None) -> None:
    parts = rel.split("/")
    fd = os.dup(base_fd)
    try:
        for d in parts[:-1]:
            with contextlib.suppress(FileExistsError):
                os.mkdir(d, 0o755, dir_fd=fd)
            nfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
            if owner is not None:
                os.fchown(fd, *owner)
        f = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=fd)
        try:
            if owner is not None:
                os.fchown(f, *owner)
            os.fchmod(f, mode)
            write_all(f, data)
        finally:
            os.close(f)
    finally:
        os.close(fd)


__all__ = ["Sources", "safe_relpath", "write_tree"]
