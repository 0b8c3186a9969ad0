"""The escape-probe suite (lab/escape_probes.py): every probe is blocked in a default container, as root and
rootless; loosening the container on purpose lets the probes through (so they can fail); runc with its default
spec, side by side, for notebook 10's table."""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap

import pytest
from helpers import host_clean  # noqa: F401

from pycontainer_magics.lab import escape_probes as ep

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
PYTHON = "/usr/bin/python3"
pytestmark = pytest.mark.skipif(not os.path.exists(PYTHON), reason="the probes run the host's /usr/bin/python3")


def _blocked(results: list[ep.Result]) -> dict[str, bool]:
    return {r.probe: r.blocked for r in results}


@pytest.mark.root
@root_only
@pytest.mark.usefixtures("host_clean")
def test_every_probe_is_blocked_in_a_default_container():
    results = ep.run_ours()
    assert [r.probe for r in results] == [p.name for p in ep.PROBES]
    escaped = [f"{r.probe}: {r.detail}" for r in results if not r.blocked]
    assert not escaped, escaped


@pytest.mark.root
@root_only
@pytest.mark.usefixtures("host_clean")
def test_the_probes_see_a_loosened_container():
    """Each layer loosened on purpose lets its probes through: the probes can fail."""
    unconfined = _blocked(ep.run_ours(security_opt=["seccomp=unconfined", "unmask=ALL"], pids_limit="-1",
                                      storage_opt=["size=unlimited"]))
    assert not any(unconfined[p] for p in ("unshare -U", "keyctl", "io_uring", "AF_VSOCK socket", "fork bomb",
                                           "filling the disk")), unconfined
    admin = _blocked(ep.run_ours(cap_add=["SYS_ADMIN"], share=["pid"]))
    assert not admin["mount"] and not admin["host processes"], admin


@pytest.mark.root
@root_only
@pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed")
def test_side_by_side_with_runcs_default_spec():
    ours, runc = ep.run_ours(), ep.run_runc()
    rows = ep.side_by_side(ours, runc)
    assert all(row["pycontainer_magics"].startswith("blocked") for row in rows)
    theirs = _blocked(runc)
    # runc's default spec has no seccomp profile and no pids limit, and its root is the host's disk
    assert not theirs["unshare -U"] and not theirs["keyctl"] and not theirs["fork bomb"]
    assert theirs["mount"] and theirs["device node"] and theirs["block device"]  # capabilities, devices cgroup


@pytest.mark.rootless
@root_only
def test_every_probe_is_blocked_rootless():
    """As an unprivileged user (rootless: a user namespace of the user's own). Without a delegated cgroup the
    pids limit cannot be had: that one probe is reported, not asserted."""
    from helpers import run_as, throwaway_user

    name = f"pcm-probe{os.getpid() % 100000}"
    with throwaway_user(name):
        code = textwrap.dedent("""
            import json
            from pycontainer_magics.lab import escape_probes as ep
            print("RESULTS=" + json.dumps([r.__dict__ for r in ep.run_ours()]))
        """)
        p = run_as(name, ["env", f"HOME=/home/{name}", sys.executable, "-c", code], timeout=120)
        if "No module named" in p.stderr:
            pytest.skip("the checkout is not readable by an unprivileged user")
        line = next((x for x in p.stdout.splitlines() if x.startswith("RESULTS=")), None)
        assert line is not None, p.stderr[-2000:]
        results = {r["probe"]: r for r in json.loads(line[8:])}
    escaped = [f"{n}: {r['detail']}" for n, r in results.items() if not r["blocked"] and n != "fork bomb"]
    assert not escaped, escaped
