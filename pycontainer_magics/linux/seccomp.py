"""Seccomp filters: a profile in the OCI runtime spec's terms (a default action, and actions for named
system calls, optionally only when an argument matches a mask) compiled to classic BPF and installed
with prctl(PR_SET_SECCOMP). The filter is inherited across fork and execve and can never be removed,
so PID 1 installs it last, just before it executes the payload (no_new_privs is already set, which is
what lets an unprivileged process install one).

Only x86_64 is compiled for (the numbers come from syscalls_x86_64). A system call of another ABI on the
same machine (i386 through int 0x80, x32) is answered ENOSYS: a filter keyed on x86_64 numbers must not
let another table's numbers through.
"""

from __future__ import annotations

import errno
import platform
import struct
from dataclasses import dataclass

from ..errors import InvalidInput
from .seccomp_install import install
from .syscalls_x86_64 import X86_64

PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000

# SECCOMP_RET_* values; ERRNO and TRACE carry a 16-bit datum
ACTIONS = {
    "SCMP_ACT_KILL": 0x00000000, "SCMP_ACT_KILL_THREAD": 0x00000000, "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000, "SCMP_ACT_ERRNO": 0x00050000, "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000, "SCMP_ACT_ALLOW": 0x7FFF0000,
}

# classic BPF opcodes
_LD_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_JGT = 0x25  # BPF_JMP | BPF_JGT | BPF_K
_AND = 0x54  # BPF_ALU | BPF_AND | BPF_K
_RET = 0x06  # BPF_RET | BPF_K
_JA = 0x05  # BPF_JMP | BPF_JA
# offsets in struct seccomp_data
_NR, _ARCH = 0, 4


def _arg_low(index: int) -> int:
    return 16 + 8 * index  # the low 32 bits of args[index] (little-endian)


class SeccompError(InvalidInput):
    """A profile that cannot be compiled: one line naming what is wrong."""


OPS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
       "SCMP_CMP_MASKED_EQ")


@dataclass(frozen=True)
class Arg:
    """A condition on a system call's argument, compared as 64 bits as libseccomp does: `args[index] <op>
    value`; for SCMP_CMP_MASKED_EQ, `(args[index] & value) == value_two` (the OCI spec's valueTwo)."""

    index: int
    op: str
    value: int
    value_two: int = 0


@dataclass(frozen=True)
class Rule:
    """`action` for the system calls `names`, only when every condition in `args` holds (none: always).
    `arg` = (index, mask, value) is the older one-condition form, (args[index] & mask) == value."""

    names: tuple[str, ...]
    action: str
    errno_ret: int = errno.EPERM
    arg: tuple[int, int, int] | None = None
    args: tuple[Arg, ...] = ()

    @property
    def conditions(self) -> tuple[Arg, ...]:
        legacy = (Arg(self.arg[0], "SCMP_CMP_MASKED_EQ", self.arg[1], self.arg[2]),) if self.arg is not None else ()
        return self.args + legacy


@dataclass(frozen=True)
class Profile:
    default_action: str
    rules: tuple[Rule, ...] = ()
    default_errno: int = errno.EPERM


def _ret(action: str, errno_ret: int) -> int:
    if action not in ACTIONS:
        raise SeccompError(f"unknown seccomp action {action!r}: expected one of {', '.join(ACTIONS)}")
    value = ACTIONS[action]
    return value | (errno_ret & 0xFFFF) if action == "SCMP_ACT_ERRNO" else value


_MAX_BODY = 255  # what a conditional jump (8 bits) can skip


def _name_of(nr: int) -> str:
    return next((n for n, v in X86_64.items() if v == nr), str(nr))


def _ins(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k & 0xFFFFFFFF)


