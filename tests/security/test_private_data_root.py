"""HIGH 3 of issue 16: the state and run directories hold root-owned set-uid files and device nodes from image
layers, and volumes containers wrote into; they must be private (0700), or any local user runs those set-uid
binaries as root by their store path."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (set-uid files owned by root, another user)")


def _as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *argv],
                          capture_output=True, text=True, timeout=30)


def _setuid_layer() -> bytes:
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w") as tf:
        ti = tarfile.TarInfo("bin")
        ti.type, ti.mode = tarfile.DIRTYPE, 0o755
        tf.addfile(ti)
        with open("/bin/busybox", "rb") as f:
            data = f.read()
        ti = tarfile.TarInfo("bin/suid-shell")
        ti.size, ti.mode, ti.uid, ti.gid = len(data), 0o4755, 0, 0
        tf.addfile(ti, io.BytesIO(data))
    return b.getvalue()


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every user can enter, all the way from / (pytest's tmp_path is under a 0700 directory, which
    would hide the state dir whatever its own mode): only the state dir's own mode protects what is below."""
    d = tempfile.mkdtemp(prefix="pcm-open-", dir="/var/tmp")
    os.chmod(d, 0o755)
    yield Path(d)
    from pycontainer_magics.runtime.cleanup import settle
    from pycontainer_magics.runtime.pool import pool

    # the background clean-up of the runs made there, and what was prepared there for a next run (made after
    # the test, its scratch dir re-created this directory once it was removed: five were left in /var/tmp)
    settle()
    pool.drain()
    settle()
    shutil.rmtree(d)


@root
def test_the_store_and_volumes_are_out_of_other_users_reach(open_dir, monkeypatch):
    from pycontainer_magics.images import Store
    from pycontainer_magics.workloads.volumes import create_volume

    tmp_path = open_dir
    monkeypatch.setenv("PYCONTAINER_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PYCONTAINER_RUN_DIR", str(tmp_path / "run"))
    img = Store().create_image("lab/suid:1", [_setuid_layer()])
    suid = os.path.join(img.lower_dirs()[0], "bin/suid-shell")
    assert os.stat(suid).st_mode & 0o4777 == 0o4755  # the layer kept its set-uid bit (as it must)
    volume = create_volume("data")
    with open(os.path.join(volume, "planted"), "w") as f:
        f.write("a container wrote this\n")
    from pycontainer_magics.runtime.state import scratch_dir

    scratch_dir()
    for top in ("state", "run"):
        assert os.stat(tmp_path / top).st_mode & 0o777 == 0o700, top
    for path in (suid, os.path.join(volume, "planted")):
        probe = _as_nobody("/bin/busybox", "stat", path)
        assert probe.returncode != 0 and "Permission denied" in probe.stderr, (path, probe.stdout, probe.stderr)
    probe = _as_nobody(suid, "id", "-u")
    assert probe.returncode != 0 and "0" not in probe.stdout.split(), probe


@root
def test_a_looser_state_dir_is_tightened(tmp_path, monkeypatch):
    from pycontainer_magics.paths import run_dir, state_dir

    for name in ("state", "run"):
        (tmp_path / name).mkdir(mode=0o755)
        (tmp_path / name).chmod(0o755)
    monkeypatch.setenv("PYCONTAINER_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PYCONTAINER_RUN_DIR", str(tmp_path / "run"))
    assert state_dir() == str(tmp_path / "state") and run_dir() == str(tmp_path / "run")
    assert os.stat(tmp_path / "state").st_mode & 0o777 == 0o700
    assert os.stat(tmp_path / "run").st_mode & 0o777 == 0o700


@root
def test_a_data_root_another_user_owns_is_refused(tmp_path, monkeypatch):
    """/tmp/pycontainer_magics-UID (the rootless run dir without XDG_RUNTIME_DIR) can be made by anyone first."""
    from pycontainer_magics.paths import DataRootNotPrivate, run_dir

    squat = tmp_path / "squatted"
    squat.mkdir()
    os.chown(squat, 65534, 65534)
    monkeypatch.setenv("PYCONTAINER_RUN_DIR", str(squat))
    with pytest.raises(DataRootNotPrivate, match=r"squatted belongs to uid 65534.*PYCONTAINER_RUN_DIR"):
        run_dir()


@root
def test_a_remapped_container_root_passes_through_and_nobody_else(open_dir, monkeypatch):
    """--userns remap: container root (host uid/gid 100000) resolves the volume's path below the data root while
    it mounts it; the data root becomes 0710 root:<that gid> (Docker's layout) and stays closed to other users."""
    from pycontainer_magics.runtime import ContainerSpec, run
    from pycontainer_magics.runtime.spec import Mount

    monkeypatch.setenv("PYCONTAINER_STATE_DIR", str(open_dir / "state"))
    monkeypatch.setenv("PYCONTAINER_RUN_DIR", str(open_dir / "run"))
    from pycontainer_magics.workloads.volumes import create_volume

    data = os.path.join(create_volume("vol"), "note")
    with open(data, "w") as f:
        f.write("in the volume\n")
    r = run(ContainerSpec(command=("sh", "-c", "id -u; cat /data/note"), userns="remap",
                          mounts=(Mount("vol", "/data", kind="volume"),)))
    assert r.exit_code == 0 and r.stdout == "0\nin the volume\n", r.stderr
    for top in ("state", "run"):
        st = os.stat(open_dir / top)
        assert (st.st_mode & 0o777, st.st_uid) == (0o710, 0) and st.st_gid != 0, top
    probe = _as_nobody("/bin/busybox", "cat", data)
    assert probe.returncode != 0 and "Permission denied" in probe.stderr


@pytest.mark.rootless
@root
def test_a_rootless_users_data_root_is_private(tmp_path):
    import sys

    from helpers import run_as, throwaway_user

    name = f"pcm-sec{os.getpid() % 100000}"
    with throwaway_user(name):
        code = ("import os; from pycontainer_magics.paths import state_dir, run_dir; "
                "print(oct(os.stat(state_dir()).st_mode & 0o777), oct(os.stat(run_dir()).st_mode & 0o777))")
        p = run_as(name, ["env", f"HOME=/home/{name}", sys.executable, "-c", code])
        if "No module named" in p.stderr:
            pytest.skip("the checkout is not readable by an unprivileged user")
        assert p.stdout.split() == ["0o700", "0o700"], p.stderr
