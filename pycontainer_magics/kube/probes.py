"""Container probes as the kubelet runs them: startup, readiness and liveness probes with an exec, httpGet or
tcpSocket handler, on the kubelet's schedule.

    probes = parse(container_yaml, "pod/web: spec.containers[0]", ports)   # {"readiness": Probe, ...}
    state = ProbeState(probes, time.monotonic())
    events = state.step(now, lambda p: run(p, netns=..., exec_fn=...))   # run what is due
    state.ready, state.kill                                                 # what the kubelet would do

Where the kubelet probes the pod's IP from the node, here the probe connects to the pod's own loopback from
inside the pod's network namespace (a socket made there, network.socket_in): a server listening on
127.0.0.1 only answers, as it does to the kubelet when it listens on the pod's address. What the kubelet
does with the results, kept here:
  - a startup probe runs first; until it succeeds the other two do not run; `failureThreshold` failures in a
    row kill the container (restarted by the pod's restartPolicy);
  - readiness: not ready until `successThreshold` successes in a row, unready again after `failureThreshold`
    failures in a row; a pod is ready when all its containers are (its Services route only to ready pods);
  - liveness: `failureThreshold` failures in a row kill the container (SIGTERM, SIGKILL after the probe's or
    the pod's terminationGracePeriodSeconds), and the pod's restartPolicy decides whether it comes back;
  - each probe first runs `initialDelaySeconds` after the container started, then every `periodSeconds`; a
    probe that takes longer than `timeoutSeconds` fails.
HTTP: GET with `User-Agent: kube-probe/1.30` and `Accept: */*` (httpHeaders add or replace), success for a
status from 200 to 399 (a redirect is not followed: the kubelet takes one to another host as success, too);
HTTPS without certificate checks, as the kubelet. An exec probe runs its command in the container.
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import KubeError

KINDS = (("startup", "startupProbe"), ("readiness", "readinessProbe"), ("liveness", "livenessProbe"))
HANDLERS = ("exec", "httpGet", "tcpSocket")
USER_AGENT = "kube-probe/1.30"
BODY_LIMIT = 10 * 1024  # the kubelet reads at most this much of the answer
PORT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$")  # IANA_SVC_NAME


@dataclass(frozen=True)
class Probe:
    kind: str  # startup | readiness | liveness
    handler: str  # exec | httpGet | tcpSocket
    where: str  # the probe's field path (messages)
    command: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = 0
    path: str = "/"
    scheme: str = "HTTP"
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    successes: int = 1
    failures: int = 3
    grace: float | None = None  # the probe's own terminationGracePeriodSeconds (startup, liveness)

    @property
    def target(self) -> str:
        """What it checks, as `kubectl describe` words it."""
        if self.handler == "exec":
            return "exec [" + " ".join(self.command) + "]"
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.handler == "tcpSocket":
            return f"tcp-socket {host}:{self.port}"
        return f"http-get {self.scheme.lower()}://{host}:{self.port}{self.path}"


@dataclass(frozen=True)
class Result:
    ok: bool
    message: str = ""  # why it failed, in the kubelet's words


# -- reading the YAML --------------------------------------------------------------------------------------

def _number(p: dict[str, Any], key: str, where: str, default: int, least: int) -> int:
    v = p.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or v < least:
        raise KubeError(f"{where}.{key}: {v!r}: a whole number, at least {least}")
    return v


def port_of(value: Any, where: str, ports: dict[str, int]) -> int:
    """A probe's or Service's port: a number, or the name of one of the container's ports."""
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 < value < 65536:
            return value
        raise KubeError(f"{where}: {value}: a port is 1-65535")
    if isinstance(value, str) and value.isdigit() and 0 < int(value) < 65536:
        return int(value)
    if isinstance(value, str) and PORT_NAME.match(value):
        if value in ports:
            return ports[value]
        known = ", ".join(f"{k} ({v})" for k, v in sorted(ports.items())) or "none"
        raise KubeError(f"{where}: {value!r} is not the name of one of the container's ports (named ports: {known})")
    raise KubeError(f"{where}: {value!r}: a port number (1-65535) or the name of one of the container's ports")


def named_ports(container: dict[str, Any]) -> dict[str, int]:
    return {str(p["name"]): int(p["containerPort"]) for p in container.get("ports") or []
            if isinstance(p, dict) and p.get("name") and isinstance(p.get("containerPort"), int)}


