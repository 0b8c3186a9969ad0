"""The lab's defaults for containers started with Docker's options (`%%container`, `pycontainer run`),
overridable per cell and in a configuration file. A lab needs bounds Docker leaves off: a fork bomb stops
at the pids limit, a cell filling its disk stops at the writable layer's size instead of eating the host's
RAM (the layer is a tmpfs).

The file is TOML, read from $PYCONTAINER_CONFIG, else $XDG_CONFIG_HOME/pycontainer_magics/config.toml
(~/.config/...), else /etc/pycontainer_magics/config.toml:

    [container]
    pids-limit = 1024        # processes per container; -1: no limit (Docker's default; podman's is 2048)
    storage-size = "1g"      # the writable layer; "unlimited": half the host's RAM, tmpfs's own default

A cell overrides them with `--pids-limit N|-1` and `--storage-opt size=SIZE|unlimited`.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from dataclasses import dataclass
from typing import Any

from . import environ
from .spec import SpecError

DEFAULT_PIDS_LIMIT = 1024
DEFAULT_STORAGE_SIZE = 1 << 30


@dataclass(frozen=True)
class Defaults:
    pids_limit: int | None = DEFAULT_PIDS_LIMIT  # None: no limit
    storage_size: int | None = DEFAULT_STORAGE_SIZE
    source: str = "built in"


def config_path() -> str | None:
    path, _ = _found()
    return path


def _named() -> tuple[str | None, tuple[str, ...]]:
    """The file $PYCONTAINER_CONFIG names, else None and where to look for one, in order."""
    env = os.environ.get("PYCONTAINER_CONFIG")
    if env:
        return env, ()
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return None, (os.path.join(xdg, "pycontainer_magics", "config.toml"), "/etc/pycontainer_magics/config.toml")


_NAMING = (b"PYCONTAINER_CONFIG", b"XDG_CONFIG_HOME", b"HOME")  # the variables _named reads
_last_named: tuple[tuple[bytes | None, ...], tuple[str | None, tuple[str, ...]]] | None = None


def _found() -> tuple[str | None, os.stat_result | None]:
    """The file in effect and its status (None: none named, none found; the status None when it was named but not
    read). Where to look is worked out again only when a variable that names it changes (a re-run cell asks this
    every time: the variables are compared in C, the look-up made in Python cost 0.1 ms of a cell's start)."""
    global _last_named
    data = environ.raw()
    key = tuple(data.get(k) for k in _NAMING) if data is not None else None
    last = _last_named
    if key is not None and last is not None and last[0] == key:
        named, where = last[1]
    else:
        named, where = _named()
        if key is not None:
            _last_named = key, (named, where)
    if named is not None:
        return named, None
    for p in where:
        try:
            st = os.stat(p)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            return p, st
    return None, None


_cache: dict[tuple[str, float], Defaults] = {}
_BUILT_IN = Defaults()


def defaults() -> Defaults:
    """The defaults in effect (the file is read again when it changes)."""
    path, st = _found()
    if path is None:
        return _BUILT_IN
    try:
        mtime = (st or os.stat(path)).st_mtime
    except OSError as e:
        raise SpecError(f"configuration {path}: cannot read it ({e.strerror})") from None
    if (path, mtime) not in _cache:
        _cache[(path, mtime)] = _load(path)
    return _cache[(path, mtime)]


def _size(text: str, path: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", text, re.IGNORECASE)
    if m is None:
        raise SpecError(f"configuration {path}: storage-size = {text!r}: a size like 1g or 512m, or 'unlimited'")
    return int(float(m.group(1)) * (1 << (10 * " kmgt".index(m.group(2).lower() or " "))))


def _load(path: str) -> Defaults:
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise SpecError(f"configuration {path}: {e}") from None
    section: Any = doc.get("container", {})
    unknown = set(section) - {"pids-limit", "storage-size"} if isinstance(section, dict) else {"container"}
    if unknown:
        raise SpecError(f"configuration {path}: unknown key {sorted(unknown)[0]!r} in [container] "
                        "(expected pids-limit, storage-size)")
    pids: int | None = DEFAULT_PIDS_LIMIT
    if "pids-limit" in section:
        value = section["pids-limit"]
        if not isinstance(value, int) or isinstance(value, bool) or (value < 1 and value != -1):
            raise SpecError(f"configuration {path}: pids-limit = {value!r}: a positive whole number, or -1")
        pids = None if value == -1 else value
    size: int | None = DEFAULT_STORAGE_SIZE
    if "storage-size" in section:
        value = section["storage-size"]
        size = None if str(value).strip().lower() == "unlimited" else _size(str(value), path)
    return Defaults(pids, size, path)


__all__ = ["DEFAULT_PIDS_LIMIT", "DEFAULT_STORAGE_SIZE", "Defaults", "config_path", "defaults"]
