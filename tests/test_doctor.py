"""`%container doctor`: each row's verdict checked against what really works on this machine — as root,
as an unprivileged user with user namespaces, and as one without (user.max_user_namespaces=0 in a user
namespace of its own, as on Binder or in a default Docker container); and the magics' one-line errors there.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator

import pytest
from helpers import run_as, throwaway_user

from pycontainer_magics.lab.doctor import Check, Report, diagnose

USER = "pcm-doctor"
PY = sys.executable
ALL_NS = ["-m", "-u", "-i", "-n", "-p", "-f", "-C", "-T"]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

# Runs argv as the calling user where user namespaces are not allowed: a user namespace of our own that
# maps only our ids, with user.max_user_namespaces=0 inside it (its children can make none).
NO_USERNS = """
import os, sys
from pycontainer_magics.linux import libc, namespaces
uid, gid = os.getuid(), os.getgid()
libc.unshare(namespaces.CLONE_NEWUSER)
for f, t in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1"),
             ("../sys/user/max_user_namespaces", "0")):
    with open(f"/proc/self/{f}", "w") as fh:
        fh.write(t)
os.execv(sys.argv[1], sys.argv[1:])
"""


def leftovers() -> dict[str, list[str]]:
    cg = [d for d in glob.glob("/sys/fs/cgroup/*/pycontainer_magics/doctor-*") + glob.glob(
        "/sys/fs/cgroup/pycontainer_magics/doctor-*")]
    with open("/proc/self/mountinfo") as f:
        mounts = [line for line in f if "pcm-doctor" in line]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return {"cgroups": cg, "mounts": mounts, "dirs": glob.glob("/tmp/pcm-doctor-*"),
            "links": [ln for ln in links.splitlines() if "pcmdoc" in ln]}


def ok(argv: list[str], user: str | None = None) -> bool:
    p = run_as(user, argv) if user else subprocess.run(argv, capture_output=True, text=True)
    return p.returncode == 0


def test_load_message_and_rows_from_a_report() -> None:
    """What `%load_ext` says follows the rows (pure data: no probing)."""
    def rep(**works: bool) -> Report:
        keys = ["root", "userns", "namespaces", "overlay", "pivot_root", "proc", "cgroup_limits", "networks"]
        return Report(1000, "student", tuple(Check(k, k.replace("_", " "), works.get(k, True), "measured")
                                             for k in keys))
    assert rep().load_message() is None
    line = rep(root=False, cgroup_limits=False, networks=False).load_message()
    assert line is not None and "\n" not in line
    assert "as student (uid 1000, not root), containers run without limits or networks" in line
    assert "cgroup limits, networks" in line and "%container doctor" in line
    assert "containers cannot start here" in rep(userns=False, namespaces=False).load_message()
    r = Report.from_json(rep(networks=False).to_json())
    assert r["networks"].works is False and r.works("userns") and not r.works("no-such-row")


def test_errors_become_one_line_only_for_a_missing_capability() -> None:
    """Read from the errors' fields (errno, needs, path), never their text."""
    from IPython.core.error import UsageError

    from pycontainer_magics.linux.cgroups import CgroupError
    from pycontainer_magics.magics.errors import explain, friendly
    from pycontainer_magics.network import NetworkError
    from pycontainer_magics.runtime.launch import failure
    from pycontainer_magics.runtime.run import _launch_error

    rows = {"userns": (False, "unshare(CLONE_NEWUSER) fails: ENOSPC", "ask an admin"),
            "cgroup_limits": (False, "creating a cgroup: EACCES", "delegate one"),
            "networks": (True, "veth ok", "")}
    report = Report(1000, "s", tuple(Check(k, k, w, why, fix) for k, (w, why, fix) in rows.items()))
    # what the holder reports when unshare(CLONE_NEWUSER) fails, as run() raises it: the stage names the need
    e = _launch_error(failure("creating the user namespace", OSError(errno.ENOSPC, "No space left on device")))
    assert e.needs == "userns" and e.errno == errno.ENOSPC
    assert explain(e, "%%container", report) == ("%%container needs user namespaces: unshare(CLONE_NEWUSER) "
                                                 "fails: ENOSPC; ask an admin")
    # the same words without the field explain nothing: the text is never read
    assert explain(OSError(errno.ENOSPC, str(e)), "%%container", report) is None
    try:  # the magics' own conversion keeps the original as __context__
        try:
            raise CgroupError(errno.EACCES, "cannot create cgroup: Permission denied", "/sys/fs/cgroup/memory/x")
        except OSError as inner:
            raise UsageError(f"%cgroup create: {inner}") from None
    except UsageError as u:
        assert explain(u, "%cgroup", report) == "%cgroup needs a writable cgroup: creating a cgroup: EACCES; " \
                                                "delegate one"
    # the capability works here: the error is about something else, left as it was
    assert explain(NetworkError("cannot create bridge: EPERM", errno.EPERM), "%netns", report) is None
    # not a permission problem at all
    assert explain(ValueError("invalid size '2x' for --memory"), "%%container", report) is None
    assert explain(CgroupError(errno.EEXIST, "group 'a' exists already", "a"), "%cgroup", report) is None
    assert "PYCONTAINER_STATE_DIR" in explain(PermissionError(errno.EACCES, "Permission denied",
                                                              "/var/lib/pycontainer_magics/images/refs.json"),
                                              "%image", report)

    def boom(line: str) -> None:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "/nowhere/x")
    with pytest.raises(UsageError, match=r"^%image: ENOENT \(No such file or directory\) \(/nowhere/x\)$"):
        friendly(boom, "%image")("ls")

    from pycontainer_magics.runtime.spec import SpecError

    def bad_spec(line: str, cell: str) -> None:
        raise SpecError("invalid size '2x' for --memory: expected a number with an optional unit")
    with pytest.raises(UsageError, match=r"^%%container: invalid size '2x' for --memory"):
        friendly(bad_spec, "%%container")("--memory 2x", "pass")

    def bug(line: str) -> None:
        raise KeyError("a bug stays a traceback")
    with pytest.raises(KeyError):
        friendly(bug, "%container")("ps")


