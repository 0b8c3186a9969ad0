"""%%compose: compose files validated before anything exists, a three-service app that comes up in
depends_on order and works by service name, restart policies, and `down` (or a killed kernel and prune)
leaving nothing behind. Traffic goes only between the test's own namespaces and the host's loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest
from helpers import host_clean, wait_for  # noqa: F401

from pycontainer_magics import network as net
from pycontainer_magics.workloads.compose import ComposeError, load
from pycontainer_magics.workloads.compose import project as P

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def live(test):  # type: ignore[no-untyped-def]
    """A test that brings a project up for real: root, networks, and the host left clean afterwards."""
    for mark in (pytest.mark.usefixtures("host_clean"), root_only, pytest.mark.network, pytest.mark.root):
        test = mark(test)
    return test


def _name(tag: str) -> str:
    return f"t{os.getpid() % 100000}{tag}"


# -- validation: what `docker compose config` rejects, rejected here with the service and key named ----------

BAD = {
    "unknown-key": ("services:\n  web:\n    image: host\n    command: x\n    prots: ['80:80']\n",
                    ["service 'web'", "'prots'", "'ports'"]),
    "unknown-top-level-key": ("services:\n  web: {image: host, command: x}\nservice: {}\n",
                              ["top-level key 'service'"]),
    "unsupported-key": ("services:\n  web: {image: host, command: x, privileged: true}\n",
                        ["service 'web'", "'privileged'", "not supported"]),
    "bad-port": ("services:\n  web: {image: host, command: x, ports: ['abc']}\n",
                 ["service 'web'", "'ports' entry 'abc' is not HOST:CONTAINER"]),
    "port-out-of-range": ("services:\n  web: {image: host, command: x, ports: ['70000:80']}\n",
                          ["service 'web'", "'ports'", "70000:80", "out of range"]),
    "undefined-network": ("services:\n  web: {image: host, command: x, networks: [front]}\n",
                          ["service 'web'", "'networks'", "'front'", "not defined"]),
    "undefined-volume": ("services:\n  web: {image: host, command: x, volumes: ['data:/data']}\n",
                         ["service 'web'", "'volumes'", "'data'", "not defined"]),
    "undefined-dependency": ("services:\n  web: {image: host, command: x, depends_on: [db]}\n",
                             ["service 'web'", "'depends_on'", "'db'"]),
    "depends-on-cycle": ("services:\n  a: {image: host, command: x, depends_on: [b]}\n"
                         "  b: {image: host, command: x, depends_on: [c]}\n"
                         "  c: {image: host, command: x, depends_on: [a]}\n",
                         ["cycle", "a -> b -> c -> a"]),
    "missing-image": ("services:\n  web: {command: x}\n", ["service 'web'", "neither 'image' nor 'build'"]),
    "wrong-type": ("services:\n  web: {image: host, command: x, mem_limit: [64m]}\n",
                   ["service 'web'", "'mem_limit'", "not a list"]),
    "bad-size": ("services:\n  web: {image: host, command: x, mem_limit: lots}\n",
                 ["service 'web'", "'mem_limit'", "'lots'", "not a size"]),
    "bad-condition": ("services:\n  web: {image: host, command: x}\n"
                      "  job: {image: host, command: x, depends_on: {web: {condition: service_ready}}}\n",
                      ["service 'job'", "'depends_on.web.condition'", "service_healthy"]),
    "healthy-without-healthcheck": ("services:\n  web: {image: host, command: x}\n  job: {image: host, "
                                    "command: x, depends_on: {web: {condition: service_healthy}}}\n",
                                    ["service 'job'", "'depends_on'", "'web'", "no healthcheck"]),
    "bad-restart": ("services:\n  web: {image: host, command: x, restart: sometimes}\n",
                    ["service 'web'", "'restart'", "on-failure"]),
    "bad-healthcheck-test": ("services:\n  web: {image: host, command: x, healthcheck: {test: [RUN, x]}}\n",
                             ["service 'web'", "'healthcheck.test'", "CMD"]),
    "bad-duration": ("services:\n  web: {image: host, command: x, healthcheck: {test: 'true', interval: soon}}\n",
                     ["service 'web'", "'healthcheck.interval'", "'soon'"]),
    "limits-disagree": ("services:\n  web:\n    image: host\n    command: x\n    mem_limit: 64m\n"
                        "    deploy: {resources: {limits: {memory: 128m}}}\n",
                        ["service 'web'", "'mem_limit'", "deploy.resources.limits.memory"]),
    "bad-environment": ("services:\n  web: {image: host, command: x, environment: 5}\n",
                        ["service 'web'", "'environment'", "NAME=VALUE"]),
    "host-image-without-command": ("services:\n  web: {image: host}\n", ["service 'web'", "'command'"]),
    "not-yaml": ("services:\n  web: [\n", ["not valid YAML", "line"]),
    "name-too-long": ("services:\n  " + "w" * 70 + ": {image: host, command: x}\n",
                      ["service 'www", "'container_name'", "longer than 64"]),
    "ulimit-without-hard": ("services:\n  web: {image: host, command: x, ulimits: {nofile: {soft: 10}}}\n",
                            ["service 'web'", "'ulimits.nofile' has no 'hard'"]),
    "unknown-ulimit": ("services:\n  web: {image: host, command: x, ulimits: {files: 10}}\n",
                       ["service 'web'", "'ulimits'", "unknown 'files'"]),
    "ulimit-soft-above-hard": ("services:\n  web: {image: host, command: x, ulimits: {nofile: {soft: 9, hard: 5}}}\n",
                               ["service 'web'", "'ulimits'", "soft limit must not exceed"]),
    "required-variable": ("services:\n  web: {image: host, command: 'echo ${NOT_SET_HERE:?give it}'}\n",
                          ["service 'web'", "'command'", "NOT_SET_HERE", "give it"]),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_invalid_files_are_one_error_naming_service_and_key(case: str) -> None:
    text, needles = BAD[case]
    with pytest.raises(ComposeError) as e:
        load(text, project="p")
    msg = str(e.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, f"{n!r} not in {msg!r}"


def test_short_and_long_syntax_normalise_alike(tmp_path) -> None:
    cf = load(textwrap.dedent(f"""
        services:
          web:
            image: host
            command: busybox httpd -f -p 80
            ports: ["8080:80", "127.0.0.1:8081:81/tcp", {{target: 82, published: 8082}}, 83]
            environment: [A=1, B]
            volumes: [data:/data, "{tmp_path}:/src:ro", {{type: tmpfs, target: /run, tmpfs: {{size: 1m}}}}]
            tmpfs: /tmp2
            mem_limit: 64m
            deploy: {{resources: {{limits: {{cpus: '0.5', pids: 30}}}}}}
            restart: on-failure:3
            healthcheck: {{test: "wget -q http://127.0.0.1/", interval: 1m30s, retries: 2}}
          job:
            image: host
            entrypoint: [sh, -c]
            command: ["echo $$HOME ${{UNSET_VAR:-dflt}}"]
            environment: {{N: 1, T: true}}
            depends_on: {{web: {{condition: service_healthy}}}}
        volumes: {{data: {{}}}}
        """), project="demo", environ={})
    web, job = cf.services["web"], cf.services["job"]
    assert [str(p) for p in web.ports] == ["127.0.0.1:8080:80/tcp", "127.0.0.1:8081:81/tcp", "127.0.0.1:8082:82/tcp",
                                           "127.0.0.1:0:83/tcp"]
    assert [(m.kind, m.source, m.target, m.read_only) for m in web.volumes] == [
        ("volume", "data", "/data", False), ("bind", str(tmp_path), "/src", True), ("tmpfs", "", "/run", False),
        ("tmpfs", "", "/tmp2", False)]
    assert (web.memory, web.cpus, web.pids_limit) == (64 << 20, 0.5, 30)
    assert (web.restart.policy, web.restart.max_retries) == ("on-failure", 3)
    assert web.healthcheck is not None and web.healthcheck.test[:2] == ("/bin/sh", "-c")
    assert (web.healthcheck.interval, web.healthcheck.retries) == (90.0, 2)
    assert job.command == ("echo $HOME dflt",) and job.entrypoint == ("sh", "-c")
    assert dict(job.environment) == {"N": "1", "T": "true"}
    assert cf.levels() == [["web"], ["job"]]
    assert cf.networks["default"].name == "demo_default" and cf.volumes["data"].name == "demo_data"
    spec = P.service_spec(cf, job)
    assert spec.command == ("sh", "-c", "echo $HOME dflt") and spec.network == "demo_default"
    assert spec.network_aliases == ("job",) and spec.name == "demo-job-1"


@pytest.mark.parametrize("deps, levels", [
    ({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}, [["a"], ["b", "c"], ["d"]]),
    ({"x": ["y"], "y": [], "z": []}, [["y", "z"], ["x"]]),
])
def test_start_order_is_topological(deps, levels) -> None:
    text = "services:\n" + "".join(f"  {n}: {{image: host, command: x, depends_on: {d}}}\n" for n, d in deps.items())
    assert load(text, project="p").levels() == levels


# -- a running project ----------------------------------------------------------------------------------

APP = """
services:
  web:
    image: host
    command: ["sh", "-c", "echo served-by-web > /www/index.html; exec busybox httpd -f -p 80 -h /www"]
    volumes: [www:/www]
    ports: ["127.0.0.1:0:80"]
    healthcheck:
      test: ["CMD", "busybox", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/index.html"]
      interval: 100ms
      retries: 50
    mem_limit: 32m
    pids_limit: 20
  client:
    image: host
    command: ["sh", "-c", "while true; do busybox wget -q -O - http://web/index.html || echo miss; sleep 0.2; done"]
    depends_on: [web]
    deploy: {resources: {limits: {memory: 32m, cpus: "0.5", pids: 20}}}
  job:
    image: host
    command: ["sh", "-c", "echo job-start; busybox wget -q -O - http://web/index.html && echo job-done"]
    depends_on:
      web: {condition: service_healthy}
volumes:
  www: {}
"""


@pytest.fixture(scope="module")
def ip():
    """One IPython shell for the module, made before host_clean's snapshot (its history database and
    the like are not leftovers)."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "pycontainer_magics")
    return shell


