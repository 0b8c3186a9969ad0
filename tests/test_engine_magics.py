"""The engine daemon from a notebook: `%container serve`, and one container driven by the docker CLI and by
the magics (`ps`, `exec`, `update`, `pause`, `top`, `cp`, `commit`, `export`, `rename`, `stop`, `wait`):
one state. The same verbs on a container of the kernel's own."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from collections.abc import Iterator

import pytest
from engine_helpers import IMAGE, docker_clis, make_image
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

pytestmark = [pytest.mark.root, pytest.mark.network]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    if os.geteuid() != 0:
        pytest.skip("the daemon needs root")
    if not docker_clis():
        pytest.skip("no docker CLI installed (apt-get install docker.io)")
    root = tmp_path_factory.mktemp("engine-nb")
    saved = {k: os.environ.get(k) for k in ("PYCONTAINER_STATE_DIR", "PYCONTAINER_RUN_DIR", "DOCKER_HOST",
                                            "DOCKER_CONFIG")}
    os.environ.update(PYCONTAINER_STATE_DIR=str(root / "state"), PYCONTAINER_RUN_DIR=str(root / "run"),
                      DOCKER_CONFIG=str(root / "dockercfg"))
    make_image(str(root / "state"))
    try:
        yield os.environ  # type: ignore[misc]
    finally:
        from pycontainer_magics.engine import control
        control.stop()
        _kill_leftovers()  # a failed test must not leave a container running
        from pycontainer_magics.workloads.prune import prune
        prune()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _kill_leftovers() -> None:
    import signal
    import time

    from engine_helpers import alive

    from pycontainer_magics.workloads import daemon_store as store
    for cid in store.ids():
        st = store.load_state(cid)
        if st.get("Status") in ("running", "paused") and st.get("Pid"):
            os.kill(st["Pid"], signal.SIGKILL)
            deadline = time.monotonic() + 10
            while alive(st["Supervisor"]) and time.monotonic() < deadline:
                time.sleep(0.05)


@pytest.fixture(scope="module")
def ip(env: dict[str, str]) -> InteractiveShell:
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "pycontainer_magics")
    return shell


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([docker_clis()[0], *args], capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {r.stderr}")
    return r


def test_one_container_from_the_docker_cli_and_the_magics(ip, capsys, tmp_path):
    ip.run_line_magic("container", "serve")
    out = capsys.readouterr().out
    assert out.startswith("DOCKER_HOST=unix://") and os.environ["DOCKER_HOST"] == out.strip().split("=", 1)[1]
    cid = docker("run", "-d", "--name", "web", "--network", "none", "-m", "64m", IMAGE, "sh", "-c",
                 "trap 'exit 7' TERM; mkdir -p /tmp; while true; do sleep 0.1; done").stdout.strip()
    ps = ip.run_line_magic("container", "ps")
    row = ps[ps["name"] == "web"].iloc[0]
    assert row["id"] == cid[:12] and row["status"] == "running" and row["image"] == IMAGE
    capsys.readouterr()
    ip.run_line_magic("container", "exec web -- hostname")
    assert capsys.readouterr().out.strip() == cid[:12]

    ip.run_line_magic("container", "update web --memory 96m --pids-limit 40")
    hc = json.loads(docker("inspect", "web").stdout)[0]["HostConfig"]
    assert hc["Memory"] == 96 * 2**20 and hc["PidsLimit"] == 40
    ip.run_line_magic("container", "pause web")
    assert docker("ps", "--format", "{{.Status}}", "--filter", "name=web").stdout.strip().endswith("(Paused)")
    ip.run_line_magic("container", "unpause web")
    top = ip.run_line_magic("container", "top web")
    assert any("while true" in str(cmd) for cmd in top.iloc[:, -1]), top.to_string()

    (tmp_path / "note.txt").write_text("from the notebook\n")
    ip.run_line_magic("container", f"cp {tmp_path / 'note.txt'} web:/tmp")
    assert docker("exec", "web", "cat", "/tmp/note.txt").stdout == "from the notebook\n"
    ip.run_line_magic("container", f"cp web:/etc/motd {tmp_path / 'out'}")
    assert (tmp_path / "out" / "motd").read_text() == "busybox image\n"
    capsys.readouterr()
    ip.run_line_magic("container", "commit web lab/fromnb:1 -c 'CMD [\"cat\", \"/tmp/note.txt\"]' --change 'ENV N=1'")
    image_id = capsys.readouterr().out.strip()
    assert docker("run", "--rm", "--network", "none", "lab/fromnb:1").stdout == "from the notebook\n"
    assert image_id.startswith("sha256:") and docker("images", "-q", "lab/fromnb:1").stdout.strip() == image_id[7:19]
    assert docker("run", "--rm", "--network", "none", "lab/fromnb:1", "cat", "/tmp/note.txt").stdout == \
        "from the notebook\n"
    ip.run_line_magic("container", f"export web {tmp_path / 'web.tar'}")
    names = tarfile.open(tmp_path / "web.tar").getnames()
    assert "bin/busybox" in names and "tmp/note.txt" in names

    ip.run_line_magic("container", "rename web web2")
    assert docker("ps", "--format", "{{.Names}}").stdout.split() == ["web2"]
    ip.run_line_magic("container", "stop web2")
    capsys.readouterr()
    ip.run_line_magic("container", "wait --expect-exit 7 web2")
    assert capsys.readouterr().out.strip() == "7"
    ip.run_line_magic("container", "wait web2")  # stopped on purpose: its exit code, not a failed cell
    assert capsys.readouterr().out.strip() == "7"
    ip.run_line_magic("container", "rm web2")
    assert docker("ps", "-aq").stdout.strip() == ""
    with pytest.raises(UsageError, match="no such container"):
        ip.run_line_magic("container", "pause web2")


def test_the_verbs_on_a_kernel_container(ip, capsys, tmp_path):
    ip.run_cell_magic("container", f"--detach --name kc --memory 64m --image {IMAGE} -- sh",
                      "mkdir -p /tmp; echo kc > /tmp/kc.txt; while true; do sleep 0.1; done")
    try:
        ip.run_line_magic("container", "update kc --memory 80m")
        capsys.readouterr()
        ip.run_line_magic("container", "exec kc -- cat /sys/fs/cgroup/memory/memory.limit_in_bytes")
        assert capsys.readouterr().out.strip() == str(80 * 2**20)
        ip.run_line_magic("container", "pause kc")
        from pycontainer_magics.workloads.containers import containers
        assert containers.get("kc").paused
        ip.run_line_magic("container", "unpause kc")
        top = ip.run_line_magic("container", "top kc")
        assert any("sleep" in str(c) or "sh" in str(c) for c in top.iloc[:, -1])
        ip.run_line_magic("container", f"cp kc:/tmp/kc.txt {tmp_path}")
        assert (tmp_path / "kc.txt").read_text() == "kc\n"
        ip.run_line_magic("container", f"export kc {tmp_path / 'kc.tar'}")
        assert "tmp/kc.txt" in tarfile.open(tmp_path / "kc.tar").getnames()
        with pytest.raises(UsageError, match="commit works on the engine daemon's containers"):
            ip.run_line_magic("container", "commit kc")
        ip.run_line_magic("container", "rename kc kc2")
        assert containers.get("kc2").name == "kc2"
    finally:
        ip.run_line_magic("container", "rm -f kc2" if _exists("kc2") else "rm -f kc")


def _exists(name: str) -> bool:
    from pycontainer_magics.workloads.containers import DetachedContainerError, containers

    try:
        containers.get(name)
        return True
    except DetachedContainerError:
        return False


def test_serve_stop(ip, capsys):
    ip.run_line_magic("container", "serve stop")
    assert capsys.readouterr().out.strip() in ("stopped", "no daemon was running")
    assert "DOCKER_HOST" not in os.environ or not os.environ["DOCKER_HOST"].endswith("/docker.sock")
    ip.run_line_magic("container", "serve status")
    assert capsys.readouterr().out.strip() == "not running"


__all__ = ["io"]
