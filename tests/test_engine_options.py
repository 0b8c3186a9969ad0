"""`docker run` options against `pycontainer serve`: each one either does what it does under dockerd, or the
request is refused (400, the option named, nothing made) — never accepted and quietly dropped. Driven with
the real docker CLI, as a docker user types them."""

from __future__ import annotations

import os

import pytest
from engine_helpers import IMAGE, daemon

pytestmark = [pytest.mark.root, pytest.mark.network]


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory):
    with daemon(str(tmp_path_factory.mktemp("engine-opts"))) as dm:
        yield dm


def run(d, *args: str) -> tuple[int, str]:
    r = d.docker("run", "--rm", "--network", "none", *args)
    return r.returncode, (r.stdout + r.stderr).strip()


def test_host_namespaces_are_the_hosts(d):
    """--pid/--ipc/--uts/--cgroupns host share that namespace with the host, as under dockerd."""
    for flag, ns in (("--pid", "pid"), ("--ipc", "ipc"), ("--uts", "uts"), ("--cgroupns", "cgroup")):
        rc, out = run(d, flag, "host", IMAGE, "readlink", f"/proc/self/ns/{ns}")
        assert rc == 0 and out == os.readlink(f"/proc/self/ns/{ns}"), (flag, out)
    rc, out = run(d, IMAGE, "readlink", "/proc/self/ns/pid")
    assert rc == 0 and out != os.readlink("/proc/self/ns/pid")  # and without the flag, a namespace of its own
    rc, out = run(d, "--uts", "host", IMAGE, "hostname")
    assert rc == 0 and out == os.uname().nodename


def test_pids_limit_minus_one_is_no_limit(d):
    rc, out = run(d, "--pids-limit", "-1", IMAGE, "sh", "-c", "cat /sys/fs/cgroup/pids/pids.max "
                  "2>/dev/null || cat /sys/fs/cgroup/pids.max")
    assert (rc, out) == (0, "max")
    rc, out = run(d, "--pids-limit", "50", IMAGE, "sh", "-c", "cat /sys/fs/cgroup/pids/pids.max "
                  "2>/dev/null || cat /sys/fs/cgroup/pids.max")
    assert (rc, out) == (0, "50")


def test_publish_all_publishes_the_exposed_ports(d):
    cid = d.docker("run", "-d", "-P", "--expose", "80", IMAGE, "sleep", "30", check=True).stdout.strip()
    try:
        port = d.docker("port", cid, "80", check=True).stdout.strip()
        assert port.startswith("127.0.0.1:") and int(port.rsplit(":", 1)[1]) > 0, port
    finally:
        d.docker("rm", "-f", cid)


@pytest.mark.parametrize("args, named", [
    (["--sysctl", "net.ipv4.ip_forward=1"], "--sysctl"),
    (["--add-host", "foo:1.2.3.4"], "--add-host"),
    (["--dns", "9.9.9.9"], "--dns"),
    (["--init"], "--init"),
    (["--shm-size", "1m"], "--shm-size"),
    (["--device", "/dev/null:/dev/xnull"], "--device"),
    (["--group-add", "10"], "--group-add"),
    (["--oom-kill-disable", "-m", "64m"], "--oom-kill-disable"),
    (["--memory-reservation", "10m"], "--memory-reservation"),
    (["--health-cmd", "true"], "--health-cmd"),
    (["--runtime", "runc"], "runtime name: runc"),
    (["-v", "/data"], "anonymous volumes"),
    (["--domainname", "example.org"], "--domainname"),
    (["--cgroup-parent", "elsewhere"], "--cgroup-parent"),
    (["--log-driver", "none"], "--log-driver none"),
    (["--storage-opt", "size=10m"], "--storage-opt"),
    (["--ipc", "none"], "IpcMode 'none'"),
])
def test_what_it_cannot_do_is_refused_by_name(d, args, named):
    before = d.docker("ps", "-aq", check=True).stdout.split()
    rc, out = run(d, *args, IMAGE, "true")
    assert rc == 125 and named in out, out
    assert d.docker("ps", "-aq", check=True).stdout.split() == before  # nothing was made


def test_an_address_on_a_network_is_refused(d):
    d.docker("network", "create", "optnet", check=True)
    try:
        r = d.docker("run", "--rm", "--network", "optnet", "--ip", "172.31.250.9", IMAGE, "true")
        assert r.returncode == 125 and "--ip" in r.stderr, r.stderr
    finally:
        d.docker("network", "rm", "optnet", check=True)


def test_exec_privileged_is_refused(d):
    cid = d.docker("run", "-d", "--network", "none", IMAGE, "sleep", "30", check=True).stdout.strip()
    try:
        r = d.docker("exec", "--privileged", cid, "true")
        assert r.returncode != 0 and "--privileged" in r.stderr, r.stderr
        assert d.docker("exec", cid, "true").returncode == 0
    finally:
        d.docker("rm", "-f", cid)


@pytest.mark.parametrize("host, says", [("tcp://127.0.0.1:99999", "Port out of range"),
                                        ("unix://{tmp}/no/such/dir/docker.sock", "no such directory"),
                                        ("unix://relative.sock", "must be absolute"),
                                        ("bogus://x", "unsupported host")])
