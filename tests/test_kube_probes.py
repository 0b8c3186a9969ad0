"""Probes as the kubelet runs them (kube/probes.py): the schedule and thresholds on a fake clock, and for
real in played pods — httpGet (named port, headers, a server that listens on the pod's loopback only),
tcpSocket, exec; startup gating liveness; a failed liveness or startup probe restarting its container."""

from __future__ import annotations

import os
import textwrap

import pytest
from helpers import host_clean, wait_for  # noqa: F401

from pycontainer_magics.kube import play as K
from pycontainer_magics.kube.errors import KubeError
from pycontainer_magics.kube.probes import Probe, ProbeState, Result, parse

# -- the kubelet's bookkeeping, on a fake clock -------------------------------------------------------------


def _probe(kind: str, **kw: object) -> Probe:
    return Probe(kind=kind, handler="exec", where=f"{kind}Probe", command=("x",), **kw)  # type: ignore[arg-type]


def _drive(state: ProbeState, answers: dict[str, list[bool]], until: float) -> list[tuple[float, str, str]]:
    """Step the state at every due time until `until`; each probe answers from its list (then its last)."""
    seen: list[tuple[float, str, str]] = []
    while True:
        due = state.next_due()
        if due is None or due > until:
            return seen

        def run(p: Probe, at: float = due) -> Result:
            a = answers[p.kind]
            ok = a.pop(0) if len(a) > 1 else a[0]
            seen.append((at, p.kind, "ok" if ok else "fail"))
            return Result(ok, "" if ok else "nope")

        for reason, _ in state.step(due, run):
            seen.append((due, "event", reason))


def test_readiness_needs_success_threshold_and_failure_threshold():
    st = ProbeState({"readiness": _probe("readiness", delay=5, period=2, successes=2, failures=3)}, 100.0)
    assert not st.ready and st.next_due() == 105.0  # not ready before its first probe, which waits for the delay
    _drive(st, {"readiness": [True]}, 105.0)
    assert not st.ready  # one success of two
    _drive(st, {"readiness": [True]}, 107.0)
    assert st.ready
    _drive(st, {"readiness": [False, False]}, 111.0)
    assert st.ready  # two failures of three
    _drive(st, {"readiness": [False]}, 113.0)
    assert not st.ready and st.kill is None  # unready, never killed


def test_liveness_kills_after_failure_threshold_in_a_row():
    st = ProbeState({"liveness": _probe("liveness", period=1, failures=3, grace=4)}, 0.0)
    seen = _drive(st, {"liveness": [False, False, True, False, False, False]}, 100.0)
    assert [s[2] for s in seen if s[1] == "liveness"] == ["fail", "fail", "ok", "fail", "fail", "fail"]
    assert st.kill == "failed liveness probe" and st.grace == 4
    assert seen[-1] == (5.0, "event", "Killing") and st.next_due() is None  # nothing runs after the kill


def test_startup_gates_the_others_then_they_start_on_their_own_delay():
    st = ProbeState({"startup": _probe("startup", period=1, failures=10),
                     "liveness": _probe("liveness", delay=3, period=1, failures=1),
                     "readiness": _probe("readiness", period=1)}, 0.0)
    seen = _drive(st, {"startup": [False], "liveness": [True], "readiness": [True]}, 4.5)
    assert {s[1] for s in seen} == {"startup", "event"}  # liveness and readiness wait (failing startup: Unhealthy)
    assert not st.started and not st.ready
    seen = _drive(st, {"startup": [True], "liveness": [True], "readiness": [True]}, 5.0)
    assert st.started and st.ready
    assert (5.0, "liveness", "ok") in seen and (5.0, "readiness", "ok") in seen  # their delay had passed
    _drive(st, {"liveness": [False], "readiness": [True]}, 6.0)
    assert st.kill == "failed liveness probe" and not st.ready


