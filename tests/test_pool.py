"""The pool (runtime/pool.py): what is prepared ahead for the next cell serves the next cell, and what a cell
is bound by holds whichever holder serves it."""

from __future__ import annotations

import os
import time

import pytest
from helpers import host_clean, on_fork, wait_for  # noqa: F401

from pycontainer_magics.runtime import ContainerSpec, run
from pycontainer_magics.runtime.pool import pool

pytestmark = [pytest.mark.root, pytest.mark.cgroup2,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (pooled holders)")]

MiB = 2**20
# Writes 48 MiB to the writable layer; says whether the layer filled up, and its size as df sees it.
FILL = ("dd if=/dev/zero of=/big bs=1M count=48 2>&1 | grep -o 'No space left on device'; "
        "echo layer $(df -k / | tail -1 | awk '{print $2}')")
FILL_PY = """
import os
try:
    with open("/big", "wb") as f:
        for _ in range(48):
            f.write(bytes(1 << 20))
    print("written")
except OSError as e:
    print("full" if e.errno == 28 else e)
st = os.statvfs("/")
print("layer", st.f_blocks * st.f_frsize // 1024)
"""


def _layer_kib(out: str) -> int:
    return int(out.split("layer")[-1].split()[0])


@pytest.mark.usefixtures("host_clean")
def test_a_prepared_holder_is_rebound_for_a_cell_with_another_writable_layer_size() -> None:
    """Bounded defaults gave cells of the magic (1 GiB) and of run() (no bound) different holder plans, so each
    missed the holder prepared after the other and waited for a new one. Now the prepared holder serves, its
    scratch tmpfs re-sized — and the bound is still the cell's own, up or down."""
    pool.drain()
    roomy = run(ContainerSpec(command=("sh", "-c", FILL), storage_size=128 * MiB))
    assert "No space" not in roomy.stdout and _layer_kib(roomy.stdout) == 128 * 1024, roomy.stdout
    served = pool.served.copy()
    tight = run(ContainerSpec(command=("sh", "-c", FILL), storage_size=32 * MiB))
    assert pool.served["resized"] == served["resized"] + 1 and pool.served["made"] == served["made"]
    assert "No space left on device" in tight.stdout and _layer_kib(tight.stdout) == 32 * 1024, tight.stdout
    # A Python cell (PID 1 forked by the caller, in the holder's mount namespace) after it, bound higher again.
    served = pool.served.copy()
    cell = run(ContainerSpec(python_code=FILL_PY, storage_size=96 * MiB), python_globals={})
    assert pool.served["resized"] == served["resized"] + 1, pool.served
    assert cell.stdout.split()[0] == "written" and _layer_kib(cell.stdout) == 96 * 1024, cell.stdout + cell.stderr
    # No bound: tmpfs's default (half of the RAM), as a holder made for it has.
    free = run(ContainerSpec(python_code=FILL_PY), python_globals={})
    half_ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2 // 1024
    assert abs(_layer_kib(free.stdout) - half_ram) < 1024, (free.stdout, half_ram)
    pool.drain()


@pytest.mark.usefixtures("host_clean")
def test_a_holder_is_rebound_by_the_caller_without_a_round_trip_to_the_launch_helper(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The bound of a prepared holder's writable layer is changed by the caller itself, by fspick/fsconfig through
    /proc/<holder>/root (pool._rebound) — not by the launch helper entering the holder's mount namespace, a round trip
    on the cell's path (0.2-0.5 ms: what every cell paid in a notebook mixing the magic's bounded cells and run())."""
    from pycontainer_magics.runtime.zygote import Zygote

    pool.drain()
    assert run(ContainerSpec(command=("true",), storage_size=128 * MiB)).exit_code == 0

    def asked(*_a: object, **_k: object) -> None:
        raise AssertionError("the launch helper was asked to re-bound a holder")

    monkeypatch.setattr(Zygote, "resize", asked)
    served = pool.served.copy()
    tight = run(ContainerSpec(command=("sh", "-c", FILL), storage_size=32 * MiB))
    assert pool.served["resized"] == served["resized"] + 1, pool.served
    assert "No space left on device" in tight.stdout and _layer_kib(tight.stdout) == 32 * 1024, tight.stdout
    free = run(ContainerSpec(python_code=FILL_PY), python_globals={})  # no bound: tmpfs's default, half of the RAM
    half_ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2 // 1024
    assert pool.served["resized"] == served["resized"] + 2, pool.served
    assert abs(_layer_kib(free.stdout) - half_ram) < 1024, (free.stdout, half_ram)
    pool.drain()


def _two_python_cells_of_other_bounds(**kw: object) -> None:
    """Warm-up: the pool's holder for Python cells is made for one bound, then re-bounded by the caller itself (the
    new mount API here: else a later re-bound is not left to the run)."""
    from pycontainer_magics.runtime import pool as pool_module

    pool.drain()
    assert run(ContainerSpec(python_code="pass", storage_size=128 * MiB, **kw), python_globals={}).exit_code == 0
    assert run(ContainerSpec(python_code="pass", storage_size=64 * MiB, **kw), python_globals={}).exit_code == 0
    if not pool_module._rebound_here:
        pytest.skip("no re-bound by the new mount API here: take() re-bounds before the fork")


@pytest.mark.usefixtures("host_clean")
def test_a_python_cells_holder_is_rebound_after_its_pid_1_is_forked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Python cell's PID 1 is forked by the caller and waits for its word before anything of the cell's: the bound
    of a holder prepared for another size is set after that fork, off the cell's path — and holds for the cell."""
    from pycontainer_magics.runtime import pool as pool_module

    _two_python_cells_of_other_bounds()
    events: list[str] = []
    real_reconfigure = pool_module._reconfigure

    def reconfigure(h: object, size: int | None) -> None:
        events.append(f"rebound to {size}")
        real_reconfigure(h, size)  # type: ignore[arg-type]

    on_fork(monkeypatch, lambda _pid: events.append("PID 1 forked"))
    monkeypatch.setattr(pool_module, "_reconfigure", reconfigure)
    served = pool.served.copy()
    cell = run(ContainerSpec(python_code=FILL_PY, storage_size=32 * MiB), python_globals={})
    assert pool.served["resized"] == served["resized"] + 1, pool.served
    assert events == ["PID 1 forked", f"rebound to {32 * MiB}"], events
    assert cell.stdout.split()[0] == "full" and _layer_kib(cell.stdout) == 32 * 1024, cell.stdout + cell.stderr
    pool.drain()


