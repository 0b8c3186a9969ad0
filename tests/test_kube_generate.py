"""Kubernetes export and offline validation: containers, pods and compose projects become Kubernetes
YAML that validates against the OpenAPI schema of 1.30 and of the newest version kubernetes-validate
knows; what has no Kubernetes equivalent is named in a comment and a warning; bad YAML is one line with
the field path. Nothing here needs root or touches the kernel."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from pycontainer_magics.kube import generate, quantity
from pycontainer_magics.kube.errors import KubeError
from pycontainer_magics.kube.validate import OLDEST, lint, load_documents, newest, validate_documents, versions
from pycontainer_magics.runtime.spec import ContainerSpec, Mount, Tmpfs
from pycontainer_magics.workloads.compose.model import load as load_compose

pytest.importorskip("kubernetes_validate")


def _all_valid(export: generate.Export) -> None:
    docs = load_documents(export.yaml())  # what a reader gets back from the text, comments and all
    assert docs == export.dicts()
    checks = validate_documents(docs)
    assert {c.version for c in checks} == set(versions())
    bad = [str(c) for c in checks if not c.ok]
    assert not bad, "\n".join(bad)


def _pod_spec(doc: dict) -> dict:
    return doc["spec"]["template"]["spec"] if doc["kind"] == "Deployment" else doc["spec"]


def _kind(export: generate.Export, kind: str, name: str | None = None) -> dict:
    found = [d for d in export.dicts() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, [f"{d['kind']}/{d['metadata']['name']}" for d in export.dicts()]
    return found[0]


# -- quantities ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "value"), [("64Mi", 64 * 2**20), ("1G", 10**9), ("500m", 0.5), ("2", 2),
                                              ("1.5Gi", 1.5 * 2**30), ("2e3", 2000), (".5", 0.5), (128, 128)])
def test_quantities_parse(text, value):
    assert float(quantity.parse_quantity(text)) == pytest.approx(value)


@pytest.mark.parametrize("text", ["12QB", "64MB", "1.2.3", "", " 1Gi", "1 Gi", "Mi", "0x10", True, None, "1e"])
def test_invalid_quantities_are_refused(text):
    with pytest.raises(quantity.QuantityError):
        quantity.parse_quantity(text)


def test_quantities_are_written_as_kubernetes_writes_them():
    assert quantity.memory(64 * 2**20) == "64Mi"
    assert quantity.memory(1536 * 1024) == "1536Ki"
    assert quantity.memory(1000) == "1000"
    assert quantity.cpu(0.5) == "500m" and quantity.cpu(2) == "2" and quantity.cpu(1.25) == "1250m"


# -- one container ---------------------------------------------------------------------------------------

def test_a_container_becomes_a_valid_pod(tmp_path):
    conf = tmp_path / "app.conf"
    conf.write_text("listen 80\n")
    spec = ContainerSpec(
        command=("sh",), stdin_data=b"echo hi\nsleep 1\n", name="web", memory=64 * 2**20, cpus=0.5,
        cpu_shares=256, env=(("GREETING", "hello"),), workdir="/srv", user="1000:100", read_only=True,
        cap_add=frozenset({"NET_ADMIN"}), cap_drop=frozenset({"NET_RAW", "MKNOD"}),
        mounts=(Mount(str(conf), "/etc/app.conf", read_only=True), Mount(str(tmp_path), "/data"),
                Mount("webdata", "/var/www", kind="volume")),
        tmpfs=(Tmpfs("/run", 2**20),), userns="remap", timeout=30)
    export = generate.from_spec(spec)
    _all_valid(export)
    pod = _kind(export, "Pod", "web")
    c = pod["spec"]["containers"][0]
    assert c["name"] == "web" and c["image"] == "host"
    assert c["command"] == ["sh", "-c", "echo hi\nsleep 1\n"]  # the cell body, run by its shell
    assert c["env"] == [{"name": "GREETING", "value": "hello"}] and c["workingDir"] == "/srv"
    assert c["resources"] == {"limits": {"memory": "64Mi", "cpu": "500m"}, "requests": {"cpu": "250m"}}
    sc = c["securityContext"]
    assert sc["capabilities"] == {"add": ["NET_ADMIN"], "drop": ["MKNOD", "NET_RAW"]}
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert (sc["runAsUser"], sc["runAsGroup"]) == (1000, 100)
    assert pod["spec"]["hostUsers"] is False  # --userns remap: root in the container is not root outside
    assert pod["spec"]["activeDeadlineSeconds"] == 30
    vols = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    cm = vols[mounts["/etc/app.conf"]["name"]]["configMap"]["name"]
    assert _kind(export, "ConfigMap", cm)["data"] == {"app.conf": "listen 80\n"}
    assert mounts["/etc/app.conf"]["subPath"] == "app.conf"
    assert vols[mounts["/data"]["name"]]["hostPath"] == {"path": str(tmp_path), "type": "Directory"}
    assert vols[mounts["/var/www"]["name"]]["persistentVolumeClaim"] == {"claimName": "webdata"}
    assert _kind(export, "PersistentVolumeClaim", "webdata")["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert vols[mounts["/run"]["name"]]["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Mi"}
    text = export.yaml()
    assert any("hostPath" in w and str(tmp_path) in w for w in export.warnings)
    assert "a cluster's nodes do not have this path" in text  # the warning is in the YAML too


@pytest.mark.parametrize(("option", "words"), [
    ({"pids_limit": 20}, "--pids-limit 20"),
    ({"cpuset_cpus": "0"}, "--cpuset-cpus 0"),
    ({"memory": 64 * 2**20, "memory_swap": 128 * 2**20}, "--memory-swap (64Mi of swap)"),
    ({"time_offsets": (("boottime", 3600),)}, "--time-offset boottime=3600"),
    ({"ulimits": (("nofile", 1024, 2048),)}, "--ulimit nofile=1024:2048"),
    ({"share": frozenset({"mount"})}, "--share mount"),
])
def test_what_has_no_equivalent_is_a_comment_and_a_warning(option, words):
    export = generate.from_spec(ContainerSpec(command=("true",), name="c", **option))
    _all_valid(export)
    assert any(words in w for w in export.warnings), export.warnings
    comments = [ln for ln in export.yaml().splitlines() if ln.startswith("#")]
    assert words in " ".join(c.lstrip("# ") for c in comments)


def test_no_warning_for_what_maps():
    export = generate.from_spec(ContainerSpec(command=("true",), name="c", memory=2**26, cpus=1))
    assert [w for w in export.warnings if "image 'host'" not in w] == []


def test_host_namespaces_and_privileges():
    spec = ContainerSpec(command=("true",), name="c", share=frozenset({"net", "pid", "ipc"}), network="host",
                         cap_add=frozenset({"ALL"}), seccomp="unconfined")
    export = generate.from_spec(spec)
    _all_valid(export)
    pod = _kind(export, "Pod")["spec"]
    assert pod["hostNetwork"] and pod["hostPID"] and pod["hostIPC"]
    sc = pod["containers"][0]["securityContext"]
    assert sc["privileged"] is True and sc["allowPrivilegeEscalation"] is True  # the API refuses false with it
    assert sc["seccompProfile"] == {"type": "Unconfined"}


def test_an_image_keeps_its_entrypoint_and_cmd_apart():
    spec = ContainerSpec(image="lab/busybox:1", command=("-c", "echo hi"), entrypoint=("sh",), name="c")
    c = _kind(generate.from_spec(spec), "Pod")["spec"]["containers"][0]
    assert (c["image"], c["command"], c["args"]) == ("lab/busybox:1", ["sh"], ["-c", "echo hi"])
    c = _kind(generate.from_spec(ContainerSpec(image="lab/busybox:1", command=("ls",), name="c")), "Pod")
    assert "command" not in c["spec"]["containers"][0] and c["spec"]["containers"][0]["args"] == ["ls"]


def test_names_become_dns_labels():
    export = generate.from_spec(ContainerSpec(command=("true",), name="My_Web.1"))
    _all_valid(export)
    assert _kind(export, "Pod")["spec"]["containers"][0]["name"] == "my-web-1"


# -- a compose project ------------------------------------------------------------------------------------

SHOP = """
services:
  web:
    image: host
    command: ["sh", "-c", "echo hi > /www/index.html; exec busybox httpd -f -p 80 -h /www"]
    volumes: [www:/www, ./site.conf:/etc/site.conf:ro]
    ports: ["8080:80"]
    healthcheck: {test: ["CMD", "busybox", "wget", "-q", "-O-", "http://127.0.0.1/"], interval: 1s, retries: 5}
    mem_limit: 64m
    cpus: 0.5
    labels: {tier: front}
    networks: {default: {aliases: [www]}}
  job:
    image: host
    command: ["sh", "-c", "busybox wget -q -O - http://web/"]
    depends_on: {web: {condition: service_healthy}}
    pids_limit: 10
    restart: on-failure
