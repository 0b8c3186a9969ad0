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
    fig = Figure(figsize=(1.8 + 0.8 * len(df.columns), 1.4 + 0.7 * len(df.index)), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(df.to_numpy(), cmap=ListedColormap(["#f4c7c3", "#b7e1cd"]), vmin=0, vmax=1)
    ax.set_xticks(range(len(df.columns)), list(df.columns), rotation=45, ha="right")
    ax.set_yticks(range(len(df.index)), list(df.index))
    ax.set_xlabel("to")
    ax.set_ylabel("from")
    ax.set_title(f"who reaches whom ({'TCP connect' if conn.method == 'tcp' else conn.method})", fontsize=10)
    for i in range(len(df.index)):
        for j in range(len(df.columns)):
            ax.text(j, i, "yes" if df.iat[i, j] else "no", ha="center", va="center", fontsize=8)
    return fig


def plot_topology(networks: Sequence[Any], *, title: str = "") -> Any:
    """Networks as a lecturer draws them: the host on top with the ports it publishes on its loopback, each
    network's bridge (name, subnet, gateway) below it, and each member container under its bridge, joined by
    its veth pair (the host end on the bridge, eth0 with its address inside). A container on two networks
    is drawn once, under the first, with a veth to each."""
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyBboxPatch

    nets = list(networks)
    placed: dict[str, tuple[float, float]] = {}  # container -> (x, y) centre
    columns: list[tuple[Any, list[Any]]] = []
    for net in nets:
        own = [ep for ep in net.endpoints if ep.name not in placed and ep.container_id not in placed]
        for ep in own:
            placed[ep.name] = (0.0, 0.0)
        columns.append((net, own))
    width = [max(1, len(own)) * 2.2 for _, own in columns]
    total = sum(width) + 0.6 * (len(columns) - 1)
    fig = Figure(figsize=(max(7.0, 1.0 + 1.25 * total), 4.6), layout="constrained")
    ax = fig.add_subplot()
    ax.add_patch(FancyBboxPatch((0, 4.1), total, 0.8, boxstyle="round,pad=0,rounding_size=0.1",
                                facecolor="#eeeeee", edgecolor="0.4"))
    ax.text(0.15, 4.5, "host (its network namespace: the bridges are its interfaces; published ports listen on "
            "its loopback)", fontsize=8.5, va="center")
    x0 = 0.0
    bridge_y, ctr_y = 2.7, 0.6
    published: list[tuple[str, float]] = []
    for (net, own), w in zip(columns, width, strict=True):
        ax.add_patch(FancyBboxPatch((x0 + 0.1, bridge_y - 0.3), w - 0.2, 0.6, boxstyle="round,pad=0,rounding_size=0.1",
                                    facecolor="#c6dbef", edgecolor="0.3"))
        ax.text(x0 + w / 2, bridge_y + 0.1, f"network {net.name}: bridge {net.bridge}", ha="center", va="center",
                fontsize=8, weight="bold")
        ax.text(x0 + w / 2, bridge_y - 0.14, f"{net.subnet}, gateway {net.gateway}", ha="center", va="center",
                fontsize=7.5, family="monospace")
        ax.plot([x0 + w / 2, x0 + w / 2], [bridge_y + 0.3, 4.1], color="0.5", lw=1, ls=":")  # the host's own leg
        for k, ep in enumerate(own):
            cx = x0 + 1.1 + 2.2 * k
            placed[ep.name] = (cx, ctr_y)
            ax.add_patch(FancyBboxPatch((cx - 0.95, ctr_y - 0.45), 1.9, 0.9, boxstyle="round,pad=0,rounding_size=0.1",
                                        facecolor="#fdd0a2", edgecolor="0.3"))
            ax.text(cx, ctr_y + 0.15, ep.name, ha="center", va="center", fontsize=9, weight="bold")
            ax.text(cx, ctr_y - 0.18, f"{ep.ifname} {ep.address}", ha="center", va="center", fontsize=7.5,
                    family="monospace")
            published += [(p, cx) for p in ep.published]
        x0 += w + 0.6
    x0 = 0.0
    for (net, _own), w in zip(columns, width, strict=True):
        for ep in net.endpoints:  # every member, also one placed under another network: a veth to this bridge
            cx, cy = placed.get(ep.name, (x0 + w / 2, ctr_y))
            bx = min(max(cx, x0 + 0.3), x0 + w - 0.3)
            ax.plot([cx, bx], [cy + 0.45, bridge_y - 0.3], color="C1", lw=2, solid_capstyle="round")
            ax.text((cx + bx) / 2 + 0.05, (cy + 0.45 + bridge_y - 0.3) / 2, f"veth {ep.host_veth}", fontsize=6.5,
                    color="0.3", rotation=90, va="center", ha="left")
        x0 += w + 0.6
    for pub, cx in published:
        ax.annotate(pub, xy=(cx, ctr_y + 0.45), xytext=(cx, 4.1), fontsize=7, color="C3", ha="center", va="top",
                    arrowprops={"arrowstyle": "-|>", "color": "C3", "lw": 1.2, "connectionstyle": "arc3,rad=0.25"})
    ax.set_xlim(-0.2, total + 0.2)
    ax.set_ylim(-0.1, 5.1)
    ax.axis("off")
    ax.set_title(title or ("containers, veth pairs and bridges" + ("; red: a port published on the host's loopback"
                                                                    if published else "")), fontsize=10)
    return fig
