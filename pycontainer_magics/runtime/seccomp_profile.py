"""Which seccomp profile a container gets: Docker's default (seccomp_default.py), none (`--security-opt
seccomp=unconfined`), or one given as JSON (the OCI runtime spec's `linux.seccomp`, or a Docker profile file
with its per-capability, per-architecture and minimum-kernel `includes`/`excludes`).

Docker's default is an allow-list: what it does not name is refused with EPERM, and what only a capability
makes legitimate (mount with CAP_SYS_ADMIN, ...) is allowed when the container has that capability.
"""

from __future__ import annotations

import errno
import json
import os
from typing import Any

from ..linux.seccomp import ACTIONS, OPS, Arg, Profile, Rule, SeccompError
from .seccomp_default import DOCKER_DEFAULT

ARCH = "amd64"  # Docker's name for this architecture (the filter is compiled for x86_64 only)
_ARCH_NAMES = {"amd64", "x86_64", "SCMP_ARCH_X86_64"}


def default_profile(capabilities: frozenset[str]) -> Profile:
    """Docker's default profile for a container with `capabilities` (names without CAP_)."""
    return from_json(DOCKER_DEFAULT, capabilities, "default seccomp profile")


def _caps_of(entry: Any) -> set[str]:
    return {str(c).removeprefix("CAP_") for c in ((entry or {}).get("caps") or [])}


def _kernel() -> tuple[int, ...]:
    release = os.uname().release.split("-")[0]
    return tuple(int(x) for x in release.split(".")[:2] if x.isdigit())


def _applies(s: dict[str, Any], capabilities: frozenset[str], at: str) -> bool:
    """Docker's `includes`/`excludes`: for these capabilities, architectures, kernels only (or not)."""
    inc, exc = s.get("includes") or {}, s.get("excludes") or {}
    if not isinstance(inc, dict) or not isinstance(exc, dict):
        raise SeccompError(f"{at}/includes, excludes: objects expected")
    if _caps_of(inc) - capabilities or _caps_of(exc) & capabilities:
        return False
    if inc.get("arches") and not _ARCH_NAMES & set(inc["arches"]):
        return False
    if exc.get("arches") and _ARCH_NAMES & set(exc["arches"]):
        return False
    if inc.get("minKernel"):
        try:
            wanted = tuple(int(x) for x in str(inc["minKernel"]).split(".")[:2])
        except ValueError:
            raise SeccompError(f"{at}/includes/minKernel: {inc['minKernel']!r} is not a version like 4.8") from None
        if _kernel() < wanted:
            return False
    return True


def _arg(a: Any, at: str) -> Arg:
    if not isinstance(a, dict):
        raise SeccompError(f"{at}: an object expected")
    op = a.get("op")
    if op not in OPS:
        raise SeccompError(f"{at}/op: {op!r} is not one of {', '.join(OPS)}")
    try:
        return Arg(int(a.get("index", 0)), op, int(a.get("value", 0)), int(a.get("valueTwo", 0) or 0))
    except (TypeError, ValueError):
        raise SeccompError(f"{at}: index, value and valueTwo must be integers") from None


def from_json(doc: dict[str, Any], capabilities: frozenset[str], where: str = "seccomp") -> Profile:
    """A profile from the OCI spec's `linux.seccomp` or a Docker profile file. Errors name the field."""
    if not isinstance(doc, dict) or "defaultAction" not in doc:
        raise SeccompError(f"{where}/defaultAction: missing")
    if doc["defaultAction"] not in ACTIONS:
        raise SeccompError(f"{where}/defaultAction: unknown action {doc['defaultAction']!r}")
    default_errno = int(doc.get("defaultErrnoRet") or errno.EPERM)
    rules = []
    for i, s in enumerate(doc.get("syscalls") or []):
        at = f"{where}/syscalls/{i}"
        if not _applies(s, capabilities, at):
            continue  # Docker's per-capability / per-architecture rules: not for this container
        names = tuple(s.get("names") or ([s["name"]] if s.get("name") else []))
        action = s.get("action")
        if not names or action not in ACTIONS:
            raise SeccompError(f"{at}: needs names and a known action (got {action!r})")
        args = tuple(_arg(a, f"{at}/args/{j}") for j, a in enumerate(s.get("args") or []))
        rules.append(Rule(names, action, int(s.get("errnoRet") or default_errno), args=args))
    return Profile(doc["defaultAction"], tuple(rules), default_errno)


def to_oci(profile: Profile) -> dict[str, Any]:
    """The profile as the OCI runtime spec's `linux.seccomp` (what crun and runc take)."""
    syscalls = []
    for r in profile.rules:
        entry: dict[str, Any] = {"names": list(r.names), "action": r.action}
        if r.action == "SCMP_ACT_ERRNO":
            entry["errnoRet"] = r.errno_ret
        if r.conditions:
            entry["args"] = [{"index": c.index, "value": c.value, "valueTwo": c.value_two, "op": c.op}
                             for c in r.conditions]
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