volumes: {www: {}}
"""


def test_a_compose_project_becomes_deployments_services_and_claims(tmp_path):
    (tmp_path / "site.conf").write_text("x=1\n")
    export = generate.from_compose(load_compose(SHOP, project="shop", workdir=str(tmp_path)))
    _all_valid(export)
    kinds = [f"{d['kind']}/{d['metadata']['name']}" for d in export.dicts()]
    assert kinds == ["PersistentVolumeClaim/shop-www", "ConfigMap/web-site-conf", "Deployment/web", "Pod/job",
                     "Service/web", "Service/www"]
    web = _kind(export, "Deployment", "web")
    labels = web["spec"]["selector"]["matchLabels"]
    assert web["spec"]["template"]["metadata"]["labels"] == labels
    assert web["spec"]["template"]["metadata"]["annotations"] == {"compose.label/tier": "front"}
    c = _pod_spec(web)["containers"][0]
    assert c["ports"] == [{"containerPort": 80, "protocol": "TCP", "hostPort": 8080, "hostIP": "127.0.0.1"}]
    assert c["resources"]["limits"] == {"memory": "64Mi", "cpu": "500m"}
    assert c["readinessProbe"] == {"exec": {"command": ["busybox", "wget", "-q", "-O-", "http://127.0.0.1/"]},
                                   "periodSeconds": 1, "timeoutSeconds": 30, "failureThreshold": 5}
    for svc in ("web", "www"):  # the service's name and its alias resolve in the cluster
        s = _kind(export, "Service", svc)["spec"]
        assert s["selector"] == labels and s["ports"][0]["port"] == s["ports"][0]["targetPort"] == 80
    job = _kind(export, "Pod", "job")["spec"]
    assert job["restartPolicy"] == "OnFailure"
    wait = job["initContainers"][0]
    assert wait["name"] == "wait-for-web" and wait["command"][-1] == "http://web/"  # web's own check, by name
    assert any("--pids-limit 10" in w for w in export.warnings)
    assert "job" not in [d["metadata"]["name"] for d in export.dicts() if d["kind"] == "Service"]


def test_compose_dependencies_that_cannot_be_waited_for_are_named(tmp_path):
    cf = load_compose(textwrap.dedent("""
        services:
          init: {image: host, command: ["true"]}
          app:
            image: host
            command: ["sleep", "1"]
            depends_on: {init: {condition: service_completed_successfully}}
    """), project="p", workdir=str(tmp_path))
    export = generate.from_compose(cf)
    _all_valid(export)
    assert any("depends_on init (completed successfully) has no Kubernetes equivalent" in w for w in export.warnings)


# -- bad YAML: one line, with the field path ----------------------------------------------------------------

POD = """
apiVersion: v1
kind: Pod
metadata: {name: bad}
spec:
  containers:
  - {name: a, image: busybox, resources: {limits: {memory: 64Mi}}}
  - {name: b, image: busybox}
