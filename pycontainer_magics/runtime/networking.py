"""A container's place on a network (`--network bridge|NAME`, `-p`): attach the holder's network
namespace before PID 1 runs, publish ports, and take it all down when the container ends. Names resolve
through a hosts file bound at /etc/hosts; an empty resolv.conf keeps lookups from leaving the host."""

from __future__ import annotations

import os
from collections.abc import Callable

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
    hosts = net_hosts.ensure_hosts(container_id)  # attach or claim rewrites it, in place, with the members
    resolv = os.path.join(run_dir(), "resolv.conf")
    if not os.path.exists(resolv):
        os.makedirs(run_dir(), exist_ok=True)
        with open(resolv, "w") as f:
            f.write("# pycontainer_magics: no DNS server; names come from /etc/hosts\n")
    return (Mount(hosts, "/etc/hosts", read_only=True), Mount(resolv, "/etc/resolv.conf", read_only=True))


def reserve(network: str, netns_pid: int, container_id: str | None = None) -> Endpoint:
    """An endpoint on `network` attached ahead of time to a prepared holder's network namespace, for the next
    container (network.reserve: in no hosts file or listing until claimed), reserved under the id that container
    is expected to have (the pooled cgroup's name). Ours: released by release(), or by the prune of a later process
    once we are gone."""
    register_exit_cleanup()
    return net.reserve(network, netns_pid, owner_pid=os.getpid(), reservation=container_id)


def release(ep: Endpoint, keep_hosts: bool = False) -> None:
    """Give back an endpoint reserve() made that no container claimed (network.release)."""
    try:
        net.release(ep.network, ep.container_id, keep_hosts=keep_hosts)
    except (net.NetworkError, OSError):
        pass  # the network went meanwhile, and the reservation with it


def claim(spec: ContainerSpec, container_id: str, reserved: Endpoint) -> Endpoint | None:
    """Make the endpoint reserved ahead in the container's network namespace (on the spec's network) the
    container's own: named, listed, in the hosts files (network.claim: no netlink request). None when it cannot
    be (its network removed meanwhile...): then it is released, and connect() attaches one."""
    register_exit_cleanup()
    try:
        return net.claim(reserved.network, reserved.container_id, container_id, name=spec.name or container_id[:12],
                         aliases=spec.network_aliases, expose=spec.expose, owner_pid=os.getpid())
    except (net.NetworkError, OSError):
        # The hosts file of its id stays when that is this container's: its PID 1 may have it bound already.
        release(reserved, keep_hosts=reserved.container_id == container_id)
        return None


def connect(spec: ContainerSpec, container_id: str, netns_pid: int, endpoint: Endpoint | None = None,
            give_back: Callable[[str], bool] | None = None) -> tuple[Endpoint, list[Publication]]:
    """Attach the network namespace of `netns_pid` and publish the spec's ports. Raises NetworkError with
    nothing left behind. `endpoint`: the container's endpoint on the spec's network already (claim()): then
    only its other networks are attached. `give_back(network)`: when the network has no free address left, asked to
    release the addresses reserved there ahead for other runs (pool.give_back; True: some were), and tried again."""
    register_exit_cleanup()

    def attach(network: str) -> Endpoint:
        def once() -> Endpoint:
            return net.attach(network, netns_pid, container_id, name=spec.name or container_id[:12],
                              aliases=spec.network_aliases, expose=spec.expose, owner_pid=os.getpid())
        try:
            return once()
        except net.AddressExhausted:
            # Addresses reserved there ahead for other runs are given back now rather than starve this run.
            if give_back is None or not give_back(network):
                raise
            return once()

    ep = endpoint if endpoint is not None else attach(spec.network)
    pubs: list[Publication] = []
    try:
        for extra in spec.extra_networks:  # (joined as its main network is: reservations there given back too)
            attach(extra)
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
