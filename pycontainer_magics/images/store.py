"""The content-addressed image store under `$PYCONTAINER_STATE_DIR/images` (default
/var/lib/pycontainer_magics/images):

    blobs/sha256/<hex>        manifests, configs, layer tarballs as received (verified sha256)
    layers/sha256/<hex>/      unpacked layers by diff_id, overlay-ready; shared by every image using them
    images/<hex>.json         Image records by manifest digest
    refs.json                 {"docker.io/library/alpine:3.20": "sha256:<manifest>"}
    tmp/                      staging: every write lands here first, then one rename

Writes are atomic (temp + rename) and verified (sha256 and size). An operation that adds an image runs in
`transaction()`: on any error, blobs and layers it created are removed, so a failed pull/import leaves
the store as it was.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import io
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO, cast

from ..linux.files import FileLock, atomic_write
from ..paths import state_dir
from . import schemas
from .errors import BlobUnknown, DigestMismatch, ImageError, ImageInUse, ImageNotFound, LayoutError
from .image import (
    MANIFEST_TYPES,
    MT_OCI_CONFIG,
    MT_OCI_LAYER,
    MT_OCI_LAYER_GZIP,
    MT_OCI_LAYER_ZSTD,
    MT_OCI_MANIFEST,
    HistoryEntry,
    Image,
    ImageConfig,
    Layer,
    config_section,
    history_entries,
    image_config,
    parse_config,
)
from .reference import parse_reference
from .unpack import _Hashing, compression_of, is_opaque, is_whiteout, pack_dir, unpack_layer


def _hex(digest: str, what: str = "") -> str:
    algo, _, h = digest.partition(":")
    if algo != "sha256" or len(h) != 64 or any(c not in "0123456789abcdef" for c in h):
        raise LayoutError(f"{what or 'digest'}: unsupported digest {digest!r} (expected sha256:<64 hex>)")
    return h


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def host_platform() -> tuple[str, str, str]:
    """(os, architecture, variant) in OCI's words."""
    m = os.uname().machine
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm", "i686": "386",
            "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}.get(m, m)
    variant = {"aarch64": "v8", "armv7l": "v7", "armv6l": "v6"}.get(m, "")
    return "linux", arch, variant


@dataclass(frozen=True)
class ProgressEvent:
    """One step of a pull/push/import for one layer (or the manifest/config): Docker's words in status:
    "Already exists", "Waiting", "Downloading", "Verifying Checksum", "Download complete", "Extracting",
    "Pull complete", "Pushing", "Layer already exists", "Pushed"."""

    ref: str
    digest: str
    status: str
    current: int = 0
    total: int = 0


ProgressCallback = Callable[[ProgressEvent], None]


@dataclass(frozen=True)
class FileEntry:
    """One path of one layer, in the layer-by-layer file table."""

    path: str  # "/etc/passwd"
    layer: int  # index, 0 = bottom
    diff_id: str
    kind: str  # file|dir|symlink|hardlink|device|fifo|whiteout|opaque
    size: int
    # visible (this copy wins) | shadowed (a higher layer has it) | deleted (a higher layer removed it) | whiteout
    status: str


@dataclass(frozen=True)
class ImageUsage:
    ref: str
    id: str
    size: int  # all its layers (blobs)
    shared: int  # of which other images use too
    unique: int


@dataclass(frozen=True)
class DiskUsage:
    images: int
    blobs: int  # bytes in blobs/
    layers: int  # bytes in unpacked layers/
    reclaimable: int  # bytes prune would free (dangling images, unreferenced blobs and layers)
    per_image: tuple[ImageUsage, ...] = ()


@dataclass
class PruneReport:
    images: list[str] = field(default_factory=list)  # manifest digests of removed image records
    blobs: list[str] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)
    freed: int = 0


@dataclass
class _Txn:
    created: list[str] = field(default_factory=list)  # paths to remove on failure