"""


@pytest.mark.parametrize(("change", "words"), [
    (("kind: Pod", "kind: Pood"), ["pood/bad", "kind: 'Pood'", "not a Kubernetes"]),
    (("{name: b, image: busybox}", "{name: b}"), ["pod/bad", "spec.containers[1].image: missing"]),
    (("memory: 64Mi", "memory: 12QB"), ["spec.containers[0].resources.limits.memory", "'12QB'",
                                        "not a Kubernetes quantity"]),
    (("{name: b,", "{name: a,"), ["spec.containers[1].name", "'a'", "spec.containers[0]"]),
    (("image: busybox}", "image: busybox, imag: 1}"), ["spec.containers[1].imag: unknown field",
                                                       "did you mean 'image'"]),
    (("- {name: a", "- {name: 7"), ["spec.containers[0].name", "7"]),
])
def test_bad_documents_are_one_line_with_the_field_path(change, words):
    text = POD.replace(*change)
    assert text != POD
    docs = load_documents(text)
    bad = [c for c in validate_documents(docs) if not c.ok]
    assert bad and len({c.message for c in bad}) == 1
    line = str(bad[0])
    assert "\n" not in line
    for w in words:
        assert w in line, line
    assert [c.ok for c in validate_documents(load_documents(POD))] == [True] * len(versions())


def test_lint_raises_the_first_problem():
    with pytest.raises(KubeError, match=r"^pod/bad: spec.containers\[1\].image: missing"):
        lint(load_documents(POD.replace("{name: b, image: busybox}", "{name: b}"))[0])


@pytest.mark.parametrize(("text", "words"), [
    ("a: [1", r"not valid YAML \(line"),
    ("", "no document"),
    ("- 1\n- 2\n", "not a mapping"),
    ("kind: Pod\nmetadata: {name: x}\n", "apiVersion: missing"),
    ("apiVersion: v1\nkind: Pod\n", "metadata.name: missing"),
])
def test_unreadable_yaml_is_one_line(text, words):
    with pytest.raises(KubeError, match=words) as e:
        load_documents(text)
    assert "\n" not in str(e.value)


def test_the_versions_checked():
    assert versions()[0] == OLDEST == "1.30"
    assert tuple(map(int, newest().split("."))) >= (1, 30)


def test_the_yaml_reads_back_without_anchors():
    export = generate.from_compose(load_compose(SHOP.replace(", ./site.conf:/etc/site.conf:ro", ""), project="s",
                                                workdir="/"))
    assert "&id" not in export.yaml() and "*id" not in export.yaml()
    assert list(yaml.safe_load_all(export.yaml())) == export.dicts()
