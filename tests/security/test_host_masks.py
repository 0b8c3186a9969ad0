"""MED 6 of issue 16: with the host's / as the image, a default container no longer reads the host's secrets:
password hashes are locked, /root and /home are empty but for what the container needs (the working directory,
this Python), private keys and this project's state are hidden; `--security-opt unmask=` lifts a mask."""

from __future__ import annotations

import os
import sys
import time

import pytest
from helpers import host_clean  # noqa: F401

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("host_clean"),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (the host image as root)")]


@pytest.fixture
def planted(tmp_path, monkeypatch):
    """A fake user home under /home with an SSH key and a project directory the notebook runs in, and a
    token in root's home: made for the test, removed after."""
    home = f"/home/pcm-sec-{os.getpid()}"
    os.makedirs(f"{home}/.ssh")
    os.makedirs(f"{home}/lecture/.ssh")  # a project's own .ssh directory stays (the user put it there)
    for path, text in ((f"{home}/.ssh/id_ed25519", "PRIVATE KEY"), (f"{home}/notes.txt", "private notes"),
                       (f"{home}/lecture/data.csv", "a,b\n1,2"), (f"/root/.pcm-sec-token-{os.getpid()}", "TOKEN")):
        with open(path, "w") as f:
            f.write(text)
    monkeypatch.chdir(f"{home}/lecture")
    yield home
    import shutil

    shutil.rmtree(home)
    os.unlink(f"/root/.pcm-sec-token-{os.getpid()}")


def _sh(script: str, **kw: object) -> str:
    from pycontainer_magics.runtime import run
    from pycontainer_magics.runtime.parse import build_spec

    r = run(build_spec(command=["sh", "-c", script], **kw))  # type: ignore[arg-type]
    assert r.exit_code == 0, r.stderr
    return r.stdout


def test_the_host_image_hides_the_hosts_secrets(planted):
    pid = os.getpid()
    out = _sh(f"""
        grep -c '^root:[$]' /etc/shadow; grep -c '^root:[*]:' /etc/shadow   # no hash, a locked entry
        cat /root/.pcm-sec-token-{pid} 2>/dev/null || echo "token: hidden"
        cat {planted}/.ssh/id_ed25519 2>/dev/null || echo "ssh key: hidden"
        cat {planted}/notes.txt 2>/dev/null || echo "notes: hidden"
        cat {planted}/lecture/data.csv; echo
        ls -d {planted}/lecture/.ssh
        ls {os.environ.get('PYCONTAINER_STATE_DIR', '/var/lib/pycontainer_magics')} 2>/dev/null || echo "state: hidden"
        ls /etc/ssh/ | grep -c '_key$' || true
        echo written > /root/new && cat /root/new
        {sys.executable} -c 'import json; print("python: ok")'
    """)
    assert out.split("\n") == ["0", "1", "token: hidden", "ssh key: hidden", "notes: hidden", "a,b", "1,2",
                               f"{planted}/lecture/.ssh", "state: hidden", "0", "written", "python: ok", ""], out


def test_unmask_lifts_a_mask(planted):
    pid = os.getpid()
    out = _sh(f"cat /root/.pcm-sec-token-{pid}; echo; cat /proc/keys >/dev/null && wc -c < /proc/keys",
              security_opt=["unmask=/root:/proc/keys"])
    lines = out.split()
    assert lines[0] == "TOKEN" and int(lines[1]) > 0, out
    everything = _sh(f"cat {planted}/.ssh/id_ed25519", security_opt=["unmask=ALL"])
    assert everything == "PRIVATE KEY"


def test_bad_unmask_is_one_line():
    from pycontainer_magics.runtime import SpecError
    from pycontainer_magics.runtime.parse import build_spec

    with pytest.raises(SpecError, match="unmask=root: expected ALL or absolute paths"):
        build_spec(command=["true"], security_opt=["unmask=root"])


def test_a_secret_made_between_two_cells_is_hidden_in_the_second(planted, monkeypatch):
    """The scan of the host is reused from cell to cell only while every directory it looked into is unchanged: a
    credential store created after one cell is hidden from the next (here with no racy window, so that the reuse
    itself is what is checked: the first cell's scan is kept)."""
    from pycontainer_magics.runtime import host_masks

    monkeypatch.setattr(host_masks, "RACY", 0.0)
    host_masks._scans.clear()
    assert _sh(f"ls -A {planted}/lecture") == ".ssh\ndata.csv\n"
    assert host_masks._scans  # kept
    time.sleep(0.05)  # (past the directory timestamps' granularity)
    os.makedirs(f"{planted}/.aws")
    with open(f"{planted}/.aws/credentials", "w") as f:
        f.write("SECRET")
    assert _sh(f"cat {planted}/.aws/credentials 2>/dev/null || echo hidden") == "hidden\n"
    with open(f"{planted}/lecture/.netrc", "w") as f:  # in the working directory, a kept home's subdirectory
        f.write("machine x password y")
    assert _sh(f"ls -A {planted}/lecture") == ".netrc\n.ssh\ndata.csv\n"  # (not a home: not masked)


def test_the_scan_is_reused_only_while_nothing_it_looked_at_changed(planted, monkeypatch):
    from pycontainer_magics.runtime import host_masks

    listed: list[str] = []
    real = os.listdir
    monkeypatch.setattr(host_masks.os, "listdir", lambda p: listed.append(p) or real(p))
    kw = {"cwd": f"{planted}/lecture", "data_dirs": ["/var/lib/pycontainer_magics"]}
    host_masks._scans.clear()
    first = host_masks.masks(**kw)
    assert (f"{planted}/.ssh", "whiteout") in first and listed
    listed.clear()
    assert host_masks.masks(**kw) == first and listed  # its home was just made (racy): scanned again, not kept
    monkeypatch.setattr(host_masks, "RACY", 0.0)
    host_masks.masks(**kw)
    listed.clear()
    assert host_masks.masks(**kw) == first and not listed  # kept, and nothing changed: reused
    time.sleep(0.05)
    os.makedirs(f"{planted}/.kube")
    again = host_masks.masks(**kw)
    assert listed and (f"{planted}/.kube", "whiteout") in again
    assert host_masks.masks(cwd="/", data_dirs=["/var/lib/pycontainer_magics"]) != again  # other arguments: own scan


def test_a_store_added_under_a_put_back_mtime_is_still_seen(planted, monkeypatch):
    """A tool that adds a name and puts the directory's mtime back (tar -x, rsync -t, touch -r) cannot put its ctime
    back: the scan is made again."""
    from pycontainer_magics.runtime import host_masks

    monkeypatch.setattr(host_masks, "RACY", 0.0)
    kw = {"cwd": f"{planted}/lecture", "data_dirs": ["/var/lib/pycontainer_magics"]}
    host_masks._scans.clear()
    host_masks.masks(**kw)
    st = os.stat(planted)
    time.sleep(0.05)
    os.makedirs(f"{planted}/.aws")
    os.utime(planted, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (f"{planted}/.aws", "whiteout") in host_masks.masks(**kw)


def test_a_relative_state_directory_is_scanned_without_end(tmp_path):
    """(A relative PYCONTAINER_STATE_DIR that does not exist: watching it through its parents once looped forever.)"""
    import subprocess

    code = ("from pycontainer_magics.runtime import host_masks as m; "
            "print(m.masks(cwd='/', data_dirs=['relnope/x']) is not None)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=20)
    assert out.stdout.strip() == "True", out.stderr
