"""Rootless use: a freshly created unprivileged user runs containers with everything the kernel allows
without root (all namespaces, overlay, pivot_root) and gets clear errors for what needs root."""

from __future__ import annotations

import json
import os
import pwd
import sys
import textwrap
from collections.abc import Iterator

import pytest
from helpers import run_as, throwaway_user

pytestmark = [pytest.mark.rootless, pytest.mark.skipif(os.geteuid() != 0, reason="creates a user: needs root")]
USER = "pcm-rootless"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def user() -> Iterator[str]:
    """A fresh unprivileged user, removed afterwards with its home directory."""
    with throwaway_user(USER):
        probe = run_as(USER, [sys.executable, "-c", "import pycontainer_magics"])
        if probe.returncode != 0:
            pytest.skip(f"the checkout is not readable by an unprivileged user: {probe.stderr.strip()[-200:]}")
        yield USER


def container(user: str, body: str) -> dict:
    """Run `body` (which sets `result`) in a Python process of `user`; return `result`."""
    script = "import json, os\nfrom pycontainer_magics.runtime import *\n" + textwrap.dedent(body) + \
        "\nprint('RESULT=' + json.dumps(result))"
    p = run_as(user, ["env", f"HOME={pwd.getpwnam(user).pw_dir}", sys.executable, "-c", script])
    for line in p.stdout.splitlines():
        if line.startswith("RESULT="):
            return json.loads(line[7:])
    raise AssertionError(f"no result: rc={p.returncode} stdout={p.stdout[-500:]} stderr={p.stderr[-2000:]}")


def test_rootless_container_has_all_namespaces_and_an_overlay(user: str) -> None:
    res = container(user, """
        r = run(ContainerSpec(command=("sh", "-c", "id -u; cat /proc/self/uid_map; hostname; echo $$; "
                                       "echo x > /etc/rootless-added; ls /sys/class/net"), hostname="rl"))
        result = {"out": r.stdout, "err": r.stderr, "iso": [n.isolated for n in r.namespaces],
                  "diff": [[d.kind, d.path] for d in r.diff], "uid": os.getuid()}
    """)
    out = res["out"].split()
    assert out[0] == "0" and out[1:4] == ["0", str(res["uid"]), "1"], res
    assert out[4:6] == ["rl", "1"]
    assert out[6:] == ["lo"]
    assert all(res["iso"]) and len(res["iso"]) == 8
    assert ["A", "/etc/rootless-added"] in res["diff"]
    assert not os.path.exists("/etc/rootless-added")


def test_rootless_python_cell_and_outputs(user: str) -> None:
    res = container(user, """
        r = run(ContainerSpec(python_code="import os\\ny = os.getpid()", outputs=("y",)), python_globals={})
        result = {"y": r.outputs.get("y"), "code": r.exit_code, "error": r.error}
    """)
    assert res == {"y": 1, "code": 0, "error": None}


def test_rootless_limits_without_delegation_fail_clearly(user: str) -> None:
    res = container(user, """
        try:
            run(ContainerSpec(command=("true",), memory=64 * 2**20))
            result = "ran"
        except LaunchError as e:
            result = str(e)
    """)
    assert "need a writable cgroup" in res


def test_rootless_remap_is_refused_with_a_reason(user: str) -> None:
    res = container(user, """
        try:
            run(ContainerSpec(command=("true",), userns="remap"))
            result = "ran"
        except LaunchError as e:
            result = str(e)
    """)
    assert "needs root" in res


def test_rootless_diff_lists_top_level_additions_but_not_mount_points(user: str) -> None:
    """Rootless, / is a tmpfs holding one overlay per top-level directory: what a container adds at the top
    level is a change like any other (as with root's single overlay), the mount points made for it are not."""
    res = container(user, """
        import tempfile
        from pycontainer_magics.runtime.parse import build_spec
        d = tempfile.mkdtemp()
        r = run(build_spec(command=["sh", "-c", "echo hi > /greeting; mkdir -p /newdir/sub; rm /etc/hostname"],
                           volume=[f"{d}:/data"], tmpfs=["/scratchy"]))
        result = {"code": r.exit_code, "diff": [[e.kind, e.path] for e in r.diff]}
    """)
    assert res["code"] == 0
    assert res["diff"] == [["C", "/etc"], ["D", "/etc/hostname"], ["A", "/greeting"], ["A", "/newdir"],
                           ["A", "/newdir/sub"]]


