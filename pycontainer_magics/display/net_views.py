"""DataFrames and a picture of the network layer: networks, endpoints, interfaces, addresses, routes,
neighbours, and the connectivity matrix."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from typing import Any

import pandas as pd


def records_frame(records: Sequence[Any], columns: list[str] | None = None) -> pd.DataFrame:
    """Any list of dataclass records as a DataFrame (columns in field order, or `columns`)."""
    rows = [asdict(r) if is_dataclass(r) and not isinstance(r, type) else dict(r) for r in records]
    df = pd.DataFrame(rows)
    if columns is not None:
        df = df.reindex(columns=columns)
    return df


def networks_frame(networks: Sequence[Any]) -> pd.DataFrame:
    """`docker network ls`: name, subnet, gateway, bridge, names resolve, containers."""
    rows = [{"name": n.name, "subnet": str(n.subnet), "gateway": str(n.gateway), "bridge": n.bridge,
             "names": n.dns, "containers": len(n.endpoints)} for n in networks]
    return pd.DataFrame(rows, columns=["name", "subnet", "gateway", "bridge", "names", "containers"])


def endpoints_frame(network: Any) -> pd.DataFrame:
    """`docker network inspect`'s containers: name, container id, address, interface, host veth."""
    rows = [{"name": e.name, "container": e.container_id[:12], "address": f"{e.address}/{e.prefixlen}",
             "ifname": e.ifname, "host_veth": e.host_veth, "aliases": ",".join(e.aliases),
             "exposed": ",".join(e.exposed), "published": ",".join(str(p) for p in e.published)}
            for e in network.endpoints]
    return pd.DataFrame(rows, columns=["name", "container", "address", "ifname", "host_veth", "aliases", "exposed",
                                       "published"])


def matrix_frame(conn: Any) -> pd.DataFrame:
    """Who reaches whom: rows are sources, columns targets."""
    return pd.DataFrame(conn.reachable).T.reindex(index=list(conn.names), columns=list(conn.names))


def plot_matrix(conn: Any) -> Any:
    """The connectivity matrix as a picture (green: reached)."""
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    df = matrix_frame(conn).fillna(False).astype(int)
    fig = Figure(figsize=(1.2 + 0.6 * len(df.columns), 1.0 + 0.6 * len(df.index)), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(df.to_numpy(), cmap=ListedColormap(["#f4c7c3", "#b7e1cd"]), vmin=0, vmax=1)
    ax.set_xticks(range(len(df.columns)), list(df.columns), rotation=45, ha="right")
    ax.set_yticks(range(len(df.index)), list(df.index))
    ax.set_xlabel("to")
    ax.set_ylabel("from")
    ax.set_title(f"reachability ({conn.method})")
    for i in range(len(df.index)):
        for j in range(len(df.columns)):
            ax.text(j, i, "yes" if df.iat[i, j] else "no", ha="center", va="center", fontsize=8)
    return fig
