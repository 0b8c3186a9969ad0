"""`pycontainer serve`: the Docker Engine API, driven by the real docker CLI and docker-py.

One daemon serves the module (private state and run directories, a busybox image in its store); the
tests that kill or restart a daemon start their own.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time

import pytest
from engine_helpers import (
    IMAGE,
    alive,
    daemon,
    docker_clis,
    our_links,
    prune_state,
    start_daemon,
    stop_daemon,
)
from helpers import wait_for

pytestmark = [pytest.mark.root, pytest.mark.network]


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory):
    root = str(tmp_path_factory.mktemp("engine"))
    with daemon(root) as dm:
        yield dm
        sups = dm.supervisors()
    # SIGTERM stopped every container (no --live-restore): no supervisor is left, nor the default bridge
    # once its owners are gone.
    assert not [p for p in sups if alive(p)]
    # the spare supervisor the launcher kept went too, with what it had prepared (its layer, its cgroup)
    spares = os.path.join(root, "state", "engine", "spares")
    assert not (os.path.isdir(spares) and os.listdir(spares))
    prune_state(dm)
    assert our_links(dm) == []


# -- the first things a client asks ---------------------------------------------------------------------

def test_ping_version_info(d):
    status, body, headers = d.request("GET", "/_ping")
    assert (status, body) == (200, b"OK")
    assert headers["api-version"] == "1.41" and headers["ostype"] == "linux"
    status, v, _ = d.request("GET", "/version")
    assert status == 200 and v["ApiVersion"] == "1.41" and v["Platform"]["Name"] == "pycontainer_magics Engine"
    status, info, _ = d.request("GET", "/v1.41/info")
    assert status == 200 and info["OSType"] == "linux" and info["CgroupDriver"] == "cgroupfs"
    r = d.docker("version", "--format", "{{.Server.APIVersion}} {{.Server.Platform.Name}}", check=True)
    assert r.stdout.strip() == "1.41 pycontainer_magics Engine"


def test_unknown_endpoint_and_bad_requests_are_dockers_errors(d):
    status, body, _ = d.request("GET", "/v1.41/containers/x/frobnicate")
    assert status == 404 and "GET /v1.41/containers/x/frobnicate" in body["message"]
    status, body, _ = d.request("POST", "/v1.41/containers/create", raw=b"{not json")
    assert status == 400 and "invalid JSON" in body["message"]
    status, body, _ = d.request("GET", "/v9.99/version")
    assert status == 400 and "too new" in body["message"]
    before = len(d.records())
    status, body, _ = d.request("POST", "/containers/create", {"Image": "nosuch/image:1", "Cmd": ["true"]})
    assert (status, body["message"]) == (404, "No such image: nosuch/image:1")
    status, body, _ = d.request("POST", "/containers/create", {"Image": IMAGE, "HostConfig": {"Memory": 1000}})
    assert (status, body["message"]) == (400, "Minimum memory limit allowed is 6MB")
    status, body, _ = d.request("POST", "/containers/create", {"Image": IMAGE, "HostConfig": {"Mounts": [
        {"Type": "bind", "Source": "/no/such/dir", "Target": "/x"}]}})
    assert status == 400 and "bind source path does not exist: /no/such/dir" in body["message"]
    status, body, _ = d.request("POST", "/containers/create", {"Image": IMAGE, "HostConfig": {"Binds": [
        "/no/such/dir:/x"]}})
    assert status == 400 and "/no/such/dir" in body["message"]
    status, body, _ = d.request("POST", "/containers/json?all=1", {})
    assert status == 404
    assert len(d.records()) == before  # nothing was made
    status, body, _ = d.request("GET", "/containers/nosuch/json")
    assert (status, body["message"]) == (404, "No such container: nosuch")


def test_name_taken_is_409(d):
    d.docker("create", "--name", "taken", IMAGE, "true", check=True)
    status, body, _ = d.request("POST", "/containers/create?name=taken", {"Image": IMAGE, "Cmd": ["true"]})
    assert status == 409 and 'The container name "/taken" is already in use' in body["message"]
    r = d.docker("run", "--name", "taken", IMAGE, "true")
    assert r.returncode == 125 and "already in use" in r.stderr
    d.docker("rm", "taken", check=True)


# -- docker run ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("cli", docker_clis())
def test_run_rm_output_and_exit_code(d, cli):
    r = d.docker("run", "--rm", "-m", "64m", IMAGE, "sh", "-c", "echo hi; echo err >&2; exit 3", cli=cli)
    assert (r.returncode, r.stdout) == (3, "hi\n")
    assert "err\n" in r.stderr
    assert d.docker("ps", "-aq", cli=cli, check=True).stdout.strip() == "" or \
        all(c["Status"] != "exited" or c.get("ExitCode") != 3 for c in d.records())
    # --rm: it is gone once `docker run` returns
    assert not [c for c in d.records() if c.get("ExitCode") == 3]


@pytest.mark.cgroup2  # also in the cgroup v2 VM (tests/vm/): the daemon's cgroup work
def test_run_limits_are_in_the_cgroup_and_inspect(d):
    r = d.docker("run", "--name", "lim", "-m", "64m", "--pids-limit", "20", IMAGE, "sh", "-c",
                 "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max 2>/dev/null || "
                 "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(64 * 2**20), "20"]
    info = json.loads(d.docker("inspect", "lim", check=True).stdout)[0]
    assert info["HostConfig"]["Memory"] == 64 * 2**20 and info["HostConfig"]["PidsLimit"] == 20
    assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 0
    assert info["Name"] == "/lim" and info["Config"]["Hostname"] == info["Id"][:12]
    d.docker("rm", "lim", check=True)


@pytest.mark.cgroup2  # also in the cgroup v2 VM (tests/vm/): the daemon's cgroup work
def test_oom_killed_in_inspect(d):
    r = d.docker("run", "--name", "oom", "-m", "16m", "--memory-swap", "16m", IMAGE,
                 "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1")
    assert r.returncode == 137
    state = json.loads(d.docker("inspect", "oom", check=True).stdout)[0]["State"]
    assert state["OOMKilled"] is True and state["ExitCode"] == 137
    d.docker("rm", "oom", check=True)


def test_exec_not_found_fails_start_with_127(d):
    r = d.docker("run", "--rm", IMAGE, "no-such-command")
    assert r.returncode == 127
    assert "executable file not found" in r.stderr


def test_exec_runs_as_the_containers_user_unless_told(d):
    """docker exec's default user is the container's (-u, else the image's USER); exec -u picks another."""
    d.docker("run", "-d", "--name", "usr", "-u", "1000:1001", IMAGE, "sleep", "30", check=True)
    try:
        assert d.docker("exec", "usr", "id", "-u", check=True).stdout.strip() == "1000"
        assert d.docker("exec", "usr", "id", "-g", check=True).stdout.strip() == "1001"
        assert d.docker("exec", "-u", "0", "usr", "id", "-u", check=True).stdout.strip() == "0"
        assert d.docker("exec", "-u", "7:8", "usr", "sh", "-c", "echo $(id -u):$(id -g)",
                        check=True).stdout.strip() == "7:8"
        r = d.docker("exec", "-u", "nosuchuser", "usr", "true")
        assert r.returncode == 126 and "nosuchuser" in r.stderr, r.stderr
    finally:
        d.docker("rm", "-f", "usr", check=True)


def test_detached_logs_exec_stop_ps(d):
    script = "trap 'echo bye; exit 7' TERM; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"
    cid = d.docker("run", "-d", "--name", "web", IMAGE, "sh", "-c", script, check=True).stdout.strip()
    assert len(cid) == 64
    assert wait_for(lambda: "tick 1\n" in d.docker("logs", "web", check=True).stdout, 20)
    assert d.docker("logs", "web", check=True).stdout.startswith("tick 0\ntick 1\n")
    # logs -f follows new output until the client stops (timeout ends it here)
    import subprocess
    p = subprocess.Popen(["timeout", "3", docker_clis()[0], "logs", "-f", "-t", "--tail", "1", "web"],
                         env=d.env, stdout=subprocess.PIPE, text=True)
    out, _ = p.communicate(timeout=30)
    lines = out.splitlines()
    assert len(lines) >= 4, out  # the last line and new ones as they come (10 a second)
    assert all(line.split(" ", 1)[0].endswith("Z") and " tick " in f" {line.split(' ', 1)[1]}" for line in lines)
    r = d.docker("exec", "web", "hostname", check=True)
    assert r.stdout.strip() == cid[:12]
    assert d.docker("exec", "web", "sh", "-c", "exit 5").returncode == 5
    assert d.docker("exec", "web", "nosuchcmd").returncode in (126, 127)
    ps = d.docker("ps", "-a", "--format", "{{.Names}}|{{.Status}}|{{.Image}}", check=True).stdout
    assert any(line.startswith("web|Up ") and line.endswith(f"|{IMAGE}") for line in ps.splitlines())
    assert d.docker("stop", "web", check=True).stdout.strip() == "web"
    state = json.loads(d.docker("inspect", "web", check=True).stdout)[0]["State"]
    assert (state["Status"], state["ExitCode"], state["Running"]) == ("exited", 7, False)
    assert d.docker("logs", "--tail", "1", "web", check=True).stdout == "bye\n"
    ps = d.docker("ps", "-a", "--filter", "name=web", "--format", "{{.Status}}", check=True).stdout
    assert ps.startswith("Exited (7) ")
    assert d.docker("ps", "-q", "--filter", "name=web", check=True).stdout == ""  # not running
    d.docker("rm", "web", check=True)
    assert d.docker("inspect", "web").returncode != 0


def test_stop_escalates_to_sigkill_and_kill_signal(d):
    d.docker("run", "-d", "--name", "stubborn", IMAGE, "sh", "-c", "while true; do sleep 0.1; done", check=True)
    t0 = time.monotonic()
    d.docker("stop", "-t", "1", "stubborn", check=True)  # PID 1 has no TERM handler: KILL after 1 s
    assert time.monotonic() - t0 >= 1.0
    assert json.loads(d.docker("inspect", "stubborn", check=True).stdout)[0]["State"]["ExitCode"] == 137
    r = d.docker("kill", "stubborn")
    assert r.returncode != 0 and "is not running" in r.stderr
    d.docker("start", "stubborn", check=True)
    assert json.loads(d.docker("inspect", "stubborn", check=True).stdout)[0]["State"]["Running"] is True
    r = d.docker("rm", "stubborn")
    assert r.returncode != 0 and "cannot remove a running container" in r.stderr
    d.docker("rm", "-f", "stubborn", check=True)


def test_writable_layer_survives_stop_and_start(d):
    d.docker("run", "--name", "keep", IMAGE, "sh", "-c", "echo kept > /data.txt", check=True)
    d.docker("start", "keep", check=True)
    d.docker("wait", "keep", check=True)
    r = d.docker("run", "--rm", IMAGE, "cat", "/data.txt")
    assert r.returncode != 0  # another container does not see it
    layer = json.loads(d.docker("inspect", "keep", check=True).stdout)[0]["GraphDriver"]["Data"]["UpperDir"]
    with open(os.path.join(layer, "data.txt")) as f:
        assert f.read() == "kept\n"
    d.docker("rm", "keep", check=True)
    assert not os.path.exists(layer)


def test_client_dropping_mid_attach(d):
    cid = d.docker("run", "-d", IMAGE, "sh", "-c", "while true; do echo x; sleep 0.05; done",
                   check=True).stdout.strip()
    for _ in range(3):
        s = socket.socket(socket.AF_UNIX)
        s.connect(d.socket)
        s.sendall(f"POST /v1.41/containers/{cid}/attach?stream=1&stdout=1 HTTP/1.1\r\nHost: x\r\n"
                  "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n".encode())
        assert s.recv(4096).startswith(b"HTTP/1.1 101 UPGRADED")
        s.close()
    time.sleep(0.3)
    assert d.request("GET", "/_ping")[0] == 200
    assert json.loads(d.docker("inspect", cid, check=True).stdout)[0]["State"]["Running"] is True
    d.docker("rm", "-f", cid, check=True)


def test_docker_py(d):
    docker = pytest.importorskip("docker")
    cl = docker.DockerClient(base_url=d.env["DOCKER_HOST"])
    assert cl.version()["ApiVersion"] == "1.41"
    c = cl.containers.run(IMAGE, ["sh", "-c", "echo one; echo two >&2; sleep 0.3; echo three; exit 4"],
                          detach=True, name="pyd")
    assert b"".join(c.logs(stream=True)) == b"one\ntwo\nthree\n"
    assert c.wait() == {"StatusCode": 4, "Error": None}
    c.reload()
    assert (c.status, c.attrs["State"]["ExitCode"]) == ("exited", 4)
    assert c.logs(stdout=True, stderr=False) == b"one\nthree\n"
    assert cl.containers.run(IMAGE, ["echo", "hello"], remove=True) == b"hello\n"
    assert "pyd" in [x.name for x in cl.containers.list(all=True)]
    c.remove()
    with pytest.raises(docker.errors.NotFound):
        cl.containers.get("pyd")
    with pytest.raises(docker.errors.ContainerError) as e:
        cl.containers.run(IMAGE, ["sh", "-c", "exit 2"], remove=True)
    assert e.value.exit_status == 2
    cl.close()


def test_events_stream(d):
    docker = pytest.importorskip("docker")
    cl = docker.APIClient(base_url=d.env["DOCKER_HOST"])
    since = time.time()
    cid = d.docker("run", "-d", "--name", "ev", IMAGE, "sh", "-c", "exit 2", check=True).stdout.strip()
    d.docker("wait", "ev", check=True)
    d.docker("rm", "ev", check=True)
    events = list(cl.events(since=since, until=time.time() + 0.5, decode=True,
                            filters={"container": cid}))
    actions = [e["Action"] for e in events]
    assert actions[:2] == ["create", "start"] and "destroy" == actions[-1], actions
    die = next(e for e in events if e["Action"] == "die")
    assert die["Actor"]["Attributes"]["exitCode"] == "2" and die["Actor"]["Attributes"]["name"] == "ev"
    cl.close()


# -- the daemon's own life ----------------------------------------------------------------------------

@pytest.mark.slow
def test_sigkill_then_restart_finds_containers(tmp_path):
    with daemon(str(tmp_path)) as dm:
        dm.docker("run", "-d", "--name", "runner", "--network", "none", IMAGE, "sh", "-c",
                  "trap 'exit 9' TERM; while true; do sleep 0.1; done", check=True)
        dm.docker("run", "--name", "done", "--network", "none", IMAGE, "sh", "-c", "exit 6")
        stop_daemon(dm, signal.SIGKILL)
        sups = [r["Supervisor"] for r in dm.records() if r["Status"] == "running"]
        assert len(sups) == 1 and alive(sups[0])  # the container outlived its daemon
        dm2 = start_daemon(str(tmp_path))
        try:
            ps = dm2.docker("ps", "-a", "--format", "{{.Names}} {{.State}}", check=True).stdout.split("\n")
            assert "runner running" in ps and "done exited" in ps
            assert json.loads(dm2.docker("inspect", "done", check=True).stdout)[0]["State"]["ExitCode"] == 6
            dm2.docker("stop", "runner", check=True)  # watched again: the exit is seen at once
            assert dm2.docker("wait", "runner", check=True).stdout.strip() == "9"
        finally:
            stop_daemon(dm2)
        prune_state(dm2)


@pytest.mark.slow
def test_sigterm_live_restore_leaves_containers_running(tmp_path):
    with daemon(str(tmp_path), "--live-restore") as dm:
        cid = dm.docker("run", "-d", "--network", "none", IMAGE, "sh", "-c", "while true; do sleep 0.1; done",
                        check=True).stdout.strip()
        stop_daemon(dm)  # SIGTERM
        sups = dm.supervisors()
        assert len(sups) == 1 and alive(sups[0])
        dm2 = start_daemon(str(tmp_path))
        try:
            assert dm2.docker("inspect", "-f", "{{.State.Running}}", cid, check=True).stdout.strip() == "true"
            dm2.docker("rm", "-f", cid, check=True)
        finally:
            stop_daemon(dm2)
        prune_state(dm2)


# -- images ---------------------------------------------------------------------------------------------

def test_images_list_inspect_tag_history_rmi(d):
    out = d.docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}", check=True).stdout
    assert f"{IMAGE} " in out
    info = json.loads(d.docker("image", "inspect", IMAGE, check=True).stdout)[0]
    assert info["RepoTags"] == [IMAGE] and info["Config"]["Cmd"] == ["sh"] and info["Os"] == "linux"
    assert len(info["RootFS"]["Layers"]) == 1
    hist = d.docker("history", "--format", "{{.CreatedBy}}|{{.Size}}", IMAGE, check=True).stdout.splitlines()
    assert hist[0].startswith("ADD busybox /|")
    d.docker("tag", IMAGE, "lab/other:2", check=True)
    ids = d.docker("images", "-q", "--no-trunc", "lab/other", check=True).stdout.split()
    assert ids == [info["Id"]]
    assert d.docker("rmi", "lab/other:2", check=True).stdout.strip() == "Untagged: lab/other:2"
    r = d.docker("rmi", "nosuch:1")
    assert r.returncode != 0 and "No such image: nosuch:1" in r.stderr
    d.docker("create", "--name", "user", IMAGE, "true", check=True)
    r = d.docker("rmi", IMAGE)
    assert r.returncode != 0 and "must force" in r.stderr and "is using its referenced image" in r.stderr
    d.docker("rm", "user", check=True)


