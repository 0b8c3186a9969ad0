"""Docker's ways of saying things in a request: which stream format a version expects, and times."""

from __future__ import annotations

from ..workloads.json_log import parse_time
from .http import ApiError, Request


def content_type(req: Request) -> str:
    """Attach, exec and logs without a TTY: a multiplexed stream, named so from API 1.42 on."""
    v = req.api_version
    if v is not None and tuple(int(x) for x in v.split(".")) >= (1, 42):
        return "application/vnd.docker.multiplexed-stream"
    return "application/vnd.docker.raw-stream"


def time_param(v: str | None) -> float | None:
    """dockerd's since/until: unix seconds (with fractions), or an RFC 3339 time."""
    if not v:
        return None
    try:
        return float(v)
    except ValueError:
        pass
    try:
        return parse_time(v)
    except ValueError:
        raise ApiError(400, f"invalid time value: {v!r}") from None
