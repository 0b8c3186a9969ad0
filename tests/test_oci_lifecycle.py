"""The runc-compatible runtime, called the way engines call it (`pycontainer [--root R] [--log F --log-format
json] create|start|state|kill|delete|...`): a created container waits set up, its process not executed;
`create` returns at once with the container's init left to the caller's subreaper (as a shim is); the
container writes to the stdio given to `create`; state JSON is valid against the runtime-spec schema;
errors are runc's (exit status 1, a JSON log line) and leave nothing; the host is clean after delete; and
the statuses go through the same transitions as runc's and crun's on the same bundle."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import make_busybox_rootfs, wait_for

from pycontainer_magics.linux import proc
from pycontainer_magics.oci.bundle import validate_config, validate_state
from pycontainer_magics.oci.state import STATE_FILE

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

PYCONTAINER = str(Path(sys.executable).with_name("pycontainer"))
# Says it started (a file on a bind mount the host sees), exits 3 on SIGTERM (PID 1 ignores signals it has
# no handler for), else waits.
PAYLOAD = "echo started > /out/started; echo to-stdout; echo to-stderr >&2; trap 'exit 3' TERM; " \
          "while :; do sleep 0.05; done"
PR_SET_CHILD_SUBREAPER = 36


@pytest.fixture(scope="module")
def busybox(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_busybox_rootfs(str(tmp_path_factory.mktemp("lifecycle-busybox")))


@pytest.fixture(scope="module", autouse=True)
def subreaper() -> Any:
    """This test process adopts the containers' init processes, as containerd's shim and conmon do."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    yield
    libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
    # Whatever we adopted is gone and reaped: the later tests' host checks count our children.
    for pid in list(_adopted):
        with contextlib.suppress(Exception):
            reap(pid, 5)
    from pycontainer_magics.runtime.zygote import zygote
    helper = zygote().pid  # this process's own launch helper (a run() in the module may have started it)
    left = []
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) not in (os.getpid(), helper):
            with contextlib.suppress(OSError, ValueError, IndexError):
                if ppid(int(d)) == os.getpid():
                    state = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[0]
                    if state == "Z":
                        os.waitpid(int(d), 0)
                    elif "pycontainer" in " ".join(cmdline(int(d))) or state != "S":
                        left.append((int(d), cmdline(int(d))))
    assert not left, f"adopted processes still alive: {left}"


