"""Bring a compose project up and down on the runtime's pieces: detached containers (containers.py), user
networks with hosts-file names (network/), named volumes (volumes.py), image builds (build.py).

    p = up(load(text, project="demo"))     # networks, then services in depends_on order
    p.ps(); p.logs(); p.stats()
    p.down(volumes=True)

Each service has a supervisor thread: it runs the healthcheck (an exec in the container every interval)
and restarts the container by its restart policy. Everything a project makes is owned by this process:
containers end with it, and `prune` removes the networks, endpoints and cgroups a killed kernel left.
Named volumes persist until `down -v`, as Docker's do.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...runtime import cleanup
from ...runtime.parse import build_spec
from ...runtime.spec import ContainerSpec, Mount, SpecError, Tmpfs
from ..containers import Container, DetachedContainerError, containers
from .model import ComposeError, ComposeFile, Dependency, Service

OutputFn = Callable[[str, str], None]
RESTART_DELAY = (0.1, 5.0)  # first and longest delay (doubling; reset after 10 s up), as Docker's backoff


def _quiet(_stream: str, _text: str) -> None:
    pass


# -- one service ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HealthProbe:
    t: float  # time.time()
    exit_code: int
    output: str


class ServiceRun:
    """A service of a project that is up: its container (and those before a restart), health, restarts."""

    def __init__(self, project: Project, service: Service, spec: ContainerSpec) -> None:
        self.project = project
        self.service = service
        self.spec = spec
        self.containers: list[Container] = []  # every container it ran; the last is the current one
        self.restarts = 0
        self.health: str | None = None  # starting | healthy | unhealthy (None: no healthcheck)
        self.probes: list[HealthProbe] = []
        self.failed: str | None = None  # why it could not be (re)started
        self._thread: threading.Thread | None = None
        self.settled = threading.Event()  # the supervisor is done: ended for good, or stopped

    @property
    def name(self) -> str:
        return self.service.name

    @property
    def current(self) -> Container | None:
        return self.containers[-1] if self.containers else None

    @property
    def running(self) -> bool:
        c = self.current
        return c is not None and c.running

    @property
    def exit_code(self) -> int | None:
        c = self.current
        if c is None or c.running or c.run is None:
            return None
        return c.run.exit_code

    def start(self) -> Container:
        c = containers.start(self.spec)
        self.containers.append(c)
        if self.service.healthcheck is not None:
            self.health = "starting"
        self.project.changed()
        if self._thread is None:
            self._thread = threading.Thread(target=self._supervise, daemon=True,
                                            name=f"compose-{self.project.name}-{self.name}")
            self._thread.start()
        return c

    # -- the supervisor: health and restarts ----------------------------------------------------------
    def _supervise(self) -> None:
        delay = RESTART_DELAY[0]
        try:
            while True:
                c = self.current
                assert c is not None
                self._watch(c)
                self.project.changed()
                if self.project.stopping.is_set():
                    return
                if not self.service.restart.wants(self.exit_code, self.restarts):
                    return
                if c.run is not None and c.run.duration >= 10:  # it ran a while: back to the shortest delay
                    delay = RESTART_DELAY[0]
                if self.project.stopping.wait(delay):
                    return
                delay = min(delay * 2, RESTART_DELAY[1])
                with self.project.lock:
                    if self.project.stopping.is_set():
                        return
                    from ...runtime.cleanup import settle
                    settle()  # the ended container's network endpoint is gone: its name is free again
                    with contextlib.suppress(DetachedContainerError):
                        containers.remove(c.id)
                    try:
                        self.start()
                    except Exception as e:  # noqa: BLE001 - recorded, shown by ps
                        self.failed = f"restart failed: {e}"
                        return
                    self.restarts += 1
        finally:
            self.settled.set()
            self.project.changed()

    def _watch(self, c: Container) -> None:
        """Until `c` ends: probe its health every interval (after the first interval, as Docker does)."""
        hc = self.service.healthcheck
        if hc is None:
            _wait_done(c, None)
            return
        t0 = time.monotonic()
        fails = 0
        while not _wait_done(c, hc.interval):
            try:
                r = c.exec(hc.test, timeout=hc.timeout)
                code, out = r.exit_code, (r.stdout + r.stderr)[-200:]
            except OSError as e:
                if not c.running:
                    break
                code, out = -1, str(e)
            self.probes.append(HealthProbe(time.time(), code, out))
            del self.probes[:-10]
            if code == 0:
                fails = 0
                self.health = "healthy"
            elif time.monotonic() - t0 >= hc.start_period:  # failures in the start period do not count
                fails += 1
                if fails >= hc.retries:
                    self.health = "unhealthy"
            self.project.changed()

    def status(self) -> str:
        """Docker's STATUS words: running, running (healthy), exited (1), restarting, failed."""
        c = self.current
        if c is None:
            return "created"
        if c.running:
            return f"running ({self.health})" if self.health else "running"
        if self.failed:
            return "failed"
        if not self.settled.is_set() and not self.project.stopping.is_set():
            return "restarting"
        code = self.exit_code
        return f"exited ({code})" if code is not None else c.status


