"""Kubernetes Services in a play: a name on the play's network that reaches the ready pods it selects, with
its ports mapped (`port` -> `targetPort`, a number or a container port's name), as kube-proxy does.

A Service (type ClusterIP, the default) gets an address of its own: a small network namespace attached to
the play's network under the Service's name (so every pod's hosts file has `ADDRESS NAME`), in which a
listener per port accepts; each connection goes to the next ready endpoint, round robin — the address of a
selected pod whose containers are all ready, at the port `targetPort` names in that pod — and is spliced
there by this process (network.Forwarder). With no ready endpoint the connection is reset, as a cluster
refuses one. A headless Service (`clusterIP: None`) has no address and no port mapping: its name goes to
every pod it selects (the hosts files list them all), as cluster DNS answers with the pods' addresses.

Inside a pod, its own host name resolves to itself first (its hosts file's first line), as the kubelet's
/etc/hosts has it; from the other pods a Service's name wins over a pod of the same name (the Services join
the network first).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import KubeError

# (container port name or number) -> [(pod address, port)] of the ready pods it selects
Endpoints = Callable[[int | str], list[tuple[str, int]]]


@dataclass(frozen=True)
class ServicePort:
    port: int
    target: int | str  # a number, or the name of a container port of the selected pods
    name: str | None = None


@dataclass
class ServicePlan:
    name: str
    where: str  # service/NAME (messages)
    selector: dict[str, str]
    ports: list[ServicePort]
    headless: bool = False
    pods: list[str] = field(default_factory=list)  # the play's pods it selects (by name here)


def plan(doc: dict[str, Any], notes: list[str]) -> ServicePlan:
    """Read a Service document; bad input raises KubeError naming the field."""
    name = str(doc["metadata"]["name"])
    where = f"service/{name}"
    spec = doc.get("spec") or {}
    typ = spec.get("type") or "ClusterIP"
    if typ == "ExternalName":
        raise KubeError(f"{where}: spec.type: ExternalName is not played here (ClusterIP and headless Services are)")
    if typ in ("NodePort", "LoadBalancer"):
        notes.append(f"{where}: type {typ}: played as ClusterIP (publish with a container's hostPort here)")
    if spec.get("sessionAffinity") not in (None, "None"):
        notes.append(f"{where}: sessionAffinity {spec['sessionAffinity']}: connections go round robin here")
    ports = []
    for i, p in enumerate(spec.get("ports") or []):
        at = f"{where}: spec.ports[{i}]"
        proto = str(p.get("protocol") or "TCP")
        if proto != "TCP":
            raise KubeError(f"{at}.protocol: {proto}: only TCP Services are played here")
        port = p.get("port")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise KubeError(f"{at}.port: {port!r}: a port number, 1-65535")
        target = p.get("targetPort", port)
        if isinstance(target, str) and target.isdigit():
            target = int(target)
        if isinstance(target, int) and not 0 < target < 65536 or not isinstance(target, int | str) \
                or isinstance(target, bool):
            raise KubeError(f"{at}.targetPort: {target!r}: a port number (1-65535) or a container port's name")
        ports.append(ServicePort(port, target, p.get("name")))
    headless = spec.get("clusterIP") == "None"
    if not ports and not headless:
        raise KubeError(f"{where}: spec.ports: missing: a Service with an address needs at least one port")
    return ServicePlan(name, where, {str(k): str(v) for k, v in (spec.get("selector") or {}).items()}, ports,
                       headless)


def check_targets(sp: ServicePlan, named_ports: dict[str, dict[str, int]]) -> None:
    """Each named targetPort must be a port name of at least one pod the Service selects (pod -> its names)."""
    for i, p in enumerate(sp.ports):
        if isinstance(p.target, str) and sp.pods and not any(p.target in named_ports.get(n, {}) for n in sp.pods):
            raise KubeError(f"{sp.where}: spec.ports[{i}].targetPort: {p.target!r} is not the name of a container port "
                            f"of the pods it selects ({', '.join(sp.pods)})")


def _short(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


class ServiceRun:
    """A played Service: its address on the play's network and a forwarder per port."""

    def __init__(self, sp: ServicePlan, play_name: str, endpoints: Endpoints) -> None:
        self.plan = sp
        self.endpoints = endpoints
        tag = _short(f"{play_name}/{sp.name}/{os.getpid()}")
        self.id = f"kubesvc-{tag}"  # its endpoint's container id on the network, and its netns' name
        self.address: str | None = None
        self.network: str | None = None
        self.forwarders: list[Any] = []
        self._turn: dict[int, itertools.count[int]] = {}
        self._lock = threading.Lock()
        self.connections = 0  # forwarded so far

    def start(self, network: str) -> None:
        """Its namespace, its address on `network` under its name, a listener per port. On error the caller
        stops it (stop() removes whatever was made)."""
        from .. import network as net

        net.create_netns(self.id, owner_pid=os.getpid())
        # Named NAME.svc with NAME as an alias: a pod of the play may be named NAME too (its own hosts file then
        # resolves NAME to itself first, as in a cluster; the others' to the Service, which joined first).
        ep = net.attach(network, self.id, self.id, name=f"{self.plan.name}.svc", aliases=(self.plan.name,),
                        owner_pid=os.getpid())
        self.network, self.address = network, ep.address
        path = net.netns_path(self.id)
        for sport in self.plan.ports:
            lsock = net.socket_in(path, socket.AF_INET, socket.SOCK_STREAM)
            try:
                lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                lsock.bind(("0.0.0.0", sport.port))
                lsock.listen(128)
            except BaseException:
                lsock.close()
                raise
            self.forwarders.append(net.Forwarder(lsock, functools.partial(self._next, sport),
                                                 f"svc-{self.plan.name}-{sport.port}").start())

    def _next(self, sport: ServicePort) -> tuple[str, int] | None:
        """The next ready endpoint for this port, round robin."""
        eps = self.endpoints(sport.target)
        if not eps:
            return None
        with self._lock:
            turn = next(self._turn.setdefault(sport.port, itertools.count()))
            self.connections += 1
        return eps[turn % len(eps)]

    def stop(self) -> None:
        from .. import network as net

        for f in self.forwarders:
            f.stop()
        self.forwarders.clear()
        with contextlib.suppress(Exception):
            net.detach_all(self.id)
        with contextlib.suppress(Exception):
            net.delete_netns(self.id, missing_ok=True)
        self.address = None


__all__ = ["ServicePlan", "ServicePort", "ServiceRun", "check_targets", "plan"]