def _tree_size(path: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
    return total


def _rmtree(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)


class Store:
    def __init__(self, root: str | None = None):
        self.root = os.path.abspath(root or os.path.join(state_dir(), "images"))
        for d in ("blobs/sha256", "layers/sha256", "images", "tmp"):
            os.makedirs(os.path.join(self.root, d), exist_ok=True)
        self._txns: list[_Txn] = []
        self._file_lock: FileLock | None = None

    # -- plumbing -------------------------------------------------------------------------------------------
    def _p(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def _lock(self) -> FileLock:
        """The store's lock (one writer across processes); made on first use."""
        if self._file_lock is None:
            self._file_lock = FileLock(self._p("lock"))
        return self._file_lock

    def _atomic_write(self, path: str, data: bytes) -> None:
        atomic_write(path, data, mode=0o600, tmp_dir=self._p("tmp"))

    def _created(self, path: str) -> None:
        for t in self._txns:
            t.created.append(path)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[_Txn]:
        """Everything created inside is removed if the block raises (unless used by an image record)."""
        txn = _Txn()
        self._txns.append(txn)
        try:
            yield txn
        except BaseException:
            keep = self._referenced()
            for path in reversed(txn.created):
                name = os.path.basename(path)
                if "sha256:" + name not in keep:
                    _rmtree(path)
            raise
        finally:
            self._txns.remove(txn)

    # -- blobs ----------------------------------------------------------------------------------------------
    def blob_file(self, digest: str) -> str:
        return self._p("blobs", "sha256", _hex(digest))

    def has_blob(self, digest: str) -> bool:
        return os.path.isfile(self.blob_file(digest))

    def put_blob(self, src: bytes | BinaryIO | IO[bytes], *, digest: str | None = None, size: int | None = None,
                 what: str = "blob", progress: Callable[[int], None] | None = None) -> str:
        """Store content, verified against `digest`/`size` when given; returns its digest. Nothing is
        kept when the content does not match (DigestMismatch names what, expected and got)."""
        if digest is not None:
            _hex(digest, what)
        stream: IO[bytes] = io.BytesIO(src) if isinstance(src, bytes) else src
        fd, tmp = tempfile.mkstemp(dir=self._p("tmp"), prefix="blob-")
        try:
            sha = hashlib.sha256()
            n = 0
            with os.fdopen(fd, "wb") as f:
                while chunk := stream.read(1 << 20):
                    sha.update(chunk)
                    f.write(chunk)
                    n += len(chunk)
                    if progress:
                        progress(n)
            got = "sha256:" + sha.hexdigest()
            if size is not None and n != size:
                raise DigestMismatch(f"{what}: {digest or got}: got {n} bytes, expected {size} (truncated or corrupt)")
            if digest is not None and got != digest:
                raise DigestMismatch(f"{what}: content hashes to {got}, expected {digest}")
            dest = self.blob_file(got)
            if os.path.exists(dest):
                os.unlink(tmp)
            else:
                os.replace(tmp, dest)
                self._created(dest)
            return got
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def blob_path(self, digest: str, *, verify: bool = False) -> str:
        path = self.blob_file(digest)
        if not os.path.isfile(path):
            raise BlobUnknown(f"blob {digest} is not in the store")
        if verify:
            sha = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    sha.update(chunk)
            if "sha256:" + sha.hexdigest() != digest:
                os.unlink(path)
                raise DigestMismatch(f"blob {digest} is corrupt in the store (hashes to sha256:{sha.hexdigest()}); "
                                     "removed, pull again")
        return path

    def read_blob(self, digest: str) -> bytes:
        """A small blob's content, verified."""
        with open(self.blob_path(digest), "rb") as f:
            data = f.read()
        if sha256_bytes(data) != digest:
            os.unlink(self.blob_file(digest))
            raise DigestMismatch(f"blob {digest} is corrupt in the store (hashes to {sha256_bytes(data)}); removed")
        return data

    # -- layers ---------------------------------------------------------------------------------------------
    def layer_dir(self, diff_id: str) -> str:
        return self._p("layers", "sha256", _hex(diff_id, "diff_id"))

    def has_layer(self, diff_id: str) -> bool:
        return os.path.isdir(self.layer_dir(diff_id))

    def ensure_layer(self, blob_digest: str, diff_id: str, what: str = "layer") -> str:
        """The unpacked, overlay-ready directory of a layer: unpacked once per diff_id, verified (the
        blob's digest and the uncompressed diff_id) as it is read, renamed into place when complete."""
        dest = self.layer_dir(diff_id)
        if os.path.isdir(dest):
            return dest
        tmp = tempfile.mkdtemp(dir=self._p("tmp"), prefix="layer-")
        try:
            with open(self.blob_path(blob_digest), "rb") as f:
                plain = compression_of(f.read(6)) == "none"
                f.seek(0)
                if plain:  # the blob is the uncompressed tar: its digest is the diff_id, hashed once
                    blob_hash = unpack_layer(f, tmp, mode="overlay", what=f"{what} {blob_digest}").diff_id
                else:
                    with contextlib.closing(_Hashing(f)) as hashed:
                        unpack_layer(cast(IO[bytes], hashed), tmp, mode="overlay", expected_diff_id=diff_id,
                                     what=f"{what} {blob_digest}")
                        hashed.drain()
                    blob_hash = "sha256:" + hashed.sha.hexdigest()
            if blob_hash != blob_digest:
                _rmtree(self.blob_file(blob_digest))
                raise DigestMismatch(f"{what}: blob in the store hashes to {blob_hash}, "
                                     f"expected {blob_digest}; removed, pull again")
            if plain and diff_id != blob_digest:
                raise DigestMismatch(f"{what} {blob_digest}: uncompressed content is {blob_digest}, "
                                     f"expected diff_id {diff_id}")
            os.chmod(tmp, 0o755)
            try:
                os.rename(tmp, dest)
            except OSError:
                if not os.path.isdir(dest):
                    raise
                _rmtree(tmp)  # unpacked concurrently by someone else
                return dest
            self._created(dest)
            return dest
        except BaseException:
            _rmtree(tmp)
            raise

    # -- image records and refs -----------------------------------------------------------------------------
    def _refs(self) -> dict[str, str]:
        try:
            with open(self._p("refs.json"), encoding="utf-8") as f:
                data: dict[str, str] = json.load(f)
                return data
        except FileNotFoundError:
            return {}

    def _write_refs(self, refs: dict[str, str]) -> None:
        self._atomic_write(self._p("refs.json"), json.dumps(refs, indent=1, sort_keys=True).encode())

    def _record_path(self, manifest_digest: str) -> str:
        return self._p("images", _hex(manifest_digest) + ".json")

    def _load(self, manifest_digest: str, refs: dict[str, str] | None = None) -> Image:
        with open(self._record_path(manifest_digest), encoding="utf-8") as f:
            d = json.load(f)
        refs = self._refs() if refs is None else refs
        d["refs"] = sorted(r for r, m in refs.items() if m == manifest_digest)
        return Image.from_json(d)

    def images(self) -> list[Image]:
        refs = self._refs()
        out = []
        for name in sorted(os.listdir(self._p("images"))):
            if name.endswith(".json"):
                with contextlib.suppress(OSError, ValueError, KeyError):
                    out.append(self._load("sha256:" + name[:-5], refs))
        return out

    def get(self, name: str) -> Image:
        """By ref (`alpine:3.20`), manifest digest, image id (config digest) or a unique id prefix."""
        refs = self._refs()
        with contextlib.suppress(ImageError):
            r = parse_reference(name)
            key = str(r) if r.tag else None
            if key and key in refs:
                return self._load(refs[key], refs)
            if r.digest:
                for img in self.images():
                    if img.manifest_digest == r.digest:
                        return img
        prefix = name.removeprefix("sha256:")
        if len(prefix) >= 4 and all(c in "0123456789abcdef" for c in prefix):
            hits = [i for i in self.images() if i.id.removeprefix("sha256:").startswith(prefix)
                    or i.manifest_digest.removeprefix("sha256:").startswith(prefix)]
            if len({i.manifest_digest for i in hits}) == 1:
                return hits[0]
            if len(hits) > 1:
                raise ImageNotFound(f"{name}: ambiguous image id prefix ({len(hits)} images)")
        raise ImageNotFound(f"{name}: no such image in the store ({self.root})")

    def add_image(self, manifest: bytes, *, refs: tuple[str, ...] = (), repo_digest: str | None = None,
                  progress: ProgressCallback | None = None) -> Image:
        """Record an image whose manifest, config and layer blobs are in the store (the manifest is
        stored too): validates the manifest and config, unpacks missing layers, then writes the record
        and moves the given refs to it. Call inside `transaction()`."""
        mdigest = sha256_bytes(manifest)
        doc = parse_config(manifest, f"manifest {mdigest}")
        mtype = doc.get("mediaType") or MT_OCI_MANIFEST
        if mtype not in MANIFEST_TYPES:
            raise LayoutError(f"manifest {mdigest}: media type {mtype!r} is not an image manifest")
        schemas.validate("manifest", doc, f"manifest {mdigest}")
        self.put_blob(manifest, digest=mdigest, what="manifest")
        cdesc = doc["config"]
        config_raw = self.read_blob(cdesc["digest"])
        if len(config_raw) != cdesc["size"]:
            raise DigestMismatch(f"config {cdesc['digest']}: {len(config_raw)} bytes, manifest says {cdesc['size']}")
        cfg = parse_config(config_raw, f"config {cdesc['digest']}")
        schemas.validate("config", cfg, f"config {cdesc['digest']}")
        diff_ids = cfg["rootfs"]["diff_ids"]
        if len(diff_ids) != len(doc["layers"]):
            raise LayoutError(f"image {mdigest}: {len(doc['layers'])} layers in the manifest, "
                              f"{len(diff_ids)} diff_ids in the config")
        layers = []
        for i, (desc, diff_id) in enumerate(zip(doc["layers"], diff_ids, strict=True)):
            new = not self.has_layer(diff_id)  # a layer already there says "Already exists", as Docker's do
            if progress and new:
                progress(ProgressEvent(", ".join(refs), desc["digest"], "Extracting", 0, desc["size"]))
            path = self.ensure_layer(desc["digest"], diff_id, what=f"layer {i}")
            if progress and new:
                progress(ProgressEvent(", ".join(refs), desc["digest"], "Pull complete", desc["size"], desc["size"]))
            layers.append(Layer(desc["digest"], diff_id, desc["size"], desc["mediaType"], path))
        lt = tuple(layers)
        img = Image(
            id=cdesc["digest"], manifest_digest=mdigest, refs=(), architecture=cfg.get("architecture", ""),
            os=cfg.get("os", ""), variant=cfg.get("variant", ""), created=cfg.get("created", ""),
            config=image_config(cfg), layers=lt, history=history_entries(cfg, lt), manifest_media_type=mtype,
            repo_digests=(repo_digest,) if repo_digest else (),
        )
        with self._lock():
            path = self._record_path(mdigest)
            if os.path.exists(path):
                old = self._load(mdigest)
                img = Image.from_json({**img.to_json(),
                                       "repo_digests": sorted(set(old.repo_digests) | set(img.repo_digests))})
            self._atomic_write(path, json.dumps(img.to_json(), indent=1).encode())
            all_refs = self._refs()
            for r in refs:
                all_refs[str(parse_reference(r))] = mdigest
            self._write_refs(all_refs)
        return self._load(mdigest)

    def create_image(self, ref: str | None, layers: list[str | bytes], config: ImageConfig | None = None, *,
                     history: list[str] | None = None, architecture: str | None = None, os_name: str = "linux",
                     variant: str | None = None, created: str | None = None,
                     layer_media_type: str | None = None) -> Image:
        """Make an image from layers: each a directory (packed, gzip) or tar bytes (plain/gzip/zstd, as
        given). `history`: created_by of each layer. The seed of builds, and of test images."""
        host_os, host_arch, host_variant = host_platform()
        created = created or datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self.transaction():
            descs, diff_ids = [], []
            for layer in layers:
                if isinstance(layer, str):
                    buf = io.BytesIO()
                    pack_dir(layer, buf)
                    data = buf.getvalue()
                else:
                    data = layer
                desc, diff_id = self._put_layer(data, layer_media_type)
                descs.append(desc)
                diff_ids.append(diff_id)
            cfg_doc: dict[str, Any] = {
                "created": created, "architecture": architecture or host_arch, "os": os_name,
                "config": config_section(config or ImageConfig()),
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
                "history": [{"created": created, "created_by": (history or [])[i] if i < len(history or []) else ""}
                            for i in range(len(layers))],
            }
            v = host_variant if variant is None and architecture is None else (variant or "")
            if v:
                cfg_doc["variant"] = v
            return self._commit_image(cfg_doc, descs, ref)

    def _put_layer(self, data: bytes, media_type: str | None = None) -> tuple[dict[str, Any], str]:
        """Store a layer tarball: its descriptor for a manifest, and its diff_id for the config."""
        from .unpack import diff_id_of

        digest = self.put_blob(data, what="layer")
        kind = compression_of(data[:4])
        mt = media_type or {"gzip": MT_OCI_LAYER_GZIP, "zstd": MT_OCI_LAYER_ZSTD}.get(kind, MT_OCI_LAYER)
        return {"mediaType": mt, "digest": digest, "size": len(data)}, diff_id_of(io.BytesIO(data))

    def _commit_image(self, cfg_doc: dict[str, Any], descs: list[dict[str, Any]], ref: str | None) -> Image:
        """Store the config and a manifest over `descs`, and record the image (inside a transaction)."""
        cfg_raw = json.dumps(cfg_doc, sort_keys=True).encode()
        cdigest = self.put_blob(cfg_raw, what="config")
        manifest = {"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                    "config": {"mediaType": MT_OCI_CONFIG, "digest": cdigest, "size": len(cfg_raw)},
                    "layers": descs}
        return self.add_image(json.dumps(manifest, sort_keys=True).encode(), refs=(ref,) if ref else ())

    def derive_image(self, base: Image | None, layer: bytes | None, config: ImageConfig, created_by: str, *,
                     ref: str | None = None) -> Image:
        """A build step: `base`'s layers (their blobs reused as they are) plus `layer` (tar bytes, or None for
        a step that only changes the config), with `config` and one more history entry."""
        created = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self.transaction():
            if base is not None:
                manifest = self.manifest(base)
                doc = self.config_doc(base)
                descs = list(manifest["layers"])
                diff_ids = list(doc["rootfs"]["diff_ids"])
                history = list(doc.get("history", []))
                arch, os_name, variant = doc.get("architecture"), doc.get("os", "linux"), doc.get("variant")
            else:
                host_os, arch, variant = host_platform()
                os_name, descs, diff_ids, history = "linux", [], [], []
            entry: dict[str, Any] = {"created": created, "created_by": created_by}
            if layer is not None:
                desc, diff_id = self._put_layer(layer)
                descs.append(desc)
                diff_ids.append(diff_id)
            else:
                entry["empty_layer"] = True
            history.append(entry)
            cfg_doc: dict[str, Any] = {"created": created, "architecture": arch, "os": os_name,
                                       "config": config_section(config),
                                       "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": history}
            if variant:
                cfg_doc["variant"] = variant
            return self._commit_image(cfg_doc, descs, ref)

    def manifest(self, image: Image) -> dict[str, Any]:
        return parse_config(self.read_blob(image.manifest_digest), f"manifest {image.manifest_digest}")

    def config_doc(self, image: Image) -> dict[str, Any]:
        return parse_config(self.read_blob(image.id), f"config {image.id}")

    # -- tags, removal, gc ----------------------------------------------------------------------------------
    def tag(self, source: str, target: str) -> Image:
        img = self.get(source)
        with self._lock():
            refs = self._refs()
            refs[str(parse_reference(target))] = img.manifest_digest
            self._write_refs(refs)
        return self._load(img.manifest_digest)

    def rm(self, name: str, *, force: bool = False) -> PruneReport:
        """Untag a ref (the image goes when its last ref does) or remove an image by id (refused while
        it has several refs, unless force). Unused blobs and layers go with it."""
        img = self.get(name)
        report = PruneReport()
        with self._lock():
            refs = self._refs()
            key = None
            with contextlib.suppress(ImageError):
                key = str(parse_reference(name))
            if key in refs and refs[key] == img.manifest_digest:
                del refs[key]
            else:
                mine = [r for r, m in refs.items() if m == img.manifest_digest]
                if len(mine) > 1 and not force:
                    raise ImageInUse(f"{name}: image {img.short_id} is tagged as {', '.join(mine)}; "
                                     "remove the tags or force")
                for r in mine:
                    del refs[r]
            self._write_refs(refs)
            if img.manifest_digest not in refs.values():
                os.unlink(self._record_path(img.manifest_digest))
                report.images.append(img.manifest_digest)
        gc = self.gc()
        report.blobs, report.layers, report.freed = gc.blobs, gc.layers, gc.freed
        return report

    def prune(self, *, all: bool = False, keep: frozenset[str] | set[str] = frozenset()) -> PruneReport:  # noqa: A002
        """Remove dangling images (no ref; with all=True every image), except ids/manifest digests in
        `keep` (images containers use), then unreferenced blobs and layers."""
        report = PruneReport()
        with self._lock():
            refs = self._refs()
            for img in self.images():
                if img.id in keep or img.manifest_digest in keep:
                    continue
                if all or img.manifest_digest not in refs.values():
                    os.unlink(self._record_path(img.manifest_digest))
                    report.images.append(img.manifest_digest)
                    refs = {r: m for r, m in refs.items() if m != img.manifest_digest}
            self._write_refs(refs)
        gc = self.gc()
        report.blobs, report.layers, report.freed = gc.blobs, gc.layers, gc.freed
        return report

    def _referenced(self) -> set[str]:
        keep: set[str] = set()
        for img in self.images():
            keep |= {img.manifest_digest, img.id}
            for layer in img.layers:
                keep |= {layer.digest, layer.diff_id}
        return keep

    def gc(self) -> PruneReport:
        """Remove blobs and layers no image record uses, and leftovers in tmp/."""
        report = PruneReport()
        with self._lock():
            if self._txns:
                return report  # never collect under a running transaction
            keep = self._referenced()
            for sub, out in (("blobs", report.blobs), ("layers", report.layers)):
                d = self._p(sub, "sha256")
                for name in os.listdir(d):
                    if "sha256:" + name not in keep:
                        path = os.path.join(d, name)
                        report.freed += _tree_size(path) if os.path.isdir(path) else os.lstat(path).st_size
                        _rmtree(path)
                        out.append("sha256:" + name)
            for name in os.listdir(self._p("tmp")):
                _rmtree(self._p("tmp", name))
        return report

    def du(self) -> DiskUsage:
        imgs = self.images()
        refs = self._refs()
        bdir = self._p("blobs", "sha256")
        blob_bytes = {n: os.lstat(os.path.join(bdir, n)).st_size for n in os.listdir(bdir)}
        layer_dirs = os.listdir(self._p("layers", "sha256"))
        layer_bytes = {n: _tree_size(self._p("layers", "sha256", n)) for n in layer_dirs}
        users: dict[str, int] = {}
        for img in imgs:
            for layer in img.layers:
                users[layer.digest] = users.get(layer.digest, 0) + 1
        per = []
        for img in imgs:
            size = sum(layer.size for layer in img.layers)
            shared = sum(layer.size for layer in img.layers if users[layer.digest] > 1)
            per.append(ImageUsage((img.refs or ("<none>",))[0], img.id, size, shared, size - shared))
        live = {i.manifest_digest for i in imgs if i.manifest_digest in refs.values()}
        keep: set[str] = set()
        for img in imgs:
            if img.manifest_digest in live:
                keep |= {img.manifest_digest, img.id, *(x.digest for x in img.layers), *(x.diff_id for x in img.layers)}
        reclaim = sum(s for n, s in blob_bytes.items() if "sha256:" + n not in keep)
        reclaim += sum(s for n, s in layer_bytes.items() if "sha256:" + n not in keep)
        return DiskUsage(len(imgs), sum(blob_bytes.values()), sum(layer_bytes.values()), reclaim, tuple(per))

    # -- views ----------------------------------------------------------------------------------------------
    def history(self, name: str) -> list[HistoryEntry]:
        return list(reversed(self.get(name).history))  # newest first, as `docker history`

    def inspect(self, name: str) -> dict[str, Any]:
        """Docker's `image inspect` shape (a subset)."""
        img = self.get(name)
        c = img.config
        return {
            "Id": img.id, "RepoTags": [parse_reference(r).short for r in img.refs],
            "RepoDigests": list(img.repo_digests),
            "ManifestDigest": img.manifest_digest, "Created": img.created, "Architecture": img.architecture,
            "Os": img.os, "Variant": img.variant, "Size": img.size,
            "Config": {"Env": list(c.env), "Cmd": list(c.cmd) if c.cmd is not None else None,
                       "Entrypoint": list(c.entrypoint) if c.entrypoint is not None else None,
                       "WorkingDir": c.workdir, "User": c.user, "ExposedPorts": list(c.exposed_ports),
                       "Volumes": list(c.volumes), "Labels": dict(c.labels), "StopSignal": c.stop_signal},
            "RootFS": {"Type": "layers", "Layers": [x.diff_id for x in img.layers]},
            "Layers": [{"Digest": x.digest, "DiffID": x.diff_id, "Size": x.size, "MediaType": x.media_type,
                        "Path": x.path} for x in img.layers],
        }

    def file_table(self, name: str) -> list[FileEntry]:
        """Every path of every layer: which layer it comes from and which copy wins (overlay rules:
        a higher layer's copy shadows, its whiteout deletes, its opaque dir hides what is below)."""
        return file_table(self.get(name))


def _kind(st: os.stat_result) -> str:
    m = st.st_mode
    if is_whiteout(st):
        return "whiteout"
    if stat.S_ISDIR(m):
        return "dir"
    if stat.S_ISLNK(m):
        return "symlink"
    if stat.S_ISREG(m):
        return "hardlink" if st.st_nlink > 1 else "file"
    if stat.S_ISFIFO(m):
        return "fifo"
    return "device"


def file_table(img: Image) -> list[FileEntry]:
    per_layer: list[list[tuple[str, str, int, bool]]] = []  # (path, kind, size, opaque)
    for layer in img.layers:
        rows = []
        for dirpath, dirnames, filenames in os.walk(layer.path):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                full = os.path.join(dirpath, name)
                st = os.lstat(full)
                rel = "/" + os.path.relpath(full, layer.path)
                kind = _kind(st)
                rows.append((rel, kind, st.st_size if kind in ("file", "hardlink") else 0,
                             kind == "dir" and is_opaque(full)))
        per_layer.append(rows)
    out: list[FileEntry] = []
    seen: set[str] = set()  # paths already provided by a higher layer
    gone: set[str] = set()  # removed from below: whiteouts, non-dirs shadowing trees
    hidden_below: set[str] = set()  # opaque dirs: their content from lower layers is hidden

    def covered(path: str) -> bool:
        parts = path.split("/")
        for i in range(2, len(parts)):
            anc = "/".join(parts[:i])
            if anc in gone or anc in hidden_below:
                return True
        return path in gone

    for idx in range(len(img.layers) - 1, -1, -1):
        layer = img.layers[idx]
        new_gone, new_hidden = set(), set()
        for path, kind, size, opaque in per_layer[idx]:
            if kind == "whiteout":
                status = "whiteout"
                new_gone.add(path)
            elif path in seen and kind != "dir":
                status = "shadowed"  # a higher layer's copy wins (checked first: that copy is in `gone` too)
            elif covered(path):
                status = "deleted"
            elif path in seen:
                status = "shadowed" if kind != "dir" else "visible"
            else:
                status = "visible"
            if status != "whiteout" and status != "deleted":
                if kind != "dir":
                    new_gone.add(path)  # a file here hides any tree below it
                elif opaque:
                    new_hidden.add(path)
                seen.add(path)
            out.append(FileEntry(path, idx, layer.diff_id, "opaque" if opaque else kind, size, status))
        gone |= new_gone
        hidden_below |= new_hidden
    out.sort(key=lambda e: (e.path, -e.layer))
    return out
