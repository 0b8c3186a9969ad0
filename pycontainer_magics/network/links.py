"""Links, addresses, routes and neighbours of any network namespace, as plain records; veth pairs
and bridges. All through pyroute2 (netlink), never `ip` in a subprocess."""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Any

from .errors import InvalidArgument, NetworkError
from .netns import NsRef, iproute, netns_path

IFNAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")

NUD_STATES = {0x01: "incomplete", 0x02: "reachable", 0x04: "stale", 0x08: "delay", 0x10: "probe",
              0x20: "failed", 0x40: "noarp", 0x80: "permanent", 0x00: "none"}
RT_SCOPES = {0: "universe", 200: "site", 253: "link", 254: "host", 255: "nowhere"}
RT_PROTOS = {0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static", 16: "dhcp"}


@dataclass(frozen=True)
class Interface:
    index: int
    name: str
    kind: str  # "veth", "bridge", "loopback", "device", ...
    state: str  # "up" / "down"
    mac: str
    mtu: int
    master: str | None  # the bridge it is attached to
    carrier: bool


@dataclass(frozen=True)
class AddressRecord:
    interface: str
    family: int  # 4 or 6
    address: str
    prefixlen: int
    scope: str

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefixlen}"


@dataclass(frozen=True)
class RouteRecord:
    destination: str  # "default" or a CIDR
    gateway: str | None
    interface: str | None
    family: int
    table: int
    protocol: str
    scope: str
    source: str | None


@dataclass(frozen=True)
class NeighbourRecord:
    address: str
    mac: str | None
    interface: str
    state: str


@dataclass(frozen=True)
class VethEnd:
    ns: str | None  # nsfs path (None: the caller's namespace)
    name: str
    address: str | None  # CIDR


@dataclass(frozen=True)
class VethPair:
    a: VethEnd
    b: VethEnd


def check_ifname(name: str) -> str:
    if not isinstance(name, str) or not IFNAME_RE.match(name) or name in (".", ".."):
        raise InvalidArgument(f"invalid interface name {name!r} (1-15 characters, no '/' or spaces)")
    return name


