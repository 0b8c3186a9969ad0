"""Which seccomp profile a container gets: Docker's default in effect, none (`--security-opt
seccomp=unconfined`), or one given as JSON (the OCI runtime spec's `linux.seccomp`, or a Docker profile
file with its per-capability `includes`/`excludes`).

The default follows Docker's: the kernel keyring, module loading, kexec, reboot, clock setting, accounting,
raw I/O, new namespaces (unshare, setns, clone with CLONE_NEW* flags; clone3 answers ENOSYS so that libc
falls back to clone), mounting and the rest that only CAP_SYS_ADMIN should reach are refused with EPERM,
unless the container was given the capability that makes the call legitimate (as Docker's profile does
with `includes: {caps: [...]}`). Written as a list of what is refused over an allow-by-default, so that a
system call newer than this list still works, where Docker's list of what is allowed would refuse it.
"""

from __future__ import annotations

import errno
import json
from typing import Any

from ..linux.seccomp import ACTIONS, Profile, Rule, SeccompError

ALWAYS_REFUSED = ("add_key", "keyctl", "request_key", "kexec_load", "kexec_file_load", "create_module",
                  "get_kernel_syms", "query_module", "nfsservctl", "uselib", "ustat", "sysfs", "_sysctl")
REFUSED_WITHOUT = {  # capability -> the calls it makes legitimate
    "SYS_ADMIN": ("mount", "umount2", "pivot_root", "unshare", "setns", "swapon", "swapoff", "quotactl",
                  "lookup_dcookie", "bpf", "perf_event_open", "fanotify_init", "name_to_handle_at", "fsopen",
                  "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr"),
    "SYS_TIME": ("settimeofday", "clock_settime", "clock_adjtime"),
    "SYS_MODULE": ("init_module", "finit_module", "delete_module"),
    "SYS_BOOT": ("reboot",),
    "SYS_PACCT": ("acct",),
    "SYS_RAWIO": ("iopl", "ioperm"),
    "SYS_PTRACE": ("kcmp", "userfaultfd"),
    "DAC_READ_SEARCH": ("open_by_handle_at",),
    "SYSLOG": ("syslog",),
}
# clone's flags that make namespaces (CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET)
CLONE_NEW_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)


def default_profile(capabilities: frozenset[str]) -> Profile:
    refused = list(ALWAYS_REFUSED)
    for cap, calls in REFUSED_WITHOUT.items():
        if cap not in capabilities:
            refused += calls
    rules = [Rule(tuple(refused), "SCMP_ACT_ERRNO", errno.EPERM)]
    if "SYS_ADMIN" not in capabilities:
        rules += [Rule(("clone",), "SCMP_ACT_ERRNO", errno.EPERM, (0, flag, flag)) for flag in CLONE_NEW_FLAGS]
        rules.append(Rule(("clone3",), "SCMP_ACT_ERRNO", errno.ENOSYS))
    return Profile("SCMP_ACT_ALLOW", tuple(rules))


def _caps_of(entry: Any) -> set[str]:
    return {str(c).removeprefix("CAP_") for c in ((entry or {}).get("caps") or [])}


def from_json(doc: dict[str, Any], capabilities: frozenset[str], where: str = "seccomp") -> Profile:
    """A profile from the OCI spec's `linux.seccomp` or a Docker profile file. Errors name the field."""
    if not isinstance(doc, dict) or "defaultAction" not in doc:
        raise SeccompError(f"{where}/defaultAction: missing")
    if doc["defaultAction"] not in ACTIONS:
        raise SeccompError(f"{where}/defaultAction: unknown action {doc['defaultAction']!r}")
    rules = []
    for i, s in enumerate(doc.get("syscalls") or []):
        at = f"{where}/syscalls/{i}"
        inc, exc = _caps_of(s.get("includes")), _caps_of(s.get("excludes"))
        if (inc and not inc <= capabilities) or (exc and exc & capabilities):
            continue  # Docker's per-capability rules: not for this container
        names = tuple(s.get("names") or ([s["name"]] if s.get("name") else []))
        action = s.get("action")
        if not names or action not in ACTIONS:
            raise SeccompError(f"{at}: needs names and a known action (got {action!r})")
        args = s.get("args") or []
        if len(args) > 1:
            raise SeccompError(f"{at}/args: conditions on more than one argument are not supported here")
        arg = None
        if args:
            a = args[0]
            op = a.get("op")
            if op == "SCMP_CMP_MASKED_EQ":
                arg = (int(a.get("index", 0)), int(a.get("value", 0)), int(a.get("valueTwo", 0)))
            elif op == "SCMP_CMP_EQ":
                arg = (int(a.get("index", 0)), 0xFFFFFFFF, int(a.get("value", 0)))
            else:
                raise SeccompError(f"{at}/args/0/op: {op!r} is not supported here (SCMP_CMP_EQ, SCMP_CMP_MASKED_EQ)")
        rules.append(Rule(names, action, int(s.get("errnoRet", doc.get("defaultErrnoRet", errno.EPERM))), arg))
    return Profile(doc["defaultAction"], tuple(rules), int(doc.get("defaultErrnoRet", errno.EPERM)))


def to_oci(profile: Profile) -> dict[str, Any]:
    """The profile as the OCI runtime spec's `linux.seccomp` (what crun and runc take)."""
    syscalls = []
    for r in profile.rules:
        entry: dict[str, Any] = {"names": list(r.names), "action": r.action}
        if r.action == "SCMP_ACT_ERRNO":
            entry["errnoRet"] = r.errno_ret
        if r.arg is not None:
            entry["args"] = [{"index": r.arg[0], "value": r.arg[1], "valueTwo": r.arg[2], "op": "SCMP_CMP_MASKED_EQ"}]
        syscalls.append(entry)
    out: dict[str, Any] = {"defaultAction": profile.default_action, "architectures": ["SCMP_ARCH_X86_64"],
                           "syscalls": syscalls}
    if profile.default_action == "SCMP_ACT_ERRNO":
        out["defaultErrnoRet"] = profile.default_errno
    return out


def profile_for(seccomp: str, capabilities: frozenset[str]) -> Profile | None:
    """The spec's `seccomp` ("default", "unconfined" or a profile's JSON text) as a profile; None: none."""
    if seccomp == "unconfined":
        return None
    if seccomp == "default":
        return default_profile(capabilities)
    try:
        doc = json.loads(seccomp)
    except ValueError as e:
        raise SeccompError(f"seccomp profile: not JSON ({e})") from None
    return from_json(doc, capabilities)


__all__ = ["default_profile", "from_json", "profile_for", "to_oci"]
