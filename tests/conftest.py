"""Shared fixtures.

cgroups: `cgroup_hierarchy` gives a hierarchy under a test-only parent and asserts that the test left
no cgroup behind (and that nothing outside our parent appeared in any hierarchy root).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest

CGROUP_TEST_PARENT = "pycontainer_magics_test"
CGROUP_ROOT = "/sys/fs/cgroup"


def cgroup_version_available(version: str) -> bool:
    """Is the layout for `version` ("v1"/"v2") the one mounted here?"""
    from pycontainer_magics.linux.cgroups import detect_layout

    layout = detect_layout()
    return layout in ("hybrid", "legacy") if version == "v1" else layout == "unified"


def require_cgroup(version: str) -> None:
    """Skip the test unless we are root on a host with the `version` layout mounted."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if not cgroup_version_available(version):
        from pycontainer_magics.linux.cgroups import detect_layout

        pytest.skip(f"cgroup {version} not mounted here (layout {detect_layout()})")


def _stray_dirs(marker: str, depth: int = 3) -> list[str]:
    """Directories named like our test cgroups anywhere but under our parent (top `depth` levels of
    every hierarchy). Other users of the machine create and remove cgroups concurrently, so only
    names carrying `marker` are ours to look for."""
    found: list[str] = []

    def walk(d: str, level: int) -> None:
        try:
            with os.scandir(d) as it:
                subdirs = [e for e in it if e.is_dir(follow_symlinks=False)]
        except OSError:
            return
        for e in subdirs:
            if e.name == CGROUP_TEST_PARENT:
                continue
            if marker in e.name:
                found.append(e.path)
            if level < depth:
                walk(e.path, level + 1)

    walk(CGROUP_ROOT, 1)
    return found


@contextlib.contextmanager
def cgroup_test_hierarchy(version: str, test_name: str) -> Iterator[tuple[Any, str]]:
    """(hierarchy under a test-only parent, a per-test name prefix). Skips when the layout for
    `version` is not mounted or we are not root; afterwards asserts that no cgroup was left behind and
    that nothing appeared outside our parent in any hierarchy root."""
    from pycontainer_magics.linux.cgroups import open_hierarchy

    require_cgroup(version)
    h = open_hierarchy(CGROUP_TEST_PARENT)
    assert h.version == version
    prefix = re.sub(r"[^A-Za-z0-9]+", "_", test_name)[-40:] + "-"
    yield h, prefix
    left = h.list()
    for name in left:  # clean up anyway, then fail
        h.get(name).remove()
    h.remove_parent()
    assert not left, f"cgroups left behind: {left}"
    stray = _stray_dirs(prefix)
    assert not stray, f"created outside our parent: {stray}"


@pytest.fixture
def cgroup_hierarchy(request: pytest.FixtureRequest) -> Iterator[tuple[Any, str]]:
    """Indirectly parametrized with "v1" or "v2": see cgroup_test_hierarchy."""
    with cgroup_test_hierarchy(request.param, request.node.name) as value:
        yield value


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Tables a test publishes (the OCI conformance suite's, side by side with runc and crun)."""
    import sys
    mod = sys.modules.get("test_oci_conformance")
    for text in getattr(mod, "RESULTS", []):
        terminalreporter.write_sep("=", "OCI conformance")
        terminalreporter.write_line(text)
    _report_swept(terminalreporter)


# -- tests that must run here ------------------------------------------------------------------------------
# PYCONTAINER_REQUIRE=rootless,cgroup2 (tests/run-all.sh sets it for CI's runs): a test carrying one of those
# markers that skips FAILS instead, with its skip reason, so a CI run cannot pass by skipping them (a
# checkout the throw-away user cannot read, a guest whose cgroup v2 was not mounted). A rootless test may
# still skip as not applicable to this host's cgroup layout ("... not mounted here").
REQUIRED = {m.strip() for m in os.environ.get("PYCONTAINER_REQUIRE", "").split(",") if m.strip()}
LAYOUT_SKIP = "not mounted here"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if not REQUIRED or not report.skipped or hasattr(report, "wasxfail"):
        return
    required = [m for m in REQUIRED if item.get_closest_marker(m) is not None]
    if not required:
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if LAYOUT_SKIP in reason and not any(m.startswith("cgroup") for m in required):
        return
    report.outcome = "failed"
    report.longrepr = (f"skipped, but this run requires the {'/'.join(required)} tests to run "
                       f"(PYCONTAINER_REQUIRE={','.join(sorted(REQUIRED))}): {reason}")


# -- the session's own state and run directories (tests/suite_state.py) -------------------------------------
def pytest_configure(config: pytest.Config) -> None:
    import suite_state

    suite_state.make()


@pytest.hookimpl(trylast=True)  # after pytest's own, which tears down the fixtures still up (-x, Ctrl-C)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import sys

    import suite_state

    left = suite_state.remove()
    if left:
        print("\nthe suite's state and run directories left:\n  " + "\n  ".join(left), file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    for note in suite_state.defaults_made():
        print(f"\n{note}", file=sys.stderr)


# -- links of throw-away state dirs ------------------------------------------------------------------------
# A state dir's default bridge outlives its containers, as dockerd's docker0 does. Tests that run on a state
# dir of their own (tmp_path, a daemon's root) would leave one bridge each, holding a subnet of the automatic
# pool, until later tests that ask for a subnet find it taken. After each module (its fixtures torn down
# first), the links it left for a state dir under pytest's temp root or one that no longer exists go.
SWEPT: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def _sweep_throwaway_links(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield
    if os.geteuid() != 0:
        return
    try:
        import pyroute2  # noqa: F401  # (the network package itself imports without it: it loads it on first use)

        from pycontainer_magics.network import links, networks
        from pycontainer_magics.network.netns import iproute
    except ImportError:
        return
    base = str(tmp_path_factory.getbasetemp())
    with iproute() as ipr:
        ours = [(str(link.get("ifname")), networks.alias_state_dir(link.get("IFLA_IFALIAS")))
                for link in ipr.get_links()]
    for name, path in ours:
        if path is not None and (path.startswith(base + os.sep) or not os.path.isdir(path)):
            if links.delete_link(name):
                SWEPT.append(f"{name} ({path})")


def _report_swept(terminalreporter: Any) -> None:
    if SWEPT:
        terminalreporter.write_sep("-", f"links of throw-away state dirs removed after their modules: {len(SWEPT)}")
