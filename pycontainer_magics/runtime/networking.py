"""A container's place on a network (`--network bridge|NAME`, `-p`): attach the holder's network
namespace before PID 1 runs, publish ports, and take it all down when the container ends. Names resolve
through a hosts file bound at /etc/hosts; an empty resolv.conf keeps lookups from leaving the host."""

from __future__ import annotations

import os

from .. import network as net
from ..linux import proc
from ..network import Endpoint, Publication
from ..network import hosts as net_hosts
from ..paths import run_dir
from . import cleanup
from .spec import ContainerSpec, Mount


def wanted(spec: ContainerSpec) -> bool:
    return spec.network not in ("none", "host")


def file_mounts(spec: ContainerSpec, container_id: str) -> tuple[Mount, ...]:
    """The files a networked container needs bound: its hosts file and an empty resolv.conf."""
    if not wanted(spec):
        return ()
    hosts = net_hosts.write_hosts(container_id, [])  # attach rewrites it, in place, with the members
    resolv = os.path.join(run_dir(), "resolv.conf")
    if not os.path.exists(resolv):
        os.makedirs(run_dir(), exist_ok=True)
        with open(resolv, "w") as f:
            f.write("# pycontainer_magics: no DNS server; names come from /etc/hosts\n")
    return (Mount(hosts, "/etc/hosts", read_only=True), Mount(resolv, "/etc/resolv.conf", read_only=True))


def connect(spec: ContainerSpec, container_id: str, netns_pid: int) -> tuple[Endpoint, list[Publication]]:
    """Attach the network namespace of `netns_pid` and publish the spec's ports. Raises NetworkError with
    nothing left behind."""
    register_exit_cleanup()
    ep = net.attach(spec.network, netns_pid, container_id, name=spec.name or container_id[:12],
                    aliases=spec.network_aliases, expose=spec.expose, owner_pid=os.getpid())
    pubs: list[Publication] = []
    try:
        for extra in spec.extra_networks:
            net.attach(extra, netns_pid, container_id, name=spec.name or container_id[:12],
                       aliases=spec.network_aliases, expose=spec.expose, owner_pid=os.getpid())
        for host_ip, host_port, ctr_port, proto in spec.publish:
            pubs.append(net.publish(ep, host_port, ctr_port, proto, host_ip))
    except BaseException:
        disconnect(container_id)
        raise
    return ep, pubs


def disconnect(container_id: str) -> None:
    net.unpublish_all(container_id)
    net.detach_all(container_id)
    net_hosts.remove_hosts(container_id)


def register_exit_cleanup() -> None:
    cleanup.at_exit(_remove_own_networks, cleanup.NETWORKS)


def _remove_own_networks() -> None:
    """At exit: the networks this process made (the default bridge on first use, user networks) go, with
    their bridges; a killed process's are pruned by the next load."""
    me = proc.token(os.getpid())
    for n in net.list_networks():
        if n.owner == me:
            try:
                net.remove_network(n.name, force=True)
            except net.NetworkError:
                pass