def test_build_then_run_and_docker_py_build(d, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f'FROM {IMAGE}\nARG MSG=default\nRUN echo "built $MSG" > /msg.txt\n'
                                    'COPY hello.txt /hello.txt\nCMD ["cat", "/msg.txt", "/hello.txt"]\n')
    (ctx / "hello.txt").write_text("from the context\n")
    r = d.docker("build", "-t", "lab/built:1", "--build-arg", "MSG=xyz", str(ctx), check=True)
    assert "Step 3/5 : RUN" in r.stdout and "Successfully tagged lab/built:1" in r.stdout
    r = d.docker("run", "--rm", "--network", "none", "lab/built:1", check=True)
    assert r.stdout == "built xyz\nfrom the context\n"
    (ctx / "Dockerfile.bad").write_text(f"FROM {IMAGE}\nRUN exit 3\n")
    r = d.docker("build", "-f", str(ctx / "Dockerfile.bad"), str(ctx))
    assert r.returncode != 0 and "exited with 3" in r.stderr
    docker = pytest.importorskip("docker")
    import io
    cl = docker.DockerClient(base_url=d.env["DOCKER_HOST"])
    img, logs = cl.images.build(fileobj=io.BytesIO(f"FROM {IMAGE}\nRUN echo py > /py.txt\n".encode()),
                                tag="lab/pybuilt:1")
    assert "lab/pybuilt:1" in img.tags
    assert cl.containers.run("lab/pybuilt:1", ["cat", "/py.txt"], remove=True, network_mode="none") == b"py\n"
    cl.close()
    d.docker("rmi", "lab/built:1", "lab/pybuilt:1", check=True)


