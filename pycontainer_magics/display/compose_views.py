"""pandas views of a compose project: `ps`, per-service resource usage (`stats`), and `config` (the file as
the project understands it)."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import Any

import pandas as pd

from .format import MiB

PS_COLUMNS = ["name", "service", "image", "command", "status", "health", "restarts", "ports", "addresses",
              "created"]
STATS_COLUMNS = ["service", "name", "mem_usage", "mem_limit", "mem_percent", "mem_mib", "cpu_s", "pids"]


def ps_frame(statuses: Sequence[Any]) -> pd.DataFrame:
    """`docker compose ps`: one row per service (its current container)."""
    rows = []
    for s in statuses:
        rows.append({"name": s.name, "service": s.service, "image": s.image, "command": s.command[:40],
                     "status": s.status, "health": s.health or "", "restarts": s.restarts,
                     "ports": ", ".join(s.ports), "addresses": ", ".join(f"{a} ({n})" for n, a in s.addresses.items()),
                     "created": _dt.datetime.fromtimestamp(s.created).strftime("%H:%M:%S")})
    return pd.DataFrame(rows, columns=PS_COLUMNS).astype({"restarts": "int64"})


def compose_stats_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """`docker compose stats`: memory, limit, CPU seconds and pids of each running service's cgroup."""
    out = []
    for r in rows:
        limit = r.get("memory_limit")
        out.append({"service": r["service"], "name": r["name"], "mem_usage": r["memory"], "mem_limit": limit,
                    "mem_percent": None if not limit else round(100 * r["memory"] / limit, 2),
                    "mem_mib": round(r["memory"] / MiB, 2), "cpu_s": round(r["cpu_s"], 3), "pids": r["pids"]})
    return pd.DataFrame(out, columns=STATS_COLUMNS)


def projects_frame(projects: Sequence[Any]) -> pd.DataFrame:
    """`docker compose ls`: each project of this kernel, its services' states and its networks."""
    rows = []
    for p in projects:
        states: dict[str, int] = {}
        for s in p.ps(all=True):
            word = s.status.split(" ")[0]
            states[word] = states.get(word, 0) + 1
        rows.append({"name": p.name, "services": len(p.file.services),
                     "status": ", ".join(f"{k}({v})" for k, v in sorted(states.items())),
                     "networks": ", ".join(p.networks)})
    return pd.DataFrame(rows, columns=["name", "services", "status", "networks"])


def config_frame(cf: Any) -> pd.DataFrame:
    """The services of a validated compose file, in start order: image, command, dependencies, ports,
    networks, limits."""
    rows = []
    for level, names in enumerate(cf.levels()):
        for n in names:
            s = cf.services[n]
            rows.append({
                "service": n, "start_level": level, "container_name": cf.container_name(n),
                "image": cf.image_of(n) if (s.image or s.build) else "host",
                "command": " ".join((*(s.entrypoint or ()), *(s.command or ()))),
                "depends_on": ", ".join(f"{d.service} ({d.condition})" for d in s.depends_on),
                "ports": ", ".join(str(p) for p in s.ports),
                "networks": ", ".join(cf.networks[k].name for k in s.networks),
                "restart": s.restart.policy + (f":{s.restart.max_retries}" if s.restart.max_retries else ""),
                "memory": s.memory, "cpus": s.cpus, "pids_limit": s.pids_limit,
                "healthcheck": " ".join(s.healthcheck.test) if s.healthcheck else "",
            })
    return pd.DataFrame(rows)


__all__ = ["compose_stats_frame", "config_frame", "projects_frame", "ps_frame"]
