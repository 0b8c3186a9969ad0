"""A Python cell's PID 1, forked from the caller (runtime/cell_fork.py, launch.pid1_direct): its CPUs, where it reports
a failure, its namespace table, and what the holder does once the caller has read the layer diff itself."""

from __future__ import annotations

import importlib
import os
import pickle
import struct

import pytest
from helpers import host_clean, on_fork  # noqa: F401

from pycontainer_magics.runtime import cleanup
from pycontainer_magics.runtime.parse import build_spec

run_mod = importlib.import_module("pycontainer_magics.runtime.run")  # (the package's `run` is the function)

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("host_clean"),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


def _frames(data: bytes) -> list[dict]:
    out = []
    while len(data) >= 4:
        (n,) = struct.unpack(">I", data[:4])
        out.append(pickle.loads(data[4:4 + n]))
        data = data[4 + n:]
    return out


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def test_a_failure_before_the_pipes_are_in_place_goes_to_the_status_pipe_not_the_callers_fd_3() -> None:
    """PID 1 fails to enter a namespace (setns on an fd that is no namespace: EINVAL from the kernel) before it has
    put its pipes on 0-3. Fd 3 is still one of the caller's then (in a notebook kernel, one of its sockets): the
    report goes to the status pipe the caller reads, and nothing is written to fd 3."""
    from pycontainer_magics.linux.namespaces import CLONE_NEWNET
    from pycontainer_magics.runtime.launch import Launch, pid1_direct

    st_r, st_w = os.pipe()
    spy_r, spy_w = os.pipe()  # what the caller's fd 3 receives
    out_r, out_w = os.pipe()
    not_a_namespace = os.open("/etc/hostname", os.O_RDONLY)
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(spy_w, 3)
            L = Launch(mode="direct", pid1_unshare=0, merged=None, plan=None, hostname=None, env={},
                       python_code="pass")
            pid1_direct(L, (out_r, out_w, out_w, st_w), [(not_a_namespace, CLONE_NEWNET)], None, [])
        finally:
            os._exit(99)
    for fd in (st_w, spy_w, out_w, out_r, not_a_namespace):
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 125
    reports = _frames(_read_all(st_r))
    assert _read_all(spy_r) == b""
    assert len(reports) == 1 and reports[0]["setup_error"]["stage"] == "entering the holder's namespaces", reports
    assert "Invalid argument" in reports[0]["setup_error"]["strerror"]


@pytest.mark.cgroup2
def test_a_python_cells_pid1_has_the_callers_cpus() -> None:
    """The cell sees every CPU its caller may use: PID 1, moved to the CPUs but its caller's as it starts
    (linux/cpus_apart.py), takes them all back before the cell runs."""
    ours = os.sched_getaffinity(0)
    for _ in range(3):  # (a first run and pooled ones)
        r = run_mod.run(build_spec(python_code="import os; print(sorted(os.sched_getaffinity(0)))"),
                        python_globals={})
        assert r.exit_code == 0, r.stderr
        assert r.stdout.strip() == str(sorted(ours))


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_cpuset_cpus_still_bounds_a_python_cells_pid1() -> None:
    one = min(os.sched_getaffinity(0))
    r = run_mod.run(build_spec(python_code="import os; print(sorted(os.sched_getaffinity(0)))",
                               cpuset_cpus=str(one)), python_globals={})
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip() == str([one])


@pytest.mark.cgroup2
def test_the_holder_computes_the_diff_when_the_caller_could_not_read_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller reads a Python cell's layer diff itself, and then only lets the holder go; when it cannot (its
    read fails), it asks the holder, whose diff is the run's."""
    def cannot_read(*_a: object) -> list:
        raise PermissionError(13, "Permission denied")

    code = "open('/added', 'w').write('hello')"
    r = run_mod.run(build_spec(python_code=code), python_globals={})
    assert ("A", "/added") in {(d.kind, d.path) for d in r.diff}
    assert any(label == run_mod.DIFF_READ for label, _ in r.timeline), r.timeline

    monkeypatch.setattr(run_mod, "_read_diff", cannot_read)
    r = run_mod.run(build_spec(python_code=code), python_globals={})
    assert r.exit_code == 0, r.stderr
    assert not any(label == run_mod.DIFF_READ for label, _ in r.timeline), r.timeline
    assert any(label == "layer diff computed, holder done" for label, _ in r.timeline), r.timeline
    assert ("A", "/added") in {(d.kind, d.path) for d in r.diff}
    cleanup.settle()


