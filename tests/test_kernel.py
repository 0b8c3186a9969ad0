"""The Jupyter kernels: "Python 3 (container lab)" (the extension preloaded) and the limited variant whose
whole kernel runs in a cgroup of ours, started through jupyter_client as a notebook server would."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pycontainer_magics.kernel import KernelLimits, install_kernel, kernel_dict, parse_limits

LIMIT = 256 * 2**20
root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (writable cgroups)")


@pytest.fixture
def kernels(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A KernelSpecManager that sees only kernelspecs installed into a temp prefix."""
    from jupyter_client.kernelspec import KernelSpecManager

    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    yield tmp_path, KernelSpecManager(kernel_dirs=[str(tmp_path / "share" / "jupyter" / "kernels")])


class Kernel:
    """A started kernel and a blocking client; run(code) returns (stdout, stderr, error)."""

    def __init__(self, ksm: Any, name: str) -> None:
        from jupyter_client.manager import KernelManager

        self.km = KernelManager(kernel_name=name, kernel_spec_manager=ksm)
        self.km.start_kernel()
        self.kc = self.km.client()
        self.kc.start_channels()
        try:
            self.kc.wait_for_ready(timeout=60)
        except BaseException:
            self.close()
            raise

    def run(self, code: str, timeout: float = 60) -> tuple[str, str, str | None]:
        out: dict[str, list[str]] = {"stdout": [], "stderr": []}
        err: list[str] = []

        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "stream":
                out[msg["content"]["name"]].append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                err.append(f"{msg['content']['ename']}: {msg['content']['evalue']}")

        self.kc.execute_interactive(code, timeout=timeout, output_hook=hook)
        return "".join(out["stdout"]), "".join(out["stderr"]), (err[0] if err else None)

    def close(self) -> None:
        self.kc.stop_channels()
        if self.km.has_kernel:
            self.km.shutdown_kernel(now=False)
        else:
            self.km.cleanup_resources()


def test_kernel_json_loads_the_extension_and_names_the_limits() -> None:
    plain = kernel_dict(python="/py")
    assert plain["display_name"] == "Python 3 (container lab)"
    assert plain["argv"] == ["/py", "-m", "ipykernel_launcher", "-f", "{connection_file}", "--ext=pycontainer_magics"]
    assert "kernel_provisioner" not in plain["metadata"]
    lim = kernel_dict(parse_limits("2G", "1"), python="/py")
    assert lim["display_name"] == "Python 3 (container lab, 2G, 1 CPU)"
    assert lim["metadata"]["kernel_provisioner"] == {"provisioner_name": "pycontainer-cgroup",
                                                     "config": {"memory": "2G", "cpus": 1.0}}
    assert KernelLimits("512m", 0.5, 100).label() == "512m, 0.5 CPUs, 100 pids"
    assert parse_limits("1G", hostname="lab").config() == {"memory": "1G", "hostname": "lab"}


@pytest.mark.parametrize(("args", "message"), [
    (["--memory", "2x"], "invalid size '2x' for --memory"),
    (["--memory", "8m"], "too small for a Python kernel"),
    (["--cpus", "0"], "invalid --cpus '0'"),
    (["--pids", "4"], "at least 16"),
    (["--limited"], "--limited needs at least one limit"),
    (["--hostname", "lab"], "--hostname is for the limited kernel"),
    (["--memory", "1G", "--hostname", "bad_name!"], "invalid --hostname 'bad_name!'"),
])
def test_install_kernel_bad_input_is_one_line_and_writes_nothing(tmp_path: Any, args: list[str],
                                                                 message: str) -> None:
    p = subprocess.run([sys.executable, "-m", "pycontainer_magics.cli", "install-kernel", "--prefix",
                        str(tmp_path), *args], capture_output=True, text=True)
    assert p.returncode == 125
    assert p.stderr.count("\n") == 1 and message in p.stderr, p.stderr
    assert os.listdir(tmp_path) == []


