"""An exec into a container whose PID 1 ends while its namespaces are being opened (a probe's exec as the container
restarts): the exec fails with one line and leaves none of the namespace fds it had opened."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from pycontainer_magics.workloads import exec as wexec

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root (new namespaces)")]


def test_pid1_gone_between_two_namespaces_leaves_no_fd(monkeypatch: pytest.MonkeyPatch) -> None:
    proc = subprocess.Popen(["unshare", "--ipc", "--uts", "--net", "sleep", "30"])
    try:
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{proc.pid}/ns/net") == os.readlink("/proc/self/ns/net"):
            assert time.monotonic() < deadline, "unshare did not make its namespaces"
            time.sleep(0.01)
        real_open = os.open

        def open_until_net(path: str, *args: object, **kwargs: object) -> int:
            if path == f"/proc/{proc.pid}/ns/net":  # (the IPC and UTS namespaces before it were opened)
                raise FileNotFoundError(path)
            return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

        before = set(os.listdir("/proc/self/fd"))
        monkeypatch.setattr(wexec.os, "open", open_until_net)
        with pytest.raises(wexec.ExecError, match=f"PID 1 = {proc.pid}. is not running"):
            wexec.exec_in(proc.pid, None, ("true",), env={}, capabilities=frozenset())
        monkeypatch.undo()
        left = {f: os.readlink(f"/proc/self/fd/{f}") for f in set(os.listdir("/proc/self/fd")) - before
                if os.path.exists(f"/proc/self/fd/{f}")}
        assert not {f: t for f, t in left.items() if t.startswith(("ipc:", "uts:", "net:"))}, left
    finally:
        proc.kill()
        proc.wait()