def parse(container: dict[str, Any], where: str, init: bool = False) -> dict[str, Probe]:
    """The container's probes by kind. Bad input raises KubeError naming the field."""
    out: dict[str, Probe] = {}
    ports = named_ports(container)
    for kind, key in KINDS:
        p = container.get(key)
        if p is None:
            continue
        at = f"{where}.{key}"
        if init:
            raise KubeError(f"{at}: an initContainer has no probes (it runs to its end before the others start)")
        if not isinstance(p, dict):
            raise KubeError(f"{at}: a probe is a mapping with one of {', '.join(HANDLERS)}")
        handlers = [h for h in (*HANDLERS, "grpc") if h in p]
        if len(handlers) != 1:
            raise KubeError(f"{at}: one handler, of {', '.join(HANDLERS)} (found {', '.join(handlers) or 'none'})")
        h = handlers[0]
        if h == "grpc":
            raise KubeError(f"{at}.grpc: a gRPC probe is not played here (exec, httpGet and tcpSocket are)")
        successes = _number(p, "successThreshold", at, 1, 1)
        if kind != "readiness" and successes != 1:
            raise KubeError(f"{at}.successThreshold: {successes}: must be 1 for a {kind} probe")
        grace = p.get("terminationGracePeriodSeconds")
        if grace is not None:
            if kind == "readiness":
                raise KubeError(f"{at}.terminationGracePeriodSeconds: a readiness probe kills nothing")
            grace = _number(p, "terminationGracePeriodSeconds", at, 0, 1)
        common = dict(kind=kind, handler=h, where=at, delay=float(_number(p, "initialDelaySeconds", at, 0, 0)),
                      period=float(_number(p, "periodSeconds", at, 10, 1)),
                      timeout=float(_number(p, "timeoutSeconds", at, 1, 1)), successes=successes,
                      failures=_number(p, "failureThreshold", at, 3, 1),
                      grace=None if grace is None else float(grace))
        body = p.get(h)
        if not isinstance(body, dict):
            raise KubeError(f"{at}.{h}: a mapping")
        if h == "exec":
            cmd = body.get("command")
            if not isinstance(cmd, list) or not cmd:
                raise KubeError(f"{at}.exec.command: missing: the command to run in the container")
            out[kind] = Probe(command=tuple(str(a) for a in cmd), **common)  # type: ignore[arg-type]
            continue
        if "port" not in body:
            raise KubeError(f"{at}.{h}.port: missing: a number or the name of one of the container's ports")
        port = port_of(body["port"], f"{at}.{h}.port", ports)
        host = str(body.get("host") or "127.0.0.1")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise KubeError(f"{at}.{h}.host: {host!r}: only an address is probed here (leave it out: the pod's "
                            "own address)") from None
        if h == "tcpSocket":
            out[kind] = Probe(host=host, port=port, **common)  # type: ignore[arg-type]
            continue
        scheme = str(body.get("scheme") or "HTTP")
        if scheme not in ("HTTP", "HTTPS"):
            raise KubeError(f"{at}.httpGet.scheme: {scheme!r}: HTTP or HTTPS")
        path = str(body.get("path") or "/")
        if not path.startswith("/") or any(c in path for c in "\r\n "):
            raise KubeError(f"{at}.httpGet.path: {path!r}: an absolute path (starting with '/', no spaces)")
        headers = []
        for i, hd in enumerate(body.get("httpHeaders") or []):
            name, value = (hd or {}).get("name"), (hd or {}).get("value")
            if not isinstance(name, str) or not re.match(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", name) \
                    or not isinstance(value, str) or "\n" in value or "\r" in value:
                raise KubeError(f"{at}.httpGet.httpHeaders[{i}]: a header is a name (token characters) and a value "
                                "on one line")
            headers.append((name, value))
        out[kind] = Probe(host=host, port=port, path=path, scheme=scheme, headers=tuple(headers),
                          **common)  # type: ignore[arg-type]
    return out


# -- running one probe -------------------------------------------------------------------------------------

ExecFn = Callable[[tuple[str, ...], float], tuple[int | None, str]]  # (command, timeout) -> (exit code, output)


def run(probe: Probe, *, netns: str | None, exec_fn: ExecFn | None = None) -> Result:
    """Run one probe now. `netns`: the pod's network namespace (an nsfs path) for httpGet and tcpSocket;
    `exec_fn`: runs an exec probe's command in the container."""
    try:
        if probe.handler == "exec":
            assert exec_fn is not None
            code, output = exec_fn(probe.command, probe.timeout)
            if code == 0:
                return Result(True)
            tail = output.strip().splitlines()[-1:] if output else []
            how = "timed out" if code is None else f"exited with {code}"
            return Result(False, f"command {' '.join(probe.command)!r} {how}" + (f": {tail[0]}" if tail else ""))
        sock = _connect(probe, netns)
        with sock:
            if probe.handler == "tcpSocket":
                return Result(True)
            return _http(probe, sock)
    except TimeoutError:
        return Result(False, f"{probe.target}: timeout after {probe.timeout:g}s")
    except (OSError, http.client.HTTPException, ssl.SSLError) as e:
        why = getattr(e, "strerror", None) or str(e) or type(e).__name__
        return Result(False, f"{probe.target}: {why}")


def _connect(probe: Probe, netns: str | None) -> socket.socket:
    family = socket.AF_INET6 if ":" in probe.host else socket.AF_INET
    if netns is None:
        sock = socket.socket(family, socket.SOCK_STREAM)
    else:
        from ..network import socket_in

        sock = socket_in(netns, family, socket.SOCK_STREAM)
    try:
        sock.settimeout(probe.timeout)
        sock.connect((probe.host, probe.port))
    except BaseException:
        sock.close()
        raise
    return sock


def _http(probe: Probe, sock: socket.socket) -> Result:
    host = f"[{probe.host}]" if ":" in probe.host else probe.host
    conn = http.client.HTTPConnection(probe.host, probe.port, timeout=probe.timeout)
    if probe.scheme == "HTTPS":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the kubelet does not check a probe's certificate either
        conn.sock = ctx.wrap_socket(sock, server_hostname=None)
    else:
        conn.sock = sock
    try:
        headers = {"Host": f"{host}:{probe.port}", "User-Agent": USER_AGENT, "Accept": "*/*"}
        given = {k.lower() for k, _ in probe.headers}
        conn.putrequest("GET", probe.path, skip_host=True, skip_accept_encoding=True)
        for k, v in headers.items():
            if k.lower() not in given:
                conn.putheader(k, v)
        for k, v in probe.headers:
            conn.putheader(k, v)
        conn.endheaders()
        resp = conn.getresponse()
        resp.read(BODY_LIMIT)
        if 200 <= resp.status < 400:
            return Result(True)
        return Result(False, f"HTTP probe failed with statuscode: {resp.status}")
    finally:
        conn.close()


# -- what the kubelet does with the results ----------------------------------------------------------------

@dataclass
class _Track:
    probe: Probe
    next_at: float
    ok_run: int = 0
    fail_run: int = 0


@dataclass
class ProbeState:
    """The probes of one container (one run of it: a restarted container starts a new state)."""

    probes: dict[str, Probe]
    started_at: float
    started: bool = field(init=False)  # the startup probe has succeeded (or there is none)
    ready: bool = field(init=False)
    kill: str | None = field(init=False, default=None)  # why the kubelet would kill it now
    grace: float | None = field(init=False, default=None)  # the kill's grace period, when the probe sets one
    _tracks: dict[str, _Track] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.started = "startup" not in self.probes
        self.ready = "readiness" not in self.probes
        for kind, p in self.probes.items():
            self._tracks[kind] = _Track(p, self.started_at + p.delay)

    def _active(self) -> list[_Track]:
        if self.kill is not None:
            return []
        if not self.started:
            return [self._tracks["startup"]]
        return [t for k, t in self._tracks.items() if k != "startup"]

    def next_due(self) -> float | None:
        """When the next probe is due (monotonic time), None when none will run."""
        return min((t.next_at for t in self._active()), default=None)

    def step(self, now: float, run_probe: Callable[[Probe], Result]) -> list[tuple[str, str]]:
        """Run the probes due at `now`; returns events (reason, message), as `kubectl describe` lists them."""
        events: list[tuple[str, str]] = []
        for t in self._active():
            if now < t.next_at or self.kill is not None:
                continue
            t.next_at = now + t.probe.period
            r = run_probe(t.probe)
            if r.ok:
                t.ok_run, t.fail_run = t.ok_run + 1, 0
            else:
                t.ok_run, t.fail_run = 0, t.fail_run + 1
                events.append(("Unhealthy", f"{t.probe.kind.capitalize()} probe failed: {r.message}"))
            kind = t.probe.kind
            if kind == "startup":
                if r.ok:
                    self.started = True
                    for k, other in self._tracks.items():  # their initial delay counts from the container's start
                        if k != "startup":
                            other.next_at = max(now, self.started_at + other.probe.delay)
                elif t.fail_run >= t.probe.failures:
                    self._kill("failed startup probe", t.probe)
            elif kind == "readiness":
                if r.ok and t.ok_run >= t.probe.successes:
                    self.ready = True
                elif not r.ok and t.fail_run >= t.probe.failures:
                    self.ready = False
            elif not r.ok and t.fail_run >= t.probe.failures:
                self._kill("failed liveness probe", t.probe)
        if self.kill is not None:
            events.append(("Killing", f"Container {self.kill}, will be restarted (by the restartPolicy)"))
        return events

    def _kill(self, why: str, probe: Probe) -> None:
        self.kill, self.grace, self.ready = why, probe.grace, False


__all__ = ["KINDS", "Probe", "ProbeState", "Result", "named_ports", "parse", "port_of", "run"]
