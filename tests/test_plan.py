"""The setup plan as data (runtime/plan.py): the ordered steps of a launch, shown without running anything
(`%%container --explain`), kept after a run (`_container.plan`), interpreted by PID 1, and read by the OCI
export."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from helpers import host_clean, our_cgroups  # noqa: F401

from pycontainer_magics.oci.bundle import config_for
from pycontainer_magics.runtime import plan as P
from pycontainer_magics.runtime import run
from pycontainer_magics.runtime.parse import build_spec
from pycontainer_magics.runtime.rootfs import MountOp
from pycontainer_magics.runtime.run import bundle_plan, explain

root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def _kinds(plan: P.SetupPlan) -> list[type]:
    return [type(s) for s in plan.steps]


def _index(plan: P.SetupPlan, kind: type, action: str | None = None) -> int:
    return next(i for i, s in enumerate(plan.steps)
                if isinstance(s, kind) and (action is None or getattr(s, "action", None) == action))


def test_the_steps_come_in_the_order_a_launch_takes_them():
    spec = build_spec(command=["true"], memory="64m", ulimit=["nofile=100:200"], user="1000:1000", workdir="/w",
                      hostname="lab", time_offset=["boottime=60"])
    plan = bundle_plan(spec)
    order = [_index(plan, P.Unshare), _index(plan, P.MapIds), _index(plan, P.JoinCgroup),
             _index(plan, MountOp, "mount"), _index(plan, MountOp, "mask"), _index(plan, P.SetRlimit),
             _index(plan, P.Chdir), _index(plan, P.KeepCapabilities), _index(plan, P.SetUser),
             _index(plan, P.NoNewPrivs), _index(plan, P.Seccomp), _index(plan, P.Exec)]
    assert order == sorted(order)
    assert _kinds(plan)[-1] is P.Exec and _kinds(plan)[-2] is P.Seccomp  # the filter last, then exec
    assert plan.of(P.Unshare)[0].time_offsets == (("boottime", 60),)
    assert plan.of(P.SetUser) == [P.SetUser(1000, 1000)] and plan.of(P.Chdir) == [P.Chdir("/w")]
    assert dict(plan.of(P.JoinCgroup)[0].limits)["memory"] == 64 * 2**20
    rows = plan.rows()
    assert [r[0] for r in rows] == list(range(1, len(plan.steps) + 1))
    text = plan.table()
    assert "seccomp" in text and "no_new_privs" in text and "rlimit        nofile soft 100 hard 200" in text
    assert "<table>" in plan._repr_html_()


def test_the_oci_export_is_read_from_the_plan():
    spec = build_spec(command=["sh", "-c", "id"], user="1000:1000", security_opt=["unmask=/proc/kcore"],
                      cap_drop="NET_RAW",
                      volume=["/tmp:/data:ro"], pids_limit=10)
    c = config_for(spec)
    plan = bundle_plan(spec)
    masks = [s.target for s in plan.of(MountOp) if s.action == "mask"]
    assert c["linux"]["maskedPaths"] == masks and "/proc/kcore" not in masks  # --security-opt unmask counts
    assert c["process"]["user"] == {"uid": 1000, "gid": 1000}
    assert "CAP_NET_RAW" not in c["process"]["capabilities"]["bounding"]
    assert c["linux"]["resources"] == {"pids": {"limit": 10}}
    binds = [m for m in c["mounts"] if m["type"] == "bind"]
    assert binds == [{"destination": "/data", "type": "bind", "source": "/tmp", "options": ["rbind", "ro"]}]
    # a step removed from the plan is gone from the config: the export has no description of its own
    assert not any(m["destination"] == "/dev/null" for m in c["mounts"])  # devnodes are the runtime's to make


@pytest.fixture
def ip() -> Iterator[object]:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "pycontainer_magics")
    yield shell


@pytest.mark.root
@root
def test_explain_shows_the_plan_and_runs_nothing(ip, host_clean):  # noqa: F811
    before = our_cgroups()
    volume = f"explained-{os.getpid()}"
    plan = ip.run_line_magic("container", f"--explain --memory 64m --hostname lab -v {volume}:/data -- "
                             "sh -c 'echo ran > /x'")
    assert isinstance(plan, P.SetupPlan) and ip.user_ns["_container"] is plan
    ops = [op for _, _, op, _ in plan.rows()]
    assert ops[0] == "unshare" and "pivot_root" in ops and ops[-1] == "exec"
    assert plan.of(P.SetHostname) == [P.SetHostname("lab")] and plan.of(P.JoinCgroup)[0].path is None
    assert our_cgroups() == before and not os.path.exists("/x")
    from pycontainer_magics.workloads.volumes import list_volumes
    assert volume not in list_volumes()  # named, not made


@pytest.mark.root
@root
def test_a_run_keeps_the_plan_it_ran(host_clean):  # noqa: F811
    spec = build_spec(command=["sh", "-c", "cat /proc/self/status | grep -E '^(NoNewPrivs|Seccomp):'; pwd"],
                      workdir="/tmp", memory="64m")
    r = run(spec)
    assert r.exit_code == 0 and r.stdout.split() == ["NoNewPrivs:", "1", "Seccomp:", "2", "/tmp"]
    plan = r.plan
    assert isinstance(plan, P.SetupPlan) and plan.of(P.JoinCgroup)[0].path == r.id
    assert plan.of(P.Chdir) == [P.Chdir("/tmp")] and plan.of(P.NoNewPrivs) and plan.of(P.Seccomp)
    assert [type(s) for s in explain(spec).steps] == [type(s) for s in plan.steps]


@pytest.mark.root
@root
def test_pid1_interprets_the_privilege_steps(host_clean):  # noqa: F811
    # Without no_new_privs and seccomp in the plan, PID 1 does neither: the steps are what runs.
    spec = build_spec(command=["sh", "-c", "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status"],
                      security_opt=["seccomp=unconfined"]).with_(no_new_privileges=False)
    r = run(spec)
    assert not r.plan.of(P.NoNewPrivs) and not r.plan.of(P.Seccomp)
    assert r.stdout.split() == ["NoNewPrivs:", "0", "Seccomp:", "0"]
