"""An OCI `process` object: decided in the runtime before any fork (so a bad field fails the command with
nothing made), applied in the new process in runc's order — the init process of `create` and every
`exec` share it.

    plan = plan_process(process, linux)      # caps masks, ids, env, rlimits, the compiled seccomp filter
    ... in the child, still privileged:
    set_rlimits(plan)                         # before any user namespace: hard limits can still go up
    install_seccomp_early(plan)               # without no_new_privs the filter needs CAP_SYS_ADMIN
    become_user(plan)                         # bounding set, setgroups/setgid/setuid keeping caps, capset,
                                              # ambient raise (runc's finalizeNamespace)
    path = look_path(plan)                    # the executable, before waiting: a bad one fails create
    install_seccomp_late(plan); exec_process(plan, path)
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource

from ..linux.caps import capset
from ..linux.libc import PR_CAP_AMBIENT, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, libc, prctl

# Imported here, not where it is called: the container's init calls it after pivot_root, when this package's
# files are no longer in its view (a cached filter means the compiler never loaded it before the fork).
from ..linux.seccomp_install import install as install_program
from .config import ConfigError, cap_mask

TYPE_CHECKING = False  # typing is not imported at run time: every engine call pays its imports
if TYPE_CHECKING:
    from typing import Any

PR_SET_KEEPCAPS = 8
PR_CAP_AMBIENT_RAISE = 2
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
RLIMITS = {"RLIMIT_AS": 9, "RLIMIT_CORE": 4, "RLIMIT_CPU": 0, "RLIMIT_DATA": 2, "RLIMIT_FSIZE": 1,
           "RLIMIT_LOCKS": 10, "RLIMIT_MEMLOCK": 8, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13, "RLIMIT_NOFILE": 7,
           "RLIMIT_NPROC": 6, "RLIMIT_RSS": 5, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15, "RLIMIT_SIGPENDING": 11,
           "RLIMIT_STACK": 3}


class ProcessPlan:
    def __init__(self, args: list[str], env: dict[str, str], cwd: str, uid: int, gid: int, additional_gids: list[int],
                 umask: int | None, bounding: int, effective: int, permitted: int, inheritable: int, ambient: int,
                 rlimits: list[tuple[int, int, int]], no_new_privileges: bool, seccomp: bytes | None,
                 apparmor: str | None, oom_score_adj: int | None, terminal: bool,
                 console_size: tuple[int, int] | None) -> None:
        self.args = args
        self.env = env
        self.cwd = cwd
        self.uid = uid
        self.gid = gid
        self.additional_gids = additional_gids
        self.umask = umask
        self.bounding = bounding
        self.effective = effective
        self.permitted = permitted
        self.inheritable = inheritable
        self.ambient = ambient
        self.rlimits = rlimits  # (resource, soft, hard)
        self.no_new_privileges = no_new_privileges
        self.seccomp = seccomp
        self.apparmor = apparmor
        self.oom_score_adj = oom_score_adj
        self.terminal = terminal
        self.console_size = console_size  # (rows, cols)


def _rlim(v: Any) -> int:
    v = int(v)
    return resource.RLIM_INFINITY if v < 0 or v >= 2**63 else v


def plan_process(process: dict[str, Any], linux: dict[str, Any], where: str = "process",
                 cache_dir: str | None = None) -> ProcessPlan:
    args = process.get("args")
    if not isinstance(args, list) or not args:
        raise ConfigError(f"config.json: {where}/args: missing: nothing to run")
    user = process.get("user") or {}
    try:
        uid, gid = int(user.get("uid", 0)), int(user.get("gid", 0))
        gids = [int(g) for g in user.get("additionalGids") or []]
    except (TypeError, ValueError):
        raise ConfigError(f"config.json: {where}/user: uid, gid and additionalGids must be numbers") from None
    caps = process.get("capabilities") or {}
    rl = []
    seen = set()
    for i, r in enumerate(process.get("rlimits") or []):
        kind = r.get("type")
        if kind not in RLIMITS:
            raise ConfigError(f"config.json: {where}/rlimits/{i}/type: unknown {kind!r}")
        if kind in seen:
            raise ConfigError(f"config.json: {where}/rlimits/{i}: duplicate {kind}")
        seen.add(kind)
        soft, hard = _rlim(r.get("soft", 0)), _rlim(r.get("hard", 0))
        if hard != resource.RLIM_INFINITY and (soft == resource.RLIM_INFINITY or soft > hard):
            raise ConfigError(f"config.json: {where}/rlimits/{i}: soft limit {r.get('soft')} is above the hard "
                              f"limit {r.get('hard')}")
        rl.append((RLIMITS[kind], soft, hard))
    env: dict[str, str] = {}
    for item in process.get("env") or []:
        k, sep, v = str(item).partition("=")
        if sep and k:
            env[k] = v
    size = process.get("consoleSize") or {}
    nnp = bool(process.get("noNewPrivileges"))
    return ProcessPlan(
        args=[str(a) for a in args], env=env, cwd=str(process.get("cwd") or "/"), uid=uid, gid=gid,
        additional_gids=gids, umask=user.get("umask"),
        bounding=cap_mask(caps.get("bounding"), f"{where}/capabilities/bounding"),
        effective=cap_mask(caps.get("effective"), f"{where}/capabilities/effective"),
        permitted=cap_mask(caps.get("permitted"), f"{where}/capabilities/permitted"),
        inheritable=cap_mask(caps.get("inheritable"), f"{where}/capabilities/inheritable"),
        ambient=cap_mask(caps.get("ambient"), f"{where}/capabilities/ambient"),
        rlimits=rl, no_new_privileges=nnp, seccomp=compile_seccomp(linux.get("seccomp"), caps, cache_dir),
        apparmor=process.get("apparmorProfile") or None, oom_score_adj=process.get("oomScoreAdj"),
        terminal=bool(process.get("terminal")),
        console_size=(int(size.get("height", 0)), int(size.get("width", 0))) if size else None)


def _sorted_keys(obj: Any) -> Any:
    """The document with every object's keys in order: one cache key for one profile, however it is written."""
    if isinstance(obj, dict):
        return {k: _sorted_keys(obj[k]) for k in sorted(obj)}
    if isinstance(obj, list):
        return [_sorted_keys(v) for v in obj]
    return obj


