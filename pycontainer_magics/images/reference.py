"""Image references, normalised as Docker does: `alpine` -> `docker.io/library/alpine:latest`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InvalidReference

DEFAULT_REGISTRY = "docker.io"
DOCKER_HUB_ENDPOINT = "registry-1.docker.io"
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Reference:
    registry: str  # "docker.io", "127.0.0.1:5000", "ghcr.io"
    repository: str  # "library/alpine"
    tag: str | None = "latest"
    digest: str | None = None  # "sha256:..." when pinned

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        s = self.name
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s

    @property
    def short(self) -> str:
        """As `docker images` shows it: `alpine:3.20`, `127.0.0.1:5000/lab/busybox:1`."""
        name = self.name
        if self.registry == DEFAULT_REGISTRY:
            name = self.repository.removeprefix("library/")
        return f"{name}:{self.tag}" if self.tag else f"{name}@{self.digest}"

    @property
    def endpoint(self) -> str:
        """host[:port] to talk to."""
        return DOCKER_HUB_ENDPOINT if self.registry == DEFAULT_REGISTRY else self.registry

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.registry, self.repository, tag, None)


def parse_reference(ref: str) -> Reference:
    """`alpine:3.20`, `docker.io/library/alpine`, `127.0.0.1:5000/lab/busybox:1`, `x@sha256:...`."""
    s = ref.strip()
    if not s:
        raise InvalidReference("empty image reference")
    digest = None
    if "@" in s:
        s, digest = s.split("@", 1)
        if not _DIGEST.match(digest):
            raise InvalidReference(f"{ref}: bad digest {digest!r} (expected sha256:<64 hex>)")
    tag: str | None = None
    last = s.rsplit("/", 1)[-1]
    if ":" in last:
        s, tag = s.rsplit(":", 1)
        if not _TAG.match(tag):
            raise InvalidReference(f"{ref}: bad tag {tag!r}")
    parts = s.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        registry, path = parts[0], parts[1:]
    else:
        registry, path = DEFAULT_REGISTRY, parts
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = DEFAULT_REGISTRY
    if registry == DEFAULT_REGISTRY and len(path) == 1:
        path = ["library", *path]
    for comp in path:
        if not _COMPONENT.match(comp):
            raise InvalidReference(f"{ref}: bad repository name component {comp!r} (lowercase, digits, . _ -)")
    if tag is None and digest is None:
        tag = "latest"
    return Reference(registry, "/".join(path), tag, digest)
