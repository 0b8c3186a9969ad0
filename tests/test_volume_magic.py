"""`%container volume ls | create | rm`: named volumes from a notebook, as `docker volume` has them."""

from __future__ import annotations

import os

import pytest
from helpers import host_clean  # noqa: F401

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


@pytest.fixture
def ip(tmp_path, monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.setenv("PYCONTAINER_STATE_DIR", str(tmp_path / "state"))
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "pycontainer_magics")
    return shell


def test_volume_ls_create_rm_and_in_use(ip, host_clean, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    # host_clean after ip: the shell's own files (its history database) are open before the snapshot
    from IPython.core.error import UsageError

    from pycontainer_magics.workloads.containers import containers

    assert ip.run_line_magic("container", "volume ls").empty
    ip.run_line_magic("container", "volume create made")
    ip.run_line_magic("container", "--quiet -v used:/data -- sh -c 'echo kept > /data/f'")  # made on first use
    ls = ip.run_line_magic("container", "volume ls")
    assert list(ls["name"]) == ["made", "used"]
    assert open(os.path.join(ls["path"][1], "f")).read() == "kept\n"
    ip.run_line_magic("container", "--detach --quiet --name holder -v used:/data -- sleep 30")
    try:
        with pytest.raises(UsageError, match="volume used is in use by container holder"):
            ip.run_line_magic("container", "volume rm used")
    finally:
        containers.remove("holder", force=True)
    capsys.readouterr()
    ip.run_line_magic("container", "volume rm made used")
    assert capsys.readouterr().out == "made\nused\n"
    assert ip.run_line_magic("container", "volume ls").empty
    with pytest.raises(UsageError, match="no such volume: gone"):
        ip.run_line_magic("container", "volume rm gone")
    with pytest.raises(UsageError, match="invalid volume name"):
        ip.run_line_magic("container", "volume create 'bad/name'")
    with pytest.raises(UsageError, match="usage: %container volume"):
        ip.run_line_magic("container", "volume rm")
