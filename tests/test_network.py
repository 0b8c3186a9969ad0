"""The network layer (pycontainer_magics.network) on real namespaces and links, all created here.

Traffic goes only between namespaces these tests create and the host's loopback. Each test gets its
own state and run directories (so its bridges and veths have names of their own, see
networks.link_tag) and afterwards asserts that no link, address, netns or state file is left.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid

import pytest
from helpers import other_state_dirs_links

pytestmark = [pytest.mark.root, pytest.mark.network,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

pytest.importorskip("pyroute2")  # (the package imports without it, and loads it on first use)
N = pytest.importorskip("pycontainer_magics.network")
from pycontainer_magics.network import networks as _networks  # noqa: E402
from pycontainer_magics.network import state as _state  # noqa: E402


def _our_links() -> list[str]:
    """Host links carrying this test's tag (bridges and host veth ends)."""
    tag = _networks.link_tag()
    with N.netns.iproute() as ipr:
        return [link.get("ifname") for link in ipr.get_links() if _networks.is_ours(link.get("IFLA_IFALIAS"), tag)]


def _state_files() -> list[str]:
    out = []
    for d in (_state.networks_dir(), _state.hosts_dir(), _state.netns_dir(), _state.netns_meta_dir()):
        if os.path.isdir(d):
            out += [os.path.join(d, f) for f in os.listdir(d)]
    return out


def _host_addresses_in(subnets: list[ipaddress.IPv4Network]) -> list[str]:
    return [a.cidr for a in N.addresses() if a.family == 4
            and any(ipaddress.IPv4Address(a.address) in s for s in subnets)]


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """Private state/run dirs; a unique tag for names; afterwards: nothing of ours is left."""
    monkeypatch.setenv("PYCONTAINER_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PYCONTAINER_RUN_DIR", str(tmp_path / "run"))
    links_before = {i.name for i in N.interfaces()}
    tag = uuid.uuid4().hex[:6]
    yield tag
    for p in N.publications():
        N.unpublish(p)
    subnets = [n.subnet for n in N.list_networks()]
    for net in N.list_networks():
        N.remove_network(net.name, force=True)
    for ns in N.list_netns():
        N.delete_netns(ns.name)
    left = _our_links() + _state_files() + _host_addresses_in(subnets)
    assert not [f for f in left if not f.endswith("network.lock")], f"left behind: {left}"
    assert not {i.name for i in N.interfaces()} - links_before - other_state_dirs_links()


def _ns(tag: str, n: str) -> str:
    return N.create_netns(f"{n}-{tag}").name


# --- namespaces, links ------------------------------------------------------------------------------


def test_netns_create_list_run_delete(lab):
    name = _ns(lab, "a")
    ns = N.list_netns()[0]
    assert ns.name == name and ns.path.startswith(os.environ["PYCONTAINER_RUN_DIR"]) and ns.owner_alive
    assert not os.path.exists(f"/run/netns/{name}")  # never ip-netns' directory
    inner = N.run_in_netns(name, lambda: os.stat("/proc/self/ns/net").st_ino)
    assert inner == ns.inode != os.stat("/proc/self/ns/net").st_ino
    assert [(i.name, i.state) for i in N.interfaces(name)] == [("lo", "up")]
    out = N.run_command(name, ["cat", "/proc/net/dev"])
    assert out.returncode == 0 and b"lo:" in out.stdout and b"eth0" not in out.stdout
    with pytest.raises(N.NetworkError, match="already exists"):
        N.create_netns(name)
    with pytest.raises(N.InvalidArgument):
        N.create_netns("../etc")
    with pytest.raises(ZeroDivisionError):
        N.run_in_netns(name, lambda: 1 / 0)
    N.delete_netns(name)
    assert N.list_netns() == []
    with pytest.raises(N.NamespaceError):
        N.interfaces(name)


