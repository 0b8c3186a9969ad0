"""The compiled seccomp program answers every system call number (and every argument a rule looks at) exactly as
its profile says: run by a classic-BPF interpreter here against the profile's own reading, for Docker's default
profile (with and without extra capabilities) and for profiles made to stress the compiler's ranges."""

from __future__ import annotations

import errno
import random
import struct

import pytest

from pycontainer_magics.linux.caps import DEFAULT_CAPS
from pycontainer_magics.linux.seccomp import (
    ACTIONS,
    AUDIT_ARCH_X86_64,
    X32_SYSCALL_BIT,
    Arg,
    Profile,
    Rule,
    SeccompError,
    _ret,
    compile_profile,
)
from pycontainer_magics.linux.syscalls_x86_64 import X86_64
from pycontainer_magics.runtime.seccomp_profile import profile_for

ENOSYS = ACTIONS["SCMP_ACT_ERRNO"] | errno.ENOSYS
M64 = (1 << 64) - 1


def check_program(prog: bytes) -> None:
    """What the kernel checks before it takes a filter (bpf_check_classic, seccomp_check_filter), for the opcodes the
    compiler uses: every jump lands inside the program, loads stay in seccomp_data, it ends with a return."""
    ins = [struct.unpack_from("HBBI", prog, i) for i in range(0, len(prog), 8)]
    assert 0 < len(ins) <= 4096
    for pc, (code, jt, jf, k) in enumerate(ins):
        assert code in (0x20, 0x54, 0x15, 0x35, 0x25, 0x05, 0x06), (pc, code)
        if code in (0x15, 0x35, 0x25):
            assert pc + 1 + max(jt, jf) < len(ins), (pc, jt, jf)
        if code == 0x05:
            assert pc + 1 + k < len(ins), (pc, k)
        if code == 0x20:
            assert k % 4 == 0 and k < 64, (pc, k)
    assert ins[-1][0] == 0x06


def run_bpf(prog: bytes, nr: int, arch: int, args: tuple[int, ...]) -> int:
    """What the kernel's classic-BPF interpreter returns for this seccomp_data (the opcodes the compiler uses)."""
    data = struct.pack("<IIQ6Q", nr, arch, 0, *args)
    ins = [struct.unpack_from("HBBI", prog, i) for i in range(0, len(prog), 8)]
    pc, a = 0, 0
    for _ in range(len(ins) + 1):  # forward jumps only: a longer walk is a loop
        code, jt, jf, k = ins[pc]
        pc += 1
        if code == 0x20:
            (a,) = struct.unpack_from("<I", data, k)
        elif code == 0x54:
            a &= k
        elif code in (0x15, 0x35, 0x25):
            hit = a == k if code == 0x15 else a >= k if code == 0x35 else a > k
            pc += jt if hit else jf
        elif code == 0x05:
            pc += k
        elif code == 0x06:
            return k
        else:
            raise AssertionError(f"opcode {code:#x} at {pc - 1}")
    raise AssertionError("the program loops")


def _holds(c: Arg, args: tuple[int, ...]) -> bool:
    v = args[c.index]
    return {"SCMP_CMP_EQ": v == c.value, "SCMP_CMP_NE": v != c.value, "SCMP_CMP_LT": v < c.value,
            "SCMP_CMP_LE": v <= c.value, "SCMP_CMP_GE": v >= c.value, "SCMP_CMP_GT": v > c.value,
            "SCMP_CMP_MASKED_EQ": v & c.value == c.value_two}[c.op]