def compile_profile(profile: Profile) -> bytes:
    """The BPF program (sock_filter records) for `profile` on x86_64. Unknown system call names are
    skipped, as libseccomp-based runtimes do for names this kernel does not have. A profile that refuses by
    default answers ENOSYS, not its refusal, for system calls newer than the table (runc does the same): a
    libc probing a new call then falls back to an older one, as it does on an older kernel."""
    default = _ret(profile.default_action, profile.default_errno)
    by_nr: dict[int, list[Rule]] = {}
    for rule in profile.rules:
        _ret(rule.action, rule.errno_ret)  # checked even if none of its names exists here
        for c in rule.conditions:
            if not 0 <= c.index <= 5 or c.op not in OPS or not 0 <= c.value < 1 << 64 or not 0 <= c.value_two < 1 << 64:
                raise SeccompError(f"seccomp rule for {', '.join(rule.names)}: condition {c.op} on args[{c.index}] "
                                   f"with {c.value}: expected an op of {', '.join(OPS)} on args 0-5, 64-bit values")
        for name in rule.names:
            if name in X86_64:
                by_nr.setdefault(X86_64[name], []).append(rule)
    enosys = ACTIONS["SCMP_ACT_ERRNO"] | errno.ENOSYS
    prog = [_ins(_LD_ABS, _ARCH), _ins(_JEQ, AUDIT_ARCH_X86_64, 1, 0), _ins(_RET, enosys),
            _ins(_LD_ABS, _NR), _ins(_JGE, X32_SYSCALL_BIT, 0, 1), _ins(_RET, enosys)]
    if profile.default_action not in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG"):
        prog += [_ins(_JGT, max(X86_64.values()), 0, 1), _ins(_RET, enosys)]
    # Runs of consecutive numbers with the same answer are one block, a range (the default profile's 298
    # unconditional allows are 31 runs): a quarter of the instructions for the kernel to check, translate and
    # compile at every install, in every PID 1.
    blocks: list[tuple[int, int, list[bytes], bytes]] = []  # (first number, last number, body, body's bytes)
    for nr in sorted(by_nr):
        rules = sorted(by_nr[nr], key=lambda r: not r.conditions)  # conditional rules first
        body: list[bytes] = []
        for r in rules:
            if not r.conditions:
                body.append(_ins(_RET, _ret(r.action, r.errno_ret)))
                break
            body += _conditional(r)
        else:
            body.append(_ins(_RET, default))  # this call, but no condition held
        if len(body) > _MAX_BODY:  # (a block's test jumps over its body: 8 bits)
            raise SeccompError(f"seccomp rules for {_name_of(nr)} compile to {len(body)} instructions; at most "
                               f"{_MAX_BODY} per system call (fewer conditions)")
        joined = b"".join(body)
        # the next number, the same answer (a range's test jumps one more instruction than a number's)
        if blocks and blocks[-1][1] == nr - 1 and blocks[-1][3] == joined and len(body) < _MAX_BODY:
            blocks[-1] = (blocks[-1][0], nr, body, joined)
        else:
            blocks.append((nr, nr, body, joined))
    prog += _search([(lo, hi, body) for lo, hi, body, _ in blocks], default)
    if len(prog) > 4096:  # BPF_MAXINSNS
        raise SeccompError(f"seccomp profile compiles to {len(prog)} BPF instructions; the kernel takes 4096")
    return b"".join(prog)


