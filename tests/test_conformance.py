"""Conformance, measured: one bundle with a checker as its process, run by this project, runc and crun;
every row the runtime spec fixes must agree."""

from __future__ import annotations

import os
import shutil

import pytest
from helpers import CrunRunner, host_clean, make_busybox_rootfs  # noqa: F401

from pycontainer_magics.oci import conformance as C
from pycontainer_magics.oci.bundle import config_for
from pycontainer_magics.runtime import ContainerSpec

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


@pytest.mark.usefixtures("host_clean")
def test_three_runtimes_agree_where_the_spec_fixes_the_answer(tmp_path) -> None:
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed (apt-get install runc)")
    rootfs = make_busybox_rootfs(str(tmp_path / "rootfs"))
    spec = ContainerSpec(command=("true",), hostname="conf", memory=64 * 2**20, pids_limit=32, rootfs=rootfs)
    bundle = C.bundle_with_checker(str(tmp_path / "bundle"), config_for(spec, rootfs))
    observations = [C.observe_ours(bundle), C.observe_with("runc", ["runc"])(bundle)]
    if shutil.which("crun") is None:
        pytest.skip("crun is not installed (apt-get install crun)")
    with CrunRunner() as crun:
        observations.append(C.observe_with("crun", crun.prefix)(bundle))
    assert [o.error for o in observations] == [None, None, None], observations
    rows = C.compare(observations)
    fixed = {r["key"]: r for r in rows if r["spec_fixes"]}
    assert {"hostname", "uid_map", "status.CapEff", "status.CapBnd", "status.NoNewPrivs", "cgroup.memory",
            "cgroup.pids", "masked./proc/keys", "readonly./proc/sys", "dev.null", "devlink.fd"} <= set(fixed)
    differ = {k: {o.runtime: o.values.get(k) for o in observations} for k, r in fixed.items() if not r["same"]}
    assert differ == {}
    assert fixed["hostname"]["pycontainer"] == "conf" and fixed["cgroup.pids"]["runc"] == "32"
