"""Pods: containers that share the pod's network, IPC and UTS namespaces (and keep their own mount, PID
and cgroup), talk over localhost, see one host name; pod ls / inspect / rm; bad input; nothing left."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
from helpers import host_clean, wait_for  # noqa: F401

from pycontainer_magics.runtime import ContainerSpec, run
from pycontainer_magics.runtime.parse import build_spec
from pycontainer_magics.runtime.spec import SpecError
from pycontainer_magics.workloads import pods
from pycontainer_magics.workloads.containers import containers, start

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

PY = sys.executable if sys.executable.startswith("/usr/") else "/usr/bin/python3"
SERVER = textwrap.dedent("""
    import socket
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((HOST, PORT))
    s.listen()
    print("listening", flush=True)
    while True:
        c, _ = s.accept()
        c.sendall(b"hello from " + socket.gethostname().encode())
        c.close()
""")
CLIENT = ("import socket\n"
          "try:\n"
          "    c = socket.create_connection(('127.0.0.1', PORT), timeout=2)\n"
          "    print(c.recv(100).decode(), socket.gethostname())\n"
          "except OSError as e:\n"
          "    print('unreachable', e.errno)\n")




def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _no_pods_left(infra_pids: list[int]) -> None:
    mine = [q.name for q in pods.list_pods() if q.owner.startswith(f"{os.getpid()}:")]
    assert mine == [], f"pods left: {mine}"
    assert not [p for p in infra_pids if _alive(p)], "an infra process is left"


@pytest.fixture(autouse=True)
def _pods_removed(host_clean) -> Iterator[list[int]]:  # noqa: F811 - host_clean checks after this cleaned up
    infras: list[int] = []
    yield infras
    for c in containers.list():
        containers.remove(c.id, force=True)
    for p in pods.list_pods():
        if p.owner.startswith(f"{os.getpid()}:"):
            infras.append(p.infra_pid)
            pods.remove(p.name, force=True)
    _no_pods_left(infras)


def _ns(pid: int, kind: str) -> int:
    return os.stat(f"/proc/{pid}/ns/{kind}").st_ino


def _server(pod: str, port: int, name: str, host: str = "127.0.0.1"):
    code = SERVER.replace("HOST", repr(host)).replace("PORT", str(port))
    c = start(ContainerSpec(command=(PY, "-c", code), name=name, pod=pod))
    assert wait_for(lambda: "listening" in c.logs()), c.logs()
    return c


def test_two_containers_share_net_ipc_uts_user_not_mnt_pid_cgroup(_pods_removed) -> None:
    p = pods.create("pns")
    _pods_removed.append(p.infra_pid)
    a = start(ContainerSpec(command=("sleep", "30"), name="a", pod="pns", pids_limit=20))
    b = start(ContainerSpec(command=("sleep", "30"), name="b", pod="pns"))
    for kind in ("net", "ipc", "uts", "user"):
        assert _ns(a.pid1, kind) == _ns(b.pid1, kind) == _ns(p.infra_pid, kind), kind
        assert _ns(a.pid1, kind) != _ns(os.getpid(), kind), kind  # not ours (the host's)
    for kind in ("mnt", "pid", "cgroup", "time"):
        assert _ns(a.pid1, kind) != _ns(b.pid1, kind), kind
    # The namespace table says the same.
    from pycontainer_magics.display.pod_views import pod_namespace_frame
    df = pod_namespace_frame(*pods.namespace_table("pns"))
    assert list(df.columns) == ["infra", "a", "b", "shared"]
    assert df.loc["net", "a"] == _ns(a.pid1, "net")
    assert df["shared"].to_dict() == {"mount": False, "uts": True, "ipc": True, "pid": False, "net": True,
                                      "user": True, "cgroup": False, "time": False}
    info = pods.inspect("pns")
    assert [c["name"] for c in info["containers"]] == ["a", "b"] and info["status"] == "running"
    pods.remove("pns", force=True)
    assert not a.running and not b.running


def test_server_in_pod_answers_client_over_localhost_not_outside(_pods_removed) -> None:
    port = _free_port()
    srv = _server("web", port, "srv")
    _pods_removed.append(pods.get("web").infra_pid)
    client = CLIENT.replace("PORT", str(port))
    # A command client and a Python-cell client (forked from this process), both in the pod.
    r = run(ContainerSpec(command=(PY, "-c", client), pod="web"))
    assert r.exit_code == 0 and r.stdout.strip() == "hello from web web", (r.stdout, r.stderr)
    r = run(ContainerSpec(python_code=client, pod="web"))
    assert r.stdout.strip() == "hello from web web", (r.stdout, r.stderr, r.error)
    assert r.namespaces and {n.kind: n.container_inode for n in r.namespaces}["net"] == _ns(srv.pid1, "net")
    # Outside the pod: another container (its own network namespace) and another pod cannot reach it.
    r = run(ContainerSpec(command=(PY, "-c", client)))
    assert r.stdout.startswith("unreachable"), r.stdout
    r = run(ContainerSpec(command=(PY, "-c", client), pod="other"))
    assert r.stdout.split() == ["unreachable", "111"], r.stdout  # its own lo: refused, not unreachable
    assert {p.name for p in pods.list_pods()} >= {"web", "other"}
    pods.remove("other")
    # The pod's hostname is the pod's name, seen by every container; HOSTNAME is set to it too.
    r = run(ContainerSpec(command=("sh", "-c", "hostname; echo $HOSTNAME"), pod="web"))
    assert r.stdout.split() == ["web", "web"]


def test_sysv_ipc_and_posix_mqueue_are_shared_in_the_pod(_pods_removed) -> None:
    p = pods.create("ipc1")
    _pods_removed.append(p.infra_pid)
    r = run(ContainerSpec(command=("sh", "-c", "ipcmk -Q >/dev/null && touch /dev/mqueue/podq && echo made"),
                          pod="ipc1"))
    assert r.stdout.strip() == "made", r.stderr
    look = ("sh", "-c", "ipcs -q | grep -c '^0x' ; ls /dev/mqueue")
    r = run(ContainerSpec(command=look, pod="ipc1"))
    assert r.stdout.split() == ["1", "podq"], (r.stdout, r.stderr)
    r = run(ContainerSpec(command=look))  # a container outside the pod: a fresh IPC namespace
    assert r.stdout.split() == ["0"], r.stdout
    # A Python cell (its PID 1 forked from this process, mounting as host root) sees the pod's queues too.
    r = run(ContainerSpec(python_code="import os; print(os.listdir('/dev/mqueue'))", pod="ipc1"))
    assert r.stdout.strip() == "['podq']", (r.stdout, r.error)


def test_pod_ls_inspect_and_rm_refuses_while_running_force_stops(_pods_removed) -> None:
    from pycontainer_magics.display.pod_views import PodView, pods_frame

    p = pods.create("lab", hostname="labhost")
    _pods_removed.append(p.infra_pid)
    c = start(ContainerSpec(command=("sleep", "30"), name="sleeper", pod="lab"))
    df = pods_frame(pods.list_pods())
    assert list(df.columns) == ["name", "containers", "status", "network", "created"]
    row = df[df.name == "lab"].iloc[0]
    assert row.containers == "sleeper" and row.status == "running" and row.network == "none"
    r = run(ContainerSpec(command=("hostname",), pod="lab"))
    assert r.stdout.strip() == "labhost"
    view = PodView(pods.inspect("lab"), *pods.namespace_table("lab"))
    assert "sleeper" in view._repr_html_() and list(view.containers.name) == ["sleeper"]
    with pytest.raises(pods.PodError, match="running container.*sleeper.*-f") as e:
        pods.remove("lab")
    assert "\n" not in str(e.value)
    assert c.running and pods.get("lab").status == "running"
    c.stop(timeout=0.2)
    assert pods.get("lab").status == "created"  # the member is gone from the record
    from pycontainer_magics.display.pod_views import pod_namespace_frame
    ns = pod_namespace_frame(*pods.namespace_table("lab"))  # no container: the pod's own namespaces
    assert list(ns.columns) == ["infra", "shared"] and list(ns.index[ns.shared]) == ["uts", "ipc", "net", "user"]
    c2 = start(ContainerSpec(command=("sleep", "30"), name="sleeper2", pod="lab"))
    pods.remove("lab", force=True)
    assert not c2.running and c2.run.exit_code == 137
    assert "lab" not in {q.name for q in pods.list_pods()}
    assert wait_for(lambda: not _alive(p.infra_pid), 30)


def test_bad_input_is_one_line_and_leaves_nothing(_pods_removed) -> None:
    for fn in (pods.inspect, pods.remove, pods.get):
        with pytest.raises(pods.PodError, match="no such pod: nope") as e:
            fn("nope")
        assert "\n" not in str(e.value)
    bad = [dict(network="bridge"), dict(network="none"), dict(hostname="h"), dict(share="net"),
           dict(share="uts"), dict(publish="8080:80"), dict(userns="remap"), dict(pod="bad/name")]
    for extra in bad:
        opts = {"pod": "pb", **extra}
        with pytest.raises(SpecError) as e:
            build_spec(command=["true"], **opts)
        msg = str(e.value)
        assert "\n" not in msg and ("pod" in msg), msg
    with pytest.raises(SpecError, match="--network bridge conflicts with --pod pb"):
        build_spec(command=["true"], pod="pb", network="bridge")
    with pytest.raises(pods.PodError, match="-p/--publish needs a network"):
        pods.create("pb", publish=(("127.0.0.1", 8080, 80, "tcp"),))
    with pytest.raises(pods.PodError, match="invalid pod --network"):
        pods.create("pb", network="host")
    with pytest.raises(pods.PodError, match="--network nosuchnet"):
        pods.create("pb", network="nosuchnet")
    from pycontainer_magics.network.hosts import hosts_path
    assert not os.path.exists(hosts_path("pod-pb")) and not os.path.exists(os.path.join(pods.pods_dir(), "pb.json"))
    p = pods.create("pb")
    _pods_removed.append(p.infra_pid)
    with pytest.raises(pods.PodError, match="already exists"):
        pods.create("pb")
    assert [q.name for q in pods.list_pods() if q.owner.startswith(f"{os.getpid()}:")] == ["pb"]


@pytest.fixture(scope="module")
def ip():
    """The shell (its history database is an open fd) made before host_clean's first look."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "pycontainer_magics")
    return shell