@needs_root
def test_doctor_as_root_matches_reality_and_leaves_nothing() -> None:
    before = leftovers()
    rep = diagnose(refresh=True)
    assert leftovers() == before == {"cgroups": [], "mounts": [], "dirs": [], "links": []}
    assert rep["root"].works and rep.uid == 0
    assert rep["userns"].works == ok(["unshare", "-U", "true"])
    assert rep["namespaces"].works == ok(["unshare", *ALL_NS, "true"])
    scratch = tempfile.mkdtemp()
    try:
        overlay = ok(["unshare", "-m", "sh", "-c", f"mount -t tmpfs t {scratch} && mkdir {scratch}/u {scratch}/w "
                      f"{scratch}/m && mount -t overlay o -o lowerdir=/etc,upperdir={scratch}/u,workdir={scratch}/w "
                      f"{scratch}/m && touch {scratch}/m/x"])
    finally:
        os.rmdir(scratch)
    assert rep["overlay"].works == overlay
    from pycontainer_magics.runtime import ContainerSpec, run

    r = run(ContainerSpec(command=("sh", "-c", "echo $$; cat /proc/self/mountinfo | head -1")))
    container_ok = r.exit_code == 0 and r.stdout.split()[0] == "1"
    assert rep["pivot_root"].works == rep["proc"].works == container_ok
    # seccomp: what a container shows (filter mode 2) is what the row says
    sc = run(ContainerSpec(command=("grep", "-c", "^Seccomp:.2", "/proc/self/status")))
    assert rep["seccomp"].works == (sc.stdout.strip() == "1")
    from pycontainer_magics.linux.cgroups import detect_layout, open_hierarchy

    layout = detect_layout()
    assert rep["cgroups"].works == (layout != "none")
    assert rep["cgroups"].why.startswith({"unified": "v2", "hybrid": "v1 controllers, v2 mounted beside them",
                                          "legacy": "v1 only", "none": "no cgroup"}[layout])
    assert rep["cgroup_limits"].works == open_hierarchy().writable
    veth = ["ip", "link", "add", "name", "pa", "type", "veth", "peer", "name", "pb"]
    assert rep["networks"].works == ok(["unshare", "-n", *veth])
    for tool in ("crun", "runc", "skopeo", "umoci", "busybox"):
        assert rep[tool].works == bool(shutil.which(tool) or os.access(f"/usr/sbin/{tool}", os.X_OK)), tool
    from pycontainer_magics.linux.idmap import subid_range

    assert rep["subids"].works == (subid_range("containers") is not None)
    assert rep.load_message() is None
    from pycontainer_magics.magics.doctor import load_message

    assert load_message() is None  # root here: nothing to say, and no probing at load


@pytest.fixture(scope="module")
def user() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("creates a user: needs root")
    scripts = tempfile.mkdtemp(prefix="pcm-dr-test-")
    os.chmod(scripts, 0o755)
    with open(os.path.join(scripts, "no_userns.py"), "w") as f:
        f.write(NO_USERNS)
    os.environ["PCM_TEST_SCRIPTS"] = scripts
    try:
        with throwaway_user(USER):
            if run_as(USER, [PY, "-c", "import pycontainer_magics"]).returncode != 0:
                pytest.skip("the checkout is not readable by an unprivileged user")
            yield USER
    finally:
        os.environ.pop("PCM_TEST_SCRIPTS", None)
        shutil.rmtree(scripts, ignore_errors=True)


