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


_STATE_COLOURS = {"healthy": "#8fd18f", "running": "#b9e3b9", "starting": "#f6d776", "completed": "#c6dbef",
                  "failed": "#e8746a", "created": "#e0e0e0"}
_CONDITION = {"service_started": "started", "service_healthy": "healthy",
              "service_completed_successfully": "completed"}


def _state(status: Any) -> str:
    """A ServiceStatus as one of the colour keys above."""
    if status is None:
        return "created"
    text = str(status.status)
    if status.health == "unhealthy" or (text.startswith("exited") and status.exit_code not in (0, None)):
        return "failed"
    if text.startswith("exited"):
        return "completed"
    if status.health == "starting":
        return "starting"
    if status.health == "healthy":
        return "healthy"
    return "running" if text.startswith("running") else "created"


def plot_compose(cf: Any, statuses: Sequence[Any] = ()) -> Any:
    """The project's services as a dependency graph, in start order (left to right, as `up` starts them):
    an arrow from each dependency to its dependent, labelled with what it waits for (started, healthy,
    completed); each box coloured by the service's state in `statuses` (`Project.ps(all=True)`), with its
    status and health written in it."""
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyBboxPatch, Patch

    levels = cf.levels()
    by_service = {st.service: st for st in statuses}
    rows = max(len(level) for level in levels)
    fig = Figure(figsize=(max(7.0, 1.2 + 2.6 * len(levels)), 1.4 + 1.1 * rows), layout="constrained")
    ax = fig.add_subplot()
    pos: dict[str, tuple[float, float]] = {}
    for level, names in enumerate(levels):
        for k, name in enumerate(names):
            pos[name] = (level * 2.6, (len(names) - 1) / 2 - k)  # each column centred on y = 0
    w, h = 1.7, 0.62
    for name, (x, y) in pos.items():
        st = by_service.get(name)
        state = _state(st)
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                    facecolor=_STATE_COLOURS[state], edgecolor="0.3"))
        svc = cf.services[name]
        detail = "" if st is None else st.status
        if svc.healthcheck is not None and st is not None and st.health and st.health not in detail:
            detail += f" ({st.health})"
        ax.text(x, y + 0.1, name, ha="center", va="center", fontsize=10, weight="bold")
        ax.text(x, y - 0.14, detail or "not started", ha="center", va="center", fontsize=8)
    for name, svc in cf.services.items():
        for d in svc.depends_on:
            if d.service not in pos:
                continue
            (x0, y0), (x1, y1) = pos[d.service], pos[name]
            ax.annotate("", xy=(x1 - w / 2, y1), xytext=(x0 + w / 2, y0),
                        arrowprops={"arrowstyle": "-|>", "color": "0.25", "shrinkA": 2, "shrinkB": 2})
            ax.text((x0 + x1) / 2, (y0 + y1) / 2 + 0.12, _CONDITION.get(d.condition, d.condition), ha="center",
                    va="bottom", fontsize=8, color="0.25", style="italic")
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - w / 2 - 0.2, max(xs) + w / 2 + 0.2)
    ax.set_ylim(min(ys) - h / 2 - 0.25, max(ys) + h / 2 + 0.25)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(f"compose project {cf.project}\nstarted left to right; arrow: dependency → dependent, "
                 "labelled with what it waits for", fontsize=9)
    used = sorted({_state(by_service.get(n)) for n in pos}, key=list(_STATE_COLOURS).index)
    fig.legend(handles=[Patch(facecolor=_STATE_COLOURS[k], edgecolor="0.3", label=k) for k in used],
               loc="outside lower center", ncols=len(used), fontsize=8, frameon=False)
    return fig


__all__ = ["compose_stats_frame", "config_frame", "plot_compose", "projects_frame", "ps_frame"]
