"""`kube play` here: a compose project exported as Kubernetes YAML and played back behaves as the compose
project did (names resolve, the healthy dependency waits, limits in force, the published port answers);
a pod's containers share localhost, IPC and the host name; ConfigMaps, emptyDirs and probes work; bad
YAML is one line with the field path and leaves nothing behind; `down` removes everything."""

from __future__ import annotations

import os
import textwrap
import time
import urllib.request

import pytest
from helpers import host_clean, wait_for  # noqa: F401

from pycontainer_magics import network as net
from pycontainer_magics.kube import play as K
from pycontainer_magics.kube.errors import KubeError
from pycontainer_magics.kube.generate import from_compose
from pycontainer_magics.workloads import pods
from pycontainer_magics.workloads.compose.model import load as load_compose

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root"), pytest.mark.root, pytest.mark.network,
              pytest.mark.usefixtures("host_clean")]


def _tag(s: str) -> str:
    return f"k{os.getpid() % 100000}{s}"


def _nothing_left(play_name: str, pod_names: list[str]) -> None:
    assert not [p.name for p in pods.list_pods() if p.name in pod_names]
    assert f"kube-{play_name}" not in [n.name for n in net.list_networks()]
    assert K.list_plays() == []
    from pycontainer_magics import paths
    assert not os.path.exists(os.path.join(paths.run_dir(), "kube", play_name))
    assert not os.path.exists(os.path.join(paths.run_dir(), "kube", f"{play_name}.json"))


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SHOP = """
services:
  web:
    image: host
    command: ["sh", "-c", "echo hello from web > /www/index.html; exec busybox httpd -f -p 80 -h /www"]
    volumes: [www:/www]
    ports: ["{port}:80"]
    healthcheck: {{test: ["CMD", "busybox", "wget", "-q", "-O-", "http://127.0.0.1/"], interval: 200ms}}
    mem_limit: 64m
  job:
    image: host
    command:
    - sh
    - -c
    - >-
      busybox wget -q -O - http://web/ &&
      cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max
    depends_on: {{web: {{condition: service_healthy}}}}
    mem_limit: 32m
volumes: {{www: {{}}}}
"""


def test_compose_to_yaml_to_play_behaves_as_compose(tmp_path):
    name, port = _tag("shop"), _free_port()
    cf = load_compose(SHOP.format(port=port), project=name, workdir=str(tmp_path))
    yaml_text = from_compose(cf).yaml()
    p = K.play(yaml_text, name=name)
    try:
        assert set(p.pods) == {"web-pod", "job"}
        job = p.pods["job"]
        assert wait_for(lambda: job.status() == "Succeeded", 20), (job.status(), p.logs())
        out = p.logs("job")
        # the name `web` resolved (its Service), web was healthy first (the initContainer ran its check), and
        # the job ran under its own memory limit
        assert "job/job | hello from web" in out
        assert f"job/job | {32 * 2**20}" in out
        assert [s.status for s in p.ps() if s.container == "wait-for-web"] == ["exited (0)"]
        web = p.container("web-pod", "web")
        assert web.stats()["memory_limit"] == 64 * 2**20
        assert wait_for(lambda: [s.ready for s in p.ps() if s.container == "web"] == [True], 30)
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
        assert body == b"hello from web\n"  # the compose port, published from the pod
    finally:
        removed = p.down(volumes=True, timeout=0)
    assert f"Network kube-{name}  Removed" in removed
    _nothing_left(name, ["web-pod", "job"])


POD = """
apiVersion: v1
kind: ConfigMap
metadata: {{name: {name}-conf}}
data:
  greeting: hello
  app.conf: |
    port=8080
---
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  restartPolicy: Never
  volumes:
  - {{name: shared, emptyDir: {{}}}}
  - {{name: conf, configMap: {{name: {name}-conf}}}}
  - {{name: scratch, emptyDir: {{medium: Memory, sizeLimit: 1Mi}}}}
  containers:
  - name: srv
    image: host
    command: ["sh", "-c", "echo served > /shared/index.html; exec busybox httpd -f -p 8080 -h /shared"]
    resources: {{limits: {{memory: 48Mi, cpu: 500m}}}}
    volumeMounts: [{{name: shared, mountPath: /shared}}]
  - name: cli
    image: host
    command: ["sh", "-c"]
    args:
    - >-
      until busybox wget -q -O - http://localhost:8080/ 2>/dev/null; do sleep 0.1; done; hostname; echo $GREETING $WHO;
      cat /etc/app/app.conf; df -k /scratch | tail -1; cat /shared/index.html
    env:
    - {{name: WHO, value: "from $(GREETING)"}}
    - name: GREETING
      valueFrom: {{configMapKeyRef: {{name: {name}-conf, key: greeting}}}}
    volumeMounts:
    - {{name: conf, mountPath: /etc/app/app.conf, subPath: app.conf}}
    - {{name: shared, mountPath: /shared, readOnly: true}}
    - {{name: scratch, mountPath: /scratch}}
"""


