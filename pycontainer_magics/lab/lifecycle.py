"""The OCI lifecycle — create, start, state, kill, delete — driven through runtimes' command lines one step at
a time, side by side (notebook 06), and cleaned up whatever happens to the caller.

    with Lifecycle(bundle, {"pycontainer": [pycontainer, "--root", R1], "runc": ["runc", "--root", R2]}) as lc:
        rows = lc.walk("pycontainer") + lc.walk("runc")   # Steps: create, start, kill -> created, running, stopped

A container made by `create` belongs to nobody: its init is left to the caller's subreaper (runc's rule), so a
notebook kernel that fails a cell mid-lifecycle, or is killed (nbval ends its kernels with SIGKILL to their
process group), would leave it running in its cgroup for good. So a Lifecycle

- deletes (`delete --force`) every runtime's container and removes its cgroup directories on close(), which
  `with` runs on success, on an exception and on an interrupt;
- first starts a guard: a small process in a session of its own (a kill of the caller's process group misses
  it) that holds the read end of a pipe from the caller. At end of file without "done" — the caller died —
  it does the same clean-up: `delete --force` under every runtime, then kills what is left in the cgroup
  directories and removes them, and the project's parent where runc made it and it is now empty.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import PycontainerError
from ..linux.cgroups import open_hierarchy
from ..oci import cgroups as oci_cgroups

STEPS = ("create", "start", "kill")

GUARD_MAIN = "from pycontainer_magics.lab.lifecycle import guard_main; guard_main()"


def guard_main() -> None:
    """The guard's process: reads JSON lines — ["run", argv] and ["cgroup", [leaf dirs]] to remember, "done"
    to forget them all and exit. At end of file (the caller died) it runs each command, bounded, then
    sweep()s the directories. Everything it needs is imported before it waits; it ignores the signals a
    dying session could send it."""
    for s in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGPIPE):
        signal.signal(s, signal.SIG_IGN)
    commands: list[list[str]] = []
    leaves: list[str] = []
    for line in sys.stdin:
        msg = json.loads(line)
        if msg == "done":
            return
        if msg[0] == "run":
            commands.append(msg[1])
        elif msg[0] == "cgroup":
            leaves += msg[1]
    for argv in commands:
        try:
            subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=60)
        except (OSError, subprocess.SubprocessError):
            pass
    sweep(leaves, foreign_parents(leaves))


def cgroup_dirs(cgroups_path: str | None, cid: str) -> list[str]:
    """Every directory a runtime may make for a container: its cgroupsPath in each mounted hierarchy (runc
    also makes it in the hybrid layout's unified tree, which our runtime leaves alone)."""
    paths = oci_cgroups.resolve(cgroups_path, cid)
    dirs = set(paths.values())
    mp, d = next(iter(paths.items()))
    rel = os.path.relpath(d, mp)
    try:
        roots = [os.path.join(oci_cgroups.CGROUP_ROOT, e) for e in os.listdir(oci_cgroups.CGROUP_ROOT)]
    except OSError:
        roots = []
    dirs |= {os.path.join(r, rel) for r in roots if os.path.ismount(r)}
    return sorted(dirs)


def foreign_parents(leaves: list[str]) -> list[str]:
    """The directories above `leaves` in the hierarchies the project's own cgroups never use (v1's
    name=systemd, blkio, net_cls, ..., the hybrid unified tree): runc makes our parent there and leaves it.
    In the project's own hierarchies the parent stays, as after any run of ours."""
    try:
        own = set(open_hierarchy().parent_paths)
    except (OSError, ValueError):
        own = set()
    parents = {os.path.dirname(d) for d in leaves}
    return sorted(p for p in parents if p not in own and not os.path.ismount(p))


def sweep(leaves: list[str], parents: list[str], timeout: float = 10.0) -> list[str]:
    """Kill what is in each directory of `leaves` and remove it; then remove each of `parents` where it is
    now empty. Returns what could not be removed."""
    deadline = time.monotonic() + timeout
    for d in leaves:
        while os.path.isdir(d):
            for pid in _procs(d):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            try:
                os.rmdir(d)
            except OSError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.02)
    for parent in parents:
        try:
            if not any(e.is_dir() for e in os.scandir(parent)):
                os.rmdir(parent)
        except OSError:
            pass  # in use by another container, or gone
    return [d for d in leaves if os.path.isdir(d)]


def _procs(d: str) -> list[int]:
    try:
        with open(os.path.join(d, "cgroup.procs")) as f:
            return [int(p) for p in f.read().split()]
    except (OSError, ValueError):
        return []


class StepError(PycontainerError):
    """A lifecycle step failed or did not reach the state it should: one line (the runtime's error)."""


@dataclass(frozen=True)
class Step:
    """What `state` said after one step."""

    runtime: str
    step: str
    status: str
    pid: int  # the container's PID 1 on the host (0 once it is gone)


