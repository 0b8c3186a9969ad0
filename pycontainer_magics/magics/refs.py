"""Which container a `%container VERB NAME` means: one of this kernel's (`%%container --detach`), else one of
the engine daemon's (`%container serve`, `docker run`): one namespace of names for both."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError


def get_container(ref: str) -> Any:
    from ..workloads.containers import DetachedContainerError, containers

    try:
        return containers.get(ref)
    except DetachedContainerError as e:
        from ..engine.control import find
        d = find(ref)
        if d is None:
            raise UsageError(str(e)) from None
        return d


def engine_call(fn: Callable[[], Any]) -> Any:
    """Run an action on a container; the daemon's errors (and its absence) as one line."""
    from ..engine.client import EngineError
    from ..engine.control import EngineUnavailable

    try:
        return fn()
    except (EngineError, EngineUnavailable) as e:
        raise UsageError(str(e)) from None
