"""Who can reach whom: a matrix of booleans over a set of network namespaces, by TCP (an echo
listener started in every target namespace) or ICMP echo (a raw socket in the source namespace)."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from . import links
from .errors import InvalidArgument, NetworkError
from .netns import NsRef, Server, run_in_netns, serve_echo, tcp_probe


@dataclass(frozen=True)
class Connectivity:
    names: tuple[str, ...]
    addresses: dict[str, str]  # name -> the address probed
    reachable: dict[str, dict[str, bool]]  # source -> target -> reached
    method: str

    def rows(self) -> list[dict[str, object]]:
        """One dict per source: {"from": name, target: bool, ...} (a DataFrame's records)."""
        return [{"from": s, **self.reachable[s]} for s in self.names]

    def pairs(self) -> list[tuple[str, str]]:
        return [(s, t) for s in self.names for t in self.names if self.reachable[s][t]]


def primary_address(ns: NsRef) -> str | None:
    """The first global IPv4 address of a namespace (None when it has only loopback)."""
    for a in links.addresses(ns):
        if a.family == 4 and a.scope == "universe" and not a.address.startswith("127."):
            return a.address
    return None


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return int(~s & 0xFFFF)


def ping(host: str, timeout: float = 1.0) -> bool:
    """One ICMP echo request over a raw socket (needs CAP_NET_RAW); True when the reply comes."""
    ident = os.getpid() & 0xFFFF
    header = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
    payload = b"pycontainer_magics"
    packet = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, 1) + payload
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        s.settimeout(timeout)
        try:
            s.sendto(packet, (host, 0))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                data, addr = s.recvfrom(2048)
                ihl = (data[0] & 0x0F) * 4
                kind, _, _, rid, _ = struct.unpack("!BBHHH", data[ihl:ihl + 8])
                if kind == 0 and rid == ident and addr[0] == host:
                    return True
        except OSError:
            return False
    return False


def _probe_all(targets: list[tuple[str, int]], method: str, timeout: float) -> list[bool]:
    def one(t: tuple[str, int]) -> bool:
        return ping(t[0], timeout) if method == "ping" else tcp_probe(t[0], t[1], timeout)

    from concurrent.futures import ThreadPoolExecutor  # (only here: not in the memory of every kernel)

    with ThreadPoolExecutor(max_workers=max(1, min(16, len(targets)))) as ex:
        return list(ex.map(one, targets))


def connectivity_matrix(namespaces: Sequence[NsRef] | Mapping[str, NsRef], method: str = "tcp",
                        timeout: float = 0.5, addresses: Mapping[str, str] | None = None) -> Connectivity:
    """Probe every (source, target) pair. `namespaces`: refs (labelled by str()) or {label: ref};
    `addresses`: label -> address to probe (default: each namespace's first global IPv4 address;
    targets without one are unreachable). method "tcp" (an echo server is started in each target for
    the duration) or "ping"."""
    if method not in ("tcp", "ping"):
        raise InvalidArgument(f"invalid method {method!r}: tcp or ping")
    refs = dict(namespaces) if isinstance(namespaces, Mapping) else {str(n): n for n in namespaces}
    addrs = {k: (addresses or {}).get(k) or primary_address(v) for k, v in refs.items()}
    servers: dict[str, Server] = {}
    try:
        if method == "tcp":
            for k, ref in refs.items():
                if addrs[k]:
                    servers[k] = serve_echo(ref, 0)
        names = tuple(refs)
        result: dict[str, dict[str, bool]] = {}
        probe = [(addrs[t] or "", servers[t].port if t in servers else 0) for t in names]
        for s in names:
            todo = [(i, p) for i, p in enumerate(probe) if p[0]]
            got = run_in_netns(refs[s], _probe_all, [p for _, p in todo], method, timeout,
                               timeout=timeout * len(todo) + 10)
            row = dict.fromkeys(names, False)
            for (i, _), ok in zip(todo, got, strict=True):
                row[names[i]] = bool(ok)
            result[s] = row
        return Connectivity(names, {k: v or "" for k, v in addrs.items()}, result, method)
    except NetworkError:
        raise
    finally:
        for srv in servers.values():
            with contextlib.suppress(Exception):
                srv.stop()