class Lifecycle:
    """One container id (`cid`) taken through the lifecycle under each runtime of `runtimes` (name -> the
    argv that comes before the verb, global options such as --root included), cleaned up on close() and,
    through a guard process, when the caller dies."""

    def __init__(self, bundle: str, runtimes: dict[str, list[str]], cid: str = "demo",
                 timeout: float = 30.0) -> None:
        self.bundle = bundle
        self.runtimes = {name: list(argv) for name, argv in runtimes.items()}
        self.cid = cid
        self.timeout = timeout
        with open(os.path.join(bundle, "config.json")) as f:
            config = json.load(f)
        # Where every runtime puts this container's cgroup (runc's rule, which ours follows).
        self.cgroup_dirs = cgroup_dirs(config.get("linux", {}).get("cgroupsPath"), cid)
        self._live: set[str] = set()  # runtimes whose container may exist
        self._guard: subprocess.Popen[bytes] | None = None
        self._start_guard()

    # -- the clean-up, in-process and from the guard -------------------------------------------------
    def _start_guard(self) -> None:
        self._guard = subprocess.Popen([sys.executable, "-c", GUARD_MAIN], stdin=subprocess.PIPE,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                       start_new_session=True, close_fds=True)
        for argv in self.runtimes.values():
            self._tell(["run", [*argv, "delete", "--force", self.cid]])
        self._tell(["cgroup", self.cgroup_dirs])

    def _tell(self, msg: object) -> None:
        assert self._guard is not None and self._guard.stdin is not None
        self._guard.stdin.write(json.dumps(msg).encode() + b"\n")
        self._guard.stdin.flush()

    @property
    def guard_pid(self) -> int | None:
        return self._guard.pid if self._guard is not None else None

    def close(self) -> None:
        """Delete what is left under every runtime, remove the cgroup directories, dismiss the guard."""
        try:
            for name in sorted(self._live):
                subprocess.run([*self.runtimes[name], "delete", "--force", self.cid], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
                self._live.discard(name)
            sweep(self.cgroup_dirs, foreign_parents(self.cgroup_dirs))
        finally:
            if self._guard is not None:
                try:
                    self._tell("done")
                    self._guard.stdin.close()  # type: ignore[union-attr]
                except OSError:
                    pass
                self._guard.wait()
                self._guard = None

    def __enter__(self) -> Lifecycle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def leftovers(self) -> list[str]:
        """What of this lifecycle still exists: cgroup directories, and containers the runtimes list."""
        left = [d for d in self.cgroup_dirs if os.path.isdir(d)]
        for name, argv in self.runtimes.items():
            p = subprocess.run([*argv, "list", "-q"], capture_output=True, text=True, timeout=60)
            if self.cid in p.stdout.split():
                left.append(f"{name} container {self.cid}")
        return left

    # -- the steps -----------------------------------------------------------------------------------
    def command(self, name: str, *args: str) -> None:
        """Run one verb under runtime `name`; its output goes to /dev/null (runc's container inherits
        create's stdio). A failure is a StepError with the runtime's last line of stderr."""
        argv = [*self.runtimes[name], *args]
        if args and args[0] == "create":
            self._live.add(name)
        with tempfile.TemporaryFile() as err:  # not a pipe: the container keeps create's stderr open
            p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, timeout=60)
            err.seek(0)
            message = err.read().decode(errors="replace").strip()
        if args and args[0] == "delete" and p.returncode == 0:
            self._live.discard(name)
        if p.returncode != 0:
            last = (message.splitlines() or ["(no message)"])[-1]
            raise StepError(f"{name} {' '.join(args)}: exit {p.returncode}: {last}")

    def state(self, name: str) -> dict[str, object]:
        p = subprocess.run([*self.runtimes[name], "state", self.cid], capture_output=True, text=True,
                           timeout=60)
        if p.returncode != 0:
            raise StepError(f"{name} state {self.cid}: exit {p.returncode}: {p.stderr.strip()}")
        st: dict[str, object] = json.loads(p.stdout)
        return st

    def wait_until(self, condition: Callable[[], bool], what: str) -> None:
        """Poll until condition() holds; a StepError after the timeout instead of hanging."""
        deadline = time.monotonic() + self.timeout
        while not condition():
            if time.monotonic() > deadline:
                raise StepError(f"still waiting after {self.timeout:g} s for {what}")
            time.sleep(0.02)

    def walk(self, name: str, sig: str = "TERM") -> list[Step]:
        """create, start, kill (with `sig`, which the payload must catch: PID 1 of a namespace ignores the
        signals it has no handler for), each followed by `state`; then delete."""
        rows = []
        signum = signal.Signals["SIG" + sig]
        for step in STEPS:
            if step == "kill":  # a signal sent before the payload set its handler would be ignored
                self.wait_until(lambda: catches(_pid(self.state(name)), signum), f"the payload's handler for {sig}")
            self.command(name, *{"create": ("create", "--bundle", self.bundle, self.cid),
                                 "start": ("start", self.cid), "kill": ("kill", self.cid, sig)}[step])
            if step == "kill":
                self.wait_until(lambda: self.state(name)["status"] == "stopped", "the container to stop")
            st = self.state(name)
            rows.append(Step(name, step, str(st["status"]), _pid(st)))
        self.command(name, "delete", self.cid)
        return rows


def _pid(state: dict[str, object]) -> int:
    pid = state.get("pid", 0)
    return pid if isinstance(pid, int) else 0


def catches(pid: int, sig: int) -> bool:
    """Has process `pid` a handler for `sig`? (False when it is gone.)"""
    try:
        with open(f"/proc/{pid}/status") as f:
            caught = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt:"))
    except (OSError, StopIteration):
        return False
    return bool(caught >> (sig - 1) & 1)


__all__ = ["Lifecycle", "StepError", "STEPS", "Step", "catches", "cgroup_dirs", "foreign_parents", "guard_main",
           "sweep"]
