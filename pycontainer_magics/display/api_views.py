"""The engine daemon's request log as a DataFrame: who asked what of the Docker Engine API, and how it went."""

from __future__ import annotations

import json
import re

import pandas as pd

_LONG_ID = re.compile(r"\b([0-9a-f]{12})[0-9a-f]{52}\b")

COLUMNS = ["t_s", "client", "method", "path", "status", "ms"]


def client_of(agent: str) -> str:
    """The client, from its User-Agent: the docker CLI, docker-py, this project (CLI or magics), or as sent."""
    if agent.startswith("Docker-Client/"):
        return "docker CLI"
    if agent.startswith("docker-sdk-python/"):
        return "docker-py"
    if agent.startswith("pycontainer-magics"):
        return "pycontainer"
    return agent or "?"


def api_requests_frame(path: str, since: float | None = None) -> pd.DataFrame:
    """One row per request in the daemon's access log (from `since`, seconds since the epoch): seconds since
    the first row shown, the client, method, path (its /vX.Y prefix kept, as sent; ids shortened to 12
    characters, as docker shows them), status and milliseconds."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if since is not None and r["time"] < since:
                continue
            rows.append(r)
    if not rows:
        return pd.DataFrame(columns=COLUMNS)
    rows.sort(key=lambda r: r["time"])  # written when answered; shown in the order they were asked
    t0 = rows[0]["time"]
    return pd.DataFrame([{"t_s": round(r["time"] - t0, 3), "client": client_of(r.get("agent", "")),
                          "method": r["method"], "path": _LONG_ID.sub(r"\1", r["path"]), "status": r["status"],
                          "ms": r["ms"]}
                         for r in rows], columns=COLUMNS)
