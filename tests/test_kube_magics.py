"""The notebook skin of kube/: `%%compose --to-kube` and `%container kube NAME` show the YAML with a
green/red line per document and Kubernetes version and the warnings; `%%kube` plays a cell and
`%kube down` removes it; a bad cell is one line and fails."""

from __future__ import annotations

import os

import pytest
from helpers import host_clean  # noqa: F401
from IPython.core.error import UsageError

pytest.importorskip("kubernetes_validate")


@pytest.fixture(scope="module")
def ip():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "pycontainer_magics")
    return shell


COMPOSE = """
services:
  web:
    image: host
    command: ["busybox", "httpd", "-f", "-p", "80"]
    ports: ["8080:80"]
    pids_limit: 20
"""


def test_compose_to_kube_shows_validated_yaml_and_warnings(ip):
    view = ip.run_cell_magic("compose", "-p shop --to-kube", COMPOSE)
    text = repr(view)
    assert "✔ deployment/web: valid (Kubernetes 1.30)" in text and "✔ service/web: valid (Kubernetes 1.30)" in text
    assert "⚠ service web: --pids-limit 20 has no per-container Kubernetes equivalent" in text
    assert "kind: Deployment" in text
    html = view._repr_html_()
    assert "#1a7f37" in html and "✘" not in html  # green lines, no red one
    assert ip.user_ns["_kube"].source == "compose project shop"


def test_a_bad_compose_file_is_one_line(ip):
    with pytest.raises(UsageError, match="service 'web'"):
        ip.run_cell_magic("compose", "--to-kube", COMPOSE.replace("ports:", "prots:"))


def test_kube_validate_cell_is_red_for_a_bad_quantity(ip, capsys):
    good = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: a, image: busybox}]}\n"
    assert ip.run_cell_magic("kube", "validate", good).ok
    bad = good.replace("image: busybox}", "image: busybox, resources: {limits: {memory: 12QB}}}")
    with pytest.raises(UsageError, match=r"spec.containers\[0\].resources.limits.memory: '12QB'"):
        ip.run_cell_magic("kube", "validate", bad)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
@pytest.mark.root
@pytest.mark.network
@pytest.mark.usefixtures("host_clean")
def test_container_kube_and_kube_play_down(ip):
    name = f"km{os.getpid() % 100000}"
    ip.run_line_magic("container", f"pod create {name}")
    try:
        ip.run_cell_magic("container", f"--pod {name} --detach --name {name}-srv --memory 32m -- sh",
                          "exec sleep 30\n")
        view = ip.run_line_magic("container", f"kube {name}")
        assert view.ok and "memory: 32Mi" in view.yaml and f"name: {name}" in view.yaml
    finally:
        ip.run_line_magic("container", f"pod rm -f {name}")
        ip.run_line_magic("container", f"rm -f {name}-srv")
    yaml_text = view.yaml.replace("exec sleep 30", "echo played; exec sleep 30")
    frame = ip.run_cell_magic("kube", f"--name {name}", yaml_text)
    try:
        assert list(frame["container"]) == ["srv"] and list(frame["status"]) == ["running"]
        assert ip.user_ns["_kube_play"].name == name
        ps = ip.run_line_magic("kube", f"ps {name}")
        assert list(ps["pod"]) == [name]
    finally:
        ip.run_line_magic("kube", f"down {name} -t 0")
    from pycontainer_magics.kube import play as K
    assert K.list_plays() == []
    with pytest.raises(UsageError, match="no kube play is up"):
        ip.run_line_magic("kube", "down")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
@pytest.mark.root
@pytest.mark.usefixtures("host_clean")
def test_kube_events_lists_probe_failures(ip):
    from helpers import wait_for
    name = f"ke{os.getpid() % 100000}"
    ip.run_cell_magic("kube", f"--name {name}", f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  containers:
  - name: c
    image: host
    command: [sleep, "30"]
    readinessProbe: {{tcpSocket: {{port: 9}}, periodSeconds: 1}}
""")
    try:
        assert wait_for(lambda: len(ip.run_line_magic("kube", f"events {name}")) > 0, 30)
        ev = ip.run_line_magic("kube", f"events {name}")
        assert list(ev.columns) == ["time", "pod", "container", "reason", "message"]
        row = ev.iloc[0]
        assert (row["pod"], row["container"], row["reason"]) == (name, "c", "Unhealthy")
        assert row["message"].startswith("Readiness probe failed: tcp-socket 127.0.0.1:9: ")
        assert list(ip.run_line_magic("kube", f"ps {name}")["ready"]) == ["no"]
    finally:
        ip.run_line_magic("kube", f"down {name} -t 0")