def test_magic_pod_commands(ip, _pods_removed) -> None:
    from IPython.core.error import UsageError

    ip.run_line_magic("container", "pod create mp --hostname mphost")
    _pods_removed.append(pods.get("mp").infra_pid)
    ip.run_cell_magic("container", "--pod mp -q -o h", "import socket\nh = socket.gethostname()")
    assert ip.user_ns.pop("h") == "mphost"
    ip.run_cell_magic("container", "--pod mp -d --name bg -q -- sh", "sleep 30")
    df = ip.run_line_magic("container", "pod ls")
    assert df[df.name == "mp"].iloc[0].containers == "bg"
    ps = ip.run_line_magic("container", "ps").set_index("name")
    assert ps.loc["bg", "pod"] == "mp" and ps.loc["bg", "status"] == "running"  # podman's POD column
    view = ip.run_line_magic("container", "pod inspect mp")
    assert view.info["hostname"] == "mphost" and bool(view.namespaces.loc["net", "shared"])
    ns = ip.run_line_magic("container", "pod ns mp")
    assert list(ns.columns) == ["infra", "bg", "shared"]
    for line, cell, pattern in [("pod rm mp", None, "running container"), ("pod inspect nope", None, "no such pod"),
                                ("--pod mp --network bridge", "pass", "--network bridge conflicts with --pod mp"),
                                ("--pod mp --hostname x", "pass", "--hostname conflicts"),
                                ("pod create", None, "usage|required")]:
        with pytest.raises(UsageError, match=pattern) as e:
            if cell is None:
                ip.run_line_magic("container", line)
            else:
                ip.run_cell_magic("container", line, cell)
        assert "\n" not in str(e.value)
    with pytest.raises(UsageError, match="pod create --share mount"):
        ip.run_line_magic("container", "pod create mp2 --share mount")
    ip.run_line_magic("container", "pod create mp2 --share pid")
    assert pods.get("mp2").share_pid
    ip.run_line_magic("container", "pod rm mp2")
    ip.run_line_magic("container", "pod rm -f mp")
    assert "mp" not in {p.name for p in pods.list_pods()}
    ip.run_line_magic("container", "rm bg")
    ip.user_ns.pop("_container", None)


