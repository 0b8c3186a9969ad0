"""`%netns`: network namespaces and container networks, in Docker's and iproute2's words.

    %netns network create NAME [--subnet CIDR] [--internal] [--nat]   %netns network ls
    %netns network inspect NAME        %netns network rm [-f] NAME
    %netns network connect NAME CONTAINER     %netns network disconnect NAME CONTAINER
    %netns create NAME    %netns ls    %netns rm NAME
    %netns links|addrs|routes|neigh [NS]      (NS: a netns name, a pid, or a container; none: the host)
    %netns veth NS1 NS2 [--address1 CIDR] [--address2 CIDR]
    %netns matrix NS... [--ping]              who reaches whom, as a table and a picture
    %%netns run NS                             the cell is a shell script run inside NS

A thin skin over `pycontainer_magics.network`; errors are one UsageError line.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from ._parser import UsageParser, split_line
from .expect import Expectation, split_flags


def _parser() -> argparse.ArgumentParser:
    p = UsageParser(prog="%netns", add_help=False)
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=UsageParser)
    nw = sub.add_parser("network", add_help=False).add_subparsers(dest="sub", required=True, parser_class=UsageParser)
    c = nw.add_parser("create", add_help=False)
    c.add_argument("name")
    c.add_argument("--subnet")
    c.add_argument("--gateway")
    c.add_argument("--internal", action="store_true")
    c.add_argument("--nat", action="store_true")
    nw.add_parser("ls", add_help=False)
    nw.add_parser("inspect", add_help=False).add_argument("name")
    rm = nw.add_parser("rm", add_help=False)
    rm.add_argument("-f", "--force", action="store_true")
    rm.add_argument("name")
    for verb in ("connect", "disconnect"):
        x = nw.add_parser(verb, add_help=False)
        x.add_argument("name")
        x.add_argument("container")
    sub.add_parser("create", add_help=False).add_argument("name")
    sub.add_parser("ls", add_help=False)
    sub.add_parser("rm", add_help=False).add_argument("name")
    for view in ("links", "addrs", "routes", "neigh"):
        sub.add_parser(view, add_help=False).add_argument("ns", nargs="?")
    v = sub.add_parser("veth", add_help=False)
    v.add_argument("ns1")
    v.add_argument("ns2")
    v.add_argument("--address1")
    v.add_argument("--address2")
    m = sub.add_parser("matrix", add_help=False)
    m.add_argument("ns", nargs="+")
    m.add_argument("--ping", action="store_true")
    return p


def _ns(ref: str | None) -> Any:
    """A netns name of ours, a pid, or a running container's name or id (its PID 1's namespace)."""
    if ref is None:
        return None
    if ref.isdigit():
        return int(ref)
    from .. import network as net
    if any(n.name == ref for n in net.list_netns()):
        return ref
    from ..workloads.containers import DetachedContainerError, containers
    try:
        c = containers.get(ref)
    except DetachedContainerError:
        raise UsageError(f"no network namespace or running container named {ref!r}") from None
    if c.pid1 is None:
        raise UsageError(f"container {ref} is not running")
    return c.pid1


@magics_class
class NetnsMagics(Magics):
    @line_magic
    def netns(self, line: str) -> Any:
        """Network namespaces and container networks, in Docker's and iproute2's words.

            %netns network create NAME [--subnet CIDR] [--gateway IP] [--internal] [--nat]
            %netns network ls | inspect NAME | rm [-f] NAME
            %netns network connect NAME CONTAINER | disconnect NAME CONTAINER
            %netns create NAME | ls | rm NAME          (named network namespaces)
            %netns links|addrs|routes|neigh [NS]      (NS: a netns name, a pid or a container; none: the host)
            %netns veth NS1 NS2 [--address1 CIDR] [--address2 CIDR]
            %netns matrix NS... [--ping]              who reaches whom, as a table and a picture
            %%netns run [--expect-exit N | --no-raise-error] NS   the cell is a shell script run inside NS

        Containers join a network with `%%container --network NAME` (names resolve on it) and publish ports
        with `-p HOST:CTR`."""
        from .. import network as net
        from ..display import net_views as views

        argv = split_line(line)
        if not argv:
            raise UsageError("usage: %netns network|create|ls|rm|links|addrs|routes|neigh|veth|matrix ...")
        ns = _parser().parse_args(argv)
        from ..runtime import cleanup
        cleanup.settle()  # ended containers leave their networks in the background: show them gone
        try:
            if ns.cmd == "network":
                return self._network(ns)
            if ns.cmd == "create":
                n = net.create_netns(ns.name, owner_pid=os.getpid())
                print(n.name)
                return None
            if ns.cmd == "ls":
                return views.records_frame(net.list_netns(), ["name", "inode", "path", "owner"])
            if ns.cmd == "rm":
                net.delete_netns(ns.name)
                return None
            if ns.cmd == "links":
                return views.records_frame(net.interfaces(_ns(ns.ns)))
            if ns.cmd == "addrs":
                return views.records_frame(net.addresses(_ns(ns.ns)))
            if ns.cmd == "routes":
                return views.records_frame(net.routes(_ns(ns.ns)))
            if ns.cmd == "neigh":
                return views.records_frame(net.neighbours(_ns(ns.ns)))
            if ns.cmd == "veth":
                pair = net.add_veth(f"v{os.urandom(3).hex()}", f"v{os.urandom(3).hex()}", _ns(ns.ns1), _ns(ns.ns2),
                                    ns.address1, ns.address2)
                return views.records_frame([pair.a, pair.b])
            if ns.cmd == "matrix":
                conn = net.connectivity_matrix({r: _ns(r) for r in ns.ns}, method="ping" if ns.ping else "tcp")
                from IPython.display import display
                display(views.plot_matrix(conn))
                return views.matrix_frame(conn)
        except net.NetworkError as e:
            raise UsageError(str(e)) from None
        raise UsageError(f"unknown %netns command {ns.cmd}")  # pragma: no cover

    def _network(self, ns: argparse.Namespace) -> Any:
        from .. import network as net
        from ..display import net_views as views
        from ..runtime import networking

        if ns.sub == "create":
            networking.register_exit_cleanup()
            n = net.create_network(ns.name, subnet=ns.subnet, gateway=ns.gateway, internal=ns.internal,
                                   nat=ns.nat, owner_pid=os.getpid())
            print(f"{n.name}: {n.subnet} via {n.gateway} (bridge {n.bridge})")
            return None
        if ns.sub == "ls":
            return views.networks_frame(net.list_networks())
        if ns.sub == "inspect":
            return views.endpoints_frame(net.inspect_network(ns.name))
        if ns.sub == "rm":
            net.remove_network(ns.name, force=ns.force)
            return None
        from ..workloads.containers import DetachedContainerError, containers
        try:
            c = containers.get(ns.container)
        except DetachedContainerError as e:
            raise UsageError(str(e)) from None
        if ns.sub == "connect":
            if c.pid1 is None:
                raise UsageError(f"container {ns.container} is not running")
            ep = net.attach(ns.name, c.pid1, c.id, name=c.label, owner_pid=os.getpid())
            print(f"{c.label}: {ep.address} on {ep.ifname}")
            return None
        net.detach(ns.name, c.id)
        return None

    @cell_magic("netns")  # type: ignore[arg-type]  # IPython's decorator is typed for the bare form only
    def netns_cell(self, line: str, cell: str) -> None:
        """%%netns run [--expect-exit N | --no-raise-error] NS: the cell is a shell script run inside network
        namespace NS; a non-zero exit fails the cell unless expected."""
        expectation, argv = split_flags(split_line(line))
        if len(argv) != 2 or argv[0] != "run":
            raise UsageError("usage: %%netns run [--expect-exit N | --no-raise-error] NS  (the cell is a shell script)")
        self._run(argv[1], cell, expectation)

    def _run(self, ref: str, cell: str, expectation: Expectation) -> None:
        from .. import network as net

        try:
            p = net.run_command(_ns(ref.strip()), cell)
        except net.NetworkError as e:
            raise UsageError(str(e)) from None
        sys.stdout.write(p.stdout.decode(errors="replace"))
        sys.stderr.write(p.stderr.decode(errors="replace"))
        expectation.check("%%netns run", p, "the script")


__all__ = ["NetnsMagics"]