def as_user(argv: list[str], no_userns: bool = False) -> subprocess.CompletedProcess[str]:
    home = pwd.getpwnam(USER).pw_dir
    wrap = [PY, os.path.join(os.environ["PCM_TEST_SCRIPTS"], "no_userns.py")] if no_userns else []
    return run_as(USER, ["env", f"HOME={home}", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", *wrap, *argv])


def user_report(no_userns: bool = False) -> Report:
    p = as_user([PY, "-m", "pycontainer_magics.lab.doctor", "--json"], no_userns)
    assert p.returncode == 0, p.stderr
    return Report.from_json(p.stdout)


RUN_TRUE = ("from pycontainer_magics.runtime import ContainerSpec, run\n"
            "r = run(ContainerSpec(command=('sh', '-c', 'echo $$')))\nprint(r.exit_code, r.stdout.strip())")


@pytest.mark.rootless
def test_doctor_as_unprivileged_user_matches_reality(user: str) -> None:
    before = leftovers()
    rep = user_report()
    assert leftovers() == before
    assert rep.uid == pwd.getpwnam(user).pw_uid and not rep["root"].works
    assert "bash binder/lab.sh" in rep["root"].fix  # the README's lab command, which needs no sudo as root
    assert rep["userns"].works == (as_user(["unshare", "-U", "true"]).returncode == 0)
    assert rep["namespaces"].works == (as_user(["unshare", "-U", "-r", *ALL_NS, "true"]).returncode == 0)
    p = as_user([PY, "-c", RUN_TRUE])
    container_ok = p.stdout.split() == ["0", "1"]
    assert rep["overlay"].works == rep["pivot_root"].works == rep["proc"].works == container_ok, p.stderr[-500:]
    made = as_user([PY, "-c", "from pycontainer_magics.linux.cgroups import open_hierarchy, new_name\n"
                    "open_hierarchy().create(new_name('t-')).remove()"])
    assert rep["cgroup_limits"].works == (made.returncode == 0)
    assert not rep["cgroup_limits"].works and "EACCES" in rep["cgroup_limits"].why
    dummy = ["ip", "link", "add", "name", "pcmdocx", "type", "dummy"]
    assert rep["networks"].works == (as_user(dummy).returncode == 0)
    assert not rep["networks"].works and "EPERM" in rep["networks"].why
    line = rep.load_message()
    assert line and "containers run without limits or networks" in line


SHELL = textwrap.dedent("""
    import json
    from IPython.core.error import UsageError
    from IPython.testing.globalipapp import start_ipython
    ip = start_ipython()
    ip.run_line_magic("load_ext", "pycontainer_magics")
    out = {}
    for key, magic, line, cell in [("cell", "container", "--quiet", "print(1)"),
                                   ("limit", "container", "--quiet --memory 64m -- true", None),
                                   ("cgroup", "cgroup", "create demo --memory 100M", None),
                                   ("network", "netns", "network create pcmdocnet --subnet 10.213.47.0/24", None)]:
        try:
            if cell is None:
                ip.run_line_magic(magic, line)
            else:
                ip.run_cell_magic(magic, line, cell)
            out[key] = "ran"
        except UsageError as e:
            out[key] = str(e)
    df = ip.run_line_magic("container", "doctor")
    out["doctor"] = {k: bool(v) for k, v in df["works"].items()}
    print("RESULT=" + json.dumps(out))
""")


@pytest.mark.rootless
def test_without_user_namespaces_the_doctor_and_the_magics_say_so(user: str) -> None:
    rep = user_report(no_userns=True)
    assert as_user(["unshare", "-U", "true"], no_userns=True).returncode != 0
    assert not rep["userns"].works and "ENOSPC" in rep["userns"].why and "max_user_namespaces" in rep["userns"].fix
    for key in ("namespaces", "overlay", "pivot_root", "proc"):
        assert not rep[key].works and rep[key].fix.startswith("needs user namespaces"), rep[key]
    assert rep["cgroups"].works  # the filesystem is there, just not ours to write
    assert "containers cannot start here" in (rep.load_message() or "")

    p = as_user([PY, "-c", SHELL], no_userns=True)
    lines = p.stdout.splitlines()
    result = json.loads(next(ln for ln in lines if ln.startswith("RESULT="))[7:])
    assert lines[0].startswith("pycontainer_magics: as pcm-doctor") and "containers cannot start here" in lines[0]
    assert result["cell"].startswith("%%container needs user namespaces: unshare(CLONE_NEWUSER) fails: ENOSPC")
    assert result["limit"].startswith("%container needs a writable cgroup: creating a cgroup under the project's "
                                      "parent: EACCES")
    assert result["cgroup"].startswith("%cgroup needs a writable cgroup")
    assert result["network"].startswith("%netns needs container networks: netlink: add a link in the host's "
                                        "network: EPERM")
    for v in result.values():
        assert isinstance(v, dict) or "\n" not in v
    assert result["doctor"]["userns"] is False and result["doctor"]["cgroups"] is True
    assert "Traceback" not in p.stdout + p.stderr
