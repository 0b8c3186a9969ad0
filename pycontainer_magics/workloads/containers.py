"""Background containers (`docker run --detach`): ps, logs, exec, stop, wait, rm.

A detached container is an ordinary run relayed by a thread of its own: its output goes to its log, its
result is kept when it ends. Containers belong to the process that started them (the notebook kernel):
they end with it, through the same parent-death signals and clean-up as any run.
"""

from __future__ import annotations

import errno
import threading
import time
from dataclasses import dataclass
from typing import Any

from ..errors import OSFailure
from ..runtime import cleanup
from ..runtime.image_source import configured_user
from ..runtime.result import ContainerRun
from ..runtime.run import Running, container_env, run, seccomp_filter
from ..runtime.spec import ContainerSpec
from .exec import ExecResult, exec_in


class DetachedContainerError(OSFailure):
    """A detached container cannot be found, named, started, stopped or removed as asked: one line."""


@dataclass(frozen=True)
class LogLine:
    t: float  # seconds since the container started
    stream: str  # "stdout" or "stderr"
    text: str


class Container:
    """A container running in the background. Its `run` (a ContainerRun) is complete once it has ended."""

    def __init__(self, spec: ContainerSpec, python_globals: dict[str, Any] | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.log: list[LogLine] = []
        self.started_at = time.time()
        self._t0 = time.monotonic()
        self._python_globals = python_globals
        self.stop_requested = False  # ended by stop()/kill(): an outcome asked for, as Docker's manual stop
        self._running: Running | None = None
        self._run: ContainerRun | None = None
        self._error: BaseException | None = None
        self._started = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._relay, name=f"pycontainer-{spec.name or 'detached'}",
                                        daemon=True)

    # -- life ------------------------------------------------------------------------------------
    def _relay(self) -> None:
        try:
            self._run = run(self.spec, python_globals=self._python_globals, on_output=self._on_output,
                            on_start=self._on_start)
        except BaseException as e:  # noqa: BLE001 - kept and re-raised to whoever waits
            self._error = e
        finally:
            self._done.set()
            self._started.set()

    def _on_start(self, running: Running) -> None:
        self._running = running
        self._started.set()

    def _on_output(self, stream: str, text: str) -> None:
        self.log.append(LogLine(time.monotonic() - self._t0, stream, text))

    def start(self, timeout: float = 30.0) -> Container:
        self._thread.start()
        if not self._started.wait(timeout):
            raise DetachedContainerError(errno.ETIMEDOUT, f"container {self.name or ''} did not start in {timeout:g}s")
        if self._error is not None:
            raise self._error
        return self

    # -- what it is ------------------------------------------------------------------------------
    @property
    def id(self) -> str:
        if self._running is not None:
            return self._running.run.id
        return self._run.id if self._run is not None else ""

    @property
    def running(self) -> bool:
        return not self._done.is_set()

    @property
    def status(self) -> str:
        if self.running:
            return "running"
        if self._error is not None:
            return "failed"
        return self._run.status if self._run is not None else "exited"

    @property
    def pid1(self) -> int | None:
        return self._running.pid1 if self._running is not None and self.running else None

    @property
    def run(self) -> ContainerRun | None:
        """The result, once the container has ended."""
        return self._run

    def logs(self, stream: str | None = None) -> str:
        return "".join(line.text for line in self.log if stream is None or line.stream == stream)

    def stats(self) -> dict[str, Any]:
        """Current figures from the cgroup, like a line of `docker stats`."""
        cg = self._running.cgroup if self._running is not None else None
        if cg is None or not self.running:
            return {}
        st = cg.stats()
        return {"memory": st.memory_current, "memory_limit": st.memory_limit, "cpu_s": st.cpu_usage_ns / 1e9,
                "pids": st.pids_current}

    # -- what can be done to it ------------------------------------------------------------------
    def wait(self, timeout: float | None = None) -> ContainerRun:
        if not self._done.wait(timeout):
            raise DetachedContainerError(errno.ETIMEDOUT, f"container {self.label} still running after {timeout:g}s")
        if self._error is not None:
            raise self._error
        assert self._run is not None
        return self._run

    def stop(self, timeout: float | None = None) -> ContainerRun:
        """The container's stop signal (--stop-signal, default SIGTERM), then SIGKILL after `timeout` seconds
        (default its --stop-timeout), as `docker stop`. (PID 1 ignores signals it has no handler for: a process
        that does not handle the signal waits out the timeout.)"""
        if self.running and self._running is not None:
            self.stop_requested = True
            self._running.signal(self.spec.stop_signal)
            if not self._done.wait(self.spec.stop_timeout if timeout is None else timeout):
                self._running.kill()
        return self.wait(timeout=30)

    def kill(self) -> None:
        if self.running and self._running is not None:
            self.stop_requested = True
            self._running.kill()

    def exec(self, command: tuple[str, ...] | list[str], *, env: dict[str, str] | None = None,
             workdir: str | None = None, on_output: Any = None, stdin_data: bytes | None = None,
             timeout: float | None = None) -> ExecResult:
        """Run a command inside the running container (its namespaces, cgroup, capabilities)."""
        pid1 = self.pid1
        if pid1 is None or self._running is None:
            raise DetachedContainerError(errno.ESRCH, f"container {self.label} is not running")
        e = container_env(self.spec, python=False)
        e.update(env or {})
        return exec_in(pid1, self._running.cgroup, tuple(command), env=e, workdir=workdir or self.spec.workdir or "/",
                       capabilities=self.spec.capabilities, no_new_privileges=self.spec.no_new_privileges,
                       on_output=on_output, stdin_data=stdin_data, timeout=timeout,
                       seccomp_filter=seccomp_filter(self.spec), user=configured_user(self.spec),
                       rlimits_=self.spec.ulimits, stop_signal=self.spec.stop_signal,
                       stop_timeout=self.spec.stop_timeout)

    # -- `docker pause|unpause|update|top|cp|export` on a container of this process ----------------
    def _cgroup(self) -> Any:
        cg = self._running.cgroup if self._running is not None and self.running else None
        if cg is None:
            raise DetachedContainerError(errno.ESRCH, f"container {self.label} is not running (or has no cgroup)")
        return cg

    def pause(self) -> None:
        """Freeze every process of the container (its cgroup's freezer), as `docker pause`."""
        self._cgroup().freeze(True)

    def unpause(self) -> None:
        self._cgroup().freeze(False)

    @property
    def paused(self) -> bool:
        try:
            return bool(self._cgroup().frozen())
        except DetachedContainerError:
            return False

    def update(self, limits: Any) -> None:
        """New cgroup limits (a CgroupLimits; None fields unchanged) on the running container, at once."""
        self._cgroup().set_limits(limits)

    def top(self) -> list[int]:
        """The host pids of the container's processes."""
        return sorted(self._cgroup().procs())

    def copy_out(self, path: str, dest: str) -> None:
        from .fs_access import copy_out
        pid = self.pid1
        if pid is None:
            raise DetachedContainerError(errno.ESRCH, f"container {self.label} is not running")
        copy_out(f"pid:{pid}", path, dest)

    def copy_in(self, src: str, path: str) -> None:
        from .fs_access import copy_in
        pid = self.pid1
        if pid is None:
            raise DetachedContainerError(errno.ESRCH, f"container {self.label} is not running")
        copy_in(f"pid:{pid}", src, path)

    def export(self, dest: str) -> int:
        from .fs_access import export_to
        pid = self.pid1
        if pid is None:
            raise DetachedContainerError(errno.ESRCH, f"container {self.label} is not running")
        return export_to(f"pid:{pid}", dest)

    @property
    def label(self) -> str:
        return self.name or self.id[:12]

    def __repr__(self) -> str:
        return f"<Container {self.label} {self.status}>"


