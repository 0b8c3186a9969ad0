"""The least a cell must do on this machine, measured in the same run as the cells and crun (bench.py section 1).

A ratio goal (a Python cell <= 0.30x crun, a shell cell <= 0.25x) is reachable only if what a cell cannot avoid
doing fits in it. Both floors start from what our library prepares ahead (a namespace holder from the launch
helper: user, mount with the overlay root, network, UTS, IPC and time namespaces; a cgroup with the cell's
limits) and time only what must happen after the cell is asked for:

  Python cell  fork of this very process (the notebook kernel: the cell needs its variables), into a new PID
               namespace (the caller unshares one for its children first, so no second fork is needed), the
               child joins the cgroup (write "0" to its files) and the holder's time, IPC, UTS, network, mount
               and user namespaces (setns), says so through a pipe and exits; timed until the parent has read
               that word (the kernel's tear-down of the child's copy of the process is reaped in the background,
               as a cell's is). No mounts, no pivot_root, no privilege drop, no Python code run.
  Python cell  the same, and then what PID 1 of every Python cell must do in that fork before its code runs, each
  + set-up     step the library's own call: it enters, as a real cell's does, the mount namespace with the root
               pivoted into ahead (/dev and /sys made ahead and moved in; a holder made for each round, untimed),
               unshares its cgroup namespace, makes the mounts of its plan that cannot be made ahead (/proc, its
               masks and read-only paths, the cgroup mounts), enters the user namespace, and takes the privilege
               steps (working directory, capabilities, no_new_privs, the default seccomp filter). No reports, no
               streams, no environment, no signal handling: what a cell adds to this is its own bookkeeping.
  shell cell   a process already waiting as PID 1 of a new PID namespace, in the cgroup and the holder's
               namespaces (prepared untimed, before the idle gap: /bin/sh blocked on `read`), is told to go
               through its stdin and execs /bin/true (the same binary the shell cell runs); timed until its
               parent here has reaped it.

Each floor object has `prepare()` (untimed, called by the round-robin driver before the idle gap) and is called
for the timed part.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import subprocess
from typing import Any

MEM = 64 * 2**20
PIDS = 64


class _Prepared:
    """One holder and one cgroup, made once by the library for a Python cell's plan, shared by both floors."""

    def __init__(self) -> None:
        import importlib

        from pycontainer_magics.runtime import ContainerSpec
        from pycontainer_magics.runtime.state import new_id

        R = self.R = importlib.import_module("pycontainer_magics.runtime.run")  # (the package exports run())
        spec = ContainerSpec(python_code="pass", memory=MEM, pids_limit=PIDS)
        h = R.hierarchy()
        if h is None:
            raise RuntimeError("no writable cgroup hierarchy")
        self.cg = h.create(new_id(), R._limits(spec))
        try:
            self.hp, self.launch = R.plan_launch(spec, self.cg, {})
            self.holder = self.new_holder()
            self.pid, self.sock = self.holder.pid, self.holder.sock
        except BaseException:
            self.cg.remove()
            raise

    def new_holder(self) -> Any:
        """A holder with the mounts a real cell finds made ahead (holder.premount: /dev and /sys, beside the root) and
        its root pivoted into ahead (a mount namespace PID 1 enters: one holder's serves one PID 1)."""
        from pycontainer_magics.runtime import rootfs
        from pycontainer_magics.runtime.pool import Holder
        from pycontainer_magics.runtime.zygote import zygote

        L, R = self.launch, self.R
        ahead = rootfs.ahead_ops(L.plan)
        premount = (R._ahead_root(L.merged), dataclasses.replace(L.plan, ops=tuple(L.plan.ops[i] for i in ahead)),
                    L.merged)
        pid, sock, done, root_ns = zygote().prepare_premounted(self.hp, premount)
        h = Holder(pid, sock, self.hp, ours=False, root_ns=root_ns)
        h.premounted = tuple(L.plan.ops[i] for i in ahead) if done else ()
        return h

    def ns_fds(self, pid: int | None = None) -> tuple[list[tuple[int, int]], int]:
        """The holder's namespaces to enter, opened as a cell's PID 1 opens them (cell_fork.open_holder_namespaces)."""
        from pycontainer_magics.linux.namespaces import (
            CLONE_NEWIPC,
            CLONE_NEWNET,
            CLONE_NEWNS,
            CLONE_NEWTIME,
            CLONE_NEWUTS,
        )

        pid = pid or self.pid
        fds = [(os.open(f"/proc/{pid}/ns/{p}", os.O_RDONLY | os.O_CLOEXEC), flag)
               for p, flag in (("time_for_children", CLONE_NEWTIME), ("ipc", CLONE_NEWIPC), ("uts", CLONE_NEWUTS),
                               ("net", CLONE_NEWNET), ("mnt", CLONE_NEWNS))]
        return fds, os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)

    def join_fds(self) -> list[int]:
        return [os.open(f, os.O_WRONLY | os.O_CLOEXEC) for f in self.cg.join_files()]

    def close(self) -> None:
        self.holder.close()  # the holder exits when its control socket closes
        with contextlib.suppress(OSError):
            self.cg.remove()


