"""OCI image layout (https://github.com/opencontainers/image-spec/blob/main/image-layout.md) import and
export: `oci-layout`, `index.json`, `blobs/sha256/...`. Tags are the `org.opencontainers.image.ref.name`
annotation, as skopeo (`oci:DIR:TAG`) and umoci use them."""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from ..linux.files import atomic_writer, write_json
from . import schemas
from .errors import BlobUnknown, DigestMismatch, ImageNotFound, LayoutError, PlatformNotFound
from .image import INDEX_TYPES, MT_OCI_INDEX, MT_OCI_MANIFEST, Image
from .reference import parse_reference
from .store import ProgressCallback, ProgressEvent, Store, _hex, host_platform, sha256_bytes

REF_NAME = "org.opencontainers.image.ref.name"


def _read_json(path: str, what: str) -> Any:
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        raise LayoutError(f"{what}: missing ({path})") from None
    except ValueError as e:
        raise LayoutError(f"{what}: not JSON ({e})") from None


def select_platform(index: dict[str, Any], what: str, platform: tuple[str, str, str] | None = None) -> dict[str, Any]:
    """The manifest descriptor of an index for `platform` (os, arch, variant; default the host's)."""
    want_os, want_arch, want_variant = platform or host_platform()
    cands = [d for d in index.get("manifests", ())
             if (d.get("platform") or {}).get("os") == want_os
             and (d.get("platform") or {}).get("architecture") == want_arch]
    exact = [d for d in cands if not want_variant or d["platform"].get("variant", want_variant) == want_variant]
    if exact or cands:
        found: dict[str, Any] = (exact or cands)[0]
        return found
    have = ", ".join(f"{(d.get('platform') or {}).get('os')}/{(d.get('platform') or {}).get('architecture')}"
                     for d in index.get("manifests", ()))
    raise PlatformNotFound(f"{what}: no image for {want_os}/{want_arch} in the index (has: {have or 'nothing'})")


def import_layout(store: Store, path: str, *, tag: str | None = None, ref: str | None = None,
                  platform: tuple[str, str, str] | None = None, progress: ProgressCallback | None = None
                  ) -> list[Image]:
    """Import the images of an OCI layout into the store: those tagged `tag` (default: every entry of
    index.json). Each is tagged `ref` (with the layout's tag when `ref` has none), else `localhost/<dir
    name>:<tag>`. Multi-platform entries resolve to `platform` (default: the host's). Blobs are
    verified as they are copied; on any error nothing is left in the store."""
    what = f"OCI layout {path}"
    lay = _read_json(os.path.join(path, "oci-layout"), f"{what}: oci-layout")
    schemas.validate("layout", lay, f"{what}: oci-layout")
    index = _read_json(os.path.join(path, "index.json"), f"{what}: index.json")
    schemas.validate("index", index, f"{what}: index.json")
    entries = [d for d in index["manifests"] if tag is None or (d.get("annotations") or {}).get(REF_NAME) == tag]
    if not entries:
        raise ImageNotFound(f"{what}: no manifest tagged {tag!r}")

    def blob(digest: str) -> str:
        p = os.path.join(path, "blobs", "sha256", _hex(digest, what))
        if not os.path.isfile(p):
            raise BlobUnknown(f"{what}: blob {digest} is missing")
        return p

    def copy(desc: dict[str, Any], kind: str) -> None:
        if store.has_blob(desc["digest"]):
            if progress:
                progress(ProgressEvent(path, desc["digest"], "Already exists", desc["size"], desc["size"]))
            return
        with open(blob(desc["digest"]), "rb") as f:
            store.put_blob(f, digest=desc["digest"], size=desc["size"], what=f"{what}: {kind} {desc['digest']}")

    out = []
    with store.transaction():
        for desc in entries:
            name = (desc.get("annotations") or {}).get(REF_NAME)
            if desc.get("mediaType") in INDEX_TYPES:
                with open(blob(desc["digest"]), "rb") as f:
                    raw = f.read()
                sub = json.loads(raw)
                schemas.validate("index", sub, f"{what}: index {desc['digest']}")
                desc = select_platform(sub, f"{what}: {name or desc['digest']}", platform)
            with open(blob(desc["digest"]), "rb") as f:
                manifest_raw = f.read()
            if sha256_bytes(manifest_raw) != desc["digest"]:
                raise DigestMismatch(f"{what}: manifest hashes to {sha256_bytes(manifest_raw)}, "
                                     f"expected {desc['digest']}")
            manifest = json.loads(manifest_raw)
            schemas.validate("manifest", manifest, f"{what}: manifest {desc['digest']}")
            copy(manifest["config"], "config")
            for layer in manifest["layers"]:
                copy(layer, "layer")
            target = _target_ref(ref, name, path)
            out.append(store.add_image(manifest_raw, refs=(target,) if target else (), progress=progress))
    return out