def test_veth_pair_between_namespaces(lab):
    a, b = _ns(lab, "a"), _ns(lab, "b")
    pair = N.add_veth("va", "vb", a, b, "10.199.0.1/24", "10.199.0.2/24")
    assert pair.a.name == "va" and pair.b.address == "10.199.0.2/24"
    assert {(r.interface, r.cidr) for r in N.addresses(b) if r.family == 4} == {("lo", "127.0.0.1/8"),
                                                                                 ("vb", "10.199.0.2/24")}
    assert any(r.destination == "10.199.0.0/24" and r.interface == "va" for r in N.routes(a))
    with N.serve_echo(b, 0) as srv:
        assert N.run_in_netns(a, N.tcp_probe, "10.199.0.2", srv.port, 5)
    assert any(n.address == "10.199.0.2" for n in N.neighbours(a))
    assert N.delete_link("va", a)
    assert [i.name for i in N.interfaces(b)] == ["lo"]  # the peer went with it


# --- user networks, default bridge -----------------------------------------------------------------


def test_user_network_reach_by_ip_and_name(lab):
    a, b = _ns(lab, "a"), _ns(lab, "b")
    net = N.create_network(f"lab-{lab}")
    ea = N.attach(net.name, a, f"ca-{lab}", name="alpha")
    ino = os.stat(ea.hosts_file).st_ino
    assert "beta" not in N.read_hosts(ea.hosts_file)
    eb = N.attach(net.name, b, f"cb-{lab}", name="beta", aliases=["db"])
    assert (ea.ifname, ea.address, eb.address) == ("eth0", str(net.gateway + 1), str(net.gateway + 2))
    # the earlier container's file was rewritten in place (a bind mount of it sees the change)
    assert os.stat(ea.hosts_file).st_ino == ino
    assert N.read_hosts(ea.hosts_file)["beta"] == eb.address == N.read_hosts(ea.hosts_file)["db"]
    assert N.read_hosts(eb.hosts_file)["alpha"] == ea.address
    info = N.inspect_network(net.name)
    assert info.containers == {"alpha": ea.address, "beta": eb.address}
    assert any(r.destination == "default" and r.gateway == str(net.gateway) for r in N.routes(a))
    with N.serve_echo(b, 0) as srv:
        assert N.run_in_netns(a, N.tcp_probe, eb.address, srv.port, 5)
        # by name: /etc/hosts of a private mount namespace is the generated file, as in a container
        resolved = N.run_in_netns(a, lambda: socket.gethostbyname("beta"), hosts_file=ea.hosts_file)
        assert resolved == eb.address
        assert N.run_in_netns(a, lambda: N.tcp_probe(socket.gethostbyname("beta"), srv.port, 5),
                              hosts_file=ea.hosts_file)
        out = N.run_command(a, ["getent", "-s", "files", "hosts", "db"], hosts_file=ea.hosts_file)
        assert out.stdout.split()[0].decode() == eb.address
    N.detach(net.name, eb.container_id)
    assert "beta" not in N.read_hosts(ea.hosts_file) and not os.path.exists(eb.hosts_file)
    assert [i.name for i in N.interfaces(b)] == ["lo"]


def test_default_bridge_gives_no_names(lab):
    a, b = _ns(lab, "a"), _ns(lab, "b")
    ea = N.attach("bridge", a, f"ca-{lab}", name="alpha")
    eb = N.attach("bridge", b, f"cb-{lab}", name="beta")
    net = N.get_network("bridge")
    assert net.dns is False and ea.network == "bridge"
    assert N.read_hosts(ea.hosts_file).get("alpha") == ea.address  # its own name only
    assert "beta" not in N.read_hosts(ea.hosts_file)
    with N.serve_echo(b, 0) as srv:
        assert N.run_in_netns(a, N.tcp_probe, eb.address, srv.port, 5)
        out = N.run_command(a, ["getent", "-s", "files", "hosts", "beta"], hosts_file=ea.hosts_file)
        assert out.returncode != 0