def _networks_of(project: str) -> list[str]:
    """The project's networks (other tests may be making networks of their own meanwhile)."""
    return [n.name for n in net.list_networks() if n.name.startswith(f"{project}_")]


def _project_links(p: P.Project) -> tuple[set[str], set[str]]:
    bridges = {net.get_network(n).bridge for n in p.networks}
    veths = {ep.host_veth for sr in p.services.values() for c in sr.containers for ep in net.endpoints_of(c.id)}
    return bridges, veths


def _host_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


@live
def test_three_service_app_up_works_and_down_leaves_nothing() -> None:
    from pycontainer_magics.workloads.containers import containers
    from pycontainer_magics.workloads.volumes import list_volumes

    name = _name("app")
    p = P.up(load(APP, project=name))
    try:
        assert p.wait_for_exit("job", timeout=20) == 0
        time.sleep(0.5)  # a few client polls
        # (each a fork of busybox under 0.5 CPU: on a loaded machine the first that reaches web may come later)
        assert wait_for(lambda: "client | served-by-web" in p.logs(), 30), p.logs()
        web, client, job = (p.services[n] for n in ("web", "client", "job"))
        # the job started only after the server's first successful probe
        first_healthy = min(pr.t for pr in web.probes if pr.exit_code == 0)
        assert job.current is not None and job.current.started_at >= first_healthy
        assert web.health == "healthy" and client.running
        # the client reaches the server by its service name
        logs = p.logs()
        assert "client | served-by-web" in logs
        assert "job    | job-start" in logs and "job    | served-by-web" in logs and "job    | job-done" in logs
        lines = p.log_lines()
        assert [t for t, *_ in lines] == sorted(t for t, *_ in lines)
        # the published port, through the host's loopback
        ps = {s.service: s for s in p.ps()}
        assert ps["web"].status == "running (healthy)" and ps["client"].status == "running"
        assert ps["job"].status == "exited (0)"
        port = int(ps["web"].ports[0].split("->")[0].rsplit(":", 1)[1])
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=5).read() == b"served-by-web\n"
        assert set(ps["web"].addresses) == {f"{name}_default"}
        stats = {r["service"]: r for r in p.stats()}
        assert set(stats) == {"web", "client"} and stats["web"]["memory_limit"] == 32 << 20
        assert 0 < stats["client"]["pids"] <= 20
        bridges, veths = _project_links(p)
        assert bridges and len(veths) == 2  # the job's endpoint went with it
        assert f"{name}_www" in list_volumes()
    finally:
        removed = p.down(volumes=True, timeout=0)
    assert f"Network {name}_default  Removed" in removed and f"Volume {name}_www  Removed" in removed
    assert not (bridges | veths) & _host_links()
    assert not [n for n in net.list_networks() if n.name.startswith(name)]
    assert not [c for c in containers.list() if (c.name or "").startswith(name)]
    assert f"{name}_www" not in list_volumes()
    with pytest.raises(ComposeError, match="no compose project"):
        P.get(name)


