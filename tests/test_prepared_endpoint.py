"""A network endpoint prepared ahead (pool._reserve, network.reserve/claim/release): after two containers in a
row on one network, the next namespace holder gets its veth, address and route on that network before the next
run asks — reserved, nobody's — and a run on that network claims it instead of attaching one on its path. A run
on no network or another one never finds it in its namespace; nothing of it outlives the pool, the network, or
a killed process. Traffic only between namespaces these tests create."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from helpers import host_clean, wait_for  # noqa: F401
from subnets import free_subnet

from pycontainer_magics import network as net
from pycontainer_magics.network import hosts as net_hosts
from pycontainer_magics.network.networks import is_ours, link_tag
from pycontainer_magics.runtime import ContainerSpec, run
from pycontainer_magics.runtime.cleanup import settle
from pycontainer_magics.runtime.pool import pool
from pycontainer_magics.runtime.run import ENDPOINT_PREPARED

pytestmark = [pytest.mark.root, pytest.mark.network, pytest.mark.usefixtures("host_clean"),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

MiB = 2**20


def _veths() -> set[str]:
    """Host veths of this state dir (others' tests run on this host at the same time)."""
    out = subprocess.run(["ip", "-o", "link", "show", "type", "veth"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()
            if is_ours(line.split(" alias ", 1)[-1].strip() if " alias " in line else None, link_tag())}


def sh(script: str, network: str, **kw: object):  # type: ignore[no-untyped-def]
    return run(ContainerSpec(command=("sh", "-c", script), network=network, memory=64 * MiB, **kw))  # type: ignore[arg-type]


def claimed(r) -> bool:  # type: ignore[no-untyped-def]
    return any(label == ENDPOINT_PREPARED for label, _ in r.timeline)


def _reserved_on(network: str) -> net.Endpoint:
    """Two runs in a row on `network`, then the endpoint the pool reserves for the next."""
    pool.drain()
    first = sh("true", network)
    assert (first.exit_code, claimed(first)) == (0, False)  # nothing prepared: attached on its path
    assert sh("true", network).exit_code == 0
    assert wait_for(lambda: pool._ready is not None and pool._ready.endpoint is not None, 30)
    assert pool._ready is not None and pool._ready.endpoint is not None
    return pool._ready.endpoint


@pytest.fixture
def labnet():  # type: ignore[no-untyped-def]
    n = net.create_network(f"prep{os.getpid() % 10000}", subnet=free_subnet(), owner_pid=os.getpid())
    yield n.name
    settle()
    pool.drain()
    try:
        net.remove_network(n.name, force=True)
    except net.NetworkNotFound:
        pass
    assert _veths() == set()


def test_the_next_container_on_a_network_claims_the_endpoint_prepared_for_it(labnet: str) -> None:
    res = _reserved_on(labnet)
    # Reserved: its veth is up on the host, its address taken; but it is nobody's — no container, no hosts entry.
    record = net.get_network(labnet)
    assert res in record.reserved and record.endpoints == ()
    assert res.host_veth in _veths()
    third = sh("cat /etc/hosts; cat /sys/class/net/eth0/operstate", labnet, name="third")
    assert claimed(third), third.timeline
    assert third.exit_code == 0, third.stderr
    assert f"{res.address}\tthird" in third.stdout and third.stdout.endswith("up\n"), third.stdout
    assert third.notes[0] == f"network {labnet}: {res.address} on eth0"
    # The run's own endpoint now (listed, named), left with the run; the pool reserves the next one.
    settle()
    assert wait_for(lambda: pool._ready is not None and pool._ready.endpoint is not None, 30)
    assert pool._ready is not None and pool._ready.endpoint is not None
    nxt = pool._ready.endpoint
    assert net.get_network(labnet).endpoints == () and res.host_veth not in _veths()
    assert net.get_network(labnet).reserved == (nxt,) and nxt.host_veth in _veths()
    # Dropping what is prepared gives the reservation back: veth, address, hosts file.
    pool.drain()
    assert net.get_network(labnet).reserved == () and nxt.host_veth not in _veths()
    assert not os.path.exists(net_hosts.hosts_path(nxt.container_id))


def test_a_run_on_no_network_or_another_never_finds_the_prepared_endpoint(labnet: str) -> None:
    res = _reserved_on(labnet)
    alone = run(ContainerSpec(command=("cat", "/proc/net/dev"), network="none", memory=64 * MiB))
    assert alone.exit_code == 0 and "eth0" not in alone.stdout and "lo:" in alone.stdout, alone.stdout
    settle()  # the holder it did not take goes in the background, its reservation with it
    assert wait_for(lambda: res.host_veth not in _veths(), 30)
    assert net.get_network(labnet).reserved == ()
    other = net.create_network(f"othr{os.getpid() % 10000}", subnet=free_subnet(), owner_pid=os.getpid())
    try:
        res = _reserved_on(labnet)
        there = sh("cat /proc/net/dev", other.name)
        assert there.exit_code == 0 and not claimed(there)
        assert there.notes[0].startswith(f"network {other.name}: ")
        settle()
        assert wait_for(lambda: res.host_veth not in _veths(), 30)
        assert net.get_network(labnet).reserved == ()
    finally:
        settle()
        pool.drain()
        net.remove_network(other.name, force=True)


def test_a_network_removed_under_a_reservation_goes_and_is_not_made_again(labnet: str) -> None:
    res = _reserved_on(labnet)
    net.remove_network(labnet)  # no container on it: a reservation does not keep it in use
    assert res.host_veth not in _veths()
    assert labnet not in {n.name for n in net.list_networks()}
    # Made again under the same name: the holder's reservation is gone, the run attaches afresh.
    net.create_network(labnet, subnet=free_subnet(), owner_pid=os.getpid())
    again = sh("cat /proc/net/dev", labnet)
    assert again.exit_code == 0 and not claimed(again) and "eth0" in again.stdout
    settle()
    pool.drain()
    # The default bridge, removed while a reservation on it was being made, is not made again by it.
    if any(n.name == "bridge" for n in net.list_networks()):
        net.remove_network("bridge", force=True)
    for _ in range(2):
        sh("true", "bridge")
    net.remove_network("bridge", force=True)
    settle()
    pool.drain()
    assert "bridge" not in {n.name for n in net.list_networks()}


EXITS = """
import sys, time
from pycontainer_magics.runtime import run, ContainerSpec
from pycontainer_magics.runtime.pool import pool
for _ in range(2):
    run(ContainerSpec(command=('true',), network=sys.argv[1], memory=64 * 2**20))
while pool._ready is None or pool._ready.endpoint is None:
    time.sleep(0.01)
print(pool._ready.endpoint.host_veth, pool._ready.endpoint.container_id, flush=True)
"""
KILLED = EXITS + "time.sleep(60)\n"  # the same, then it stays until killed


def test_a_killed_process_leaves_no_prepared_endpoint(labnet: str) -> None:
    p = subprocess.Popen([sys.executable, "-c", KILLED, labnet], stdout=subprocess.PIPE, text=True)
    try:
        veth, rid = p.stdout.readline().split()  # type: ignore[union-attr]
        assert veth in _veths() and [e.container_id for e in net.get_network(labnet).reserved] == [rid]
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
        p.stdout.close()  # type: ignore[union-attr]
    # The holder dies with its parent, its network namespace and the veth pair with it; the record of the
    # reservation is what the next prune removes (its owner is gone).
    assert wait_for(lambda: veth not in _veths(), 30)
    net.prune(networks=False)
    assert net.get_network(labnet).reserved == ()
    assert not os.path.exists(net_hosts.hosts_path(rid))


def test_cells_alternating_between_a_network_and_none_keep_their_prepared_holder(labnet: str) -> None:
    """Neither kind is "like the last": nothing is parked or reserved for it, so the holder prepared after
    each (the same namespaces and root) serves the next — none is made on a cell's path. (A PID 1 parked
    for a cell on none, after a cell on a network, could not serve the next networked cell: it made one.)"""
    pool.drain()
    sh("true", "none")
    for _ in range(3):
        sh("true", labnet)
        sh("true", "none")
    made = pool.served["made"]
    for _ in range(3):
        on = sh("true", labnet)
        off = sh("true", "none")
        assert not claimed(on) and on.exit_code == off.exit_code == 0
    assert pool.served["made"] == made


def test_a_process_that_exits_gives_its_reservation_back(labnet: str) -> None:
    """On a network another process made (not removed at this one's exit): the exit's clean-up releases the
    reservation — veth, record and hosts file — with no prune needed."""
    out = subprocess.run([sys.executable, "-c", EXITS, labnet], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    veth, rid = out.stdout.split()
    assert veth not in _veths()
    assert net.get_network(labnet).reserved == ()
    assert not os.path.exists(net_hosts.hosts_path(rid))