def _enter(join: list[int], ns: list[tuple[int, int]], user: int | None) -> None:
    """In a fresh single-threaded child: the cgroup, then the holder's namespaces, the user namespace last."""
    from pycontainer_magics.linux import libc
    from pycontainer_magics.linux.namespaces import CLONE_NEWUSER

    for fd in join:
        os.write(fd, b"0")
    for fd, flag in ns:
        libc.setns(fd, flag)
    if user is not None:
        libc.setns(user, CLONE_NEWUSER)


class _Floor:
    def __init__(self, prepared: _Prepared) -> None:
        self.p = prepared

    def prepare(self) -> None:
        pass

    def _in_new_pidns(self, fork: Any) -> Any:
        """Call `fork` with our children's PID namespace a new one, then set it back (cell_fork.ForkedPid1's way)."""
        from pycontainer_magics.linux import libc
        from pycontainer_magics.linux.namespaces import CLONE_NEWPID
        from pycontainer_magics.runtime import cell_fork

        own = cell_fork.own_pidns_fd()
        with cell_fork.fork_lock:
            libc.unshare(CLONE_NEWPID)
            try:
                return fork()
            finally:
                libc.setns(own, CLONE_NEWPID)


def _pid1_setup(L: Any, premounted: bool, pivoted: bool) -> None:
    """What PID 1 of a Python cell must do after entering the holder's namespaces (but the user namespace) and
    before its code (see the module): the library's own calls, without its reports and bookkeeping."""
    from pycontainer_magics.linux import libc
    from pycontainer_magics.linux.namespaces import CLONE_NEWNS
    from pycontainer_magics.runtime import rootfs

    ahead = rootfs.ahead_ops(L.plan) if premounted else ()
    if pivoted:  # entered: the root pivoted into ahead (launch._enter_root)
        libc.unshare(L.pid1_unshare & ~CLONE_NEWNS)
        rootfs.apply_plan("", L.plan, skip=ahead, strict=True)
        return
    libc.unshare(L.pid1_unshare)
    if ahead:
        rootfs.move_ahead(L.merged, os.path.dirname(L.merged) + "/ahead", rootfs.ahead_tops(L.plan, ahead))
    rootfs.apply_plan(L.merged, L.plan, skip=ahead)
    rootfs.pivot_into(L.merged)


def _pid1_privileges(L: Any) -> None:
    from pycontainer_magics.runtime.launch import become_root
    from pycontainer_magics.runtime.plan import run_steps

    become_root()
    run_steps(L.steps)


