"""A network endpoint prepared ahead (pool._reserve, network.reserve/claim/release): after two containers in a
row on one network, the next namespace holder gets its veth, address and route on that network before the next
run asks — reserved, nobody's — and a run on that network claims it instead of attaching one on its path. Cells
rotating between networks (none, one, another) find a spare holder per network used lately, each with its own
reservation. A run on no network or another one never finds it in its namespace; nothing of it outlives the pool,
the network, an idle while, the process's exit, or a killed process. Traffic only between namespaces these tests
create."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
from helpers import host_clean, wait_for  # noqa: F401
from subnets import free_subnet

from pycontainer_magics import network as net
from pycontainer_magics.linux.proc import alive
from pycontainer_magics.network import hosts as net_hosts
from pycontainer_magics.network.networks import RESERVATION_PREFIX, is_ours, link_tag
from pycontainer_magics.runtime import ContainerSpec, run
from pycontainer_magics.runtime import pool as pool_module
from pycontainer_magics.runtime.cleanup import settle
from pycontainer_magics.runtime.pool import COMMAND, PYTHON, pool, prepared, release
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


def prepared_ahead(r) -> bool:  # type: ignore[no-untyped-def]
    return any(label.startswith("PID 1 was prepared ahead") for label, _ in r.timeline)


def _ready(network: str | None, kind: str = COMMAND):  # type: ignore[no-untyped-def]
    """The holder kept for the next run of `kind` on `network` (pool slot), or None."""
    return pool.holders().get((network, kind))


def _reserved_on(network: str) -> net.Endpoint:
    """Two runs in a row on `network`, then the endpoint the pool reserves for the next."""
    pool.drain()
    first = sh("true", network)
    assert (first.exit_code, claimed(first)) == (0, False)  # nothing prepared: attached on its path
    assert sh("true", network).exit_code == 0
    assert wait_for(lambda: _ready(network) is not None and _ready(network).endpoint is not None, 30)
    return _ready(network).endpoint  # type: ignore[no-any-return]


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


def test_a_run_whose_prepared_holder_dies_before_its_order_is_on_the_network_still(
        labnet: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The run claims the endpoint prepared in a pooled holder; the holder dies before it gets the run (its parked
    # PID 1 with it), so the run takes a fresh holder: the endpoint claimed went with the dead one's namespace, and
    # the fresh one is attached afresh — the container is on the network, under its name, and nothing stays behind.
    import importlib

    from pycontainer_magics.linux.proc import children

    R = importlib.import_module("pycontainer_magics.runtime.run")
    _reserved_on(labnet)
    real, lost = R._send_order, []

    def lose_the_holder_first(h, *args):  # type: ignore[no-untyped-def]
        if not lost:
            lost.append(h.pid)
            kin = children(h.pid)  # (its parked PID 1: dies with it)
            os.kill(h.pid, signal.SIGKILL)
            assert wait_for(lambda: not alive(h.pid) and not any(alive(p) for p in kin), 10)
        return real(h, *args)

    monkeypatch.setattr(R, "_send_order", lose_the_holder_first)
    r = sh("cat /etc/hosts; cat /sys/class/net/eth0/operstate", labnet, name="phoenix")
    monkeypatch.undo()
    assert lost and claimed(r), r.timeline
    assert r.exit_code == 0, r.stderr
    (note,) = [n for n in r.notes if n.startswith("network ")]
    address = note.split(": ", 1)[1].split(" on ")[0]
    assert f"{address}\tphoenix" in r.stdout and r.stdout.endswith("up\n"), r.stdout
    settle()
    assert net.get_network(labnet).endpoints == ()


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
    assert wait_for(lambda: _ready(labnet) is not None and _ready(labnet).endpoint is not None, 30)
    nxt = _ready(labnet).endpoint
    assert net.get_network(labnet).endpoints == () and res.host_veth not in _veths()
    assert net.get_network(labnet).reserved == (nxt,) and nxt.host_veth in _veths()
    # Dropping what is prepared gives the reservation back: veth, address, hosts file.
    pool.drain()
    assert net.get_network(labnet).reserved == () and nxt.host_veth not in _veths()
    assert not os.path.exists(net_hosts.hosts_path(nxt.container_id))


def test_a_cell_in_a_running_loop_claims_its_endpoint_without_a_thread(labnet: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A notebook kernel runs cells inside its asyncio loop, where pyroute2 refuses to run its own: the network
    functions that use it run in a thread of their own there (network/_offloop.py). Claiming an endpoint prepared
    ahead makes no netlink request, and starts no thread on the cell's path."""
    import asyncio
    import threading

    from pycontainer_magics.network import networks

    _reserved_on(labnet)
    claimed_in: list[str] = []
    real_save = networks._save

    def save(net):  # type: ignore[no-untyped-def]
        if sys._getframe(1).f_code.co_name == "claim":
            claimed_in.append(threading.current_thread().name)
        real_save(net)

    monkeypatch.setattr(networks, "_save", save)

    async def cell():  # type: ignore[no-untyped-def]
        return sh("true", labnet)

    r = asyncio.run(cell())
    assert (r.exit_code, claimed(r)) == (0, True), (r.stderr, r.timeline)
    assert claimed_in == [threading.current_thread().name], claimed_in


