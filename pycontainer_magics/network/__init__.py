"""The network layer: named network namespaces, veth pairs and bridges, IPAM, user-defined networks
with hosts-file name resolution, port publishing (a userspace proxy), clean-up of what dead owners
left, and a connectivity matrix. Imports only linux/, the standard library and pyroute2.

May import: linux/ and the package's top-level helpers (paths.py, errors.py). Never images/ or any layer
above; never IPython, pandas, matplotlib or ipywidgets.
"""

from __future__ import annotations

from .connectivity import Connectivity, connectivity_matrix, ping, primary_address
from .errors import (
    AddressExhausted,
    AddressInUse,
    EndpointExists,
    EndpointNotFound,
    InvalidArgument,
    NamespaceError,
    NetworkError,
    NetworkExists,
    NetworkInUse,
    NetworkNotFound,
    NotSupported,
    PortInUse,
    SubnetOverlap,
)
from .hosts import hosts_path, read_hosts
from .links import (
    AddressRecord,
    Interface,
    NeighbourRecord,
    RouteRecord,
    VethPair,
    add_veth,
    addresses,
    delete_link,
    interfaces,
    neighbours,
    routes,
)
from .netns import (
    NetNamespace,
    Server,
    create_netns,
    delete_netns,
    list_netns,
    netns_path,
    run_command,
    run_in_netns,
    serve_echo,
    socket_in,
    tcp_probe,
)
from .networks import (
    DEFAULT_NETWORK,
    Endpoint,
    Network,
    attach,
    claim,
    create_network,
    default_network,
    detach,
    detach_all,
    endpoints_of,
    get_network,
    inspect_network,
    list_networks,
    prune,
    release,
    remove_network,
    reserve,
)
from .ports import Forwarder, Publication, parse_publish, publications, publish, unpublish, unpublish_all

__all__ = [
    "DEFAULT_NETWORK", "AddressExhausted", "Forwarder", "AddressInUse", "AddressRecord", "Connectivity", "Endpoint",
    "EndpointExists", "EndpointNotFound", "Interface", "InvalidArgument", "NamespaceError", "NeighbourRecord",
    "NetNamespace", "Network", "NetworkError", "NetworkExists", "NetworkInUse", "NetworkNotFound", "NotSupported",
    "PortInUse", "Publication", "RouteRecord", "Server", "SubnetOverlap", "VethPair", "add_veth", "addresses",
    "attach", "claim", "connectivity_matrix", "create_netns", "create_network", "default_network", "delete_link",
    "delete_netns", "detach", "detach_all", "endpoints_of", "get_network", "hosts_path", "inspect_network",
    "interfaces", "list_netns", "list_networks", "neighbours", "netns_path", "parse_publish", "ping",
    "primary_address", "prune", "publications", "publish", "read_hosts", "release", "remove_network", "reserve",
    "routes", "run_command", "run_in_netns", "serve_echo", "socket_in", "tcp_probe", "unpublish", "unpublish_all",
]


# Public functions that never reach pyroute2 (records, hosts files, parsing): called as they are, also from inside
# a running loop. A thread for each was a tenth of a millisecond or more of every networked cell in a notebook
# kernel (claim: the endpoint prepared ahead made the container's).
_NO_NETLINK = frozenset({"claim", "endpoints_of", "get_network", "hosts_path", "inspect_network", "list_networks",
                         "parse_publish", "publications", "read_hosts"})


def _wrap_public_functions() -> None:
    """Every other public function callable from inside a running asyncio loop (see _offloop)."""
    import inspect

    from ._offloop import off_loop

    g = globals()
    for name in __all__:
        if inspect.isfunction(g.get(name)) and name not in _NO_NETLINK:
            g[name] = off_loop(g[name])


_wrap_public_functions()