@pytest.mark.usefixtures("host_clean")
def test_a_rebound_that_fails_after_the_fork_ends_pid_1_before_the_cell_runs(monkeypatch: pytest.MonkeyPatch,
                                                                            tmp_path: object) -> None:
    """The bound set after PID 1's fork fails: one error line, PID 1 ended before anything of the cell's ran (its
    witness file, on a bind, not written — though the failure took 0.2 s), nothing left behind (host_clean); the
    next re-bound is made before the fork again."""
    from pycontainer_magics.runtime import LaunchError
    from pycontainer_magics.runtime import pool as pool_module
    from pycontainer_magics.runtime.spec import Mount

    bind = (Mount(str(tmp_path), "/witness"),)
    _two_python_cells_of_other_bounds(mounts=bind)

    def refused(*_a: object) -> None:
        time.sleep(0.2)  # (a PID 1 let go too early would have run the cell by now)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pool_module, "_reconfigure", refused)
    with pytest.raises(LaunchError, match=r"^container setup failed while bounding the writable layer: "
                                          r"\[Errno 28\] No space left on device$"):
        run(ContainerSpec(python_code="open('/witness/ran', 'w').write('the cell ran')", storage_size=32 * MiB,
                          mounts=bind), python_globals={})
    assert not os.path.exists(os.path.join(str(tmp_path), "ran"))
    assert pool_module._rebound_here is False
    monkeypatch.undo()
    pool.drain()


def test_the_launch_helper_has_what_a_holder_runs_loaded_before_it_forks() -> None:
    """A module a holder imports after the fork is imported again in every holder (its code, the copy-on-write
    of the interpreter's pages): the host masks' module did this for every cell, 2.8 ms of each holder's 7."""
    import subprocess
    import sys

    code = ("import sys, pycontainer_magics.runtime.zygote; "
            "print(sorted(m for m in sys.modules if m.startswith('pycontainer_magics.runtime.')))")
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    for module in ("holder", "launch", "rootfs", "host_masks", "plan"):
        assert f"'pycontainer_magics.runtime.{module}'" in loaded, loaded


def test_a_dead_holder_not_reaped_yet_is_not_taken() -> None:
    """A holder the caller forked itself (the daemon's spare offers one) that died is a zombie until reaped:
    it must not count as ready (signal 0 reaches a zombie)."""
    import dataclasses
    import socket

    from pycontainer_magics.linux.proc import stat_fields
    from pycontainer_magics.runtime.holder import HolderPlan
    from pycontainer_magics.runtime.pool import Holder, Pool

    plan = HolderPlan(new_mount=False, new_user=False, flags_rest=0, scratch=None, lower=None, mountpoints=(),
                      writable=True, time_offsets=(), maps=("", "", False), rootless=False)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    a, b = socket.socketpair()
    try:
        assert wait_for(lambda: (stat_fields(pid) or [""])[0] == "Z", 30)
        h = Holder(pid, a, plan, ours=True)
        assert not Pool.fits(h, plan, None)
        assert Pool.fits(dataclasses.replace(h, pid=os.getpid()), plan, None)  # (a live one does)
        # Asked of its pidfd (one the pool's thread opened for a holder it made): the same answers.
        fds = [os.pidfd_open(pid), os.pidfd_open(os.getpid())]
        try:
            assert not Pool.fits(dataclasses.replace(h, pidfd=fds[0]), plan, None)
            assert Pool.fits(dataclasses.replace(h, pid=os.getpid(), pidfd=fds[1]), plan, None)
        finally:
            for fd in fds:
                os.close(fd)
    finally:
        os.waitpid(pid, 0)
        a.close()
        b.close()


@pytest.mark.usefixtures("host_clean")
def test_an_interrupt_while_a_holder_is_rebound_lets_that_holder_go(monkeypatch) -> None:
    """A Ctrl-C while the pooled holder taken for a run is re-bounded (the holder out of its slot, not yet the
    run's): the holder goes, not kept open by the traceback until the kernel exits (review finding 6)."""
    from pycontainer_magics.linux.proc import alive
    from pycontainer_magics.runtime import pool as pool_module

    pool.drain()
    run(ContainerSpec(command=("true",), storage_size=64 * MiB))
    assert wait_for(lambda: any(h.plan.storage_size == 64 * MiB for h in pool.holders().values()), 30)
    (taken,) = [h for h in pool.holders().values() if h.plan.storage_size == 64 * MiB]

    def interrupted(*_a: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pool_module, "_rebound", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(ContainerSpec(command=("true",), storage_size=32 * MiB))
    assert taken.sock.fileno() == -1  # closed: the holder exits
    assert wait_for(lambda: not alive(taken.pid), 10)
    monkeypatch.undo()
    pool.drain()