def test_a_pod_with_userns_remap_runs_its_containers_as_unprivileged_host_ids(ip, _pods_removed) -> None:
    """`pod create --userns remap` (podman's --userns auto, Kubernetes' hostUsers: false): every container of the
    pod — commands and Python cells — is root inside and an unprivileged uid to the host."""
    from pycontainer_magics import paths
    for d in (paths.state_dir(), paths.run_dir()):  # as new: only root passes (the pod's root must be let through)
        os.chown(d, 0, 0)
        os.chmod(d, 0o700)
    ip.run_line_magic("container", "pod create mpu --userns remap")
    p = pods.get("mpu")
    _pods_removed.append(p.infra_pid)
    try:
        assert p.userns == "remap" and p.maps is not None
        host_uid = int(p.maps[0].split()[1])
        assert host_uid >= 65536
        with open(f"/proc/{p.infra_pid}/status") as f:
            assert [ln.split()[1] for ln in f if ln.startswith("Uid:")] == [str(host_uid)]
        ip.run_cell_magic("container", "--pod mpu -d --name mpu-bg -q -- sh", "sleep 30")
        from pycontainer_magics.workloads.containers import containers
        bg = containers.get("mpu-bg")
        with open(f"/proc/{bg.pid1}/status") as f:
            assert [ln.split()[1] for ln in f if ln.startswith("Uid:")] == [str(host_uid)]
        # a Python cell (PID 1 mounts as host root here): root inside, its /tmp writable
        ip.run_cell_magic("container", "--pod mpu -q -o u",
                          "import os\nopen('/tmp/mpu-written', 'w').write('x')\n"
                          "u = (os.getuid(), open('/proc/self/uid_map').read().split())")
        assert ip.user_ns.pop("u") == (0, ["0", str(host_uid), p.maps[0].split()[2]])
    finally:
        ip.run_line_magic("container", "pod rm -f mpu")
        ip.run_line_magic("container", "rm -f mpu-bg")
        ip.user_ns.pop("_container", None)