def compile_seccomp(doc: dict[str, Any] | None, caps: dict[str, Any], cache_dir: str | None = None) -> bytes | None:
    """The config's linux.seccomp as a BPF program (None: no filter), refused clearly where it cannot be.
    With cache_dir (the state root's, private to root), a program compiled before for the same profile is
    read back: an engine sends the same profile for every container, and the compiler's imports and its
    work are most of `create`'s CPU after the interpreter's start-up."""
    if not doc or (not doc.get("defaultAction") and not doc.get("syscalls")):
        return None
    path = None
    if cache_dir is not None:
        # _sha256 and our own JSON writer: hashlib's import loads OpenSSL (~3.5 ms), json's re and enum (~5 ms)
        from .jsonout import dumps
        sha256: Any = __import__("_sha256").sha256
        key = sha256(dumps(_sorted_keys(doc)).encode()).hexdigest()
        path = os.path.join(cache_dir, key + ".bpf")
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError:
            pass
    from ..linux.seccomp import SeccompError
    from .seccomp import compile_config

    try:
        program = compile_config(doc)
    except SeccompError as e:
        raise ConfigError(f"config.json: {e}") from None
    if cache_dir is not None and path is not None and program is not None:
        try:
            os.makedirs(os.path.dirname(cache_dir), mode=0o700, exist_ok=True)  # the state root, private
            os.makedirs(cache_dir, mode=0o700, exist_ok=True)
            tmp = f"{path}.{os.getpid()}"
            with open(tmp, "wb") as f:
                f.write(program)
            os.replace(tmp, path)
        except OSError:
            pass  # a cache that cannot be written is only slower
    return program


# -- in the child -------------------------------------------------------------------------------------

def set_rlimits(plan: ProcessPlan) -> None:
    for res, soft, hard in plan.rlimits:
        try:
            resource.setrlimit(res, (soft, hard))
        except (ValueError, OSError) as e:
            name = next(k for k, v in RLIMITS.items() if v == res)
            raise OSError(getattr(e, "errno", None) or errno.EPERM, f"setting {name} to {soft}/{hard}: {e}") from None


def set_oom_score_adj(plan: ProcessPlan) -> None:
    if plan.oom_score_adj is not None:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(plan.oom_score_adj))


def apply_apparmor(plan: ProcessPlan) -> None:
    """As runc: the profile takes effect at exec when AppArmor is enabled; without AppArmor it is ignored."""
    if not plan.apparmor:
        return
    try:
        with open("/sys/module/apparmor/parameters/enabled") as f:
            enabled = f.read().strip() == "Y"
    except OSError:
        enabled = False
    if enabled:
        with open("/proc/self/attr/apparmor/exec", "w") as f:
            f.write(f"exec {plan.apparmor}")


