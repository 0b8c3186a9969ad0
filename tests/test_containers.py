"""Background containers: start detached, logs, exec inside, stats, stop, wait, rm; the magic's
subcommands; nothing left behind."""

from __future__ import annotations

import os

import pytest
from helpers import host_clean, wait_for  # noqa: F401

from pycontainer_magics.runtime import ContainerSpec
from pycontainer_magics.workloads.containers import DetachedContainerError, containers, start

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("host_clean"),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]
LOOP = "echo started; while true; do echo tick; sleep 0.05; done"




@pytest.fixture(autouse=True)
def _no_containers_left(host_clean):  # noqa: F811 - host_clean checks after this removed what a failed test left
    yield
    for c in containers.list():
        containers.remove(c.id, force=True)


@pytest.mark.cgroup2
def test_detached_container_runs_logs_and_stops() -> None:
    c = start(ContainerSpec(command=("sh", "-c", LOOP), name="bg1", memory=64 * 2**20, hostname="bg1"))
    assert c.running and c.status == "running" and c.pid1
    assert wait_for(lambda: c.logs().count("tick") >= 3)
    assert c.logs().startswith("started\n")
    assert c.stats()["memory_limit"] == 64 * 2**20
    run = c.stop(timeout=0.5)  # sh as PID 1 ignores SIGTERM: killed after the timeout, as docker stop
    assert not c.running and run.exit_code == 137 and c.pid1 is None
    assert containers.get("bg1") is c
    containers.remove("bg1")
    with pytest.raises(DetachedContainerError, match="no such container"):
        containers.get("bg1")


@pytest.mark.cgroup2
def test_exec_joins_the_containers_namespaces_cgroup_and_privileges() -> None:
    c = start(ContainerSpec(command=("sh", "-c", "sleep 30"), name="bg2", hostname="inside", pids_limit=50))
    r = c.exec(["sh", "-c", "hostname; echo $$; cat /proc/1/cmdline | tr '\\0' ' '; echo; "
                            "grep CapEff /proc/self/status; grep NoNewPrivs /proc/self/status; "
                            "grep -E '(pids|^0::)' /proc/self/cgroup | head -1"])
    lines = r.stdout.splitlines()
    assert r.exit_code == 0, r.stderr
    assert lines[0] == "inside"
    assert int(lines[1]) > 1  # a new process in the container's PID namespace
    assert lines[2].startswith("sh -c sleep 30")
    assert lines[3].split()[1] == "00000000a80425fb"  # Docker's 14
    assert lines[4].split()[1] == "1"
    assert lines[5].endswith(":/")  # the container's cgroup, seen through its cgroup namespace
    assert c.exec(["sh", "-c", "exit 3"]).exit_code == 3
    assert c.exec(["no-such-command"]).exit_code == 127
    c.kill()
    assert c.wait(30).status == "killed"


def test_exec_runs_as_the_containers_user_with_its_privilege_steps() -> None:
    """docker exec runs as the container's configured user (it ran as root here: a container made to run as
    nobody handed out root to every exec), with its rlimits; and a container without no_new_privs can exec
    (its seccomp filter went in after the capabilities were dropped: EACCES)."""
    c = start(ContainerSpec(command=("sleep", "30"), name="bg6", user="nobody", ulimits=(("nofile", 321, 321),)))
    r = c.exec(["sh", "-c", "id -u; id -g; ulimit -n; grep CapEff /proc/self/status"])
    assert r.exit_code == 0, r.stderr
    uid, gid, nofile, caps = r.stdout.splitlines()
    assert (uid, gid, nofile) == ("65534", "65534", "321") and caps.split()[1] == "0000000000000000"
    containers.remove(c.id, force=True)
    c = start(ContainerSpec(command=("sleep", "30"), name="bg7", no_new_privileges=False))
    r = c.exec(["sh", "-c", "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status"])
    assert r.exit_code == 0, r.stderr
    assert r.stdout.split() == ["NoNewPrivs:", "0", "Seccomp:", "2"]
    containers.remove(c.id, force=True)