def test_save_load_roundtrip(d, tmp_path):
    d.docker("tag", IMAGE, "lab/saved:1", check=True)
    archive = tmp_path / "saved.tar"
    d.docker("save", "-o", str(archive), "lab/saved:1", check=True)
    d.docker("rmi", "lab/saved:1", check=True)
    r = d.docker("load", "-i", str(archive), check=True)
    assert "Loaded image: lab/saved:1" in r.stdout
    assert d.docker("run", "--rm", "--network", "none", "lab/saved:1", "echo", "loaded", check=True).stdout == \
        "loaded\n"
    d.docker("rmi", "lab/saved:1", check=True)


@pytest.mark.slow
def test_push_pull_and_run_pulls_what_is_missing(d, tmp_path):
    from images_helpers import registry_server

    with registry_server(str(tmp_path)) as reg:
        ref = f"{reg}/lab/busybox:1"
        d.docker("tag", IMAGE, ref, check=True)
        r = d.docker("push", ref, check=True)
        assert ": Pushed" in r.stdout and "1: digest: sha256:" in r.stdout
        d.docker("rmi", ref, check=True)
        r = d.docker("pull", ref, check=True)
        assert "Status: Downloaded newer image for " + ref in r.stdout
        d.docker("rmi", ref, check=True)
        r = d.docker("run", "--rm", "--network", "none", ref, "echo", "pulled", check=True)
        assert r.stdout == "pulled\n" and "Unable to find image" in r.stderr
        r = d.docker("pull", f"{reg}/lab/nosuch:1")
        assert r.returncode != 0 and "not found" in r.stderr
        d.docker("rmi", ref, check=True)