def test_a_pod_shares_localhost_and_hostname_with_configmaps_and_emptydirs():
    name = _tag("pod")
    p = K.play(POD.format(name=name))
    try:
        assert p.network is None  # one pod, no Service, no hostPort: only lo, as podman's --network none
        cli = p.container(name, "cli")
        cli.wait(20)
        out = cli.logs()
        assert "served" in out.splitlines()[0]  # over the pod's localhost
        assert name in out.splitlines()  # the pod's name is its containers' host name
        assert "hello" in out and "from $(GREETING)" in out  # $(VAR) expands only variables defined before
        assert "port=8080" in out  # the ConfigMap's key, as a file
        assert " 1024 " in out  # the memory emptyDir: a tmpfs of its sizeLimit
        srv = p.container(name, "srv")
        assert srv.stats()["memory_limit"] == 48 * 2**20
        assert srv.spec.cpus == 0.5
    finally:
        p.down(timeout=0)
    _nothing_left(name, [name])


def test_restart_policy_and_liveness_probe():
    name = _tag("rs")
    text = textwrap.dedent(f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
          restartPolicy: OnFailure
          containers:
          - name: flaky
            image: host
            command: ["sh", "-c", "test -e /tmp/ok && sleep 30; touch /tmp/ok; exit 1"]
          - name: sick
            image: host
            command: ["sleep", "30"]
            livenessProbe: {{exec: {{command: ["false"]}}, periodSeconds: 1, failureThreshold: 1,
                            terminationGracePeriodSeconds: 1}}
    """)
    p = K.play(text)
    try:
        rows = {s.container: s for s in p.ps()}
        assert rows["flaky"].status in ("running", "exited (1)")
        assert wait_for(lambda: {s.container: s.restarts for s in p.ps()}["flaky"] >= 1, 30)  # exit 1: again
        assert wait_for(lambda: {s.container: s.restarts for s in p.ps()}["sick"] >= 1, 30)  # killed, restarted
    finally:
        p.down(timeout=0)
    _nothing_left(name, [name])


BAD = """
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  containers:
  - {name: a, image: host, command: [sleep, "9"], resources: {limits: {memory: 64Mi}}}
  - {name: b, image: host, command: [sleep, "9"]}
"""


@pytest.mark.parametrize(("change", "words"), [
    (("kind: Pod", "kind: Pood"), ["pood/", "kind: 'Pood'", "not a Kubernetes resource"]),
    (("{name: b, image: host,", "{name: b,"), ["spec.containers[1].image: missing"]),
    (("memory: 64Mi", "memory: 12QB"), ["spec.containers[0].resources.limits.memory", "'12QB'"]),
    (("{name: b,", "{name: a,"), ["spec.containers[1].name", "'a' is also the name of spec.containers[0]"]),
    (("containers:", "hostNetwork: true\n  containers:"), ["spec.hostNetwork: true is not played here"]),
    (("containers:", "initContainers: [{name: s, image: host, command: [sleep, '9'], restartPolicy: Always}]\n"
                     "  containers:"), ["spec.initContainers[0].restartPolicy: Always (a sidecar) is not played"]),
    (("resources: {limits: {memory: 64Mi}}}", "volumeMounts: [{name: v, mountPath: /v}]}"),
     ["spec.containers[0].volumeMounts[0].name: no volume 'v'"]),
])
def test_bad_yaml_is_one_line_and_leaves_nothing(change, words):
    name = _tag("bad")
    text = BAD.replace("NAME", name).replace(*change)
    assert text != BAD.replace("NAME", name)
    with pytest.raises(KubeError) as e:
        K.play(text)
    line = str(e.value)
    assert "\n" not in line
    for w in words:
        assert w in line, line
    _nothing_left(name, [name])


def test_a_pod_that_fails_to_start_leaves_nothing():
    name = _tag("fail")
    text = BAD.replace("NAME", name).replace("{name: b, image: host, command: [sleep, \"9\"]}",
                                             "{name: b, image: host, command: [sleep, \"9\"], workingDir: /nowhere}")
    text = text.replace("spec:\n", "spec:\n  restartPolicy: Never\n  initContainers:\n"
                        "  - {name: i, image: host, command: [\"false\"]}\n", 1)
    t0 = time.monotonic()
    with pytest.raises(KubeError, match=r"pod/.*: initContainer i exited with 1"):
        K.play(text)
    assert time.monotonic() - t0 < 30
    _nothing_left(name, [name])


def test_down_from_another_process_and_prune(tmp_path):
    """`pycontainer kube play` keeps its pods while it runs; `kube down NAME` elsewhere ends it; a killed
    player's record goes with prune."""
    import subprocess
    import sys
    name = _tag("cli")
    f = tmp_path / "pod.yaml"
    f.write_text(BAD.replace("NAME", name).replace('"9"', '"60"'))
    code = ("import sys, signal; from pycontainer_magics.kube import play as K; "
            "p = K.play(open(sys.argv[1]).read(), name=sys.argv[2]); "
            "signal.signal(signal.SIGTERM, lambda *a: (p.down(timeout=0), sys.exit(0))); print('up', flush=True); "
            "signal.pause()")
    proc = subprocess.Popen([sys.executable, "-c", code, str(f), name], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
        assert name in [p.name for p in pods.list_pods()]
        assert K.down(name) == [f"Pod {name}  Removed"]
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    _nothing_left(name, [name])


def test_cli_generate_validate_play_down(tmp_path):
    """pycontainer kube generate -> validate -> play (in the foreground) -> down from another shell."""
    import subprocess
    import sys
    name = _tag("sh")
    cli = [sys.executable, "-m", "pycontainer_magics.cli"]
    gen = subprocess.run([*cli, "kube", "generate", "--name", name, "--memory", "32m", "--pids-limit", "10", "--",
                          "sh", "-c", "echo started; exec sleep 60"], capture_output=True, text=True, timeout=60)
    assert gen.returncode == 0, gen.stderr
    assert "--pids-limit 10 has no per-container Kubernetes equivalent" in gen.stderr  # a warning...
    assert "# container" in gen.stdout and "pids-limit 10" in gen.stdout  # ...and a comment in the YAML
    f = tmp_path / f"{name}.yaml"
    f.write_text(gen.stdout)
    val = subprocess.run([*cli, "kube", "validate", str(f)], capture_output=True, text=True, timeout=60)
    assert val.returncode == 0 and val.stdout.count(": valid (Kubernetes ") == 2, val.stdout
    bad = subprocess.run([*cli, "kube", "validate", "-"], input=gen.stdout.replace("32Mi", "12QB"),
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "limits.memory: '12QB' is not a Kubernetes quantity" in bad.stdout
    proc = subprocess.Popen([*cli, "kube", "play", str(f)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == f"{name}/{name} | started"
        assert name in [p.name for p in pods.list_pods()]
        down = subprocess.run([*cli, "kube", "down", str(f), "-t", "0"], capture_output=True, text=True, timeout=60)
        assert down.returncode == 0, down.stderr
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for s in (proc.stdout, proc.stderr):
            if s is not None:
                s.close()
    _nothing_left(name, [name])


def test_a_killed_players_play_goes_with_prune(tmp_path):
    """A process that played and was killed leaves its pods, network, its Service's namespace, record and
    files: `pycontainer prune` removes them all."""
    import signal
    import subprocess
    import sys
    name = _tag("kill")
    f = tmp_path / "pod.yaml"
    service = (f"\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}-svc}}\n"
               f"spec: {{selector: {{app: {name}}}, ports: [{{port: 80}}]}}\n")
    f.write_text(BAD.replace("NAME", name).replace('"9"', '"60"')
                 .replace(f"metadata: {{name: {name}}}", f"metadata: {{name: {name}, labels: {{app: {name}}}}}")
                 + service)
    code = ("import sys, signal; from pycontainer_magics.kube import play as K; "
            "p = K.play(open(sys.argv[1]).read(), name=sys.argv[2]); print('up', flush=True); signal.pause()")
    proc = subprocess.Popen([sys.executable, "-c", code, str(f), name], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
        from pycontainer_magics import paths
        from pycontainer_magics.network import list_netns
        assert os.path.exists(os.path.join(paths.run_dir(), "kube", f"{name}.json"))
        assert [n.name for n in list_netns() if n.name.startswith("kubesvc-")]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    r = subprocess.run([sys.executable, "-m", "pycontainer_magics.cli", "prune"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"kube play {name}" in r.stdout
    _nothing_left(name, [name])
    assert not [n.name for n in list_netns() if n.name.startswith("kubesvc-")]  # the Service's address went too


def test_host_users_false_runs_the_pod_as_an_unprivileged_host_uid():
    """hostUsers: false -> the pod's user namespace maps its root to an unprivileged range (--userns remap): root
    inside, a plain uid to the host; a volume the play made is writable by that root, the host's files are not."""
    name = _tag("users")
    text = textwrap.dedent(f"""
        apiVersion: v1
        kind: PersistentVolumeClaim
        metadata: {{name: {name}-data}}
        spec: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 1Mi}}}}}}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
          hostUsers: false
          volumes: [{{name: data, persistentVolumeClaim: {{claimName: {name}-data}}}}, {{name: shared, emptyDir: {{}}}}]
          containers:
          - name: a
            image: host
            command:
            - sh
            - -c
            - >-
              id -u; touch /etc/pcm-kube-test 2>/dev/null || echo denied; echo ok > /data/f && cat /data/f;
              echo a > /shared/a; exec sleep 60
            volumeMounts: [{{name: data, mountPath: /data}}, {{name: shared, mountPath: /shared}}]
          - name: b
            image: host
            command: ["sleep", "60"]
            volumeMounts: [{{name: shared, mountPath: /shared}}]
    """)
    from pycontainer_magics import paths
    for d in (paths.state_dir(), paths.run_dir()):  # as new: only root passes (the pod's root must be let through)
        os.chown(d, 0, 0)
        os.chmod(d, 0o700)
    p = K.play(text)
    try:
        a, b = p.container(name, "a"), p.container(name, "b")
        assert wait_for(lambda: "ok" in a.logs(), 30), a.logs()
        assert a.logs().split() == ["0", "denied", "ok"]  # root inside; the host's /etc is not its to write
        for c in (a, b):
            with open(f"/proc/{c.pid1}/status") as f:
                uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
            assert len(set(uids)) == 1 and int(uids[0]) >= 65536, uids  # seen from the host: an unprivileged uid
        with open(f"/proc/{a.pid1}/uid_map") as f:
            first, outside, count = f.read().split()[:3]
        assert first == "0" and int(outside) == int(uids[0]) and int(count) >= 65536
        assert b.exec(["cat", "/shared/a"]).stdout == "a\n"  # the pod's containers share its user namespace
        assert not os.path.exists("/etc/pcm-kube-test")
        assert not [n for n in p.notes if "hostUsers" in n]
    finally:
        p.down(volumes=True, timeout=0)
    _nothing_left(name, [name])


def test_a_service_maps_its_port_and_round_robins_over_ready_replicas():
    """replicas: 3 -> pods NAME-0..2, each its own address; the Service's name reaches them on its own port
    (80 -> the containers' named port `http`, 8080), round robin, and only those that are ready."""
    name = _tag("rr")
    text = textwrap.dedent(f"""
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: {name}}}
        spec:
          replicas: 3
          selector: {{matchLabels: {{app: {name}}}}}
          template:
            metadata: {{labels: {{app: {name}}}}}
            spec:
              terminationGracePeriodSeconds: 0
              containers:
              - name: httpd
                image: host
                command: ["sh", "-c", "hostname > /tmp/index.html && exec busybox httpd -f -p 8080 -h /tmp"]
                ports: [{{name: http, containerPort: 8080}}]
                readinessProbe: {{exec: {{command: [test, -e, /tmp/ready]}}, periodSeconds: 1}}
        ---
        apiVersion: v1
        kind: Service
        metadata: {{name: {name}-svc}}
        spec:
          selector: {{app: {name}}}
          ports: [{{port: 80, targetPort: http}}]
        ---
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}-cli}}
        spec:
          terminationGracePeriodSeconds: 0
          containers: [{{name: cli, image: host, command: [sleep, "120"]}}]
    """)
    p = K.play(text)
    replicas = [f"{name}-{k}" for k in range(3)]
    try:
        assert set(p.pods) == {*replicas, f"{name}-cli"}
        addresses = {pods.get(r).address for r in replicas}
        assert len(addresses) == 3  # each its own address
        cli = p.container(f"{name}-cli", "cli")
        svc = p.service(f"{name}-svc")
        assert svc.address not in addresses

        def get(url: str) -> str:
            r = cli.exec(["busybox", "wget", "-q", "-O", "-", url], timeout=10)  # (its -T segfaults: busybox 1.35)
            return r.stdout.strip() if r.exit_code == 0 else f"failed: {r.stderr.strip()}"

        # nobody ready: the Service answers nothing (the httpd run: only readiness keeps them out)
        assert wait_for(lambda: get(f"http://{replicas[0]}:8080/") == replicas[0], 30)  # serving, by its name
        assert get(f"http://{name}-svc/").startswith("failed")
        p.container(replicas[1], "httpd").exec(["touch", "/tmp/ready"])
        assert wait_for(lambda: len(p.endpoints(svc.plan, "http")) == 1, 30)
        assert {get(f"http://{name}-svc/") for _ in range(3)} == {replicas[1]}  # only the ready one
        assert get(f"http://{name}-svc:8080/").startswith("failed")  # the Service's port is 80, not 8080
        for r in (replicas[0], replicas[2]):
            p.container(r, "httpd").exec(["touch", "/tmp/ready"])
        assert wait_for(lambda: len(p.endpoints(svc.plan, "http")) == 3, 30)
        answers = [get(f"http://{name}-svc/") for _ in range(6)]
        assert sorted(answers) == sorted(replicas * 2), answers  # round robin: each twice
    finally:
        removed = p.down(timeout=0)
    assert {f"Pod {r}  Removed" for r in replicas} <= set(removed) and f"Service {name}-svc  Removed" in removed
    _nothing_left(name, [*replicas, f"{name}-cli"])
    from pycontainer_magics.network import list_netns
    assert not [n.name for n in list_netns() if n.name.startswith("kubesvc-")]


def test_a_headless_service_names_every_pod_it_selects():
    name = _tag("hl")
    text = textwrap.dedent(f"""
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: {name}}}
        spec:
          replicas: 2
          selector: {{matchLabels: {{app: {name}}}}}
          template:
            metadata: {{labels: {{app: {name}}}}}
            spec: {{terminationGracePeriodSeconds: 0, containers: [{{name: c, image: host, command: [sleep, "60"]}}]}}
        ---
        apiVersion: v1
        kind: Service
        metadata: {{name: {name}-all}}
        spec: {{clusterIP: None, selector: {{app: {name}}}}}
    """)
    p = K.play(text)
    try:
        assert p.services == []  # no address of its own
        hosts = p.container(f"{name}-0", "c").exec(["cat", "/etc/hosts"]).stdout
        named = sorted(line.split()[0] for line in hosts.splitlines() if f"{name}-all" in line.split()[1:])
        assert named == sorted(pods.get(f"{name}-{k}").address for k in range(2)), hosts
    finally:
        p.down(timeout=0)
    _nothing_left(name, [f"{name}-0", f"{name}-1"])


@pytest.mark.parametrize(("change", "words"), [
    (("replicas: 1", "replicas: 2\n  # x"), ["containers[0].ports[0].hostPort: with replicas 2: one machine"]),
    (("targetPort: 8080", "targetPort: web"), ["service/SVC: spec.ports[0].targetPort: 'web' is not the name of a "
                                               "container port of the pods it selects (DEP-pod)"]),
    (("protocol: TCP", "protocol: UDP"), ["service/SVC: spec.ports[0].protocol: UDP: only TCP Services"]),
    (("replicas: 1", "replicas: -1"), ["deployment/DEP: spec.replicas: -1"]),
])
def test_bad_services_and_replicas_are_one_line(change, words):
    name = _tag("bs")
    text = textwrap.dedent("""
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: DEP}
        spec:
          replicas: 1
          selector: {matchLabels: {app: DEP}}
          template:
            metadata: {labels: {app: DEP}}
            spec:
              containers:
              - name: c
                image: host
                command: [sleep, "9"]
                ports: [{name: http, containerPort: 8080, hostPort: 18080}]
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: SVC}
        spec:
          selector: {app: DEP}
          ports: [{port: 80, targetPort: 8080, protocol: TCP}]
    """).replace("DEP", name).replace("SVC", f"{name}-s")
    bad = text.replace(*change)
    assert bad != text
    with pytest.raises(KubeError) as e:
        K.play(bad, validate=False)
    for w in words:
        assert w.replace("DEP", name).replace("SVC", f"{name}-s") in str(e.value), str(e.value)
    _nothing_left(name, [f"{name}-pod", f"{name}-0", f"{name}-1"])


def test_secrets_as_env_and_as_files():
    """A Secret's data (base64) and stringData (text, winning for the same key) reach a container as env
    (secretKeyRef, envFrom secretRef with a prefix) and as files of a secret volume (items, modes)."""
    import base64
    name = _tag("sec")
    b64 = base64.b64encode
    text = textwrap.dedent(f"""
        apiVersion: v1
        kind: Secret
        metadata: {{name: {name}-creds}}
        type: Opaque
        data:
          user: {b64(b"admin").decode()}
          password: {b64(b"from-data").decode()}
          tls.key: {b64(b"KEY").decode()}
        stringData:
          password: s3cret
        ---
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
          restartPolicy: Never
          volumes:
          - name: creds
            secret:
              secretName: {name}-creds
              defaultMode: 0400
              items: [{{key: password, path: db/password}}, {{key: tls.key, path: tls.key, mode: 0440}}]
          containers:
          - name: c
            image: host
            command:
            - sh
            - -c
            - >-
              echo "PW=$PW S_user=$S_user S_password=$S_password";
              cat /etc/creds/db/password; echo; stat -c '%a %n' /etc/creds/db/password /etc/creds/tls.key;
              (echo x > /etc/creds/tls.key) 2>/dev/null || echo read-only; ls /etc/creds
            env:
            - name: PW
              valueFrom: {{secretKeyRef: {{name: {name}-creds, key: password}}}}
            envFrom: [{{secretRef: {{name: {name}-creds}}, prefix: S_}}]
            volumeMounts: [{{name: creds, mountPath: /etc/creds}}]
    """)
    p = K.play(text)
    try:
        c = p.container(name, "c")
        c.wait(20)
        lines = c.logs().splitlines()
        assert lines[0] == "PW=s3cret S_user=admin S_password=s3cret", lines
        assert lines[1] == "s3cret"
        assert lines[2:5] == ["400 /etc/creds/db/password", "440 /etc/creds/tls.key", "read-only"]
        assert sorted(lines[5:]) == ["db", "tls.key"]  # only the listed items
    finally:
        p.down(timeout=0)
    _nothing_left(name, [name])
    bad = text.replace("key: tls.key, path", "key: nope, path")
    with pytest.raises(KubeError, match=r"spec.volumes\[0\].secret.items\[1\].key: 'nope' is not a key of secret/"):
        K.play(bad)
    _nothing_left(name, [name])


def test_cli_play_stops_at_a_second_ctrl_c(tmp_path):
    """`pycontainer kube play` in a terminal: Ctrl-C stops the pods with their grace period (30 s by default,
    and a shell as PID 1 ignores SIGTERM) and says so; a second Ctrl-C stops them at once, as `docker compose
    up` does — exit 130, no traceback, nothing left."""
    import signal
    import subprocess
    import sys
    import time
    name = _tag("int")
    f = tmp_path / "pod.yaml"
    f.write_text(f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers:\n"
                 f"  - name: {name}\n    image: host\n"
                 "    command: [sh, -c, 'echo started; while :; do sleep 1; done']\n")
    proc = subprocess.Popen([sys.executable, "-m", "pycontainer_magics.cli", "kube", "play", str(f)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as in a terminal
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == f"{name}/{name} | started"
        proc.send_signal(signal.SIGINT)
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        line = ""
        while "Stopping" not in line and time.monotonic() < deadline:
            line = proc.stderr.readline()
        assert "Ctrl-C again" in line, line
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 130
        assert time.monotonic() - t0 < 15  # not the 30 s grace period
        rest = proc.stderr.read()
        assert "Traceback" not in rest and f"Pod {name}  Removed" in rest, rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for s in (proc.stdout, proc.stderr):
            if s is not None:
                s.close()
    _nothing_left(name, [name])
