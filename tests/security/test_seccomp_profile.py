"""MED 5 of issue 16: the default seccomp profile is Docker's allow-list, argument filters included (AF_VSOCK
sockets, personality flags, clone's namespace flags), so io_uring, vsock, mbind, userfaultfd and the rest are
refused; the compiler behind it compares 64-bit arguments with every libseccomp operator."""

from __future__ import annotations

import errno
import os
import random
import struct

import pytest
from helpers import host_clean  # noqa: F401

from pycontainer_magics.linux.seccomp import ACTIONS, OPS, Arg, Profile, Rule, compile_profile
from pycontainer_magics.linux.syscalls_x86_64 import X86_64

AUDIT_ARCH_X86_64 = 0xC000003E


def _run_bpf(prog: bytes, nr: int, args: tuple[int, ...], arch: int = AUDIT_ARCH_X86_64) -> int:
    """A classic-BPF interpreter for what the compiler emits, over a struct seccomp_data."""
    data = struct.pack("<iIQ6Q", nr, arch, 0, *(list(args) + [0] * (6 - len(args))))
    insns = [struct.unpack("<HBBI", prog[i:i + 8]) for i in range(0, len(prog), 8)]
    pc, a = 0, 0
    for _ in range(100000):
        code, jt, jf, k = insns[pc]
        pc += 1
        if code == 0x20:
            a = struct.unpack_from("<I", data, k)[0]
        elif code == 0x54:
            a &= k
        elif code == 0x05:
            pc += k
        elif code in (0x15, 0x25, 0x35):
            ok = a == k if code == 0x15 else a > k if code == 0x25 else a >= k
            pc += jt if ok else jf
        elif code == 0x06:
            return k
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
    raise AssertionError("no return")


def _holds(c: Arg, value: int) -> bool:
    return {"SCMP_CMP_EQ": value == c.value, "SCMP_CMP_NE": value != c.value, "SCMP_CMP_LT": value < c.value,
            "SCMP_CMP_LE": value <= c.value, "SCMP_CMP_GT": value > c.value, "SCMP_CMP_GE": value >= c.value,
            "SCMP_CMP_MASKED_EQ": value & c.value == c.value_two}[c.op]


def test_every_operator_compares_all_64_bits() -> None:
    rnd = random.Random(16)
    edges = [0, 1, 40, 0xFFFFFFFF, 1 << 32, (1 << 32) + 40, (1 << 64) - 1, 0x7E020000]
    errno_ret = ACTIONS["SCMP_ACT_ERRNO"] | errno.EACCES
    for op in OPS:
        for _ in range(60):
            value = rnd.choice(edges + [rnd.getrandbits(64)])
            c = Arg(rnd.randrange(6), op, value, rnd.choice([0, value & 0xFFFF0000FFFF, rnd.getrandbits(64)]))
            prog = compile_profile(Profile("SCMP_ACT_ALLOW", (Rule(("read",), "SCMP_ACT_ERRNO", errno.EACCES,
                                                                   args=(c,)),)))
            for probe in edges + [value, value - 1 if value else 0, value + 1, rnd.getrandbits(64)]:
                probe &= (1 << 64) - 1
                args = tuple(probe if i == c.index else rnd.getrandbits(64) for i in range(6))
                want = errno_ret if _holds(c, probe) else ACTIONS["SCMP_ACT_ALLOW"]
                assert _run_bpf(prog, X86_64["read"], args) == want, (c, probe)


def test_conditions_are_anded_and_rules_tried_in_turn() -> None:
    both = (Arg(0, "SCMP_CMP_EQ", 2), Arg(2, "SCMP_CMP_GE", 10))
    prog = compile_profile(Profile("SCMP_ACT_ERRNO", (
        Rule(("socket",), "SCMP_ACT_ALLOW", args=both),
        Rule(("socket",), "SCMP_ACT_ERRNO", errno.EAFNOSUPPORT, args=(Arg(0, "SCMP_CMP_EQ", 40),)),
        Rule(("read",), "SCMP_ACT_ALLOW")), errno.EPERM))
    allow, eperm = ACTIONS["SCMP_ACT_ALLOW"], ACTIONS["SCMP_ACT_ERRNO"] | errno.EPERM
    assert _run_bpf(prog, X86_64["socket"], (2, 0, 10)) == allow
    assert _run_bpf(prog, X86_64["socket"], (2, 0, 9)) == eperm  # one condition of two
    assert _run_bpf(prog, X86_64["socket"], (40,)) == ACTIONS["SCMP_ACT_ERRNO"] | errno.EAFNOSUPPORT
    assert _run_bpf(prog, X86_64["read"], ()) == allow and _run_bpf(prog, X86_64["write"], ()) == eperm
    enosys = ACTIONS["SCMP_ACT_ERRNO"] | errno.ENOSYS
    assert _run_bpf(prog, max(X86_64.values()) + 5, ()) == enosys  # newer than the table: ENOSYS, as runc
    assert _run_bpf(prog, X86_64["read"], (), arch=0x40000003) == enosys  # i386