def parse_interface_address(cidr: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """'10.0.0.1/24' -> interface address; InvalidArgument for anything else (a prefix is required)."""
    try:
        if "/" not in str(cidr):
            raise ValueError("no prefix length")
        return ipaddress.ip_interface(cidr)
    except ValueError as e:
        raise InvalidArgument(f"invalid address {cidr!r}: {e}") from None


def _kind(link: Any) -> str:
    kind = link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
    if kind:
        return str(kind)
    return "loopback" if link.get("ifname") == "lo" else "device"


def _names(ipr: Any) -> dict[int, str]:
    return {link["index"]: link.get("ifname") for link in ipr.get_links()}


def interfaces(ns: NsRef = None) -> list[Interface]:
    """The interfaces of namespace `ns` (None: the caller's), sorted by index."""
    with iproute(ns) as ipr:
        links = list(ipr.get_links())
        names = {link["index"]: link.get("ifname") for link in links}
        out = []
        for link in links:
            master = link.get("IFLA_MASTER")
            out.append(Interface(
                index=link["index"], name=link.get("ifname"), kind=_kind(link),
                state="up" if link["flags"] & 1 else "down", mac=link.get("IFLA_ADDRESS") or "",
                mtu=link.get("IFLA_MTU") or 0, master=names.get(master) if master else None,
                carrier=bool(link.get("IFLA_CARRIER")),
            ))
    return sorted(out, key=lambda i: i.index)


def addresses(ns: NsRef = None) -> list[AddressRecord]:
    with iproute(ns) as ipr:
        names = _names(ipr)
        out = []
        for a in ipr.get_addr():
            out.append(AddressRecord(
                interface=names.get(a["index"], str(a["index"])),
                family=6 if a["family"] == socket.AF_INET6 else 4,
                address=a.get("IFA_ADDRESS") or a.get("IFA_LOCAL"), prefixlen=a["prefixlen"],
                scope=RT_SCOPES.get(a["scope"], str(a["scope"])),
            ))
    return out


def routes(ns: NsRef = None, family: int = 4, table: int | None = 254) -> list[RouteRecord]:
    """Routes of `ns` (IPv4 by default, table main; table=None: every table)."""
    fam = socket.AF_INET6 if family == 6 else socket.AF_INET
    with iproute(ns) as ipr:
        names = _names(ipr)
        out = []
        kwargs: dict[str, Any] = {"family": fam}
        if table is not None:
            kwargs["table"] = table
        for r in ipr.get_routes(**kwargs):
            dst = r.get("RTA_DST")
            oif = r.get("RTA_OIF")
            out.append(RouteRecord(
                destination=f"{dst}/{r['dst_len']}" if dst else "default" if r["dst_len"] == 0 else "?",
                gateway=r.get("RTA_GATEWAY"), interface=names.get(oif) if oif else None, family=family,
                table=r.get("RTA_TABLE") or r["table"], protocol=RT_PROTOS.get(r["proto"], str(r["proto"])),
                scope=RT_SCOPES.get(r["scope"], str(r["scope"])), source=r.get("RTA_PREFSRC"),
            ))
    return out


def neighbours(ns: NsRef = None) -> list[NeighbourRecord]:
    with iproute(ns) as ipr:
        names = _names(ipr)
        out = []
        for fam in (socket.AF_INET, socket.AF_INET6):
            for n in ipr.get_neighbours(family=fam):
                out.append(NeighbourRecord(
                    address=n.get("NDA_DST"), mac=n.get("NDA_LLADDR"),
                    interface=names.get(n["ifindex"], str(n["ifindex"])),
                    state=NUD_STATES.get(n["state"], str(n["state"])),
                ))
    return out


def link_index(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def link_exists(name: str, ns: NsRef = None) -> bool:
    with iproute(ns) as ipr:
        return link_index(ipr, name) is not None


def configure(ipr: Any, name: str, address: str | None = None, up: bool = True) -> int:
    """Add `address` (CIDR) to link `name` and set it up; returns its index."""
    idx = link_index(ipr, name)
    if idx is None:
        raise NetworkError(f"interface {name!r} not found")
    if address is not None:
        iface = parse_interface_address(address)
        ipr.addr("add", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen)
    if up:
        ipr.link("set", index=idx, state="up")
    return idx


def add_veth(name_a: str, name_b: str, ns_a: NsRef = None, ns_b: NsRef = None,
             address_a: str | None = None, address_b: str | None = None, up: bool = True) -> VethPair:
    """A veth pair: end `name_a` in `ns_a`, end `name_b` in `ns_b` (None: the caller's namespace),
    each with an optional CIDR address, both up. Nothing is left when it fails."""
    check_ifname(name_a)
    check_ifname(name_b)
    for a in (address_a, address_b):
        if a is not None:
            parse_interface_address(a)
    path_a, path_b = netns_path(ns_a), netns_path(ns_b)
    with iproute(ns_a) as ipr_a:
        if link_index(ipr_a, name_a) is not None:
            raise NetworkError(f"interface {name_a!r} already exists", 17)
        with iproute(ns_b) as ipr_b:
            if link_index(ipr_b, name_b) is not None:
                raise NetworkError(f"interface {name_b!r} already exists", 17)
        peer: dict[str, Any] = {"ifname": name_b, "net_ns_fd": path_b or "/proc/self/ns/net"}
        try:
            ipr_a.link("add", ifname=name_a, kind="veth", peer=peer)
        except Exception as e:  # noqa: BLE001 - pyroute2's NetlinkError
            raise NetworkError.from_netlink(e, f"cannot create veth {name_a}<->{name_b}") from None
        try:
            configure(ipr_a, name_a, address_a, up)
            with iproute(ns_b) as ipr_b:
                configure(ipr_b, name_b, address_b, up)
        except BaseException:
            with contextlib.suppress(Exception):
                ipr_a.link("del", ifname=name_a)
            raise
    return VethPair(VethEnd(path_a, name_a, address_a), VethEnd(path_b, name_b, address_b))


def delete_link(name: str, ns: NsRef = None, missing_ok: bool = True) -> bool:
    """Delete link `name` in `ns` (a veth takes its peer along). Returns whether it existed."""
    with iproute(ns) as ipr:
        idx = link_index(ipr, name)
        if idx is None:
            if missing_ok:
                return False
            raise NetworkError(f"interface {name!r} not found", 2)
        try:
            ipr.link("del", index=idx)
        except Exception as e:
            # A veth goes with its peer's namespace, asynchronously: it may vanish between lookup and delete.
            if getattr(e, "code", None) == errno.ENODEV and missing_ok:  # (pyroute2's NetlinkError)
                return False
            raise
        return True


def ensure_bridge(name: str, address: str | None = None) -> bool:
    """Create bridge `name` (in the caller's namespace) with `address`, up, unless it exists.
    Returns True when it was created."""
    check_ifname(name)
    with iproute() as ipr:
        idx = link_index(ipr, name)
        if idx is not None:
            if address is not None:
                iface = parse_interface_address(address)
                have = {(a.get("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=idx)}
                if (str(iface.ip), iface.network.prefixlen) not in have:
                    configure(ipr, name, address, up=True)
            ipr.link("set", index=idx, state="up")
            return False
        try:
            ipr.link("add", ifname=name, kind="bridge")
        except Exception as e:  # noqa: BLE001
            raise NetworkError.from_netlink(e, f"cannot create bridge {name}") from None
        try:
            configure(ipr, name, address, up=True)
        except BaseException:
            with contextlib.suppress(Exception):
                ipr.link("del", ifname=name)
            raise
        return True


def attach_to_bridge(ipr: Any, ifname: str, bridge: str) -> None:
    br = link_index(ipr, bridge)
    idx = link_index(ipr, ifname)
    if br is None or idx is None:
        raise NetworkError(f"cannot attach {ifname} to bridge {bridge}: interface missing")
    ipr.link("set", index=idx, master=br, state="up")
