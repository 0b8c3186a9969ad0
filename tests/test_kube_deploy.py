"""binder/deploy/, the course on Kubernetes, checked offline: the Zero to JupyterHub values against the
chart's own values schema, the RuntimeClass and the pod KubeSpawner makes from the values (each profile)
against the Kubernetes 1.30 and newest OpenAPI schemas. Nothing here needs a cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from pycontainer_magics.kube.validate import load_documents, validate_documents, versions

pytest.importorskip("kubernetes_validate")
DEPLOY = Path(__file__).resolve().parent.parent / "binder" / "deploy"


def _values() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "values.yaml").read_text())


def _helm_merge(base: Any, over: Any) -> Any:
    """Helm's merge of a values file over the chart's defaults: mappings merged key by key, anything else
    (lists included) replaced, null removes the key."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = _helm_merge(base.get(k), v)
        return out
    return over


def test_values_match_the_chart_schema():
    import jsonschema

    schema = json.loads((DEPLOY / "z2jh-values.schema.json").read_text())
    defaults = yaml.safe_load((DEPLOY / "z2jh-default-values.yaml").read_text())
    cls = jsonschema.validators.validator_for(schema)
    merged = _helm_merge(defaults, _values())
    errors = sorted(cls(schema).iter_errors(merged), key=lambda e: list(e.path))
    assert not errors, [f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors]
    bad = _helm_merge(defaults, _values())
    bad["singleuser"]["memroy"] = {"limit": "1G"}  # the schema refuses an unknown key: the check can fail
    assert list(cls(schema).iter_errors(bad))


def _student_pod(values: dict[str, Any], profile: dict[str, Any]) -> dict[str, Any]:
    """The pod KubeSpawner makes for a student from these values (the fields they set)."""
    su = values["singleuser"]
    ks = values["hub"]["config"]["KubeSpawner"]
    container = {
        "name": "notebook", "image": f"{su['image']['name']}:{su['image']['tag']}", "args": [su["cmd"]],
        "ports": [{"name": "notebook-port", "containerPort": 8888}],
        "env": [{"name": k, "value": str(v)} for k, v in su["extraEnv"].items()],
        "resources": {"limits": {"memory": su["memory"]["limit"], "cpu": str(su["cpu"]["limit"])},
                      "requests": {"memory": su["memory"]["guarantee"], "cpu": str(su["cpu"]["guarantee"])}},
        "securityContext": ks["container_security_context"],
        "volumeMounts": [{"name": "volume-student", "mountPath": su["storage"]["homeMountPath"]}],
    }
    spec = {"securityContext": {"fsGroup": su["fsGid"]}, "containers": [container],
            "volumes": [{"name": "volume-student", "persistentVolumeClaim": {"claimName": "claim-student"}}],
            **su["extraPodConfig"], **profile.get("kubespawner_override", {}).get("extra_pod_config", {})}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "jupyter-student"}, "spec": spec}


def test_the_student_pod_of_each_profile_is_valid_kubernetes():
    values = _values()
    profiles = values["singleuser"]["profileList"]
    assert len(profiles) == 2
    for profile in profiles:
        pod = _student_pod(values, profile)
        assert pod["spec"]["hostUsers"] is False  # the magics' rootless mode without a privileged pod
        checks = validate_documents([pod])
        assert [c.ok for c in checks] == [True] * len(versions()), [str(c) for c in checks]
    assert _student_pod(values, profiles[1])["spec"]["runtimeClassName"] == "pycontainer"
    broken = _student_pod(values, profiles[0])
    broken["spec"]["hostUser"] = False  # a typo is caught: the check can fail
    assert not all(c.ok for c in validate_documents([broken]))


def test_the_runtimeclass_is_valid_kubernetes():
    docs = load_documents((DEPLOY / "runtimeclass.yaml").read_text())
    assert [d["kind"] for d in docs] == ["RuntimeClass"]
    values = _values()
    assert docs[0]["metadata"]["name"] == \
        values["singleuser"]["profileList"][1]["kubespawner_override"]["extra_pod_config"]["runtimeClassName"]
    checks = validate_documents(docs)
    assert all(c.ok for c in checks), [str(c) for c in checks]


def test_the_lab_image_dockerfile_is_one_our_builder_reads():
    from pycontainer_magics.images.dockerfile import parse_dockerfile

    df = parse_dockerfile((DEPLOY / "Dockerfile").read_text())
    build, final = df.stages
    assert [type(i).__name__ for i in final.instructions] == ["Copy", "Copy", "Env", "Copy", "Run", "User", "Workdir",
                                                              "Expose", "Cmd"]
    add = final.instructions[0]
    assert add.add and add.sources == ("debian-bookworm.tar",)  # ADD: the tar is extracted
    assert final.instructions[1].from_stage == "build"  # the wheels stay in the first stage
    assert build.base.image == final.base.image == "scratch"
    values = _values()
    assert values["singleuser"]["cmd"] == "jupyterhub-singleuser" and values["singleuser"]["uid"] == 1000


def test_the_runtime_class_names_the_containerd_handler_the_runtime_publishes():
    """runtimeclass.yaml's handler is the runtime name containerd-runtime.toml registers (with runc's shim and
    our binary), and the profile that asks for it names the RuntimeClass (containerd itself loads the file in
    tests/test_oci_engines.py)."""
    import tomllib

    rc = yaml.safe_load((DEPLOY / "runtimeclass.yaml").read_text())
    conf = tomllib.loads((DEPLOY / "containerd-runtime.toml").read_text())
    runtimes = conf["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]
    assert list(runtimes) == [rc["handler"]] == ["pycontainer"]
    handler = runtimes[rc["handler"]]
    assert handler["runtime_type"] == "io.containerd.runc.v2"
    assert handler["options"]["BinaryName"].endswith("pycontainer-runc")
    assert handler["options"]["SystemdCgroup"] is False
    override = _values()["singleuser"]["profileList"][1]["kubespawner_override"]["extra_pod_config"]
    assert override["runtimeClassName"] == rc["metadata"]["name"]
