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

        try:
            return self.store.get(ref)
        except ImageNotFound:
            raise ApiError(404, f"No such image: {short_ref(ref)}") from None
        except ImageError as e:
            raise ApiError(400, str(e)) from None

    async def resolve(self, ref: str) -> Any:
        return await asyncio.to_thread(self.get, ref)
