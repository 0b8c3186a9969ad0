"""The daemon's side of the image store: resolving what a container runs (`No such image` as dockerd says
it, so the docker CLI pulls and retries)."""

from __future__ import annotations

import asyncio
from typing import Any

from .http import ApiError


def short_ref(ref: str) -> str:
    """`busybox` -> `busybox:latest`, as dockerd names an image in its messages."""
    from ..images import parse_reference
    from ..images.errors import InvalidReference

    try:
        return parse_reference(ref).short
    except InvalidReference:
        return ref


class Images:
    def __init__(self) -> None:
        self._store: Any = None

    @property
    def store(self) -> Any:
        if self._store is None:
            from ..images import Store
            self._store = Store()
        return self._store

    def get(self, ref: str) -> Any:
        from ..images import ImageError, ImageNotFound

        if ref == "host":
            return host_image()
        try:
            return self.store.get(ref)
        except ImageNotFound:
            raise ApiError(404, f"No such image: {short_ref(ref)}") from None
        except ImageError as e:
            raise ApiError(400, str(e)) from None

    async def resolve(self, ref: str) -> Any:
        return await asyncio.to_thread(self.get, ref)


def host_image() -> Any:
    """`host`, this project's pseudo image: the host's / as the read-only lower layer (as `%%container`'s
    default), for `docker run host CMD` and the `pycontainer` CLI through the daemon."""
    from ..images.image import Image, ImageConfig

    class HostImage(Image):
        def lower_dirs(self) -> list[str]:
            return ["/"]

    return HostImage(id="host", manifest_digest="host", refs=("host",), architecture="", os="linux", variant="",
                     created="1970-01-01T00:00:00Z", config=ImageConfig(), layers=(), history=())
