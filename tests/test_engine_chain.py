"""The lecture's engine chain (notebook 06) leaves nothing behind: a private dockerd whose containerd shims and
plugins make directories under /run whatever its roots say; those not there before go with the block."""

from __future__ import annotations

import os
import shutil

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(shutil.which("dockerd") is None, reason="dockerd is not installed (apt-get install "
                                 "docker.io)")]


def test_the_engine_chain_leaves_nothing_under_run() -> None:
    from pycontainer_magics.lab.engine_chain import ENGINE_RUN_DIRS, EngineChain, engine_run_dirs_present

    before = engine_run_dirs_present()
    with EngineChain() as chain:
        ours = chain.observe("pyc")
        during = engine_run_dirs_present()
    assert ours.by_role("shim").pid > 0
    assert "/run/containerd/s" in during or "/run/containerd/s" in before  # (the shims' sockets: what it cleans)
    left = [d for d in ENGINE_RUN_DIRS if os.path.isdir(d) and d not in before]
    assert not left, f"left under /run: {left}"