def test_serve_refuses_a_bad_address_in_one_line_and_makes_nothing(tmp_path, host, says):
    import subprocess
    import sys

    if os.geteuid() != 0:
        pytest.skip("the daemon needs root")
    env = {**os.environ, "PYCONTAINER_STATE_DIR": str(tmp_path / "state"),
           "PYCONTAINER_RUN_DIR": str(tmp_path / "run")}
    p = subprocess.run([sys.executable, "-m", "pycontainer_magics", "serve", "-H", host.format(tmp=tmp_path)],
                       env=env, capture_output=True, text=True, timeout=60)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1 and len(lines) == 1 and says in lines[0], p.stderr
    assert sorted(os.listdir(tmp_path)) == [], os.listdir(tmp_path)  # no state, run dir, socket directory


def test_serve_says_where_it_listens(d):
    """As dockerd's "API listen on ...": the line a user starting `pycontainer serve &` needs."""
    import select

    assert d.proc.stderr is not None
    ready, _, _ = select.select([d.proc.stderr], [], [], 10)
    assert ready
    line = d.proc.stderr.readline().decode()
    assert line.startswith("pycontainer serve: API listening on unix://") and \
        f"export DOCKER_HOST={d.env['DOCKER_HOST']}" in line, line


def test_kill_answers_once_the_container_has_ended(d):
    """`docker kill x && docker rm x`, a script's everyday line: as dockerd, the kill's answer waits for the end."""
    for _ in range(3):
        cid = d.docker("run", "-d", "--network", "none", IMAGE, "sleep", "60", check=True).stdout.strip()
        d.docker("kill", cid, check=True)
        state = d.docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", cid, check=True).stdout.strip()
        assert state == "exited 137", state
        d.docker("rm", cid, check=True)


def test_serve_on_a_public_address_warns_on_stderr(tmp_path):
    """dockerd warns on its terminal when it listens on TCP without TLS; the warning only in a log file is one
    nobody reads."""
    import signal
    import subprocess
    import sys

    from images_helpers import free_port

    if os.geteuid() != 0:
        pytest.skip("the daemon needs root")
    env = {**os.environ, "PYCONTAINER_STATE_DIR": str(tmp_path / "state"),
           "PYCONTAINER_RUN_DIR": str(tmp_path / "run")}
    proc = subprocess.Popen([sys.executable, "-m", "pycontainer_magics", "serve", "-H",
                             f"tcp://0.0.0.0:{free_port()}"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert "WARNING" in first and "no TLS" in first, first
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        if proc.stderr is not None:
            proc.stderr.close()


def test_a_network_that_does_not_exist_is_refused_at_create(d):
    """dockerd answers 404 at create; the container was made and failed at start (the error shown twice)."""
    before = d.docker("ps", "-aq", check=True).stdout.split()
    r = d.docker("run", "--network", "nosuchnet", IMAGE, "true")
    assert r.returncode == 125 and "network nosuchnet not found" in r.stderr, r.stderr
    assert "Error waiting for container" not in r.stderr, r.stderr
    assert d.docker("ps", "-aq", check=True).stdout.split() == before


@pytest.mark.parametrize("body", [{"HostConfig": {"Memory": "lots"}}, {"HostConfig": {"PidsLimit": "x"}},
                                  {"Cmd": {"a": 1}}, {"HostConfig": {"RestartPolicy": {"Name": "on-failure",
                                                                                       "MaximumRetryCount": "x"}}},
                                  {"HostConfig": {"Binds": 5}}, {"HostConfig": "x"}, {"Env": [1, 2]},
                                  {"HostConfig": {"ConsoleSize": ["a", 1]}}, {"HostConfig": {"ConsoleSize": 80}}])
def test_a_field_of_the_wrong_json_type_is_a_400_and_makes_nothing(d, body):
    """dockerd's decoder refuses a wrong JSON type (400); here some were a 500 (a TypeError in the checks) and
    some made a container with nonsense in its record."""
    before = len(d.records())
    status, answer, _ = d.request("POST", "/containers/create", {"Image": IMAGE, **body})
    assert status == 400 and "cannot unmarshal" in answer["message"], (status, answer)
    assert len(d.records()) == before


def test_exec_network_and_volume_bodies_of_the_wrong_json_type_are_400s(d):
    """Each was a 500 'internal error: TypeError/AttributeError' (exec Cmd [1, 2], network IPAM "x", volume
    Name 5), or accepted (exec Env "A=1")."""
    cid = d.docker("run", "-d", "--network", "none", IMAGE, "sleep", "30", check=True).stdout.strip()
    try:
        for path, body in ((f"/containers/{cid}/exec", {"Cmd": [1, 2]}),
                           (f"/containers/{cid}/exec", {"Cmd": ["true"], "Env": "A=1"}),
                           (f"/containers/{cid}/exec", {"Cmd": ["true"], "Tty": True, "ConsoleSize": ["x", 80]}),
                           ("/networks/create", {"Name": "n-bad", "IPAM": "x"}),
                           ("/networks/create", {"Name": "n-bad", "IPAM": {"Config": [{"Subnet": 5}]}}),
                           ("/volumes/create", {"Name": 5})):
            status, answer, _ = d.request("POST", path, body)
            assert status == 400 and "cannot unmarshal" in answer["message"], (path, body, status, answer)
        assert "n-bad" not in d.docker("network", "ls", "--format", "{{.Name}}", check=True).stdout.split()
    finally:
        d.docker("rm", "-f", cid)
