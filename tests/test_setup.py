"""The README's set-up as a newcomer meets it: the lab command as root (no sudo needed) and as a user
with sudo, the test command's install stage through sudo, the suite from a checkout other users cannot
enter with an interpreter of its own, the cgroup v2 VM from a checkout under /tmp, and the rootless
install route as another user from a checkout root has built in."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator

import pytest
from helpers import REPO, run_as, throwaway_user, wait_for

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="creates users, installs: needs root")]
SKIP = {".venv", ".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", "build"}


def copy_checkout(dst: str) -> str:
    """The checkout's files as a clone has them (tracked and new ones, nothing ignored: no .venv, caches)."""
    p = subprocess.run(["git", "-C", REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                       capture_output=True, text=True)
    if p.returncode == 0:
        for rel in filter(None, p.stdout.split("\0")):
            src = os.path.join(REPO, rel)
            if os.path.lexists(src):
                os.makedirs(os.path.join(dst, os.path.dirname(rel)), exist_ok=True)
                shutil.copy2(src, os.path.join(dst, rel), follow_symlinks=False)
    else:  # not a git checkout
        shutil.copytree(REPO, dst, symlinks=True, dirs_exist_ok=True,
                        ignore=lambda d, names: [n for n in names if n in SKIP or n.endswith(".egg-info")])
    return dst


def tree(top: str) -> dict[str, tuple[int, int]]:
    """Every path under top with its mode and mtime (what a build must not change)."""
    out = {}
    for d, dirs, files in os.walk(top):
        for n in dirs + files:
            st = os.lstat(os.path.join(d, n))
            out[os.path.relpath(os.path.join(d, n), top)] = (st.st_mode, st.st_mtime_ns)
    return out


def chown_tree(top: str, uid: int, gid: int) -> None:
    os.chown(top, uid, gid)
    for d, dirs, files in os.walk(top):
        for n in dirs + files:
            os.chown(os.path.join(d, n), uid, gid, follow_symlinks=False)


# -- the suite from anywhere, with any interpreter (issue: 10 failures from /tmp with pyenv's python) ---


@pytest.mark.rootless
def test_rootless_tests_pass_from_a_private_checkout_with_its_own_interpreter() -> None:
    """A checkout in a directory others cannot enter (a 0700 home, mktemp under /tmp) whose .venv is its
    own: the throw-away user must still run the venv's interpreter and import the checkout."""
    import site

    private = tempfile.mkdtemp(prefix="pcm-private-", dir="/var/tmp")  # 0700
    try:
        co = copy_checkout(os.path.join(private, "checkout"))
        venv = os.path.join(co, ".venv")
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
        lib = subprocess.run([os.path.join(venv, "bin", "python"), "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True)
        with open(os.path.join(lib.stdout.strip(), "deps.pth"), "w") as f:  # the copy, then our dependencies
            f.write("\n".join([co, *site.getsitepackages()]) + "\n")
        p = subprocess.run([os.path.join(venv, "bin", "python"), "-m", "pytest", "-p", "no:cacheprovider", "-q",
                            "tests/test_rootless.py", "-k", "all_namespaces_and_an_overlay or python_cell_and_outputs"],
                           cwd=co, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0 and "2 passed" in p.stdout, p.stdout[-3000:] + p.stderr[-1000:]
    finally:
        shutil.rmtree(private, ignore_errors=True)


@pytest.mark.slow
def test_cgroup2_vm_runs_a_checkout_under_tmp() -> None:
    """The guest mounts a fresh /tmp: a checkout (and interpreter) there is bind-mounted back."""
    vm = os.path.join(REPO, "tests", "vm", "run-in-cgroup2-vm")
    if not (shutil.which("qemu-system-x86_64") and any(f.startswith("vmlinuz-") for f in os.listdir("/boot"))):
        pytest.skip("qemu-system-x86 and linux-image-amd64 are not installed")
    d = tempfile.mkdtemp(prefix="pcm-vm-co-", dir="/tmp")
    try:
        with open(os.path.join(d, "marker"), "w") as f:
            f.write("checkout-under-tmp\n")
        p = subprocess.run([vm, "--workdir", d, "--", "sh", "-c", "cat marker; stat -f -c %T /sys/fs/cgroup"],
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stdout[-2000:]
        assert "checkout-under-tmp" in p.stdout and "cgroup2fs" in p.stdout
    finally:
        shutil.rmtree(d, ignore_errors=True)


# -- installing as another user from a checkout root has used ----------------------------------------------


@pytest.mark.slow
@pytest.mark.rootless
def test_another_user_installs_from_a_checkout_root_has_built() -> None:
    """The README's rootless route (`pip install /path/to/checkout` into a venv of one's own) from a checkout
    root has built in: the build writes nothing into the tree, so another user's build works."""
    if subprocess.run(["/usr/bin/python3", "-c", "import sys, ensurepip; sys.exit(sys.version_info < (3, 11))"],
                      capture_output=True).returncode != 0:
        pytest.skip("Debian's python3 (3.11+, with python3-venv) is needed for the user's venv")
    shared = tempfile.mkdtemp(prefix="pcm-shared-", dir="/tmp")
    os.chmod(shared, 0o755)
    try:
        co = copy_checkout(os.path.join(shared, "checkout"))
        wheels = tempfile.mkdtemp(prefix="pcm-wheels-")
        built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheels, co],
                               capture_output=True, text=True, timeout=300)
        shutil.rmtree(wheels, ignore_errors=True)
        assert built.returncode == 0, built.stderr[-2000:]
        before = tree(co)
        with throwaway_user("pcm-installer"):
            home = pwd.getpwnam("pcm-installer").pw_dir
            env = ["env", f"HOME={home}", "PATH=/usr/bin:/bin"]
            cmd = (f"/usr/bin/python3 -m venv {home}/lab && {home}/lab/bin/pip install -q --no-deps {co} && "
                   f"cd / && {home}/lab/bin/python -c 'import pycontainer_magics.linux.libc, importlib.resources as r; "
                   "print(len(list(r.files(\"pycontainer_magics\").rglob(\"*.json\"))))'")
            p = run_as("pcm-installer", [*env, "sh", "-c", cmd], timeout=600)
            assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
            assert int(p.stdout.split()[-1]) >= 20  # the OCI schemas came along
            assert os.access(f"{home}/lab/bin/pycontainer", os.X_OK)
        assert tree(co) == before  # neither build wrote into the checkout
    finally:
        shutil.rmtree(shared, ignore_errors=True)


# -- the lab command, as root and as a user with sudo ------------------------------------------------------

SUDOER = "pcm-sudoer"


@contextlib.contextmanager
def sudoer() -> Iterator[str]:
    """A throw-away user allowed everything through sudo (a drop-in removed afterwards)."""
    if shutil.which("sudo") is None:
        pytest.skip("Debian's sudo is not installed (tests/run-all.sh installs it)")
    dropin = f"/etc/sudoers.d/{SUDOER}-test"
    with throwaway_user(SUDOER):
        try:
            with open(dropin, "w") as f:
                f.write(f"{SUDOER} ALL=(ALL:ALL) NOPASSWD: ALL\n")
            os.chmod(dropin, 0o440)
            subprocess.run(["visudo", "-cf", dropin], check=True, capture_output=True)
            yield SUDOER
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(dropin)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


def probe_lab(argv: list[str], cwd: str, port: int, token: str) -> tuple[list[str], list[str]]:
    """Start the lab (argv), wait for its REST API, return (kernel display names, notebooks), stop it."""
    base = f"http://127.0.0.1:{port}/api"
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def up() -> object:
            with contextlib.suppress(OSError):
                return get_json(f"{base}/status?token={token}")
            return proc.poll() is not None
        assert wait_for(up, timeout=120) and proc.poll() is None, _tail(log)
        specs = get_json(f"{base}/kernelspecs?token={token}")
        names = [k["spec"]["display_name"] for k in specs["kernelspecs"].values()]  # type: ignore[index]
        contents = get_json(f"{base}/contents?token={token}")
        notebooks = [c["name"] for c in contents["content"] if c["type"] == "notebook"]  # type: ignore[index]
        return names, notebooks
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the session we started: sudo passes the signal on
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _listening(port):
            time.sleep(0.2)
        assert not _listening(port), "the lab outlived its stop"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _tail(f: object) -> str:
    f.seek(0)  # type: ignore[attr-defined]
    return f.read().decode(errors="replace")[-3000:]  # type: ignore[attr-defined]


@pytest.mark.slow
def test_readme_commands_as_a_user_with_sudo_and_as_root() -> None:
    """A user's own checkout under /tmp: the lab command installs through sudo (the venv made by root, the
    kernel installed), the test command's install stage too; then the lab starts as root without sudo and
    through sudo, and its REST API lists the kernel "Python 3 (container lab)" and the notebooks."""
    work = tempfile.mkdtemp(prefix="pcm-lab-", dir="/tmp")
    try:
        with sudoer() as user:
            pw = pwd.getpwnam(user)
            co = copy_checkout(os.path.join(work, "checkout"))
            chown_tree(work, pw.pw_uid, pw.pw_gid)
            env = ["env", f"HOME={pw.pw_dir}", "PATH=/usr/local/bin:/usr/bin:/bin"]  # no sbin: a user's PATH

            p = run_as(user, [*env, "sh", "-c", f"cd {co} && bash binder/lab.sh --install-only"], timeout=900)
            assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
            assert "through sudo" in p.stderr
            assert os.stat(os.path.join(co, ".venv", "bin", "jupyter-lab")).st_uid == 0  # made as root
            p = run_as(user, [*env, "sh", "-c", f"cd {co} && bash tests/run-all.sh --install-only"], timeout=900)
            assert p.returncode == 0 and "through sudo" in p.stderr, p.stdout[-2000:] + p.stderr[-3000:]
            assert os.access(os.path.join(co, ".venv", "bin", "pytest"), os.X_OK)

            token = os.urandom(8).hex()
            lab_args = ["--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.token={token}"]
            # As root, no sudo involved (PATH without it would do as well: as_root never calls it for root).
            port = free_port()
            kernels, notebooks = probe_lab(["bash", "binder/lab.sh", f"--port={port}", *lab_args], co, port, token)
            assert "Python 3 (container lab)" in kernels
            assert "00-getting-started.ipynb" in notebooks and len(notebooks) >= 10
            # As the user, through sudo.
            port = free_port()
            from helpers import as_user_argv
            argv = as_user_argv(user, [*env, "bash", "binder/lab.sh", f"--port={port}", *lab_args])
            kernels, notebooks = probe_lab(argv, co, port, token)
            assert "Python 3 (container lab)" in kernels and "00-getting-started.ipynb" in notebooks
    finally:
        shutil.rmtree(work, ignore_errors=True)
