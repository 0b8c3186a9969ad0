"""`docker save` tarballs (docker-archive): manifest.json with Config, RepoTags and Layers paths; both
the legacy layout (`<id>.json`, `<id>/layer.tar`) and the newer one holding `blobs/sha256/...`."""

from __future__ import annotations

import json
import os
import tarfile
from typing import Any

from .errors import DigestMismatch, LayoutError
from .image import MT_OCI_CONFIG, MT_OCI_LAYER, MT_OCI_LAYER_GZIP, MT_OCI_LAYER_ZSTD, MT_OCI_MANIFEST, Image
from .store import ProgressCallback, Store, sha256_bytes
from .unpack import compression_of


def _expected_digest(member: str) -> str | None:
    """The digest a file name promises: `blobs/sha256/<hex>`, `<hex>.json`, `<hex>/layer.tar`."""
    parts = member.split("/")
    cand = parts[-1].removesuffix(".json") if len(parts) != 3 else parts[-1]
    if len(parts) == 2 and parts[-1] == "layer.tar":
        return None  # legacy layer dirs are named by v1 ids, not by content
    if len(cand) == 64 and all(c in "0123456789abcdef" for c in cand):
        return "sha256:" + cand
    return None


def _check_entries(entries: Any, what: str) -> None:
    """manifest.json's shape, as `docker save` writes it: a list of {Config, Layers, RepoTags}. It comes from
    elsewhere: anything else is one line, not a KeyError."""
    if not isinstance(entries, list):
        raise LayoutError(f"{what}: manifest.json is not a list")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
            raise LayoutError(f"{what}: manifest.json entry {i} has no Config (the image config's path)")
        for key in ("Layers", "RepoTags"):
            value = entry.get(key)
            if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                raise LayoutError(f"{what}: manifest.json entry {i}: {key} is not a list of strings")


def import_docker_archive(store: Store, path: str, *, progress: ProgressCallback | None = None) -> list[Image]:
    """Import every image of a `docker save` tarball, tagged with its RepoTags. Verified; on error
    nothing is left in the store."""
    what = f"docker archive {os.path.basename(path)}"
    try:
        tf = tarfile.open(path, mode="r:*")
    except OSError as e:
        raise LayoutError(f"{what}: cannot read {path}: {e.strerror or e}") from None
    except tarfile.TarError:  # its message lists every decompressor tried, over several lines
        raise LayoutError(f"{what}: not a tar archive (plain, gzip, bzip2 or xz), as `docker save` writes") from None
    with tf:
        members = {os.path.normpath(m.name): m for m in tf.getmembers()}

        def read(name: str) -> Any:
            m = members.get(os.path.normpath(name))
            f = tf.extractfile(m) if m is not None else None
            if f is None:
                raise LayoutError(f"{what}: {name} is missing")
            return f

        try:
            entries = json.loads(read("manifest.json").read())
        except ValueError as e:
            raise LayoutError(f"{what}: manifest.json is not JSON ({e})") from None
        _check_entries(entries, what)
        out = []
        with store.transaction():
            for entry in entries:
                cfg_raw = read(entry["Config"]).read()
                cdigest = sha256_bytes(cfg_raw)
                want = _expected_digest(entry["Config"])
                if want and want != cdigest:
                    raise DigestMismatch(f"{what}: config {entry['Config']} hashes to {cdigest}, expected {want}")
                store.put_blob(cfg_raw, digest=cdigest, what=f"{what}: config")
                descs = []
                for lname in entry.get("Layers") or []:
                    m = members.get(os.path.normpath(lname))
                    if m is None:
                        raise LayoutError(f"{what}: layer {lname} is missing")
                    f = read(lname)
                    head = f.read(4)
                    f.seek(0)
                    digest = store.put_blob(f, digest=_expected_digest(lname), size=m.size,
                                            what=f"{what}: layer {lname}")
                    kind = compression_of(head)
                    mt = {"gzip": MT_OCI_LAYER_GZIP, "zstd": MT_OCI_LAYER_ZSTD}.get(kind, MT_OCI_LAYER)
                    descs.append({"mediaType": mt, "digest": digest, "size": m.size})
                manifest = {"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                            "config": {"mediaType": MT_OCI_CONFIG, "digest": cdigest, "size": len(cfg_raw)},
                            "layers": descs}
                raw = json.dumps(manifest, sort_keys=True).encode()
                out.append(store.add_image(raw, refs=tuple(entry.get("RepoTags") or ()), progress=progress))
        return out


def export_docker_archive(store: Store, names: list[str], out: Any) -> list[Image]:
    """Write the images `names` (refs or ids) to the binary file `out` as a `docker save` tarball in the
    newer layout: manifest.json (Config, RepoTags, Layers) over `blobs/sha256/<digest>`, each blob as it is
    stored (gzip layers stay gzip: `docker load` and import_docker_archive take them). A ref given by name
    is the only RepoTag its entry carries, as `docker save NAME` does; an id carries all of the image's."""
    from .reference import parse_reference

    images: list[tuple[Image, list[str]]] = []
    for name in names:
        img = store.get(name)
        img.require_portable("save")
        tags = [parse_reference(r).short for r in img.refs]
        try:
            wanted = parse_reference(name).short
        except Exception:  # noqa: BLE001 - an id, not a reference
            wanted = None
        images.append((img, [wanted] if wanted in tags else tags))
    written: set[str] = set()
    manifest = []
    with tarfile.open(fileobj=out, mode="w|") as tf:
        def blob(digest: str) -> str:
            member = "blobs/sha256/" + digest.removeprefix("sha256:")
            if member not in written:
                written.add(member)
                path = store.blob_file(digest)
                ti = tf.gettarinfo(path, arcname=member)
                ti.uid = ti.gid = 0
                ti.uname = ti.gname = ""
                ti.mode = 0o644
                with open(path, "rb") as f:
                    tf.addfile(ti, f)
            return member

        for img, tags in images:
            manifest.append({"Config": blob(img.id), "RepoTags": tags or None,
                             "Layers": [blob(layer.digest) for layer in img.layers]})
        data = json.dumps(manifest).encode()
        ti = tarfile.TarInfo("manifest.json")
        ti.size, ti.mode = len(data), 0o644
        import io
        tf.addfile(ti, io.BytesIO(data))
    return [img for img, _ in images]
