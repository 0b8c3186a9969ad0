"""The setup plan: what a launch does, in order, as small typed operations (as bubblewrap keeps its setup).

    clone flags -> id maps -> cgroup -> root filesystem (overlay, then each mount in order) -> pivot_root ->
    masked and read-only paths -> rlimits -> working directory -> capabilities -> user -> no_new_privs ->
    seccomp -> exec

`run.plan_launch` decides every step before any fork, so a bad spec fails with nothing made. The steps
then run where they must: the holder (made ahead of time, see holder.py) unshares and maps ids, PID 1
interprets the rest: `rootfs.apply_plan` the mount operations (rootfs.MountOp, one kind of step), and
`run_steps` below the privilege steps, one loop, in this order. The same list renders for students
(`SetupPlan.rows()`: `%%container --explain` shows it without running anything, `_container.plan`
after a run) and is what the OCI export reads (oci/bundle.config_for).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..linux import libc, rlimits, seccomp_install
from ..linux.caps import last_cap, mask_of, restrict_mask
from ..linux.libc import MS_RDONLY
from .rootfs import MountOp

if TYPE_CHECKING:
    from .rootfs import RootfsPlan


# -- what the holder prepares (ahead of time) ---------------------------------------------------------

@dataclass(frozen=True)
class Unshare:
    """New namespaces (clone/unshare flags); the others are shared with the host (or joined: a pod)."""

    namespaces: tuple[str, ...]
    time_offsets: tuple[tuple[str, int], ...] = ()
    joined: tuple[str, ...] = ()  # a pod's, joined instead of made


@dataclass(frozen=True)
class MapIds:
    """The user namespace's uid_map and gid_map (and setgroups deny)."""

    uid_map: str
    gid_map: str
    deny_setgroups: bool


@dataclass(frozen=True)
class JoinCgroup:
    """The container's cgroup, with its limits (PID 1 joins it before anything else runs)."""

    limits: tuple[tuple[str, Any], ...]  # (name, value) of the limits set, e.g. ("memory", 67108864)
    path: str | None = None  # the cgroup (after a run); None when planned only


@dataclass(frozen=True)
class Overlay:
    """The root filesystem: an overlay of the image (lower) and a writable upper layer."""

    lower: str
    writable: bool
    mountpoints: int  # directories and files made for mount targets the image lacks


@dataclass(frozen=True)
class SetHostname:
    name: str


@dataclass(frozen=True)
class PivotRoot:
    """The overlay becomes / ; the old root is detached."""

    root: str | None


# -- what PID 1 does last, before the payload (interpreted by run_steps) -----------------------------

@dataclass(frozen=True)
class SetRlimit:
    name: str
    soft: int
    hard: int


@dataclass(frozen=True)
class Chdir:
    path: str


@dataclass(frozen=True)
class KeepCapabilities:
    """Every capability not named is dropped (bounding, effective, permitted, inheritable, ambient)."""

    keep: frozenset[str]
    mask: int = field(default=0, init=False, compare=False, repr=False)  # their bits, worked out with the plan

    def __post_init__(self) -> None:
        object.__setattr__(self, "mask", mask_of(self.keep))


@dataclass(frozen=True)
class SetUser:
    uid: int
    gid: int


@dataclass(frozen=True)
class NoNewPrivs:
    pass


@dataclass(frozen=True)
class Seccomp:
    """The BPF filter, installed last: it stays with everything PID 1 executes."""

    program: bytes = b""
    profile: str = "default"  # default | unconfined | custom
    rules: int = 0


# -- the payload --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Exec:
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class RunPython:
    """A Python cell, run by PID 1 with the notebook's variables (a fork of the kernel)."""

    lines: int
    env: tuple[tuple[str, str], ...]


Step = (Unshare | MapIds | JoinCgroup | Overlay | SetHostname | MountOp | PivotRoot | SetRlimit | Chdir
        | KeepCapabilities | SetUser | NoNewPrivs | Seccomp | Exec | RunPython)
PrivilegeStep = SetRlimit | Chdir | KeepCapabilities | SetUser | NoNewPrivs | Seccomp