class PythonFloor(_Floor):
    """fork + cgroup + setns into the prepared namespaces + exit, read by the parent (see the module)."""

    def _ns_fds(self) -> tuple[list[tuple[int, int]], int]:
        return self.p.ns_fds()

    def _child(self, join: list[int], ns: list[tuple[int, int]], user: int) -> None:
        _enter(join, ns, user)

    def __call__(self) -> None:
        from pycontainer_magics.runtime import cleanup

        join = self.p.join_fds()
        ns, user = self._ns_fds()
        r, w = os.pipe()

        def fork() -> int:
            gc.freeze()  # as a cell does: the child's collector must not touch (copy) our heap
            try:
                pid = os.fork()
                if pid == 0:
                    code = 0
                    try:
                        self._child(join, ns, user)
                        os.write(w, b"0")
                    except BaseException:  # noqa: BLE001
                        code = 1
                    os._exit(code)
                return pid
            finally:
                gc.unfreeze()

        try:
            pid = self._in_new_pidns(fork)
        finally:
            os.close(w)
            for fd in join + [fd for fd, _ in ns] + [user]:
                os.close(fd)
        try:
            ok = os.read(r, 1) == b"0"
        finally:
            os.close(r)
        cleanup.defer(lambda: os.waitpid(pid, 0))
        if not ok:
            raise RuntimeError("floor: the child failed its part (the cgroup, the namespaces or the set-up)")


class PythonSetupFloor(PythonFloor):
    """The Python floor, and PID 1's set-up that every Python cell must make in its fork (see the module), in a holder
    of its own made for each round, untimed (a mount namespace with the root pivoted into ahead serves one PID 1)."""

    def __init__(self, prepared: _Prepared) -> None:
        super().__init__(prepared)
        self.holder: Any = None
        self.pivoted = False

    def prepare(self) -> None:
        if self.holder is not None:
            self.holder.close()
        self.holder = self.p.new_holder()

    def _ns_fds(self) -> tuple[list[tuple[int, int]], int]:
        from pycontainer_magics.runtime.cell_fork import with_root_ns

        if self.holder is None:
            self.prepare()
        ns = self.p.ns_fds(self.holder.pid)
        root_ns = self.holder.take_root_ns()
        self.pivoted = root_ns is not None
        return with_root_ns(ns, root_ns) if root_ns is not None else ns  # type: ignore[return-value]

    def close(self) -> None:
        if self.holder is not None:
            self.holder.close()
            self.holder = None

    def _child(self, join: list[int], ns: list[tuple[int, int]], user: int) -> None:
        from pycontainer_magics.linux import libc
        from pycontainer_magics.linux.namespaces import CLONE_NEWUSER

        _enter(join, ns, None)
        _pid1_setup(self.p.launch, bool(self.holder.premounted), self.pivoted)
        libc.setns(user, CLONE_NEWUSER)
        _pid1_privileges(self.p.launch)


class ShellFloor(_Floor):
    """exec of /bin/true by a PID 1 waiting in the prepared namespaces, reaped by us (see the module)."""

    def __init__(self, prepared: _Prepared) -> None:
        super().__init__(prepared)
        self.proc: subprocess.Popen[bytes] | None = None

    def prepare(self) -> None:
        self.discard()
        join = self.p.join_fds()
        ns, user = self.p.ns_fds()
        try:
            self.proc = self._in_new_pidns(lambda: subprocess.Popen(
                ["/bin/sh", "-c", "read x; exec /bin/true"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                preexec_fn=lambda: _enter(join, ns, user)))
        finally:
            for fd in join + [fd for fd, _ in ns] + [user]:
                os.close(fd)

    def __call__(self) -> None:
        if self.proc is None:
            self.prepare()
        proc, self.proc = self.proc, None
        assert proc is not None and proc.stdin is not None
        proc.stdin.write(b"\n")
        proc.stdin.close()
        if proc.wait() != 0:
            raise RuntimeError(f"floor: /bin/true exited {proc.returncode}")

    def discard(self) -> None:
        if self.proc is not None:
            proc, self.proc = self.proc, None
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
            if proc.stdin is not None:
                proc.stdin.close()


class Floors:
    """Both floors over one prepared holder and cgroup; close() removes them (and a PID 1 still waiting)."""

    def __init__(self) -> None:
        self.prepared = _Prepared()
        self.python = PythonFloor(self.prepared)
        self.python_setup = PythonSetupFloor(self.prepared)
        self.shell = ShellFloor(self.prepared)

    def close(self) -> None:
        self.shell.discard()
        self.python_setup.close()
        self.prepared.close()