@live
def test_restart_on_failure_restarts_n_times() -> None:
    p = P.up(load("""
services:
  flaky:
    image: host
    command: ["sh", "-c", "echo attempt; exit 3"]
    restart: on-failure:2
  steady:
    image: host
    command: ["sh", "-c", "exit 4"]
""", project=_name("rs")))
    try:
        assert p.wait(timeout=20)
        flaky, steady = p.services["flaky"], p.services["steady"]
        assert flaky.restarts == 2 and len(flaky.containers) == 3 and flaky.exit_code == 3
        assert steady.restarts == 0 and steady.exit_code == 4  # restart: "no" is the default
        assert p.logs(["flaky"]).count("flaky | attempt") == 3
        assert {s.service: s.status for s in p.ps()} == {"flaky": "exited (3)", "steady": "exited (4)"}
    finally:
        p.down(timeout=0)


@live
def test_restart_always_until_down() -> None:
    p = P.up(load("services:\n  loop: {image: host, command: [sh, -c, 'exit 0'], restart: always}\n",
                  project=_name("ra")))
    try:
        deadline = time.monotonic() + 30
        while p.services["loop"].restarts < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert p.services["loop"].restarts >= 2
    finally:
        p.down(timeout=0)
    n = p.services["loop"].restarts
    time.sleep(0.5)
    assert p.services["loop"].restarts == n  # nothing restarts after down