def test_python_cell_in_the_background_sees_the_notebook() -> None:
    c = start(ContainerSpec(python_code="import time\nprint('value', x, flush=True)\ntime.sleep(30)", name="bg3"),
              python_globals={"x": 42})
    assert wait_for(lambda: "value 42" in c.logs())
    assert c.exec(["sh", "-c", "echo $$"]).stdout.strip() != "1"
    c.kill()
    assert c.wait(30).exit_code == 137


def test_exited_container_keeps_its_result_and_names_are_unique() -> None:
    c = start(ContainerSpec(command=("sh", "-c", "echo done; exit 4"), name="bg4"))
    run = c.wait(30)
    assert (run.exit_code, c.logs(), c.status) == (4, "done\n", "exited")
    with pytest.raises(DetachedContainerError, match="already in use"):
        start(ContainerSpec(command=("true",), name="bg4"))
    with pytest.raises(DetachedContainerError, match="not running"):
        c.exec(["true"])


def test_rm_of_a_running_container_needs_force() -> None:
    start(ContainerSpec(command=("sleep", "30"), name="bg5"))
    with pytest.raises(DetachedContainerError, match="running"):
        containers.remove("bg5")
    containers.remove("bg5", force=True)
    assert containers.list() == []


@pytest.fixture(scope="module")
def ip():
    """Made before the per-test host snapshot: the shell's own files (its history database) are not ours."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "pycontainer_magics")
    return shell


def test_magic_detach_ps_logs_exec_stop_rm(ip, capsys: pytest.CaptureFixture[str]) -> None:
    from IPython.core.error import UsageError

    ip.run_cell_magic("container", "--detach --name web --hostname web -- sh", LOOP)
    cid = capsys.readouterr().out.strip()
    ps = ip.run_line_magic("container", "ps")
    assert list(ps["name"]) == ["web"] and list(ps["status"]) == ["running"] and cid.startswith(ps["id"][0])
    assert wait_for(lambda: containers.get("web").logs().count("tick") >= 2)
    ip.run_line_magic("container", "logs web")
    assert capsys.readouterr().out.startswith("started\ntick\n")
    ip.run_line_magic("container", "exec web -- hostname")
    assert capsys.readouterr().out == "web\n"
    ip.run_line_magic("container", "stop -t 0.2 web")
    assert list(ip.run_line_magic("container", "ps")["name"]) == []
    ps_all = ip.run_line_magic("container", "ps -a")  # and what is kept ready for the next cell, "prepared"
    assert list(ps_all[ps_all.status != "prepared"]["status"]) == ["killed"]
    ip.run_line_magic("container", "rm web")
    with pytest.raises(UsageError, match="no such container: web"):
        ip.run_line_magic("container", "logs web")
    with pytest.raises(UsageError, match="usage: %container exec"):
        ip.run_line_magic("container", "exec")


def test_diff_of_a_stopped_or_killed_container(ip) -> None:
    # `docker diff` works on a stopped or killed container: its writable layer is reported after the kill.
    for verb in ("stop -t 0.2", "kill"):
        ip.run_line_magic("container", "--detach --name gone --quiet -- sh -c 'touch /made; echo ok; sleep 30'")
        assert wait_for(lambda: containers.get("gone").logs() == "ok\n")
        ip.run_line_magic("container", f"{verb} gone")
        containers.get("gone").wait(10)
        d = ip.run_line_magic("container", "diff gone")
        assert ("A", "/made") in set(zip(d["kind"], d["path"], strict=True)), (verb, d)
        ip.run_line_magic("container", "rm gone")


def test_cgroup_set_changes_a_running_containers_limit(ip, capsys: pytest.CaptureFixture[str]) -> None:
    c = start(ContainerSpec(command=("sleep", "30"), name="limited", memory=64 * 2**20))
    assert c.stats()["memory_limit"] == 64 * 2**20
    ip.run_line_magic("cgroup", "set limited --memory 80M")
    assert c.stats()["memory_limit"] == 80 * 2**20
    c.kill()
    c.wait(30)