def test_a_run_on_no_network_or_another_never_finds_the_prepared_endpoint(labnet: str) -> None:
    res = _reserved_on(labnet)
    alone = run(ContainerSpec(command=("cat", "/proc/net/dev"), network="none", memory=64 * MiB))
    assert alone.exit_code == 0 and "eth0" not in alone.stdout and "lo:" in alone.stdout, alone.stdout
    settle()  # the holder it did not take stays kept for the next run on its network, reserved, nobody's
    assert net.get_network(labnet).reserved == (res,) and net.get_network(labnet).endpoints == ()
    pool.drain()
    assert wait_for(lambda: res.host_veth not in _veths(), 30)
    assert net.get_network(labnet).reserved == ()
    other = net.create_network(f"othr{os.getpid() % 10000}", subnet=free_subnet(), owner_pid=os.getpid())
    try:
        res = _reserved_on(labnet)
        there = sh("cat /proc/net/dev", other.name)
        assert there.exit_code == 0 and not claimed(there)
        assert there.notes[0].startswith(f"network {other.name}: ")
        assert res.address not in there.notes[0]
        settle()
        assert net.get_network(labnet).reserved == (res,)  # still labnet's, for its next run
        pool.drain()
        assert wait_for(lambda: res.host_veth not in _veths(), 30)
        assert net.get_network(labnet).reserved == ()
    finally:
        settle()
        pool.drain()
        net.remove_network(other.name, force=True)


def test_a_run_that_publishes_a_port_claims_its_endpoint_and_publishes_there(labnet: str) -> None:
    """-p on a network with an endpoint prepared ahead: the claimed endpoint is the one the port goes to (not a
    second attach, which would find the run on the network already)."""
    res = _reserved_on(labnet)
    r = sh("cat /sys/class/net/eth0/operstate", labnet, publish=(("127.0.0.1", 0, 80, "tcp"),))
    assert (r.exit_code, claimed(r)) == (0, True), (r.stderr, r.error, r.timeline)
    assert r.notes[0].startswith(f"network {labnet}: {res.address} on eth0, 127.0.0.1:"), r.notes
    settle()
    assert net.publications(r.id) == []


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
deadline = time.monotonic() + 30
while (h := pool.holders().get((sys.argv[1], "command"))) is None or h.endpoint is None:
    if time.monotonic() > deadline:
        sys.exit(f"not prepared: {pool.holders()}")
    time.sleep(0.01)
print(h.endpoint.host_veth, h.endpoint.container_id, flush=True)
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


def test_cells_alternating_between_a_network_and_none_find_their_holders_ready(labnet: str) -> None:
    """Neither kind is "like the last", but both were used lately: the holder prepared after a cell on the network
    (its endpoint reserved) is kept as that network's spare while a cell on none runs, and the other way round —
    every networked cell claims its endpoint, none is made on a cell's path, and a cell on none never sees a veth.
    (A PID 1 is parked for neither: one parked for a cell on none could not serve the next networked cell.)"""
    pool.drain()
    sh("true", "none")
    for _ in range(2):
        sh("true", labnet)
        sh("true", "none")
    made = pool.served["made"]
    for _ in range(3):
        on = sh("cat /proc/net/dev", labnet)
        off = sh("cat /proc/net/dev", "none")
        assert claimed(on) and on.exit_code == off.exit_code == 0, on.timeline
        assert "eth0" in on.stdout and "eth0" not in off.stdout, off.stdout
    assert pool.served["made"] == made