@live
def test_completed_successfully_and_a_failed_dependency() -> None:
    p = P.up(load("""
services:
  migrate: {image: host, command: [sh, -c, 'sleep 0.2; echo migrated']}
  app:
    image: host
    command: [sh, -c, 'echo app']
    depends_on: {migrate: {condition: service_completed_successfully}}
""", project=_name("ok")))
    try:
        assert p.wait(timeout=20)
        mig, app = p.services["migrate"].current, p.services["app"].current
        assert mig is not None and app is not None and mig.run is not None
        assert app.started_at >= mig.started_at + mig.run.duration - 0.05
    finally:
        p.down(timeout=0)
    with pytest.raises(ComposeError, match="'app': dependency 'migrate' did not complete successfully: exit code 1"):
        P.up(load("""
services:
  migrate: {image: host, command: [sh, -c, 'exit 1']}
  app:
    image: host
    command: [sh, -c, 'echo app']
    depends_on: {migrate: {condition: service_completed_successfully}}
""", project=_name("bad")))
    assert not _networks_of(_name("bad"))  # the project's network went again
    with pytest.raises(ComposeError):
        P.get(_name("bad"))


@live
def test_a_spec_error_is_raised_before_anything_exists() -> None:
    too_many = (os.cpu_count() or 1) + 1
    with pytest.raises(ComposeError, match=r"service 'b': .*--cpus"):
        P.up(load(f"services:\n  a: {{image: host, command: [/bin/true]}}\n"
                  f"  b: {{image: host, command: [/bin/true], cpus: {too_many}}}\n", project=_name("spec")))
    assert not _networks_of(_name("spec"))