def test_a_failing_startup_probe_kills():
    st = ProbeState({"startup": _probe("startup", period=2, failures=2)}, 0.0)
    _drive(st, {"startup": [False]}, 10.0)
    assert st.kill == "failed startup probe" and not st.started


@pytest.mark.parametrize(("probe", "words"), [
    ({"httpGet": {"port": "web"}}, ["readinessProbe.httpGet.port: 'web' is not the name of one of the container's "
                                    "ports (named ports: http (80))"]),
    ({"tcpSocket": {"port": 70000}}, ["readinessProbe.tcpSocket.port: 70000: a port is 1-65535"]),
    ({"grpc": {"port": 80}}, ["readinessProbe.grpc: a gRPC probe is not played here"]),
    ({"exec": {"command": ["x"]}, "periodSeconds": 0}, ["readinessProbe.periodSeconds: 0: a whole number, at least 1"]),
    ({"httpGet": {"port": 80, "host": "web"}}, ["readinessProbe.httpGet.host: 'web': only an address"]),
    ({"httpGet": {"port": 80, "httpHeaders": [{"name": "X Y", "value": "1"}]}},
     ["readinessProbe.httpGet.httpHeaders[0]: a header is a name"]),
])
def test_bad_probes_are_one_line_with_the_field(probe, words):
    c = {"name": "c", "image": "host", "ports": [{"name": "http", "containerPort": 80}], "readinessProbe": probe}
    with pytest.raises(KubeError) as e:
        parse(c, "pod/p: spec.containers[0]")
    for w in words:
        assert w in str(e.value)


def test_liveness_success_threshold_must_be_one():
    c = {"name": "c", "image": "host", "livenessProbe": {"tcpSocket": {"port": 1}, "successThreshold": 2}}
    with pytest.raises(KubeError, match=r"livenessProbe.successThreshold: 2: must be 1 for a liveness probe"):
        parse(c, "pod/p: spec.containers[0]")


def test_parse_reads_the_kubelet_defaults_and_named_ports():
    c = {"name": "c", "image": "host", "ports": [{"name": "health", "containerPort": 8081}],
         "readinessProbe": {"httpGet": {"path": "/healthz", "port": "health",
                                        "httpHeaders": [{"name": "X-Probe", "value": "kube"}]}},
         "livenessProbe": {"tcpSocket": {"port": 8081}, "initialDelaySeconds": 2, "terminationGracePeriodSeconds": 3}}
    p = parse(c, "w")
    r, lv = p["readiness"], p["liveness"]
    assert (r.port, r.path, r.headers, r.period, r.timeout, r.failures, r.successes, r.delay) == \
        (8081, "/healthz", (("X-Probe", "kube"),), 10.0, 1.0, 3, 1, 0.0)
    assert r.target == "http-get http://127.0.0.1:8081/healthz"
    assert (lv.handler, lv.port, lv.delay, lv.grace) == ("tcpSocket", 8081, 2.0, 3.0)


# -- for real, in played pods ----------------------------------------------------------------------------------

root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def _tag(s: str) -> str:
    return f"k{os.getpid() % 100000}{s}"


# A server on the pod's loopback only: /healthz answers 200 when the X-Probe header says `kube` and /tmp/ready
# exists, 503 otherwise; it prints each request's User-Agent.
SERVER = textwrap.dedent("""
    import http.server, os, sys
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            ok = self.path == "/healthz" and self.headers.get("X-Probe") == "kube" and os.path.exists("/tmp/ready")
            print(self.path, self.headers.get("User-Agent"), 200 if ok else 503, flush=True)
            self.send_response(200 if ok else 503)
            self.end_headers()
        def log_message(self, *a):
            pass
    http.server.HTTPServer(("127.0.0.1", 8081), H).serve_forever()
""")