def test_python_and_shell_cells_alternating_on_a_network_each_find_their_kind_ready(labnet: str) -> None:
    """python, command, python, command on one network: the pool keeps a slot per kind there. Every command is
    served by a PID 1 parked in a cgroup of its own — kept while the Python cell before it ran — and every cell of
    either kind claims an endpoint reserved for it; a Python cell never runs in the cgroup a PID 1 waits in.
    release() leaves no holder, parked PID 1, cgroup, veth or reservation."""
    from pycontainer_magics.linux.proc import children

    def py():  # type: ignore[no-untyped-def]
        return run(ContainerSpec(python_code="import os; print(sorted(os.listdir('/sys/class/net')))",
                                 network=labnet, memory=64 * MiB), python_globals={})

    pool.drain()
    for _ in range(2):  # the first of each kind on the network, then the first with it used lately
        assert py().exit_code == 0 and sh("true", labnet).exit_code == 0
    made = pool.served["made"]
    for _ in range(2):
        settle()
        assert wait_for(lambda: _ready(labnet) is not None and _ready(labnet).parked is not None
                        and _ready(labnet).endpoint is not None and _ready(labnet, PYTHON) is not None
                        and _ready(labnet, PYTHON).endpoint is not None, 30), pool.holders()
        waiting_in = _ready(labnet).parked_cgroup
        cell = py()
        assert (cell.exit_code, cell.stdout) == (0, "['eth0', 'lo']\n"), cell.stdout + cell.stderr
        assert claimed(cell) and cell.id != waiting_in, cell.timeline
        cmd = sh("echo $$; cat /proc/net/dev", labnet)
        assert cmd.exit_code == 0 and cmd.stdout.startswith("1\n") and "eth0" in cmd.stdout, cmd.stdout
        assert prepared_ahead(cmd) and claimed(cmd) and cmd.id == waiting_in, cmd.timeline
    assert pool.served["made"] == made
    settle()
    assert wait_for(lambda: len(pool.holders()) == 2 and all(h.endpoint for h in pool.holders().values()), 30)
    holders = [h.pid for h in pool.holders().values()]
    parked = [c for pid in holders for c in children(pid)]
    dirs = [d for p in prepared() for d in p.paths]
    assert len(parked) == 1 and len(dirs) >= 2, (parked, dirs)
    release()
    settle()
    assert wait_for(lambda: not any(alive(pid) for pid in holders + parked), 10)
    assert not any(os.path.isdir(d) for d in dirs), dirs
    assert _veths() == set() and net.get_network(labnet).reserved == ()


def _rotate(kinds: list[str], times: int) -> list:  # type: ignore[type-arg]
    return [sh("cat /proc/net/dev; ip -o -4 addr show" if k != "none" else "cat /proc/net/dev", k)
            for _ in range(times) for k in kinds]


def test_cells_rotating_between_networks_each_claim_an_endpoint_on_their_own(labnet: str) -> None:
    """none, one network, another, in turn (no cell like the last): one holder per network used lately is kept
    (pool.SPARES besides the one for a run like the last), each with its endpoint reserved on ITS network. A cell
    claims the one on its network — never one reserved on another, whose address it would carry."""
    other = net.create_network(f"othr{os.getpid() % 10000}", subnet=free_subnet(), owner_pid=os.getpid())
    try:
        pool.drain()
        kinds = ["none", labnet, other.name]
        _rotate(kinds, 3)  # each kind used lately: reserved from the second use, kept as a spare from the third
        made = pool.served["made"]
        for r, kind in zip(_rotate(kinds, 2), kinds * 2, strict=True):
            assert r.exit_code == 0, r.stderr
            if kind == "none":
                assert "eth0" not in r.stdout and not claimed(r)
                continue
            assert claimed(r), (kind, r.timeline)
            address = r.notes[0].split(": ")[1].split()[0]
            assert r.notes[0].startswith(f"network {kind}: ")
            subnet = net.get_network(kind).subnet
            assert ipaddress.IPv4Address(address) in subnet, (address, subnet)
            assert f"inet {address}/{subnet.prefixlen}" in r.stdout, r.stdout  # the container carries it
            assert r.stdout.count("eth0:") == 1 and "eth1" not in r.stdout, r.stdout  # one endpoint, its own
        assert pool.served["made"] == made  # every cell found a holder ready
        # What is kept: the holder for a run like the last and a spare per other network used lately, each with
        # an endpoint reserved on its own network; nothing is listed as a member of either network.
        settle()
        assert wait_for(lambda: len(_held()) == 3, 10), _held()
        by_net = {name: [e.host_veth for e in net.get_network(name).reserved] for name in (labnet, other.name)}
        assert all(len(v) == 1 for v in by_net.values()), by_net
        assert {v[0] for v in by_net.values()} == _veths()
        assert net.get_network(labnet).endpoints == net.get_network(other.name).endpoints == ()
        # Dropping what is prepared (the extension unloaded, the kernel exiting) gives every reservation back.
        held = [pid for pid, _ in _held()]
        release()
        settle()
        assert _veths() == set()
        assert net.get_network(labnet).reserved == net.get_network(other.name).reserved == ()
        assert wait_for(lambda: not any(alive(pid) for pid in held), 5), held
    finally:
        settle()
        pool.drain()
        net.remove_network(other.name, force=True)


