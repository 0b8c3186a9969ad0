"""Seccomp: Docker's default profile in effect (what it refuses is refused, with EPERM; clone3 answers
ENOSYS so libc falls back to clone), the capability that makes a call legitimate lifts its refusal,
`--security-opt seccomp=unconfined` and custom profiles (OCI and Docker formats), `exec` gets the same
filter, and bundles carry it."""

from __future__ import annotations

import json
import os

import pytest
from helpers import host_clean  # noqa: F401

from pycontainer_magics.linux.seccomp import Profile, Rule, SeccompError, compile_profile
from pycontainer_magics.runtime import ContainerSpec, SpecError, run
from pycontainer_magics.runtime.parse import build_spec

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("host_clean"),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

PROBE = """
import ctypes, errno, os, threading
libc = ctypes.CDLL(None, use_errno=True)
def call(nr, *a):
    r = libc.syscall(nr, *a)
    if r == 0 and nr == 56:  # a clone that went through: this is the child
        os._exit(0)
    return "ok" if r >= 0 else errno.errorcode[ctypes.get_errno()]
print([line.split()[1] for line in open("/proc/self/status") if line.startswith("Seccomp:")][0])
print(call(250, 0, 0, 0, 0))               # keyctl
print(call(56, 0x10000000 | 17, 0, 0, 0))  # clone(CLONE_NEWUSER | SIGCHLD), a child that exits at once
print(call(272, 0x10000000))               # unshare(CLONE_NEWUSER), last: it leaves us unmapped
print(call(435, 0, 0))                     # clone3
pid = os.fork()
if pid == 0:
    os._exit(7)
print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
t = threading.Thread(target=print, args=("thread",))
t.start(); t.join()
"""


def test_the_default_refuses_what_docker_refuses_and_the_rest_works() -> None:
    r = run(build_spec(python_code=PROBE))
    assert r.stdout.split() == ["2", "EPERM", "EPERM", "EPERM", "ENOSYS", "7", "thread"], r.stderr
    sh = run(build_spec(command=["sh", "-c", "busybox unshare -U true 2>&1; mkdir /m; mount -t tmpfs t /m 2>&1"]))
    assert "Operation not permitted" in sh.stdout.splitlines()[0] and "permission denied" in sh.stdout.lower()


def test_unconfined_has_no_filter() -> None:
    r = run(build_spec(python_code=PROBE, security_opt=["seccomp=unconfined"]))
    lines = r.stdout.split()
    assert lines[0] == "0" and lines[2:4] == ["ok", "ok"] and lines[4] != "ENOSYS", r.stdout  # clone, unshare work


def test_a_capability_lifts_what_it_makes_legitimate() -> None:
    r = run(build_spec(command=["sh", "-c", "mkdir /m && mount -t tmpfs t /m && busybox unshare -U true && echo ok"],
                       cap_add=["SYS_ADMIN"]))
    assert r.stdout == "ok\n", r.stderr
    t = run(build_spec(python_code=PROBE, cap_add=["SYS_ADMIN"]))
    assert t.stdout.split()[:5] == ["2", "EPERM", "ok", "ok", "EINVAL"], t.stdout  # keyctl stays refused


def test_custom_profiles_oci_and_docker_format(tmp_path) -> None:
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
        # Docker's per-capability form: applies only to a container that has CAP_SYS_ADMIN
        {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "includes": {"caps": ["CAP_SYS_ADMIN"]}}]}
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile))
    r = run(build_spec(command=["sh", "-c", "mkdir /x 2>&1; pwd; grep Seccomp: /proc/self/status"],
                       security_opt=[f"seccomp={path}"]))
    assert r.stdout.splitlines()[0].endswith("Permission denied") and r.stdout.splitlines()[1] == "/", r.stdout


def test_an_allowlist_profile_of_every_call_but_two(tmp_path) -> None:
    """Docker's profile style (refuse by default, allow a list): 360 calls allowed, a tree of jumps far
    longer than BPF's 8-bit conditional offsets reach."""
    from pycontainer_magics.linux.syscalls_x86_64 import X86_64

    allowed = sorted(set(X86_64) - {"mkdir", "mkdirat"})
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
               "syscalls": [{"names": allowed, "action": "SCMP_ACT_ALLOW"}]}
    r = run(ContainerSpec(command=("sh", "-c", "mkdir /x 2>&1; echo made > /tmp/f; cat /tmp/f"),
                          seccomp=json.dumps(profile)))
    out = r.stdout.splitlines()
    assert out[0].endswith("Operation not permitted") and out[1:] == ["made"], r.stdout


def test_bad_options_and_profiles_are_one_line() -> None:
    with pytest.raises(SpecError, match="unsupported --security-opt 'apparmor=x'"):
        build_spec(command=["true"], security_opt=["apparmor=x"])
    with pytest.raises(SpecError, match="seccomp=/nonexistent.json: cannot read the profile"):
        build_spec(command=["true"], security_opt=["seccomp=/nonexistent.json"])
    with pytest.raises(SpecError, match="seccomp/syscalls/0/args/0/op: 'SCMP_CMP_X' is not one of"):
        ContainerSpec(command=("true",), seccomp=json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_X"}]}]}))
    with pytest.raises(SpecError, match="seccomp/defaultAction: unknown action 'SCMP_ACT_MAYBE'"):
        ContainerSpec(command=("true",), seccomp=json.dumps({"defaultAction": "SCMP_ACT_MAYBE"}))


def test_exec_gets_the_same_filter() -> None:
    from pycontainer_magics.workloads.containers import containers, start

    c = start(build_spec(command=["sleep", "30"], name="sc-exec"))
    try:
        r = c.exec(["sh", "-c", "grep Seccomp: /proc/self/status; busybox unshare -U true 2>&1"])
        assert r.stdout.splitlines()[0].split() == ["Seccomp:", "2"] and "not permitted" in r.stdout
    finally:
        containers.remove(c.id, force=True)


def test_the_compiled_filter_is_checked() -> None:
    prog = compile_profile(Profile("SCMP_ACT_ALLOW", (Rule(("keyctl", "no_such_call"), "SCMP_ACT_ERRNO"),)))
    assert len(prog) % 8 == 0 and len(prog) // 8 == 6 + 2 + 1  # arch/x32 prologue, one call's block, default
    with pytest.raises(SeccompError, match="on args 0-5, 64-bit values"):
        compile_profile(Profile("SCMP_ACT_ALLOW", (Rule(("clone",), "SCMP_ACT_ERRNO", 1, (6, 1, 0)),)))