def test_the_default_bridge_is_repaired_when_it_is_down_or_untagged(lab):
    """default_network() checks its bridge in one request when all is well; a bridge taken down, or whose
    ifalias (what prune recognises as ours) was changed, is put right on the next use."""
    net = N.default_network()
    with N.netns.iproute() as ipr:
        ipr.link("set", ifname=net.bridge, state="down")
    N.default_network()
    with N.netns.iproute() as ipr:
        (link,) = ipr.link("get", ifname=net.bridge)
        assert link["flags"] & 1
        ipr.link("set", ifname=net.bridge, ifalias="someone else's")
    N.default_network()
    with N.netns.iproute() as ipr:
        (link,) = ipr.link("get", ifname=net.bridge)
    assert link.get("IFLA_IFALIAS") == _networks.link_alias()


def test_connect_disconnect_second_network(lab):
    a, b = _ns(lab, "a"), _ns(lab, "b")
    n1, n2 = N.create_network(f"one-{lab}"), N.create_network(f"two-{lab}")
    cid = f"ca-{lab}"
    e1 = N.attach(n1.name, a, cid, name="alpha")
    e2 = N.attach(n2.name, a, cid, name="alpha")
    eb = N.attach(n2.name, b, f"cb-{lab}", name="beta")
    assert (e1.ifname, e2.ifname) == ("eth0", "eth1") and e1.default_route and not e2.default_route
    assert {i.name for i in N.interfaces(a)} == {"lo", "eth0", "eth1"}
    assert N.read_hosts(e1.hosts_file)["beta"] == eb.address
    assert [ep.network for ep in N.endpoints_of(cid)] == [n1.name, n2.name]
    N.detach(n1.name, cid)
    assert {i.name for i in N.interfaces(a)} == {"lo", "eth1"}
    assert N.read_hosts(e2.hosts_file)["beta"] == eb.address
    with N.serve_echo(b, 0) as srv:
        assert N.run_in_netns(a, N.tcp_probe, eb.address, srv.port, 5)
    with pytest.raises(N.NetworkInUse):
        N.remove_network(n2.name)
    assert len(N.detach_all(cid)) == 1
    assert [i.name for i in N.interfaces(a)] == ["lo"] and not os.path.exists(e2.hosts_file)


