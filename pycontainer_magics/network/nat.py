"""Outbound NAT for a network, only when asked for (`create_network(..., nat=True)`): one MASQUERADE rule
in the nat table's POSTROUTING chain for the network's subnet leaving through any interface but its
bridge, tagged with a comment so that only our rules are ever listed or removed.

Firewall rules have no netlink API that pyroute2 wraps; this calls `iptables` (Debian's, nf_tables
backend), as Docker does. Forwarding must be enabled on the host (net.ipv4.ip_forward=1): it is not
changed here."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess

from .errors import NotSupported

TAG = "pycontainer_magics"


def _iptables() -> str:
    path = shutil.which("iptables")
    if path is None:
        raise NotSupported("outbound NAT needs iptables (apt-get install iptables)")
    return path


def _rule(subnet: ipaddress.IPv4Network, bridge: str, network: str) -> list[str]:
    return ["POSTROUTING", "-s", str(subnet), "!", "-o", bridge, "-j", "MASQUERADE",
            "-m", "comment", "--comment", f"{TAG}:{network}"]


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_iptables(), "-w", "-t", "nat", *args], capture_output=True, text=True)


def add(subnet: ipaddress.IPv4Network, bridge: str, network: str) -> None:
    if _run(["-C", *_rule(subnet, bridge, network)]).returncode == 0:
        return
    p = _run(["-A", *_rule(subnet, bridge, network)])
    if p.returncode != 0:
        raise NotSupported(f"could not add the NAT rule for {network}: {p.stderr.strip()}")


def remove(subnet: ipaddress.IPv4Network, bridge: str, network: str) -> None:
    while _run(["-D", *_rule(subnet, bridge, network)]).returncode == 0:
        pass  # a rule added twice goes twice


def rules() -> list[str]:
    """Our NAT rules, as `iptables -S` prints them."""
    if shutil.which("iptables") is None:
        return []
    out = _run(["-S", "POSTROUTING"]).stdout
    return [line for line in out.splitlines() if f"{TAG}:" in line]
