"""Interop with a real consumer: the YAML this project generates runs under `podman kube play` (Debian's
podman 4.3) with the same behaviour (env, command, memory limit, host name = pod name, one localhost for
the pod's containers), and YAML written by `podman kube generate` plays here the same way.

podman runs on a private --root/--runroot/--tmpdir under the test's temp dir with a containers.conf of
its own (runc: crun 1.8 refuses the cgroup v1 hybrid layout; nofile/nproc ulimits root can set here;
network configs in the temp dir) and `--network none` (only lo: no CNI network, bridge or firewall rule
on the host), in a mount namespace of its own (its mounts are not the host's); everything it made is removed
at the end.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator

import pytest
from helpers import make_busybox_rootfs, wait_for  # noqa: F401

from pycontainer_magics.kube import generate
from pycontainer_magics.kube import play as K
from pycontainer_magics.kube.podman import PrivatePodman, podman_cgroup_parents
from pycontainer_magics.runtime.spec import ContainerSpec

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root"), pytest.mark.root, pytest.mark.network,
              pytest.mark.skipif(shutil.which("podman") is None or shutil.which("runc") is None,
                                 reason="needs podman and runc (apt-get install podman runc conmon catatonit)")]

IMAGE = "localhost/kubetest/bb:1"
SERVER = "echo served-by-$HOSTNAME > /tmp/www/index.html; exec busybox httpd -f -p 8080 -h /tmp/www"
CLIENT = ("until busybox wget -q -O - http://127.0.0.1:8080/; do sleep 0.2; done; echo GREETING=$GREETING; "
          "hostname; cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; "
          "echo done; exec sleep 60")


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivatePodman]:
    """podman on a private store, holding the test image made in this project's store and copied over."""
    from pycontainer_magics.images import ImageConfig, Store

    top = str(tmp_path_factory.mktemp("podman"))
    rootfs = make_busybox_rootfs(os.path.join(top, "rootfs"))
    os.makedirs(os.path.join(rootfs, "tmp", "www"))
    store = Store()
    store.create_image(IMAGE, [rootfs], ImageConfig(env=("PATH=/bin",)))
    parents_before = [d for d, there in podman_cgroup_parents().items() if there]
    pm = PrivatePodman()  # its own short temp dir: podman refuses a runroot path over 50 characters
    try:
        pm.load_images([IMAGE])
        yield pm
    finally:
        pm.close()
        store.rm(IMAGE, force=True)
        with open("/proc/self/mountinfo") as f:
            assert pm.top not in f.read(), "podman left a mount"
        assert not os.path.exists(pm.top)
        # podman's pod cgroups (it leaves them in the systemd and v2 hierarchies of a v1 host), and its parent
        assert pm._pods, "no pod was noted"
        left = [d for d, there in podman_cgroup_parents().items() if there and d not in parents_before] + \
               [os.path.join(d, p) for d in parents_before for p in pm._pods if os.path.isdir(os.path.join(d, p))]
        assert left == [], f"podman's cgroups left: {left}"


def _pod_yaml(name: str) -> str:
    """A two-container pod, exported by this project: env, command, memory limit, shared localhost."""
    from pycontainer_magics.workloads.pods import Pod
    pod = Pod(name=name, hostname=name, network="none", publish=[], created=0, owner="", infra_pid=0, infra="",
              net_inode=0, namespaces={})
    srv = ContainerSpec(image=IMAGE, command=("sh", "-c", SERVER), memory=48 * 2**20)
    cli = ContainerSpec(image=IMAGE, command=("sh", "-c", CLIENT), env=(("GREETING", "hello"),), memory=32 * 2**20)
    export = generate.from_pod(pod, [("srv", srv), ("cli", cli)])
    return export.yaml()


def _check_client_output(out: str, pod: str) -> None:
    lines = out.splitlines()
    assert lines[0].startswith("served-by-"), out  # over the pod's one localhost
    assert "GREETING=hello" in lines and pod in lines, out  # env; the pod's name is the host name
    assert str(32 * 2**20) in lines, out  # the memory limit in force


def test_generated_yaml_runs_under_podman_kube_play(podman, tmp_path):
    name = f"kp{os.getpid() % 100000}"
    f = tmp_path / "pod.yaml"
    f.write_text(_pod_yaml(name))
    podman.play(f.read_text())
    try:
        assert wait_for(lambda: "done" in podman.logs(f"{name}-cli"), 30), \
            podman.logs(f"{name}-cli")
        _check_client_output(podman.logs(f"{name}-cli"), name)
        with open("/proc/self/mountinfo") as mi:
            assert podman.top not in mi.read()  # podman's mounts are in its own mount namespace, not the host's
        mem = podman.inspect(f"{name}-srv", "{{.HostConfig.Memory}}")
        assert mem == str(48 * 2**20)
    finally:
        podman.down(f.read_text())
    assert podman("pod", "ps", "-q").strip() == ""


def test_podman_generated_yaml_plays_here(podman, tmp_path):
    name = f"kg{os.getpid() % 100000}"
    f = tmp_path / "pod.yaml"
    f.write_text(_pod_yaml(name))
    podman.play(f.read_text(), "--start=false")
    try:
        text = podman.generate(name)  # podman's own YAML: its annotations, names and fields
    finally:
        podman.down(f.read_text())
    assert "Created with podman" in text
    p = K.play(text)
    try:
        assert list(p.pods) == [name]
        # podman names the containers <pod>-<container> and keeps those names in its YAML
        cli = p.container(name, f"{name}-cli")
        t0 = time.monotonic()
        assert wait_for(lambda: "done" in cli.logs(), 30), cli.logs()
        assert time.monotonic() - t0 < 30
        _check_client_output(cli.logs(), name)
        assert p.container(name, f"{name}-srv").stats()["memory_limit"] == 48 * 2**20
    finally:
        p.down(timeout=0)