def privilege_steps(*, rlimits_: tuple[tuple[str, int, int], ...], workdir: str, capabilities: frozenset[str],
                    uid: int | None, gid: int | None, no_new_privileges: bool,
                    seccomp_program: bytes | None, seccomp_profile: str = "default") -> tuple[PrivilegeStep, ...]:
    """PID 1's last steps before the payload, in the order they must run."""
    steps: list[PrivilegeStep] = [SetRlimit(n, s, h) for n, s, h in rlimits_]
    steps.append(Chdir(workdir))
    # An empty program is a bundle plan's placeholder (the OCI runtime compiles the profile): still a step.
    seccomp_step = None if seccomp_program is None else Seccomp(seccomp_program, seccomp_profile,
                                                                 len(seccomp_program) // 8)
    if seccomp_step is not None and not no_new_privileges:
        # Without no_new_privs the kernel takes a filter only from a holder of CAP_SYS_ADMIN: it goes in
        # before the capabilities are dropped (runc's order); with it, last (the fewest of our calls under it).
        steps.append(seccomp_step)
    steps.append(KeepCapabilities(capabilities))
    if uid is not None:
        steps.append(SetUser(uid, gid if gid is not None else uid))
    if no_new_privileges:
        steps.append(NoNewPrivs())
        if seccomp_step is not None:
            steps.append(seccomp_step)
    return tuple(steps)


# -- the interpreter (PID 1, after pivot_root) --------------------------------------------------------

def _rlimit(s: SetRlimit) -> None:
    rlimits.apply(((s.name, s.soft, s.hard),))


def _chdir(s: Chdir) -> None:
    try:
        os.chdir(s.path)
    except FileNotFoundError:
        os.makedirs(s.path, exist_ok=True)
        os.chdir(s.path)


def _capabilities(s: KeepCapabilities) -> None:
    try:
        restrict_mask(s.mask)
    except PermissionError:
        if os.geteuid() == 0:
            raise


def _user(s: SetUser) -> None:
    # A user other than root keeps no effective or permitted capabilities (the kernel clears them when every
    # uid leaves 0), as in Docker; the bounding set stays.
    os.setgroups([])
    os.setresgid(s.gid, s.gid, s.gid)
    os.setresuid(s.uid, s.uid, s.uid)


def _no_new_privs(_s: NoNewPrivs) -> None:
    libc.set_no_new_privs()


def _seccomp(s: Seccomp) -> None:
    seccomp_install.install(s.program)


_RUN: dict[type, Any] = {SetRlimit: _rlimit, Chdir: _chdir, KeepCapabilities: _capabilities, SetUser: _user,
                         NoNewPrivs: _no_new_privs, Seccomp: _seccomp}


def ready_steps(steps: tuple[PrivilegeStep, ...]) -> None:
    """Make in this process what the steps use, before it forks the PID 1 that runs them (a Python cell's): made in
    the fork, each object would be a copy-on-write fault there, on the cell's path (and the capability count a read
    of /proc/sys)."""
    for step in steps:
        if isinstance(step, KeepCapabilities):
            last_cap()
        elif isinstance(step, Seccomp) and step.program:
            seccomp_install.prepare(step.program)


def run_steps(steps: tuple[PrivilegeStep, ...]) -> None:
    """PID 1's privilege steps, in order (an OSError names the step that failed in the caller's report)."""
    for step in steps:
        _RUN[type(step)](step)


# -- the plan as a whole ------------------------------------------------------------------------------

_MOUNT_FLAGS = ((libc.MS_NOSUID, "nosuid"), (libc.MS_NODEV, "nodev"), (libc.MS_NOEXEC, "noexec"),
                (MS_RDONLY, "ro"))


def _flags(flags: int, read_only: bool = False) -> str:
    words = [w for bit, w in _MOUNT_FLAGS if flags & bit]
    if read_only and "ro" not in words:
        words.append("ro")
    return ",".join(words)


def _describe(step: Step) -> tuple[str, str, str]:
    """(who, operation, detail) of one step, for a person."""
    if isinstance(step, Unshare):
        made = ", ".join(step.namespaces) or "none"
        extra = f"; joined: {', '.join(step.joined)}" if step.joined else ""
        offs = "; " + ", ".join(f"{c} {s:+d} s" for c, s in step.time_offsets) if step.time_offsets else ""
        return "holder", "unshare", f"new namespaces: {made}{extra}{offs}"
    if isinstance(step, MapIds):
        def one(m: str) -> str:
            return "; ".join(" ".join(line.split()) for line in m.strip().splitlines())
        return "holder", "id maps", f"uid {one(step.uid_map)} | gid {one(step.gid_map)}" + \
            (" | setgroups deny" if step.deny_setgroups else "")
    if isinstance(step, JoinCgroup):
        limits = ", ".join(f"{k}={v}" for k, v in step.limits) or "no limits"
        return "PID 1", "join cgroup", (f"{step.path}: " if step.path else "") + limits
    if isinstance(step, Overlay):
        return "holder", "overlay", f"lower {step.lower}, " + ("writable upper layer" if step.writable else
                                                                "read-only") + \
            (f", {step.mountpoints} mount point(s) made" if step.mountpoints else "")
    if isinstance(step, SetHostname):
        return "holder", "hostname", step.name
    if isinstance(step, MountOp):
        if step.action in ("mask", "readonly"):
            return "PID 1", step.action, step.target
        if step.action == "symlink":
            return "PID 1", "symlink", f"{step.target} -> {step.source}"
        if step.action == "devnode":
            return "PID 1", "devnode", f"{step.target} (the host's node, bound)"
        src = f"{step.source} -> " if step.source and step.action == "bind" else ""
        fs = f" ({step.fstype}" + (f", {step.data}" if step.data else "") + ")" if step.fstype else ""
        opts = _flags(step.flags, step.read_only)
        return "PID 1", step.action, f"{src}{step.target}{fs}" + (f" [{opts}]" if opts else "")
    if isinstance(step, PivotRoot):
        return "PID 1", "pivot_root", f"{step.root or '(no new root)'} becomes /"
    if isinstance(step, SetRlimit):
        return "PID 1", "rlimit", f"{step.name} soft {step.soft} hard {step.hard}"
    if isinstance(step, Chdir):
        return "PID 1", "chdir", step.path
    if isinstance(step, KeepCapabilities):
        return "PID 1", "capabilities", f"keep {len(step.keep)}: " + (", ".join(sorted(step.keep)) or "none")
    if isinstance(step, SetUser):
        return "PID 1", "user", f"uid {step.uid} gid {step.gid}"
    if isinstance(step, NoNewPrivs):
        return "PID 1", "no_new_privs", "set (setuid binaries gain nothing)"
    if isinstance(step, Seccomp):
        return "PID 1", "seccomp", f"{step.profile} profile, {step.rules} BPF instructions"
    if isinstance(step, Exec):
        return "PID 1", "exec", " ".join(step.argv)
    return "PID 1", "python", f"the cell ({step.lines} line(s)) with the notebook's variables"


@dataclass(frozen=True)
class SetupPlan:
    """Every step of one container's launch, in order. rows(): (step, who, operation, detail)."""

    steps: tuple[Step, ...]

    def rows(self) -> list[tuple[int, str, str, str]]:
        return [(i, *_describe(s)) for i, s in enumerate(self.steps, 1)]

    def of(self, kind: type) -> list[Any]:
        """The steps of one kind, e.g. plan.of(MountOp)."""
        return [s for s in self.steps if isinstance(s, kind)]

    def table(self) -> str:
        """The plan as text: one line per step."""
        rows = self.rows()
        w = max((len(op) for _, _, op, _ in rows), default=0)
        return "\n".join(f"{i:3d}  {who:6s} {op:{w}s}  {detail}" for i, who, op, detail in rows)

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        return f"SetupPlan({len(self.steps)} steps)\n{self.table()}"

    def _repr_html_(self) -> str:
        from html import escape

        body = "".join(f"<tr><td>{i}</td><td>{escape(who)}</td><td>{escape(op)}</td>"
                       f"<td style='text-align:left'>{escape(d)}</td></tr>" for i, who, op, d in self.rows())
        return ("<table><thead><tr><th>step</th><th>who</th><th>operation</th><th>detail</th></tr></thead>"
                f"<tbody>{body}</tbody></table>")


def setup_plan(*, new: tuple[str, ...], joined: tuple[str, ...] = (), time_offsets: tuple[tuple[str, int], ...],
               maps: tuple[str, str, bool] | None, limits: tuple[tuple[str, Any], ...], cgroup: str | None,
               hostname: str | None, rootfs: RootfsPlan | None, merged: str | None,
               privileges: tuple[PrivilegeStep, ...], payload: Exec | RunPython) -> SetupPlan:
    steps: list[Step] = [Unshare(new, time_offsets, joined)]
    if maps is not None:
        steps.append(MapIds(*maps))
    if hostname:
        steps.append(SetHostname(hostname))
    steps.append(JoinCgroup(limits, cgroup))
    if rootfs is not None:
        steps.append(Overlay(rootfs.lower, rootfs.writable, len(rootfs.mountpoints)))
        steps.extend(rootfs.ops)
        steps.append(PivotRoot(merged))
    steps.extend(privileges)
    steps.append(payload)
    return SetupPlan(tuple(steps))


__all__ = ["Chdir", "Exec", "JoinCgroup", "KeepCapabilities", "MapIds", "NoNewPrivs", "Overlay", "PivotRoot",
           "PrivilegeStep", "RunPython", "Seccomp", "SetHostname", "SetRlimit", "SetUser", "SetupPlan", "Step",
           "Unshare", "privilege_steps", "run_steps", "setup_plan"]
