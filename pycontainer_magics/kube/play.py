"""`kube play`: run Kubernetes Pod and Deployment YAML here, with this project's runtime, as `podman kube
play` does; `down` removes what it made.

    p = play(text, name="shop")       # validated first (one KubeError line with the field path), then run
    p.ps(); p.logs(); p.wait()
    p.down()                          # containers, pods, the play's network and files

What maps back: a Pod (or each replica of a Deployment's pod template, or a Job's pod `<job>-pod`:
`<deployment>-pod` for one, `<deployment>-0` .. `-<N-1>` for `replicas: N`) becomes a pod here
(workloads/pods.py: one network, IPC and UTS namespace for its containers, its host name;
shareProcessNamespace: one PID namespace; hostUsers: false: a user namespace whose root is an unprivileged
range of host ids), its containers `<pod>-<container>` in it: image (`host` is this machine's /), command/args
(ENTRYPOINT/CMD), env (value, configMapKeyRef/secretKeyRef, envFrom configMapRef/secretRef), workingDir,
resources (limits.memory/cpu; requests.cpu as CPU shares), securityContext (capabilities, privileged,
allowPrivilegeEscalation, readOnlyRootFilesystem, runAsUser/Group, seccompProfile), ports (hostPort published
on the host), volumes (emptyDir: a tmpfs, or a directory shared by the pod's containers; hostPath; configMap;
secret; persistentVolumeClaim: a named volume), initContainers (run in order, each to a successful end, before
the containers), restartPolicy, startup/readiness/liveness probes (exec, httpGet, tcpSocket: probes.py;
httpGet and tcpSocket connect from inside the pod's network namespace). A Service (services.py) gets an
address of its own on the play's network under its name, where its ports are forwarded to the ready pods it
selects (`port` -> `targetPort`, round robin); a headless one names the pods themselves. A Job (jobs.py) runs
its pod to completion, retrying failures up to backoffLimit, within activeDeadlineSeconds. What is read but
has no effect here is listed in `notes`; what cannot be run is an error before anything exists.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..runtime.spec import ContainerSpec, Mount, SpecError, Tmpfs, UsernsMode
from . import jobs, probes, quantity, services
from .configdata import Sources, safe_relpath, write_tree
from .errors import KubeError, field_path
from .jobs import JobPlan, JobState
from .probes import Probe, ProbeState
from .records import prune_records, records_dir, unrecord
from .services import ServicePlan, ServiceRun
from .validate import describe, lint, load_documents, pod_spec_path

OutputFn = Callable[[str, str], None]
PLAYED = ("Pod", "Deployment", "Job", "Service", "ConfigMap", "Secret", "PersistentVolumeClaim")
API_VERSIONS = {"Deployment": "apps/v1", "Job": "batch/v1"}  # the others' is v1
EVENTS_KEPT = 1000
RESTART_DELAY = (0.1, 5.0)  # the first and the longest delay between restarts (doubling), as the kubelet's


def _quiet(_stream: str, _text: str) -> None:
    pass


# -- the plan: every document read and checked before anything is made --------------------------------------

@dataclass
class ContainerPlan:
    name: str  # in the YAML
    path: str  # field path of the container (for errors)
    k8s: dict[str, Any]
    spec: ContainerSpec | None = None  # made once the play's files exist
    probes: dict[str, Probe] = field(default_factory=dict)  # startup, readiness, liveness


@dataclass
class PodPlan:
    resource: str  # pod/web, deployment/web
    name: str  # the pod here
    labels: dict[str, str]
    spec_path: tuple[Any, ...]
    spec: dict[str, Any]
    init: list[ContainerPlan] = field(default_factory=list)
    containers: list[ContainerPlan] = field(default_factory=list)
    restart: str = "Always"
    grace: float = 30.0
    deadline: float | None = None
    hostname: str | None = None
    share_pid: bool = False
    userns: UsernsMode = "private"  # remap for hostUsers: false
    publish: list[tuple[str, int, int, str]] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    job: JobPlan | None = None  # the pod of a Job


def _ctx(plan: PodPlan, *parts: Any) -> str:
    return f"{plan.resource}: {field_path((*plan.spec_path, *parts))}"


def _seconds(v: Any, what: str, default: float) -> float:
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
        raise KubeError(f"{what}: {v!r} is not a number of seconds")
    return float(v)


def _pod_plans(doc: dict[str, Any], notes: list[str]) -> list[PodPlan]:
    """A Pod's plan, or a Deployment's: one pod `<name>-pod` (podman's name) for one replica, N pods
    `<name>-0` .. `<name>-<N-1>` for `replicas: N` (each its own address and files; its Services reach them
    all), none for 0."""
    if doc["kind"] == "Job":
        jp = jobs.plan(doc, notes)
        pp = _pod_plan(doc, f"{jp.name}-pod", notes)
        pp.job = jp
        pp.labels.update({"job-name": jp.name, "batch.kubernetes.io/job-name": jp.name})  # as the Job controller's
        return [pp]
    if doc["kind"] != "Deployment":
        return [_pod_plan(doc, doc["metadata"]["name"], notes)]
    replicas = (doc.get("spec") or {}).get("replicas", 1)
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        raise KubeError(f"{describe(doc)}: spec.replicas: {replicas!r}: a whole number, 0 or more")
    base = doc["metadata"]["name"]
    if replicas == 0:
        notes.append(f"{describe(doc)}: replicas 0: no pod runs")
        return []
    names = [f"{base}-pod"] if replicas == 1 else [f"{base}-{k}" for k in range(replicas)]
    plans = [_pod_plan(doc, n, notes if k == 0 else []) for k, n in enumerate(names)]
    if replicas > 1 and plans[0].publish:
        for i, c in enumerate(plans[0].spec.get("containers") or []):
            for j, port in enumerate(c.get("ports") or []):
                if port.get("hostPort"):
                    raise KubeError(f"{_ctx(plans[0], 'containers', i, 'ports', j, 'hostPort')}: with replicas "
                                    f"{replicas}: one machine publishes a host port once (a Service reaches them all)")
    return plans


def _pod_plan(doc: dict[str, Any], name: str, notes: list[str]) -> PodPlan:
    path = pod_spec_path(doc)
    assert path is not None
    spec = doc
    for p in path:
        spec = spec.get(p) if isinstance(spec, dict) else None  # type: ignore[assignment]
    if not isinstance(spec, dict):
        raise KubeError(f"{describe(doc)}: {field_path(path)}: missing")
    meta = doc["metadata"]
    if doc["kind"] in ("Deployment", "Job"):
        meta = (doc["spec"].get("template") or {}).get("metadata") or {}
    plan = PodPlan(describe(doc), name, dict(meta.get("labels") or {}), path, spec)
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            raise KubeError(f"{_ctx(plan, key)}: true is not played here: a pod's containers share the pod's "
                            "namespaces, not the host's")
    if spec.get("hostUsers") is False:
        if os.geteuid() == 0:
            plan.userns = "remap"  # the pod's root is an unprivileged range of host ids (--userns remap)
        else:
            notes.append(f"{_ctx(plan, 'hostUsers')}: false: without root every pod's user namespace maps your "
                         "user as its root already")
    for key in ("nodeSelector", "affinity", "tolerations", "serviceAccountName", "priorityClassName",
                "runtimeClassName", "dnsPolicy", "dnsConfig", "hostAliases", "imagePullSecrets"):
        if key in spec:
            notes.append(f"{_ctx(plan, key)}: has no effect here (one machine, names from the play's network)")
    plan.restart = spec.get("restartPolicy") or "Always"
    plan.grace = _seconds(spec.get("terminationGracePeriodSeconds"), _ctx(plan, "terminationGracePeriodSeconds"),
                          30.0)
    if spec.get("activeDeadlineSeconds") is not None:
        plan.deadline = _seconds(spec["activeDeadlineSeconds"], _ctx(plan, "activeDeadlineSeconds"), 0)
    plan.hostname = spec.get("hostname")
    plan.share_pid = bool(spec.get("shareProcessNamespace"))
    for group, dest in (("initContainers", plan.init), ("containers", plan.containers)):
        for i, c in enumerate(spec.get(group) or []):
            cp = ContainerPlan(c["name"], _ctx(plan, group, i), c)
            if group == "initContainers" and c.get("restartPolicy") == "Always":
                raise KubeError(f"{cp.path}.restartPolicy: Always (a sidecar) is not played here: an initContainer "
                                "runs to its end first (put a sidecar in containers)")
            cp.probes = probes.parse(c, cp.path, init=group == "initContainers")
            for j, port in enumerate(c.get("ports") or []):
                proto = str(port.get("protocol") or "TCP").lower()
                if port.get("hostPort"):
                    if proto != "tcp":
                        raise KubeError(f"{cp.path}.ports[{j}].protocol: {proto.upper()}: only TCP ports are "
                                        "published here")
                    plan.publish.append((port.get("hostIP") or "127.0.0.1", int(port["hostPort"]),
                                         int(port["containerPort"]), "tcp"))
            dest.append(cp)
    return plan


# -- the play's files: ConfigMaps, shared emptyDirs ----------------------------------------------------------

# -- running ----------------------------------------------------------------------------------------------------

class ContainerRun:
    """One container of a played pod: its current container here, restarts, readiness."""

    def __init__(self, pod: PodRun, plan: ContainerPlan) -> None:
        self.pod = pod
        self.plan = plan
        self.containers: list[Any] = []  # runtime Containers; the last is the current one
        self.restarts = 0
        self.ready = "readiness" not in plan.probes
        self.probe_state: ProbeState | None = None
        self.settled = threading.Event()
        self.thread: threading.Thread | None = None

    @property
    def current(self) -> Any:
        return self.containers[-1] if self.containers else None

    def start(self) -> None:
        from ..workloads.containers import containers

        assert self.plan.spec is not None
        self.containers.append(containers.start(self.plan.spec))

    def supervise(self) -> None:
        """Probes while it runs; restart by the pod's restartPolicy when it ends."""
        delay = RESTART_DELAY[0]
        try:
            while True:
                c = self.current
                self._watch(c)
                if self.pod.play.stopping.is_set():
                    return
                code = _exit_code(c)
                policy = self.pod.plan.restart
                if policy == "Never" or (policy == "OnFailure" and code == 0):
                    return
                if not self.pod.may_restart():
                    return
                if self.pod.play.stopping.wait(delay):
                    return
                delay = min(delay * 2, RESTART_DELAY[1])
                with self.pod.play.lock:
                    if self.pod.play.stopping.is_set():
                        return
                    _forget(c)
                    try:
                        self.start()
                    except Exception as e:  # noqa: BLE001 - shown by ps
                        self.pod.error = f"{self.plan.name}: restart failed: {e}"
                        return
                    self.restarts += 1
        finally:
            self.settled.set()

    def _watch(self, c: Any) -> None:
        """Until the container ends: its probes on the kubelet's schedule (probes.py); a failed liveness or
        startup probe stops it (the stop signal, SIGKILL after the grace period) and the caller restarts it."""
        if not self.plan.probes:
            _wait_done(c, None)
            return
        st = ProbeState(self.plan.probes, time.monotonic())
        self.probe_state = st
        pod = self.pod
        while True:
            due = st.next_due()
            wait = None if due is None else max(0.01, due - time.monotonic())
            if _wait_done(c, wait):
                self.ready = False
                return
            for reason, message in st.step(time.monotonic(), lambda p: _run_probe(c, p, pod.netns)):
                pod.play.event(pod.plan.name, self.plan.name, reason, message)
            self.ready = st.ready
            if st.kill is not None:
                _stop(c, st.grace if st.grace is not None else pod.plan.grace)
                _wait_done(c, None)
                return


def _run_probe(c: Any, probe: Probe, netns: str | None) -> probes.Result:
    def exec_fn(command: tuple[str, ...], timeout: float) -> tuple[int | None, str]:
        r = c.exec(command, timeout=timeout)
        if r.signal == signal.SIGKILL and r.duration >= timeout:
            return None, r.stdout + r.stderr
        return int(r.exit_code), r.stdout + r.stderr

    try:
        return probes.run(probe, netns=netns, exec_fn=exec_fn)
    except Exception as e:  # noqa: BLE001 - a probe that cannot run fails
        return probes.Result(False, f"{probe.target}: {e}")


def _wait_done(c: Any, timeout: float | None) -> bool:
    from ..workloads.containers import DetachedContainerError

    try:
        c.wait(timeout)
    except DetachedContainerError as e:
        if e.errno == errno.ETIMEDOUT and c.running:
            return False
    except Exception:  # noqa: BLE001 - failed to start: ended all the same
        pass
    return True


def _failure(c: Any) -> str:
    """Why a container ended without an exit code (it could not be started)."""
    try:
        c.wait(0)
    except Exception as e:  # noqa: BLE001 - that is the answer
        return str(e)
    return str(c.status)


def _exit_code(c: Any) -> int | None:
    return c.run.exit_code if c is not None and c.run is not None else None


def _forget(c: Any) -> None:
    from ..workloads.containers import DetachedContainerError, containers

    with contextlib.suppress(DetachedContainerError):
        containers.remove(c.id, force=True)


class PodRun:
    def __init__(self, play: Play, plan: PodPlan) -> None:
        self.play = play
        self.plan = plan
        self.pod: Any = None  # runtime Pod
        self.init_runs: list[Any] = []
        self.containers = [ContainerRun(self, cp) for cp in plan.containers]
        self.phase = "Pending"
        self.error: str | None = None
        self.started = threading.Event()  # its containers run, or it failed
        self.thread: threading.Thread | None = None
        self._netns_fd: int | None = None  # the pod's network namespace, held open (probes connect from it)
        self.job = JobState(plan.job) if plan.job is not None else None

    @property
    def netns(self) -> str | None:
        """The pod's network namespace as a path (an fd of ours, not a pid that could be recycled)."""
        return None if self._netns_fd is None else f"/proc/{os.getpid()}/fd/{self._netns_fd}"

    @property
    def ready(self) -> bool:
        """Running, and every container ready (what a Service routes to)."""
        return self.phase == "Running" and not self.error and all(
            cr.ready and cr.current is not None and cr.current.running for cr in self.containers)

    def close(self) -> None:
        if self._netns_fd is not None:
            os.close(self._netns_fd)
            self._netns_fd = None

    def create(self, network: str | None) -> None:
        """Make the pod (its infra holder). From the caller's thread: a process forked here (the launch
        helper, on first use) has its parent-death signal tied to the thread that forked it."""
        from ..workloads import pods

        try:
            self.pod = pods.create(self.plan.name, network=network, publish=tuple(self.plan.publish),
                                   hostname=self.plan.hostname, share_pid=self.plan.share_pid, userns=self.plan.userns,
                                   aliases=tuple(self.plan.aliases))
        except pods.PodError as e:
            raise KubeError(f"{self.plan.resource}: {e}") from None
        fd = os.open(f"/proc/{self.pod.infra_pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        if os.fstat(fd).st_ino != self.pod.net_inode:
            os.close(fd)
            raise KubeError(f"{self.plan.resource}: the pod's infra process is gone")
        self._netns_fd = fd

    def run(self) -> None:
        """Its initContainers in order, each to a successful end, then its containers (in its own thread:
        an initContainer may wait for another pod); a Job's pod then on until the Job is done."""
        try:
            ok = self._start()
        except Exception as e:  # noqa: BLE001 - reported by play() and ps
            self.phase, self.error, ok = "Failed", str(e), False
        if self.job is None:
            self.started.set()
            self.play.changed()
            return
        try:
            self._run_job(ok)
        finally:
            self.job.done.set()
            self.started.set()
            self.play.changed()

    def _start(self, again: bool = False) -> bool:
        """initContainers, then the containers and their supervisors; False (and `error`) when it failed.
        `again`: a Job's next try of its pod (restartPolicy Never): every container anew."""
        from ..workloads.containers import containers

        for i, cp in enumerate(self.plan.init):
            self.phase = f"Init:{i}/{len(self.plan.init)}"
            delay = RESTART_DELAY[0]
            while True:
                if self.play.stopping.is_set():
                    return False
                assert cp.spec is not None
                c = containers.start(cp.spec)
                self.init_runs.append(c)
                _wait_done(c, None)
                code = _exit_code(c)
                if code == 0:
                    break
                if self.plan.restart == "Never" or self.play.stopping.is_set() or code is None \
                        or not self.may_restart():
                    self.phase = "Init:Error"
                    self.error = f"initContainer {cp.name} " + (f"exited with {code}" if code is not None else
                                                                 f"did not run: {_failure(c)}")
                    return False
                if self.play.stopping.wait(delay):
                    return False
                delay = min(delay * 2, RESTART_DELAY[1])
        with self.play.lock:
            if self.play.stopping.is_set():
                return False
            for cr in self.containers:
                if again and cr.current is not None:
                    _forget(cr.current)
                    cr.restarts += 1
                cr.settled.clear()
                cr.start()
        self.phase = "Running"
        for cr in self.containers:
            cr.thread = threading.Thread(target=cr.supervise, daemon=True,
                                         name=f"kube-{self.plan.name}-{cr.plan.name}")
            cr.thread.start()
        return True

    def may_restart(self) -> bool:
        """A failed container (or initContainer) may be run again: always for a Pod or a Deployment's; for a
        Job's only while its failures stay within backoffLimit (past it the Job fails and the rest stops)."""
        if self.job is None:
            return True
        if self.job.condition is not None:  # done (deadline, backoff): nothing more runs
            return False
        if self.job.failure():
            return True
        self.play.event(self.plan.name, "", "BackoffLimitExceeded", f"job/{self.job.plan.name} has reached the "
                        f"specified backoff limit ({self.job.plan.backoff_limit})")
        threading.Thread(target=self._stop_all, daemon=True).start()  # not from a supervisor: it waits for them
        return False

    def _stop_all(self) -> None:
        for cr in self.containers:
            c = cr.current
            if c is not None and c.running:
                _stop(c, self.plan.grace)

    def _run_job(self, ok: bool) -> None:
        """The Job controller for this pod: Complete when a try ends with every container at 0; on a failed
        try (restartPolicy Never) the pod runs again until backoffLimit; activeDeadlineSeconds ends it all."""
        job = self.job
        assert job is not None
        delay = RESTART_DELAY[0]
        while job.condition is None:
            if ok:
                self.started.set()
                self.play.changed()
                while not all(cr.settled.is_set() for cr in self.containers):
                    if self.play.stopping.wait(0.05):
                        return
                    if job.past_deadline():
                        job.finish("Failed", "DeadlineExceeded")
                        self.play.event(self.plan.name, "", "DeadlineExceeded",
                                        f"job/{job.plan.name} was active longer than specified deadline")
                        self._stop_all()
                        return
                if job.condition is not None:  # a restart passed the backoff limit (OnFailure)
                    return
                if all(_exit_code(cr.current) == 0 for cr in self.containers):
                    job.finish("Complete")
                    self.play.event(self.plan.name, "", "Completed", f"job/{job.plan.name} completed")
                    return
                if self.error:  # a restart could not be made
                    job.finish("Failed", "Error")
                    return
            if self.play.stopping.is_set() or not self.may_restart():
                return
            if self.play.stopping.wait(delay):
                return
            if job.past_deadline():
                job.finish("Failed", "DeadlineExceeded")
                return
            delay = min(delay * 2, RESTART_DELAY[1])
            self.error = None
            try:
                ok = self._start(again=True)
            except Exception as e:  # noqa: BLE001 - shown by ps and the Job's state
                self.phase, self.error, ok = "Failed", str(e), False

    def status(self) -> str:
        if self.error:
            return self.phase if self.phase.startswith("Init") else "Failed"
        if self.phase != "Running":
            return self.phase
        if any(cr.current is not None and cr.current.running for cr in self.containers):
            return "Running"
        codes = [_exit_code(cr.current) for cr in self.containers]
        if not all(cr.settled.is_set() for cr in self.containers):
            return "Running"
        return "Succeeded" if all(c == 0 for c in codes) else "Failed"


@dataclass(frozen=True)
class Event:
    """What happened to a container, as `kubectl describe` / `kubectl get events` list it."""

    time: float
    pod: str
    container: str
    reason: str  # Unhealthy, Killing, ...
    message: str


@dataclass(frozen=True)
class ContainerStatus:
    """One line of `kube ps`."""

    pod: str
    container: str
    name: str  # the container's name here
    status: str  # running, exited (N), init, waiting
    ready: bool | None
    restarts: int
    exit_code: int | None


class Play:
    """What one `kube play` made: pods and their containers, a network, files, volumes."""

    def __init__(self, name: str, plans: list[PodPlan], notes: list[str]) -> None:
        self.name = name
        self.notes = notes
        self.pods = {p.name: PodRun(self, p) for p in plans}
        self.network: str | None = None  # made by this play (removed by down)
        self.volumes: list[str] = []  # made by this play (removed by down --volumes)
        self.files: str | None = None  # the play's directory (ConfigMaps, shared emptyDirs)
        self.stopping = threading.Event()
        self.lock = threading.RLock()
        self._cond = threading.Condition()
        self.created = time.time()
        self.events: list[Event] = []  # probe failures and kills, oldest first (bounded)
        self.services: list[ServiceRun] = []  # the Services with an address (headless ones are names only)

    def endpoints(self, sp: ServicePlan, target: int | str) -> list[tuple[str, int]]:
        """(address, port) of the ready pods `sp` selects, `target` being a port number or a container port's
        name in each pod (a pod without that name is no endpoint), as a Service's Endpoints list them."""
        out = []
        for n in sp.pods:
            pr = self.pods.get(n)
            if pr is None or pr.pod is None or not pr.pod.address or not pr.ready:
                continue
            port = target if isinstance(target, int) else next(
                (v for cp in pr.plan.containers for k, v in probes.named_ports(cp.k8s).items() if k == target), None)
            if port is not None:
                out.append((str(pr.pod.address), port))
        return out

    def job(self, name: str) -> JobState:
        """The state of the Job `name` of this play (`str()`: as `kubectl get job` would sum it up)."""
        for pr in self.pods.values():
            if pr.job is not None and pr.job.plan.name == name:
                return pr.job
        raise KubeError(f"no Job {name!r} in play {self.name}")

    def service(self, name: str) -> ServiceRun:
        for sr in self.services:
            if sr.plan.name == name:
                return sr
        raise KubeError(f"no Service {name!r} with an address in play {self.name} "
                        f"(Services: {', '.join(s.plan.name for s in self.services) or 'none'})")

    def event(self, pod: str, container: str, reason: str, message: str) -> None:
        with self._cond:
            self.events.append(Event(time.time(), pod, container, reason, message))
            del self.events[:-EVENTS_KEPT]

    def changed(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # -- what is up ---------------------------------------------------------------------------------------
    def ps(self) -> list[ContainerStatus]:
        out = []
        for pr in self.pods.values():
            for cp, c in zip(pr.plan.init, pr.init_runs[-len(pr.plan.init):] if pr.init_runs else [], strict=False):
                out.append(ContainerStatus(pr.plan.name, cp.name, c.name or "", _status(c, init=True), None, 0,
                                           _exit_code(c)))
            for cr in pr.containers:
                c = cr.current
                st = _status(c) if c is not None else (pr.phase if pr.phase != "Running" else "waiting")
                out.append(ContainerStatus(pr.plan.name, cr.plan.name, c.name if c is not None else "", st,
                                           cr.ready if c is not None and c.running else None, cr.restarts,
                                           _exit_code(c)))
        return out

    def logs(self, pod: str | None = None) -> str:
        """`pod/container | line` for every container (restarts included), in time order."""
        lines: list[tuple[float, str, str]] = []
        for pr in self.pods.values():
            if pod and pod not in (pr.plan.name, pr.plan.resource):
                continue
            groups = [(cp.name, [c for c in pr.init_runs if c.spec is cp.spec]) for cp in pr.plan.init]
            groups += [(cr.plan.name, cr.containers) for cr in pr.containers]
            for cname, cs in groups:
                for c in cs:
                    for ln in list(c.log):
                        for text in ln.text.splitlines():
                            lines.append((c.started_at + ln.t, f"{pr.plan.name}/{cname}", text))
        lines.sort(key=lambda x: x[0])
        w = max((len(s) for _, s, _ in lines), default=0)
        return "".join(f"{s:<{w}} | {t}\n" for _, s, t in lines)

    def container(self, pod: str, container: str) -> Any:
        """The runtime Container now running (or last run) for `container` of `pod`."""
        pr = self.pods.get(pod)
        if pr is None:
            raise KubeError(f"no pod {pod!r} in play {self.name} (pods: {', '.join(self.pods)})")
        for cr in pr.containers:
            if cr.plan.name == container and cr.current is not None:
                return cr.current
        raise KubeError(f"pod {pod} has no container {container!r} running")

    def wait(self, timeout: float | None = None) -> bool:
        """Until every container has ended for good (no restart to come); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for pr in self.pods.values():
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not pr.started.wait(left):
                return False
            if pr.job is not None:  # a Job's pod may run again: its end is the Job's
                if not pr.job.done.wait(None if deadline is None else max(0.0, deadline - time.monotonic())):
                    return False
            for cr in pr.containers:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if cr.thread is not None and not cr.settled.wait(left):
                    return False
        return True

    def kill(self) -> None:
        """SIGKILL every container of the play now (a second Ctrl-C while `down` waits out grace periods): no
        lock taken, as `down` may hold it; `down` then finishes at once."""
        self.stopping.set()
        for pr in list(self.pods.values()):
            for c in [*pr.init_runs, *(x for cr in pr.containers for x in cr.containers)]:
                with contextlib.suppress(Exception):
                    c.kill()

    # -- down ---------------------------------------------------------------------------------------------------
    def down(self, volumes: bool = False, timeout: float | None = None) -> list[str]:
        """Stop and remove the containers (SIGTERM, SIGKILL after the pod's terminationGracePeriodSeconds, or
        `timeout` seconds), the pods, the play's network and files, and with `volumes` the volumes it made.
        Returns what was removed."""
        from .. import network as net
        from ..runtime.cleanup import settle
        from ..workloads import pods
        from ..workloads.containers import DetachedContainerError, containers

        self.stopping.set()
        self.changed()
        removed: list[str] = []
        with self.lock:
            threads = []
            for pr in self.pods.values():
                for c in [*pr.init_runs, *(x for cr in pr.containers for x in cr.containers)]:
                    if c.running:
                        grace = pr.plan.grace if timeout is None else timeout
                        t = threading.Thread(target=_stop, args=(c, grace), daemon=True)
                        t.start()
                        threads.append(t)
            for t in threads:
                t.join()
        for pr in self.pods.values():
            if pr.thread is not None:
                pr.started.wait(30)
            for cr in pr.containers:
                if cr.thread is not None:
                    cr.thread.join(30)
            for c in [*pr.init_runs, *(x for cr in pr.containers for x in cr.containers)]:
                with contextlib.suppress(DetachedContainerError):
                    containers.remove(c.id, force=True)
            pr.close()
            if pr.pod is not None:
                with contextlib.suppress(pods.PodError):
                    pods.remove(pr.plan.name, force=True)
                removed.append(f"Pod {pr.plan.name}  Removed")
        for sr in self.services:
            sr.stop()
            removed.append(f"Service {sr.plan.name}  Removed")
        self.services.clear()
        settle()
        if self.network is not None:
            with contextlib.suppress(net.NetworkNotFound):
                net.remove_network(self.network, force=True)
                removed.append(f"Network {self.network}  Removed")
            self.network = None
        if self.files is not None:
            shutil.rmtree(self.files, ignore_errors=True)
            self.files = None
        if volumes:
            from ..workloads.volumes import remove_volume

            for v in self.volumes:
                with contextlib.suppress(OSError, ValueError):
                    remove_volume(v)
                    removed.append(f"Volume {v}  Removed")
            self.volumes.clear()
        unrecord(self.name)
        with _lock:
            if _plays.get(self.name) is self:
                del _plays[self.name]
        return removed

    def __repr__(self) -> str:
        return f"<kube play {self.name}: {len(self.pods)} pod(s)>"


def _status(c: Any, init: bool = False) -> str:
    if c.running:
        return "running"
    code = _exit_code(c)
    return f"exited ({code})" if code is not None else c.status


def _stop(c: Any, grace: float) -> None:
    with contextlib.suppress(Exception):
        if grace <= 0:
            c.kill()
            c.wait(timeout=30)
        else:
            c.stop(timeout=grace)


# -- from documents to a plan ------------------------------------------------------------------------------------

class _Planner:
    """Reads every document, checks what can be played, and (make_specs) builds the ContainerSpecs once the
    play's files exist."""

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.docs = docs
        self.notes: list[str] = []
        self.sources = Sources()  # ConfigMaps and Secrets
        self.claims: list[str] = []
        self.services: list[ServicePlan] = []
        self.pods: list[PodPlan] = []
        for d in docs:
            kind = d["kind"]
            if kind not in PLAYED:
                self.notes.append(f"{describe(d)}: a {kind} is not played here (only {', '.join(PLAYED)}): skipped")
                continue
            if d.get("apiVersion") != API_VERSIONS.get(kind, "v1"):
                raise KubeError(f"{describe(d)}: apiVersion: {d.get('apiVersion')!r}: expected "
                                f"{API_VERSIONS.get(kind, 'v1')}")
            lint(d)
            if kind in ("ConfigMap", "Secret"):
                self.sources.add(d)
            elif kind == "PersistentVolumeClaim":
                self.claims.append(d["metadata"]["name"])
            elif kind == "Service":
                self.services.append(services.plan(d, self.notes))
            else:
                self.pods.extend(_pod_plans(d, self.notes))
        if not self.pods:
            raise KubeError("nothing to play: the YAML has no Pod or Deployment")
        names: dict[str, str] = {}
        for p in self.pods:
            if p.name in names:
                raise KubeError(f"{p.resource}: its pod would be named {p.name!r}, as {names[p.name]}'s")
            names[p.name] = p.resource
        taken: dict[str, str] = {}
        for sp in self.services:
            if sp.name in taken:
                raise KubeError(f"{sp.where}: a second Service named {sp.name!r}")
            taken[sp.name] = sp.where
            self._service(sp)

    def _service(self, sp: ServicePlan) -> None:
        chosen = [p for p in self.pods if sp.selector and all(p.labels.get(k) == v for k, v in sp.selector.items())]
        sp.pods = [p.name for p in chosen]
        if not chosen:
            self.notes.append(f"{sp.where}: selects no pod of this YAML: its name reaches nothing here")
        services.check_targets(sp, {p.name: {k: v for cp in p.containers for k, v in probes.named_ports(cp.k8s).items()}
                                    for p in chosen})
        if sp.headless:  # no address of its own: the name goes to every pod it selects
            for p in chosen:
                p.aliases.append(sp.name)

    def needs_network(self) -> bool:
        return len(self.pods) > 1 or bool(self.services) or any(p.publish or p.aliases for p in self.pods)

    # -- volumes and specs --------------------------------------------------------------------------------------
    def volumes_of(self, plan: PodPlan, files: str, made_volumes: list[str]) -> dict[str, tuple[str, Any]]:
        """Pod volume name -> (kind, data): ('tmpfs', size), ('dir', path), ('bind', path), ('volume', name),
        ('configmap', dir)."""
        from ..runtime.spec import VOLUME_NAME_RE
        from ..workloads.volumes import create_volume, list_volumes

        users: dict[str, int] = {}
        for cp in [*plan.init, *plan.containers]:
            for m in cp.k8s.get("volumeMounts") or []:
                users[m.get("name")] = users.get(m.get("name"), 0) + 1
        out: dict[str, tuple[str, Any]] = {}
        for i, v in enumerate(plan.spec.get("volumes") or []):
            vname = v.get("name")
            where = _ctx(plan, "volumes", i)
            if "emptyDir" in v:
                ed = v.get("emptyDir") or {}
                size = quantity.to_bytes(ed["sizeLimit"]) if ed.get("sizeLimit") is not None else None
                if users.get(vname, 0) <= 1 and ed.get("medium") == "Memory":
                    out[vname] = ("tmpfs", size)
                else:
                    d = os.path.join(files, "emptydir", plan.name, vname)
                    os.makedirs(d, 0o755)
                    os.chmod(d, 0o1777)  # an emptyDir is writable by any user of the pod, as the kubelet makes it
                    out[vname] = ("dir", d)
            elif "hostPath" in v:
                hp = v.get("hostPath") or {}
                path, typ = hp.get("path", ""), hp.get("type") or ""
                if path == "tmpfs" and typ in ("", "DirectoryOrCreate"):  # podman 4's export of --tmpfs
                    out[vname] = ("tmpfs", None)
                    continue
                if not os.path.isabs(path):
                    raise KubeError(f"{where}.hostPath.path: {path!r} must be an absolute path")
                if typ == "DirectoryOrCreate":
                    os.makedirs(path, 0o755, exist_ok=True)
                elif typ == "FileOrCreate" and not os.path.exists(path):
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644))
                if not os.path.exists(path):
                    raise KubeError(f"{where}.hostPath.path: {path} does not exist")
                if typ == "Directory" and not os.path.isdir(path):
                    raise KubeError(f"{where}.hostPath: {path} is not a directory")
                if typ == "File" and not os.path.isfile(path):
                    raise KubeError(f"{where}.hostPath: {path} is not a file")
                out[vname] = ("bind", path)
            elif "configMap" in v or "secret" in v:
                kind = "ConfigMap" if "configMap" in v else "Secret"
                items = self.sources.volume_files(kind, v.get("configMap" if kind == "ConfigMap" else "secret") or {},
                                                  where)
                d = os.path.join(files, kind.lower(), plan.name, vname)
                write_tree(d, items, _remapped_root() if plan.userns == "remap" else None)
                out[vname] = ("configmap", d)  # read-only files, mounted alike
            elif "persistentVolumeClaim" in v:
                claim = (v.get("persistentVolumeClaim") or {}).get("claimName", "")
                if not VOLUME_NAME_RE.match(claim or ""):
                    raise KubeError(f"{where}.persistentVolumeClaim.claimName: {claim!r} is not a volume name")
                if claim not in list_volumes():
                    if claim not in self.claims:
                        raise KubeError(f"{where}.persistentVolumeClaim.claimName: no PersistentVolumeClaim {claim!r} "
                                        "in this YAML and no volume of that name here")
                    path = create_volume(claim)
                    made_volumes.append(claim)
                    if plan.userns == "remap":  # writable by the pod's root, as a new volume is by a pod's root
                        os.chown(path, *_remapped_root())
                out[vname] = ("volume", claim)
            else:
                kinds = [k for k in v if k != "name"]
                raise KubeError(f"{where}: a {kinds[0] if kinds else 'volume'} volume is not played here (emptyDir, "
                                "hostPath, configMap, secret and persistentVolumeClaim are)")
        return out

    def make_specs(self, plan: PodPlan, vols: dict[str, tuple[str, Any]]) -> None:
        psc = plan.spec.get("securityContext") or {}
        for cp in [*plan.init, *plan.containers]:
            try:
                cp.spec = self._spec(plan, cp, vols, psc)
            except SpecError as e:
                raise KubeError(f"{cp.path}: {e}") from None

    def _spec(self, plan: PodPlan, cp: ContainerPlan, vols: dict[str, tuple[str, Any]],
              psc: dict[str, Any]) -> ContainerSpec:
        c = cp.k8s
        image = c["image"]
        command = [str(a) for a in c.get("command") or []]
        args = [str(a) for a in c.get("args") or []]
        if image == "host":
            argv, entrypoint = (*command, *args), None
            if not argv:
                raise KubeError(f"{cp.path}.command: missing: image host (this machine's /) has no CMD")
        else:
            argv, entrypoint = tuple(args), (tuple(command) if command else None)
        env = self._env(cp)
        res = c.get("resources") or {}
        limits, requests = res.get("limits") or {}, res.get("requests") or {}
        memory = quantity.to_bytes(limits["memory"]) if "memory" in limits else None
        cpus = quantity.to_cores(limits["cpu"]) if "cpu" in limits else None
        shares = None
        if "cpu" in requests:
            shares = min(262144, max(2, round(quantity.to_cores(requests["cpu"]) * 1024)))
        sc = c.get("securityContext") or {}
        caps = sc.get("capabilities") or {}
        cap_add = {str(x).upper().removeprefix("CAP_") for x in caps.get("add") or []}
        cap_drop = {str(x).upper().removeprefix("CAP_") for x in caps.get("drop") or []}
        seccomp = "default"
        prof = sc.get("seccompProfile") or psc.get("seccompProfile") or {}
        if prof.get("type") == "Unconfined":
            seccomp = "unconfined"
        elif prof.get("type") == "Localhost":
            raise KubeError(f"{cp.path}.securityContext.seccompProfile: Localhost profiles are not played here "
                            "(RuntimeDefault and Unconfined are)")
        if sc.get("privileged"):
            cap_add, seccomp = {"ALL"}, "unconfined"
        no_new_privs = sc.get("allowPrivilegeEscalation") is not True and not sc.get("privileged")
        uid = sc.get("runAsUser", psc.get("runAsUser"))
        gid = sc.get("runAsGroup", psc.get("runAsGroup"))
        user = None if uid is None else (f"{uid}:{gid}" if gid is not None else str(uid))
        mounts: list[Mount] = []
        tmpfs: list[Tmpfs] = []
        for j, m in enumerate(c.get("volumeMounts") or []):
            kind, data = vols.get(str(m.get("name")), ("", None))
            where = f"{cp.path}.volumeMounts[{j}]"
            if not kind:
                raise KubeError(f"{where}.name: no volume {m.get('name')!r} in the pod's volumes")
            target, ro, sub = m["mountPath"], bool(m.get("readOnly")), m.get("subPath")
            if sub is not None and (not isinstance(sub, str) or not safe_relpath(sub)):
                raise KubeError(f"{where}.subPath: {sub!r} must be a relative path without '..'")
            if kind == "tmpfs":
                if sub:
                    raise KubeError(f"{where}.subPath: not played on a memory emptyDir")
                tmpfs.append(Tmpfs(target, data))
            elif kind == "volume":
                if sub:
                    raise KubeError(f"{where}.subPath: not played on a persistentVolumeClaim")
                mounts.append(Mount(str(data), target, ro, "volume"))
            else:
                src = str(data) if not sub else os.path.join(str(data), sub)
                if sub and kind == "configmap" and not os.path.exists(src):
                    raise KubeError(f"{where}.subPath: {sub!r} is not a key of the ConfigMap or Secret")
                if sub and kind == "dir":
                    os.makedirs(src, 0o755, exist_ok=True)  # the kubelet makes a missing subPath directory
                mounts.append(Mount(src, target, ro or kind == "configmap", "bind"))
        return ContainerSpec(
            command=argv, entrypoint=entrypoint, image=image, env=tuple(env.items()),
            workdir=c.get("workingDir"), user=user, memory=memory, cpus=cpus, cpu_shares=shares,
            cap_add=frozenset(cap_add), cap_drop=frozenset(cap_drop), no_new_privileges=no_new_privs,
            seccomp=seccomp, read_only=bool(sc.get("readOnlyRootFilesystem")), mounts=tuple(mounts),
            tmpfs=tuple(tmpfs), pod=plan.name, name=f"{plan.name}-{cp.name}", timeout=plan.deadline, diff=False)

    def _env(self, cp: ContainerPlan) -> dict[str, str]:
        env: dict[str, str] = {}
        for i, ef in enumerate(cp.k8s.get("envFrom") or []):
            env.update(self.sources.env_from(ef, f"{cp.path}.envFrom[{i}]"))
        for i, e in enumerate(cp.k8s.get("env") or []):
            name = e["name"]
            if "valueFrom" in e:
                val = self.sources.env_value(e.get("valueFrom") or {}, f"{cp.path}.env[{i}].valueFrom")
                if val is not None:
                    env[name] = val
            else:
                env[name] = _expand(str(e.get("value", "")), env)
        return env


def _remapped_root() -> tuple[int, int]:
    """The host uid and gid of a remapped pod's root (the first line of its id maps)."""
    from ..runtime.run import id_maps

    uid_map, gid_map, _ = id_maps(ContainerSpec(command=("pod",), userns="remap"))
    return int(uid_map.split()[1]), int(gid_map.split()[1])


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) references to variables defined before; $$ escapes."""
    import re

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), value)


# -- the plays of this process, and their records (for `kube down` from another process) ---------------------

_plays: dict[str, Play] = {}
_lock = threading.Lock()


def _record(p: Play) -> None:
    from ..linux.files import write_json
    from ..linux.proc import token

    d = records_dir()
    os.makedirs(d, 0o755, exist_ok=True)
    write_json(os.path.join(d, f"{p.name}.json"), {"name": p.name, "owner": os.getpid(), "owner_token": token(),
                                                   "pods": list(p.pods), "network": p.network})


def get(name: str) -> Play:
    with _lock:
        p = _plays.get(name)
    if p is None:
        raise KubeError(f"no kube play {name!r} is up here (plays: {', '.join(sorted(_plays)) or 'none'})")
    return p


def list_plays() -> list[Play]:
    with _lock:
        return list(_plays.values())


def _down_all() -> None:
    for p in list_plays():
        with contextlib.suppress(Exception):
            p.down()


def play_name(docs: list[dict[str, Any]]) -> str:
    """A play's default name: its first Pod's or Deployment's."""
    from .generate import dns_label

    for d in docs:
        if d.get("kind") in ("Pod", "Deployment", "Job"):
            return dns_label(str(d["metadata"]["name"]))
    return "kube"


