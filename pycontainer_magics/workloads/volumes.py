"""Named volumes (`-v NAME:/path`): directories kept in the state directory across containers."""

from __future__ import annotations

import errno
import os
import shutil

from ..runtime.spec import VOLUME_NAME_RE
from ..runtime.state import volume_path, volumes_dir


def list_volumes() -> list[str]:
    try:
        return sorted(d for d in os.listdir(volumes_dir()) if os.path.isdir(os.path.join(volumes_dir(), d)))
    except FileNotFoundError:
        return []


def create_volume(name: str) -> str:
    if not VOLUME_NAME_RE.match(name):
        raise ValueError(f"invalid volume name {name!r}: letters, digits, '_', '.', '-'")
    return volume_path(name)


def remove_volume(name: str) -> None:
    if not VOLUME_NAME_RE.match(name):
        raise ValueError(f"invalid volume name {name!r}")
    path = os.path.join(volumes_dir(), name)
    if not os.path.isdir(path):
        raise FileNotFoundError(errno.ENOENT, f"no such volume: {name}", path)
    shutil.rmtree(path)