def install_seccomp_early(plan: ProcessPlan) -> None:
    """Without no_new_privs installing a filter needs CAP_SYS_ADMIN: do it while we still hold it."""
    if plan.seccomp is not None and not plan.no_new_privileges:
        install_program(plan.seccomp)


def install_seccomp_late(plan: ProcessPlan) -> None:
    """With no_new_privs: as late as possible, so the fewest of our own calls run under the filter."""
    if plan.seccomp is not None and plan.no_new_privileges:
        install_program(plan.seccomp)


def set_no_new_privs(plan: ProcessPlan) -> None:
    if plan.no_new_privileges:
        prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


def become_user(plan: ProcessPlan, *, setgroups_allowed: bool = True) -> None:
    """runc's finalizeNamespace: change to the working directory (again after the ids change, if only the
    user may enter it), drop the bounding set, change ids keeping the capabilities, then set effective,
    permitted and inheritable exactly, and raise the ambient ones."""
    try:
        os.chdir(plan.cwd)
        chdir_later = False
    except PermissionError:
        chdir_later = True
    top = _last_cap()
    for i in range(top + 1):
        if not plan.bounding >> i & 1:
            try:
                prctl(PR_CAPBSET_DROP, i, 0, 0, 0)
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
    prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0)
    if setgroups_allowed or plan.additional_gids:
        os.setgroups(plan.additional_gids)
    os.setresgid(plan.gid, plan.gid, plan.gid)
    os.setresuid(plan.uid, plan.uid, plan.uid)
    if chdir_later:
        os.chdir(plan.cwd)
    prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0)
    capset(plan.effective, plan.permitted, plan.inheritable)
    for i in range(top + 1):
        if plan.ambient >> i & 1:
            try:  # needs the capability permitted and inheritable; runc (gocapability) goes on without it
                prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, i, 0, 0)
            except OSError:
                pass


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return 40


def setgroups_allowed() -> bool:
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() != "deny"
    except OSError:
        return True


def fill_home(plan: ProcessPlan) -> None:
    """HOME from the container's /etc/passwd when the config gives none (runc), else /."""
    if "HOME" in plan.env:
        return
    home = "/"
    try:
        with open("/etc/passwd") as f:
            for line in f:
                parts = line.rstrip("\n").split(":")
                if len(parts) >= 6 and parts[2] == str(plan.uid):
                    home = parts[5] or "/"
                    break
    except OSError:
        pass
    plan.env["HOME"] = home


def look_path(plan: ProcessPlan) -> str:
    """args[0] as execve will find it, with the container's PATH (Go's exec.LookPath, as runc)."""
    name = plan.args[0]
    if "/" in name:
        candidates = [name]
    else:
        candidates = [os.path.join(d or ".", name) for d in plan.env.get("PATH", DEFAULT_PATH).split(":")]
    for c in candidates:
        try:
            st = os.stat(c)
        except OSError:
            continue
        if not os.path.isdir(c) and st.st_mode & 0o111:
            return c
    if "/" in name and os.path.exists(name):
        raise OSError(errno.EACCES, f"exec: {name!r}: permission denied")
    raise OSError(errno.ENOENT, f'exec: "{name}": executable file not found in $PATH')


def exec_process(plan: ProcessPlan, path: str) -> None:
    os.execve(path, plan.args, plan.env)


def keyring(name: str) -> None:
    """A session keyring of the container's own (runc's default; --no-new-keyring skips it)."""
    KEYCTL_JOIN_SESSION_KEYRING = 1
    libc.syscall.restype = ctypes.c_long
    r = libc.syscall(250, KEYCTL_JOIN_SESSION_KEYRING, ctypes.c_char_p(name.encode()), 0, 0, 0)
    if r < 0:
        e = ctypes.get_errno()
        if e not in (errno.ENOSYS, errno.EPERM, errno.EACCES):  # no keyrings here (e.g. inside a sandbox)
            raise OSError(e, f"joining a new session keyring: {os.strerror(e)}")


__all__ = ["ProcessPlan", "apply_apparmor", "become_user", "compile_seccomp", "exec_process", "fill_home",
           "install_seccomp_early", "install_seccomp_late", "keyring", "look_path", "plan_process",
           "set_no_new_privs", "set_oom_score_adj", "set_rlimits", "setgroups_allowed"]
