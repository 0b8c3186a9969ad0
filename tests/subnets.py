"""A subnet a test can use: free on this host (no route, none of our networks) and outside the pools our
networks pick from by themselves, so neither a newcomer's own bridges (docker's 172.17-172.31) nor a default
bridge made by another test can take it first."""

from __future__ import annotations

import ipaddress


def free_subnet(prefixlen: int = 16) -> ipaddress.IPv4Network:
    from pycontainer_magics.network import networks

    ours = networks.list_networks()
    for second in range(200, 230):  # 10.230/16 and 10.231/16 are networks.py's own pools
        block = ipaddress.IPv4Network(f"10.{second}.0.0/16")
        for candidate in block.subnets(new_prefix=prefixlen) if prefixlen > 16 else [block]:
            if networks._conflict(candidate, ours) is None:
                return candidate
    raise RuntimeError("no free subnet in 10.200.0.0-10.229.255.255 on this host")
