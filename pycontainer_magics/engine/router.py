"""Dispatch: strip the `/vX.Y` prefix (checked as dockerd checks it), match the route, call the handler.
An endpoint this engine does not have is a 404 naming it, never a hang."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .http import ApiError, Request, Response

API_VERSION = "1.41"  # what /version advertises, so clients speak Debian docker 20.10's dialect
MIN_API_VERSION = "1.12"
# Requests may name a newer version (docker-py with version="1.45", a newer CLI told to): the shapes they
# rely on are the same for everything served here, so they are answered rather than refused.
NEWEST_UNDERSTOOD = "1.51"

_VERSION_RE = re.compile(r"^/v(\d+\.\d+)(/.*)$")
_PARAM_RE = re.compile(r"\{(\w+)(?::([^}]*))?\}")


def _v(s: str) -> tuple[int, ...]:
    return tuple(int(x) for x in s.split("."))


class Router:
    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Callable[..., Any]]] = []

    def add(self, method: str, pattern: str, handler: Callable[..., Any]) -> None:
        """`pattern`: a path with `{name}` (one segment) or `{name:.*}` (the rest, slashes included)."""
        regex = ""
        pos = 0
        for m in _PARAM_RE.finditer(pattern):
            regex += re.escape(pattern[pos:m.start()]) + f"(?P<{m.group(1)}>{m.group(2) or '[^/]+'})"
            pos = m.end()
        regex += re.escape(pattern[pos:])
        self.routes.append((method, re.compile(f"^{regex}$"), handler))

    async def dispatch(self, req: Request) -> Response | None:
        path = req.path
        m = _VERSION_RE.match(path)
        if m:
            version, path = m.group(1), m.group(2)
            if _v(version) > _v(NEWEST_UNDERSTOOD):
                raise ApiError(400, f"client version {version} is too new. Maximum supported API version is "
                               f"{API_VERSION}")
            if _v(version) < _v(MIN_API_VERSION):
                raise ApiError(400, f"client version {version} is too old. Minimum supported API version is "
                               f"{MIN_API_VERSION}, please upgrade your client to a newer version")
            req.api_version = version
        else:
            req.api_version = API_VERSION
        req.route_path = path
        method = "GET" if req.method == "HEAD" else req.method
        for route_method, regex, handler in self.routes:
            hit = regex.match(path)
            if hit and (route_method == method or (route_method == "HEAD" and req.method == "HEAD")):
                return await handler(req, **hit.groupdict())  # type: ignore[no-any-return]
        raise ApiError(404, f"page not found: this engine has no endpoint {req.method} {req.path}")