def expected(profile: Profile, nr: int, arch: int, args: tuple[int, ...]) -> int:
    """The profile's answer, read as compile_profile documents it: another ABI or the x32 bit is ENOSYS, so is a
    number past the table when the default refuses; a call's conditional rules are tried first, in order."""
    if arch != AUDIT_ARCH_X86_64 or nr >= X32_SYSCALL_BIT:
        return ENOSYS
    if profile.default_action not in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG") and nr > max(X86_64.values()):
        return ENOSYS
    rules = [r for r in profile.rules if any(X86_64.get(n) == nr for n in r.names)]
    for r in sorted(rules, key=lambda r: not r.conditions):
        if all(_holds(c, args) for c in r.conditions):
            return _ret(r.action, r.errno_ret)
    return _ret(profile.default_action, profile.default_errno)


def _meeting(c: Arg) -> int:
    """An argument value that meets the condition."""
    return {"SCMP_CMP_EQ": c.value, "SCMP_CMP_NE": (c.value + 1) & M64, "SCMP_CMP_LT": max(c.value - 1, 0),
            "SCMP_CMP_LE": c.value, "SCMP_CMP_GE": c.value, "SCMP_CMP_GT": min(c.value + 1, M64),
            "SCMP_CMP_MASKED_EQ": c.value_two}[c.op]


def _arg_values(profile: Profile, nr: int) -> list[tuple[int, ...]]:
    """Argument vectors that meet and miss each condition on this call: every compared value, its neighbours
    and the 32-bit edges, in every position a condition looks at; plus random ones."""
    conds = [c for r in profile.rules if any(X86_64.get(n) == nr for n in r.names) for c in r.conditions]
    picks = {0, 1, M64, 1 << 32, (1 << 32) - 1}
    for c in conds:
        for v in (c.value, c.value_two, c.value | c.value_two):
            picks |= {v & M64, (v + 1) & M64, (v - 1) & M64, v & 0xFFFFFFFF, v >> 32, (v ^ (1 << 40)) & M64}
    rng = random.Random(nr)
    vectors = [tuple(rng.getrandbits(64) for _ in range(6)) for _ in range(8)]
    # each rule's conditions all held at once, and then each of them failed alone
    for r in profile.rules:
        if any(X86_64.get(n) == nr for n in r.names) and r.conditions:
            held = list(vectors[0])
            for c in r.conditions:
                held[c.index] = _meeting(c)
            if all(_holds(c, tuple(held)) for c in r.conditions):  # (conditions on one argument may not agree)
                vectors.append(tuple(held))
                for c in r.conditions:
                    one_off = list(held)
                    one_off[c.index] = (_meeting(c) + 1) & M64 if c.op != "SCMP_CMP_NE" else c.value
                    vectors.append(tuple(one_off))
    for p in sorted(picks):
        for idx in {c.index for c in conds} or {0}:
            base = list(vectors[0])
            base[idx] = p
            vectors.append(tuple(base))
    return vectors


def _check(profile: Profile) -> bytes:
    prog = compile_profile(profile)
    check_program(prog)
    top = max(X86_64.values()) + 3
    for nr in [*range(top), X32_SYSCALL_BIT, X32_SYSCALL_BIT + 1, 0xFFFFFFFF]:
        for args in _arg_values(profile, nr):
            for arch in (AUDIT_ARCH_X86_64, 0x40000003):  # x86_64, i386
                assert run_bpf(prog, nr, arch, args) == expected(profile, nr, arch, args), (nr, arch, args)
    return prog


@pytest.mark.parametrize("caps", [DEFAULT_CAPS, DEFAULT_CAPS | {"SYS_ADMIN", "SYS_PTRACE", "SYS_TIME"}])
def test_the_default_profile_answers_every_call_as_it_says(caps: frozenset[str]) -> None:
    profile = profile_for("default", frozenset(caps))
    assert profile is not None
    prog = _check(profile)
    # Runs of numbers with the same answer are ranges: 298 allowed calls are 31 runs (977 instructions before)
    assert len(prog) // 8 < 300


