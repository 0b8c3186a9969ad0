"""runtime/plan_cache.py: a re-run's launch plan is the last one's — with this run's own cgroup mounts — while
everything it was planned from is the same; anything that changes the plan makes a fresh one."""

from __future__ import annotations

import dataclasses
import os
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import host_clean  # noqa: F401

from pycontainer_magics.runtime import ContainerSpec, host_masks, plan_cache, rootfs, run
from pycontainer_magics.runtime.parse import build_spec
from pycontainer_magics.runtime.run import _limits, hierarchy, plan_launch

pytestmark = [pytest.mark.root, pytest.mark.cgroup2,
              pytest.mark.skipif(os.geteuid() != 0, reason="plans are kept for root's host-image runs")]

MiB = 2**20


@pytest.fixture
def cgroups(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    # The host's masks are kept (the same scan) even if /home or /etc changed a moment ago (a CI machine making
    # its test user): what is compared here is the plan's own reuse.
    monkeypatch.setattr(host_masks, "RACY", 0.0)
    h = hierarchy()
    if h is None:
        pytest.skip("no cgroup hierarchy of ours here")
    spec = ContainerSpec(python_code="pass", memory=64 * MiB)
    made = [h.create(f"pcm-plan-{os.getpid()}-{i}", _limits(spec)) for i in range(2)]
    plan_cache.clear()
    yield made
    plan_cache.clear()
    for cg in made:
        cg.remove()


class Counting:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, spec: ContainerSpec, cg: Any, g: Any) -> Any:
        self.calls += 1
        return plan_launch(spec, cg, g)


def _same_launch(a: Any, b: Any) -> None:
    """b, a launch the cache gave, is a (made afresh)."""
    for f in dataclasses.fields(a):
        if f.name == "ahead_ops":  # kept with it: what rootfs.ahead_ops says of the plan it now has
            assert a.ahead_ops is None and b.ahead_ops is not None and b.ahead_ops == rootfs.ahead_ops(b.plan)
        elif f.name == "ahead_host_sourced":  # and whether the plan past them binds host paths
            assert a.ahead_host_sourced is None and b.ahead_host_sourced is not None
            assert b.ahead_host_sourced == rootfs.host_sourced(b.plan, rootfs.ahead_ops(b.plan))
        elif f.name != "python_globals":
            assert getattr(a, f.name) == getattr(b, f.name), f.name
    assert a.python_globals is b.python_globals


def test_a_re_run_gets_the_last_plan_with_its_own_cgroup_mounts(cgroups: list[Any]) -> None:
    spec = build_spec(python_code="pass", memory=64 * MiB, tmpfs=["/scratch"])
    g: dict[str, Any] = {}
    make = Counting()
    hp1, l1 = plan_cache.plan(spec, cgroups[0], g, make)
    hp2, l2 = plan_cache.plan(spec, cgroups[1], g, make)
    assert make.calls == 1 and hp2 is hp1 and l2 is not l1
    fresh_hp, fresh = plan_launch(spec, cgroups[1], g)
    assert fresh_hp == hp2
    _same_launch(fresh, l2)  # the ops included: the second cgroup's directories, not the first's
    assert any(cgroups[1].name in (op.fallback or "") for op in l2.plan.ops)
    assert not any(cgroups[0].name in (op.fallback or "") for op in l2.plan.ops)
    # What a run sets on its launch stays its own.
    l2.premounted, l2.env_changes, l2.export_layer = (1, 2), ((), ()), "/x"
    _, l3 = plan_cache.plan(spec, cgroups[0], g, make)
    assert make.calls == 1 and l3.premounted == () and l3.env_changes is None and l3.export_layer is None
    _same_launch(plan_launch(spec, cgroups[0], g)[1], l3)


def test_a_cgroup_made_ahead_brings_its_view_worked_out(cgroups: list[Any]) -> None:
    """The pool's thread works out the mount operations of a cgroup it makes for the next run (cgroup_made): the
    run's kept plan takes those, and is the plan made afresh for that cgroup."""
    spec = build_spec(python_code="pass", memory=64 * MiB)
    g: dict[str, Any] = {}
    make = Counting()
    plan_cache.plan(spec, cgroups[0], g, make)
    plan_cache.cgroup_made(cgroups[1])
    made, ahead = plan_cache._ops_ahead[cgroups[1].name]
    assert made is cgroups[1]
    _, l2 = plan_cache.plan(spec, cgroups[1], g, make)
    assert make.calls == 1 and l2.plan is not None
    named = [op for op in ahead if op.fallback is not None and cgroups[1].name in op.fallback]  # (its directories)
    assert named and all(any(op is x for x in l2.plan.ops) for op in named)  # (those objects: not made again)
    _same_launch(plan_launch(spec, cgroups[1], g)[1], l2)