@live
def test_magics_up_ps_logs_stats_down(ip) -> None:
    from IPython.core.error import UsageError

    name = _name("mg")
    cell = f"name: {name}\nservices:\n  srv: {{image: host, command: [sh, -c, 'echo hello; exec sleep 60']}}\n" \
           "  one: {image: host, command: [sh, -c, 'echo bye'], depends_on: [srv]}\n"
    cfg = ip.run_cell_magic("compose", "config", cell)
    assert list(cfg["service"]) == ["srv", "one"] and list(cfg["start_level"]) == [0, 1]
    ps = ip.run_cell_magic("compose", "up -d", cell)
    try:
        assert set(ps["service"]) <= {"srv", "one"} and ip.user_ns["_compose"].name == name
        assert ip.user_ns["_compose"].wait_for_exit("one", timeout=10) == 0
        ps = ip.run_line_magic("compose", f"ps -p {name}")
        assert list(ps["service"]) == ["srv"]
        assert list(ip.run_line_magic("compose", f"ps -a -p {name}")["status"]) == ["running", "exited (0)"]
        ls = ip.run_line_magic("compose", "ls")
        assert list(ls[ls["name"] == name]["status"]) == ["exited(1), running(1)"]
        stats = ip.run_line_magic("compose", f"stats -p {name}")
        assert list(stats["service"]) == ["srv"] and stats["pids"][0] >= 1
        with pytest.raises(UsageError, match="no such service"):
            ip.run_line_magic("compose", f"logs -p {name} nope")
        with pytest.raises(UsageError, match="is up already"):
            ip.run_cell_magic("compose", "up -d", cell)
    finally:
        ip.run_line_magic("compose", f"down -t 0 -p {name}")
    with pytest.raises(UsageError, match="'ports' entry 'abc'"):
        ip.run_cell_magic("compose", "up -d", "services: {web: {image: host, command: x, ports: [abc]}}")


