"""Containers on networks: none/host/bridge/user networks, names on user networks only, published
ports on the host's loopback, connect/disconnect, and nothing left after 50 containers. Traffic goes
only between namespaces these tests create and the host's loopback."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import subprocess
import time

import pytest
from helpers import host_clean, other_state_dirs_links  # noqa: F401
from subnets import free_subnet

from pycontainer_magics import network as net
from pycontainer_magics.runtime import ContainerSpec, LaunchError, run
from pycontainer_magics.runtime.cleanup import settle
from pycontainer_magics.runtime.pool import pool
from pycontainer_magics.workloads.containers import containers, start

pytestmark = [pytest.mark.root, pytest.mark.network, pytest.mark.usefixtures("host_clean"),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]
HTTPD = ("busybox", "httpd", "-f", "-p", "80", "-h", "/etc")


def _links(kind: str) -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show", "type", kind], capture_output=True, text=True).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


def _ours(rules: list[str]) -> list[str]:
    """The firewall rules are the host's: leave out those of another state dir's bridges."""
    others = other_state_dirs_links()
    return [r for r in rules if not set(re.findall(r"pcm-[0-9a-f]+", r)) & others]


def _in(address: str, network: str) -> bool:
    return ipaddress.ip_address(address) in net.get_network(network).subnet


@pytest.fixture
def labnet():
    before, before_veths = set(_links("bridge")), set(_links("veth"))
    n = net.create_network(f"lab{os.getpid() % 10000}", subnet=free_subnet(), owner_pid=os.getpid())
    yield n.name
    for c in containers.list():
        containers.remove(c.id, force=True)
    settle()
    net.remove_network(n.name, force=True)
    if any(x.name == "bridge" for x in net.list_networks()):
        net.remove_network("bridge", force=True)
    # (another state dir's, a notebook's or another test run's on this host meanwhile, are not ours)
    others = other_state_dirs_links()
    assert not any(b.startswith("pcm-") for b in set(_links("bridge")) - before - others)
    assert not any(v.startswith("pcv") for v in set(_links("veth")) - before_veths - others)
    from pycontainer_magics.network import isolation, nat
    assert _ours(nat.rules()) == [] and _ours(isolation.rules()) == []


def _wait_http(c, timeout=30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if c.exec(["sh", "-c", "busybox wget -q -O /dev/null http://127.0.0.1/hostname"]).exit_code == 0:
            return
        time.sleep(0.05)
    raise AssertionError("httpd did not come up")


def test_none_gives_only_loopback() -> None:
    assert run(ContainerSpec(command=("ls", "/sys/class/net"))).stdout.split() == ["lo"]
    # and lo is up, as Docker has it: a server on 127.0.0.1 answers inside the container
    code = ("import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); "
            "c = socket.create_connection(s.getsockname(), timeout=2); a, _ = s.accept(); c.sendall(b'ok'); "
            "print(a.recv(2).decode())")
    r = run(ContainerSpec(python_code=code))
    assert (r.exit_code, r.stdout) == (0, "ok\n"), r.stderr


def test_user_network_names_and_the_default_bridge_without_names(labnet: str) -> None:
    web = start(ContainerSpec(command=HTTPD, name="web", network=labnet))
    _wait_http(web)
    r = run(ContainerSpec(command=("sh", "-c", "busybox wget -q -O - http://web/hostname; getent hosts web"),
                          network=labnet, name="client"))
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == open("/etc/hostname").read().strip()  # web serves the host image's /etc
    assert _in(lines[1].split()[0], labnet) and "web" in lines[1].split()
    other = start(ContainerSpec(command=HTTPD, name="other", network="bridge"))
    _wait_http(other)
    ip = net.endpoints_of(other.id)[0].address
    r = run(ContainerSpec(command=("sh", "-c", f"getent hosts other || echo no-name; busybox wget -q -O - "
                                               f"http://{ip}/hostname >/dev/null && echo by-ip"), network="bridge"))
    assert r.stdout.split() == ["no-name", "by-ip"]


def test_published_port_reachable_from_host_loopback(labnet: str) -> None:
    web = start(ContainerSpec(command=HTTPD, name="pub", network=labnet, publish=(("127.0.0.1", 0, 80, "tcp"),)))
    _wait_http(web)
    pubs = [p for p in net.publications() if p.container_id == web.id]
    assert len(pubs) == 1 and pubs[0].container_port == 80
    with socket.create_connection(("127.0.0.1", pubs[0].host_port), timeout=3) as s:
        s.sendall(b"GET /hostname HTTP/1.0\r\n\r\n")
        assert s.recv(64).startswith(b"HTTP/1.")
    with pytest.raises(LaunchError, match="port"):
        run(ContainerSpec(command=("true",), network=labnet, publish=(("127.0.0.1", pubs[0].host_port, 80, "tcp"),)))


def test_connect_and_disconnect_a_running_container(labnet: str) -> None:
    c = start(ContainerSpec(command=("sleep", "30"), name="late"))
    assert c.exec(["ls", "/sys/class/net"]).stdout.split() == ["lo"]
    ep = net.attach(labnet, c.pid1, c.id, name="late", owner_pid=os.getpid())
    assert c.exec(["ls", "/sys/class/net"]).stdout.split() == ["eth0", "lo"]
    assert _in(ep.address, labnet)
    net.detach(labnet, c.id)
    assert c.exec(["ls", "/sys/class/net"]).stdout.split() == ["lo"]


def test_unknown_network_is_one_clear_error_and_nothing_is_made() -> None:
    with pytest.raises(LaunchError, match="no-such-net"):
        run(ContainerSpec(command=("true",), network="no-such-net"))
    assert not any(v.startswith("pcv") for v in set(_links("veth")) - other_state_dirs_links())


@pytest.mark.slow
def test_fifty_containers_leave_nothing(labnet: str) -> None:
    for i in range(50):
        r = run(ContainerSpec(command=("true",), network=labnet, name=f"c{i}"))
        assert r.exit_code == 0
    settle()
    # What is kept ready for the next container (a holder with its endpoint reserved on labnet) is dropped
    # first: that it leaves nothing is tests/test_prepared_endpoint.py's.
    pool.drain()
    assert net.get_network(labnet).endpoints == () and net.get_network(labnet).reserved == ()
    assert not any(v.startswith("pcv") for v in set(_links("veth")) - other_state_dirs_links())
    assert not os.listdir(os.path.join(net.state.state_dir(), "hosts")) if os.path.isdir(
        os.path.join(net.state.state_dir(), "hosts")) else True


def test_expose_documents_without_publishing(labnet: str) -> None:
    c = start(ContainerSpec(command=("sleep", "30"), name="doc", network=labnet, expose=("80/tcp",)))
    ep = net.endpoints_of(c.id)[0]
    assert ep.exposed == ("80/tcp",) and not [p for p in net.publications() if p.container_id == c.id]


def test_outbound_nat_only_when_asked_and_removed_with_the_network() -> None:
    """The rule is checked, not exercised: no traffic leaves this machine."""
    from pycontainer_magics.network import nat

    if subprocess.run(["which", "iptables"], capture_output=True).returncode:
        pytest.skip("iptables is not installed")
    plain = net.create_network("nonat", subnet=free_subnet(), owner_pid=os.getpid())
    assert _ours(nat.rules()) == []  # host-only unless asked
    withnat = net.create_network("withnat", subnet=free_subnet(), nat=True, owner_pid=os.getpid())
    (rule,) = _ours(nat.rules())
    assert f"-s {withnat.subnet}" in rule and f"! -o {withnat.bridge}" in rule and "MASQUERADE" in rule
    net.remove_network("withnat")
    net.remove_network(plain.name)
    assert _ours(nat.rules()) == []


def test_prune_removes_a_nat_rule_whose_network_is_gone() -> None:
    from pycontainer_magics.network import nat

    if subprocess.run(["which", "iptables"], capture_output=True).returncode:
        pytest.skip("iptables is not installed")
    n = net.create_network("natgone", subnet=free_subnet(), nat=True, owner_pid=os.getpid())
    os.unlink(os.path.join(net.state.networks_dir(), "natgone.json"))  # as if a crash lost the record
    assert "NAT rule of natgone" in net.prune()
    assert _ours(nat.rules()) == []
    net.links.delete_link(n.bridge)



def test_a_removed_container_has_left_its_network_at_once(labnet: str) -> None:
    """After `%container rm -f` the network no longer lists the container, so it can be removed right away
    (the network clean-up itself runs in the background: rm waits for it)."""
    for _ in range(5):
        c = start(ContainerSpec(command=("sleep", "30"), name="gone", network=labnet))
        containers.remove(c.id, force=True)
        assert net.get_network(labnet).endpoints == ()


REACH = ("import socket, sys\n"
         "try:\n    socket.create_connection((sys.argv[1], 80), timeout=float(sys.argv[2])).close(); print('reached')\n"
         "except OSError as e:\n    print('blocked', type(e).__name__)\n")


def test_networks_are_isolated_from_each_other(labnet: str) -> None:
    """As Docker's: the host would route between two bridges; a container on another network (the
    default bridge here) must not reach one on labnet by address, while one on labnet does."""
    from pycontainer_magics.network import isolation

    web = start(ContainerSpec(command=HTTPD, name="iso-web", network=labnet))
    _wait_http(web)
    ip = net.endpoints_of(web.id)[0].address
    # (the blocked one waits out its timeout, its SYN dropped: 1 s; the one that must connect gets 10 s)
    same = run(ContainerSpec(command=("python3", "-c", REACH, ip, "10"), network=labnet))
    other = run(ContainerSpec(command=("python3", "-c", REACH, ip, "1"), network="bridge"))
    assert same.stdout == "reached\n" and other.stdout.startswith("blocked"), (same.stdout, other.stdout)
    assert {r.split('"')[1].split(":")[1] for r in _ours(isolation.rules())} == {labnet, "bridge"}
    # rules whose bridge is gone from the host (a killed kernel's) are pruned; the others stay, whatever
    # state directory the pruning process uses
    net.remove_network("bridge", force=True)
    isolation.add("pcm-orphan", "pcm-", "orphan-net")
    links = {line.split(":")[1].strip().split("@")[0] for line in subprocess.run(
        ["ip", "-o", "link"], capture_output=True, text=True).stdout.splitlines()}
    assert isolation.prune(links) == ["orphan-net"]
    assert {r.split('"')[1].split(":")[1] for r in _ours(isolation.rules())} == {labnet}


def test_a_container_whose_setup_fails_leaves_its_network() -> None:
    """A PID 1 that fails its set-up after the network was attached (here: a file bound over a directory):
    its endpoint must go, or it keeps its address and its name on the network — the next container of that
    name was refused ("name 'web' is already in use on network ...") until a prune."""
    from pycontainer_magics.runtime.spec import Mount

    labnet = net.create_network(f"failnet{os.getpid() % 10000}", owner_pid=os.getpid()).name  # a free subnet
    try:
        spec = ContainerSpec(command=("true",), network=labnet, name="web",
                             mounts=(Mount("/etc/hostname", "/bin", read_only=True),))
        for _ in range(2):  # the second would be refused if the first had left its name behind
            with pytest.raises(LaunchError, match="mount"):
                run(spec)
            settle()
            assert [e.name for e in net.get_network(labnet).endpoints] == []
        assert run(ContainerSpec(command=("true",), network=labnet, name="web")).exit_code == 0
        settle()
    finally:
        net.remove_network(labnet, force=True)