@pytest.mark.slow
def test_getting_started_notebook_runs_unprivileged(user: str) -> None:
    """notebooks/00-getting-started.ipynb under nbval as an unprivileged user with user namespaces. Cells
    tagged `needs-root` check what only root gets here (limits, networks): they are skipped; the cells that
    ask for those features stop with their one-line reason, which nbval --nbval-lax lets pass."""
    import shutil
    import tempfile

    import nbformat

    d = tempfile.mkdtemp(prefix="pcm-nb-")
    try:
        nb = nbformat.read(os.path.join(REPO, "notebooks", "00-getting-started.ipynb"), as_version=4)
        skipped = 0
        for cell in nb.cells:
            tags = cell.metadata.get("tags", [])
            if "needs-root" in tags:
                cell.metadata["tags"] = [*tags, "nbval-skip"]
                skipped += 1
        assert skipped >= 1
        nbformat.write(nb, os.path.join(d, "00-getting-started.ipynb"))
        shutil.copy(os.path.join(REPO, "notebooks", "sanitize.cfg"), d)
        uid = pwd.getpwnam(user).pw_uid
        for p in [d, *(os.path.join(d, f) for f in os.listdir(d))]:
            os.chown(p, uid, -1)
        home = pwd.getpwnam(user).pw_dir
        cmd = (f"cd {d} && exec {sys.executable} -m pytest -p no:cacheprovider -q --nbval-lax "
               "--nbval-sanitize-with sanitize.cfg 00-getting-started.ipynb")
        p = run_as(user, ["env", f"HOME={home}", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "sh", "-c", cmd], timeout=300)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
        assert " passed" in p.stdout and "failed" not in p.stdout
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_rootless_limited_kernel_refuses_in_one_line_without_a_writable_cgroup(user: str) -> None:
    """The limited kernel's provisioner checks before launching: no kernel process, a reason that says
    what would work."""
    res = container(user, """
        import tempfile
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_client.manager import KernelManager
        from pycontainer_magics.kernel import install_kernel, parse_limits
        prefix = tempfile.mkdtemp()
        install_kernel(parse_limits("1G"), prefix=prefix, name="lim")
        km = KernelManager(kernel_name="lim", kernel_spec_manager=KernelSpecManager(
            kernel_dirs=[prefix + "/share/jupyter/kernels"]))
        try:
            km.start_kernel()
            result = {"started": km.provisioner.pid}
            km.shutdown_kernel(now=True)
        except Exception as e:
            result = {"error": f"{type(e).__name__}: {e}", "has_kernel": km.has_kernel}
    """)
    assert res.get("has_kernel") is False, res
    assert res["error"].startswith("RuntimeError: the limited kernel needs a writable cgroup (/sys/fs/cgroup/")
    assert "PYCONTAINER_CGROUP_PARENT" in res["error"] and "\n" not in res["error"]


@pytest.mark.slow
def test_rootless_limits_after_following_the_printed_delegation_advice(user: str) -> None:
    """Limits without root (cgroup v1 here; v2: tests/test_cgroups.py in the VM): the error says what root
    runs (computed from the directories the run touches: every controller's, cpuset filled), root runs
    exactly that, and the same process's next run gets its limits (the OOM killer ends a 200 MiB hog under
    48 MiB), as does `pycontainer run` from it. The delegated parent lives under the tests' own cgroup
    parent and is removed afterwards."""
    from conftest import CGROUP_TEST_PARENT  # type: ignore[import-not-found]
    from helpers import follow_delegation_advice

    from pycontainer_magics.linux.cgroups import detect_layout

    if detect_layout() not in ("hybrid", "legacy"):
        pytest.skip("the cgroup v1 case: cgroup v1 not mounted here "
                    "(v2: test_v2_delegation_advice_followed_by_an_unprivileged_uid)")
    parent = f"{CGROUP_TEST_PARENT}/{user}-delegated"
    script, res = follow_delegation_advice(user, parent, ["env", f"HOME={pwd.getpwnam(user).pw_dir}"])
    for c in ("memory", "cpu", "cpuacct", "cpuset", "pids", "freezer"):  # each one the run touches
        if os.path.isdir(f"/sys/fs/cgroup/{c}"):
            assert f"/sys/fs/cgroup/{c}/{parent}" in script, (c, script)
    assert "/sys/fs/cgroup/devices/" not in script  # not writable without root: not used
    assert {k: res[k] for k in ("oom", "code", "limit", "version")} == {
        "oom": True, "code": 137, "limit": 48 * 2**20, "version": "v1"}, res
    assert res["cli"][:2] == [0, "ok\n"], res["cli"]