def test_ranges_do_not_join_across_a_gap_or_another_answer() -> None:
    names = {nr: n for n, nr in X86_64.items()}
    allowed = [names[nr] for nr in (0, 1, 2, 4, 5, 6, 10) if nr in names]  # a gap at 3 and at 7-9
    refused = [names[nr] for nr in (11, 12) if nr in names]
    cond = Rule((names[13],), "SCMP_ACT_ALLOW", args=(Arg(0, "SCMP_CMP_EQ", 5),))
    same_cond = Rule((names[14],), "SCMP_ACT_ALLOW", args=(Arg(0, "SCMP_CMP_EQ", 5),))
    other_cond = Rule((names[15],), "SCMP_ACT_ALLOW", args=(Arg(0, "SCMP_CMP_EQ", 6),))
    for default in ("SCMP_ACT_ERRNO", "SCMP_ACT_ALLOW"):
        _check(Profile(default, (Rule(tuple(allowed), "SCMP_ACT_ALLOW"), Rule(tuple(refused), "SCMP_ACT_ERRNO", 1),
                                 cond, same_cond, other_cond, Rule((names[16],), "SCMP_ACT_ERRNO", 13))))


def test_many_small_runs_and_long_ones() -> None:
    nrs = sorted(X86_64.values())
    rng = random.Random(7)
    names = {nr: n for n, nr in X86_64.items()}
    picked = [names[nr] for nr in nrs if rng.random() < 0.5]  # about half: runs of every length
    errs = [names[nr] for nr in nrs if names[nr] not in picked and rng.random() < 0.3]
    _check(Profile("SCMP_ACT_ERRNO", (Rule(tuple(picked), "SCMP_ACT_ALLOW"), Rule(tuple(errs), "SCMP_ACT_ERRNO", 22))))
    _check(Profile("SCMP_ACT_ERRNO", (Rule(tuple(names[nr] for nr in nrs), "SCMP_ACT_ALLOW"),)))


def test_long_conditional_bodies_and_the_jump_limit() -> None:
    """A range's test jumps one instruction further than a single number's: two calls with one 255-instruction body
    stay two blocks (they made a jump of 256, struct.error, once); a rule or a call past what 8-bit jumps reach is one
    clear error, not a broken program."""
    conds = tuple(Arg(i % 6, "SCMP_CMP_MASKED_EQ", 1, 1) for i in range(40)) + (
        Arg(0, "SCMP_CMP_EQ", 5), Arg(1, "SCMP_CMP_EQ", 6), Arg(2, "SCMP_CMP_GT", 7))
    prog = _check(Profile("SCMP_ACT_ERRNO", (Rule(("read", "write"), "SCMP_ACT_ALLOW", args=conds),)))
    assert len(prog) // 8 > 2 * 255
    too_many = conds + tuple(Arg(3, "SCMP_CMP_EQ", i) for i in range(3))
    with pytest.raises(SeccompError, match="at most 255 per rule"):
        compile_profile(Profile("SCMP_ACT_ERRNO", (Rule(("read",), "SCMP_ACT_ALLOW", args=too_many),)))
    with pytest.raises(SeccompError, match="at most 255 per system call"):
        other = Rule(("read",), "SCMP_ACT_ERRNO", args=(Arg(0, "SCMP_CMP_EQ", 9),))
        compile_profile(Profile("SCMP_ACT_ERRNO", (Rule(("read",), "SCMP_ACT_ALLOW", args=conds), other)))


def test_conditions_on_several_arguments() -> None:
    both = Rule(("clone", "personality"), "SCMP_ACT_ALLOW",
                args=(Arg(0, "SCMP_CMP_MASKED_EQ", 0x7E020000, 0), Arg(2, "SCMP_CMP_GE", 1 << 40),
                      Arg(3, "SCMP_CMP_NE", 7)))
    _check(Profile("SCMP_ACT_ERRNO", (both, Rule(("read",), "SCMP_ACT_ALLOW"))))
    _check(Profile("SCMP_ACT_ALLOW", (Rule(("clone",), "SCMP_ACT_ERRNO", 1, args=both.args),)))