@pytest.mark.usefixtures("host_clean")
def test_the_pool_works_out_the_view_of_the_next_python_cells_cgroup() -> None:
    from pycontainer_magics.runtime import cleanup
    from pycontainer_magics.runtime.pool import COMMAND, PYTHON, pool

    plan_cache.clear()
    for spec in (ContainerSpec(python_code="pass", memory=64 * MiB), ContainerSpec(command=("/bin/true",))):
        run(spec, python_globals={} if spec.python_code else None)
        cleanup.settle()
        pool.wait_idle()
    python, command = pool.ready_cgroup(kind=PYTHON), pool.ready_cgroup(kind=COMMAND)
    assert python is not None and command is not None
    assert plan_cache._ops_ahead[python[1].name][0] is python[1]
    assert command[1].name not in plan_cache._ops_ahead  # (a command's plan is not kept: nothing to work out)
    pool.drain()


def test_what_the_plan_depends_on_makes_a_fresh_one(cgroups: list[Any], monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Any) -> None:
    spec = build_spec(python_code="pass", memory=64 * MiB)
    g: dict[str, Any] = {}
    make = Counting()

    def again(expected: int, globals_: Any = g, spec_: ContainerSpec = spec) -> None:
        plan_cache.plan(spec_, cgroups[0], globals_, make)
        assert make.calls == expected

    again(1)
    again(1)
    monkeypatch.setenv("PCM_PLAN_CACHE", "1")  # the cell's environment is the caller's
    again(2)
    _, launch = plan_cache.plan(spec, cgroups[0], g, make)
    assert launch.env["PCM_PLAN_CACHE"] == "1"
    monkeypatch.chdir(tmp_path)  # the working directory is kept in the masks over /root and /home
    again(3)
    again(3)
    monkeypatch.setattr(host_masks, "_scans", {})  # a fresh scan of the host that finds the same masks: kept
    again(3)
    (tmp_path / "secret").write_text("x")  # what the masks hide changed
    monkeypatch.setattr(host_masks, "HIDDEN", (*host_masks.HIDDEN, str(tmp_path / "secret")))
    monkeypatch.setattr(host_masks, "_scans", {})
    again(4)
    again(5, globals_={})  # another caller's globals
    again(5, spec_=build_spec(python_code="pass", memory=64 * MiB))  # an equal spec (a library caller's new one)
    again(6, spec_=build_spec(python_code="pass", memory=65 * MiB))  # another spec
    bound = build_spec(python_code="pass", memory=64 * MiB, volume=[f"{tmp_path}:/data"])
    plan_cache.plan(bound, cgroups[0], g, make)
    plan_cache.plan(bound, cgroups[0], g, make)
    assert make.calls == 8  # a bind mount (its source looked up on the host): never kept


