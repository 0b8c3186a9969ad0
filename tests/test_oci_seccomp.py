"""OCI seccomp rules as engines send them (podman's default profile has several arguments and SCMP_CMP_NE,
Docker's MASKED_EQ): each operator compiled to BPF and checked against the kernel, on both words of a 64-bit
argument, by a filtered child calling getpgid(2) with chosen values."""

from __future__ import annotations

import ctypes
import json
import os

import pytest

from pycontainer_magics.linux import seccomp
from pycontainer_magics.linux.syscalls_x86_64 import X86_64
from pycontainer_magics.oci.seccomp import compile_config, profile

pytestmark = pytest.mark.skipif(not seccomp.supported(), reason="x86_64 only")
MARK = 77  # the errno the filter answers when the rule's conditions hold
BIG = 2**32 + 5


def _hits(doc: dict, values: list[int]) -> list[bool]:
    """For each value: did getpgid(value) under the compiled filter answer MARK?"""
    prog = compile_config(doc)
    assert prog is not None
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.syscall.restype = ctypes.c_long
            libc.prctl(38, 1, 0, 0, 0)  # no_new_privs: an unprivileged install
            seccomp.install(prog)
            out = []
            for v in values:
                ctypes.set_errno(0)
                libc.syscall(X86_64["getpgid"], ctypes.c_uint64(v))
                out.append(ctypes.get_errno() == MARK)
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = os.read(r, 65536)
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data)


def _doc(*args: dict) -> dict:
    return {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            "syscalls": [{"names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": MARK, "args": list(args)}]}


VALUES = [0, 4, 5, 6, 2**32, BIG, BIG + 1, 2**40]


@pytest.mark.parametrize("op,value,expected", [
    ("SCMP_CMP_EQ", 5, [v == 5 for v in VALUES]),
    ("SCMP_CMP_EQ", BIG, [v == BIG for v in VALUES]),  # not just the low word: 5 is not BIG
    ("SCMP_CMP_NE", BIG, [v != BIG for v in VALUES]),
    ("SCMP_CMP_GT", BIG, [v > BIG for v in VALUES]),
    ("SCMP_CMP_GE", 5, [v >= 5 for v in VALUES]),
    ("SCMP_CMP_LT", BIG, [v < BIG for v in VALUES]),
    ("SCMP_CMP_LE", 5, [v <= 5 for v in VALUES]),
])
def test_each_operator_on_both_words(op: str, value: int, expected: list[bool]) -> None:
    assert _hits(_doc({"index": 0, "value": value, "op": op}), VALUES) == expected


def test_masked_eq_and_several_arguments_all_hold() -> None:
    # (arg0 & 0xF0) == 0x40
    masked = _doc({"index": 0, "value": 0xF0, "valueTwo": 0x40, "op": "SCMP_CMP_MASKED_EQ"})
    assert _hits(masked, [0x40, 0x4F, 0x41 + 2**33, 0x50, 0]) == [True, True, True, False, False]
    # two conditions on the same argument: 4 < arg0 <= 6
    both = _doc({"index": 0, "value": 4, "op": "SCMP_CMP_GT"}, {"index": 0, "value": 6, "op": "SCMP_CMP_LE"})
    assert _hits(both, [3, 4, 5, 6, 7, BIG]) == [False, False, True, True, False, False]


def test_podmans_default_profile_compiles() -> None:
    path = "/usr/share/containers/seccomp.json"
    if not os.path.exists(path):
        pytest.skip("containers-common's seccomp.json is not installed")
    with open(path) as f:
        doc = json.load(f)
    doc.pop("archMap", None)  # podman resolves it to `architectures` before the runtime sees it
    for s in doc["syscalls"]:
        s.pop("includes", None)
        s.pop("excludes", None)
    assert len(profile(doc).rules) == len(doc["syscalls"])
    assert compile_config(doc)


def test_unknown_operator_and_notify_are_refused() -> None:
    with pytest.raises(seccomp.SeccompError, match="args/0/op: unknown operator"):
        profile(_doc({"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}))
    with pytest.raises(seccomp.SeccompError, match="listenerPath"):
        profile({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x.sock"})


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_filter_goes_in_before_the_capabilities_without_no_new_privs() -> None:
    """With no_new_privs off (a bundle's noNewPrivileges: false, Docker's --security-opt
    no-new-privileges=false) the kernel takes a filter only from a CAP_SYS_ADMIN holder: the runtime core
    installs it before dropping capabilities, as runc does, instead of failing with EACCES."""
    from pycontainer_magics.runtime import ContainerSpec, run

    r = run(ContainerSpec(command=("sh", "-c", "grep -E '^(Seccomp|NoNewPrivs|CapEff):' /proc/self/status"),
                          no_new_privileges=False), helper=False)
    assert r.exit_code == 0, (r.error, r.stderr)
    fields = dict(line.split(":\t") for line in r.stdout.splitlines())
    assert fields["Seccomp"] == "2" and fields["NoNewPrivs"] == "0"
    assert int(fields["CapEff"], 16) >> 21 & 1 == 0  # no CAP_SYS_ADMIN left to the process


def test_compiled_profiles_are_cached_by_content(tmp_path, monkeypatch) -> None:
    """An engine sends the same profile for every container: the second `create` reads the program back
    instead of compiling (and importing the compiler); another profile is another entry."""
    from pycontainer_magics.oci import process
    from pycontainer_magics.oci import seccomp as oci_seccomp

    doc = _doc({"index": 0, "value": 5, "op": "SCMP_CMP_EQ"})
    first = process.compile_seccomp(doc, {}, str(tmp_path / "root" / ".seccomp"))
    assert first and len(list((tmp_path / "root" / ".seccomp").iterdir())) == 1
    assert oct((tmp_path / "root").stat().st_mode & 0o777) == "0o700"

    def no_compiler(_doc: dict) -> bytes:
        raise AssertionError("compiled again")

    monkeypatch.setattr(oci_seccomp, "compile_config", no_compiler)
    assert process.compile_seccomp(dict(reversed(list(doc.items()))), {}, str(tmp_path / "root" / ".seccomp")) \
        == first  # the same profile, keys in another order
    monkeypatch.undo()
    other = process.compile_seccomp(_doc({"index": 0, "value": 6, "op": "SCMP_CMP_EQ"}), {},
                                    str(tmp_path / "root" / ".seccomp"))
    assert other and other != first and len(list((tmp_path / "root" / ".seccomp").iterdir())) == 2
