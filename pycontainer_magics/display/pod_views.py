"""Views of pods: `pod ls` as a DataFrame, and a pod's namespace table (which namespaces its containers
share) with its settings and containers (`pod inspect`)."""

from __future__ import annotations

import datetime as _dt
import html
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ..runtime.spec import POD_SHARED

POD_COLUMNS = ["name", "containers", "status", "network", "created"]


def pods_frame(pods: Sequence[Any]) -> pd.DataFrame:
    """`podman pod ls`: name, containers (the running ones' names), status, network, created."""
    rows = []
    for p in pods:
        net = p.network + (f" {p.address}" if p.address else "")
        rows.append({"name": p.name, "containers": ", ".join(m.name or m.id[:12] for m in p.running),
                     "status": p.status, "network": net,
                     "created": _dt.datetime.fromtimestamp(p.created).strftime("%H:%M:%S")})
    return pd.DataFrame(rows, columns=POD_COLUMNS)


def pod_namespace_frame(columns: list[str], rows: dict[str, dict[str, int | None]],
                        pod_kinds: Sequence[str] = POD_SHARED) -> pd.DataFrame:
    """Rows: the eight namespace kinds; columns: the infra and each container (namespace inodes), then
    `shared`: a namespace of the pod's own (the infra made it) that every container is in. The others
    (mount, pid, cgroup, time) are each container's own; the infra's column shows the host's there."""
    df = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=columns).astype("Int64")
    df.index.name = "namespace"
    members = [c for c in columns if c != "infra"]
    df["shared"] = [k in pod_kinds and all(df.at[k, c] == df.at[k, "infra"] for c in members) for k in df.index]
    return df


class PodView:
    """`%container pod inspect NAME`: `.info` (dict), `.namespaces` and `.containers` (DataFrames)."""

    def __init__(self, info: dict[str, Any], columns: list[str], rows: dict[str, dict[str, int | None]]) -> None:
        self.info = info
        self.namespaces = pod_namespace_frame(columns, rows, info.get("shared", POD_SHARED))

    @property
    def containers(self) -> pd.DataFrame:
        cs = self.info["containers"]
        return pd.DataFrame([{"name": c["name"] or "", "id": c["id"][:12], "pid": c["pid"]} for c in cs],
                            columns=["name", "id", "pid"])

    def __repr__(self) -> str:
        i = self.info
        return (f"<Pod {i['name']} {i['status']}: hostname {i['hostname']}, network {i['network']}, "
                f"{len(i['containers'])} container(s)>")

    def _repr_html_(self) -> str:
        i = self.info
        facts = [("hostname", i["hostname"]), ("network", i["network"] + (f" ({i['address']})" if i["address"]
                                                                           else "")),
                 ("published", ", ".join(i["publish"]) or "-"), ("status", i["status"]),
                 ("infra pid", i["infra_pid"]), ("shared", ", ".join(i["shared"]))]
        dl = "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                     for k, v in facts)
        return (f"<div><b>pod {html.escape(i['name'])}</b><table>{dl}</table>"
                f"{self.namespaces.to_html()}</div>")