def test_client_dropping_mid_build(d, tmp_path):
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = f"FROM {IMAGE}\nRUN sleep 1\n".encode()
        ti = tarfile.TarInfo("Dockerfile")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    body = buf.getvalue()
    s = socket.socket(socket.AF_UNIX)
    s.connect(d.socket)
    s.sendall(f"POST /v1.41/build?t=lab/dropped:1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\n"
              f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    assert s.recv(4096).startswith(b"HTTP/1.1 200 OK")
    s.close()  # gone while RUN sleeps
    assert d.request("GET", "/_ping")[0] == 200
    deadline = time.monotonic() + 30
    while d.docker("images", "-q", "lab/dropped:1").stdout.strip() == "" and time.monotonic() < deadline:
        time.sleep(0.2)
    d.docker("rmi", "lab/dropped:1", check=True)  # the build ran to its end all the same


# -- networks, volumes --------------------------------------------------------------------------------

def test_network_two_containers_reach_each_other_by_name(d):
    d.docker("network", "create", "labnet", check=True)
    assert "labnet" in d.docker("network", "ls", "--format", "{{.Name}}", check=True).stdout.split()
    d.docker("run", "-d", "--name", "srv", "--network", "labnet", IMAGE, "busybox", "httpd", "-f", "-p", "80",
             "-h", "/etc", check=True)
    # (srv's httpd may not listen yet when `run -d` returns: the client tries for a while, as a user's would)
    fetch = "i=0; until busybox wget -qO- http://srv/motd; do i=$((i+1)); [ $i -lt 100 ] || exit 1; sleep 0.1; done"
    r = d.docker("run", "--rm", "--network", "labnet", IMAGE, "sh", "-c", fetch, check=True)
    assert r.stdout == "busybox image\n"
    net = json.loads(d.docker("network", "inspect", "labnet", check=True).stdout)[0]
    members = {v["Name"]: v["IPv4Address"] for v in net["Containers"].values()}
    ip = d.docker("inspect", "-f", "{{.NetworkSettings.Networks.labnet.IPAddress}}", "srv", check=True).stdout.strip()
    assert members == {"srv": ip + "/" + members["srv"].split("/")[1]}
    r = d.docker("network", "rm", "labnet")
    assert r.returncode != 0 and "has active endpoints" in r.stderr
    d.docker("rm", "-f", "srv", check=True)
    d.docker("network", "rm", "labnet", check=True)
    r = d.docker("network", "inspect", "labnet")
    assert r.returncode != 0 and "no such network: labnet" in r.stderr.lower()
    assert d.request("GET", "/networks/labnet")[0] == 404


def test_a_bridge_container_joins_and_leaves_a_user_network(d):
    """`docker network connect NET c` for a container on the default bridge (and `bridge` for one on a user
    network): a second interface, names resolved on NET both ways, gone with disconnect, back at restart."""
    net = f"join{os.getpid()}"
    d.docker("network", "create", net, check=True)
    try:
        d.docker("run", "-d", "--name", "jsrv", "--network", net, IMAGE, "busybox", "httpd", "-f", "-p", "80", "-h",
                 "/etc", check=True)
        d.docker("run", "-d", "--name", "jbr", IMAGE, "sleep", "300", check=True)
        fetch = ("exec", "jbr", "busybox", "wget", "-qO-", "http://jsrv/motd")
        assert d.docker(*fetch).returncode != 0  # the default bridge has no names, nor a way to jsrv
        d.docker("network", "connect", net, "jbr", check=True)
        assert d.docker(*fetch, check=True).stdout == "busybox image\n"
        nets = json.loads(d.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", "jbr", check=True).stdout)
        assert set(nets) == {"bridge", net} and nets[net]["IPAddress"] != nets["bridge"]["IPAddress"]
        hosts = d.docker("exec", "jsrv", "cat", "/etc/hosts", check=True).stdout
        assert f"{nets[net]['IPAddress']}\tjbr" in hosts  # jsrv finds jbr by name on NET
        members = json.loads(d.docker("network", "inspect", net, check=True).stdout)[0]["Containers"]
        assert sorted(m["Name"] for m in members.values()) == ["jbr", "jsrv"]
        d.docker("network", "disconnect", net, "jbr", check=True)
        assert d.docker(*fetch).returncode != 0
        assert "jbr" not in d.docker("exec", "jsrv", "cat", "/etc/hosts", check=True).stdout
        # connected while stopped: joined at the next start, as dockerd does
        d.docker("stop", "-t", "0", "jbr", check=True)
        d.docker("network", "connect", net, "jbr", check=True)
        d.docker("start", "jbr", check=True)
        assert d.docker(*fetch, check=True).stdout == "busybox image\n"
        # the other way round: a user network's container joins the default bridge
        d.docker("network", "connect", "bridge", "jsrv", check=True)
        nets = json.loads(d.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", "jsrv", check=True).stdout)
        assert set(nets) == {"bridge", net}
        r = d.docker("network", "connect", net, "jbr")
        assert r.returncode != 0 and "already exists" in r.stderr
    finally:
        d.docker("rm", "-f", "jsrv", "jbr")
        d.docker("network", "rm", net)
    assert net not in d.docker("network", "ls", "--format", "{{.Name}}", check=True).stdout.split()


def test_volumes(d):
    d.docker("volume", "create", "vol1", check=True)
    d.docker("run", "--rm", "--network", "none", "-v", "vol1:/data", IMAGE, "sh", "-c", "echo kept > /data/f",
             check=True)
    r = d.docker("run", "--rm", "--network", "none", "-v", "vol1:/data:ro", IMAGE, "cat", "/data/f", check=True)
    assert r.stdout == "kept\n"
    assert "vol1" in d.docker("volume", "ls", "-q", check=True).stdout.split()
    mp = d.docker("volume", "inspect", "-f", "{{.Mountpoint}}", "vol1", check=True).stdout.strip()
    assert open(os.path.join(mp, "f")).read() == "kept\n"
    d.docker("create", "--name", "voluser", "-v", "vol1:/data", IMAGE, "true", check=True)
    r = d.docker("volume", "rm", "vol1")
    assert r.returncode != 0 and "volume is in use" in r.stderr
    d.docker("rm", "voluser", check=True)
    d.docker("volume", "rm", "vol1", check=True)
    r = d.docker("volume", "inspect", "vol1")
    assert r.returncode != 0 and "no such volume" in r.stderr.lower()
    assert d.request("GET", "/volumes/vol1")[1]["message"] == "get vol1: no such volume"


# -- a running container: stats, top, pause, update, diff, commit, rename -----------------------------

@pytest.mark.cgroup2  # also in the cgroup v2 VM (tests/vm/): the daemon's cgroup work
def test_stats_top_pause_update(d):
    d.docker("run", "-d", "--name", "busy", "--network", "none", "-m", "64m", IMAGE, "sh", "-c",
             "while true; do sleep 0.1; done", check=True)
    r = d.docker("stats", "--no-stream", "--format", "{{.Name}}|{{.MemUsage}}|{{.PIDs}}", "busy", check=True)
    name, mem, pids = r.stdout.strip().split("|")
    assert name == "busy" and mem.endswith("/ 64MiB") and int(pids) >= 1
    top = d.docker("top", "busy", check=True).stdout
    assert "while true" in top and top.splitlines()[0].split()[:2] == ["UID", "PID"]
    d.docker("pause", "busy", check=True)
    assert d.docker("ps", "--filter", "name=busy", "--format", "{{.Status}}", check=True).stdout.strip() \
        .endswith("(Paused)")
    r = d.docker("exec", "busy", "true")
    assert r.returncode != 0 and "is paused" in r.stderr
    d.docker("unpause", "busy", check=True)
    d.docker("update", "--memory", "128m", "--pids-limit", "30", "busy", check=True)
    r = d.docker("exec", "busy", "sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
                 "/sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max",
                 check=True)
    assert r.stdout.split() == [str(128 * 2**20), "30"]  # the running container's cgroup, at once
    hc = json.loads(d.docker("inspect", "busy", check=True).stdout)[0]["HostConfig"]
    assert hc["Memory"] == 128 * 2**20 and hc["PidsLimit"] == 30
    d.docker("rm", "-f", "busy", check=True)


def test_diff_commit_rename(d):
    d.docker("run", "--name", "changer", "--network", "none", IMAGE, "sh", "-c",
             "echo new > /etc/added; rm /etc/motd", check=True)
    diff = d.docker("diff", "changer", check=True).stdout.splitlines()
    assert diff == ["C /etc", "A /etc/added", "D /etc/motd"]
    d.docker("commit", "changer", "lab/committed:1", check=True)
    r = d.docker("run", "--rm", "--network", "none", "lab/committed:1", "sh", "-c", "cat /etc/added; ls /etc/motd")
    assert r.stdout == "new\n" and r.returncode != 0  # the deletion is in the new layer too
    hist = d.docker("history", "--format", "{{.CreatedBy}}", "lab/committed:1", check=True).stdout.splitlines()
    assert hist[0].startswith("sh -c echo new")
    d.docker("rename", "changer", "changed", check=True)
    assert d.docker("ps", "-a", "--filter", "name=changed", "--format", "{{.Names}}", check=True).stdout == "changed\n"
    d.docker("rm", "changed", check=True)
    d.docker("rmi", "lab/committed:1", check=True)


@pytest.mark.parametrize("cli", docker_clis())
def test_commit_change_applies_dockerfile_instructions(d, cli):
    """`docker commit --change`, as Debian's dockerd 20.10 applies them (checked side by side): in order, over the
    container's config; WORKDIR joins, ENV substitutes, EXPOSE ranges expand, an ENTRYPOINT keeps only a CMD set
    before it in the same commit; what a commit cannot change is refused with dockerd's words, nothing made."""
    name = f"chg{os.getpid()}"
    d.docker("run", "--name", name, "--network", "none", "-e", "A=1", IMAGE, "sh", "-c", "echo data > /f",
             cli=cli, check=True)
    try:
        changes = ['CMD ["cat", "/f"]', "ENTRYPOINT []", "WORKDIR tmp", "WORKDIR sub", "VOLUME /data /d2",
                   'VOLUME ["/x"]', "ENV B=$A$A C=c", "EXPOSE 8080 53/udp 90-91", 'LABEL k=v "a b"=c',
                   "USER 1000:1000"]
        d.docker("commit", *[a for c in changes for a in ("--change", c)], name, "lab/changed:1", cli=cli, check=True)
        cfg = json.loads(d.docker("image", "inspect", "-f", "{{json .Config}}", "lab/changed:1", cli=cli,
                                  check=True).stdout)
        assert cfg["Cmd"] == ["cat", "/f"] and not cfg.get("Entrypoint")
        assert cfg["WorkingDir"] == "/tmp/sub" and cfg["User"] == "1000:1000"
        assert sorted(cfg["Volumes"]) == ["/d2", "/data", "/x"]
        assert {"A=1", "B=11", "C=c"} <= set(cfg["Env"])
        assert sorted(cfg["ExposedPorts"]) == ["53/udp", "8080/tcp", "90/tcp", "91/tcp"]
        assert cfg["Labels"]["k"] == "v" and cfg["Labels"]["a b"] == "c"
        r = d.docker("run", "--rm", "--network", "none", "lab/changed:1", cli=cli, check=True)
        assert r.stdout == "data\n"  # the new CMD, as user 1000 in /tmp/sub
        r = d.docker("run", "--rm", "--network", "none", "lab/changed:1", "sh", "-c", "id -u; pwd; echo $B",
                     cli=cli, check=True)
        assert r.stdout.split() == ["1000", "/tmp/sub", "11"]
        # an ENTRYPOINT alone drops the CMD (the container's): dockerd's cmdSet rule
        d.docker("commit", "-c", 'ENTRYPOINT ["cat"]', name, "lab/changed:2", cli=cli, check=True)
        cfg = json.loads(d.docker("image", "inspect", "-f", "{{json .Config}}", "lab/changed:2", cli=cli,
                                  check=True).stdout)
        assert cfg["Entrypoint"] == ["cat"] and not cfg.get("Cmd")
        before = d.docker("images", "-q", cli=cli, check=True).stdout
        for change, message in (("RUN echo", "run is not a valid change command"),
                                ("FROM scratch", "from is not a valid change command"),
                                ("WORKDIR", "WORKDIR needs arguments"), ("EXPOSE abc", "bad port 'abc'")):
            r = d.docker("commit", "-c", change, name, "lab/changed:3", cli=cli)
            assert r.returncode != 0 and message in r.stderr, (change, r.stderr)
        assert d.docker("images", "-q", cli=cli, check=True).stdout == before
    finally:
        d.docker("rm", "-f", name, cli=cli)
        d.docker("rmi", "lab/changed:1", "lab/changed:2", cli=cli)


def test_cp_both_ways_and_export_stay_inside_the_container(d, tmp_path):
    import glob

    made_before = set(glob.glob("/tmp/pycontainer-fs-*"))  # (mount points of an older version, left behind)
    src = tmp_path / "in.txt"
    src.write_text("from host\n")
    d.docker("run", "-d", "--name", "cpr", "--network", "none", IMAGE, "sh", "-c",
             "mkdir -p /tmp; echo data > /tmp/out.txt; busybox ln -s /etc /tmp/etclink; while true; do sleep 0.1; done",
             check=True)
    assert wait_for(lambda: d.docker("exec", "cpr", "ls", "/tmp/etclink").returncode == 0, 30)
    d.docker("cp", "cpr:/tmp/out.txt", str(tmp_path / "out.txt"), check=True)
    assert (tmp_path / "out.txt").read_text() == "data\n"
    d.docker("cp", "cpr:/etc", str(tmp_path / "etc"), check=True)
    assert (tmp_path / "etc" / "motd").read_text() == "busybox image\n"
    # a symlink of the container's points into the container's /etc, never the host's
    d.docker("cp", str(src), "cpr:/tmp/etclink/", check=True)
    assert d.docker("exec", "cpr", "cat", "/etc/in.txt", check=True).stdout == "from host\n"
    assert not os.path.exists("/etc/in.txt")
    r = d.docker("cp", "cpr:/nosuch", str(tmp_path))
    assert r.returncode != 0 and "no such" in r.stderr.lower()
    # stopped: the kept writable layer over the image
    d.docker("stop", "-t", "0", "cpr", check=True)
    d.docker("cp", str(src), "cpr:/tmp/etclink/in2.txt", check=True)
    d.docker("cp", "cpr:/etc/in2.txt", str(tmp_path / "back.txt"), check=True)
    assert (tmp_path / "back.txt").read_text() == "from host\n"
    assert "A /etc/in2.txt" in d.docker("diff", "cpr", check=True).stdout.splitlines()
    import subprocess
    tar = subprocess.run([docker_clis()[0], "export", "cpr"], env=d.env, capture_output=True, check=True).stdout
    import io
    import tarfile
    names = tarfile.open(fileobj=io.BytesIO(tar)).getnames()
    assert "bin/busybox" in names and "etc/in2.txt" in names and "tmp/out.txt" in names
    d.docker("rm", "cpr", check=True)
    assert set(glob.glob("/tmp/pycontainer-fs-*")) == made_before  # nothing left on the host's /tmp


# -- the command line through the daemon ----------------------------------------------------------------

def _pycontainer(d, *args: str, extra_env: dict[str, str] | None = None):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "pycontainer_magics", *args], env={**d.env, **(extra_env or {})},
                          capture_output=True, text=True, timeout=120)


def test_cli_run_goes_through_the_daemon(d):
    r = _pycontainer(d, "run", "--memory", "64m", "--", "sh", "-c", "echo out; echo err >&2; exit 4")
    assert (r.returncode, r.stdout) == (4, "out\n")
    assert "err\n" in r.stderr and r.stderr.rstrip().endswith("(daemon)")
    assert not [c for c in d.records() if c.get("ExitCode") == 4]  # removed, as --rm
    r = _pycontainer(d, "run", "--", "true", extra_env={"PYCONTAINER_NO_DAEMON": "1"})
    assert r.returncode == 0 and "(daemon)" not in r.stderr
    r = _pycontainer(d, "run", "--share", "uts", "--", "true")  # not expressible in the API: in-process
    assert r.returncode == 0 and "(daemon)" not in r.stderr


def test_cli_run_through_the_daemon_is_lean(d):
    """`pycontainer run` with a daemon running reads its options without argparse and imports nothing of the
    runtime, images, network or linux layers: the daemon builds and starts the container."""
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "pycontainer_magics", "run", "--memory", "64m",
                        "--quiet", "--", "sh", "-c", "echo lean; exit 2"], env=d.env, capture_output=True, text=True,
                       timeout=120)
    assert (r.returncode, r.stdout) == (2, "lean\n"), r.stderr[-2000:]
    mods = [line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")]
    ours = {m for m in mods if m.startswith("pycontainer_magics.")}
    assert "pycontainer_magics.engine.client" in ours
    json_readers = {"pycontainer_magics.oci", "pycontainer_magics.oci.jsonin", "pycontainer_magics.oci.jsonout"}
    assert not {m for m in ours - json_readers if m.split(".")[1] in ("runtime", "images", "network", "linux",
                                                                      "workloads", "oci", "magics", "lab")}
    assert not {"argparse", "typing", "dataclasses", "urllib.parse", "socket", "threading", "struct", "json", "re",
                "enum"} & set(mods)
    # what the lean reader does not take goes the full way, with the same words as without a daemon
    r = _pycontainer(d, "run", "--memory", "lots", "--", "true")
    assert r.returncode == 125 and "invalid size 'lots' for --memory" in r.stderr
    r = _pycontainer(d, "run", "--memory", "64m", "--timeout", "5s", "--", "sh", "-c", "echo full")
    assert (r.returncode, r.stdout) == (0, "full\n")


LEAN_ARGV = [
    ["--", "true"],
    ["-m", "64m", "--pids-limit", "20", "--", "sh", "-c", "echo x"],
    ["--memory=1.5g", "--memory-swap", "2g", "--cpus", "1.5", "--name", "n1", "--", "true"],
    ["--memory-swap=-1", "-m", "100m", "--pids", "-1", "--", "true"],
    ["-e", "A=1", "-e", "HOME", "-e", "NOT_SET_ANYWHERE_X", "-w", "/tmp", "-u", "1000:1000", "--hostname", "h",
     "--read-only", "--", "id"],
    ["-v", "/tmp:/data:ro", "-v", "vol1:/v", "--network", "bridge", IMAGE, "--", "ls", "/"],
    ["--image", "host", "--net=none", "-q", "--json", "--", "true"],
    [IMAGE, "--"],
]


@pytest.mark.parametrize("argv", LEAN_ARGV)
def test_the_lean_reader_asks_the_daemon_for_the_same_container(argv):
    """cli/run_daemon.py's body and the full path's (argparse, build_spec, run_remote.create_body) make the same
    ContainerSpec daemon-side."""
    from pycontainer_magics.cli import build_parser, run_daemon
    from pycontainer_magics.cli.run import image_and_command
    from pycontainer_magics.engine.container_config import spec_of
    from pycontainer_magics.engine.run_remote import create_body
    from pycontainer_magics.magics.args import spec_options
    from pycontainer_magics.runtime.parse import build_spec

    parsed = run_daemon.parse(argv)
    assert parsed is not None
    lean = run_daemon.create_body(*parsed)
    assert lean is not None
    ns = build_parser().parse_args(["run", *argv])
    image, command = image_and_command(ns)
    opts = spec_options(ns)
    if image is not None:
        opts["image"] = image
    full = create_body(build_spec(command=command or None, **opts))
    assert parsed[0].get("name") == opts.get("name")

    def spec(body):
        # (default_bounds: the lean body leaves the lab's default pids limit to the daemon, which marks it as a
        # default; the full path sends the number it filled in. The limits are the same.)
        return spec_of("c" * 64, "n", body["Image"], body, body["HostConfig"], {}, "/layer").with_(default_bounds=())
    assert spec(lean) == spec(full)


@pytest.mark.parametrize("argv", [["--share", "uts", "--", "true"], ["--timeout", "1s", "--", "true"],
                                  ["-m", "lots", "--", "true"], ["--memory"], ["-v", "rel/dir:/x", "--", "true"],
                                  ["a", "b", "--", "true"], ["-i", "--", "cat"]])
def test_the_lean_reader_leaves_the_rest_to_the_full_one(argv):
    from pycontainer_magics.cli import run_daemon

    parsed = run_daemon.parse(argv)
    assert parsed is None or run_daemon.create_body(*parsed) is None


@pytest.mark.parametrize(("text", "expected"), [
    ("64m", 64 * 2**20), ("64M", 64 * 2**20), (" 64 m ", 64 * 2**20), ("1.5g", 3 * 2**29), ("1.", 1),
    ("  .5k", 512), ("64mb", 64 * 2**20), ("64mib", 64 * 2**20), ("64MiB", 64 * 2**20), ("64ib", 64), ("64b", 64),
    ("64bib", 64), ("64 kb", 65536), ("64m\n", 64 * 2**20), ("\u0663m", 3 * 2**20), ("2t", 2 * 2**40),
    (".", None), ("", None), ("m", None), ("64x", None), ("1e3", None), ("-5m", None), ("+5", None),
    ("\u00b2m", None), ("1..2m", None), ("12.3.4", None), ("0x10", None), ("64 mi", None), ("64m b", None)])
def test_one_size_grammar_for_the_lean_reader_and_parse_size(text, expected):
    """sizes.size_bytes (no re: its import costs every `pycontainer run`) is the grammar parse_size reads too:
    the regex both once had (number, unit b/k/m/g/t, an (i)b, any case, spaces)."""
    from pycontainer_magics.runtime.parse import parse_size
    from pycontainer_magics.runtime.spec import SpecError
    from pycontainer_magics.sizes import size_bytes

    assert size_bytes(text) == expected
    if expected is None:
        with pytest.raises(SpecError, match="invalid size"):
            parse_size(text)
    else:
        assert parse_size(text) == expected


def test_a_container_like_the_last_starts_from_a_spare(d):
    """The launcher keeps a spare supervisor, which prepares a container like the last one (cgroup, namespaces,
    overlay over a layer of its own, PID 1 up to the payload, at the lowest priority): the next such container
    takes it over (its record says Prepared) and runs at normal priority; one that is not alike, or a restart of
    a container whose layer exists, starts the usual way."""
    names = [f"spare{os.getpid()}-{i}" for i in range(3)]
    spares = os.path.join(d.root, "state", "engine", "spares")
    for n in names:
        # (the spare is made once the container before has ended: a start before that goes the usual way)
        assert n == names[0] or wait_for(lambda: os.path.isdir(spares) and os.listdir(spares), 30)
        r = d.docker("run", "--name", n, "--network", "none", "-m", "64m", IMAGE, "sh", "-c",
                     "cut -d' ' -f19 /proc/self/stat; echo data > /kept", check=True)
        assert r.stdout == "0\n"  # nice 0: not the spare's 19
    ids = [d.docker("inspect", "-f", "{{.Id}}", n, check=True).stdout.strip() for n in names]
    # the spare kept now waits for its order at normal priority once prepared (woken at 19, it served it late)
    assert wait_for(lambda: bool(os.listdir(spares)), 30)

    def spare_nice() -> int | None:
        try:
            pid = os.listdir(spares)[0]
            with open(f"/proc/{pid}/stat") as f:
                return int(f.read().rsplit(")", 1)[1].split()[16])
        except (IndexError, OSError, ValueError):
            return None
    assert wait_for(lambda: spare_nice() == 0, 30), spare_nice()
    recs = {r["Id"]: r for r in d.records()}
    assert recs[ids[1]]["Prepared"] is True and recs[ids[2]]["Prepared"] is True
    # its layer is the container's own, kept across a restart (which starts the usual way)
    r = d.docker("start", "-a", names[1], check=True)
    assert r.stdout == "0\n"
    assert {r["Id"]: r for r in d.records()}[ids[1]]["Prepared"] is False
    assert d.docker("cp", f"{names[1]}:/kept", "-").returncode == 0
    d.docker("run", "--name", names[0] + "x", "--network", "none", "-m", "32m", IMAGE, "true", check=True)
    assert {r["Id"]: r for r in d.records()}[d.docker("inspect", "-f", "{{.Id}}", names[0] + "x", check=True)
                                             .stdout.strip()]["Prepared"] is False  # another memory limit
    # a container on a network after a spare was prepared: it starts the usual way, its layer is its own
    # (a spare's layer taken by a run that then planned other mounts wrote the container's files elsewhere)
    net = f"sparenet{os.getpid()}"
    d.docker("network", "create", net, check=True)
    d.docker("run", "--name", names[0] + "n", "--network", net, "-m", "32m", IMAGE, "sh", "-c", "echo n > /kept",
             check=True)
    assert "A /kept" in d.docker("diff", names[0] + "n", check=True).stdout.splitlines()
    assert d.docker("cp", f"{names[0]}n:/kept", "-").returncode == 0
    nid = d.docker("inspect", "-f", "{{.Id}}", names[0] + "n", check=True).stdout.strip()
    sup = {r["Id"]: r for r in d.records()}[nid]["Supervisor"]
    d.docker("rm", *names, names[0] + "x", names[0] + "n", check=True)
    d.docker("network", "rm", net, check=True)
    left = os.listdir(spares) if os.path.isdir(spares) else []
    assert str(sup) not in left and len(left) <= 1, left  # only the spare kept now, if any


def test_nothing_is_prepared_ahead_over_a_volume_or_a_bind(tmp_path, monkeypatch):
    """A spare prepares no container with a named volume or a bind mount: planning it would re-create a volume
    that `docker volume rm` removed in the meantime (and a bind's host side may be gone by the next run)."""
    monkeypatch.setenv("PYCONTAINER_STATE_DIR", str(tmp_path / "state"))
    from pycontainer_magics.runtime.parse import build_spec
    from pycontainer_magics.runtime.run import prepare
    from pycontainer_magics.workloads.launcher import _like

    for volume in ("gonevol:/data", f"{tmp_path}:/data:ro"):
        spec = build_spec(command=["true"], volume=[volume], network="none")
        assert _like(spec, None) is None
        assert prepare(spec) is False
    assert not (tmp_path / "state" / "volumes" / "gonevol").exists()
    assert _like(build_spec(command=["true"], network="none"), None) is not None  # the plain case is prepared


def test_cli_container_ps_logs_exec_stop(d):
    d.docker("run", "-d", "--name", "clid", "--network", "none", IMAGE, "sh", "-c",
             "trap 'exit 5' TERM; echo started; while true; do sleep 0.1; done", check=True)
    r = _pycontainer(d, "container", "ps")
    assert r.returncode == 0 and r.stdout.splitlines()[1].endswith("clid")
    assert _pycontainer(d, "container", "exec", "clid", "--", "sh", "-c", "exit 3").returncode == 3
    assert wait_for(lambda: _pycontainer(d, "container", "logs", "clid").stdout == "started\n", 30)
    assert _pycontainer(d, "container", "stop", "clid").stdout == "clid\n"
    assert d.docker("inspect", "-f", "{{.State.ExitCode}}", "clid", check=True).stdout.strip() == "5"
    d.docker("rm", "clid", check=True)


def test_restart_policies(d):
    d.docker("run", "-d", "--name", "flaky", "--network", "none", "--restart", "on-failure:2", IMAGE, "sh", "-c",
             "echo run; exit 3", check=True)
    assert wait_for(lambda: d.docker("inspect", "-f", "{{.RestartCount}} {{.State.Status}}", "flaky",
                                     check=True).stdout.split() == ["2", "exited"], 30)
    time.sleep(1)  # no third restart comes
    assert d.docker("inspect", "-f", "{{.RestartCount}} {{.State.Status}}", "flaky", check=True).stdout.split() == \
        ["2", "exited"]
    assert d.docker("logs", "flaky", check=True).stdout == "run\nrun\nrun\n"  # the first run and two restarts
    d.docker("rm", "flaky", check=True)
    d.docker("run", "-d", "--name", "always", "--network", "none", "--restart", "always", IMAGE, "sh", "-c",
             "trap 'exit 0' TERM; while true; do sleep 0.1; done", check=True)
    d.docker("exec", "always", "sh", "-c", "kill 1", check=True)  # it ends on its own: restarted
    assert wait_for(lambda: d.docker("inspect", "-f", "{{.RestartCount}} {{.State.Running}}", "always",
                                     check=True).stdout.split() == ["1", "true"], 30)
    d.docker("stop", "always", check=True)  # a manual stop holds
    time.sleep(0.5)
    assert d.docker("inspect", "-f", "{{.State.Running}}", "always", check=True).stdout.strip() == "false"
    d.docker("rm", "always", check=True)


def test_the_next_spare_is_made_once_the_container_has_ended(monkeypatch):
    """The spare for the next container is not made while this one starts or ends (its fork, cgroup, namespaces
    and mounts took a third of `pycontainer run`'s time): after the daemon says the container ended, or once
    it has run REFILL_AFTER seconds."""
    import threading

    from pycontainer_magics.workloads import launcher as launcher_mod

    monkeypatch.setattr(launcher_mod, "REFILL_AFTER", 30.0)
    monkeypatch.setattr(launcher_mod, "SETTLE", 0.0)
    made: list[object] = []
    done = threading.Event()
    lx = launcher_mod.Launcher()
    monkeypatch.setattr(lx, "refill", lambda like: (made.append(like), done.set()))
    quiet = threading.Event()
    lx._quiet["c1"] = quiet
    t = threading.Thread(target=lx._refill_when_quiet, args=("c1", "like-c1", quiet))
    t.start()
    time.sleep(0.2)
    assert made == []  # still running: no spare beside its start
    lx.ended("c2")  # another container's end does not count
    time.sleep(0.1)
    assert made == []
    lx.ended("c1")
    assert done.wait(5) and made == ["like-c1"]
    t.join(5)
    assert "c1" not in lx._quiet
    # one still running after REFILL_AFTER gets its spare made beside it
    monkeypatch.setattr(launcher_mod, "REFILL_AFTER", 0.05)
    done.clear()
    quiet = threading.Event()
    lx._quiet["c3"] = quiet
    threading.Thread(target=lx._refill_when_quiet, args=("c3", "like-c3", quiet)).start()
    assert done.wait(5) and made[-1] == "like-c3"



def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_exec_output_waits_for_a_client_that_reads_slowly(d):
    """A client that stops reading an exec's output holds the process up (as dockerd's exec does), not the
    daemon's memory; once it reads, every byte arrives, then the exit code."""
    name = f"slowexec{os.getpid()}"
    d.docker("run", "-d", "--name", name, "--network", "none", IMAGE, "sleep", "120", check=True)
    try:
        d.docker("exec", name, "true", check=True)  # the daemon's exec path loaded: RSS from here on is output
        n = 256 * 2**20
        status, body, _ = d.request("POST", f"/containers/{name}/exec",
                                    {"Cmd": ["head", "-c", str(n), "/dev/zero"], "AttachStdout": True})
        assert status == 201
        eid = body["Id"]
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.connect(d.socket)
        req = b'{"Detach": false, "Tty": false}'
        s.sendall(f"POST /v1.41/exec/{eid}/start HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: {len(req)}\r\n\r\n".encode() + req)
        rss0 = _rss_kib(d.proc.pid)
        time.sleep(4)  # not reading
        assert d.request("GET", f"/exec/{eid}/json")[1]["Running"] is True  # held up, not finished into memory
        assert _rss_kib(d.proc.pid) - rss0 < 32 * 1024
        s.settimeout(60)
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        buf = data.split(b"\r\n\r\n", 1)[1]
        got = 0
        while True:
            while len(buf) >= 8 and len(buf) >= 8 + int.from_bytes(buf[4:8], "big"):
                size = int.from_bytes(buf[4:8], "big")
                got += size
                buf = buf[8 + size:]
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
        s.close()
        assert got == n
        assert wait_for(lambda: d.request("GET", f"/exec/{eid}/json")[1]["ExitCode"] == 0, 30)
    finally:
        d.docker("rm", "-f", name)


def test_a_spare_renices_the_parked_pid1_even_while_the_holder_forks_it():
    """The spare asks its holder to park PID 1 and returns at once: the holder may be inside fork() (which
    copies the parent's nice first and joins the process group last) when the spare renices the group. A
    fork that slow is made here with a holder of 1 GiB touched memory: its child must still end at nice 0."""
    from pycontainer_magics.workloads.supervisor import _renice_holder

    go_r, go_w = os.pipe()
    out_r, out_w = os.pipe()
    done_r, done_w = os.pipe()
    holder = os.fork()
    if holder == 0:  # a stand-in for the holder: its own session, nice 19, a big heap, forks when told
        try:
            os.setsid()
            os.setpriority(os.PRIO_PROCESS, 0, 19)
            heap = bytearray(1 << 30)
            for i in range(0, len(heap), 4096):
                heap[i] = 1
            os.write(out_w, b"r")
            os.read(go_r, 1)
            child = os.fork()
            if child == 0:
                os.read(done_r, 1)  # the spare has reniced (or not): not a fixed delay, which a loaded machine outlasts
                os.write(out_w, str(os.getpriority(os.PRIO_PROCESS, 0)).encode().rjust(3))
                os._exit(0)
            os.waitpid(child, 0)
        finally:
            os._exit(0)
    try:
        assert os.read(out_r, 1) == b"r"
        os.write(go_w, b"g")
        time.sleep(0.003)  # the holder woke and is copying its page tables
        _renice_holder(holder, True)
        os.write(done_w, b"d")
        assert os.read(out_r, 3).strip() == b"0"
    finally:
        os.write(done_w, b"d")  # (a second byte: never blocks, and ends a child still waiting if the test failed)
        os.waitpid(holder, 0)
        for fd in (go_r, go_w, out_r, out_w, done_r, done_w):
            os.close(fd)