def test_container_netns_owned_by_a_user_namespace(lab):
    """A container's netns belongs to its user namespace: attach by pid still works."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            from pycontainer_magics.linux import libc
            from pycontainer_magics.linux.namespaces import CLONE_NEWNET, CLONE_NEWUSER
            libc.unshare(CLONE_NEWUSER | CLONE_NEWNET)
            os.write(w, b"ok")
            time.sleep(60)
        finally:
            os._exit(0)
    os.close(w)
    try:
        assert os.read(r, 2) == b"ok"
        assert os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
        b = _ns(lab, "b")
        net = N.create_network(f"lab-{lab}")
        ec = N.attach(net.name, pid, f"cc-{lab}", name="ctr")
        eb = N.attach(net.name, b, f"cb-{lab}", name="peer")
        assert {i.name for i in N.interfaces(pid)} == {"lo", "eth0"}
        with N.serve_echo(pid, 0) as srv:
            assert N.run_in_netns(b, N.tcp_probe, ec.address, srv.port, 5)
        assert eb.address
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(r)
    # the container's netns died with it, and its veth pair with it; detach still cleans the record
    N.detach(net.name, ec.container_id)
    assert len(N.get_network(net.name).endpoints) == 1


# --- ports -----------------------------------------------------------------------------------------


def test_published_port_reachable_from_host_loopback(lab):
    a = _ns(lab, "a")
    net = N.create_network(f"lab-{lab}")
    ep = N.attach(net.name, a, f"ca-{lab}", name="web", expose=["80"])
    assert ep.exposed == ("80/tcp",)
    with N.serve_echo(a, 80, banner=b"hello\n"):
        pub = N.publish(ep, 0, 80)
        assert pub.host_ip == "127.0.0.1" and pub.host_port > 0
        with socket.create_connection(("127.0.0.1", pub.host_port), timeout=2) as s:
            assert s.recv(6) == b"hello\n"
            s.sendall(b"x" * 100000)
            got = b""
            while len(got) < 100000:
                got += s.recv(65536)
            assert got == b"x" * 100000
        assert N.get_network(net.name).endpoint(ep.container_id).published == (pub.spec,)
        with pytest.raises(N.PortInUse):
            N.publish(ep, pub.host_port, 80)
        assert len(N.publications()) == 1
        N.unpublish(pub)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", pub.host_port), timeout=1).close()
    assert N.get_network(net.name).endpoint(ep.container_id).published == ()
    assert N.parse_publish("8080:80") == ("127.0.0.1", 8080, 80, "tcp")
    assert N.parse_publish("0.0.0.0:8080:80/tcp") == ("0.0.0.0", 8080, 80, "tcp")
    with pytest.raises(N.InvalidArgument):
        N.parse_publish("80")


# --- bad input -------------------------------------------------------------------------------------


def test_bad_input_is_one_clear_error_and_creates_nothing(lab):
    a = _ns(lab, "a")
    net = N.create_network(f"lab-{lab}")
    ep = N.attach(net.name, a, f"ca-{lab}", name="alpha")
    before = (_our_links(), sorted(_state_files()), N.interfaces(a), N.get_network(net.name))
    host_route = next((r for r in N.routes() if r.destination not in ("default",)), None)
    inside = str(net.subnet.network_address + 1000)
    cases = [
        (N.SubnetOverlap, lambda: N.create_network(f"x-{lab}", str(ipaddress.ip_network(
            f"{net.subnet.network_address}/24")))),
        (N.NetworkExists, lambda: N.create_network(net.name)),
        (N.InvalidArgument, lambda: N.create_network(f"x-{lab}", "10.1.2.3/33")),
        (N.InvalidArgument, lambda: N.create_network(f"x-{lab}", "10.1.2.3/24")),  # host bits set
        (N.InvalidArgument, lambda: N.create_network(f"x-{lab}", "127.0.0.0/8")),
        (N.InvalidArgument, lambda: N.create_network("host")),
        (N.NetworkNotFound, lambda: N.attach(f"nope-{lab}", a, "c9", name="z")),
        (N.NetworkNotFound, lambda: N.remove_network(f"nope-{lab}")),
        (N.NamespaceError, lambda: N.attach(net.name, f"gone-{lab}", "c9", name="z")),
        (N.InvalidArgument, lambda: N.attach(net.name, a, "c9", name="z", address="300.1.1.1")),
        (N.InvalidArgument, lambda: N.attach(net.name, a, "c9", name="z", address="8.8.8.8")),
        (N.AddressInUse, lambda: N.attach(net.name, a, "c9", name="z", address=ep.address)),
        (N.EndpointExists, lambda: N.attach(net.name, a, ep.container_id, name="z")),
        (N.EndpointExists, lambda: N.attach(net.name, a, "c9", name="alpha")),
        (N.EndpointNotFound, lambda: N.detach(net.name, "c9")),
        (N.InvalidArgument, lambda: N.add_veth("v1", "v2", a, a, "10.0.0.1")),
        (N.InvalidArgument, lambda: N.add_veth("x" * 16, "v2", a, a)),
        (N.InvalidArgument, lambda: N.publish(ep, 70000, 80)),
        (N.InvalidArgument, lambda: N.publish(ep, 8080, 80, host_ip="localhostt")),
    ]
    if host_route is not None:
        cases.append((N.SubnetOverlap, lambda: N.create_network(f"x-{lab}", host_route.destination)))
    for exc, call in cases:
        with pytest.raises(exc) as info:
            call()
        assert isinstance(info.value, N.NetworkError) and isinstance(info.value, OSError)
        msg = str(info.value)
        assert msg and "\n" not in msg and not msg.startswith("[Errno"), msg
    assert inside  # (an unused in-subnet address stays free)
    after = (_our_links(), sorted(_state_files()), N.interfaces(a), N.get_network(net.name))
    assert after == before


def test_port_in_use_on_the_host(lab):
    a = _ns(lab, "a")
    net = N.create_network(f"lab-{lab}")
    ep = N.attach(net.name, a, f"ca-{lab}", name="alpha")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(N.PortInUse, match="already in use"):
            N.publish(ep, s.getsockname()[1], 80)
    assert N.publications() == []


# --- scale, clean-up, prune ------------------------------------------------------------------------


def test_fifty_endpoints_leave_nothing(lab):
    net = N.create_network(f"lab-{lab}")
    t0 = time.monotonic()
    names = [_ns(lab, f"n{i}") for i in range(50)]
    eps = [N.attach(net.name, ns, f"c{i}-{lab}", name=f"c{i}") for i, ns in enumerate(names)]
    assert len({e.address for e in eps}) == 50 and len(N.get_network(net.name).endpoints) == 50
    assert len(N.read_hosts(eps[0].hosts_file)) >= 50 + 2
    assert len(_our_links()) == 51  # the bridge and 50 host veth ends
    with N.serve_echo(names[-1], 0) as srv:
        assert N.run_in_netns(names[0], N.tcp_probe, eps[-1].address, srv.port, 5)
    for e in eps:
        N.detach(net.name, e.container_id)
    N.remove_network(net.name)
    for ns in names:
        N.delete_netns(ns)
    assert time.monotonic() - t0 < 30
    assert _our_links() == [] and N.list_netns() == [] and N.list_networks() == []
    assert [f for f in _state_files() if not f.endswith(".lock")] == []
    assert _host_addresses_in([net.subnet]) == []


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_prune_after_a_dead_owner(lab):
    dead = _dead_pid()
    a = N.create_netns(f"a-{lab}", owner_pid=dead).name
    b = _ns(lab, "b")  # ours, alive
    dead_net = N.create_network(f"dead-{lab}", owner_pid=dead)
    live_net = N.create_network(f"live-{lab}")
    N.attach(dead_net.name, a, f"ca-{lab}", name="alpha", owner_pid=dead)
    eb = N.attach(live_net.name, b, f"cb-{lab}", name="beta")
    stale = N.attach(live_net.name, a, f"cs-{lab}", name="stale", owner_pid=dead)
    removed = N.prune()
    assert f"network {dead_net.name}" in removed and f"netns {a}" in removed
    assert any(stale.container_id in r for r in removed)
    assert [n.name for n in N.list_networks()] == [live_net.name]
    assert [ep.container_id for ep in N.get_network(live_net.name).endpoints] == [eb.container_id]
    assert [ns.name for ns in N.list_netns()] == [b]
    assert sorted(_our_links()) == sorted([live_net.bridge, eb.host_veth])
    assert N.prune() == []


def test_a_network_record_swapped_in_and_its_definition_kept_apart(lab):
    """A network's record (NAME.json, endpoints included: the format every version reads and writes) is swapped in by
    every attach and detach; NAME.def, the network without members, is written out once, when it is made. A record
    left empty (a crash before its write-out) is read from NAME.def with no members; another process's change is
    read, not the last one seen here; and a prune removes what other versions or crashes leave beside removed
    records."""
    a, b = _ns(lab, "a"), _ns(lab, "b")
    net = N.create_network(f"rec-{lab}")
    d = _state.networks_dir()
    record, definition = os.path.join(d, f"{net.name}.json"), os.path.join(d, f"{net.name}.def")
    made = (os.stat(definition).st_ino, open(definition, "rb").read())
    assert "endpoints" not in json.loads(made[1]) and json.loads(made[1])["subnet"] == str(net.subnet)
    ino = os.stat(record).st_ino
    ea = N.attach(net.name, a, f"ca-{lab}", name="alpha")
    assert (os.stat(definition).st_ino, open(definition, "rb").read()) == made  # not written again
    assert os.stat(record).st_ino != ino  # (swapped in)
    assert [e["name"] for e in json.loads(open(record, "rb").read())["endpoints"]] == ["alpha"]

    # written by another process (a second kernel): seen at the next read, and kept by this one's next change
    other = json.loads(open(record, "rb").read())
    other["endpoints"][0]["aliases"] = ["elsewhere"]
    _networks.files.swap_in(record, json.dumps(other).encode())
    assert N.get_network(net.name).endpoints[0].aliases == ("elsewhere",)
    eb = N.attach(net.name, b, f"cb-{lab}", name="beta")
    assert [(e.name, e.aliases) for e in N.get_network(net.name).endpoints] == [("alpha", ("elsewhere",)),
                                                                               ("beta", ())]

    saved = open(record, "rb").read()
    with open(record, "wb"):  # empty, as a crash before its write-out leaves it
        pass
    assert N.get_network(net.name) == dataclasses.replace(net, endpoints=(), reserved=())
    _networks.files.swap_in(record, saved)

    N.detach(net.name, eb.container_id)
    assert [e["name"] for e in json.loads(open(record, "rb").read())["endpoints"]] == ["alpha"]
    os.unlink(definition)  # (a record of a version that keeps none: made at the next change)
    _networks._defs.clear()  # (as a process that has not seen this network's NAME.def before)
    N.detach(net.name, ea.container_id)
    assert open(definition, "rb").read() == made[1]

    # beside a record removed by another version, or by a crash between removals: pruned
    N.remove_network(net.name, force=True)
    assert not [f for f in os.listdir(d) if f.startswith(net.name)]
    for f in (f"{net.name}.def", f"{net.name}.members", f".tmp-{net.name}.json.1.2"):  # (.members: one version's)
        open(os.path.join(d, f), "wb").close()
    removed = N.prune()
    assert f"{net.name}.def of a removed network" in removed and not [f for f in os.listdir(d) if net.name in f]


def test_prune_removes_the_links_of_a_state_dir_that_was_removed(lab, tmp_path, monkeypatch):
    """A store deleted with its networks still up (rm -rf of a state dir, a test's temp dir) leaves bridges
    no record names: their ifalias names the dir, so a prune from any state dir removes them, and only them."""
    own = N.create_network(f"own-{lab}")
    monkeypatch.setenv("PYCONTAINER_STATE_DIR", str(tmp_path / "doomed"))
    doomed = N.create_network(f"doomed-{lab}")
    ns = _ns(lab, "d")
    ep = N.attach(doomed.name, ns, f"cd-{lab}", name="delta")
    assert _networks.alias_state_dir(_alias(doomed.bridge)) == str(tmp_path / "doomed")
    N.delete_netns(ns)  # its veth end goes with it; the host end's peer too
    shutil.rmtree(tmp_path / "doomed")
    monkeypatch.setenv("PYCONTAINER_STATE_DIR", str(tmp_path / "state"))
    removed = N.prune()
    assert f"bridge {doomed.bridge} (its state directory is gone)" in removed, removed
    assert ep.host_veth not in {i.name for i in N.interfaces()}
    assert [n.name for n in N.list_networks()] == [own.name] and _our_links() == [own.bridge]


def _alias(name: str) -> str | None:
    with N.netns.iproute() as ipr:
        return next(link.get("IFLA_IFALIAS") for link in ipr.get_links() if link.get("ifname") == name)


# --- connectivity matrix ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["tcp", "ping"])
def test_connectivity_matrix(lab, method):
    a, b, c = _ns(lab, "a"), _ns(lab, "b"), _ns(lab, "c")
    net = N.create_network(f"lab-{lab}")
    N.attach(net.name, a, f"ca-{lab}", name="alpha")
    N.attach(net.name, b, f"cb-{lab}", name="beta")
    m = N.connectivity_matrix({"a": a, "b": b, "c": c}, method=method, timeout=3)
    assert m.reachable["a"]["b"] and m.reachable["b"]["a"] and m.reachable["a"]["a"]
    assert not m.reachable["a"]["c"] and not m.reachable["c"]["a"] and not m.reachable["c"]["c"]
    assert m.rows()[0]["from"] == "a" and set(m.pairs()) == {("a", "a"), ("a", "b"), ("b", "a"), ("b", "b")}


def test_state_dirs_side_by_side_share_the_isolation_chain_safely(tmp_path):
    """Four processes on four state dirs (three kernels, a daemon) make and remove networks at once: the
    isolation chain is the host's, so one dropping it as empty must not fail another's rule ('No
    chain/target/match by that name' before the host-wide lock)."""
    code = ("import os, sys\nfrom pycontainer_magics.network import networks as n\n"
            "for i in range(20):\n    n.remove_network(n.create_network(f'race{i}', owner_pid=os.getpid()).name)\n")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYCONTAINER_STATE_DIR": str(tmp_path / f"s{k}"),
                                   "PYCONTAINER_RUN_DIR": str(tmp_path / f"r{k}")}) for k in range(4)]
    results = [(p.communicate(timeout=120)[1], p.returncode)[::-1] for p in procs]
    assert all(rc == 0 for rc, _ in results), [err.strip().splitlines()[-1:] for _, err in results]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # (pyroute2's coroutine, refused in the loop on purpose)
