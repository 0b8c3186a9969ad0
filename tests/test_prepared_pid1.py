"""PID 1 prepared ahead (holder.py `_park`, launch.pid1_parked): after a command runs, the next holder also
gets its PID 1 ready — in the next cell's cgroup, its own namespaces, filesystems mounted, pivot_root done —
and a run like the last one hands it its command, environment, hostname and pipes. A run unlike it never
gets it; nothing of it outlives the process, its unloading or its being killed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from helpers import wait_for

from pycontainer_magics.linux.proc import alive, children
from pycontainer_magics.runtime import ContainerSpec, run
from pycontainer_magics.runtime.pool import COMMAND, PYTHON, pool, prepared, release

pytestmark = [pytest.mark.root, pytest.mark.cgroup2,  # also run in the cgroup v2 VM (tests/vm/)
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (pooled holders)")]

MiB = 2**20
PREPARED = "PID 1 was prepared ahead (cgroup, namespaces, filesystems)"


def sh(script: str, on_output=None, **kw: object):  # type: ignore[no-untyped-def]
    return run(ContainerSpec(command=("sh", "-c", script), **kw), on_output=on_output)  # type: ignore[arg-type]


def prepared_ahead(r) -> bool:  # type: ignore[no-untyped-def]
    return any(label == PREPARED for label, _ in r.timeline)


def ready(kind: str = COMMAND):  # type: ignore[no-untyped-def]
    """The holder kept for the next run of `kind` on no network (pool slot), or None."""
    return pool.holders().get((None, kind))


def parked_ready() -> bool:
    """A holder kept for the next command, its PID 1 forked (parked is set when the order to park is sent)."""
    h = ready()
    return h is not None and h.parked is not None and len(children(h.pid)) == 1


def test_a_command_like_the_last_runs_in_the_pid1_prepared_for_it() -> None:
    pool.drain()
    run(ContainerSpec(python_code="pass", memory=64 * MiB), python_globals={})
    # After a Python cell, the first command: nothing was prepared for a command yet.
    first = sh("echo $WHO $(hostname); exit 3", hostname="one", env=(("WHO", "a"),), memory=64 * MiB)
    assert (first.exit_code, first.stdout, prepared_ahead(first)) == (3, "a one\n", False)
    # The same spec but for its command, environment and hostname: served by the prepared PID 1.
    second = sh("echo $WHO $(hostname) $$ $(grep -vc ':/$' /proc/self/cgroup)", hostname="two",
                env=(("WHO", "b"),), memory=64 * MiB)
    assert prepared_ahead(second), second.timeline
    assert (second.exit_code, second.stdout) == (0, "b two 1 0\n"), second.stderr  # at its cgroup ns root
    assert second.peak_memory and second.memory_limit == 64 * MiB  # its own cgroup, with the limit
    assert {row.kind for row in second.namespaces if row.isolated} >= {"mount", "pid", "net", "user", "cgroup"}
    # A Python cell never gets the cgroup a PID 1 waits in (its peak memory and OOM count are its own).
    assert wait_for(lambda: ready() is not None and ready().parked_cgroup is not None, 30)
    waiting_in = ready().parked_cgroup
    cell = run(ContainerSpec(python_code="print('py')", memory=64 * MiB), python_globals={})
    assert (cell.exit_code, cell.stdout, cell.id != waiting_in) == (0, "py\n", True)
    # Another limit is another cgroup: that run forks its PID 1 the usual way, and is right.
    sh("true", memory=64 * MiB)
    sh("true", memory=64 * MiB)
    third = sh("echo $(hostname)", hostname="three", memory=96 * MiB)
    assert (third.exit_code, third.stdout, prepared_ahead(third)) == (0, "three\n", False)
    assert third.memory_limit == 96 * MiB
    # A read-only root is another set of mounts: not served by a PID 1 prepared for a writable one.
    sh("true", memory=96 * MiB)
    sh("true", memory=96 * MiB)
    ro = sh("touch /x 2>/dev/null || echo refused", memory=96 * MiB, read_only=True)
    assert (ro.stdout, prepared_ahead(ro)) == ("refused\n", False)
    # Under a small memory limit nothing waits in the cgroup.
    for _ in range(3):
        small = sh("echo small", memory=32 * MiB)
    assert (small.stdout, prepared_ahead(small)) == ("small\n", False)
    pool.drain()


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rpartition(")")[2].split()[0]


def test_the_run_goes_straight_to_the_prepared_pid1_not_through_its_holder() -> None:
    # The caller hands the prepared PID 1 its run itself (run._give_run, over the socket the pool kept): the command
    # starts, and its output comes, while its holder — stopped here — has not read its order; the holder then
    # reaps it and reports its end as ever. (Through the holder, nothing would come until it was woken.)
    pool.drain()
    sh("true", memory=64 * MiB)
    assert wait_for(parked_ready, 30)
    holder = ready()
    seen: list[tuple[str, str]] = []

    def on_output(stream: str, text: str) -> None:
        seen.append((_state(holder.pid), text))
        os.kill(holder.pid, signal.SIGCONT)

    os.kill(holder.pid, signal.SIGSTOP)
    assert wait_for(lambda: _state(holder.pid) == "T", 10)  # (a stop takes effect when the process is next scheduled)
    wake = threading.Timer(10, os.kill, (holder.pid, signal.SIGCONT))  # (so a broken hand-over fails, not hangs)
    wake.start()
    try:
        r = sh("echo started; exit 4", memory=64 * MiB, hostname="straight", on_output=on_output)
    finally:
        wake.cancel()
        with contextlib.suppress(ProcessLookupError):
            os.kill(holder.pid, signal.SIGCONT)
    assert prepared_ahead(r), r.timeline
    assert seen[:1] == [("T", "started\n")], seen
    assert (r.exit_code, r.stdout) == (4, "started\n")
    assert wait_for(parked_ready, 30)
    again = sh("hostname", memory=64 * MiB, hostname="again")
    assert (again.stdout, prepared_ahead(again)) == ("again\n", True)  # (set by the caller, before it sent the run)
    pool.drain()


def test_a_run_given_to_a_pid1_whose_holder_dies_fails_and_runs_nowhere(monkeypatch: pytest.MonkeyPatch) -> None:
    # A pooled holder found dead when its order is sent is replaced by a fresh one — not once its prepared PID 1 has
    # the run: that PID 1 dies with its holder (its parent-death signal set again after its change of credentials, and
    # the holder's end of its socket), and the run fails rather than go twice.
    import importlib

    R = importlib.import_module("pycontainer_magics.runtime.run")
    pool.drain()
    sh("true", memory=64 * MiB, user="65534:65534")
    assert wait_for(parked_ready, 30)
    holder = ready()
    (pid1,) = children(holder.pid)
    real = R._give_run

    def give_then_lose_the_holder(h, *args):  # type: ignore[no-untyped-def]
        given = real(h, *args)
        os.kill(h.pid, signal.SIGKILL)
        assert wait_for(lambda: _state(h.pid) in ("Z", "X") if alive(h.pid) else True, 10)
        return given

    monkeypatch.setattr(R, "_give_run", give_then_lose_the_holder)
    with pytest.raises(R.LaunchError, match="holder went away"):
        sh("echo ran", memory=64 * MiB, user="65534:65534")
    assert wait_for(lambda: not alive(pid1), 10)
    pool.drain()


def _privileges(pid: int | str) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return {k: v.strip() for k, _, v in (line.partition(":") for line in f)
                if k in ("CapEff", "CapBnd", "NoNewPrivs", "Seccomp")}


def test_a_prepared_pid1_drops_its_privileges_before_its_run_comes() -> None:
    # Capabilities, no_new_privs and the default seccomp filter are in place while the PID 1 waits (off the
    # cell's path); a run takes it only with the same privilege steps.
    pool.drain()
    sh("true", memory=64 * MiB)
    assert wait_for(parked_ready, 30)
    (pid1,) = children(ready().pid)
    assert wait_for(lambda: _privileges(pid1)["Seccomp"] == "2", 30), _privileges(pid1)
    waiting = _privileges(pid1)
    assert waiting["NoNewPrivs"] == "1"
    served = sh("grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status", memory=64 * MiB)
    assert prepared_ahead(served), served.timeline
    seen = dict(line.split(":\t") for line in served.stdout.splitlines())
    assert seen == waiting, (seen, waiting)  # what it waited with is what the command runs with
    # Other capabilities are other steps: that run forks a PID 1 of its own, with its own set.
    fewer = sh("grep '^CapEff:' /proc/self/status", memory=64 * MiB, cap_drop=frozenset({"CHOWN"}))
    assert not prepared_ahead(fewer)
    assert int(fewer.stdout.split()[1], 16) == int(waiting["CapEff"], 16) & ~1  # CAP_CHOWN is bit 0
    pool.drain()


@pytest.mark.parametrize("user", [None, "65534:65534"])
def test_a_prepared_pid1_goes_with_the_pool_and_with_a_killed_process(user: str | None) -> None:
    # In process: dropping what is prepared ends the holder and its PID 1 and removes their cgroup. (With a user,
    # the PID 1 waits as that user: its parent-death signal went with the change of credentials, and it is the end of
    # its socket to the holder that ends it.)
    pool.drain()
    sh("true", memory=64 * MiB, user=user)
    assert wait_for(parked_ready, 30)
    holder, cg = ready(), pool.ready_cgroup()
    assert holder is not None and cg is not None and holder.parked_cgroup == cg[1].name
    (pid1,) = children(holder.pid)
    cgroup_dirs = set(cg[1].paths.values())
    release()
    assert wait_for(lambda: not alive(pid1) and not alive(holder.pid), 30)
    assert not any(os.path.isdir(d) for d in cgroup_dirs)

    # A killed process (a notebook kernel killed by the OOM killer, say): the prepared PID 1 goes with it
    # (the launch helper, the holder and PID 1 each die with their parent); the empty cgroup left behind is
    # what the next load's prune removes.
    script = ("import os, sys, time\n"
              "from pycontainer_magics.runtime import run, ContainerSpec\n"
              "from pycontainer_magics.runtime.pool import pool\n"
              "run(ContainerSpec(python_code='pass', memory=64 * 2**20), python_globals={})\n"
              f"run(ContainerSpec(command=('true',), memory=64 * 2**20, user={user!r}))\n"
              "deadline = time.monotonic() + 30\n"
              "while ((h := pool.holders().get((None, 'command'))) is None or h.parked is None\n"
              "       or pool.ready_cgroup() is None or pool.ready_cgroup(None, 'python') is None\n"
              "       or (None, 'python') not in pool.holders()) and time.monotonic() < deadline: time.sleep(0.01)\n"
              "cgs = [pool.ready_cgroup()[1], pool.ready_cgroup(None, 'python')[1]]\n"
              "print(h.pid, pool.holders()[(None, 'python')].pid,\n"
              "      *sorted({d for c in cgs for d in c.paths.values()}), flush=True)\n"
              "time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        holder_pid, py_holder, *dirs = p.stdout.readline().split()  # (with the Python cell's slot beside it)
        assert len({os.path.basename(d) for d in dirs}) == 2, dirs
        assert wait_for(lambda: len(children(int(holder_pid))) == 1, 30)
        (parked,) = children(int(holder_pid))
        if user is not None:  # it waits with its privileges dropped, as that user
            assert wait_for(lambda: _privileges(parked)["Seccomp"] == "2", 30)
            with open(f"/proc/{parked}/status") as f:
                assert any(line.split()[:2] == ["Uid:", "65534"] for line in f)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert wait_for(lambda: not alive(parked) and not alive(int(holder_pid)) and not alive(int(py_holder)), 30)
    for d in dirs:
        with open(os.path.join(d, "cgroup.procs")) as f:
            assert f.read().strip() == ""
    from pycontainer_magics.workloads.prune import prune

    prune()
    deadline = time.monotonic() + 30
    while any(os.path.isdir(d) for d in dirs) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(os.path.isdir(d) for d in dirs)


def test_no_pid1_is_prepared_over_a_volume_and_a_removed_volume_stays_removed(tmp_path, monkeypatch) -> None:
    """Preparing the next cell ahead must not re-create what the user removes between cells (a named volume)
    nor keep a mount of a host directory that may be replaced."""
    # Volumes live in the state dir: one of the test's own (the default one is read-only in the cgroup v2 VM).
    monkeypatch.setenv("PYCONTAINER_STATE_DIR", str(tmp_path / "state"))
    from pycontainer_magics.runtime.cleanup import settle
    from pycontainer_magics.runtime.spec import Mount
    from pycontainer_magics.workloads import volumes

    name = f"prep-vol-{os.getpid()}"
    spec = {"mounts": (Mount(name, "/data", kind="volume"),)}
    pool.drain()
    for _ in range(3):  # more than enough in a row for a PID 1 to be prepared, were it allowed
        r = sh("echo x > /data/f", **spec)
        assert r.exit_code == 0 and not prepared_ahead(r)
    volumes.remove_volume(name)
    settle()
    pool.drain()
    assert name not in volumes.list_volumes()


# Allows everything but recvmsg, which a parked PID 1 needs to receive its run (the pipes arrive as SCM_RIGHTS),
# and mkdir (what shows the payload runs under this profile, not the default one).
NO_RECVMSG = ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["recvmsg", "mkdir", "mkdirat"], '
              '"action": "SCMP_ACT_ERRNO"}]}')


@pytest.mark.parametrize("limits", [{"seccomp": NO_RECVMSG}, {"ulimits": (("nofile", 5, 5),)}],
                         ids=["custom seccomp profile", "rlimit"])
def test_a_prepared_pid1_takes_a_custom_filter_or_an_rlimit_only_with_its_run(limits: dict[str, object]) -> None:
    """launch.early_steps: a parked PID 1 drops its privileges before it waits, but stops before a seccomp filter
    other than the default or a resource limit: applied while it waits, either would keep it from receiving its
    run (recvmsg denied; no room for the pipes it is sent). The third run like the last takes the parked PID 1 and
    its payload runs under both."""
    pool.drain()
    runs = [sh("grep Seccomp: /proc/self/status; ulimit -n; mkdir /made 2>/dev/null && echo made || echo denied",
               memory=64 * MiB, **limits) for _ in range(3)]
    for r in runs:
        assert r.exit_code == 0, (r.stdout, r.stderr, r.error)
        assert "Seccomp:\t2" in r.stdout
    assert prepared_ahead(runs[2]), runs[2].timeline
    ulimit, mkdir = runs[2].stdout.split("\n")[1:3]
    if "ulimits" in limits:
        assert ulimit == "5", runs[2].stdout
    else:  # (mkdir works under the default profile)
        assert mkdir == "denied" and sh("mkdir /made && echo made", memory=64 * MiB).stdout == "made\n"
    pool.drain()


def _made_ahead_devices(holder: int) -> str:
    """The device numbers of the /dev and /sys trees the launch helper mounted ahead in a holder's mount namespace
    (holder.premount), as a Python cell that moved them into its root sees its /dev and /sys."""
    with open(f"/proc/{holder}/mountinfo") as f:
        (dev,) = [p for p in (line.split()[4] for line in f) if p.endswith("/ahead/dev")]
    where = f"/proc/{holder}/root{dev[: -len('/dev')]}"
    return f"{os.stat(where + '/dev').st_dev} {os.stat(where + '/sys').st_dev}"


def test_python_and_shell_cells_alternating_each_find_a_holder_of_their_kind() -> None:
    """A notebook that alternates Python and shell cells: the pool keeps what each kind starts from. Every command
    after the first is served by a PID 1 parked in a cgroup of its own, which the Python cell between them left
    alone; every Python cell gets the /dev and /sys trees mounted ahead for it and a free cgroup, never the one a PID 1
    waits in. release() (%unload_ext) leaves no holder, parked PID 1 or cgroup."""
    look = "import os; print(os.stat('/dev').st_dev, os.stat('/sys').st_dev)"

    def py():  # type: ignore[no-untyped-def]
        return run(ContainerSpec(python_code=look, memory=64 * MiB), python_globals={})

    pool.drain()
    assert py().exit_code == 0 and sh("true", memory=64 * MiB).exit_code == 0  # the first of each kind
    made = pool.served["made"]
    for _ in range(3):
        assert wait_for(lambda: parked_ready() and ready(PYTHON) is not None and ready(PYTHON).premounted
                        and pool.ready_cgroup(None, PYTHON) is not None, 30), pool.holders()
        waiting_in, free = ready().parked_cgroup, pool.ready_cgroup(None, PYTHON)[1].name  # type: ignore[index]
        assert waiting_in == pool.ready_cgroup()[1].name != free  # type: ignore[index]
        made_ahead = _made_ahead_devices(ready(PYTHON).pid)
        cell = py()
        assert (cell.exit_code, cell.stdout) == (0, made_ahead + "\n"), (cell.stdout, cell.stderr, made_ahead)
        assert cell.id == free, (cell.id, free, waiting_in)
        cmd = sh("echo $$", memory=64 * MiB)
        assert prepared_ahead(cmd) and (cmd.exit_code, cmd.stdout, cmd.id) == (0, "1\n", waiting_in), cmd.timeline
    assert pool.served["made"] == made  # every cell found a holder ready
    assert wait_for(lambda: parked_ready() and ready(PYTHON) is not None, 30)
    holders = [h.pid for h in pool.holders().values()]
    parked = [c for pid in holders for c in children(pid)]
    dirs = [d for p in prepared() for d in p.paths]
    assert len(holders) == 2 and len(parked) == 1 and len({os.path.basename(d) for d in dirs}) == 2, dirs
    release()
    assert wait_for(lambda: not any(alive(pid) for pid in holders + parked), 30)
    assert not any(os.path.isdir(d) for d in dirs), dirs
    assert prepared() == []


def test_what_a_failed_preparation_made_is_let_go(monkeypatch: pytest.MonkeyPatch) -> None:
    """A preparation that fails part way (never seen; forced here, after the holder and its cgroup were made) leaves
    nothing behind unrecorded: the holder goes, the cgroup is removed, and the slot stays empty."""
    from pycontainer_magics.runtime import pool as pool_module
    from pycontainer_magics.runtime.cleanup import settle

    made: list = []  # type: ignore[type-arg]

    def broken(holder, cg, _launch) -> None:  # type: ignore[no-untyped-def]
        made.append((holder.pid, cg))
        raise RuntimeError("broken on purpose")

    pool.drain()
    monkeypatch.setattr(pool_module, "_park", broken)
    assert sh("true", memory=64 * MiB).exit_code == 0
    assert wait_for(lambda: made != [] and not pool._busy and not pool._wanted, 30)
    settle()
    (pid, cg), = made
    assert ready() is None and pool.ready_cgroup() is None
    assert wait_for(lambda: not alive(pid), 10)
    assert wait_for(lambda: not any(os.path.isdir(d) for d in cg.paths.values()), 10), cg.paths