def _wait_done(c: Container, timeout: float | None) -> bool:
    """Wait up to `timeout` seconds (None: for ever) for `c` to end; True once it has."""
    try:
        c.wait(timeout)
    except DetachedContainerError as e:
        if e.errno == errno.ETIMEDOUT and c.running:
            return False
    except Exception:  # noqa: BLE001 - it failed to start: it has ended all the same
        pass
    return True


# -- the project ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceStatus:
    """One line of `ps`."""

    service: str
    name: str
    id: str
    image: str
    command: str
    status: str
    health: str | None
    exit_code: int | None
    restarts: int
    ports: tuple[str, ...]
    addresses: dict[str, str]  # network -> address
    created: float


class Project:
    def __init__(self, cf: ComposeFile) -> None:
        self.file = cf
        self.name = cf.project
        self.services: dict[str, ServiceRun] = {}
        self.networks: list[str] = []  # created by this project (removed by down)
        self.stopping = threading.Event()
        self.lock = threading.RLock()
        self._cond = threading.Condition()
        self.created = time.time()

    def changed(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # -- up -----------------------------------------------------------------------------------------------
    def _start_all(self, specs: dict[str, ContainerSpec], timeout: float, say: OutputFn) -> None:
        """Start each service once what it depends on is satisfied. Services ready at the same moment start
        together (one thread each: a container's start mostly waits on its holder, network and PID 1)."""
        pending = [n for level in self.file.levels() for n in level]
        deadline = time.monotonic() + timeout
        while pending:
            ready = [n for n in pending if all(self._satisfied(n, d) for d in self.file.services[n].depends_on)]
            if not ready:
                with self._cond:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        waits = ", ".join(f"{n!r} for " + ", ".join(
                            f"{d.service!r} ({d.condition})" for d in self.file.services[n].depends_on
                            if not self._satisfied(n, d)) for n in pending)
                        raise ComposeError(f"gave up after {timeout:g}s: still waiting: {waits}")
                    self._cond.wait(min(left, 0.5))
                continue
            errors: dict[str, BaseException] = {}
            start = functools.partial(_start_one, self.services, errors)
            threads = []
            for n in ready:
                pending.remove(n)
                self.services[n] = ServiceRun(self, self.file.services[n], specs[n])
                say("stderr", f" Container {self.file.container_name(n)}  Starting\n")
                if len(ready) == 1:
                    start(n)
                else:
                    threads.append(threading.Thread(target=start, args=(n,), daemon=True))
                    threads[-1].start()
            interrupted = False
            for t in threads:  # every start finishes before an interrupt goes on: down must see them all
                while t.is_alive():
                    try:
                        t.join()
                    except KeyboardInterrupt:
                        interrupted = True
            if interrupted:
                raise KeyboardInterrupt
            for n in ready:
                e = errors.get(n)
                if isinstance(e, SpecError | DetachedContainerError | OSError):
                    raise ComposeError(f"service {n!r}: cannot start: {e}") from None
                if e is not None:
                    raise e
                say("stderr", f" Container {self.file.container_name(n)}  Started\n")

    def _satisfied(self, service: str, d: Dependency) -> bool:
        """Is dependency `d` of `service` met? ComposeError when it never will be."""
        sr = self.services.get(d.service)
        if sr is None or sr.current is None:
            return False
        if d.condition == "service_started":
            return True
        if d.condition == "service_healthy":
            if sr.health == "healthy":
                return True
            if sr.health == "unhealthy":
                raise ComposeError(f"service {service!r}: dependency {d.service!r} is unhealthy "
                                   f"({_last_probe(sr)})")
            if sr.settled.is_set():
                raise ComposeError(f"service {service!r}: dependency {d.service!r} exited "
                                   f"({sr.exit_code}) before it was healthy")
            return False
        # service_completed_successfully
        if sr.running or not sr.settled.is_set():
            return False
        if sr.exit_code != 0:
            raise ComposeError(f"service {service!r}: dependency {d.service!r} did not complete successfully: "
                               f"exit code {sr.exit_code}")
        return True

    # -- what is up ------------------------------------------------------------------------------------
    def ps(self, all: bool = True) -> list[ServiceStatus]:  # noqa: A002 - docker compose ps --all
        from ... import network as net

        out = []
        for n in self.file.services:
            sr = self.services.get(n)
            c = sr.current if sr else None
            if sr is None or c is None or (not all and not c.running):
                continue
            addrs = {ep.network: ep.address for ep in net.endpoints_of(c.id)} if c.running else {}
            ports = tuple(p.spec for p in net.publications(c.id)) if c.running else ()
            cmd = " ".join(sr.spec.entrypoint or ()) + " " + " ".join(sr.spec.command)
            out.append(ServiceStatus(n, c.name or "", c.id, self.file.image_of(n), cmd.strip(), sr.status(),
                                     sr.health, sr.exit_code, sr.restarts, ports, addrs, c.started_at))
        return out

    def stats(self) -> list[dict[str, Any]]:
        """Per running service: memory (bytes), its limit, CPU seconds, pids — from its cgroup."""
        out = []
        for n, sr in self.services.items():
            c = sr.current
            if c is None or not c.running:
                continue
            st = c.stats()
            if st:
                out.append({"service": n, "name": c.name, **st})
        return out

    def log_lines(self, services: list[str] | None = None) -> list[tuple[float, str, str, str]]:
        """(time, service, stream, line) of every container of the chosen services, restarts included,
        merged in time order."""
        unknown = [s for s in services or [] if s not in self.file.services]
        if unknown:
            raise ComposeError(f"no such service: {unknown[0]!r} (services: {', '.join(self.file.services)})")
        out: list[tuple[float, str, str, str]] = []
        for n, sr in self.services.items():
            if services and n not in services:
                continue
            for c in list(sr.containers):
                pending: dict[str, tuple[float, str]] = {}  # stream -> (start of its unfinished line, text)
                for ln in list(c.log):
                    t = c.started_at + ln.t
                    start, buf = pending.pop(ln.stream, (t, ""))
                    *lines, rest = (buf + ln.text).split("\n")
                    for line in lines:
                        out.append((start, n, ln.stream, line))
                        start = t
                    if rest:
                        pending[ln.stream] = (start, rest)
                for stream, (start, rest) in pending.items():
                    out.append((start, n, stream, rest))
        out.sort(key=lambda x: x[0])
        return out

    def logs(self, services: list[str] | None = None) -> str:
        """`docker compose logs`: `service | line`, merged in time order."""
        lines = self.log_lines(services)
        w = max((len(s) for _, s, _, _ in lines), default=0)
        return "".join(f"{s:<{w}} | {line}\n" for _, s, _, line in lines)

    # -- down --------------------------------------------------------------------------------------------
    def stop(self, timeout: float | None = None) -> None:
        """Stop every container, dependents first (SIGTERM, SIGKILL after the grace period), and the
        supervisors: nothing is restarted any more."""
        self.stopping.set()
        self.changed()
        with self.lock:
            for level in reversed(self.file.levels()):
                threads = []
                for n in level:
                    sr = self.services.get(n)
                    c = sr.current if sr else None
                    if sr is None or c is None or not c.running:
                        continue
                    grace = sr.service.stop_grace_period if timeout is None else timeout
                    t = threading.Thread(target=_stop, args=(c, grace), daemon=True)
                    t.start()
                    threads.append(t)
                for t in threads:
                    t.join()
        for sr in self.services.values():
            if sr._thread is not None:
                sr._thread.join(timeout=30)

    def down(self, volumes: bool = False, timeout: float | None = None) -> list[str]:
        """Stop and remove the containers, the networks this project created and, with `volumes`, its
        named volumes. Returns what was removed, as lines like docker compose prints."""
        from ... import network as net
        from ...runtime.cleanup import settle

        self.stop(timeout)
        removed = []
        for sr in self.services.values():
            for c in sr.containers:
                with contextlib.suppress(DetachedContainerError):
                    containers.remove(c.id, force=True)
            if sr.containers:
                removed.append(f"Container {self.file.container_name(sr.name)}  Removed")
        settle()  # the containers' network endpoints and cgroups are gone before their networks go
        for name in reversed(self.networks):
            with contextlib.suppress(net.NetworkNotFound):
                net.remove_network(name, force=True)
                removed.append(f"Network {name}  Removed")
        self.networks.clear()
        if volumes:
            from ..volumes import list_volumes, remove_volume

            have = set(list_volumes())
            for v in self.file.volumes.values():
                if not v.external and v.name in have:
                    remove_volume(v.name)
                    removed.append(f"Volume {v.name}  Removed")
        with _lock:
            if _projects.get(self.name) is self:
                del _projects[self.name]
        return removed

    def wait(self, timeout: float | None = None) -> bool:
        """Until every service has ended for good (no restart to come); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not all(sr.settled.is_set() for sr in self.services.values()):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(0.5 if left is None else min(left, 0.5))
        return True

    def wait_for_exit(self, service: str, timeout: float | None = None) -> int | None:
        """Until `service` has ended for good (restarts included); its exit code. ComposeError on timeout."""
        sr = self.services.get(service)
        if sr is None:
            raise ComposeError(f"no such service: {service!r}")
        if not sr.settled.wait(timeout):
            raise ComposeError(f"service {service!r} still running after {timeout:g}s")
        return sr.exit_code

    def __repr__(self) -> str:
        return f"<compose project {self.name}: {len(self.services)} service(s)>"


def _start_one(services: dict[str, ServiceRun], errors: dict[str, BaseException], name: str) -> None:
    try:
        services[name].start()
    except BaseException as e:  # noqa: BLE001 - raised by the caller, from its own thread
        errors[name] = e


def _stop(c: Container, grace: float) -> None:
    with contextlib.suppress(Exception):
        if grace <= 0:
            c.kill()
            c.wait(timeout=30)
        else:
            c.stop(timeout=grace)


def _last_probe(sr: ServiceRun) -> str:
    if not sr.probes:
        return "no probe ran"
    p = sr.probes[-1]
    return f"last probe exit code {p.exit_code}" + (f": {p.output.strip()[-80:]}" if p.output.strip() else "")


# -- the projects of this process -----------------------------------------------------------------------

_projects: dict[str, Project] = {}
_lock = threading.Lock()


def get(name: str) -> Project:
    with _lock:
        p = _projects.get(name)
    if p is None:
        known = ", ".join(sorted(_projects)) or "none is up"
        raise ComposeError(f"no compose project {name!r} is up (projects: {known})")
    return p


def list_projects() -> list[Project]:
    with _lock:
        return list(_projects.values())


def _down_all() -> None:
    """At exit: every project goes (containers killed, networks removed; volumes kept, as Docker's)."""
    for p in list_projects():
        with contextlib.suppress(Exception):
            p.down(volumes=False, timeout=0)


def service_spec(cf: ComposeFile, s: Service) -> ContainerSpec:
    """The ContainerSpec of one service (SpecError names the option, ComposeError adds the service)."""
    nets = [cf.networks[n].name for n in s.networks]
    image = cf.image_of(s.name) if (s.image or s.build) else "host"
    if image == "host":
        command, entrypoint = (*(s.entrypoint or ()), *(s.command or ())), None
    else:
        command, entrypoint = s.command or (), s.entrypoint
    mounts = [Mount(cf.volumes[m.source].name if m.kind == "volume" else m.source, m.target, m.read_only,
                    "volume" if m.kind == "volume" else "bind") for m in s.volumes if m.kind != "tmpfs"]
    tmpfs = [Tmpfs(m.target, m.size) for m in s.volumes if m.kind == "tmpfs"]
    try:
        spec = build_spec(
            command=command, image=image, env=dict(s.environment), hostname=s.hostname, workdir=s.working_dir,
            user=s.user, memory=s.memory, memory_swap=s.memory_swap, cpus=s.cpus, cpu_shares=s.cpu_shares,
            cpuset_cpus=s.cpuset, pids_limit=s.pids_limit, volume=mounts, tmpfs=tmpfs, read_only=s.read_only,
            cap_add=list(s.cap_add), cap_drop=list(s.cap_drop), ulimit=list(s.ulimits), network=nets[0],
            publish=[str(p) for p in s.ports], expose=list(s.expose) or None, name=cf.container_name(s.name),
            no_diff=True)
        return spec.with_(entrypoint=entrypoint, network_aliases=tuple(dict.fromkeys((s.name, *s.aliases))),
                          extra_networks=tuple(nets[1:]))
    except SpecError as e:
        raise ComposeError(f"service {s.name!r}: {e}") from None


def _prepare_images(cf: ComposeFile, say: OutputFn) -> None:
    """Build what has `build:`, make sure every other image is in the store (pulled if not, as `up`
    does): all before anything of the project is created."""
    needs = [s for s in cf.services.values() if s.build or (s.image and s.image != "host")]
    if not needs:
        return
    from ...images import ImageError, ImageNotFound, Store, pull
    from ..build import build

    store = Store()
    for s in needs:
        ref = cf.image_of(s.name)
        try:
            if s.build is not None:
                with open(s.build.dockerfile) as f:
                    text = f.read()
                say("stderr", f" Service {s.name}  Building {ref}\n")
                build(text, tag=ref, context=s.build.context, build_args=dict(s.build.args), on_output=say,
                      store=store)
                continue
            try:
                store.get(ref)
            except ImageNotFound:
                say("stderr", f" Service {s.name}  Pulling {ref}\n")
                pull(store, ref)
        except (ImageError, OSError) as e:
            raise ComposeError(f"service {s.name!r}: image {ref!r}: {e}") from None


def up(cf: ComposeFile, *, on_output: OutputFn | None = None, timeout: float = 120.0) -> Project:
    """Bring the project up: images, networks, then the services in depends_on order (each waits for
    its dependencies' conditions). On any error everything made so far is removed again."""
    from ... import network as net

    say = on_output or _quiet
    with _lock:
        if cf.project in _projects:
            raise ComposeError(f"project {cf.project!r} is up already: `%compose down -p {cf.project}` first, "
                               "or choose another name with -p")
    specs = {n: service_spec(cf, s) for n, s in cf.services.items()}  # every SpecError before anything exists
    taken = {c.name for c in containers.list()}
    for n in cf.services:
        if cf.container_name(n) in taken:
            raise ComposeError(f"service {n!r}: the container name {cf.container_name(n)!r} is in use: remove it "
                               f"first (%container rm -f {cf.container_name(n)})")
    existing = {n.name for n in net.list_networks()}
    for nd in cf.networks.values():
        if nd.external and nd.name not in existing:
            raise ComposeError(f"network {nd.key!r}: external network {nd.name!r} does not exist (create it with "
                               f"%netns network create {nd.name})")
        if not nd.external and nd.name in existing:
            raise ComposeError(f"network {nd.key!r}: a network {nd.name!r} exists already (another project of this "
                               f"name is up, maybe in another kernel): choose another project name with -p")
    ext_vols = [v for v in cf.volumes.values() if v.external]
    if ext_vols:
        from ..volumes import list_volumes
        have = set(list_volumes())
        for v in ext_vols:
            if v.name not in have:
                raise ComposeError(f"volume {v.key!r}: external volume {v.name!r} does not exist")
    _prepare_images(cf, say)
    p = Project(cf)
    with _lock:
        if cf.project in _projects:
            raise ComposeError(f"project {cf.project!r} is up already")
        _projects[cf.project] = p
        cleanup.at_exit(_down_all, cleanup.WORKLOADS)  # before the networks and the pool (cleanup.py's phases)
    try:
        for nd in cf.networks.values():
            if nd.external:
                continue
            try:
                net.create_network(nd.name, nd.subnet, nd.gateway, internal=nd.internal, owner_pid=os.getpid())
            except net.NetworkError as e:
                raise ComposeError(f"network {nd.key!r}: {e}") from None
            p.networks.append(nd.name)
            say("stderr", f" Network {nd.name}  Created\n")
        p._start_all(specs, timeout, say)
    except BaseException:
        with contextlib.suppress(Exception):  # the error that stopped `up` is the one to report
            p.down(volumes=False, timeout=0)
        raise
    return p


__all__ = ["HealthProbe", "Project", "ServiceRun", "ServiceStatus", "get", "list_projects", "service_spec", "up"]