def test_install_kernel_command_writes_both_kernelspecs(kernels: Any) -> None:
    prefix, ksm = kernels
    for extra in ([], ["--memory", "2G", "--cpus", "1"]):
        p = subprocess.run([sys.executable, "-m", "pycontainer_magics.cli", "install-kernel", "--prefix",
                            str(prefix), *extra], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
    specs = ksm.get_all_specs()
    specs.pop("python3", None)  # the native kernel is always listed
    assert {n: s["spec"]["display_name"] for n, s in specs.items()} == {
        "pycontainer-lab": "Python 3 (container lab)",
        "pycontainer-lab-2g-1cpu": "Python 3 (container lab, 2G, 1 CPU)"}
    d = specs["pycontainer-lab"]["resource_dir"]
    assert "logo-64x64.png" in os.listdir(d)
    with open(os.path.join(d, "kernel.json")) as f:
        assert json.load(f)["argv"][0] == sys.executable


def test_kernel_starts_with_the_magics_loaded(kernels: Any) -> None:
    prefix, ksm = kernels
    install_kernel(prefix=str(prefix))
    k = Kernel(ksm, "pycontainer-lab")
    try:
        out, err, error = k.run("print(sorted({'container', 'cgroup', 'netns', 'dockerfile'} & "
                                "set(get_ipython().magics_manager.magics['cell'])))\n"
                                "print(sorted({'container', 'cgroup', 'image', 'netns'} & "
                                "set(get_ipython().magics_manager.magics['line'])))")
        assert error is None, (err, error)
        assert out.split("\n")[:2] == ["['cgroup', 'container', 'dockerfile', 'netns']",
                                       "['cgroup', 'container', 'image', 'netns']"]
        if os.geteuid() == 0:  # a real container from the very first cell, no %load_ext
            out, err, error = k.run("%%container --quiet --hostname kcell -- sh\nhostname; echo $$")
            assert error is None, (err, error)
            assert out.split() == ["kcell", "1"]
    finally:
        k.close()


SPY = r"""
from jupyter_client.session import Session
from pycontainer_magics.runtime.pool import pool
_EVENTS = []
_send = Session.send
def _spy_send(self, stream, msg_or_type, *a, **k):
    kind = msg_or_type if isinstance(msg_or_type, str) else msg_or_type.get("header", {}).get("msg_type")
    if kind == "execute_reply":
        _EVENTS.append("reply")
    return _send(self, stream, msg_or_type, *a, **k)
Session.send = _spy_send
_prefetch = pool.prefetch_later
pool.prefetch_later = lambda *a, **k: (_EVENTS.append("prepare"), _prefetch(*a, **k))[1]
from pycontainer_magics.runtime import cleanup
_queue = cleanup._queue
cleanup._queue = lambda task: (_EVENTS.append("clean-up"), _queue(task))[1]
"""


@root
def test_a_cells_background_work_starts_after_its_reply(kernels: Any) -> None:
    """What a run leaves to the background (the next cell's holder prepared, its clean-up) starts once the kernel has
    sent the cell's reply: started before, it took the interpreter from the reply's path (1.5 ms of a Python cell's
    round trip, bench/kernel.py). And it does start: the next cell finds its PID 1 prepared."""
    prefix, ksm = kernels
    install_kernel(prefix=str(prefix))
    k = Kernel(ksm, "pycontainer-lab")
    try:
        assert k.run(SPY)[2] is None
        for _ in range(3):
            out, err, error = k.run("%%container --quiet -- sh\ntrue")
            assert error is None, (err, error)
        out, err, error = k.run("print(_EVENTS[1:]); print(any(l.startswith('PID 1 was prepared ahead') "
                                "for l, _ in _container.run.timeline))")
        assert error is None, (err, error)
        events, prepared = out.split("\n")[:2]
        ev = eval(events)  # noqa: S307 - the list printed above
        assert [e for e in ev if e != "clean-up"] == ["reply", "prepare"] * 3 and prepared == "True", out
        assert all(ev[i + 1] == "clean-up" for i, e in enumerate(ev) if e == "reply"), ev  # the run's end, then
    finally:
        k.close()


HISTORY = r"""
import threading
hm = get_ipython().history_manager
first = hm.save_thread
def write_during_the_next_cell(info):  # as the history thread writes to SQLite: under a cache lock, while a cell runs
    get_ipython().events.unregister("pre_run_cell", write_during_the_next_cell)
    held = threading.Event()
    def write():
        with hm.db_output_cache_lock:
            held.set()
            threading.Event().wait(0.3)
    threading.Thread(target=write).start()
    held.wait()
get_ipython().events.register("pre_run_cell", write_during_the_next_cell)
"""


@root
def test_ipythons_history_thread_keeps_running_across_a_python_cells_fork(kernels: Any) -> None:
    """IPython stops its history thread before any fork and starts a new one at the next cell (1.3 ms of every Python
    cell in a kernel): kept running across the cell's fork, and not inside SQLite at it — the fork waits out a write
    under way (the history manager's lock), and the cell's copy of that lock is free, SQLite usable."""
    prefix, ksm = kernels
    install_kernel(prefix=str(prefix))
    k = Kernel(ksm, "pycontainer-lab")
    try:
        assert k.run(HISTORY)[2] is None
        cell = ("%%container --quiet\nimport sqlite3\n"
                "print(sqlite3.connect(':memory:').execute('select 6*7').fetchone()[0])\n"
                "print(get_ipython().history_manager.db_output_cache_lock.acquire(timeout=1))")
        out, err, error = k.run(cell)
        assert error is None, (err, error)
        assert out.split() == ["42", "True"], out  # (forked holding the lock the write held: False)
        out, err, error = k.run(cell)
        assert error is None and out.split() == ["42", "True"], (out, err, error)
        out, err, error = k.run("print(hm.save_thread is first, first.is_alive(), hm.db_input_cache_lock.locked(), "
                                "hm.db_output_cache_lock.locked())")
        assert error is None and out.split() == ["True", "True", "False", "False"], (out, err, error)
    finally:
        k.close()


CELL_LIMIT = r"""
import os
lines = dict(l.split(':', 2)[1:] for l in open('/proc/self/cgroup').read().splitlines())
if 'memory' in lines:   # v1: the memory hierarchy's line
    base = '/sys/fs/cgroup/memory' + lines['memory']
    limit = open(base + '/memory.limit_in_bytes').read().strip()
else:                   # v2: the unified line
    base = '/sys/fs/cgroup' + lines['']
    limit = open(base + '/memory.max').read().strip()
print(base)
print(limit)
print(os.environ.get('PYCONTAINER_KERNEL_CGROUP'))
import socket
print(socket.gethostname())
"""


def _wait_gone(pid: int, timeout: float = 10) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return
        except FileNotFoundError:
            return
        time.sleep(0.02)
    raise AssertionError(f"kernel {pid} still running")


@root
def test_limited_kernel_runs_in_its_cgroup_with_the_limit_and_leaves_nothing(kernels: Any) -> None:
    prefix, ksm = kernels
    install_kernel(parse_limits("256M", 1, 64, hostname="lab-kernel"), prefix=str(prefix), name="lim")
    k = Kernel(ksm, "lim")
    try:
        out, err, error = k.run(CELL_LIMIT)
        assert error is None, (err, error)
        base, limit, name, hostname = out.split()
        assert hostname == "lab-kernel" != socket.gethostname()  # a UTS namespace of its own
        assert os.path.basename(base) == name == k.km.provisioner.cgroup_name
        assert name.startswith(f"kernel-{k.km.provisioner.pid}-0-")
        assert "/pycontainer_magics/" in base
        assert int(limit) == LIMIT
        from pycontainer_magics.linux.cgroups import open_hierarchy

        st = open_hierarchy().get(name).stats()
        assert st.pids_limit == 64 and st.memory_limit == LIMIT
        assert k.km.provisioner.pid in open_hierarchy().get(name).procs()
    finally:
        k.close()
    assert not os.path.exists(base), "the kernel's cgroup outlived the kernel"


@root
def test_limited_kernel_is_oom_killed_and_prune_removes_its_cgroup(kernels: Any) -> None:
    """A cell past the kernel's limit kills the kernel (not the machine); with no provisioner clean-up
    (the server died too), `prune` removes the cgroup the dead kernel left."""
    prefix, ksm = kernels
    install_kernel(parse_limits("256M"), prefix=str(prefix), name="lim")
    k = Kernel(ksm, "lim")
    try:
        assert k.run("import socket; print(socket.gethostname())")[0].strip() == socket.gethostname()
        name = k.km.provisioner.cgroup_name
        pid = k.km.provisioner.pid
        from pycontainer_magics.linux.cgroups import open_hierarchy

        cg = open_hierarchy().get(name)
        k.kc.execute("hog = bytearray(400 * 2**20)")
        _wait_gone(pid, timeout=30)
        assert cg.oom_kill_count() >= 1
        assert name in open_hierarchy().list()
        from pycontainer_magics.workloads.prune import prune

        assert f"cgroup {name}" in prune()
        assert name not in open_hierarchy().list()
    finally:
        k.close()  # the provisioner's clean-up finds nothing left and does not fail


@root
def test_killed_kernel_cgroup_is_removed_by_the_provisioner(kernels: Any) -> None:
    prefix, ksm = kernels
    install_kernel(parse_limits(cpus=0.5), prefix=str(prefix), name="lim")
    k = Kernel(ksm, "lim")
    name = k.km.provisioner.cgroup_name
    from pycontainer_magics.linux.cgroups import open_hierarchy

    try:
        os.kill(k.km.provisioner.pid, signal.SIGKILL)
        _wait_gone(k.km.provisioner.pid)
        assert name in open_hierarchy().list()
    finally:
        k.close()
    assert name not in open_hierarchy().list()


def test_binder_files_install_the_package_and_the_kernel(tmp_path: Any) -> None:
    """binder/: what repo2docker runs, run here with a throw-away HOME."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    binder = os.path.join(repo, "binder")
    with open(os.path.join(binder, "requirements.txt")) as f:
        assert f.read().split()[0] == "-e"
    with open(os.path.join(binder, "runtime.txt")) as f:
        major, minor = f.read().strip().removeprefix("python-").split(".")[:2]
    assert (int(major), int(minor)) >= (3, 11)
    env = {"HOME": str(tmp_path), "PATH": os.path.dirname(sys.executable) + ":/usr/bin:/bin"}
    p = subprocess.run([os.path.join(binder, "postBuild")], env=env, capture_output=True, text=True, cwd=repo)
    assert p.returncode == 0, p.stderr
    spec = tmp_path / ".local" / "share" / "jupyter" / "kernels" / "pycontainer-lab" / "kernel.json"
    k = json.loads(spec.read_text())
    assert k["display_name"] == "Python 3 (container lab)" and "--ext=pycontainer_magics" in k["argv"]
    p = subprocess.run([os.path.join(binder, "start"), "sh", "-c", "echo $PYCONTAINER_STATE_DIR"], env=env,
                       capture_output=True, text=True)
    assert p.stdout.strip() == f"{tmp_path}/.local/share/pycontainer_magics"