def test_a_python_cells_reused_plan_leaves_the_hosts_answers_for_later(cgroups: list[Any], tmp_path: Any) -> None:
    target = tmp_path / "scratch"
    spec = build_spec(python_code="pass", memory=64 * MiB, tmpfs=[str(target)])
    g: dict[str, Any] = {}
    make = Counting()
    _, first = plan_cache.plan(spec, cgroups[0], g, make, defer_host=True)
    assert first.mode == "direct" and first.host_check is None  # made now, from answers taken now
    _, again = plan_cache.plan(spec, cgroups[1], g, make, defer_host=True)
    assert make.calls == 1 and again.host_check is not None and again.host_check()
    _, asked = plan_cache.plan(spec, cgroups[1], g, make)
    assert make.calls == 1 and asked.host_check is None  # not deferred: asked on the spot (and they hold)
    target.mkdir()  # the host's answer to one of the plan's lookups changed
    assert not again.host_check()
    _, later = plan_cache.plan(spec, cgroups[1], g, make, defer_host=True)
    assert make.calls == 1 and later.host_check is not None and not later.host_check()  # (found out after the fork)
    _, fresh = plan_cache.plan(spec, cgroups[1], g, make)  # (what the run then asks for: run.py)
    assert make.calls == 2 and fresh.host_check is None
    _, kept = plan_cache.plan(spec, cgroups[1], g, make, defer_host=True)
    assert make.calls == 2 and kept.host_check is not None and kept.host_check()
    # What the caller itself changes is still compared on the spot: a fresh plan, not a check for later.
    os.environ["PCM_PLAN_CACHE_DEFER"] = "1"
    try:
        _, moved = plan_cache.plan(spec, cgroups[1], g, make, defer_host=True)
    finally:
        del os.environ["PCM_PLAN_CACHE_DEFER"]
    assert make.calls == 3 and moved.host_check is None
    # A command's launch (the holder forks its PID 1, nothing waits for a word) is checked on the spot.
    command = build_spec(command=["true"], memory=64 * MiB)
    plan_cache.plan(command, cgroups[0], None, make, defer_host=True)
    _, cmd = plan_cache.plan(command, cgroups[0], None, make, defer_host=True)
    assert make.calls == 4 and cmd.mode == "nested" and cmd.host_check is None