class _Registry:
    """The containers started by this process, by name and id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Container] = []

    def start(self, spec: ContainerSpec, python_globals: dict[str, Any] | None = None) -> Container:
        with self._lock:
            if spec.name and any(c.name == spec.name for c in self._items):
                raise DetachedContainerError(errno.EEXIST, f"the name {spec.name!r} is already in use by a container: "
                                     f"remove it first (%container rm {spec.name})")
            c = Container(spec, python_globals)
            self._items.append(c)
        try:
            return c.start()
        except BaseException:
            with self._lock:
                self._items.remove(c)
            raise

    def get(self, ref: str) -> Container:
        with self._lock:
            for c in self._items:
                if ref in (c.name, c.id) or (len(ref) >= 4 and c.id.startswith(ref)):
                    return c
        raise DetachedContainerError(errno.ENOENT, f"no such container: {ref}")

    def list(self, all: bool = True) -> list[Container]:  # noqa: A002 - docker ps --all
        with self._lock:
            return [c for c in self._items if all or c.running]

    def rename(self, ref: str, new: str) -> None:
        from ..runtime.spec import VOLUME_NAME_RE

        if not VOLUME_NAME_RE.match(new):
            raise DetachedContainerError(errno.EINVAL, f"invalid name {new!r}: letters, digits, '_', '.', '-'")
        with self._lock:
            if any(c.name == new for c in self._items):
                raise DetachedContainerError(errno.EEXIST, f"the name {new!r} is already in use by a container")
        c = self.get(ref)
        c.name = new

    def remove(self, ref: str, force: bool = False) -> None:
        c = self.get(ref)
        if c.running:
            if not force:
                raise DetachedContainerError(errno.EBUSY,
                                             f"container {c.label} is running: stop it first, or use --force")
            c.kill()
            c.wait(timeout=30)
        from ..runtime import cleanup
        cleanup.settle()  # its network clean-up runs in the background: gone from its networks, as docker rm
        with self._lock:
            self._items.remove(c)

    def stop_all(self) -> None:
        for c in self.list():
            if c.running:
                c.kill()
        for c in self.list():
            try:
                c.wait(timeout=10)
            except BaseException:  # noqa: BLE001
                pass


containers = _Registry()
cleanup.at_exit(containers.stop_all, cleanup.WORKLOADS)


def start(spec: ContainerSpec, python_globals: dict[str, Any] | None = None) -> Container:
    """Start a container in the background (`--detach`); returns once its PID 1 is running."""
    return containers.start(spec, python_globals)