def _child(name: str, end: str) -> tuple[str, str, set[str]]:
    """Run a project in a child Python that ends with `end`; (its pid, the project's bridge, its veths)."""
    code = textwrap.dedent(f"""
        import os, signal
        from pycontainer_magics import network as net
        from pycontainer_magics.workloads.compose import load, project
        p = project.up(load('''
        services:
          a: {{image: host, command: [sleep, "60"], restart: always}}
          b: {{image: host, command: [sleep, "60"], depends_on: [a]}}
        ''', project="{name}"))
        eps = [ep for sr in p.services.values() for ep in net.endpoints_of(sr.current.id)]
        print(os.getpid(), net.get_network("{name}_default").bridge, *(ep.host_veth for ep in eps), flush=True)
        {end}
        """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    pid, bridge, *veths = r.stdout.split()
    assert len(veths) == 2, r.stderr
    return pid, bridge, set(veths)


@live
def test_a_killed_kernels_project_is_pruned() -> None:
    name = _name("kill")
    pid, bridge, veths = _child(name, "os.kill(os.getpid(), signal.SIGKILL)")
    from pycontainer_magics.workloads.prune import prune
    deadline = time.monotonic() + 30
    while True:  # the containers die with their kernel (parent-death signal); then their cgroups can go
        removed = prune()  # (another test's %load_ext may prune at the same time: the end state is what counts)
        if not _cgroups_of(pid) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not [n for n in net.list_networks() if n.name == f"{name}_default"], removed
    assert not ({bridge} | veths) & _host_links()
    assert not _cgroups_of(pid)


@live
def test_projects_end_with_the_kernel() -> None:
    name = _name("exit")
    pid, bridge, veths = _child(name, "")  # a normal exit: atexit takes the project down, no prune needed
    assert not [n for n in net.list_networks() if n.name == f"{name}_default"]
    assert not ({bridge} | veths) & _host_links()
    assert not _cgroups_of(pid)


def _cgroups_of(pid: str) -> list[str]:
    out = []
    for root in ("/sys/fs/cgroup", *(f"/sys/fs/cgroup/{c}" for c in ("memory", "pids", "cpu", "cpuacct"))):
        parent = os.path.join(root, "pycontainer_magics")
        if os.path.isdir(parent):
            out += [d for d in os.listdir(parent) if d.startswith(f"{pid}-")]
    return out


@live
def test_networks_aliases_and_an_internal_network() -> None:
    p = P.up(load("""
services:
  db: {image: host, command: [busybox, httpd, -f, -p, "80", -h, /etc], networks: [back]}
  api:
    image: host
    command: [sleep, "60"]
    networks: {front: null, back: {aliases: [database-client]}}
  ui: {image: host, command: [sleep, "60"], networks: [front]}
networks:
  front: {}
  back: {internal: true}
""", project=_name("nets")))
    try:
        api, ui = p.services["api"].current, p.services["ui"].current
        assert api is not None and ui is not None
        assert set(p.ps()[1].addresses) == {p.file.networks["front"].name, p.file.networks["back"].name}
        # (db's httpd may not listen yet when up returns: tried for a while)
        fetch = "for i in $(seq 100); do busybox wget -q -O - http://db/hostname && exit 0; sleep 0.1; done; exit 1"
        r = api.exec(["sh", "-c", fetch], timeout=30)
        assert r.exit_code == 0 and r.stdout.strip() == open("/etc/hostname").read().strip(), r.stderr
        r = ui.exec(["sh", "-c", "getent hosts api >/dev/null && echo api; getent hosts database-client >/dev/null"
                                 " && echo alias; getent hosts db || echo no-db"], timeout=10)
        assert r.stdout.split() == ["api", "alias", "no-db"]
        assert net.get_network(p.file.networks["back"].name).internal
    finally:
        p.down(timeout=0)


@pytest.fixture
def image_store(tmp_path):
    """A state directory of the test's own, holding a busybox image `lab/base:1`."""
    from helpers import make_busybox_rootfs

    from pycontainer_magics.images import ImageConfig, Store

    old = os.environ.get("PYCONTAINER_STATE_DIR")
    os.environ["PYCONTAINER_STATE_DIR"] = str(tmp_path / "state")
    try:
        Store().create_image("lab/base:1", [make_busybox_rootfs(str(tmp_path / "rootfs"))],
                            ImageConfig(env=("PATH=/bin",), cmd=("sh", "-c", "echo image-cmd")), history=["busybox"])
        yield tmp_path
    finally:
        if old is None:
            del os.environ["PYCONTAINER_STATE_DIR"]
        else:
            os.environ["PYCONTAINER_STATE_DIR"] = old


@live
def test_images_from_the_store_and_from_build(image_store) -> None:
    ctx = image_store / "ctx"
    ctx.mkdir()
    (ctx / "msg").write_text("from the context\n")
    (ctx / "Dockerfile.app").write_text('FROM lab/base:1\nCOPY msg /srv/msg\nCMD ["sh", "-c", "echo built-cmd"]\n')
    out: list[str] = []
    p = P.up(load(f"""
services:
  plain: {{image: "lab/base:1"}}
  built: {{build: {{context: {ctx}, dockerfile: Dockerfile.app}}}}
  override:
    image: lab/composed:1
    build: {{context: {ctx}, dockerfile: Dockerfile.app}}
    entrypoint: [sh, -c]
    command: ["cat /srv/msg; echo $$GREETING"]  # $$: not compose interpolation
    environment: [GREETING=from-compose]
""", project=_name("img")), on_output=lambda _s, t: out.append(t))
    try:
        assert p.wait(timeout=20)
        assert "plain    | image-cmd" in p.logs() and "built    | built-cmd" in p.logs()
        # (its own lines in order: merged with the others' in time order, another service's may come between)
        assert "override | from the context\noverride | from-compose" in p.logs(["override"])
        assert any("Successfully tagged lab/composed:1" in t for t in out)
        assert {s.service: s.image for s in p.ps()}["built"] == f"{p.name}-built"
    finally:
        p.down(timeout=0)


@live
def test_attached_up_follows_the_logs_until_every_service_ends(ip, capsys: pytest.CaptureFixture[str]) -> None:
    name = _name("att")
    cell = (f"name: {name}\nservices:\n  first: {{image: host, command: [sh, -c, 'echo one; sleep 0.3; echo two']}}\n"
            "  second: {image: host, command: [sh, -c, 'echo three'], depends_on: [first]}\n")
    try:
        ps = ip.run_cell_magic("compose", "up", cell)
        out = capsys.readouterr().out
        assert "first  | one\n" in out and "first  | two\n" in out and "second | three\n" in out
        assert list(ps["status"]) == ["exited (0)", "exited (0)"]
    finally:
        ip.run_line_magic("compose", f"down -p {name}")


@live
def test_attached_up_of_a_service_that_runs_on_follows_for_a_bounded_time(ip, capsys: pytest.CaptureFixture[str],
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """`up` without -d follows the logs, but a cell must end: after --follow-for (default FOLLOW_FOR) the
    project is left running, and the cell says so."""
    import signal

    from pycontainer_magics.magics import compose as compose_magic

    def hung(signum: int, frame: object) -> None:
        raise TimeoutError("%%compose up did not return")

    name = _name("bnd")
    cell = (f"name: {name}\nservices:\n"
            "  ticker: {image: host, command: [sh, -c, 'while :; do echo tick; sleep 0.1; done']}\n")
    monkeypatch.setattr(compose_magic, "FOLLOW_FOR", 1.0)
    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    try:
        started = time.monotonic()
        ps = ip.run_cell_magic("compose", "up", cell)  # the default bound
        assert time.monotonic() - started < 15
        out, err = capsys.readouterr()
        assert "ticker | tick\n" in out and f"{name}: still running after following its logs" in err
        assert list(ps["status"]) == ["running"]
        assert list(ip.run_line_magic("compose", f"ps -p {name}")["status"]) == ["running"]
        with pytest.raises(Exception, match="is up already"):
            ip.run_cell_magic("compose", "up --follow-for 0.5s", cell)
        with pytest.raises(Exception, match="--follow-for"):
            ip.run_cell_magic("compose", "up --follow-for soon", f"name: {name}x\nservices: {{a: {{image: host}}}}\n")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        ip.run_line_magic("compose", f"down -t 0 -p {name}")


@live
def test_service_settings_reach_the_container() -> None:
    import pathlib
    import shutil
    import tempfile

    tmp_path = pathlib.Path(tempfile.mkdtemp(prefix="compose-bind-"))  # under /tmp: readable by uid 1000
    tmp_path.chmod(0o755)
    (tmp_path / "in.txt").write_text("bound\n")
    p = P.up(load(f"""
services:
  probe:
    image: host
    container_name: {_name("probe-box")}
    hostname: probe-host
    working_dir: /tmp
    user: "1000:1000"
    environment: {{GREETING: hello, COUNT: 3}}
    volumes: ["{tmp_path}:/data:ro", {{type: tmpfs, target: /scratch, tmpfs: {{size: 1m}}}}]
    mem_limit: 48m
    pids_limit: 16
    ulimits: {{nofile: {{soft: 64, hard: 128}}, nproc: 40}}
    command:
      - sh
      - -c
      - >-
        hostname; pwd; id -u; echo $$GREETING $$COUNT; cat /data/in.txt;
        touch /data/x 2>/dev/null || echo read-only; grep -c ' /scratch tmpfs ' /proc/mounts;
        echo $$(ulimit -n) $$(ulimit -Hn)
""", project=_name("set")))
    try:
        assert p.wait_for_exit("probe", timeout=20) == 0, p.logs()
        assert [line.split(" | ", 1)[1] for line in p.logs().splitlines()] == [
            "probe-host", "/tmp", "1000", "hello 3", "bound", "read-only", "1", "64 128"]
        c = p.services["probe"].current
        assert c is not None and c.name == _name("probe-box") and c.run is not None
        assert c.run.memory_limit == 48 << 20 and c.run.pids_limit == 16
    finally:
        p.down(timeout=0)
        shutil.rmtree(tmp_path)


@live
def test_an_unhealthy_dependency_fails_up_and_removes_the_project() -> None:
    with pytest.raises(ComposeError, match=r"service 'job': dependency 'db' is unhealthy \(last probe exit code 1"):
        P.up(load("""
services:
  db:
    image: host
    command: [sleep, "60"]
    healthcheck: {test: ["CMD-SHELL", "echo not yet; exit 1"], interval: 50ms, retries: 2}
  job: {image: host, command: [/bin/true], depends_on: {db: {condition: service_healthy}}}
""", project=_name("sick")))
    assert not _networks_of(_name("sick"))
    with pytest.raises(ComposeError):
        P.get(_name("sick"))