@pytest.mark.usefixtures("host_clean")
def test_a_python_cell_whose_host_changed_under_its_plan_starts_again(tmp_path: Any,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A reused plan's check of the host comes after PID 1's fork: when it fails, PID 1 goes before anything of the
    cell's, and the run starts again from a fresh plan — a path hidden since the last run is hidden in this one; and
    the cell run again knows nothing of that (its own exception is its own)."""
    import importlib

    run_module = importlib.import_module("pycontainer_magics.runtime.run")
    secret = tmp_path / "secret"
    monkeypatch.setattr(host_masks, "RACY", 0.0)  # (a scan kept even when /home changed a moment ago)
    monkeypatch.setattr(host_masks, "HIDDEN", (*host_masks.HIDDEN, str(secret)))
    monkeypatch.setattr(host_masks, "_scans", {})  # (scans kept from before looked for what HIDDEN had then)
    make = Counting()
    monkeypatch.setattr(run_module, "plan_launch", make)
    checked: list[bool | None] = []  # what each PID 1's gate heard from its plan's host check (None: none)
    real = run_module._before_pid1_goes

    def spy(holder: Any, launch: Any, st_w: int) -> None:
        checked.append(None if launch.host_check is None else launch.host_check())
        real(holder, launch, st_w)

    monkeypatch.setattr(run_module, "_before_pid1_goes", spy)
    plan_cache.clear()
    code = (f"import os\nprint(os.path.isdir({str(tmp_path)!r}), os.path.exists({str(secret)!r}))\n"
            "if boom:\n    raise ValueError('the cell\\'s own')")
    spec = build_spec(python_code=code, memory=48 * MiB)
    g: dict[str, Any] = {"boom": False}
    runs = []
    try:
        for i in range(4):
            if i == 2:
                secret.write_text("the host's")  # between two runs of the same cell
            if i == 3:
                secret.unlink()  # and again, for a run whose cell raises
                g["boom"] = True
            runs.append(run(spec, python_globals=g))
    finally:
        plan_cache.clear()
    seen = [r.stdout.split() for r in runs]
    assert [r.exit_code for r in runs[:3]] == [0, 0, 0], [(r.stderr, r.error) for r in runs]
    # The path hidden from the third run on is not seen (vacuous where the test's directory is not part of the
    # containers' root at all — the cgroup v2 VM's /tmp is a file system of its own — and the rest holds all the same).
    assert [s[1] for s in seen] == ["False"] * 4, seen
    assert checked == [None, True, False, None, False, None]  # made; kept and held; kept, failed, made again (x2)
    assert make.calls == 3
    assert [any(n.startswith("planned again") for n in r.notes) for r in runs] == [False, False, True, True]
    assert runs[3].exit_code == 1 and runs[3].error_name == "ValueError"
    assert "the cell's own" in (runs[3].error or "") and "_HostChanged" not in (runs[3].error or "")
    assert "During handling" not in (runs[3].error or "")


@pytest.mark.usefixtures("host_clean")
def test_a_cells_environment_changes_are_worked_out_again_when_either_side_changes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """launch.environ_changes keeps its last answer for the same two environments (a re-run cell asks again with
    both unchanged): a change on either side, even in the same dict, is seen."""
    from pycontainer_magics.runtime.launch import environ_changes

    monkeypatch.setenv("PCM_ENV_A", "1")
    monkeypatch.delenv("PCM_ENV_B", raising=False)
    env = {k: v for k, v in os.environ.items() if k != "PCM_ENV_A"} | {"PCM_ENV_B": "2"}
    first = environ_changes(env)
    assert first == (("PCM_ENV_A",), (("PCM_ENV_B", "2"),))
    assert environ_changes(env) is first  # (kept)
    monkeypatch.setenv("PCM_ENV_B", "2")  # the caller's side
    assert environ_changes(env) == (("PCM_ENV_A",), ())
    env["PCM_ENV_C"] = "3"  # the container's, the same dict
    assert environ_changes(env) == (("PCM_ENV_A",), (("PCM_ENV_C", "3"),))
    monkeypatch.delenv("PCM_ENV_A")
    assert environ_changes(env) == ((), (("PCM_ENV_C", "3"),))


def test_a_cell_is_compiled_once_by_its_caller_and_what_compiling_says_is_the_cells_own(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A Python cell's code is compiled when its run is planned, by the caller: a re-run of the kept plan does
    not compile it again, in the caller or in PID 1. A cell that does not compile (a SyntaxError), or whose
    compiling warns, is compiled by PID 1 as before: the error is the cell's, the warning in its stderr."""
    from pycontainer_magics.runtime import launch

    plan_cache.clear()
    here: list[int] = []
    real = launch._compile
    caller = os.getpid()

    def counted(source: str) -> Any:
        if os.getpid() == caller:
            here.append(1)
        else:  # (PID 1: its writes to files stay in its writable layer, its stderr comes back)
            sys.stderr.write("compiled by PID 1\n")
        return real(source)

    monkeypatch.setattr(launch, "_compile", counted)
    spec = build_spec(python_code="x = 6 * 7\nprint(x)", memory=64 * MiB)
    g: dict[str, Any] = {}
    for _ in range(3):
        r = run(spec, python_globals=g)
        assert (r.exit_code, r.stdout, r.stderr) == (0, "42\n", ""), r.error
    assert here == [1]  # once, here, when the plan was made; kept with it
    r = run(build_spec(python_code="print('before')\nif True print(1)", memory=64 * MiB), python_globals={})
    assert r.exit_code == 1 and r.stdout == "" and r.error_name == "SyntaxError", (r.stdout, r.error)
    assert (r.error or "").startswith('  File "<container>", line 2\n'), r.error  # (none of our frames before it)
    assert r.stderr.startswith("compiled by PID 1\n")
    seen: list[str] = []

    def shown(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        if os.getpid() == caller:
            seen.append(str(message))
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    with warnings.catch_warnings():  # (pytest records warnings: shown here, as they are outside it)
        warnings.simplefilter("default")
        warnings.showwarning = shown
        r = run(build_spec(python_code="x = 1\nprint(x is 1)", memory=64 * MiB), python_globals={})
    assert (r.exit_code, r.stdout) == (0, "True\n") and "<container>:2: SyntaxWarning" in r.stderr, r.stderr
    assert r.stderr.startswith("compiled by PID 1\n") and seen == []  # (nothing of it in the caller)
    # A cell longer than the caller compiles ahead: compiled by PID 1, under the container's limits.
    long = "x = 6 * 7\n" + "# a long cell\n" * (launch.COMPILED_AHEAD_MAX // 14 + 1) + "print(x)"
    assert len(long) > launch.COMPILED_AHEAD_MAX
    tried = len(here)
    r = run(build_spec(python_code=long, memory=64 * MiB), python_globals={})
    assert (r.exit_code, r.stdout, r.stderr) == (0, "42\n", "compiled by PID 1\n"), r.error
    assert len(here) == tried  # (not tried here)


def test_python_cells_run_again_see_their_own_cgroup() -> None:
    plan_cache.clear()
    spec = build_spec(python_code="print(open('/proc/self/cgroup').read().strip().splitlines()[0], "
                                  "open('/sys/fs/cgroup/memory/memory.limit_in_bytes').read().strip() "
                                  "if os.path.exists('/sys/fs/cgroup/memory') else "
                                  "open('/sys/fs/cgroup/memory.max').read().strip())", memory=48 * MiB)
    outs = []
    for _ in range(3):
        r = run(spec, python_globals={"os": os})
        assert r.exit_code == 0, r.stderr
        outs.append(r.stdout.split())
    for cg_line, limit in outs:
        assert cg_line.endswith(":/") and int(limit) == 48 * MiB  # its own cgroup namespace, its own limit


def test_a_networked_re_run_gets_the_last_plan_with_its_own_hosts_file(cgroups: list[Any], tmp_path: Any) -> None:
    """On a network, the run's own files are bound (its hosts file names the run): the last plan is kept with this
    run's binds in place of the last run's, and equals a plan made afresh; other targets make a fresh one."""
    from pycontainer_magics.runtime.spec import Mount

    spec = build_spec(python_code="pass", memory=64 * MiB, network="bridge")
    files = []
    for name in ("hosts-a", "hosts-b", "resolv"):
        (tmp_path / name).write_text("")
        files.append(str(tmp_path / name))

    def own(hosts: str, target: str = "/etc/hosts") -> tuple[Mount, ...]:
        return (Mount(hosts, target, read_only=True), Mount(files[2], "/etc/resolv.conf", read_only=True))

    g: dict[str, Any] = {}
    make = Counting()
    _, l1 = plan_cache.plan(spec, cgroups[0], g, make, own(files[0]))
    _, l2 = plan_cache.plan(spec, cgroups[1], g, make, own(files[1]))
    assert make.calls == 1
    _same_launch(plan_launch(spec.with_(mounts=own(files[1])), cgroups[1], g)[1], l2)
    binds = {op.target: op.source for op in l2.plan.ops if op.action == "bind"}
    assert binds["/etc/hosts"] == files[1] and binds["/etc/resolv.conf"] == files[2], binds
    assert {op.source for op in l1.plan.ops if op.action == "bind"} >= {files[0]}  # (the first run's, unchanged)
    plan_cache.plan(spec, cgroups[0], g, make, own(files[0], "/etc/hosts2"))
    assert make.calls == 2  # another target: planned afresh


@pytest.mark.usefixtures("host_clean")
def test_a_spec_made_with_lists_runs_and_is_not_kept() -> None:
    """A library caller's ContainerSpec(command=[...]) is not hashable: it runs, planned afresh each time."""
    plan_cache.clear()
    spec = ContainerSpec(command=["sh", "-c", "echo listed"], memory=64 * MiB)  # type: ignore[arg-type]
    for _ in range(2):
        r = run(spec)
        assert (r.exit_code, r.stdout) == (0, "listed\n"), r.stderr
    assert plan_cache._entries == {}


@pytest.mark.usefixtures("host_clean")
def test_a_stop_asked_for_while_a_run_finds_its_plan_stale_ends_it(tmp_path: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C that comes while the aborted attempt's PID 1 waits (it is held until the relay's loop, which that
    attempt never reaches) ends the run there: no second start."""
    import importlib
    import signal

    run_module = importlib.import_module("pycontainer_magics.runtime.run")
    target = tmp_path / "scratch"
    spec = build_spec(python_code="print('ran')", memory=48 * MiB, tmpfs=[str(target)])
    g: dict[str, Any] = {}
    plan_cache.clear()
    try:
        assert run(spec, python_globals=g).stdout == "ran\n"
        target.mkdir()  # the kept plan no longer fits the host
        make = Counting()
        monkeypatch.setattr(run_module, "plan_launch", make)
        gates: list[bool | None | str] = []
        real = run_module._before_pid1_goes

        def stopped_at_the_gate(holder: Any, launch: Any, st_w: int) -> None:
            gates.append(None if launch.host_check is None else launch.host_check())
            os.kill(os.getpid(), signal.SIGINT)  # the notebook's stop button, now
            gates.append("held")  # (the run holds it: no KeyboardInterrupt here)
            real(holder, launch, st_w)

        monkeypatch.setattr(run_module, "_before_pid1_goes", stopped_at_the_gate)
        with pytest.raises(KeyboardInterrupt):
            run(spec, python_globals=g)
        assert gates == [False, "held"] and make.calls == 0  # the check failed; nothing planned or started again
    finally:
        plan_cache.clear()