class Runtime:
    """`pycontainer` (or runc, crun) with its own state root, called with runc's global flags."""

    def __init__(self, prefix: list[str], root: Path) -> None:
        self.prefix, self.root = prefix, root
        self.log = root.parent / f"{root.name}.log.json"

    def __call__(self, *argv: str, check: bool = True, stdio: Path | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [*self.prefix, "--root", str(self.root), "--log", str(self.log), "--log-format", "json", *argv]
        if stdio is not None:  # the container inherits create's stdout and stderr: give it files, not pipes
            with open(stdio, "a") as out:
                p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, text=True, timeout=60)
            p.stdout, p.stderr = "", stdio.read_text()
        else:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if check:
            assert p.returncode == 0, (argv, p.stderr)
        return p

    def state(self, cid: str) -> dict[str, Any]:
        st: dict[str, Any] = json.loads(self("state", cid).stdout)
        return st

    def wait_status(self, cid: str, status: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            st = self.state(cid)
            if st["status"] == status or time.monotonic() > deadline:
                return st
            time.sleep(0.05)

    def last_error(self) -> dict[str, Any]:
        lines = [json.loads(line) for line in self.log.read_text().splitlines()]
        assert lines and all(set(e) == {"level", "msg", "time"} for e in lines)
        return lines[-1]


@pytest.fixture
def ours(tmp_path: Path) -> Any:
    rt = Runtime([PYCONTAINER], tmp_path / "state")
    yield rt
    remove_all(rt)


def remove_all(rt: Runtime) -> None:
    """A failed test's containers: gone all the same, their cgroups with them. A process of theirs that a killed
    `run` or `exec` left to us (the subreaper) is reaped too: unreaped, it keeps its PID namespace's init from
    finishing its exit, and `delete --force` then fails ("container init still running"), leaving the cgroup."""
    if not rt.root.is_dir():
        return
    ours_ns = os.readlink("/proc/self/ns/pid")
    for pid in proc.children(os.getpid()):
        with contextlib.suppress(OSError):
            if pid not in _adopted and os.readlink(f"/proc/{pid}/ns/pid") != ours_ns:
                adopt(pid)
    for cid in os.listdir(rt.root):
        rt("delete", "--force", cid, check=False)


def make_bundle(tmp_path: Path, busybox: str, args: list[str], tool: list[str] | None = None,
                **changes: Any) -> Path:
    """`pycontainer spec` (or `runc spec`/`crun spec`), rootfs a busybox, args, and /out bound from the host."""
    b = tmp_path / "bundle"
    b.mkdir(exist_ok=True)
    if not (b / "rootfs").exists():
        shutil.copytree(busybox, b / "rootfs", symlinks=True)
        os.chmod(b / "rootfs", 0o755)  # a temporary directory is 0700: other users in the container need in
        (b / "rootfs" / "out").mkdir()
    (tmp_path / "out").mkdir(exist_ok=True)
    os.chmod(tmp_path / "out", 0o777)
    (b / "config.json").unlink(missing_ok=True)
    subprocess.run(tool or [PYCONTAINER, "spec"], cwd=b, check=True, capture_output=True)
    c = json.loads((b / "config.json").read_text())
    c["process"]["args"] = args
    c["process"]["terminal"] = False
    c["mounts"].append({"destination": "/out", "type": "bind", "source": str(tmp_path / "out"),
                        "options": ["rbind", "rw"]})
    c["annotations"] = {"org.example.lecture": "containers"}
    c["linux"]["cgroupsPath"] = f"/pycontainer_magics/test-{os.getpid()}-{tmp_path.name}"
    for k, v in changes.items():
        c[k] = v
    (b / "config.json").write_text(json.dumps(c))
    return b


def cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [a.decode() for a in f.read().split(b"\0") if a]


def ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


_adopted: dict[int, Any] = {}


def adopt(pid: int) -> None:
    """Reap an init (or exec'd process) we adopted, in the background, as a shim does all the time: a PID
    namespace's init cannot finish exiting while a process of its namespace waits to be reaped."""
    import concurrent.futures
    import threading

    fut: concurrent.futures.Future[int] = concurrent.futures.Future()

    def wait() -> None:
        try:
            fut.set_result(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
        except ChildProcessError as e:
            fut.set_exception(e)

    threading.Thread(target=wait, daemon=True).start()
    _adopted[pid] = fut


def reap(pid: int, timeout: float = 30) -> int:
    """The exit code of an adopted process."""
    if pid not in _adopted:
        adopt(pid)
    code: int = _adopted.pop(pid).result(timeout)
    return code


def trap_term(code: int) -> str:
    """A container command that says "up", then runs until SIGTERM, which it answers with got-term and `code`."""
    return f"trap 'echo got-term; exit {code}' TERM; echo up; while :; do sleep 0.05; done"


def term_after_up(argv: list[str]) -> tuple[int, str, str]:
    """An attached `run` or `exec` of trap_term(): SIGTERM to it once the container said "up"; its exit code,
    the rest of its output and its stderr."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline() == "up\n"
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()  # (not communicate(): the container's processes may hold its pipes)
            p.wait()
    return p.returncode, out, err


def cgroup_dirs(config_path: str) -> list[str]:
    out = []
    for entry in os.listdir("/sys/fs/cgroup"):
        d = os.path.join("/sys/fs/cgroup", entry, config_path.lstrip("/"))
        if os.path.isdir(d):
            out.append(d)
    if os.path.isdir(os.path.join("/sys/fs/cgroup", config_path.lstrip("/"))):
        out.append(os.path.join("/sys/fs/cgroup", config_path.lstrip("/")))
    return out


def assert_gone(ours: Runtime, cid: str, bundle: Path) -> None:
    """No state directory, cgroup or mount of the container left on the host."""
    assert not (ours.root / cid).exists()
    cg = json.loads((bundle / "config.json").read_text())["linux"]["cgroupsPath"]
    assert cgroup_dirs(cg) == [], f"cgroups left behind: {cgroup_dirs(cg)}"
    with open("/proc/self/mountinfo") as f:
        assert not [line for line in f if str(bundle) in line]


# --- spec ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rootless", [False, True])
def test_spec_writes_runcs_default_config(tmp_path: Path, rootless: bool) -> None:
    flag = ["--rootless"] if rootless else []
    p = subprocess.run([PYCONTAINER, "spec", "--bundle", str(tmp_path), *flag], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    ours = json.loads((tmp_path / "config.json").read_text())
    validate_config(ours)
    again = subprocess.run([PYCONTAINER, "spec", "--bundle", str(tmp_path)], capture_output=True, text=True)
    assert again.returncode == 1 and again.stderr.count("\n") == 1 and "exists: remove it first" in again.stderr
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
    started, stdio = tmp_path / "out" / "started", tmp_path / "stdio"
    t0 = time.monotonic()
    ours("create", "--bundle", str(b), "--pid-file", str(tmp_path / "pid"), "c1", stdio=stdio)
    assert time.monotonic() - t0 < 20  # returned, with the container's init holding its stdout
    st = ours.state("c1")
    validate_state(st)
    assert st["status"] == "created" and st["id"] == "c1" and st["bundle"] == str(b)
    assert st["annotations"] == {"org.example.lecture": "containers"}
    pid = st["pid"]
    assert int((tmp_path / "pid").read_text()) == pid
    assert ppid(pid) == os.getpid()  # no runtime process stays behind: the init is ours (we are the subreaper)
    adopt(pid)
    # Set up (its own PID namespace, in the configured cgroup), the user's process not executed yet.
    assert "sh" not in cmdline(pid)[:1]
    assert os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
    cg = json.loads((b / "config.json").read_text())["linux"]["cgroupsPath"]
    assert cg + "\n" in Path(f"/proc/{pid}/cgroup").read_text()
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
    assert wait_for(started.exists, 30) and cmdline(pid)[:2] == ["sh", "-c"]
    assert json.loads(ours("ps", "--format", "json", "c1").stdout)[0] == pid
    ours("kill", "c1")  # SIGTERM by default: the payload traps it and exits 3
    assert reap(pid) == 3  # the status reaches the subreaper, as a shim needs it
    st = ours.state("c1")
    validate_state(st)
    assert st["status"] == "stopped" and st["pid"] == 0
    assert sorted(stdio.read_text().splitlines()) == ["to-stderr", "to-stdout"]  # create's own stdio
    assert cgroup_dirs(cg)  # until delete
    ours("delete", "c1")
    assert_gone(ours, "c1", b)
    assert ours("list", "-q").stdout == ""


def _cgroup_dirs_named(name: str) -> list[str]:
    return [d for d, _subdirs, _files in os.walk("/sys/fs/cgroup") if os.path.basename(d) == name]


@pytest.mark.parametrize("where", ["absolute", "relative"])
def test_delete_removes_the_cgroup_parents_create_made(busybox: str, tmp_path: Path, ours: Runtime,
                                                       where: str) -> None:
    """A cgroupsPath whose parents do not exist: create makes them, delete removes them where empty (runc
    leaves them). A relative path is under the runtime's own cgroup, which in some hierarchy may be the
    caller's session: a dockerd given `--cgroup-parent pycontainer_magics/x` left pycontainer_magics/x there.
    A parent that existed before stays."""
    top = f"pcm-test-{os.getpid()}-{where}"
    existing = cgroup_dirs("/pycontainer_magics")
    path = f"/pycontainer_magics/{top}/nested/c" if where == "absolute" else f"{top}/nested/c"
    b = make_bundle(tmp_path, busybox, ["true"])
    c = json.loads((b / "config.json").read_text())
    c["linux"]["cgroupsPath"] = path
    (b / "config.json").write_text(json.dumps(c))
    ours("create", "--bundle", str(b), "c2", stdio=tmp_path / "stdio")
    pid = ours.state("c2")["pid"]
    adopt(pid)
    assert len(_cgroup_dirs_named("nested")) >= 1 and _cgroup_dirs_named(top)
    ours("start", "c2")
    reap(pid)
    ours("delete", "c2")
    assert _cgroup_dirs_named(top) == [] and not (ours.root / "c2").exists()
    assert [d for d in existing if not os.path.isdir(d)] == []  # what was there before stays


def test_kill_by_name_or_number_and_all(busybox: str, tmp_path: Path, ours: Runtime) -> None:
    b = make_bundle(tmp_path, busybox, ["sleep", "100"])
    for sig, code in (("9", -9), ("SIGKILL", -9), ("kill", -9), ("TERM", None), ("15", None)):
        ours("create", "--bundle", str(b), "k", stdio=tmp_path / "stdio")
        pid = ours.state("k")["pid"]
        adopt(pid)
        ours("start", "k")
        ours("kill", "k", sig)
        if code is not None:
            assert reap(pid) == code, sig
        else:  # PID 1 has no handler for TERM: the kernel drops it, as under runc
            time.sleep(0.2)
            assert ours.state("k")["status"] == "running"
            ours("kill", "--all", "k", "KILL")  # every process of the cgroup
            assert reap(pid) == -9
        ours("delete", "k")
        assert_gone(ours, "k", b)


def test_delete_a_created_container_and_force_a_running_one(busybox: str, tmp_path: Path, ours: Runtime) -> None:
    b = make_bundle(tmp_path, busybox, ["sh", "-c", PAYLOAD])
    ours("create", "--bundle", str(b), "never-started", stdio=tmp_path / "stdio")
    pid = ours.state("never-started")["pid"]
    adopt(pid)
    ours("delete", "never-started")  # as runc: a created container is destroyed without --force
    assert reap(pid) == -9
    assert_gone(ours, "never-started", b)
    assert not (tmp_path / "out" / "started").exists()  # its process never ran

    ours("create", "--bundle", str(b), "busy", stdio=tmp_path / "stdio")
    ours("start", "busy")
    pid = ours.state("busy")["pid"]
    adopt(pid)
    p = ours("delete", "busy", check=False)
    assert p.returncode == 1 and ours.last_error() == {
        "level": "error", "msg": "cannot delete container busy that is not stopped: running",
        "time": ours.last_error()["time"]}
    assert p.stderr.splitlines() == ["cannot delete container busy that is not stopped: running"]
    assert ours.state("busy")["status"] == "running"  # no effect on it
    ours("delete", "--force", "busy")
    assert reap(pid) == -9
    assert_gone(ours, "busy", b)


def _error(ours: Runtime, p: subprocess.CompletedProcess[str], needle: str) -> None:
    """runc's way: exit status 1, the message in the JSON log (what containerd's shim shows the user)."""
    assert p.returncode == 1, p
    e = ours.last_error()
    assert e["level"] == "error" and needle in e["msg"], (e, needle)


def test_errors_are_runcs_and_leave_nothing(busybox: str, tmp_path: Path, ours: Runtime) -> None:
    for cmd in (["start", "nope"], ["state", "nope"], ["kill", "nope", "KILL"], ["delete", "nope"]):
        _error(ours, ours(*cmd, check=False), "container does not exist")
    for bad in ("../etc", "a/b", ".."):
        _error(ours, ours("state", bad, check=False), "invalid container id")
    _error(ours, ours("create", "--no-such-flag", "x", check=False), "flag provided but not defined: --no-such-flag")
    _error(ours, ours("--no-such-global", "state", "x", check=False), "flag provided but not defined")
    _error(ours, ours("state", check=False), '"state" requires exactly 1 argument(s)')
    _error(ours, ours("--systemd-cgroup", "create", "--bundle", str(tmp_path), "s", check=False),
           "JSON specification file config.json not found")
    # A bad bundle: nothing made.
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text(json.dumps({
        "ociVersion": "1.0.2", "root": {"path": "missing"}, "process": {"args": ["true"], "cwd": "/"}}))
    _error(ours, ours("create", "--bundle", str(tmp_path / "bad"), "b1", check=False), "does not exist")
    _error(ours, ours("create", "--bundle", str(tmp_path / "none"), "b2", check=False), "no such file")
    assert not ours.root.exists() or os.listdir(ours.root) == []
    b = make_bundle(tmp_path, busybox, ["sh", "-c", PAYLOAD])
    cfg = json.loads((b / "config.json").read_text())
    cg = cfg["linux"]["cgroupsPath"]
    # systemd's slice:prefix:name needs a driver this runtime does not have: said plainly.
    (tmp_path / "sysd").mkdir()
    (tmp_path / "sysd" / "config.json").write_text(json.dumps(dict(
        cfg, root={"path": str(b / "rootfs")}, linux=dict(cfg["linux"], cgroupsPath="system.slice:pyc:x1"))))
    _error(ours, ours("create", "--bundle", str(tmp_path / "sysd"), "s1", check=False), "slice:prefix:name")
    _error(ours, ours("--systemd-cgroup", "create", "--bundle", str(b), "s2", check=False), "cgroupfs only")
    # A bundle that fails while being set up, after the container's processes exist (a bind mount of a
    # missing directory): nothing left either.
    (tmp_path / "fails").mkdir()
    (tmp_path / "fails" / "config.json").write_text(json.dumps(dict(
        cfg, root={"path": str(b / "rootfs")}, mounts=[*cfg["mounts"], {
            "destination": "/data", "type": "bind", "source": str(tmp_path / "no-such-dir"), "options": ["rbind"]}])))
    _error(ours, ours("create", "--bundle", str(tmp_path / "fails"), "f1", check=False),
           "error mounting")
    assert os.listdir(ours.root) == [] and cgroup_dirs(cg) == []
    # As runc: a process that cannot be executed fails `create`, not `start`.
    (tmp_path / "noexec").mkdir()
    (tmp_path / "noexec" / "config.json").write_text(json.dumps(dict(
        cfg, root={"path": str(b / "rootfs")}, process=dict(cfg["process"], args=["no-such-command"]))))
    _error(ours, ours("create", "--bundle", str(tmp_path / "noexec"), "f2", check=False),
           'exec: "no-such-command": executable file not found in $PATH')
    assert os.listdir(ours.root) == [] and cgroup_dirs(cg) == []
    # Duplicate id, start twice, kill with a bad signal, kill and start a stopped one.
    ours("create", "--bundle", str(b), "c", stdio=tmp_path / "stdio")
    pid = ours.state("c")["pid"]
    adopt(pid)
    _error(ours, ours("create", "--bundle", str(b), "c", check=False), "container with id exists: c")
    assert ours.state("c")["status"] == "created" and ours.state("c")["pid"] == pid  # the first one untouched
    _error(ours, ours("kill", "c", "NOSUCHSIG", check=False), "unknown signal")
    ours("start", "c")
    _error(ours, ours("start", "c", check=False), "cannot start an already running container")
    ours("kill", "c", "KILL")
    assert reap(pid) == -9
    _error(ours, ours("kill", "c", "KILL", check=False), "container not running")
    _error(ours, ours("start", "c", check=False), "cannot start a container that has stopped")
    ours("delete", "c")
    assert_gone(ours, "c", b)


def test_text_log_goes_to_stderr_without_log_file(tmp_path: Path) -> None:
    p = subprocess.run([PYCONTAINER, "--root", str(tmp_path), "state", "nope"], capture_output=True, text=True)
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.startswith('time="') and p.stderr.rstrip().endswith('level=error msg="container does not exist"')


def test_features_and_spec_make_no_state_root(tmp_path: Path) -> None:
    """dockerd asks every runtime for its features at start, without --root: the default root (made on first
    use, /run/pycontainer_magics/oci as root) is not made for a command that keeps no state."""
    env = {**os.environ, "PYCONTAINER_RUN_DIR": str(tmp_path / "run")}
    p = subprocess.run([PYCONTAINER, "features"], capture_output=True, text=True, env=env)
    assert p.returncode == 0 and '"ociVersionMax"' in p.stdout, p.stderr
    p = subprocess.run([PYCONTAINER, "spec", "--bundle", str(tmp_path)], capture_output=True, text=True, env=env)
    assert p.returncode == 0 and (tmp_path / "config.json").exists(), p.stderr
    assert not (tmp_path / "run").exists()
    p = subprocess.run([PYCONTAINER, "list"], capture_output=True, text=True, env=env)  # (one that keeps state: made)
    assert p.returncode == 0 and (tmp_path / "run").is_dir()


# --- exec, ps, events, update, pause -----------------------------------------------------------------------

def test_exec_joins_the_container(busybox: str, tmp_path: Path, ours: Runtime) -> None:
    b = make_bundle(tmp_path, busybox, ["sleep", "100"], hostname="box")
    ours("create", "--bundle", str(b), "e", stdio=tmp_path / "stdio")
    ours("start", "e")
    init = ours.state("e")["pid"]
    adopt(init)
    # As containerd's shim calls it: a process JSON, detached, its pid in a file.
    proc = json.loads((b / "config.json").read_text())["process"]
    proc.update(args=["sh", "-c", "hostname > /out/exec; cat /proc/self/cgroup >> /out/exec; sleep 100"],
                user={"uid": 1000, "gid": 1000, "additionalGids": [7]}, cwd="/out")
    (tmp_path / "process.json").write_text(json.dumps(proc))
    ours("exec", "--process", str(tmp_path / "process.json"), "--detach", "--pid-file", str(tmp_path / "epid"), "e",
         stdio=tmp_path / "stdio")
    epid = int((tmp_path / "epid").read_text())
    assert ppid(epid) == os.getpid()  # left to the subreaper, as the shim expects
    adopt(epid)
    assert wait_for(lambda: (tmp_path / "out" / "exec").exists() and "\n" in (tmp_path / "out" / "exec").read_text())
    for ns in ("pid", "mnt", "uts", "ipc", "net", "cgroup"):
        assert os.readlink(f"/proc/{epid}/ns/{ns}") == os.readlink(f"/proc/{init}/ns/{ns}"), ns
    assert (tmp_path / "out" / "exec").read_text().splitlines()[0] == "box"
    status = Path(f"/proc/{epid}/status").read_text()
    assert "Uid:\t1000\t1000\t1000\t1000" in status and "Groups:\t7" in status
    assert sorted(json.loads(ours("ps", "--format", "json", "e").stdout)) == sorted([init, epid])
    table = ours("ps", "e").stdout.splitlines()
    assert table[0].split()[:2] == ["UID", "PID"] and len(table) == 3
    # Attached, as `pycontainer exec ID CMD` from a terminal: output and exit code come back.
    p = ours("exec", "-e", "X=1", "e", "sh", "-c", "echo $X $(id -u); exit 4", check=False)
    assert p.returncode == 4 and p.stdout == "1 0\n", p.stderr
    _error(ours, ours("exec", "e", "no-such-command", check=False), "executable file not found")
    # Attached: a signal to `exec` reaches the process (forwarded, as runc's exec does), its status comes back.
    code, out, err = term_after_up([PYCONTAINER, "--root", str(ours.root), "exec", "e", "sh", "-c", trap_term(6)])
    assert code == 6 and out == "got-term\n", (code, err)
    ours("delete", "--force", "e")
    assert reap(init) == -9 and reap(epid) == -9
    assert_gone(ours, "e", b)


def test_stats_update_pause_resume_features(busybox: str, tmp_path: Path, ours: Runtime) -> None:
    b = make_bundle(tmp_path, busybox, ["sleep", "100"])
    cfg = json.loads((b / "config.json").read_text())
    cfg["linux"]["resources"] = {"memory": {"limit": 64 * 2**20}, "pids": {"limit": 50}}
    (b / "config.json").write_text(json.dumps(cfg))
    ours("create", "--bundle", str(b), "s", stdio=tmp_path / "stdio")
    ours("start", "s")
    pid = ours.state("s")["pid"]
    adopt(pid)
    ev = json.loads(ours("events", "--stats", "s").stdout)
    assert ev["type"] == "stats" and ev["id"] == "s"
    assert ev["data"]["memory"]["usage"]["limit"] == 64 * 2**20 and ev["data"]["pids"]["limit"] == 50
    assert ev["data"]["pids"]["current"] == 1 and ev["data"]["cpu"]["usage"]["total"] > 0
    # containerd's shim sends the new resources on stdin
    p = subprocess.run([PYCONTAINER, "--root", str(ours.root), "update", "--resources=-", "s"], text=True,
                       input=json.dumps({"memory": {"limit": 32 * 2**20}, "pids": {"limit": 20}}), capture_output=True)
    assert p.returncode == 0, p.stderr
    ev = json.loads(ours("events", "--stats", "s").stdout)
    assert ev["data"]["memory"]["usage"]["limit"] == 32 * 2**20 and ev["data"]["pids"]["limit"] == 20
    ours("update", "--pids-limit", "30", "s")
    assert json.loads(ours("events", "--stats", "s").stdout)["data"]["pids"]["limit"] == 30
    ours("pause", "s")
    assert ours.state("s")["status"] == "paused"
    assert Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("D", "S", "T")
    ours("resume", "s")
    assert ours.state("s")["status"] == "running"
    _error(ours, ours("resume", "s", check=False), "container not paused")
    f = json.loads(ours("features").stdout)
    assert f["ociVersionMin"] == "1.0.0" and "prestart" in f["hooks"] and "rbind" in f["mountOptions"]
    assert f["linux"]["cgroup"]["systemd"] is False and "CAP_SYS_ADMIN" in f["linux"]["capabilities"]
    ours("delete", "--force", "s")
    reap(pid)
    assert_gone(ours, "s", b)


# --- hooks, console -----------------------------------------------------------------------------------

def test_hooks_run_in_the_specs_order(busybox: str, tmp_path: Path, ours: Runtime) -> None:
    log = tmp_path / "hooks.log"
    hooks = {}
    for kind in ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"):
        # runtime-namespace hooks see the host's files; the container's (startContainer) see /out
        target = "/out/hooks.log" if kind == "startContainer" else str(log)
        shell = "/bin/sh" if kind == "startContainer" else shutil.which("sh")
        hooks[kind] = [{"path": shell, "args": ["sh", "-c", f"read s; echo {kind} \"$s\" >> {target}"]}]
    b = make_bundle(tmp_path, busybox, ["sh", "-c", "echo process >> /out/hooks.log"], hooks=hooks)
    (tmp_path / "out").mkdir(exist_ok=True)
    log.symlink_to(tmp_path / "out" / "hooks.log")
    ours("create", "--bundle", str(b), "h", stdio=tmp_path / "stdio")
    pid = ours.state("h")["pid"]
    ours("start", "h")
    assert reap(pid) == 0
    ours("delete", "h")
    lines = (tmp_path / "out" / "hooks.log").read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["prestart", "createRuntime", "createContainer",
                                                  "startContainer", "process", "poststart", "poststop"] or \
        [line.split()[0] for line in lines] == ["prestart", "createRuntime", "createContainer", "startContainer",
                                               "poststart", "process", "poststop"]
    states = {line.split()[0]: json.loads(line.split(" ", 1)[1]) for line in lines if line.split()[0] != "process"}
    assert states["createRuntime"]["status"] == "creating" and states["createRuntime"]["pid"] == pid
    assert states["poststart"]["status"] == "running" and states["poststop"]["status"] == "stopped"
    assert all(s["id"] == "h" and s["bundle"] == str(b) for s in states.values())
    # A failing createRuntime hook fails create, and leaves nothing.
    hooks["createRuntime"] = [{"path": shutil.which("false") or "/bin/false"}]
    b = make_bundle(tmp_path, busybox, ["true"], hooks=hooks)
    _error(ours, ours("create", "--bundle", str(b), "h2", check=False), "createRuntime hook #0")
    assert os.listdir(ours.root) == []
    assert_gone(ours, "h2", b)


def test_console_socket_gets_the_pty_master(busybox: str, tmp_path: Path, ours: Runtime) -> None:
    """`docker run -t`: the runtime sends the master end of the container's terminal over --console-socket
    (SCM_RIGHTS); the process has the slave as stdio and controlling terminal."""
    import socket

    b = make_bundle(tmp_path, busybox, ["sh", "-c", "tty; stty size; echo done"])
    cfg = json.loads((b / "config.json").read_text())
    cfg["process"]["terminal"] = True
    cfg["process"]["consoleSize"] = {"height": 30, "width": 100}
    (b / "config.json").write_text(json.dumps(cfg))
    path = str(tmp_path / "console.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    _error(ours, ours("create", "--bundle", str(b), "t0", check=False), "without setting console socket")
    ours("create", "--bundle", str(b), "--console-socket", path, "t", stdio=tmp_path / "stdio")
    conn, _ = srv.accept()
    _msg, fds, _flags, _addr = socket.recv_fds(conn, 1024, 1)
    master = fds[0]
    pid = ours.state("t")["pid"]
    ours("start", "t")
    out = b""
    deadline = time.monotonic() + 30
    while b"done" not in out and time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            out += os.read(master, 4096)
    assert reap(pid) == 0
    text = out.decode()
    assert "/dev/pts/0" in text and "30 100" in text, text
    os.close(master)
    conn.close()
    srv.close()
    ours("delete", "t")
    assert_gone(ours, "t", b)


def _terminal_output(rt: Runtime, b: Path, tmp_path: Path, cid: str) -> str:
    """Create and start `b` (terminal: true) under `rt` with a console socket; what the master end reads."""
    import socket

    path = str(tmp_path / f"{cid}.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    rt("create", "--bundle", str(b), "--console-socket", path, cid, stdio=tmp_path / f"{cid}.stdio")
    conn, _ = srv.accept()
    _msg, fds, _flags, _addr = socket.recv_fds(conn, 1024, 1)
    master = fds[0]
    pid = rt.state(cid)["pid"]
    rt("start", cid)
    out = b""
    deadline = time.monotonic() + 30
    while b"done" not in out and time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            out += os.read(master, 4096)
    reap(pid)
    os.close(master)
    conn.close()
    srv.close()
    rt("delete", "--force", cid)
    return out.decode()


def test_the_terminal_is_set_up_as_runc_sets_it(busybox: str, tmp_path: Path, ours: Runtime) -> None:
    """Through --console-socket runc leaves the terminal's settings to whoever receives the master (the shim,
    conmon): newlines reach a `docker run -it` user as CR LF (onlcr). Ours cleared onlcr: lines staircased."""
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed")
    b = make_bundle(tmp_path, busybox, ["sh", "-c", "/bin/busybox stty -a; echo done"])
    cfg = json.loads((b / "config.json").read_text())
    cfg["process"]["terminal"] = True
    (b / "config.json").write_text(json.dumps(cfg))
    theirs = Runtime(["runc"], tmp_path / "runc-state")
    settings = {}
    for name, rt in (("runc", theirs), ("ours", ours)):
        text = _terminal_output(rt, b, tmp_path, f"tty-{name}")
        settings[name] = {w for w in text.split() if w.lstrip("-") in ("onlcr", "icrnl", "opost", "icanon", "echo")}
        assert "done\r\n" in text if name == "runc" else True, text
    assert settings["ours"] == settings["runc"] and "onlcr" in settings["runc"], settings


# --- side by side with runc -------------------------------------------------------------------------------

def _lifecycle(rt: Runtime, bundle: Path, out: Path, cid: str) -> tuple[list[str], list[dict[str, Any]]]:
    statuses, states = [], []

    def look() -> None:
        st = rt.state(cid)
        statuses.append(st["status"])
        states.append(st)

    rt("create", "--bundle", str(bundle), cid, stdio=out.parent / "stdio")
    look()
    created_pid = states[-1]["pid"]
    adopt(created_pid)
    assert not (out / "started").exists()
    rt("start", cid)
    assert wait_for((out / "started").exists, 30)
    look()
    assert states[-1]["pid"] == created_pid
    rt("kill", cid, "TERM")
    reap(created_pid)
    look()
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
        rt = Runtime(crun.prefix if crun else ["runc"], tmp_path / f"{peer}-state")
        runc_statuses, runc_states = _lifecycle(rt, b, tmp_path / "out", cid)
    our_statuses, our_states = _lifecycle(ours, b, tmp_path / "out", cid)
    assert our_statuses == runc_statuses == ["created", "running", "stopped"]
    for mine, theirs in zip(our_states, runc_states, strict=True):
        validate_state(theirs)
        validate_state(mine)
        assert set(mine) == set(theirs) - {"systemd-scope"}, (mine, theirs)  # crun's own extra
        theirs["rootfs"] = os.path.join(theirs["bundle"], theirs["rootfs"])  # crun keeps config.json's relative path
        # Not in the spec: `state` leaves the owner empty in runc (ours follows), crun names it.
        for k in ("id", "status", "bundle", "rootfs", "annotations") + (("owner",) if peer == "runc" else ()):
            assert mine[k] == theirs[k], k
        assert (mine["pid"] == 0) == (theirs["pid"] == 0)
    assert_gone(ours, cid, b)


def test_run_with_an_id_has_state_while_it_runs(busybox: str, tmp_path: Path, ours: Runtime) -> None:
    """`pycontainer run --bundle DIR ID` (the project's run, attached): seen by state and list and killable
    from elsewhere while it runs, gone at its end."""
    b = make_bundle(tmp_path, busybox, ["sh", "-c", "echo started; exec sleep 100"])
    proc = subprocess.Popen([PYCONTAINER, "run", "--bundle", str(b), f"--root={ours.root}", "attached"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for((ours.root / "attached" / STATE_FILE).exists, 20)
        st = ours.wait_status("attached", "running")
        assert st["status"] == "running" and st["pid"] > 0 and st["bundle"] == str(b)
        assert "attached" in ours("list", "-q").stdout.split()
        ours("kill", "attached", "KILL")
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()  # (not communicate(): the container's processes may hold its pipes)
            proc.wait()
    assert proc.returncode == 137 and out == "started\n", err
    assert not (ours.root / "attached").exists()
    assert ours("state", "attached", check=False).returncode == 1


def test_signals_reach_the_init_not_the_runtime(busybox: str, tmp_path: Path, ours: Runtime) -> None:
    """runc's `run` (global flags first): attached as a subreaper, signals forwarded, deleted at its end."""
    b = make_bundle(tmp_path, busybox, ["sh", "-c", trap_term(5)])
    code, out, err = term_after_up([PYCONTAINER, "--root", str(ours.root), "run", "--bundle", str(b), "r"])
    assert code == 5 and out == "got-term\n", (code, err)
    assert_gone(ours, "r", b)


def test_a_signal_that_comes_while_run_starts_the_container_reaches_it(busybox: str, tmp_path: Path,
                                                                      ours: Runtime) -> None:
    """A signal to `run` once the container's process runs but before `run` has returned from starting it (here: a
    poststart hook, which `run` waits for, sends it) is passed on once the process is started, as `runc run`'s
    handler (set before the process exists) does. The handlers used to come after the start: such a signal
    killed the runtime instead and left the container running (seen under load: a caller that read the first
    line and sent SIGTERM at once)."""
    pid_file = tmp_path / "runtime.pid"
    wait_then_term = (f"while [ ! -e {tmp_path}/out/up ] || [ ! -s {pid_file} ]; do sleep 0.01; done; "
                      f"kill -TERM $(cat {pid_file})")
    b = make_bundle(tmp_path, busybox, ["sh", "-c", "trap 'echo got-term; exit 5' TERM; touch /out/up; echo up; "
                                                    "while :; do sleep 0.05; done"],
                    hooks={"poststart": [{"path": shutil.which("sh"), "args": ["sh", "-c", wait_then_term]}]})
    proc = subprocess.Popen([PYCONTAINER, "--root", str(ours.root), "run", "--bundle", str(b), "rs"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        (tmp_path / "pid.tmp").write_text(str(proc.pid))
        (tmp_path / "pid.tmp").rename(pid_file)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()  # (not communicate(): the container's processes may hold its pipes)
            proc.wait()
    assert proc.returncode == 5 and out == "up\ngot-term\n", (proc.returncode, out, err)
    assert_gone(ours, "rs", b)


def test_a_signal_to_the_init_before_its_exec_acts_as_after_it(busybox: str, tmp_path: Path, ours: Runtime) -> None:
    """`run`'s init is forked while run's forwarding handlers are set: it puts every one back to the default
    first, or a SIGUSR1 sent to it before its exec (here by a createRuntime hook, which gets its pid) would be
    caught by the copy of run's handler and lost — the container then ran as if nothing had been sent."""
    kill = [sys.executable, "-c", "import json, os, signal, sys; os.kill(json.load(sys.stdin)['pid'], signal.SIGUSR1)"]
    b = make_bundle(tmp_path, busybox, ["echo", "ran"],
                    hooks={"createRuntime": [{"path": sys.executable, "args": kill}]})
    # Without a PID namespace of its own: the init of one ignores a default-handled signal from outside it.
    c = json.loads((b / "config.json").read_text())
    c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "pid"]
    (b / "config.json").write_text(json.dumps(c))
    p = subprocess.run([PYCONTAINER, "--root", str(ours.root), "run", "--bundle", str(b), "u"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "ran" not in p.stdout, (p.returncode, p.stdout, p.stderr)
    assert_gone(ours, "u", b)


def test_a_failed_tests_containers_are_removed_with_their_cgroups(busybox: str, tmp_path: Path,
                                                                  ours: Runtime) -> None:
    """What the fixture does after a test that failed midway: here an attached `exec` killed with its process
    still running (orphaned to this test process, the subreaper, as when a test's forwarding check fails) and
    the container never deleted. remove_all() leaves no container state and no cgroup (it left both: the
    orphan, never reaped, held the PID namespace's init in its exit and `delete --force` gave up)."""
    b = make_bundle(tmp_path, busybox, ["sleep", "100"])
    ours("create", "--bundle", str(b), "f", stdio=tmp_path / "stdio")
    ours("start", "f")
    adopt(ours.state("f")["pid"])
    att = subprocess.Popen([PYCONTAINER, "--root", str(ours.root), "exec", "f", "sh", "-c",
                            "echo up; while :; do sleep 0.05; done"], stdout=subprocess.PIPE, text=True)
    assert att.stdout is not None and att.stdout.readline() == "up\n"
    att.kill()
    att.wait()
    att.stdout.close()
    config_path = json.loads((b / "config.json").read_text())["linux"]["cgroupsPath"]
    assert cgroup_dirs(config_path)
    remove_all(ours)
    assert not cgroup_dirs(config_path)
    assert ours("state", "f", check=False).returncode == 1


# --- without root ---------------------------------------------------------------------------------------

@pytest.mark.rootless
def test_rootless_spec_bundle_lifecycle_as_nobody(busybox: str) -> None:
    """`spec --rootless` as an unprivileged user, then create/start/state/delete as that user: the caller is
    root in the container through a user namespace with the bundle's own id maps, and no cgroup is needed
    when the config asks for no limits (runc's rootless behaviour)."""
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="pcm-lc-rootless-"))
    run_dir = "/tmp/pycontainer_magics-65534"  # (the CLI's, run as nobody without XDG_RUNTIME_DIR)
    had_run_dir = os.path.exists(run_dir)
    try:
        os.chmod(base, 0o755)
        shutil.copytree(busybox, base / "b" / "rootfs", symlinks=True)
        (base / "root").mkdir()
        subprocess.run(["chown", "-R", "nobody", str(base)], check=True)

        def as_nobody(*argv: str, stdio: Path | None = None) -> subprocess.CompletedProcess[str]:
            cmd = ["setpriv", "--reuid=nobody", "--regid=65534", "--clear-groups", "--reset-env", PYCONTAINER,
                   *([] if argv[0] == "spec" else ["--root", str(base / "root")]), *argv]
            out = open(stdio, "a") if stdio else subprocess.PIPE  # noqa: SIM115 - closed below
            try:
                p = subprocess.run(cmd, stdout=out, stderr=out, text=True, timeout=60, cwd="/")
            finally:
                if stdio:
                    out.close()  # type: ignore[union-attr]
            assert p.returncode == 0, (argv, p.stderr)
            return p

        as_nobody("spec", "--rootless", "--bundle", str(base / "b"))
        c = json.loads((base / "b" / "config.json").read_text())
        assert c["linux"]["uidMappings"] == [{"containerID": 0, "hostID": 65534, "size": 1}]
        c["process"]["args"] = ["sh", "-c", "id -u; hostname"]
        (base / "b" / "config.json").write_text(json.dumps(c))
        out = base / "out"
        out.touch()
        os.chown(out, 65534, 65534)
        as_nobody("create", "--bundle", str(base / "b"), "r1", stdio=out)
        st = json.loads(as_nobody("state", "r1").stdout)
        validate_state(st)
        assert st["status"] == "created"
        adopt(st["pid"])
        as_nobody("start", "r1")
        assert reap(st["pid"]) == 0
        assert json.loads(as_nobody("state", "r1").stdout)["status"] == "stopped"
        assert out.read_text().split() == ["0", "pycontainer"]
        as_nobody("delete", "r1")
        assert os.listdir(base / "root") == []
    finally:
        shutil.rmtree(base, ignore_errors=True)
        if not had_run_dir:
            shutil.rmtree(run_dir, ignore_errors=True)


# --- cgroup v2 (in the VM harness, tests/vm/) ------------------------------------------------------------

@pytest.mark.cgroup2
def test_cgroup_v2_limits_stats_update_freeze(busybox: str, tmp_path: Path, ours: Runtime) -> None:
    """On a unified host: linux.resources in the container's one directory (memory.max, pids.max, cpu.max),
    `events --stats` from it, `update` into it, pause/resume through cgroup.freeze, the directory gone after
    delete."""
    from conftest import require_cgroup

    require_cgroup("v2")
    b = make_bundle(tmp_path, busybox, ["sleep", "100"])
    cfg = json.loads((b / "config.json").read_text())
    cfg["linux"]["resources"] = {"memory": {"limit": 64 * 2**20}, "pids": {"limit": 50},
                                 "cpu": {"quota": 50000, "period": 100000}}
    (b / "config.json").write_text(json.dumps(cfg))
    d = Path("/sys/fs/cgroup") / cfg["linux"]["cgroupsPath"].lstrip("/")
    ours("create", "--bundle", str(b), "v2", stdio=tmp_path / "stdio")
    pid = ours.state("v2")["pid"]
    adopt(pid)
    assert (d / "memory.max").read_text().strip() == str(64 * 2**20)
    assert (d / "pids.max").read_text().strip() == "50"
    assert (d / "cpu.max").read_text().split() == ["50000", "100000"]
    assert str(pid) in (d / "cgroup.procs").read_text().split()
    ours("start", "v2")
    ev = json.loads(ours("events", "--stats", "v2").stdout)
    assert ev["data"]["memory"]["usage"]["limit"] == 64 * 2**20 and ev["data"]["pids"]["limit"] == 50
    p = subprocess.run([PYCONTAINER, "--root", str(ours.root), "update", "--resources=-", "v2"], text=True,
                       input=json.dumps({"memory": {"limit": 32 * 2**20}}), capture_output=True)
    assert p.returncode == 0, p.stderr
    assert (d / "memory.max").read_text().strip() == str(32 * 2**20)
    ours("pause", "v2")
    assert ours.state("v2")["status"] == "paused" and (d / "cgroup.freeze").read_text().strip() == "1"
    ours("resume", "v2")
    assert ours.state("v2")["status"] == "running"
    ours("delete", "--force", "v2")
    assert reap(pid) == -9
    assert not d.exists()


def test_a_cached_seccomp_filter_installs_after_pivot_root(busybox: str, tmp_path: Path, ours: Runtime) -> None:
    """The second container with the same profile takes the compiled program from the cache: what installs it
    must be loaded before the init loses the host's files (a lazy import after pivot_root failed)."""
    b = make_bundle(tmp_path, busybox, ["sh", "-c", "grep Seccomp: /proc/self/status > /out/seccomp"])
    cfg = json.loads((b / "config.json").read_text())
    cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["keyctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
    (b / "config.json").write_text(json.dumps(cfg))
    for cid in ("s1", "s2"):
        ours("create", "--bundle", str(b), cid, stdio=tmp_path / "stdio")
        pid = ours.state(cid)["pid"]
        adopt(pid)
        ours("start", cid)
        assert reap(pid) == 0
        assert (tmp_path / "out" / "seccomp").read_text().split() == ["Seccomp:", "2"]
        ours("delete", cid)
    assert len(list((ours.root / ".seccomp").iterdir())) == 1


# What every engine call may not import: each costs milliseconds of CPU at each of the runtime calls a
# `docker run` makes (json: re + enum ~5 ms, typing ~2.5 ms, hashlib's OpenSSL ~3.5 ms, ctypes ~1.5 ms).
HEAVY = {"json", "re", "enum", "typing", "functools", "collections", "signal", "socket", "selectors", "hashlib",
         "argparse", "subprocess", "threading", "dataclasses", "contextlib", "tempfile", "shutil"}


def _imported(text: str) -> set[str]:
    return {line.rsplit("|", 1)[-1].strip() for line in text.splitlines() if line.startswith("import time:")}


def test_the_launcher_imports_only_what_each_call_needs(tmp_path: Path, busybox: str) -> None:
    """The launcher engines are given (`python -IS`), traced with -X importtime through a whole lifecycle on a
    bundle with a seccomp profile (as Docker sends one, compiled once then read from the cache): no json, re,
    enum or typing anywhere, and no ctypes on the calls that make no container (the parent-death signal is
    cleared through _ctypes). Fails when a hot path gains one of those imports again."""
    launcher = subprocess.run([PYCONTAINER, "install-runtime", "--output", str(tmp_path / "pycontainer-runc")],
                              capture_output=True, text=True, check=True).stdout.strip()
    rt = Runtime([sys.executable, "-IS", "-X", "importtime", launcher], tmp_path / "state")
    seccomp = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
               "syscalls": [{"names": ["kexec_load"], "action": "SCMP_ACT_ERRNO"}]}
    b = make_bundle(tmp_path, busybox, ["sh", "-c", "cat /proc/self/status > /out/status"])
    cfg = json.loads((b / "config.json").read_text())
    cfg["linux"]["seccomp"] = seccomp
    (b / "config.json").write_text(json.dumps(cfg))
    try:
        for n in range(2):  # the first create compiles the profile, the second reads the cache
            stdio = tmp_path / f"stdio{n}"
            rt("create", "--bundle", str(b), "--pid-file", str(tmp_path / "pid"), f"c{n}", stdio=stdio)
            adopt(int((tmp_path / "pid").read_text()))
            mods = {"create": _imported(stdio.read_text())}
            mods["state"] = _imported(rt("state", f"c{n}").stderr)
            mods["start"] = _imported(rt("start", f"c{n}").stderr)
            rt.wait_status(f"c{n}", "stopped")
            mods["delete"] = _imported(rt("delete", f"c{n}").stderr)
            mods["list"] = _imported(rt("list").stderr)
            assert "Seccomp:\t2" in (tmp_path / "out" / "status").read_text()  # the filter is on
            for verb, names in mods.items():
                assert "pycontainer_magics.oci.lifecycle" in names or verb == "list", (verb, names)
                if verb == "create" and n == 0:
                    assert "pycontainer_magics.oci.seccomp" in names  # the compiler's imports: once per profile
                    continue
                assert not names & HEAVY, (verb, n, names & HEAVY)
                if verb != "create":
                    assert "ctypes" not in names, verb
                if verb in ("state", "start", "list"):  # nothing of the cgroups: they only read or write files
                    assert "pycontainer_magics.oci.cgroups" not in names, verb
            if n == 1:
                assert "pycontainer_magics.oci.seccomp" not in mods["create"]  # the compiled program was reused
                assert "ctypes" in mods["create"]  # (the trace sees the imports a create really makes)
    finally:
        for cid in ("c0", "c1"):
            rt("delete", "--force", cid, check=False)