# One condition as instructions whose jumps name where to go: "P" (it holds: on to the next condition) or
# "F" (it does not: past this rule). The high word is compared first, then the low one.
def _condition(c: Arg) -> list[tuple[int, int, int | str, int | str]]:
    lo_at, hi_at = _arg_low(c.index), _arg_low(c.index) + 4
    v_hi, v_lo = c.value >> 32, c.value & 0xFFFFFFFF
    if c.op == "SCMP_CMP_MASKED_EQ":
        d_hi, d_lo = c.value_two >> 32, c.value_two & 0xFFFFFFFF
        return [(_LD_ABS, hi_at, 0, 0), (_AND, v_hi, 0, 0), (_JEQ, d_hi, 0, "F"),
                (_LD_ABS, lo_at, 0, 0), (_AND, v_lo, 0, 0), (_JEQ, d_lo, "P", "F")]
    hi: list[tuple[int, int, int | str, int | str]] = [(_LD_ABS, hi_at, 0, 0)]
    lo: tuple[int, int, int | str, int | str] = (_LD_ABS, lo_at, 0, 0)
    return {
        "SCMP_CMP_EQ": hi + [(_JEQ, v_hi, 0, "F"), lo, (_JEQ, v_lo, "P", "F")],
        "SCMP_CMP_NE": hi + [(_JEQ, v_hi, 0, "P"), lo, (_JEQ, v_lo, "F", "P")],
        "SCMP_CMP_GT": hi + [(_JGT, v_hi, "P", 0), (_JEQ, v_hi, 0, "F"), lo, (_JGT, v_lo, "P", "F")],
        "SCMP_CMP_GE": hi + [(_JGT, v_hi, "P", 0), (_JEQ, v_hi, 0, "F"), lo, (_JGE, v_lo, "P", "F")],
        "SCMP_CMP_LT": hi + [(_JGT, v_hi, "F", 0), (_JEQ, v_hi, 0, "P"), lo, (_JGE, v_lo, "F", "P")],
        "SCMP_CMP_LE": hi + [(_JGT, v_hi, "F", 0), (_JEQ, v_hi, 0, "P"), lo, (_JGT, v_lo, "F", "P")],
    }[c.op]


def _conditional(rule: Rule) -> list[bytes]:
    """Every condition of `rule`, then its action; a failed condition jumps past the action."""
    parts = [_condition(c) for c in rule.conditions]
    total = sum(len(p) for p in parts) + 1
    if total > _MAX_BODY:  # (a failed condition jumps past the rest of the rule: 8 bits)
        raise SeccompError(f"seccomp rule for {', '.join(rule.names)}: {len(rule.conditions)} conditions compile to "
                           f"{total} instructions; at most {_MAX_BODY} per rule (fewer conditions)")
    out: list[bytes] = []
    at = 0
    for p in parts:
        end = at + len(p)  # where "P" lands
        for code, k, jt, jf in p:
            where = {"P": end, "F": total}
            out.append(_ins(code, k, jt if isinstance(jt, int) else where[jt] - at - 1,
                            jf if isinstance(jf, int) else where[jf] - at - 1))
            at += 1
    out.append(_ins(_RET, _ret(rule.action, rule.errno_ret)))
    return out


def _search(blocks: list[tuple[int, int, list[bytes]]], default: int) -> list[bytes]:
    """Find the system call number (in A) among `blocks` ((first, last, body), sorted, disjoint) by binary
    search, then a short linear scan: every call walks a few instructions, not the whole list. That matters
    beyond each call's cost: when the filter is installed the kernel runs it for every system call number, to
    find the ones always allowed (its seccomp cache), and a long linear filter made that take half a
    millisecond."""
    if len(blocks) <= 4:
        out: list[bytes] = []
        for lo, hi, body in blocks:
            if lo == hi:
                out += [_ins(_JEQ, lo, 0, len(body)), *body]
            else:  # lo <= A <= hi, else on to the next block
                out += [_ins(_JGE, lo, 0, len(body) + 1), _ins(_JGT, hi, len(body), 0), *body]
        return [*out, _ins(_RET, default)]
    mid = len(blocks) // 2
    low, high = _search(blocks[:mid], default), _search(blocks[mid:], default)
    # A >= pivot: take the unconditional jump over the lower half (its 32-bit offset has no 255 limit)
    return [_ins(_JGE, blocks[mid][0], 0, 1), _ins(_JA, len(low)), *low, *high]


def supported() -> bool:
    return platform.machine() == "x86_64"


def mode(pid: int | str = "self") -> int:
    """0 (none), 1 (strict) or 2 (filter), as /proc/PID/status says."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Seccomp:"):
                return int(line.split()[1])
    return 0


__all__ = ["ACTIONS", "OPS", "Arg", "Profile", "Rule", "SeccompError", "compile_profile", "install", "mode",
           "supported"]