def test_the_default_is_dockers_allow_list() -> None:
    from pycontainer_magics.runtime.seccomp_default import ALLOWED, DOCKER_DEFAULT
    from pycontainer_magics.runtime.seccomp_profile import default_profile, to_oci

    assert DOCKER_DEFAULT["defaultAction"] == "SCMP_ACT_ERRNO" and len(ALLOWED) == 352
    for refused in ("io_uring_setup", "io_uring_enter", "io_uring_register", "keyctl", "add_key", "userfaultfd",
                    "mbind", "personality", "socket", "clone", "clone3", "unshare", "mount", "bpf", "kexec_load"):
        assert refused not in ALLOWED, refused
    oci = to_oci(default_profile(frozenset({"CHOWN", "SETUID"})))
    socket = [r for r in oci["syscalls"] if r["names"] == ["socket"]]
    assert socket == [{"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                       "args": [{"index": 0, "value": 40, "valueTwo": 0, "op": "SCMP_CMP_NE"}]}]
    with_admin = {n for r in to_oci(default_profile(frozenset({"SYS_ADMIN"})))["syscalls"]
                  if r["action"] == "SCMP_ACT_ALLOW" and "args" not in r for n in r["names"]}
    assert {"mount", "unshare", "clone", "clone3", "setns"} <= with_admin


PROBE = """
import ctypes, errno, os, socket
libc = ctypes.CDLL(None, use_errno=True)
def call(name, nr, *a):
    r = libc.syscall(nr, *[ctypes.c_long(x) for x in a])
    print(name, "ok" if r >= 0 else errno.errorcode[ctypes.get_errno()])
    return r
call("vsock", 41, 40, 1, 0)                  # socket(AF_VSOCK, SOCK_STREAM): not isolated by the net namespace
call("inet", 41, 2, 1, 0)                    # socket(AF_INET, SOCK_STREAM)
call("io_uring_setup", 425, 1, 0)
call("personality-addr-no-randomize", 135, 0x0040000)
call("personality-query", 135, 0xFFFFFFFF)
call("mbind", 237, 0, 4096, 0, 0, 0, 0)
call("userfaultfd", 323, 0)
call("keyctl", 250, 0, 0, 0, 0)
call("bpf", 321, 0, 0, 0)
call("open_by_handle_at", 304, 0, 0, 0)
call("clone3", 435, 0, 0)
call("unshare-user", 272, 0x10000000)
call("future-syscall", 470)
"""


@pytest.mark.root
@pytest.mark.usefixtures("host_clean")
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_what_docker_refuses_is_refused_in_a_default_container() -> None:
    from pycontainer_magics.runtime import run
    from pycontainer_magics.runtime.parse import build_spec

    r = run(build_spec(python_code=PROBE))
    got = dict(line.split() for line in r.stdout.splitlines())
    assert got == {"vsock": "EPERM", "inet": "ok", "io_uring_setup": "EPERM", "personality-addr-no-randomize": "EPERM",
                   "personality-query": "ok", "mbind": "EPERM", "userfaultfd": "EPERM", "keyctl": "EPERM",
                   "bpf": "EPERM", "open_by_handle_at": "EPERM", "clone3": "ENOSYS", "unshare-user": "EPERM",
                   "future-syscall": "ENOSYS"}, r.stdout + r.stderr
    nice = run(build_spec(python_code=PROBE, cap_add=["SYS_NICE"]))
    assert "mbind EPERM" not in nice.stdout  # CAP_SYS_NICE makes mbind legitimate, as in Docker's profile