@root
@pytest.mark.root
@pytest.mark.usefixtures("host_clean")
def test_http_readiness_probe_on_a_named_port_with_headers_from_the_pods_loopback():
    name = _tag("http")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": [{
        "name": "web", "image": "host", "command": ["python3", "-c", SERVER],
        "ports": [{"name": "health", "containerPort": 8081}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "health",
                                       "httpHeaders": [{"name": "X-Probe", "value": "kube"}]},
                           "periodSeconds": 1, "failureThreshold": 1}}]}}
    p = K.play([pod])
    try:
        web = p.container(name, "web")
        # probed, and answered 503 (the server listens on 127.0.0.1 only: the probe came from inside the pod)
        assert wait_for(lambda: any("statuscode: 503" in e.message for e in p.events), 30), (p.events, web.logs())
        assert [s.ready for s in p.ps()] == [False]
        assert wait_for(lambda: "/healthz kube-probe/1.30 503" in web.logs(), 30), web.logs()  # relayed a bit later
        assert web.exec(["touch", "/tmp/ready"]).exit_code == 0
        assert wait_for(lambda: [s.ready for s in p.ps()] == [True], 30), (p.events, web.logs())
        assert p.pods[name].ready
        assert web.exec(["rm", "/tmp/ready"]).exit_code == 0
        assert wait_for(lambda: [s.ready for s in p.ps()] == [False], 30)  # unready again; never restarted
        assert [s.restarts for s in p.ps()] == [0]
        assert "Readiness probe failed: HTTP probe failed with statuscode: 503" in \
            [e.message for e in p.events if e.reason == "Unhealthy"]
    finally:
        p.down(timeout=0)


@root
@pytest.mark.root
@pytest.mark.usefixtures("host_clean")
def test_tcp_liveness_and_startup_probes_restart_their_containers():
    name = _tag("tcp")
    listen_then_stop = ("import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 9000)); s.listen(); "
                        "print('listening', flush=True); time.sleep(2); s.close(); print('closed', flush=True); "
                        "time.sleep(60)")
    text = textwrap.dedent(f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
          terminationGracePeriodSeconds: 1
          containers:
          - name: tcp
            image: host
            command: ["python3", "-c", "{listen_then_stop}"]
            livenessProbe: {{tcpSocket: {{port: 9000}}, periodSeconds: 1, failureThreshold: 1,
                            initialDelaySeconds: 1}}
          - name: slow
            image: host
            command: ["sleep", "60"]
            startupProbe: {{exec: {{command: ["test", "-e", "/tmp/up"]}}, periodSeconds: 1, failureThreshold: 60}}
            livenessProbe: {{exec: {{command: ["false"]}}, periodSeconds: 1, failureThreshold: 1}}
          - name: never
            image: host
            command: ["sleep", "60"]
            startupProbe: {{tcpSocket: {{port: 9001}}, periodSeconds: 1, failureThreshold: 2}}
    """)
    p = K.play(text)

    def restarts(c: str) -> int:
        return {s.container: s.restarts for s in p.ps()}[c]

    try:
        # the listener closed: the tcpSocket probe is refused, the container stopped and started again
        assert wait_for(lambda: restarts("tcp") >= 1, 20), p.events
        assert any(e.container == "tcp" and e.message.startswith("Liveness probe failed: tcp-socket 127.0.0.1:9000:")
                   for e in p.events), p.events
        assert any(e.container == "tcp" and e.reason == "Killing" and "failed liveness probe" in e.message
                   for e in p.events)
        # a startup probe that never passes kills too
        assert wait_for(lambda: restarts("never") >= 1, 20), p.events
        # while its startup probe fails, `slow`'s failing liveness probe does not run
        assert restarts("slow") == 0
        assert not any(e.container == "slow" and e.message.startswith("Liveness") for e in p.events)
        assert p.container(name, "slow").exec(["touch", "/tmp/up"]).exit_code == 0
        assert wait_for(lambda: restarts("slow") >= 1, 20), p.events  # started: now liveness runs, and kills
    finally:
        p.down(timeout=0)