def _target_ref(ref: str | None, name: str | None, path: str) -> str | None:
    tag = name or "latest"
    if ref:
        last = ref.rsplit("/", 1)[-1]
        return ref if (":" in last or "@" in ref) else f"{ref}:{tag}"
    if name and ("/" in name or ":" in name):
        return name  # a full reference as annotation (umoci/buildkit style)
    base = "".join(c for c in os.path.basename(os.path.abspath(path)).lower() if c.isalnum() or c in "._-") or "image"
    return f"localhost/{base.strip('._-') or 'image'}:{tag}"


def export_layout(store: Store, names: list[str], dest: str, *, tag: str | None = None,
                  as_index: bool = False) -> dict[str, Any]:
    """Write images into an OCI layout at `dest` (created, or merged into an existing layout). Each
    image is tagged (ref.name annotation) with `tag` or its own ref's tag. With as_index=True the images
    (different platforms) become one multi-platform index tagged `tag`. Returns the index.json written."""
    imgs = [store.get(n) for n in names]
    for img in imgs:
        img.require_portable("export")
    os.makedirs(os.path.join(dest, "blobs", "sha256"), exist_ok=True)

    def put(digest: str, src: str | None = None, data: bytes | None = None) -> None:
        p = os.path.join(dest, "blobs", "sha256", _hex(digest))
        if os.path.exists(p):
            return
        with atomic_writer(p) as out:
            if src is not None:
                with open(src, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
            else:
                out.write(data or b"")

    descs = []
    for img in imgs:
        raw = store.read_blob(img.manifest_digest)
        put(img.manifest_digest, data=raw)
        put(img.id, data=store.read_blob(img.id))
        for layer in img.layers:
            put(layer.digest, src=store.blob_path(layer.digest, verify=True))
        t = tag or (parse_reference(img.refs[0]).tag if img.refs else None) or "latest"
        d: dict[str, Any] = {"mediaType": img.manifest_media_type, "digest": img.manifest_digest, "size": len(raw)}
        plat = {"architecture": img.architecture, "os": img.os}
        if img.variant:
            plat["variant"] = img.variant
        d["platform"] = plat
        descs.append((t, d))
    index_path = os.path.join(dest, "index.json")
    index: dict[str, Any] = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": []}
    if os.path.exists(index_path):
        index = _read_json(index_path, f"OCI layout {dest}: index.json")
    if as_index:
        sub = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": [d for _, d in descs]}
        schemas.validate("index", sub, "exported index")
        raw = json.dumps(sub, sort_keys=True).encode()
        put(sha256_bytes(raw), data=raw)
        descs = [(tag or descs[0][0], {"mediaType": MT_OCI_INDEX, "digest": sha256_bytes(raw), "size": len(raw)})]
    names_new = {t for t, _ in descs}
    index["manifests"] = [d for d in index.get("manifests", [])
                          if (d.get("annotations") or {}).get(REF_NAME) not in names_new]
    for t, d in descs:
        index["manifests"].append({**d, "annotations": {REF_NAME: t}})
    schemas.validate("index", index, f"OCI layout {dest}: index.json")
    lay = {"imageLayoutVersion": "1.0.0"}
    schemas.validate("layout", lay, "oci-layout")
    for fname, doc in (("oci-layout", lay), ("index.json", index)):
        write_json(os.path.join(dest, fname), doc, indent=1, newline=False)
    return index


__all__ = ["import_layout", "export_layout", "select_platform", "REF_NAME", "MT_OCI_MANIFEST"]