def test_rootless_kube_play_probes_the_pods_loopback(user: str) -> None:
    """Without root, an httpGet probe reaches the pod's loopback too (the socket is made by a child that joins
    the pod's user namespace, then its network namespace), and hostUsers: false is a note: the pod's root is
    the user already."""
    res = container(user, """
        import time
        from pycontainer_magics.kube import play as K
        text = '''
        apiVersion: v1
        kind: Pod
        metadata: {name: rlkube}
        spec:
          hostUsers: false
          terminationGracePeriodSeconds: 0
          containers:
          - name: c
            image: host
            command: [python3, -m, http.server, --bind, 127.0.0.1, --directory, /tmp, "8081"]
            readinessProbe: {httpGet: {port: 8081, path: /}, periodSeconds: 1}
        '''
        p = K.play(text, name="rlkube")
        try:
            for _ in range(300):
                if [s.ready for s in p.ps()] == [True]:
                    break
                time.sleep(0.1)
            result = {"ready": [s.ready for s in p.ps()], "events": [e.message for e in p.events],
                      "notes": p.notes}
        finally:
            p.down(timeout=0)
    """)
    assert res["ready"] == [True], res
    assert not [m for m in res["events"] if "not permitted" in m], res
    assert any("hostUsers: false: without root" in n for n in res["notes"]), res


def test_rootless_run_it_gets_a_terminal(user: str) -> None:
    """`pycontainer run -it -- sh` without root: the shell's terminal is the container's own /dev/pts/0 (its
    devpts made in the user's namespaces), `exit 5` is the exit status, the user's terminal is put back."""
    pexpect = pytest.importorskip("pexpect")
    from helpers import as_user_argv

    home = pwd.getpwnam(user).pw_dir  # the user's own: it writes its terminal settings there
    before, after = os.path.join(home, "stty-before"), os.path.join(home, "stty-after")
    cli = os.path.join(os.path.dirname(sys.executable), "pycontainer")
    argv = as_user_argv(user, ["env", f"HOME={home}", "PYCONTAINER_NO_DAEMON=1", "/bin/sh",
                               "-c", f"stty -g > {before}; {cli} run -it -- sh; echo status=$?; stty -g > {after}"])
    sh = pexpect.spawn(argv[0], argv[1:], timeout=60, encoding="utf-8", dimensions=(30, 90))
    sh.expect(r"# ")
    sh.sendline("tty; id -u; stty size")
    sh.expect(r"\r\n/dev/pts/0\r\n0\r\n30 90\r\n")
    sh.expect(r"# ")
    sh.sendline("exit 5")
    sh.expect(r"status=5\r\n")
    sh.expect(pexpect.EOF)
    sh.close()
    with open(before) as b, open(after) as a:
        assert b.read() == a.read()


def test_rootless_commands_with_host_names_take_the_pid1_prepared_for_them(user: str) -> None:
    # A PID 1 prepared ahead takes the run from the caller, its host name set first by the caller in the holder's
    # UTS namespace; rootless the caller cannot (CAP_SYS_ADMIN is needed in its own user namespace too): the holder
    # sets it and hands the run over. Each command gets its own name either way, and the one prepared PID 1.
    res = container(user, """
        PREPARED = "PID 1 was prepared ahead (cgroup, namespaces, filesystems)"
        import time
        from pycontainer_magics.runtime.pool import pool
        out = []
        for name in ("one", "two", None, "four"):
            r = run(ContainerSpec(command=("sh", "-c", "hostname; echo $$"), hostname=name))
            out.append([r.exit_code, r.stdout.split(), any(label == PREPARED for label, _ in r.timeline)])
            deadline = time.monotonic() + 30
            while ((h := pool.holders().get((None, "command"))) is None or h.parked is None) \\
                    and time.monotonic() < deadline:
                time.sleep(0.01)
        result = out
    """)
    assert [r[0] for r in res] == [0, 0, 0, 0], res
    names = [r[1][0] for r in res]
    assert names[0::3] == ["one", "four"] and names[1] == "two" and names[2] not in ("one", "two", "four"), res
    assert [r[1][1] for r in res] == ["1"] * 4, res
    assert [r[2] for r in res[1:]] == [True, True, True], res  # (the first found nothing prepared)
