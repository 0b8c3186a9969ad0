"""Errors of the image layer: each one line naming the ref, the digest and what was expected."""

from __future__ import annotations

from ..errors import PycontainerError


class ImageError(PycontainerError):
    """Base of every error raised by `pycontainer_magics.images`."""


class ImageNotFound(ImageError):
    """No such image (ref or id) in the store, or no such tag/manifest in a registry."""


class InvalidReference(ImageError):
    """A ref that cannot be parsed (`alpine:3.20`, `host:5000/a/b@sha256:...`)."""


class DigestMismatch(ImageError):
    """Content whose sha256 (or size) is not the one it was announced with: corrupt or truncated."""


class BlobUnknown(ImageError):
    """A blob the store (or a layout) should hold but does not."""


class UnsafeLayer(ImageError):
    """A layer tarball that tries to write outside its directory (`../`, through a symlink, absolute
    hard link) or holds an entry we cannot represent."""


class LayerTooLarge(UnsafeLayer):
    """A layer (or an archive for ADD) that expands beyond the size limit: a gzip or sparse-file bomb."""


class LayoutError(ImageError):
    """A malformed OCI image layout, docker-archive, manifest or config."""


class SchemaError(LayoutError):
    """A document that does not validate against the OCI image-spec JSON schema."""


class RegistryError(ImageError):
    """The registry answered with an error (auth, unknown manifest, refused upload...)."""


class RegistryUnreachable(RegistryError):
    """The registry could not be contacted at all (DNS, refused connection, TLS, timeout)."""


class PlatformNotFound(ImageError):
    """A multi-platform index without an entry for the requested platform."""


class ImageInUse(ImageError):
    """Refused to remove an image still tagged under another name (without force)."""
