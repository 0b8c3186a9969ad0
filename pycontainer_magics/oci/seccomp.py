"""linux.seccomp of a config.json (what containerd, podman and the conformance suite send) as a BPF program,
with the runtime's checks: runc's SetupSeccomp. The engine has already resolved Docker's per-capability
includes/excludes; what reaches a runtime is plain OCI.

Argument conditions are compiled as libseccomp does (every operator, 64-bit values, several conditions
ANDed: linux/seccomp.py); user notification is refused with one line naming the field, never silently
dropped.
"""

from __future__ import annotations

import errno

from ..linux.seccomp import ACTIONS, Arg, Profile, Rule, SeccompError, compile_profile

TYPE_CHECKING = False  # typing is not imported at run time: every engine call pays its imports
if TYPE_CHECKING:
    from typing import Any

KNOWN_ARCHES = {"SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64",
                "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL",
                "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64",
                "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X", "SCMP_ARCH_RISCV64"}
OPERATORS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
             "SCMP_CMP_MASKED_EQ")
FLAGS = ("SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
         "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV")


def profile(doc: dict[str, Any], where: str = "linux/seccomp") -> Profile:
    action = doc.get("defaultAction")
    if action not in ACTIONS:
        raise SeccompError(f"{where}/defaultAction: unknown action {action!r}")
    if doc.get("listenerPath"):
        raise SeccompError(f"{where}/listenerPath: seccomp user notification is not supported by this runtime")
    for a in doc.get("architectures") or []:
        if a not in KNOWN_ARCHES:
            raise SeccompError(f"{where}/architectures: unknown {a!r}")
    for f in doc.get("flags") or []:
        if f not in FLAGS:
            raise SeccompError(f"{where}/flags: unknown {f!r}")
    default_errno = int(doc.get("defaultErrnoRet", errno.EPERM))
    rules = []
    for i, s in enumerate(doc.get("syscalls") or []):
        at = f"{where}/syscalls/{i}"
        names = tuple(s.get("names") or [])
        if not names:
            raise SeccompError(f"{at}/names: missing")
        if s.get("action") not in ACTIONS:
            raise SeccompError(f"{at}/action: unknown action {s.get('action')!r}")
        conds = []
        for j, a in enumerate(s.get("args") or []):
            op = a.get("op")
            if op not in OPERATORS:
                raise SeccompError(f"{at}/args/{j}/op: unknown operator {op!r}")
            try:
                conds.append(Arg(int(a.get("index", 0)), op, int(a.get("value", 0)), int(a.get("valueTwo", 0) or 0)))
            except (TypeError, ValueError):
                raise SeccompError(f"{at}/args/{j}: index, value and valueTwo must be integers") from None
        rules.append(Rule(names, s["action"], int(s.get("errnoRet", default_errno)), args=tuple(conds)))
    return Profile(action, tuple(rules), default_errno)


def compile_config(doc: dict[str, Any] | None) -> bytes | None:
    """The BPF program for a config's linux.seccomp; None when there is no filter to install (runc: no
    default action and no rules means none)."""
    if not doc or (not doc.get("defaultAction") and not doc.get("syscalls")):
        return None
    return compile_profile(profile(doc))


__all__ = ["compile_config", "profile"]