def test_cli_joins_an_existing_pod_and_makes_its_own(_pods_removed) -> None:
    p = pods.create("clipod")
    _pods_removed.append(p.infra_pid)
    cli = [sys.executable, "-m", "pycontainer_magics.cli", "run", "-q"]
    out = subprocess.run([*cli, "--pod", "clipod", "--", "sh", "-c", "hostname; readlink /proc/self/ns/net"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["clipod", f"net:[{p.net_inode}]"]
    out = subprocess.run([*cli, "--pod", "clionly", "--", "hostname"], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "clionly", out.stderr
    assert "clionly" not in {q.name for q in pods.list_pods()}  # gone with the CLI process that made it
    assert not os.path.exists(os.path.join(pods.pods_dir(), "clionly.json"))  # removed at exit, not left to prune
    out = subprocess.run([*cli, "--pod", "clipod", "--network", "bridge", "--", "true"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 125 and out.stderr.count("\n") == 1 and "conflicts with --pod" in out.stderr


def test_pod_sharing_its_pid_namespace(_pods_removed) -> None:
    """`pod create --share pid` (Kubernetes' shareProcessNamespace): one PID namespace, whose PID 1 is the
    infra's init; each container sees the others' processes, and keeps its own mount and cgroup."""
    from pycontainer_magics.display.pod_views import pod_namespace_frame

    p = pods.create("pidpod", share_pid=True)
    _pods_removed.append(p.infra_pid)
    a = start(ContainerSpec(command=("sh", "-c", "echo $$; exec sleep 30"), name="sleeper", pod="pidpod"))
    assert wait_for(lambda: a.logs().strip() != "")
    assert a.logs().strip() != "1" and _ns(a.pid1, "pid") == p.namespaces["pid"] != _ns(os.getpid(), "pid")
    assert wait_for(lambda: open(f"/proc/{a.pid1}/comm").read() == "sleep\n")  # its echo came before its exec
    r = run(ContainerSpec(command=("sh", "-c", "grep -l '^sleep' /proc/[0-9]*/comm"), pod="pidpod"))
    assert r.stdout.strip() == f"/proc/{a.logs().strip()}/comm", (r.stdout, r.stderr)
    cell = "import os\nprint(os.getpid() != 1, open(f'/proc/{PID}/cmdline').read().split(chr(0))[0])"
    r = run(ContainerSpec(python_code=cell.replace("PID", a.logs().strip()), pod="pidpod"))
    assert r.stdout.split() == ["True", "sleep"], (r.stdout, r.error)
    info = pods.inspect("pidpod")
    assert info["shared"] == ["net", "ipc", "uts", "user", "pid"]
    df = pod_namespace_frame(*pods.namespace_table("pidpod"), info["shared"])
    assert list(df.index[df.shared]) == ["uts", "ipc", "pid", "net", "user"]
    with pytest.raises(pods.PodError, match="--share pid conflicts with --pod pidpod"):
        run(ContainerSpec(command=("true",), pod="pidpod", share=frozenset({"pid"})))
    pods.remove("pidpod", force=True)
    assert not a.running


def test_infra_keeps_no_fd_of_its_maker(_pods_removed) -> None:
    """An infra forked by us (no launch helper) holds /dev/null and its control socket, nothing of ours
    (a kept dup of another pod's socket or of the records' lock would outlive their close)."""
    a = pods.create("fd1", helper=False)
    b = pods.create("fd2", helper=False)
    _pods_removed.extend([a.infra_pid, b.infra_pid])
    for p in (a, b):
        fds = {fd: os.readlink(f"/proc/{p.infra_pid}/fd/{fd}") for fd in os.listdir(f"/proc/{p.infra_pid}/fd")}
        assert sorted(fds) == ["0", "1", "2", "3", "4"] and fds["4"].startswith("socket:"), fds
        assert {fds[k] for k in "0123"} == {"/dev/null"}, fds
    pods.remove("fd1")
    assert not _alive(a.infra_pid) and _alive(b.infra_pid)  # reaped at once: nothing else held its socket
    r = run(ContainerSpec(command=("hostname",), pod="fd2"), helper=False)
    assert r.stdout.strip() == "fd2"


def test_pod_of_a_killed_process_goes_with_prune(_pods_removed) -> None:
    code = textwrap.dedent("""
        import sys, time
        from pycontainer_magics.runtime import ContainerSpec
        from pycontainer_magics.workloads import pods
        from pycontainer_magics.workloads.containers import start
        p = pods.create("orphan")
        c = start(ContainerSpec(command=("sleep", "60"), name="o1", pod="orphan"))
        print(p.infra_pid, c.pid1, flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        infra, pid1 = (int(x) for x in proc.stdout.readline().split())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    _pods_removed.append(infra)
    # The infra and the container go with their owner (parent-death signals); the record stays ...
    assert wait_for(lambda: not _alive(infra) and not _alive(pid1), 30)
    assert os.path.exists(os.path.join(pods.pods_dir(), "orphan.json"))
    assert "orphan" not in {p.name for p in pods.list_pods()}
    # ... until prune (what `%load_ext` and `pycontainer prune` run) removes it.
    from pycontainer_magics.workloads.prune import prune
    assert "pod orphan" in prune()
    assert not os.path.exists(os.path.join(pods.pods_dir(), "orphan.json"))


@pytest.mark.network
def test_pod_on_a_bridge_network_has_one_address_and_published_port(_pods_removed) -> None:
    from pycontainer_magics import network as net

    host_port = _free_port()
    p = pods.create("netpod", network="bridge", publish=(("127.0.0.1", host_port, 80, "tcp"),))
    _pods_removed.append(p.infra_pid)
    assert p.address and net.endpoints_of(p.id)[0].address == p.address
    srv = _server("netpod", 80, "websrv", host="0.0.0.0")  # a low port: the pod's user namespace owns the netns
    r = run(ContainerSpec(command=("sh", "-c", "cat /etc/hosts; ip -4 -o addr show eth0"), pod="netpod"))
    assert p.address in r.stdout and "netpod" in r.stdout, r.stdout
    assert wait_for(lambda: _fetch(host_port) == b"hello from netpod", 30)
    pods.remove("netpod", force=True)
    assert not srv.running
    assert net.endpoints_of(p.id) == []
    from pycontainer_magics.network.networks import veth_name
    assert not os.path.exists(f"/sys/class/net/{veth_name('bridge', p.id)}")
    with pytest.raises(OSError):
        _fetch(host_port)


def _fetch(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
        return c.recv(100)


ROOTLESS_USER = "pcm-pods"
ROOTLESS_SCRIPT = textwrap.dedent("""
    import json, os, time
    from pycontainer_magics.runtime import ContainerSpec, run
    from pycontainer_magics.workloads import pods
    from pycontainer_magics.workloads.containers import start
    p = pods.create("rlpod")
    c = start(ContainerSpec(command=("sh", "-c", "touch /dev/mqueue/q1; echo up; sleep 30"), name="a", pod="rlpod"))
    while "up" not in c.logs():
        time.sleep(0.02)
    r = run(ContainerSpec(command=("sh", "-c", "hostname; ls /dev/mqueue; readlink /proc/self/ns/net"), pod="rlpod"))
    py = run(ContainerSpec(python_code="import socket; print(socket.gethostname())", pod="rlpod"))
    a_net = os.readlink(f"/proc/{c.pid1}/ns/net")
    pods.remove("rlpod", force=True)
    print("RESULT=" + json.dumps({"out": r.stdout.split(), "py": py.stdout.strip(), "net": p.net_inode,
                                  "a_net": a_net, "infra": p.infra_pid, "stopped": not c.running}))
""")


@pytest.mark.rootless
def test_rootless_pod(_pods_removed) -> None:
    """Without root: the infra's user namespace is the user's own; members join it and its namespaces."""
    import pwd

    from helpers import run_as

    subprocess.run(["userdel", "-r", ROOTLESS_USER], capture_output=True)
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", ROOTLESS_USER], check=True)
    try:
        p = run_as(ROOTLESS_USER, ["env", f"HOME={pwd.getpwnam(ROOTLESS_USER).pw_dir}", sys.executable, "-c",
                                   ROOTLESS_SCRIPT])
        line = next((x for x in p.stdout.splitlines() if x.startswith("RESULT=")), None)
        assert line, (p.returncode, p.stdout[-500:], p.stderr[-2000:])
        import json
        res = json.loads(line[7:])
        assert res["out"] == ["rlpod", "q1", f"net:[{res['net']}]"] and res["a_net"] == f"net:[{res['net']}]"
        assert res["py"] == "rlpod" and res["stopped"]
        assert not _alive(res["infra"])
    finally:  # the script's processes are gone with it (parent-death signals): the user can go
        subprocess.run(["userdel", "-r", ROOTLESS_USER], capture_output=True)


def test_a_pods_init_goes_even_when_the_infra_dies_before_it_asked_to_go_with_it(monkeypatch) -> None:
    """holder._fork_init: the init of a pod's PID namespace asks the kernel to end it with the infra (PDEATHSIG)
    right after its fork; an infra killed in between sent no signal, and the init would wait in pause() for ever
    (one was found left on this machine after a CI run). Made certain here: its prctl is late."""
    import time

    from pycontainer_magics.linux.proc import alive, children
    from pycontainer_magics.runtime import holder

    real = holder.prctl

    def late(*a: object) -> object:
        time.sleep(0.3)  # the infra is gone by now
        return real(*a)  # type: ignore[arg-type]
    monkeypatch.setattr(holder, "prctl", late)
    r, w = os.pipe()
    infra = os.fork()
    if infra == 0:  # a stand-in for the infra holder: forks the init and dies at once
        try:
            holder._fork_init()
            os.write(w, str(children(os.getpid())[0]).encode())
        finally:
            os._exit(0)
    os.close(w)
    init = int(os.read(r, 32))
    os.close(r)
    os.waitpid(infra, 0)
    try:
        assert wait_for(lambda: not alive(init), 30), "the init outlived the infra"
    finally:
        if alive(init):
            os.kill(init, signal.SIGKILL)