def play(text: str | list[dict[str, Any]], *, name: str | None = None, network: str | None = None,
         on_output: OutputFn | None = None, timeout: float = 120.0, validate: bool = True) -> Play:
    """Run the Pods and Deployments of `text` (YAML, or its documents). Everything is checked first
    (schema of the newest Kubernetes version when kubernetes-validate is installed, quantities, names,
    what can be played); on any error nothing is left behind. Returns once every pod's containers run
    (after its initContainers), or raises KubeError naming the pod that failed."""
    from .. import network as net
    from .. import paths
    from .generate import dns_label

    say = on_output or _quiet
    docs = load_documents(text) if isinstance(text, str) else text
    if validate:
        from .validate import available, check, newest

        if available():
            for d in docs:
                r = check(d, newest())
                if not r.ok:
                    raise KubeError(f"{r.resource}: {r.message}")
    planner = _Planner(docs)
    name = dns_label(name) if name else play_name(docs)
    with _lock:
        if name in _plays:
            raise KubeError(f"kube play {name!r} is up already: down it first (%kube down {name}), or give "
                            "another --name")
    from ..workloads import pods
    from ..workloads.containers import containers

    taken = {c.name for c in containers.list()}
    live = {p.name for p in pods.list_pods()}
    for plan in planner.pods:
        if plan.name in live:
            raise KubeError(f"{plan.resource}: a pod {plan.name!r} exists already (%container pod rm -f {plan.name})")
        for cp in [*plan.init, *plan.containers]:
            if f"{plan.name}-{cp.name}" in taken:
                raise KubeError(f"{cp.path}: the container name {plan.name}-{cp.name!s} is in use")
    _prepare_images(planner, say)
    p = Play(name, planner.pods, planner.notes)
    with _lock:
        if name in _plays:
            raise KubeError(f"kube play {name!r} is up already")
        _plays[name] = p
        from ..runtime import cleanup

        cleanup.at_exit(_down_all, cleanup.WORKLOADS)  # before the networks and the pool (cleanup.py's phases)
    try:
        p.files = os.path.join(paths.run_dir(), "kube", name)
        shutil.rmtree(p.files, ignore_errors=True)
        os.makedirs(p.files, 0o755)
        for plan in planner.pods:
            vols = planner.volumes_of(plan, p.files, p.volumes)
            planner.make_specs(plan, vols)
        netname = network
        if netname is None and planner.needs_network():
            netname = f"kube-{name}"[:63]
            try:
                net.create_network(netname, owner_pid=os.getpid())
            except net.NetworkError as e:
                raise KubeError(f"the play's network {netname}: {e}") from None
            p.network = netname
            say("stderr", f" Network {netname}  Created\n")
        _record(p)
        for sp in planner.services:
            if sp.headless or netname is None:
                continue
            sr = ServiceRun(sp, name, functools.partial(p.endpoints, sp))
            p.services.append(sr)
            try:
                sr.start(netname)
            except (OSError, net.NetworkError) as e:
                raise KubeError(f"{sp.where}: its address on {netname}: {e}") from None
            say("stderr", f" Service {sp.name}  {sr.address}\n")
        for pr in p.pods.values():
            pr.create(netname)
        for pr in p.pods.values():
            pr.thread = threading.Thread(target=pr.run, daemon=True, name=f"kube-{pr.plan.name}")
            pr.thread.start()
        deadline = time.monotonic() + timeout
        for pr in p.pods.values():
            if not pr.started.wait(max(0.0, deadline - time.monotonic())):
                raise KubeError(f"{pr.plan.resource}: not running after {timeout:g}s ({pr.phase})")
            if pr.error:
                raise KubeError(f"{pr.plan.resource}: {pr.error}")
            say("stderr", f" Pod {pr.plan.name}  Started\n")
    except BaseException:
        with contextlib.suppress(Exception):
            p.down(volumes=True, timeout=0)
        raise
    return p


