"""Networks (a bridge of our own + IPAM + members), persisted as JSON, and attaching a network
namespace to one (a veth pair: host end on the bridge, the other end `ethN` in the namespace).

    net = create_network("labnet", "172.22.0.0/16")
    ep = attach("labnet", pid, container_id="c1", name="web")    # -> Endpoint (eth0, 172.22.0.2)
    detach("labnet", "c1")
    remove_network("labnet")

The default network `bridge` (DEFAULT_NETWORK) is created on demand by `default_network()`; it gives
no name resolution (Docker's rule). Records: `<state dir>/networks/NAME.json`, and NAME.def beside
it (see _save). Every mutation holds `state.locked()` (a flock), so two kernels never hand out the
same address.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import ipaddress
import json
import os
import shlex
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..linux import files, proc
from ..paths import state_dir
from . import hosts, isolation, links, state
from .errors import (
    AddressExhausted,
    AddressInUse,
    EndpointExists,
    EndpointNotFound,
    InvalidArgument,
    NetworkError,
    NetworkExists,
    NetworkInUse,
    NetworkNotFound,
    SubnetOverlap,
)
from .netns import NAME_RE, NsRef, iproute, netns_path, open_netns

DEFAULT_NETWORK = "bridge"
RESERVED = {"host", "none", "default", "container"}
BRIDGE_PREFIX = "pcm-"
VETH_PREFIX = "pcv"
DEFAULT_SUBNETS = ["172.30.0.0/16", "172.31.0.0/16", "10.230.0.0/16"]
AUTO_SUBNETS = [f"172.{n}.0.0/16" for n in range(18, 30)] + [f"10.231.{n}.0/24" for n in range(256)]


@dataclass(frozen=True)
class Endpoint:
    """A container's attachment to a network."""

    network: str
    container_id: str
    name: str
    address: str  # IPv4 address, no prefix
    prefixlen: int
    gateway: str
    ifname: str  # inside the container: eth0, eth1, ...
    host_veth: str  # the host end (on the bridge)
    netns: str  # nsfs path used at attach time
    owner: str  # owner token (linux.proc.token) of the process responsible for it
    aliases: tuple[str, ...] = ()
    exposed: tuple[str, ...] = ()  # EXPOSE-style metadata: "80/tcp"
    published: tuple[str, ...] = ()  # "127.0.0.1:8080->80/tcp" (kept up to date by ports.py)
    default_route: bool = False
    created: float = 0.0

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefixlen}"

    @property
    def hosts_file(self) -> str:
        return hosts.hosts_path(self.container_id)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("aliases", "exposed", "published"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Endpoint:
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        for k in ("aliases", "exposed", "published"):
            d[k] = tuple(d.get(k, ()))
        return cls(**d)


@dataclass(frozen=True)
class Network:
    name: str
    subnet: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    bridge: str
    driver: str = "bridge"
    internal: bool = False  # no default route in the containers
    nat: bool = False  # outbound NAT (not implemented: refused at creation)
    dns: bool = True  # name resolution through the generated hosts files
    owner: str = ""
    created: float = 0.0
    endpoints: tuple[Endpoint, ...] = field(default=())
    # Endpoints attached ahead of time for a container not started yet (reserve/claim): their address is taken,
    # but they are nobody's yet — in no hosts file, no listing, no container's name.
    reserved: tuple[Endpoint, ...] = field(default=())

    def endpoint(self, container_id: str) -> Endpoint | None:
        for ep in self.endpoints:
            if ep.container_id == container_id:
                return ep
        return None

    @property
    def containers(self) -> dict[str, str]:
        """container name -> address."""
        return {ep.name: ep.address for ep in self.endpoints}

    def to_json(self) -> dict[str, Any]:
        return {**self.definition_json(), "endpoints": [e.to_json() for e in self.endpoints],
                "reserved": [e.to_json() for e in self.reserved]}

    def definition_json(self) -> dict[str, Any]:
        """The network without its members (its NAME.def, see _save)."""
        return {
            "name": self.name, "subnet": str(self.subnet), "gateway": str(self.gateway), "bridge": self.bridge,
            "driver": self.driver, "internal": self.internal, "nat": self.nat, "dns": self.dns,
            "owner": self.owner, "created": self.created,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Network:
        return cls(
            name=d["name"], subnet=ipaddress.IPv4Network(d["subnet"]), gateway=ipaddress.IPv4Address(d["gateway"]),
            bridge=d["bridge"], driver=d.get("driver", "bridge"), internal=bool(d.get("internal")),
            nat=bool(d.get("nat")), dns=bool(d.get("dns", True)), owner=d.get("owner", ""),
            created=float(d.get("created", 0.0)),
            endpoints=tuple(Endpoint.from_json(e) for e in d.get("endpoints", [])),
            reserved=tuple(Endpoint.from_json(e) for e in d.get("reserved", [])),
        )


# --- records ---------------------------------------------------------------------------------------


# A network's record, NAME.json (what it is, its endpoints and reservations), is rewritten by every attach, claim and
# detach: swapped in (files.swap_in), without the write-out ext4 starts for a file renamed over another (0.25-0.5 ms
# of a container's claim of its endpoint). A machine crash before the next writeback may leave it empty: then the
# network is read from NAME.def, the same record without members written out when the network was made (its
# endpoints died with the machine). The record's format is the one every version of the package reads and writes.
def _path(name: str) -> str:
    return os.path.join(state.networks_dir(), f"{name}.json")


def _def_path(name: str) -> str:
    return os.path.join(state.networks_dir(), f"{name}.def")


# The records as last read or written here, by path: (their bytes, the Network). Every change reads its network again
# under the lock (another process may have changed it): the same bytes need no parse (0.1-0.2 ms of a claim).
_seen: dict[str, tuple[bytes, Network]] = {}
_defs: dict[str, bytes] = {}  # by path: each NAME.def as written or read here last (not read again at every change)


def check_network_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidArgument(f"invalid network name {name!r}: use letters, digits, '_', '.', '-' (max 64)")
    return name


def _load(name: str) -> Network:
    check_network_name(name)
    path = _path(name)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise NetworkNotFound(f"network {name!r} not found", None, path) from None
    hit = _seen.get(path)
    if hit is not None and hit[0] == data:
        return hit[1]
    try:
        net = Network.from_json(json.loads(data))
    except (ValueError, KeyError, TypeError) as e:
        made = _from_def(name)
        if made is None:
            raise NetworkError(f"network {name!r}: corrupt record {path}: {e}", None, path) from None
        net = made
    _seen[path] = (data, net)
    return net


def _from_def(name: str) -> Network | None:
    """The network as it was made, with no members (its record left empty by a crash), or None."""
    try:
        with open(_def_path(name), "rb") as f:
            return Network.from_json(json.loads(f.read()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _save(net: Network) -> None:
    """Write the network's record, swapped in; and its NAME.def, written out, when that is not this network's (made
    now; or by a version of the package that keeps none)."""
    path = _path(net.name)
    data = (json.dumps(net.to_json(), sort_keys=True) + "\n").encode()  # (no indent: json's C encoder, 0.1 ms less)
    definition, dpath = (json.dumps(net.definition_json(), sort_keys=True) + "\n").encode(), _def_path(net.name)
    if _defs.get(dpath) != definition:  # (not known to be on the disk: read it)
        try:
            with open(dpath, "rb") as f:
                _defs[dpath] = f.read()
        except FileNotFoundError:
            _defs.pop(dpath, None)
    same = _defs.get(dpath) == definition
    if not same:
        os.makedirs(state.networks_dir(), mode=0o755, exist_ok=True)
        files.atomic_write(dpath, definition, mode=0o600, durable=True)
        _defs[dpath] = definition
    files.swap_in(path, data, mode=0o600)
    if not same:  # (a new record's name on the disk too: NAME.def alone would be pruned as a removed network's)
        files.sync_dir(state.networks_dir())
    _seen[path] = (data, net)


def _forget(name: str) -> None:
    """Remove the network's files: its record first (then it is gone for every reader), the rest after."""
    for path in (_path(name), _def_path(name)):
        _seen.pop(path, None)
        _defs.pop(path, None)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def get_network(name: str) -> Network:
    """The network's record (its endpoints included); NetworkNotFound."""
    return _load(name)


inspect_network = get_network


def list_networks() -> list[Network]:
    return _list_networks()


def _list_networks(saved: Network | None = None) -> list[Network]:
    """Every network's record, in the order of their files' names; `saved`: one just written, taken as it is (not
    read back)."""
    try:
        files = sorted(os.listdir(state.networks_dir()))
    except FileNotFoundError:
        files = []
    if saved is not None and f"{saved.name}.json" not in files:
        files = sorted([*files, f"{saved.name}.json"])
    out = []
    for f in files:
        if f.endswith(".json") and not f.startswith("."):
            if saved is not None and f[:-5] == saved.name:
                out.append(saved)
                continue
            with contextlib.suppress(NetworkError):
                out.append(_load(f[:-5]))
    return out


def _h(text: str, n: int) -> str:
    # The state dir is part of the hash: two state dirs (a test run next to a real one) never share a link.
    return hashlib.sha1(f"{state_dir()}\0{text}".encode()).hexdigest()[:n]


TAG_PREFIX = "pycontainer_magics:"
IFALIAS_MAX = 255  # the kernel's IFALIASZ less the terminating zero


def link_tag() -> str:
    """Which state dir owns a bridge or host veth: the start of its ifalias (prune looks at it)."""
    return TAG_PREFIX + _h("", 12)


def link_alias() -> str:
    """The ifalias set on our links: the tag, then the state dir's path when it fits, so that the links of a
    state dir that was removed with its networks still up can be recognised and pruned (`orphaned_links`)."""
    path = state_dir()
    alias = f"{link_tag()} {path}"
    return alias if os.path.isabs(path) and len(alias.encode()) <= IFALIAS_MAX else link_tag()


def is_ours(alias: str | None, tag: str) -> bool:
    return alias == tag or (alias or "").startswith(tag + " ")


def alias_state_dir(alias: str | None) -> str | None:
    """The state dir an ifalias names, if it is one of ours and its tag is that path's hash."""
    if not alias or not alias.startswith(TAG_PREFIX) or " " not in alias:
        return None
    tag, path = alias.split(" ", 1)
    if tag != TAG_PREFIX + hashlib.sha1(f"{path}\0".encode()).hexdigest()[:12]:
        return None
    return path


def orphaned_links() -> list[tuple[str, str]]:
    """(name, kind) of bridges and host veths with our prefixes whose state dir no longer exists: nothing
    can reach their records any more (a test's throw-away state dir, an `rm -rf` of a store)."""
    out = []
    with iproute() as ipr:
        for link in ipr.get_links():
            n = link.get("ifname") or ""
            if not (n.startswith(BRIDGE_PREFIX) or n.startswith(VETH_PREFIX)):
                continue
            path = alias_state_dir(link.get("IFLA_IFALIAS"))
            if path is not None and not os.path.isdir(path):
                out.append((n, str(link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") or "")))
    return out


def bridge_name(network: str) -> str:
    return BRIDGE_PREFIX + _h(network, 10)


def veth_name(network: str, container_id: str) -> str:
    return VETH_PREFIX + _h(f"{network}/{container_id}", 11)


# --- subnets ---------------------------------------------------------------------------------------


def host_routes(exclude_ifnames: Iterable[str] = ()) -> list[ipaddress.IPv4Network]:
    """Destinations of the host's IPv4 routes (every table, default routes left out)."""
    skip = set(exclude_ifnames)
    out = []
    with iproute() as ipr:
        names = {link["index"]: link.get("ifname") for link in ipr.get_links()}
        for r in ipr.get_routes(family=socket.AF_INET):
            if r["dst_len"] == 0 or names.get(r.get("RTA_OIF")) in skip:
                continue
            dst = r.get("RTA_DST")
            if dst:
                with contextlib.suppress(ValueError):
                    out.append(ipaddress.IPv4Network(f"{dst}/{r['dst_len']}", strict=False))
    return out


def parse_subnet(subnet: str | ipaddress.IPv4Network) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(subnet, strict=True)
    except ValueError as e:
        raise InvalidArgument(f"invalid subnet {str(subnet)!r}: {e}") from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise InvalidArgument(f"invalid subnet {str(subnet)!r}: only IPv4 subnets are supported")
    if net.prefixlen > 29 or net.prefixlen < 8:
        raise InvalidArgument(f"invalid subnet {str(subnet)!r}: the prefix length must be between /8 and /29")
    if net.is_loopback or net.is_multicast or net.is_link_local or net.is_reserved or net.is_unspecified:
        raise InvalidArgument(f"invalid subnet {str(subnet)!r}: a special-purpose range")
    return net


def _conflict(subnet: ipaddress.IPv4Network, networks: list[Network]) -> str | None:
    for n in networks:
        if n.subnet.overlaps(subnet):
            return f"subnet {subnet} overlaps network {n.name!r} ({n.subnet})"
    for r in host_routes(exclude_ifnames=[n.bridge for n in networks]):
        if r.overlaps(subnet):
            return f"subnet {subnet} overlaps the host route to {r}"
    return None


# --- networks --------------------------------------------------------------------------------------


def create_network(name: str, subnet: str | ipaddress.IPv4Network | None = None, gateway: str | None = None,
                   internal: bool = False, nat: bool = False, dns: bool = True,
                   owner_pid: int | None = None) -> Network:
    """Create a user-defined network (record + bridge). Without `subnet`, a free one is picked.
    Errors: NetworkExists, SubnetOverlap (other networks of ours, or the host's routes),
    InvalidArgument, NotSupported (nat=True without iptables). Outbound NAT (a MASQUERADE rule, nat.py)
    only with nat=True: the default is host-only."""
    check_network_name(name)
    if name in RESERVED:
        raise InvalidArgument(f"network name {name!r} is reserved")
    net_sub = parse_subnet(subnet) if subnet is not None else None
    with state.locked():
        if os.path.exists(_path(name)):
            raise NetworkExists(f"network {name!r} already exists", None, _path(name))
        others = list_networks()
        if net_sub is not None:
            why = _conflict(net_sub, others)
            if why:
                raise SubnetOverlap(why)
        else:
            # The default bridge prefers its own ranges; several state dirs on one host (tests, a daemon next to
            # a notebook) may have taken them, and then it takes any free one.
            candidates = DEFAULT_SUBNETS + AUTO_SUBNETS if name == DEFAULT_NETWORK else AUTO_SUBNETS
            for c in candidates:
                if _conflict(ipaddress.IPv4Network(c), others) is None:
                    net_sub = ipaddress.IPv4Network(c)
                    break
            else:
                raise AddressExhausted("no free subnet left for a new network: pass one explicitly")
        if gateway is None:
            gw = next(net_sub.hosts())
        else:
            try:
                gw = ipaddress.IPv4Address(gateway)
            except ValueError as e:
                raise InvalidArgument(f"invalid gateway {gateway!r}: {e}") from None
            if gw not in net_sub or gw in (net_sub.network_address, net_sub.broadcast_address):
                raise InvalidArgument(f"invalid gateway {gateway}: not a host address of {net_sub}")
        net = Network(name=name, subnet=net_sub, gateway=gw, bridge=bridge_name(name), internal=internal,
                      nat=nat, dns=dns and name != DEFAULT_NETWORK, owner=proc.token(owner_pid),
                      created=time.time())
        _ensure_bridge(net)
        try:
            isolation.add(net.bridge, BRIDGE_PREFIX, net.name)
            if nat:
                from . import nat as natrules
                natrules.add(net.subnet, net.bridge, net.name)
            _save(net)
        except BaseException:
            if nat:
                from . import nat as natrules
                natrules.remove(net.subnet, net.bridge, net.name)
            isolation.remove(net.bridge, BRIDGE_PREFIX, net.name)
            links.delete_link(net.bridge)
            raise
        return net


def default_network(owner_pid: int | None = None) -> Network:
    """The default network `bridge`, created on first use (no name resolution, as in Docker)."""
    with state.locked():
        try:
            net = _load(DEFAULT_NETWORK)
        except NetworkNotFound:
            return create_network(DEFAULT_NETWORK, owner_pid=owner_pid)
        _check_bridge(net)
        return net


def remove_network(name: str, force: bool = False) -> None:
    """Remove the network: its bridge and record. NetworkInUse while containers are attached, unless
    `force` (then they are detached first)."""
    with state.locked():
        net = _load(name)
        if net.endpoints:
            if not force:
                names = ", ".join(ep.name for ep in net.endpoints)
                raise NetworkInUse(f"network {name!r} has {len(net.endpoints)} attached container(s): {names}")
            for ep in net.endpoints:
                detach(name, ep.container_id, missing_ok=True)
        for ep in net.reserved:  # prepared for a container not started: it attaches afresh, or fails to
            links.delete_link(ep.host_veth)
        if net.nat:
            from . import nat as natrules
            natrules.remove(net.subnet, net.bridge, net.name)
        isolation.remove(net.bridge, BRIDGE_PREFIX, net.name)
        links.delete_link(net.bridge)
        _forget(name)


# --- endpoints -------------------------------------------------------------------------------------


def _ensure_bridge(net: Network) -> None:
    links.ensure_bridge(net.bridge, f"{net.gateway}/{net.subnet.prefixlen}")
    with iproute() as ipr:
        idx = links.link_index(ipr, net.bridge)
        if idx is not None:
            ipr.link("set", index=idx, ifalias=link_alias())


def _check_bridge(net: Network) -> None:
    """_ensure_bridge in one netlink request when the bridge is there, up and tagged as ours (the usual case:
    every container on the default network resolves it; its address was checked when it was made)."""
    with iproute() as ipr:
        try:
            (link,) = ipr.link("get", ifname=net.bridge)
        except Exception:  # noqa: BLE001 - NetlinkError ENODEV: not there (anymore)
            link = None
    if link is None or not link["flags"] & 1 or link.get("IFLA_IFALIAS") != link_alias():
        _ensure_bridge(net)


def _bridge_index(ipr: Any, net: Network) -> int:
    """The index of the network's bridge, made (or repaired: down, address missing) when needed. One netlink
    request when it is there and up (the usual case); its address was checked when it was made or repaired."""
    try:
        (link,) = ipr.link("get", ifname=net.bridge)
    except Exception:  # noqa: BLE001 - NetlinkError ENODEV: not there (anymore)
        link = None
    if link is None or not link["flags"] & 1:  # IFF_UP
        _ensure_bridge(net)
        (link,) = ipr.link("get", ifname=net.bridge)
    return int(link["index"])


def _resolve(network: str | Network) -> Network:
    name = network.name if isinstance(network, Network) else network
    if name == DEFAULT_NETWORK:
        return default_network()
    return _load(name)


def _allocate(net: Network, wanted: str | None) -> ipaddress.IPv4Address:
    used = {net.gateway} | {ipaddress.IPv4Address(ep.address) for ep in (*net.endpoints, *net.reserved)}
    if wanted is not None:
        try:
            ip = ipaddress.IPv4Address(wanted)
        except ValueError as e:
            raise InvalidArgument(f"invalid address {wanted!r}: {e}") from None
        if ip not in net.subnet or ip in (net.subnet.network_address, net.subnet.broadcast_address):
            raise InvalidArgument(f"invalid address {wanted}: not a host address of {net.name} ({net.subnet})")
        if ip in used:
            raise AddressInUse(f"address {ip} is already in use on network {net.name!r}")
        return ip
    for ip in net.subnet.hosts():
        if ip not in used:
            return ip
    raise AddressExhausted(f"network {net.name!r} ({net.subnet}) has no free address left")


def _has_default_route(ipr: Any) -> bool:
    return any(r["dst_len"] == 0 for r in ipr.get_routes(family=socket.AF_INET, table=254))


def _refresh_hosts(container_ids: Iterable[str], saved: Network) -> None:
    """Rewrite the hosts files of these containers (or remove those on no network now); `saved`: the network record
    just written, whose change is why (taken as it is: reading it back was a tenth of a millisecond of a claim)."""
    nets = _list_networks(saved)
    for cid in set(container_ids):
        if any(n.endpoint(cid) for n in nets):
            hosts.write_hosts(cid, nets)
        else:
            hosts.remove_hosts(cid)


def attach(network: str | Network, ns: NsRef, container_id: str, name: str | None = None,
           aliases: Iterable[str] = (), address: str | None = None, ifname: str | None = None,
           expose: Iterable[str] = (), owner_pid: int | None = None) -> Endpoint:
    """Connect namespace `ns` (our netns name, a pid, or an nsfs path — a container's netns owned by
    its user namespace works) to `network`: a veth pair, the host end on the network's bridge, the
    other end `ethN` inside (N = first free), an address from the subnet (or `address`), up, and a
    default route via the gateway when the namespace has none yet (not on internal networks).
    The container's hosts file is (re)written, and those of the network's other members.
    `owner_pid` (default: this process) is who must be alive for the endpoint to survive `prune()`.
    Errors: NetworkNotFound, NamespaceError, EndpointExists, AddressInUse, InvalidArgument; on any
    error nothing is left behind."""
    cname = name or container_id
    check_network_name(cname)
    if not container_id or "/" in container_id:
        raise InvalidArgument(f"invalid container id {container_id!r}")
    alias_t = tuple(aliases)
    for a in alias_t:
        check_network_name(a)
    exposed = tuple(_check_expose(e) for e in expose)
    path = netns_path(ns)
    if path is None:
        raise InvalidArgument("attach needs a namespace of its own (a name, pid or path), not the host's")
    with state.locked():
        net = _resolve(network)
        if net.endpoint(container_id) is not None:
            raise EndpointExists(f"container {container_id!r} is already on network {net.name!r}")
        if any(ep.name == cname for ep in net.endpoints):
            raise EndpointExists(f"name {cname!r} is already in use on network {net.name!r}")
        ip = _allocate(net, address)
        fd = open_netns(path)  # NamespaceError if gone; keeps it alive while we work
        try:
            ep = _plumb(net, fd, path, container_id, cname, alias_t, ip, ifname, exposed, owner_pid)
        finally:
            os.close(fd)
        net = dataclasses.replace(net, endpoints=(*net.endpoints, ep))
        try:
            _save(net)
            _refresh_hosts((e.container_id for e in net.endpoints), net)
        except BaseException:
            links.delete_link(ep.host_veth)
            with contextlib.suppress(Exception):
                _save(dataclasses.replace(net, endpoints=net.endpoints[:-1]))
            raise
        return ep


RESERVATION_PREFIX = "prepared-"


def reserve(network: str | Network, ns: NsRef, owner_pid: int | None = None,
            reservation: str | None = None) -> Endpoint:
    """Attach namespace `ns` to `network` ahead of time, for a container that does not exist yet (the runtime's
    next container, in a namespace holder prepared for it): the veth, the address and the route are made as by
    attach(), but the endpoint is only reserved — listed in no hosts file, no `endpoints`, under no container's
    name — until claim() gives it to a container, or release() (or prune(), once `owner_pid` is gone) removes it.
    `reservation`: its id, the id the container is expected to have (then its hosts file can be bound before it
    is claimed); a fresh one by default. Returns the reservation (its container_id is the reservation's id)."""
    rid = reservation or RESERVATION_PREFIX + os.urandom(6).hex()
    if "/" in rid:
        raise InvalidArgument(f"invalid reservation id {rid!r}")
    path = netns_path(ns)
    if path is None:
        raise InvalidArgument("reserve needs a namespace of its own (a name, pid or path), not the host's")
    with state.locked():
        # Never made for a reservation (not even the default bridge): a network removed meanwhile stays removed.
        net = _load(network.name if isinstance(network, Network) else network)
        if any(ep.container_id == rid for ep in (*net.endpoints, *net.reserved)):
            raise EndpointExists(f"{rid!r} is already on network {net.name!r}")
        ip = _allocate(net, None)
        fd = open_netns(path)
        try:
            ep = _plumb(net, fd, path, rid, rid, (), ip, None, (), owner_pid)
        finally:
            os.close(fd)
        try:
            _save(dataclasses.replace(net, reserved=(*net.reserved, ep)))
        except BaseException:
            links.delete_link(ep.host_veth)
            raise
        return ep


def claim(network: str, reservation: str, container_id: str, name: str | None = None,
          aliases: Iterable[str] = (), expose: Iterable[str] = (), owner_pid: int | None = None) -> Endpoint:
    """Give a reserved endpoint to `container_id` (whose network namespace it was reserved in): from now on it is
    the container's endpoint, as if attach() had made it — named, in the hosts files, listed. Nothing of the
    kernel's changes (no netlink request). EndpointNotFound when the reservation is gone (its network was removed,
    a prune took it), EndpointExists as attach()."""
    cname = name or container_id
    check_network_name(cname)
    alias_t = tuple(aliases)
    for a in alias_t:
        check_network_name(a)
    exposed = tuple(_check_expose(e) for e in expose)
    with state.locked():
        net = _load(network)
        res = next((ep for ep in net.reserved if ep.container_id == reservation), None)
        if res is None:
            raise EndpointNotFound(f"no endpoint reserved as {reservation!r} on network {network!r}")
        if net.endpoint(container_id) is not None:
            raise EndpointExists(f"container {container_id!r} is already on network {net.name!r}")
        if any(ep.name == cname for ep in net.endpoints):
            raise EndpointExists(f"name {cname!r} is already in use on network {net.name!r}")
        ep = dataclasses.replace(res, container_id=container_id, name=cname, aliases=alias_t, exposed=exposed,
                                 owner=proc.token(owner_pid), created=time.time())
        net = dataclasses.replace(net, endpoints=(*net.endpoints, ep),
                                  reserved=tuple(r for r in net.reserved if r is not res))
        _save(net)
        if reservation != container_id:
            hosts.remove_hosts(reservation)  # one written for the id it was reserved under
        _refresh_hosts((e.container_id for e in net.endpoints), net)
        return ep


def release(network: str, reservation: str, keep_hosts: bool = False) -> None:
    """Remove a reserved endpoint that no container claimed: its veth (the peer in the namespace goes with it),
    its address, and the hosts file written for the id it was reserved under (a PID 1 prepared ahead binds it;
    `keep_hosts`: a container of that id binds it and attaches afresh). A reservation already gone is fine."""
    with state.locked():
        if not keep_hosts:
            hosts.remove_hosts(reservation)
        try:
            net = _load(network)
        except NetworkNotFound:
            return  # (its veths went with it)
        res = next((ep for ep in net.reserved if ep.container_id == reservation), None)
        if res is None:
            return
        links.delete_link(res.host_veth)
        _save(dataclasses.replace(net, reserved=tuple(r for r in net.reserved if r is not res)))


def _plumb(net: Network, fd: int, path: str, container_id: str, cname: str, aliases: tuple[str, ...],
           ip: ipaddress.IPv4Address, ifname: str | None, exposed: tuple[str, ...],
           owner_pid: int | None) -> Endpoint:
    """The kernel side of an endpoint, in as few netlink requests as it takes (each costs a pyroute2 round
    trip of a millisecond or more): the veth is made already on the bridge and up, its peer already in the
    container's namespace; then its alias, and inside: the address, up, the default route."""
    host_veth = veth_name(net.name, container_id)
    fd_path = f"/proc/{os.getpid()}/fd/{fd}"
    with iproute() as hipr, iproute(fd_path) as cipr:
        bridge = _bridge_index(hipr, net)
        inside = {link.get("ifname"): link for link in cipr.get_links()}
        inner = ifname or next(f"eth{n}" for n in range(len(inside) + 1) if f"eth{n}" not in inside)
        links.check_ifname(inner)
        if inner in inside:
            raise EndpointExists(f"interface {inner!r} already exists in namespace {path}")
        want_default = not net.internal and not _has_default_route(cipr)
        add = {"ifname": host_veth, "kind": "veth", "peer": {"ifname": inner, "net_ns_fd": fd}, "master": bridge,
               "state": "up"}
        try:
            try:
                hipr.link("add", **add)
            except Exception as e:  # noqa: BLE001 - NetlinkError
                if getattr(e, "code", None) != errno.EEXIST:
                    raise
                hipr.link("del", ifname=host_veth)  # a leftover of a killed kernel
                hipr.link("add", **add)
        except Exception as e:  # noqa: BLE001 - NetlinkError
            raise NetworkError.from_netlink(e, f"cannot create veth {host_veth} for {container_id}") from None
        try:
            hipr.link("set", ifname=host_veth, ifalias=link_alias())
            lo = inside.get("lo")
            if lo is not None and not lo["flags"] & 1:  # the holder brings it up; a namespace from elsewhere may not
                cipr.link("set", index=lo["index"], state="up")
            (link,) = cipr.link("get", ifname=inner)
            idx = link["index"]
            cipr.addr("add", index=idx, address=str(ip), prefixlen=net.subnet.prefixlen)
            cipr.link("set", index=idx, state="up")
            if want_default:
                cipr.route("add", dst="0.0.0.0/0", gateway=str(net.gateway), oif=idx)
        except BaseException as e:
            with contextlib.suppress(Exception):
                hipr.link("del", ifname=host_veth)
            if isinstance(e, NetworkError):
                raise
            doing = f"cannot configure {inner} of {container_id} on {net.name}"
            raise NetworkError.from_netlink(e, doing) from None
    return Endpoint(
        network=net.name, container_id=container_id, name=cname, address=str(ip), prefixlen=net.subnet.prefixlen,
        gateway=str(net.gateway), ifname=inner, host_veth=host_veth, netns=path,
        owner=proc.token(owner_pid), aliases=aliases, exposed=exposed, default_route=want_default,
        created=time.time(),
    )


def _check_expose(spec: str) -> str:
    port, _, proto = str(spec).partition("/")
    proto = proto or "tcp"
    if not port.isdigit() or not 0 < int(port) < 65536 or proto not in ("tcp", "udp"):
        raise InvalidArgument(f"invalid exposed port {spec!r} (PORT or PORT/tcp|udp)")
    return f"{int(port)}/{proto}"


def detach(network: str | Network, container_id: str, missing_ok: bool = False) -> Endpoint | None:
    """Disconnect: delete the host veth (its peer goes with it; a no-op when the container's netns is
    already gone), release the address, rewrite the hosts files. Returns the removed endpoint."""
    name = network.name if isinstance(network, Network) else network
    with state.locked():
        try:
            net = _load(name)
        except NetworkNotFound:
            if missing_ok:
                return None
            raise
        ep = net.endpoint(container_id)
        if ep is None:
            if missing_ok:
                return None
            raise EndpointNotFound(f"container {container_id!r} is not on network {name!r}")
        links.delete_link(ep.host_veth)
        net = dataclasses.replace(net, endpoints=tuple(e for e in net.endpoints if e.container_id != container_id))
        _save(net)
        _refresh_hosts([container_id, *(e.container_id for e in net.endpoints)], net)
        return ep


def detach_all(container_id: str) -> list[Endpoint]:
    """Detach the container from every network (what the runtime calls when it exits)."""
    out = []
    with state.locked():
        for net in list_networks():
            if net.endpoint(container_id) is not None:
                ep = detach(net.name, container_id, missing_ok=True)
                if ep is not None:
                    out.append(ep)
        hosts.remove_hosts(container_id)
    return out


def endpoints_of(container_id: str) -> list[Endpoint]:
    return [ep for net in list_networks() for ep in net.endpoints if ep.container_id == container_id]


def update_endpoint(network: str, container_id: str, **changes: Any) -> Endpoint:
    """Replace fields of an endpoint record (ports.py keeps `published` current through this)."""
    with state.locked():
        net = _load(network)
        ep = net.endpoint(container_id)
        if ep is None:
            raise EndpointNotFound(f"container {container_id!r} is not on network {network!r}")
        new = dataclasses.replace(ep, **changes)
        _save(dataclasses.replace(net, endpoints=tuple(new if e is ep else e for e in net.endpoints)))
        return new


# --- prune -----------------------------------------------------------------------------------------


def _our_host_links() -> Iterator[tuple[str, str]]:
    """(name, kind) of the host's links that carry our prefixes and our state dir's tag."""
    tag = link_tag()
    with iproute() as ipr:
        for link in ipr.get_links():
            n = link.get("ifname") or ""
            if (n.startswith(BRIDGE_PREFIX) or n.startswith(VETH_PREFIX)) and is_ours(link.get("IFLA_IFALIAS"), tag):
                yield n, str(link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") or "")


def _link_names() -> set[str]:
    """The names of the links in our network namespace. By the C library's if_nameindex, its own netlink request (sysfs
    would show the namespace it was mounted in, which may not be ours): a prune at %load_ext that finds none of ours
    needs no pyroute2, and the kernel does not load it (8 MB of its memory, which every Python cell's fork would copy
    the page tables of). Over pyroute2 when the C library cannot say."""
    try:
        return {name for _, name in socket.if_nameindex()}
    except OSError:
        with iproute() as ipr:
            return {str(link.get("ifname")) for link in ipr.get_links()}


def prune(networks: bool = True) -> list[str]:
    """Remove what owners that are gone left behind: endpoints whose owner process is dead (their veth,
    address and hosts entries), then — with `networks` — networks whose owner is dead and that have no
    endpoint left, stray bridges/veths with our prefixes and no record, orphan hosts files, and our
    named network namespaces whose owner is dead. Returns what was removed."""
    from .netns import prune_netns

    removed: list[str] = []
    with state.locked():
        for net in list_networks():
            for ep in net.endpoints:
                if not proc.token_alive(ep.owner, unknown_start=True):
                    detach(net.name, ep.container_id, missing_ok=True)
                    removed.append(f"endpoint {ep.name} ({ep.container_id}) on {net.name}")
            for ep in net.reserved:
                if not proc.token_alive(ep.owner, unknown_start=True):
                    release(net.name, ep.container_id)
                    removed.append(f"endpoint reserved as {ep.container_id} on {net.name}")
        nets = list_networks()
        if networks:
            for net in nets:
                if not net.endpoints and not net.reserved and not proc.token_alive(net.owner, unknown_start=True):
                    remove_network(net.name)
                    removed.append(f"network {net.name}")
            nets = list_networks()
        known = {n.bridge for n in nets} | {ep.host_veth for n in nets for ep in (*n.endpoints, *n.reserved)}
        host_links = _link_names()
        if any(n.startswith((BRIDGE_PREFIX, VETH_PREFIX)) for n in host_links):  # (else pyroute2 is not even loaded)
            for lname, kind in list(_our_host_links()):
                if lname not in known and kind in ("bridge", "veth"):
                    links.delete_link(lname)
                    removed.append(f"{kind} {lname}")
            for lname, kind in orphaned_links():
                if kind in ("bridge", "veth"):
                    links.delete_link(lname)
                    removed.append(f"{kind} {lname} (its state directory is gone)")
        # Firewall rules are the host's, shared by every state directory: one is an orphan when the bridge
        # it names is gone from the host, not when this directory has no record of its network.
        host_links = _link_names()  # (again: after the deletions above)
        from . import nat as natrules
        for line in natrules.rules():
            words = shlex.split(line)
            bridge = words[words.index("-o") + 1] if "-o" in words else None
            if bridge is not None and bridge not in host_links:  # delete it as printed
                subprocess.run(["iptables", "-w", "-t", "nat", "-D", *words[1:]], capture_output=True)
                removed.append(f"NAT rule of {line.split(natrules.TAG + ':', 1)[-1].split()[0].strip(chr(34))}")
        removed += [f"isolation rules of {name}" for name in isolation.prune(host_links)]
        cids = {ep.container_id for n in nets for ep in (*n.endpoints, *n.reserved)}
        with contextlib.suppress(FileNotFoundError):
            for f in os.listdir(state.hosts_dir()):
                if f not in cids:
                    hosts.remove_hosts(f)
                    removed.append(f"hosts file {f}")
        with contextlib.suppress(FileNotFoundError):
            for f in os.listdir(state.networks_dir()):
                stem, _, ext = f.rpartition(".")
                if ext == "def" and not f.startswith(".") and not os.path.exists(_path(stem)):
                    _forget(stem)  # (its record removed by another version, or a crash between the removals)
                    removed.append(f"{f} of a removed network")
                elif f.startswith(".tmp-") or ext == "members":  # (a writer killed mid-write — every writer holds
                    with contextlib.suppress(FileNotFoundError):  # the lock held here —; members one version kept)
                        os.unlink(os.path.join(state.networks_dir(), f))
        removed.extend(prune_netns())
    return removed
