"""The Image record: what the store knows about one image (data only, JSON round-trip)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import ImageError, LayoutError

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MANIFEST_TYPES = (MT_OCI_MANIFEST, MT_DOCKER_MANIFEST)
INDEX_TYPES = (MT_OCI_INDEX, MT_DOCKER_LIST)
LAYER_TYPES = (MT_OCI_LAYER, MT_OCI_LAYER_GZIP, MT_OCI_LAYER_ZSTD, MT_DOCKER_LAYER_GZIP,
               "application/vnd.docker.image.rootfs.diff.tar",
               "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
               "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip")


# The label an image built `FROM host` carries (its config is all that says so, as a label is kept by every
# later build step).
HOST_BASE_LABEL = "io.github.pycontainer-magics.base"


@dataclass(frozen=True)
class ImageConfig:
    """The runtime part of an image config (`config` in the OCI config JSON)."""

    env: tuple[str, ...] = ()  # "KEY=value"
    cmd: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    workdir: str = ""
    user: str = ""
    exposed_ports: tuple[str, ...] = ()  # "80/tcp"
    volumes: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    stop_signal: str = ""

    def env_dict(self) -> dict[str, str]:
        out = {}
        for item in self.env:
            k, _, v = item.partition("=")
            out[k] = v
        return out

    def argv(self, command: tuple[str, ...] | list[str] = ()) -> list[str]:
        """What runs, as Docker decides: ENTRYPOINT + (the given command or CMD)."""
        return [*(self.entrypoint or ()), *(command or self.cmd or ())]


@dataclass(frozen=True)
class Layer:
    digest: str  # of the blob as stored (compressed)
    diff_id: str  # of the uncompressed tar (the config's rootfs.diff_ids)
    size: int  # blob size
    media_type: str
    path: str = ""  # unpacked directory (overlay-ready: whiteouts as 0/0 char devices, opaque xattrs)


@dataclass(frozen=True)
class HistoryEntry:
    created: str
    created_by: str
    comment: str = ""
    empty_layer: bool = False
    layer: str | None = None  # diff_id of the layer it made (None for metadata-only steps)
    size: int = 0


@dataclass(frozen=True)
class Image:
    id: str  # config digest, as Docker's image id
    manifest_digest: str
    refs: tuple[str, ...]  # normalised references tagging it
    architecture: str
    os: str
    variant: str
    created: str
    config: ImageConfig
    layers: tuple[Layer, ...]  # bottom first, as in the manifest
    history: tuple[HistoryEntry, ...]
    manifest_media_type: str = MT_OCI_MANIFEST
    repo_digests: tuple[str, ...] = ()  # name@manifest-digest as pulled

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]

    @property
    def size(self) -> int:
        return sum(layer.size for layer in self.layers)

    @property
    def platform(self) -> str:
        return f"{self.os}/{self.architecture}" + (f"/{self.variant}" if self.variant else "")

    @property
    def host_based(self) -> bool:
        """Built `FROM host`: this machine's / is the bottom layer, not in the image itself."""
        return self.config.labels.get(HOST_BASE_LABEL) == "host"

    def lower_dirs(self) -> list[str]:
        """The unpacked layer directories, topmost first: overlayfs's lowerdir, joined with ':'."""
        return [layer.path for layer in reversed(self.layers)] + (["/"] if self.host_based else [])

    def require_portable(self, action: str) -> None:
        """An image built FROM host cannot leave this machine: its base is not in it."""
        if self.host_based:
            raise ImageError(f"cannot {action} {self.refs[0] if self.refs else self.short_id}: it is built FROM host, "
                             "so its bottom layer is this machine's / and not in the image; build it FROM an image "
                             "or scratch to " + action + " it")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Image:
        c = dict(d["config"])
        for k in ("env", "exposed_ports", "volumes"):
            c[k] = tuple(c.get(k) or ())
        for k in ("cmd", "entrypoint"):
            c[k] = tuple(c[k]) if c.get(k) is not None else None
        return cls(
            id=d["id"], manifest_digest=d["manifest_digest"], refs=tuple(d["refs"]),
            architecture=d["architecture"], os=d["os"], variant=d.get("variant", ""), created=d.get("created", ""),
            config=ImageConfig(**c), layers=tuple(Layer(**x) for x in d["layers"]),
            history=tuple(HistoryEntry(**h) for h in d["history"]),
            manifest_media_type=d.get("manifest_media_type", MT_OCI_MANIFEST),
            repo_digests=tuple(d.get("repo_digests", ())),
        )


def parse_config(raw: bytes, what: str = "config") -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise LayoutError(f"{what}: not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise LayoutError(f"{what}: not a JSON object")
    return doc


def image_config(doc: dict[str, Any]) -> ImageConfig:
    """The `config` section of an OCI/Docker image config as an ImageConfig."""
    c = doc.get("config") or {}

    def strs(v: Any) -> tuple[str, ...] | None:
        if v is None:
            return None
        if isinstance(v, str):
            return (v,)
        return tuple(str(x) for x in v)

    return ImageConfig(
        env=tuple(c.get("Env") or ()),
        cmd=strs(c.get("Cmd")),
        entrypoint=strs(c.get("Entrypoint")),
        workdir=c.get("WorkingDir") or "",
        user=c.get("User") or "",
        exposed_ports=tuple(sorted(c.get("ExposedPorts") or {})),
        volumes=tuple(sorted(c.get("Volumes") or {})),
        labels=dict(c.get("Labels") or {}),
        stop_signal=c.get("StopSignal") or "",
    )


def config_section(cfg: ImageConfig) -> dict[str, Any]:
    """ImageConfig -> the `config` object of an OCI image config (the inverse of image_config)."""
    out: dict[str, Any] = {}
    if cfg.env:
        out["Env"] = list(cfg.env)
    if cfg.cmd is not None:
        out["Cmd"] = list(cfg.cmd)
    if cfg.entrypoint is not None:
        out["Entrypoint"] = list(cfg.entrypoint)
    if cfg.workdir:
        out["WorkingDir"] = cfg.workdir
    if cfg.user:
        out["User"] = cfg.user
    if cfg.exposed_ports:
        out["ExposedPorts"] = {p: {} for p in cfg.exposed_ports}
    if cfg.volumes:
        out["Volumes"] = {v: {} for v in cfg.volumes}
    if cfg.labels:
        out["Labels"] = dict(cfg.labels)
    if cfg.stop_signal:
        out["StopSignal"] = cfg.stop_signal
    return out


def history_entries(doc: dict[str, Any], layers: tuple[Layer, ...]) -> tuple[HistoryEntry, ...]:
    """The config's history with each non-empty step matched to its layer (in order)."""
    out = []
    it = iter(layers)
    for h in doc.get("history") or ():
        empty = bool(h.get("empty_layer"))
        layer = None if empty else next(it, None)
        out.append(HistoryEntry(created=h.get("created", ""), created_by=h.get("created_by", ""),
                                comment=h.get("comment", ""), empty_layer=empty,
                                layer=layer.diff_id if layer else None, size=layer.size if layer else 0))
    rest = list(it)
    if not doc.get("history"):
        out = [HistoryEntry(created="", created_by="", layer=layer.diff_id, size=layer.size) for layer in layers]
    elif rest:
        out += [HistoryEntry(created="", created_by="", layer=layer.diff_id, size=layer.size) for layer in rest]
    return tuple(out)