def test_a_spare_unused_for_a_while_is_let_go(labnet: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A network used lately keeps a holder and an endpoint on the host: after pool.SPARE_IDLE seconds unused,
    both go (veth, reservation, hosts file, the holder's process, the cgroup its PID 1 waited in) — all but the
    slot asked for last (none's, here)."""
    pool.drain()
    for _ in range(2):
        sh("true", labnet)
        sh("true", "none")
    settle()
    assert wait_for(lambda: _ready(labnet) is not None and _ready(labnet).endpoint is not None
                    and _ready(None) is not None, 30)
    with pool._lock:  # (idle made short only now: on a loaded machine the spare could go before it was seen)
        spare, cg = pool._slots[(labnet, COMMAND)].holder, pool._slots[(labnet, COMMAND)].cgroup
        monkeypatch.setattr(pool_module, "SPARE_IDLE", 1.5)
        pool._work.notify_all()  # the worker's wait counts from the new idle time
    assert spare is not None and spare.endpoint is not None and spare.endpoint.host_veth in _veths()
    assert cg is not None and spare.parked_cgroup == cg[1].name  # (parked after the first run on it)
    dirs = set(cg[1].paths.values())
    rid = spare.endpoint.container_id
    assert wait_for(lambda: (labnet, COMMAND) not in pool._slots, 10)
    assert (None, COMMAND) in pool._slots  # the one asked for last stays
    settle()
    assert wait_for(lambda: not alive(spare.pid), 5)
    assert _veths() == set() and net.get_network(labnet).reserved == ()
    assert not os.path.exists(net_hosts.hosts_path(rid))
    assert not any(os.path.isdir(d) for d in dirs)


def test_at_most_one_plus_spares_networks_keep_what_is_prepared(labnet: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What is kept is bounded: slots for at most 1 + SPARES networks; the one filled least recently goes, with its
    holder and its endpoint (here SPARES = 1: none, labnet, another in turn keep only the last two)."""
    monkeypatch.setattr(pool_module, "SPARES", 1)
    other = net.create_network(f"othr{os.getpid() % 10000}", subnet=free_subnet(), owner_pid=os.getpid())
    try:
        pool.drain()
        _rotate(["none", labnet, other.name], 2)  # each used lately from its second run: reserved
        settle()
        assert wait_for(lambda: set(pool.holders()) == {(labnet, COMMAND), (other.name, COMMAND)}, 30), pool.holders()
        assert wait_for(lambda: all(h.endpoint for h in pool.holders().values()), 30), pool.holders()
        sh("true", "none")  # none's slot again: labnet's, the least recently filled, goes
        settle()
        assert wait_for(lambda: set(pool.holders()) == {(None, COMMAND), (other.name, COMMAND)}, 30), pool.holders()
        assert wait_for(lambda: net.get_network(labnet).reserved == (), 10)
        assert len(net.get_network(other.name).reserved) == 1
    finally:
        settle()
        pool.drain()
        net.remove_network(other.name, force=True)


def test_a_spare_that_cannot_serve_a_run_on_its_network_gives_its_address_back() -> None:
    """A spare reserved on a network for one plan, and a run there with another plan: the spare's address is
    given back before the run attaches (on a subnet with no other address left the run would otherwise fail
    with "no free address left" for as long as the spare lived): the run gets that very address."""
    n = net.create_network(f"tiny{os.getpid() % 10000}", subnet=free_subnet(29), owner_pid=os.getpid())
    try:
        pool.drain()
        for kind in (n.name, "none", n.name, "none"):
            assert sh("true", kind).exit_code == 0
        settle()
        assert wait_for(lambda: _ready(n.name) is not None and _ready(n.name).endpoint is not None, 30)
        spare_ep = _ready(n.name).endpoint
        assert spare_ep is not None and net.get_network(n.name).reserved == (spare_ep,)
        r = sh("cat /proc/net/dev", n.name, read_only=True)  # another plan: not the spare's
        assert r.exit_code == 0 and "eth0" in r.stdout and not claimed(r), r.stderr
        assert r.notes[0] == f"network {n.name}: {spare_ep.address} on eth0", (r.notes, spare_ep)
    finally:
        settle()
        pool.drain()
        net.remove_network(n.name, force=True)


@contextlib.contextmanager
def full_small_network() -> Iterator[tuple[str, net.Endpoint]]:
    """A /29 network on which, after two commands there, the pool holds one address ahead (yielded with the
    network's name) and every other address is taken by endpoints in namespaces of this test's own."""
    n = net.create_network(f"tiny{os.getpid() % 10000}", subnet=free_subnet(29), owner_pid=os.getpid())
    fillers: list[tuple[subprocess.Popen[bytes], net.Endpoint]] = []
    try:
        pool.drain()
        for _ in range(2):
            assert sh("true", n.name).exit_code == 0
        settle()
        assert wait_for(lambda: _ready(n.name) is not None and _ready(n.name).endpoint is not None, 30)
        held = _ready(n.name).endpoint
        own = os.stat("/proc/self/ns/net").st_ino
        for _ in range(8):
            p = subprocess.Popen(["unshare", "--net", "sleep", "60"])
            assert wait_for(lambda p=p: os.stat(f"/proc/{p.pid}/ns/net").st_ino != own, 10)  # type: ignore[misc]
            try:
                fillers.append((p, net.reserve(n.name, p.pid, owner_pid=os.getpid())))
            except net.AddressExhausted:
                p.kill()
                p.wait()
                break
        assert net.get_network(n.name).reserved[0] == held and len(fillers) >= 1
        yield n.name, held
    finally:
        for p, ep in fillers:
            net.release(n.name, ep.container_id)
            p.kill()
            p.wait()
        settle()
        pool.drain()
        net.remove_network(n.name, force=True)


def test_addresses_held_for_runs_of_the_other_kind_are_given_back_to_a_run_that_finds_none() -> None:
    """The pool keeps a reservation per kind on a network: on a small subnet, a run there that can take neither
    (here a read-only Python cell, after commands) and finds no free address gets one the pool held — it is given
    back, and the run tries once more — rather than failing with "no free address left"."""
    with full_small_network() as (name, held):
        r = run(ContainerSpec(python_code="print('ok')", network=name, memory=64 * MiB, read_only=True),
                python_globals={})
        assert (r.exit_code, r.stdout) == (0, "ok\n"), (r.stderr, r.error)
        assert not claimed(r) and r.notes[0] == f"network {name}: {held.address} on eth0", (r.notes, held)


def test_addresses_held_ahead_are_given_back_to_a_run_that_joins_the_network_as_an_extra_one(labnet: str) -> None:
    """As above, for a network a run joins besides its own (--network A --network B): on a full small subnet it gets
    the address the pool held there instead of failing with "no free address left"."""
    with full_small_network() as (name, _held):
        r = sh("cat /proc/net/dev", labnet, extra_networks=(name,))
        assert r.exit_code == 0 and "eth1" in r.stdout, (r.stderr, r.error)


def test_a_pid1_parked_for_one_network_is_not_a_run_on_another_s(labnet: str) -> None:
    """The cgroup in which a PID 1 waits for a run on `labnet` has the same park key as one for a run on another
    network (a hosts file is all a network adds): a run on another network must not take that cgroup, with that
    PID 1 still in it (it would count in its pids, and the run would carry the reservation's id)."""
    other = net.create_network(f"othr{os.getpid() % 10000}", subnet=free_subnet(), owner_pid=os.getpid())
    try:
        pool.drain()
        for _ in range(3):
            sh("true", labnet)
        settle()
        assert wait_for(lambda: _ready(labnet) is not None and _ready(labnet).parked is not None
                        and _ready(labnet).endpoint is not None, 30)
        rid = _ready(labnet).endpoint.container_id
        r = sh("cat /sys/fs/cgroup/pids/pids.current 2>/dev/null || cat /sys/fs/cgroup/pids.current", other.name)
        assert r.exit_code == 0, r.stderr
        assert r.id != rid
        assert r.stdout.strip() in ("1", "2"), r.stdout  # sh (and cat): no parked PID 1 beside them
    finally:
        settle()
        pool.drain()
        net.remove_network(other.name, force=True)


def test_a_reservation_for_a_pid1_not_parked_after_all_has_an_id_of_its_own(labnet: str,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """After runs in a row on a network the endpoint is reserved under the next cgroup's name, for the PID 1
    parked there. When the park does not happen (a spec that no longer plans...), that name would also be the id
    of whatever run takes the cgroup — on another network its hosts file and veth name would be the
    reservation's: the reservation is made again under an id of its own."""
    monkeypatch.setattr(pool_module, "_park", lambda *a, **k: None)  # every park fails, as _park swallows errors
    pool.drain()
    for _ in range(3):
        sh("true", labnet)
    settle()
    assert wait_for(lambda: _ready(labnet) is not None and _ready(labnet).endpoint is not None
                    and pool.ready_cgroup(labnet) is not None, 30)
    ready, cg = _ready(labnet), pool.ready_cgroup(labnet)
    assert ready.parked is None and cg is not None
    assert ready.endpoint.container_id != cg[1].name
    assert ready.endpoint.container_id.startswith(RESERVATION_PREFIX)
    assert net.get_network(labnet).reserved == (ready.endpoint,)  # the first one given back


def _held() -> list[tuple[int, str]]:
    """(pid, what) of the holders the pool keeps."""
    return [(p.pid, p.what) for p in prepared() if p.kind == "holder" and p.pid is not None]


ROTATES = """
import sys, time
from pycontainer_magics.runtime import run, ContainerSpec
from pycontainer_magics.runtime.pool import pool
for _ in range(3):
    for kind in ("none", sys.argv[1], sys.argv[2]):
        run(ContainerSpec(command=('true',), network=kind, memory=64 * 2**20))
deadline = time.monotonic() + 30
while len(eps := [h.endpoint for h in pool.holders().values() if h.endpoint is not None]) < 2:
    if time.monotonic() > deadline:
        sys.exit(f"not prepared: {pool.holders()}")
    time.sleep(0.01)
print(*(f"{e.network}/{e.host_veth}/{e.container_id}" for e in eps), flush=True)
"""


@pytest.mark.parametrize("killed", [False, True], ids=["exits", "killed"])
def test_a_process_that_rotated_networks_leaves_nothing(labnet: str, killed: bool) -> None:
    """The spares' reservations go at exit (the exit's clean-up releases them); when the process is killed, the
    holders die with it, their namespaces and veths with them, and the next prune removes the records."""
    other = net.create_network(f"othr{os.getpid() % 10000}", subnet=free_subnet(), owner_pid=os.getpid())
    try:
        script = ROTATES + ("time.sleep(60)\n" if killed else "")
        p = subprocess.Popen([sys.executable, "-c", script, labnet, other.name], stdout=subprocess.PIPE, text=True)
        try:
            eps = [e.split("/") for e in p.stdout.readline().split()]  # type: ignore[union-attr]
            assert sorted(n for n, _, _ in eps) == sorted([labnet, other.name]), eps
            if killed:  # (otherwise it is exiting already: its reservations on their way out)
                assert {v for _, v, _ in eps} <= _veths()
        finally:
            if killed:
                p.send_signal(signal.SIGKILL)
            p.stdout.close()  # type: ignore[union-attr]
            assert p.wait(60) == (-signal.SIGKILL if killed else 0)
        assert wait_for(lambda: _veths() == set(), 10), _veths()
        if killed:
            net.prune(networks=False)
        for name, _, rid in eps:
            assert net.get_network(name).reserved == ()
            assert not os.path.exists(net_hosts.hosts_path(rid))
    finally:
        net.remove_network(other.name, force=True)


def test_a_process_that_exits_gives_its_reservation_back(labnet: str) -> None:
    """On a network another process made (not removed at this one's exit): the exit's clean-up releases the
    reservation — veth, record and hosts file — with no prune needed."""
    out = subprocess.run([sys.executable, "-c", EXITS, labnet], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    veth, rid = out.stdout.split()
    assert veth not in _veths()
    assert net.get_network(labnet).reserved == ()
    assert not os.path.exists(net_hosts.hosts_path(rid))