def test_the_holders_order_for_a_python_cell_goes_after_pid1_is_forked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The holder forks nothing for a Python cell: its order (what to do with the layer after) is sent while PID 1
    starts, not before the fork (the holder's wake-up took the caller's CPU at times); the holder still computes the
    diff when asked."""
    events: list[str] = []
    real_send = run_mod._send_order

    def send(*a: object) -> None:
        events.append("order sent")
        real_send(*a)  # type: ignore[arg-type]

    on_fork(monkeypatch, lambda _pid: events.append("PID 1 forked"))
    monkeypatch.setattr(run_mod, "_send_order", send)
    monkeypatch.setattr(run_mod, "_read_diff", lambda *_a: (_ for _ in ()).throw(PermissionError(13, "denied")))
    r = run_mod.run(build_spec(python_code="open('/added', 'w').write('hello')"), python_globals={})
    assert r.exit_code == 0, r.stderr
    assert events == ["PID 1 forked", "order sent"], events
    assert ("A", "/added") in {(d.kind, d.path) for d in r.diff}  # (computed by the holder, as its order said)
    cleanup.settle()


@pytest.mark.cgroup2
@pytest.mark.parametrize("share", [(), ("user",), ("pid",), ("cgroup", "time"), ("net", "ipc", "uts"), ("mount",)])
def test_the_namespace_table_holds_the_kernels_inodes(share: tuple[str, ...]) -> None:
    """The inodes in a run's namespace table (PID 1's: those it enters read by the caller from their fds, its PID
    namespace from its /proc link, the ones it makes itself reported by it; and the caller's) are those a stat of the
    links gives, in the container and here: for a cell on a holder made on its path and for the next, whose holder and
    mount namespace (its root pivoted into) were made ahead; with each kind of namespace shared (the caller's then)."""
    import json

    from helpers import wait_for

    from pycontainer_magics.linux.namespaces import NAMESPACES
    from pycontainer_magics.runtime.pool import pool

    code = ("import os, json\n"
            "print(json.dumps({k: os.stat('/proc/self/ns/' + v[0]).st_ino for k, v in NS.items()}))")
    pool.drain()
    for _ in range(2):
        r = run_mod.run(build_spec(python_code=code, share=share), python_globals={"NS": NAMESPACES})
        assert r.exit_code == 0, r.stderr
        inside = json.loads(r.stdout)
        table = {row.kind: row for row in r.namespaces}
        assert {k: table[k].container_inode for k in NAMESPACES} == inside
        assert {k: table[k].host_inode for k in NAMESPACES} == {k: os.stat(f"/proc/self/ns/{v[0]}").st_ino
                                                          for k, v in NAMESPACES.items()}
        assert all((table[k].container_inode == table[k].host_inode) == (k in share) for k in NAMESPACES), table
        assert wait_for(lambda: pool.ready_holder() is not None and not pool._busy)


def test_a_fork_of_the_caller_made_before_the_holder_is_let_go_does_not_keep_it() -> None:
    """After a Python cell the caller lets the holder go from its clean-up thread, and the holder exits on that end of
    file. A fork of the caller made before (multiprocessing's workers, say) holds a copy of the caller's end of the
    socket: the holder must go all the same, and the clean-up must not wait for the fork."""
    import signal
    import threading
    import time

    from helpers import wait_for

    from pycontainer_magics.linux.proc import alive
    from pycontainer_magics.runtime.pool import pool

    spec = build_spec(python_code="pass")
    assert run_mod.run(spec, python_globals={}).exit_code == 0
    assert wait_for(lambda: pool.ready_holder() is not None, 30)
    holder = pool.ready_holder()
    assert holder is not None
    stalled = threading.Event()
    cleanup.defer(lambda: stalled.wait(30))  # the clean-up thread busy: the holder is let go after the fork below
    try:
        assert run_mod.run(spec, python_globals={}).exit_code == 0
        assert pool.ready_holder() is None or pool.ready_holder()[0] != holder[0], "the run did not take the holder"
        child = os.fork()
        if child == 0:
            time.sleep(20)
            os._exit(0)
    finally:
        stalled.set()
    try:
        t = time.monotonic()
        cleanup.settle()
        assert time.monotonic() - t < 5, "the clean-up waited for the fork"
        assert wait_for(lambda: not alive(holder[0]), 5), "the holder is still there"
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


def test_a_failure_while_pid1_starts_ends_it() -> None:
    """The caller makes what it needs only once PID 1 reports (the sampler, the relay's selector, the namespace
    table) after the fork, while PID 1 starts: a failure there raises from the run and ends PID 1 (killed, reaped),
    which would otherwise run the cell on its own."""
    forked: list[int] = []
    real_fork, real_ns = run_mod.fork_pid1, run_mod.ns_inodes

    def fork_pid1(*a, **k):  # type: ignore[no-untyped-def]
        forked.append(real_fork(*a, **k))
        return forked[-1]

    def ns_inodes(*a, **k):  # type: ignore[no-untyped-def]
        if forked:  # (after the fork: a direct run reads the caller's own namespaces then)
            raise OSError(24, "Too many open files")
        return real_ns(*a, **k)

    run_mod.fork_pid1, run_mod.ns_inodes = fork_pid1, ns_inodes
    try:
        with pytest.raises(OSError, match="Too many open files"):
            run_mod.run(build_spec(python_code="import time; time.sleep(60)"), python_globals={})
    finally:
        run_mod.fork_pid1, run_mod.ns_inodes = real_fork, real_ns
    assert len(forked) == 1
    cleanup.settle()
    assert not os.path.exists(f"/proc/{forked[0]}"), "PID 1 was left running"


@pytest.mark.parametrize("share", [(), ("user",)])
def test_a_python_cells_capabilities_are_the_plans_whatever_the_user_namespace(share: tuple[str, ...]) -> None:
    """PID 1 of a Python cell (the caller's fork, not the holder's) drops its capabilities after entering the user
    namespace, or without one: the five sets are the plan's — Docker's default less what is dropped, plus what is
    added — for a cell on a holder made on its path and for the next one."""
    from pycontainer_magics.linux import caps

    code = "print(open('/proc/self/status').read())"
    want = caps.mask_of((caps.DEFAULT_CAPS - {"CHOWN"}) | {"NET_ADMIN"})
    for _ in range(2):
        r = run_mod.run(build_spec(python_code=code, cap_drop=frozenset({"CHOWN"}), cap_add=frozenset({"NET_ADMIN"}),
                                   share=share), python_globals={})
        assert r.exit_code == 0, r.stderr
        sets = {line.split(":")[0]: int(line.split()[1], 16) for line in r.stdout.splitlines()
                if line.startswith("Cap")}
        assert sets == {"CapInh": 0, "CapPrm": want, "CapEff": want, "CapBnd": want, "CapAmb": 0}, sets


@pytest.mark.parametrize("callers_stdout", ["pipe", "file"])
def test_a_cells_streams_are_its_pipes_whether_or_not_the_caller_made_them(callers_stdout: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """sys.stdout and stderr of a Python cell are made once by the caller when its own fds 1 and 2 are pipes, as PID
    1's are (a kernel's: ipykernel puts pipes there); otherwise by PID 1. Either way they are what PID 1's are: not
    seekable, utf-8, line-buffered; stdin is PID 1's own (the run's data here)."""
    import subprocess
    import sys

    from helpers import REPO

    script = (
        "import json, sys\n"
        "from pycontainer_magics.runtime import run, launch\n"
        "from pycontainer_magics.runtime.parse import build_spec\n"
        "code = 'import sys, json; print(json.dumps([sys.stdout.seekable(), sys.stderr.seekable(), "
        "sys.stdout.encoding, sys.stdout.line_buffering, sys.stdin.read()]))'\n"
        "out = [run(build_spec(python_code=code, stdin_data=b'in' + bytes([48 + i])), python_globals={}).stdout\n"
        "       for i in range(2)]\n"
        "sys.stderr.write(json.dumps([launch._prebuilt is not None, out]))\n")
    with open(tmp_path / "out", "w") as f:
        p = subprocess.run([sys.executable, "-c", script], stdout=subprocess.PIPE if callers_stdout == "pipe" else f,
                           stderr=subprocess.PIPE, cwd=REPO, timeout=120, env={**os.environ, "PYTHONPATH": REPO})
    assert p.returncode == 0, p.stderr
    import json
    prebuilt, outs = json.loads(p.stderr.decode().strip().splitlines()[-1])
    assert [json.loads(o) for o in outs] == [[False, False, "utf-8", True, f"in{i}"] for i in range(2)]
    assert prebuilt == (callers_stdout == "pipe")
