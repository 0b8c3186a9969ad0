"""The OCI runtime command set with state (`pycontainer create|start|state|kill|delete|list|spec`), as runc
has it: a created container is set up and its process not yet executed; the state JSON is valid against
the runtime-spec state schema; errors are one line and leave nothing; the host is clean after delete; and
the statuses go through the same transitions as runc's on the same bundle."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import host_clean, make_busybox_rootfs  # noqa: F401 - host_clean is a fixture

from pycontainer_magics.oci.bundle import validate_config, validate_state

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("host_clean"),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

PYCONTAINER = str(Path(sys.executable).with_name("pycontainer"))
# Says it started (a file on a bind mount the host sees), exits 3 on SIGTERM (PID 1 ignores signals it has
# no handler for), else waits.
PAYLOAD = "echo started > /out/started; echo to-stdout; echo to-stderr >&2; trap 'exit 3' TERM; " \
          "while :; do sleep 0.05; done"


@pytest.fixture(scope="module")
def busybox(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_busybox_rootfs(str(tmp_path_factory.mktemp("lifecycle-busybox")))


class Runtime:
    """`pycontainer` (or runc) with its own state root."""

    def __init__(self, prefix: list[str], root: Path, ours: bool = True) -> None:
        self.prefix, self.root, self.ours = prefix, root, ours

    def __call__(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [*self.prefix] if self.ours else [*self.prefix, "--root", str(self.root)]
        argv_l = list(argv)
        if self.ours:
            argv_l.insert(1, f"--root={self.root}")  # ours: per subcommand
        if not self.ours and argv[0] == "create":
            # runc's and crun's container inherits create's stdout and stderr: pipes would stay open.
            with open(self.root.parent / "runc-output", "a") as out:
                p = subprocess.run([*cmd, *argv_l], stdout=out, stderr=out, text=True, timeout=60)
                p.stdout = p.stderr = ""
        else:
            p = subprocess.run([*cmd, *argv_l], capture_output=True, text=True, timeout=60)
        if check:
            assert p.returncode == 0, (argv, p.stderr)
        return p

    def state(self, cid: str) -> dict[str, Any]:
        st: dict[str, Any] = json.loads(self("state", cid).stdout)
        return st

    def wait_status(self, cid: str, status: str, timeout: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            st = self.state(cid)
            if st["status"] == status or time.monotonic() > deadline:
                return st
            time.sleep(0.05)


@pytest.fixture
def ours(tmp_path: Path) -> Runtime:
    return Runtime([PYCONTAINER], tmp_path / "state")


def make_bundle(tmp_path: Path, busybox: str, args: list[str], tool: list[str] | None = None) -> Path:
    """`pycontainer spec` (or `runc spec`/`crun spec`), rootfs a busybox, args, and /out bound from the host."""
    b = tmp_path / "bundle"
    b.mkdir()
    subprocess.run(tool or [PYCONTAINER, "spec"], cwd=b, check=True, capture_output=True)
    shutil.copytree(busybox, b / "rootfs", symlinks=True)
    (b / "rootfs" / "out").mkdir()
    (tmp_path / "out").mkdir()
    c = json.loads((b / "config.json").read_text())
    c["process"]["args"] = args
    c["process"]["terminal"] = False
    c["mounts"].append({"destination": "/out", "type": "bind", "source": str(tmp_path / "out"),
                        "options": ["rbind", "rw"]})
    c["annotations"] = {"org.example.lecture": "containers"}
    (b / "config.json").write_text(json.dumps(c))
    return b


def cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [a.decode() for a in f.read().split(b"\0") if a]


def record(ours: Runtime, cid: str) -> dict[str, Any]:
    """The record behind the state (the supervisor's pid is in it)."""
    rec: dict[str, Any] = json.loads((ours.root / cid / "state.json").read_text())
    return rec


def _exited(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def assert_gone(ours: Runtime, cid: str, pids: list[int]) -> None:
    """No state directory, process, cgroup or mount of the container left on the host."""
    assert not (ours.root / cid).exists()
    for pid in pids:
        # Exited (the supervisor, orphaned on purpose, may still wait as a zombie for init to reap it).
        assert _exited(pid), f"process {pid} left behind"
    for root in ("/sys/fs/cgroup", *(f"/sys/fs/cgroup/{c}" for c in ("memory", "pids", "cpu,cpuacct", "cpuset",
                                                                      "freezer"))):
        parent = os.path.join(root, "pycontainer_magics")
        if os.path.isdir(parent):
            left = [d for d in os.listdir(parent) if any(d.startswith(f"{p}-") for p in pids)]
            assert not left, f"cgroups left behind in {parent}: {left}"
    with open("/proc/self/mountinfo") as f:
        assert not [line for line in f if str(ours.root) in line]


# --- spec ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rootless", [False, True])
def test_spec_writes_runcs_default_config(tmp_path: Path, rootless: bool) -> None:
    flag = ["--rootless"] if rootless else []
    p = subprocess.run([PYCONTAINER, "spec", "--bundle", str(tmp_path), *flag], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    ours = json.loads((tmp_path / "config.json").read_text())
    validate_config(ours)
    again = subprocess.run([PYCONTAINER, "spec", "--bundle", str(tmp_path)], capture_output=True, text=True)
    assert again.returncode == 125 and again.stderr.count("\n") == 1 and "exists: remove it first" in again.stderr
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed")
    (tmp_path / "runc").mkdir()
    subprocess.run(["runc", "spec", *flag], cwd=tmp_path / "runc", check=True)
    runc = json.loads((tmp_path / "runc" / "config.json").read_text())
    # The same config but for what this runtime does differently on purpose: no terminal, its own hostname.
    assert ours["process"].pop("terminal") is False and runc["process"].pop("terminal") is True
    for c in (ours, runc):
        c.pop("hostname")
        c.pop("ociVersion")
    assert ours == runc


# --- the lifecycle --------------------------------------------------------------------------------------

def test_create_start_kill_delete(busybox: str, tmp_path: Path, ours: Runtime) -> None:
    b = make_bundle(tmp_path, busybox, ["sh", "-c", PAYLOAD])
    started = tmp_path / "out" / "started"
    ours("create", "--bundle", str(b), "c1")
    st = ours.state("c1")
    validate_state(st)
    assert st["status"] == "created" and st["id"] == "c1" and st["bundle"] == str(b)
    assert st["annotations"] == {"org.example.lecture": "containers"}
    pid = st["pid"]
    sup = record(ours, "c1")["supervisor"]
    # Set up (its own PID namespace, in a cgroup), the user's process not executed yet.
    assert os.path.exists(f"/proc/{pid}") and "sh" not in cmdline(pid)[:1]
    assert os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
    assert "pycontainer_magics/" in Path(f"/proc/{pid}/cgroup").read_text()
    time.sleep(0.2)
    assert not started.exists()
    listed = ours("list").stdout.splitlines()
    assert listed[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    assert listed[1].split()[:4] == ["c1", str(pid), "created", str(b)]
    assert json.loads(ours("list", "--format", "json").stdout)[0]["status"] == "created"

    ours("start", "c1")
    st = ours.state("c1")
    validate_state(st)
    assert st["status"] == "running" and st["pid"] == pid
    deadline = time.monotonic() + 10
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert started.exists() and cmdline(pid)[:2] == ["sh", "-c"]

    ours("kill", "c1")  # SIGTERM by default: the payload traps it and exits 3
    st = ours.wait_status("c1", "stopped")
    validate_state(st)
    assert st["status"] == "stopped" and st["pid"] == 0 and st["exitStatus"] == 3
    assert (ours.root / "c1" / "stdout.log").read_text() == "to-stdout\n"
    assert (ours.root / "c1" / "stderr.log").read_text() == "to-stderr\n"
    ours("delete", "c1")
    assert_gone(ours, "c1", [pid, sup])
    assert ours("list", "-q").stdout == ""


def test_stopped_by_itself_and_kill_by_name_or_number(busybox: str, tmp_path: Path, ours: Runtime) -> None:
    b = make_bundle(tmp_path, busybox, ["sh", "-c", "exit 7"])
    ours("create", "--bundle", str(b), "quick")
    ours("start", "quick")
    st = ours.wait_status("quick", "stopped")
    assert st["exitStatus"] == 7
    sup = record(ours, "quick")["supervisor"]
    ours("delete", "quick")  # stopped: no --force needed
    assert_gone(ours, "quick", [sup])
    cfg = json.loads((b / "config.json").read_text())
    cfg["process"]["args"] = ["sleep", "100"]
    (b / "config.json").write_text(json.dumps(cfg))
    for sig, code in (("9", 137), ("SIGKILL", 137), ("kill", 137)):
        ours("create", "--bundle", str(b), "k")
        ours("start", "k")
        ours("kill", "k", sig)
        assert ours.wait_status("k", "stopped")["exitStatus"] == code, sig
        ours("delete", "k")


def test_run_with_an_id_has_state_while_it_runs(busybox: str, tmp_path: Path, ours: Runtime) -> None:
    """As runc's run: attached, seen by state and list and killable from elsewhere, deleted at its end."""
    b = make_bundle(tmp_path, busybox, ["sh", "-c", "echo started; exec sleep 100"])
    proc = subprocess.Popen([PYCONTAINER, "run", "--bundle", str(b), f"--root={ours.root}", "attached"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not (ours.root / "attached" / "state.json").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        st = ours.wait_status("attached", "running")
        assert st["status"] == "running" and st["pid"] > 0 and st["bundle"] == str(b)
        assert "attached" in ours("list", "-q").stdout.split()
        ours("kill", "attached", "KILL")
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 137 and out == "started\n", err
    assert not (ours.root / "attached").exists()
    assert ours("state", "attached", check=False).returncode == 125
    (ours.root / "dup").mkdir()  # an id in use: one line, nothing run
    p = subprocess.run([PYCONTAINER, "run", "--bundle", str(b), f"--root={ours.root}", "dup"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 125 and "already exists" in p.stderr and p.stdout == ""


def test_delete_a_created_container_and_force_a_running_one(busybox: str, tmp_path: Path, ours: Runtime) -> None:
    b = make_bundle(tmp_path, busybox, ["sh", "-c", PAYLOAD])
    ours("create", "--bundle", str(b), "never-started", "--pid-file", str(tmp_path / "pid"))
    pid = int((tmp_path / "pid").read_text())
    assert ours.state("never-started")["pid"] == pid
    sup = record(ours, "never-started")["supervisor"]
    ours("delete", "never-started")  # as runc: a created container is destroyed without --force
    assert_gone(ours, "never-started", [pid, sup])
    assert not (tmp_path / "out" / "started").exists()  # its process never ran

    ours("create", "--bundle", str(b), "busy")
    ours("start", "busy")
    pid, sup = ours.state("busy")["pid"], record(ours, "busy")["supervisor"]
    p = ours("delete", "busy", check=False)
    assert p.returncode == 125 and p.stderr.splitlines() == [
        "pycontainer: error: cannot delete container 'busy': it is running (kill it first, or use --force)"]
    assert ours.state("busy")["status"] == "running"
    ours("delete", "--force", "busy")
    assert_gone(ours, "busy", [pid, sup])


def _one_error(p: subprocess.CompletedProcess[str], needle: str) -> None:
    assert p.returncode == 125, p
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pycontainer: error: ") and needle in lines[0], p.stderr


def test_errors_are_one_line_and_leave_nothing(busybox: str, tmp_path: Path, ours: Runtime) -> None:
    for cmd in (["start", "nope"], ["state", "nope"], ["kill", "nope"], ["delete", "nope"]):
        _one_error(ours(*cmd, check=False), "container 'nope' does not exist")
    _one_error(ours("state", "../etc", check=False), "invalid container id")
    # A bad bundle: nothing made.
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text(json.dumps({
        "ociVersion": "1.0.2", "root": {"path": "missing"}, "process": {"args": ["true"], "cwd": "/"}}))
    _one_error(ours("create", "--bundle", str(tmp_path / "bad"), "b1", check=False), "root/path")
    assert not (ours.root / "b1").exists()
    _one_error(ours("create", "--bundle", str(tmp_path / "none"), "b2", check=False), "no such file")
    assert not ours.root.exists() or os.listdir(ours.root) == []
    # A bundle that fails while being set up, after the supervisor took over (a working directory that
    # cannot be made on the read-only root): nothing left either.
    b = make_bundle(tmp_path, busybox, ["sh", "-c", PAYLOAD])
    cfg = json.loads((b / "config.json").read_text())
    (tmp_path / "fails").mkdir()
    (tmp_path / "fails" / "config.json").write_text(json.dumps(dict(
        cfg, root={"path": str(b / "rootfs"), "readonly": True}, process=dict(cfg["process"], cwd="/no/such/dir"))))
    p = ours("create", "--bundle", str(tmp_path / "fails"), "f1", check=False)
    _one_error(p, "container setup failed")
    assert os.listdir(ours.root) == []
    # As runc: a process that cannot be executed fails `create`, not `start`.
    (tmp_path / "noexec").mkdir()
    (tmp_path / "noexec" / "config.json").write_text(json.dumps(dict(
        cfg, root={"path": str(b / "rootfs")}, process=dict(cfg["process"], args=["no-such-command"]))))
    _one_error(ours("create", "--bundle", str(tmp_path / "noexec"), "f2", check=False),
               "'no-such-command': executable file not found in $PATH")
    assert os.listdir(ours.root) == []
    # Duplicate id, start twice, kill with a bad signal, kill and start a stopped one.
    ours("create", "--bundle", str(b), "c")
    pid = ours.state("c")["pid"]
    _one_error(ours("create", "--bundle", str(b), "c", check=False), "container 'c' already exists")
    assert ours.state("c")["status"] == "created" and ours.state("c")["pid"] == pid  # the first one untouched
    _one_error(ours("kill", "c", "NOSUCHSIG", check=False), "invalid signal 'NOSUCHSIG'")
    ours("start", "c")
    _one_error(ours("start", "c", check=False), "cannot start container 'c': it is running, not created")
    ours("kill", "c", "KILL")
    ours.wait_status("c", "stopped")
    _one_error(ours("kill", "c", check=False), "cannot kill container 'c': it is stopped")
    _one_error(ours("start", "c", check=False), "it is stopped, not created")
    sup = record(ours, "c")["supervisor"]
    ours("delete", "c")
    assert_gone(ours, "c", [pid, sup])


# --- side by side with runc -------------------------------------------------------------------------------

def _lifecycle(rt: Runtime, bundle: Path, out: Path, cid: str) -> tuple[list[str], list[dict[str, Any]]]:
    statuses, states = [], []

    def look() -> None:
        st = rt.state(cid)
        statuses.append(st["status"])
        states.append(st)

    rt("create", "--bundle", str(bundle), cid)
    look()
    created_pid = states[-1]["pid"]
    assert not (out / "started").exists()
    rt("start", cid)
    deadline = time.monotonic() + 10
    while not (out / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    look()
    assert states[-1]["pid"] == created_pid
    rt("kill", cid, "TERM")
    states.append(rt.wait_status(cid, "stopped"))
    statuses.append(states[-1]["status"])
    rt("delete", cid)
    assert rt("state", cid, check=False).returncode != 0
    (out / "started").unlink()
    return statuses, states


@pytest.mark.parametrize("peer", ["runc", "crun"])
def test_same_transitions_and_state_fields_as_runc_and_crun(busybox: str, tmp_path: Path, ours: Runtime,
                                                            peer: str) -> None:
    from helpers import CrunRunner

    if shutil.which(peer) is None:
        pytest.skip(f"{peer} is not installed (apt-get install {peer})")
    b = make_bundle(tmp_path, busybox, ["sh", "-c", PAYLOAD], tool=[peer, "spec"])
    cid = f"pcm-lc-{os.getpid()}"
    with CrunRunner() if peer == "crun" else contextlib.nullcontext() as crun:
        rt = Runtime(crun.prefix if crun else ["runc"], tmp_path / f"{peer}-state", ours=False)
        runc_statuses, runc_states = _lifecycle(rt, b, tmp_path / "out", cid)
    our_statuses, our_states = _lifecycle(ours, b, tmp_path / "out", cid)
    assert our_statuses == runc_statuses == ["created", "running", "stopped"]
    for mine, theirs in zip(our_states, runc_states, strict=True):
        validate_state(theirs)
        validate_state(mine)
        mine.pop("exitStatus", None)  # ours says how it ended; runc's state does not
        assert set(mine) == set(theirs) - {"systemd-scope"}, (mine, theirs)  # crun's own extra
        theirs["rootfs"] = os.path.join(theirs["bundle"], theirs["rootfs"])  # crun keeps config.json's relative path
        # Not in the spec: `state` leaves the owner empty in runc (ours follows), crun names it.
        for k in ("id", "status", "bundle", "rootfs", "annotations") + (("owner",) if peer == "runc" else ()):
            assert mine[k] == theirs[k], k
        assert (mine["pid"] == 0) == (theirs["pid"] == 0)


# --- without root ---------------------------------------------------------------------------------------

@pytest.mark.rootless
def test_rootless_spec_bundle_lifecycle_as_nobody(busybox: str) -> None:
    """`spec --rootless` as an unprivileged user, then create/start/state/delete as that user: the caller is
    root in the container, through a user namespace with the bundle's own id maps."""
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="pcm-lc-rootless-"))
    try:
        os.chmod(base, 0o755)
        shutil.copytree(busybox, base / "b" / "rootfs", symlinks=True)
        (base / "root").mkdir()
        subprocess.run(["chown", "-R", "nobody", str(base)], check=True)

        def as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
            cmd = ["setpriv", "--reuid=nobody", "--regid=65534", "--clear-groups", "--reset-env", PYCONTAINER,
                   argv[0], *([] if argv[0] == "spec" else [f"--root={base / 'root'}"]), *argv[1:]]
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd="/")
            assert p.returncode == 0, (argv, p.stderr)
            return p

        as_nobody("spec", "--rootless", "--bundle", str(base / "b"))
        c = json.loads((base / "b" / "config.json").read_text())
        assert c["linux"]["uidMappings"] == [{"containerID": 0, "hostID": 65534, "size": 1}]
        c["process"]["args"] = ["sh", "-c", "id -u; hostname"]
        (base / "b" / "config.json").write_text(json.dumps(c))
        as_nobody("create", "--bundle", str(base / "b"), "r1")
        st = json.loads(as_nobody("state", "r1").stdout)
        validate_state(st)
        assert st["status"] == "created"
        as_nobody("start", "r1")
        deadline = time.monotonic() + 10
        while json.loads(as_nobody("state", "r1").stdout)["status"] != "stopped" and time.monotonic() < deadline:
            time.sleep(0.05)
        st = json.loads(as_nobody("state", "r1").stdout)
        assert st["status"] == "stopped" and st["exitStatus"] == 0
        assert (base / "root" / "r1" / "stdout.log").read_text().split() == ["0", "pycontainer"]
        as_nobody("delete", "r1")
        assert os.listdir(base / "root") == []
    finally:
        shutil.rmtree(base, ignore_errors=True)