def test_netlink_functions_work_from_inside_a_running_loop_and_import_no_asyncio_outside_one() -> None:
    """A notebook kernel runs cells inside its asyncio loop, where pyroute2 refuses to run its own: the public
    functions that use it run in a thread there (network/_offloop.py). Loading the package (as %load_ext's prune
    does) imports neither asyncio nor pyroute2 (which imports asyncio itself, once a request is made)."""
    import asyncio

    from pycontainer_magics.network import links

    async def cell() -> tuple[list[str], str]:
        names = [i.name for i in N.interfaces()]
        try:
            links.interfaces()  # (the function unwrapped, as pyroute2 sees a call from the loop's thread)
            direct = "worked"
        except RuntimeError as e:
            direct = str(e)
        return names, direct

    names, direct = asyncio.run(cell())
    assert "lo" in names
    assert "already running" in direct  # (else this test shows nothing)
    probe = ("import sys\nfrom pycontainer_magics import network as N\nN.list_networks()\n"
             "print(sorted(m for m in ('asyncio', 'pyroute2') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", (out.stdout, out.stderr)


def test_an_echo_server_started_from_inside_a_running_loop_keeps_serving(lab):
    """From inside a running loop (a notebook cell) the network functions run in another thread; the server
    serve_echo forks there dies with that thread (PR_SET_PDEATHSIG follows the forking thread) unless that thread
    lives as long as the process (linux/lifelong.py)."""
    import asyncio

    ns = _ns(lab, "echo")

    async def cell():  # type: ignore[no-untyped-def]
        return N.serve_echo(ns, 0)

    srv = asyncio.run(cell())
    try:
        time.sleep(0.3)
        assert N.run_in_netns(ns, N.tcp_probe, "127.0.0.1", srv.port, 5)
    finally:
        srv.stop()


HALF_IMPORTED_ASYNCIO = """
import sys, threading
from pycontainer_magics.network._offloop import off_loop
call = off_loop(lambda: 1)
errors = []
stop = threading.Event()
def spin():
    while not stop.is_set():
        try:
            call()
        except Exception as e:
            errors.append(repr(e))
            return
t = threading.Thread(target=spin)
t.start()
import asyncio  # (another thread's import: in sys.modules before it has its functions)
stop.set()
t.join()
print(errors[:1])
"""


def test_the_loop_check_survives_asyncio_half_imported_by_another_thread() -> None:
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", HALF_IMPORTED_ASYNCIO], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0 and out.stdout.strip() == "[]", (out.stdout, out.stderr)
