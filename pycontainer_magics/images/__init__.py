"""Images: a content-addressed store, OCI layout and docker-archive import/export, a registry client,
safe layer unpacking (whiteouts), image views and a Dockerfile parser.
Third-party: jsonschema; zstandard when a layer is zstd.

May import: linux/ and the package's top-level helpers (paths.py, errors.py). Never network/ or any layer
above; never IPython, pandas, matplotlib or ipywidgets.
"""

from .archive import import_docker_archive
from .dockerfile import Dockerfile, DockerfileError, parse_dockerfile
from .errors import (
    BlobUnknown,
    DigestMismatch,
    ImageError,
    ImageInUse,
    ImageNotFound,
    InvalidReference,
    LayoutError,
    PlatformNotFound,
    RegistryError,
    RegistryUnreachable,
    SchemaError,
    UnsafeLayer,
)
from .image import HistoryEntry, Image, ImageConfig, Layer
from .layout import export_layout, import_layout
from .reference import Reference, parse_reference
from .registry import RegistryClient, pull, push
from .store import DiskUsage, FileEntry, ImageUsage, ProgressEvent, PruneReport, Store, file_table
from .unpack import flatten, pack_dir, unpack_layer

__all__ = [
    "BlobUnknown", "DigestMismatch", "DiskUsage", "Dockerfile", "DockerfileError", "FileEntry", "HistoryEntry",
    "Image", "ImageConfig", "ImageError", "ImageInUse", "ImageNotFound", "ImageUsage", "InvalidReference", "Layer",
    "LayoutError", "PlatformNotFound", "ProgressEvent", "PruneReport", "Reference", "RegistryClient", "RegistryError",
    "RegistryUnreachable", "SchemaError", "Store", "UnsafeLayer", "export_layout", "file_table", "flatten",
    "import_docker_archive", "import_layout", "pack_dir", "parse_dockerfile", "parse_reference", "pull", "push",
    "unpack_layer",
]