def _prepare_images(planner: _Planner, say: OutputFn) -> None:
    refs = sorted({cp.k8s["image"] for plan in planner.pods for cp in [*plan.init, *plan.containers]} - {"host"})
    if not refs:
        return
    from ..images import ImageError, ImageNotFound, Store, pull

    store = Store()
    for ref in refs:
        try:
            try:
                store.get(ref)
            except ImageNotFound:
                say("stderr", f" Image {ref}  Pulling\n")
                pull(store, ref)
        except (ImageError, OSError) as e:
            raise KubeError(f"image {ref!r}: {e}") from None


def down(name: str, volumes: bool = False, timeout: float | None = None) -> list[str]:
    """Down the play `name`: this process's, or another process's (asked to end with SIGTERM, as Ctrl-C
    ends `pycontainer kube play`), or what a killed process left (pruned)."""
    with _lock:
        p = _plays.get(name)
    if p is not None:
        return p.down(volumes=volumes, timeout=timeout)
    path = os.path.join(records_dir(), f"{name}.json")
    try:
        with open(path) as f:
            rec = json.load(f)
    except (FileNotFoundError, ValueError):
        raise KubeError(f"no kube play {name!r} is up (plays here: {', '.join(sorted(_plays)) or 'none'})") from None
    owner = int(rec.get("owner", 0))
    if owner and owner != os.getpid():
        if timeout is not None:  # the owner reads it when it downs the play (requested_timeout)
            from ..linux.files import write_json

            rec["down_timeout"] = timeout
            with contextlib.suppress(OSError):
                write_json(path, rec)
        with contextlib.suppress(ProcessLookupError):
            os.kill(owner, signal.SIGTERM)
        end = time.monotonic() + (timeout if timeout is not None else 30.0) + 30.0
        while os.path.exists(path) and time.monotonic() < end and _alive(owner):
            time.sleep(0.05)
    prune_records()
    return [f"Pod {n}  Removed" for n in rec.get("pods", [])]


def requested_timeout(name: str) -> float | None:
    """The -t another process's `kube down` asked for, if any."""
    try:
        with open(os.path.join(records_dir(), f"{name}.json")) as f:
            t = json.load(f).get("down_timeout")
    except (OSError, ValueError):
        return None
    return float(t) if isinstance(t, int | float) else None


def _alive(pid: int) -> bool:
    from ..linux.proc import alive

    return alive(pid)


__all__ = ["ContainerStatus", "Play", "down", "get", "list_plays", "play", "play_name", "prune_records",
           "requested_timeout"]
