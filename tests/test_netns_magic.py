"""%netns through an IPython shell: networks (create, ls, inspect, connect, disconnect, rm), plain network
namespaces (create, ls, links, addrs, routes, veth, %%netns run, rm), the connectivity matrix."""

from __future__ import annotations

import ipaddress
import os

import pytest
from helpers import host_clean  # noqa: F401
from subnets import free_subnet

pytestmark = [pytest.mark.root, pytest.mark.network, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


@pytest.fixture(scope="module")
def ip():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "pycontainer_magics")
    return shell


@pytest.mark.usefixtures("host_clean")
def test_networks_from_the_magic(ip, capsys: pytest.CaptureFixture[str]) -> None:
    from IPython.core.error import UsageError

    from pycontainer_magics.runtime.cleanup import settle
    from pycontainer_magics.workloads.containers import containers

    subnet = free_subnet()
    ip.run_line_magic("netns", f"network create magicnet --subnet {subnet}")
    try:
        ls = ip.run_line_magic("netns", "network ls")
        assert list(ls[ls["name"] == "magicnet"]["subnet"]) == [str(subnet)]
        with pytest.raises(UsageError, match="overlaps"):
            ip.run_line_magic("netns", f"network create other --subnet {next(subnet.subnets(new_prefix=24))}")
        ip.run_cell_magic("container", "--detach --name m1 --network magicnet --expose 80 -- sh", "sleep 30")
        ip.run_cell_magic("container", "--detach --name m2 -- sh", "sleep 30")
        ip.run_line_magic("netns", "network connect magicnet m2")
        table = ip.run_line_magic("netns", "network inspect magicnet")
        assert sorted(table["name"]) == ["m1", "m2"] and list(table[table["name"] == "m1"]["exposed"]) == ["80/tcp"]
        addrs = ip.run_line_magic("netns", "addrs m2")
        assert any(ipaddress.ip_address(str(a).split("/")[0]) in subnet for a in addrs["address"])
        matrix = ip.run_line_magic("netns", "matrix m1 m2")
        assert bool(matrix.loc["m1", "m2"]) and bool(matrix.loc["m2", "m1"])
        ip.run_line_magic("netns", "network disconnect magicnet m2")
        assert list(ip.run_line_magic("netns", "network inspect magicnet")["name"]) == ["m1"]
        with pytest.raises(UsageError, match="attached"):
            ip.run_line_magic("netns", "network rm magicnet")
    finally:
        for c in containers.list():
            containers.remove(c.id, force=True)
        settle()
        ip.run_line_magic("netns", "network rm -f magicnet")
    assert "magicnet" not in list(ip.run_line_magic("netns", "network ls")["name"])


@pytest.mark.usefixtures("host_clean")
def test_plain_namespaces_from_the_magic(ip, capsys: pytest.CaptureFixture[str]) -> None:
    from IPython.core.error import UsageError

    ip.run_line_magic("netns", "create mns1")
    ip.run_line_magic("netns", "create mns2")
    try:
        assert {"mns1", "mns2"} <= set(ip.run_line_magic("netns", "ls")["name"])
        pair = ip.run_line_magic("netns", "veth mns1 mns2 --address1 10.77.0.1/24 --address2 10.77.0.2/24")
        assert len(pair) == 2
        links = ip.run_line_magic("netns", "links mns1")
        assert "lo" in list(links["name"]) and len(links) == 2
        capsys.readouterr()
        ip.run_cell_magic("netns", "run mns1", "busybox ping -c 1 -W 2 10.77.0.2 >/dev/null && echo reached")
        assert capsys.readouterr().out == "reached\n"
        routes = ip.run_line_magic("netns", "routes mns2")
        assert any("10.77.0.0" in str(d) for d in routes.iloc[:, 0]) or len(routes) >= 1
        with pytest.raises(UsageError, match="no network namespace or running container"):
            ip.run_line_magic("netns", "links nosuchns")
    finally:
        ip.run_line_magic("netns", "rm mns1")
        ip.run_line_magic("netns", "rm mns2")
    assert not {"mns1", "mns2"} & set(ip.run_line_magic("netns", "ls")["name"])


@pytest.mark.usefixtures("host_clean")
def test_a_network_seen_right_after_a_cell_has_no_ended_member(ip) -> None:
    """A cell's network clean-up runs in the background; %netns waits for it, so what it shows (and what
    `network rm` checks) never includes a container that has ended."""
    ip.run_line_magic("netns", f"network create quicknet --subnet {free_subnet()}")
    try:
        for _ in range(5):
            ip.run_line_magic("container", "--quiet --network quicknet -- true")
            assert ip.run_line_magic("netns", "network inspect quicknet").empty
    finally:
        ip.run_line_magic("netns", "network rm quicknet")
