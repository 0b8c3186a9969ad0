"""What works where this runs: `%container doctor` and the one line `%load_ext` prints when something is
missing. Every row is measured by trying, never guessed from the uid: user namespaces, each other namespace,
an overlay and `pivot_root` and a fresh /proc in a throw-away mount namespace, a cgroup with limits under
the project's parent, a veth pair over netlink, the peer tools.

The probes run in a fresh interpreter (`python -m pycontainer_magics.lab.doctor --json`), each in a
forked child of it: the notebook kernel is never forked (threads, ZMQ) and nothing is left behind — mounts
live and die in the child's own mount namespace, the veth pair in its own network namespace, and the one
cgroup it creates (named after the prober's pid, so `prune` would take it too) is removed at once.
"""

from __future__ import annotations

import errno
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass

from ..linux import libc
from ..linux import namespaces as ns
from ..linux.cgroups import CgroupLimits, detect_layout, new_name, open_hierarchy

PROBE_TIMEOUT = 5.0
TOOLS = {  # tool -> what it is for here
    "crun": "the runtime comparison (one bundle under this project, runc and crun)",
    "runc": "the runtime comparison; `runc run --bundle` on bundles written here",
    "skopeo": "copying images between registries and OCI layouts (compared with %image)",
    "umoci": "unpacking OCI images (compared with %image's unpacker)",
    "busybox": "the small local images the notebooks build (busybox-static)",
}


@dataclass(frozen=True)
class Check:
    """One feature: does it work here, what was measured, what to do about it, and what needs it."""

    key: str
    feature: str
    works: bool
    why: str
    fix: str = ""
    needed_for: str = ""


@dataclass(frozen=True)
class Report:
    uid: int
    user: str
    checks: tuple[Check, ...]

    def __getitem__(self, key: str) -> Check:
        for c in self.checks:
            if c.key == key:
                return c
        raise KeyError(key)

    def works(self, key: str) -> bool:
        try:
            return self[key].works
        except KeyError:
            return False

    @property
    def missing(self) -> list[Check]:
        return [c for c in self.checks if not c.works]

    def load_message(self) -> str | None:
        """One line for `%load_ext` when a feature the magics need is missing (None: all there)."""
        core = [k for k in ("userns", "namespaces", "overlay", "pivot_root", "proc", "cgroup_limits", "networks")
                if not self.works(k)]
        if not core:
            return None
        who = "as root" if self.uid == 0 else f"as {self.user} (uid {self.uid}, not root)"
        if not self.works("userns") or not self.works("overlay"):
            can = "containers cannot start here"
        else:
            can = "containers run"
            lacks = [w for k, w in (("cgroup_limits", "limits"), ("networks", "networks")) if not self.works(k)]
            if lacks:
                can += " without " + " or ".join(lacks)
        names = ", ".join(self[k].feature for k in core)
        return f"pycontainer_magics: {who}, {can} (missing: {names}); %container doctor tells why and what to do"

    def to_json(self) -> str:
        return json.dumps({"uid": self.uid, "user": self.user, "checks": [asdict(c) for c in self.checks]})

    @classmethod
    def from_json(cls, text: str) -> Report:
        d = json.loads(text)
        return cls(d["uid"], d["user"], tuple(Check(**c) for c in d["checks"]))


# -- running a probe in a throw-away child -------------------------------------------------------------


class ProbeFailed(Exception):
    """A probe's step failed: `step` is what was tried, the OSError says why."""


def _describe(e: BaseException) -> str:
    if isinstance(e, OSError) and e.errno is not None:
        name = errno.errorcode.get(e.errno, str(e.errno))
        text = e.strerror or os.strerror(e.errno)
        if ":" in text:  # libc.check's "what: strerror"
            text = text.rsplit(":", 1)[1].strip()
        where = f" ({e.filename})" if e.filename else ""
        return f"{name} ({text}){where}"
    return f"{type(e).__name__}: {e}"


def in_child(fn: Callable[[], str], timeout: float = PROBE_TIMEOUT) -> tuple[bool, str]:
    """Run fn() in a forked child; (True, what it returned) or (False, 'step: ERRNO (text)')."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(r)
            out = "ok\0" + (fn() or "")
            code = 0
        except BaseException as e:  # noqa: BLE001 - everything is a probe result
            step = getattr(e, "step", "")
            out = "err\0" + (f"{step}: " if step else "") + _describe(e)
        try:
            os.write(w, out.encode(errors="replace")[:8000])
        finally:
            os._exit(code)
    os.close(w)
    import selectors

    data = b""
    with selectors.DefaultSelector() as sel:
        sel.register(r, selectors.EVENT_READ)
        while sel.select(timeout):
            chunk = os.read(r, 8192)
            if not chunk:
                break
            data += chunk
        else:
            os.kill(pid, 9)
    os.close(r)
    os.waitpid(pid, 0)
    kind, _, text = data.decode(errors="replace").partition("\0")
    if kind == "ok":
        return True, text
    return False, text or f"the probe did not answer within {timeout:g} s"


def step(what: str, fn: Callable[..., object], *args: object, **kwargs: object) -> object:
    """Call fn(*args, **kwargs); an OSError is re-raised carrying the step's name."""
    try:
        return fn(*args, **kwargs)
    except OSError as e:
        e.step = what  # type: ignore[attr-defined]
        raise


def _is_real_root() -> bool:
    """uid 0 in the initial user namespace (the full id range mapped)."""
    if os.geteuid() != 0:
        return False
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() == ["0", "0", "4294967295"]
    except OSError:
        return True


def _own_userns() -> None:
    """Become root of a new user namespace mapping only our ids (what rootless containers do)."""
    uid, gid = os.geteuid(), os.getegid()
    step("unshare(CLONE_NEWUSER)", libc.unshare, ns.CLONE_NEWUSER)
    for f, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
        step(f"write /proc/self/{f}", _write, f"/proc/self/{f}", text)


def _write(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def _private_mounts(rootless: bool) -> None:
    if rootless:
        _own_userns()
    step("unshare(CLONE_NEWNS)", libc.unshare, ns.CLONE_NEWNS)
    step("make / private", libc.mount, None, "/", None, libc.MS_REC | libc.MS_PRIVATE)


# -- the probes ------------------------------------------------------------------------------------------


def _sysctl(name: str) -> str | None:
    try:
        with open("/proc/sys/" + name.replace(".", "/")) as f:
            return f.read().strip()
    except OSError:
        return None


def check_root() -> Check:
    uid = os.geteuid()
    real = _is_real_root()
    if real:
        why = "uid 0 in the initial user namespace"
    elif uid == 0:
        why = "uid 0, but inside a user namespace (root of a container, not of the host)"
    else:
        why = f"uid {uid} ({_user(uid)}), not root"
    return Check("root", "root", real, why,
                 "" if real else "limits and networks need root: start the lab as root (`bash binder/lab.sh` "
                 "from the checkout: as root, or as a user with sudo); the rows below say what works without",
                 "cgroup limits, networks, --userns remap")


def check_userns() -> Check:
    facts = []
    for name in ("kernel.unprivileged_userns_clone", "user.max_user_namespaces",
                 "kernel.apparmor_restrict_unprivileged_userns"):
        v = _sysctl(name)
        if v is not None:
            facts.append(f"{name}={v}")
    ok, text = in_child(_probe_userns)
    why = "unshare(CLONE_NEWUSER) works" if ok else f"unshare(CLONE_NEWUSER) fails: {text.split(': ', 1)[-1]}"
    if facts:
        why += f" ({', '.join(facts)})"
    fix = ""
    if not ok:
        if _sysctl("user.max_user_namespaces") == "0":
            fix = "an admin can allow them: sysctl -w user.max_user_namespaces=15000"
        elif _sysctl("kernel.unprivileged_userns_clone") == "0":
            fix = "an admin can allow them: sysctl -w kernel.unprivileged_userns_clone=1"
        elif _sysctl("kernel.apparmor_restrict_unprivileged_userns") == "1":
            fix = "AppArmor restricts them: sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or run as root"
        else:
            fix = "not allowed in this sandbox (a container's seccomp profile or a hosted notebook): run Jupyter " \
                  "as root on a machine or VM of your own"
    return Check("userns", "user namespaces", ok, why, fix, "%%container, %image build, %%dockerfile")


def _probe_userns() -> str:
    _own_userns()
    return ""


def check_namespaces() -> Check:
    rootless = not _is_real_root()
    ok, text = in_child(lambda: _probe_namespaces(rootless))
    if not ok:
        return Check("namespaces", "other namespaces", False, f"could not try them: {text}", USERNS_FIX,
                     "%%container")
    failed = json.loads(text)
    kinds = [k for k in ns.NAMESPACE_KINDS if k != "user"]
    if failed:
        why = "; ".join(f"{k}: {v}" for k, v in failed.items())
        return Check("namespaces", "other namespaces", False, f"unshare fails for {why}",
                     "share the missing ones with the host: --share " + ",".join(failed), "%%container")
    where = " (inside a user namespace)" if rootless else ""
    return Check("namespaces", "other namespaces", True, f"{', '.join(kinds)}: each unshares{where}", "",
                 "%%container")


def _probe_namespaces(rootless: bool) -> str:
    if rootless:
        _own_userns()
    failed = {}
    for kind in ns.NAMESPACE_KINDS:
        if kind == "user":
            continue
        try:
            libc.unshare(ns.NAMESPACES[kind][1])
        except OSError as e:
            failed[kind] = _describe(e)
    return json.dumps(failed)


def _needs_userns(text: str) -> bool:
    return text.startswith("unshare(CLONE_NEWUSER)") or text.startswith("write /proc/self/")


USERNS_FIX = "needs user namespaces (see that row), or root"


def check_overlay(scratch: str) -> Check:
    rootless = not _is_real_root()
    ok, text = in_child(lambda: _probe_overlay(scratch, rootless))
    where = "in a user namespace" if rootless else "as root"
    why = f"an overlay over /etc mounted and written {where}" if ok else f"{where}: {text}"
    fix = "" if ok else (USERNS_FIX if _needs_userns(text) else "overlayfs in a user namespace needs Linux 5.11+; "
                         "or run as root" if rootless else "is the overlay module loaded? (modprobe overlay)")
    return Check("overlay", "overlay root filesystem", ok, why, fix, "%%container, %image, %%dockerfile")


def _probe_overlay(scratch: str, rootless: bool) -> str:
    _private_mounts(rootless)
    step("mount tmpfs", libc.mount, "tmpfs", scratch, "tmpfs", 0, "size=1m")
    for d in ("upper", "work", "merged"):
        os.mkdir(os.path.join(scratch, d))
    opts = f"lowerdir=/etc,upperdir={scratch}/upper,workdir={scratch}/work"
    step("mount overlay", libc.mount, "overlay", f"{scratch}/merged", "overlay", 0, opts)
    step("write to the overlay", _write, f"{scratch}/merged/pcm-doctor-probe", "x")
    if os.path.exists("/etc/pcm-doctor-probe") or not os.path.exists(f"{scratch}/upper/pcm-doctor-probe"):
        raise ProbeFailed("the write did not land in the upper layer")
    return ""


def check_pivot_root(scratch: str) -> Check:
    rootless = not _is_real_root()
    ok, text = in_child(lambda: _probe_pivot_root(scratch, rootless))
    fix = "" if ok else USERNS_FIX if _needs_userns(text) else "the kernel refused it in a mount namespace of our own"
    return Check("pivot_root", "pivot_root", ok, "pivot_root into a tmpfs works" if ok else text, fix, "%%container")


def _probe_pivot_root(scratch: str, rootless: bool) -> str:
    _private_mounts(rootless)
    step("mount tmpfs", libc.mount, "tmpfs", scratch, "tmpfs", 0, "size=1m")
    os.mkdir(f"{scratch}/old")
    step("pivot_root", libc.pivot_root, scratch, f"{scratch}/old")
    step("detach the old root", libc.umount2, "/old", libc.MNT_DETACH)
    return ""


def check_seccomp() -> Check:
    """A filter of the default profile installed in a child (with no_new_privs, as PID 1 does), and a
    refused call answered EPERM under it."""
    from ..linux import seccomp

    if not seccomp.supported():
        return Check("seccomp", "seccomp filters", False, f"filters are compiled for x86_64 only, not "
                     f"{os.uname().machine}: containers run unfiltered here", "", "the default seccomp profile")
    ok, text = in_child(_probe_seccomp)
    why = "the default profile installs and refuses keyctl with EPERM" if ok else text
    fix = "" if ok else "a kernel with CONFIG_SECCOMP_FILTER; meanwhile --security-opt seccomp=unconfined"
    return Check("seccomp", "seccomp filters", ok, why, fix, "the default seccomp profile")


def _probe_seccomp() -> str:
    import ctypes

    from ..linux import seccomp
    from ..linux.caps import DEFAULT_CAPS
    from ..linux.syscalls_x86_64 import X86_64
    from ..runtime.seccomp_profile import default_profile

    step("set no_new_privs", libc.set_no_new_privs)
    step("install the filter", seccomp.install, seccomp.compile_profile(default_profile(DEFAULT_CAPS)))
    if libc.libc.syscall(X86_64["keyctl"], 0, 0, 0, 0) != -1 or ctypes.get_errno() != errno.EPERM:
        raise ProbeFailed("keyctl was not refused under the filter")
    return ""


def check_proc(scratch: str) -> Check:
    rootless = not _is_real_root()
    ok, text = in_child(lambda: _probe_proc(scratch, rootless))
    fix = "" if ok else USERNS_FIX if _needs_userns(text) else (
        "this /proc has parts masked or read-only (inside another container): the kernel refuses a new /proc; "
        "run on a machine or VM of your own")
    return Check("proc", "fresh /proc (PID namespace)", ok, "a new /proc mounts in a new PID namespace" if ok
                 else text, fix, "%%container")


def _probe_proc(scratch: str, rootless: bool) -> str:
    _private_mounts(rootless)
    step("unshare(CLONE_NEWPID)", libc.unshare, ns.CLONE_NEWPID)
    pid = os.fork()
    if pid == 0:  # PID 1 of the new namespace
        code = 1
        try:
            libc.mount("tmpfs", scratch, "tmpfs", 0, "size=1m")
            os.mkdir(f"{scratch}/proc")
            libc.mount("proc", f"{scratch}/proc", "proc", libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC)
            code = 0 if os.readlink(f"{scratch}/proc/self") == "1" else 2
        except OSError as e:
            code = 10 + (e.errno or 0)
        os._exit(code)
    status = os.waitpid(pid, 0)[1]
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
    if code >= 10:
        err = OSError(code - 10, os.strerror(code - 10))
        err.step = "mount proc"  # type: ignore[attr-defined]
        raise err
    if code != 0:
        raise ProbeFailed(f"PID 1 of the new namespace ended with {code}")
    return ""


def check_cgroups() -> tuple[Check, Check]:
    layout = detect_layout()
    names = {"unified": "v2 (unified)", "hybrid": "v1 controllers, v2 mounted beside them (hybrid)",
             "legacy": "v1 only (legacy)", "none": "none mounted"}
    if layout == "none":
        c1 = Check("cgroups", "cgroup filesystem", False, "no cgroup filesystem under /sys/fs/cgroup",
                   "mount cgroup2 on /sys/fs/cgroup (or run where systemd did)", "limits, %cgroup")
        return c1, Check("cgroup_limits", "cgroup limits", False, "no cgroups at all", c1.fix,
                         "--memory, --cpus, --pids-limit, %cgroup create/run/oom, limited kernel")
    try:
        h = open_hierarchy()
        ctrls = h.available_controllers()
    except OSError as e:
        ctrls, h = [], None
        layout_note = f"; {_describe(e)}"
    else:
        layout_note = ""
    version = "v2" if layout == "unified" else "v1"
    c1 = Check("cgroups", "cgroup filesystem", True,
               f"{names[layout]}; the project uses {version}; controllers: {', '.join(ctrls) or 'none'}{layout_note}",
               "", "limits, %cgroup")
    needed = "--memory, --cpus, --pids-limit, %cgroup create/run/oom, limited kernel"
    if h is None:
        return c1, Check("cgroup_limits", "cgroup limits", False, layout_note.lstrip("; "), "", needed)
    parents = h.parent_paths[0] + (f" (and {len(h.parent_paths) - 1} more)" if len(h.parent_paths) > 1 else "")
    existed = [os.path.isdir(p) for p in h.parent_paths]
    cg = None
    try:
        cg = h.create(new_name("doctor-"), CgroupLimits(memory=64 * 2**20, pids_max=64))
        ok, why = True, f"created a cgroup with memory and pids limits under {parents}"
    except OSError as e:
        if e.filename and os.path.basename(str(e.filename)).startswith("doctor-"):
            e.filename = os.path.dirname(str(e.filename))  # name the parent that refused, not our probe's name
        ok, why = False, f"creating a cgroup under the project's parent: {_describe(e)}"
    finally:
        if cg is not None:
            cg.remove()
        if not all(existed):
            try:
                h.remove_parent()  # only the parent we created just now, and only when empty
            except OSError:
                pass
    fix = ""
    if not ok:
        from ..linux.cgroups.delegation import for_this_user

        d = for_this_user(pid=os.getppid()) if os.geteuid() != 0 else None  # the probes' caller: the kernel
        fix = f"run as root, or delegate a cgroup to this user: {d.one_line()}" if d else "run as root"
    return c1, Check("cgroup_limits", "cgroup limits", ok, why, fix, needed)


def check_networks() -> Check:
    real_root = _is_real_root()
    try:
        import pyroute2  # noqa: F401
    except ImportError as e:
        return Check("networks", "container networks (netlink)", False, f"pyroute2 is missing: {e}",
                     "pip install pyroute2", "--network bridge|NAME, -p, %netns")
    ok, text = in_child(lambda: _probe_netlink(real_root))
    needed = "--network bridge|NAME, -p, %netns network (--network none works without)"
    if ok:
        return Check("networks", "container networks (netlink)", True,
                     "pyroute2 created a veth pair in a throw-away network namespace", "", needed)
    return Check("networks", "container networks (netlink)", False, text,
                 "bridges and veths in the host's network need root (CAP_NET_ADMIN); without root use "
                 "--network none (the default) or --network host", needed)


def _probe_netlink(real_root: bool) -> str:
    from pyroute2 import IPRoute

    if real_root:
        step("unshare(CLONE_NEWNET)", libc.unshare, ns.CLONE_NEWNET)
        with IPRoute() as ipr:
            step("netlink: add a veth pair", ipr.link, "add", ifname="pcmdoc0", kind="veth", peer="pcmdoc1")
        return ""
    # Not root: what the magics would do, in the host's network: add a device (refused, as expected).
    name = f"pcmdoc{os.getpid() % 100000}"
    with IPRoute() as ipr:
        try:
            ipr.link("add", ifname=name, kind="dummy")
        except Exception as e:
            code = getattr(e, "code", None)
            err = OSError(code, os.strerror(code)) if isinstance(code, int) else OSError(str(e))
            err.step = "netlink: add a link in the host's network"  # type: ignore[attr-defined]
            raise err from None
        ipr.link("del", ifname=name)  # it was allowed after all (CAP_NET_ADMIN): take it away again
    return ""


def check_subids() -> Check:
    from ..linux import idmap

    uid = os.geteuid()
    user = _user(uid)
    tools = [t for t in ("newuidmap", "newgidmap") if shutil.which(t)]
    rng = idmap.subid_range("containers" if uid == 0 else user)
    who = "containers" if uid == 0 else user
    ok = rng is not None and (uid == 0 or len(tools) == 2)
    why = (f"/etc/subuid range for {who!r}: {rng[0]}+{rng[1]}" if rng else f"no /etc/subuid range for {who!r}")
    why += f"; newuidmap/newgidmap: {'present' if len(tools) == 2 else 'missing'}"
    if uid == 0:
        fix = "" if ok else "--userns remap falls back to 100000+65536; add `containers:100000:65536` to /etc/subuid " \
                            "and /etc/subgid to choose"
        needed = "--userns remap (a range of host ids as the container's)"
    else:
        fix = "" if ok else "apt-get install uidmap; usermod --add-subuids/--add-subgids (not used by rootless " \
                            "containers here: your own uid is their root)"
        needed = "nothing yet: rootless containers map only your uid"
    return Check("subids", "subordinate ids (newuidmap)", ok, why, fix, needed)


def check_tool(name: str) -> Check:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.access(f"/usr/sbin/{name}", os.X_OK) else None)
    if path is None:
        pkg = "busybox-static" if name == "busybox" else name
        return Check(name, name, False, "not installed", f"apt-get install {pkg}", TOOLS[name])
    try:
        arg = [] if name == "busybox" else ["--version"]
        p = subprocess.run([path, *arg], capture_output=True, text=True, timeout=3)
        first = (p.stdout or p.stderr).strip().splitlines()[:1]
        version = first[0] if first else "?"
    except (OSError, subprocess.TimeoutExpired) as e:
        return Check(name, name, False, f"{path} does not run: {_describe(e)}", f"reinstall {name}", TOOLS[name])
    return Check(name, name, True, f"{path}: {version}", "", TOOLS[name])


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def run_checks() -> Report:
    """All the probes, in this process (forking a child per probe). Prefer `diagnose()` from a kernel."""
    scratch = tempfile.mkdtemp(prefix="pcm-doctor-")
    try:
        checks = [check_root(), check_userns(), check_namespaces(), check_overlay(scratch),
                  check_pivot_root(scratch), check_proc(scratch), check_seccomp(), *check_cgroups(),
                  check_networks(),
                  check_subids(), *(check_tool(t) for t in TOOLS)]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    uid = os.geteuid()
    return Report(uid, _user(uid), tuple(checks))


_cache: Report | None = None


def diagnose(refresh: bool = False) -> Report:
    """The report, measured in a fresh interpreter (cached for this process unless refresh)."""
    global _cache
    if _cache is not None and not refresh:
        return _cache
    p = subprocess.run([sys.executable, "-m", "pycontainer_magics.lab.doctor", "--json"],
                       capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError(f"the doctor's probes failed: {(p.stderr.strip().splitlines() or ['?'])[-1]}")
    _cache = Report.from_json(p.stdout)
    return _cache


def cached() -> Report | None:
    """The report if one was measured already (no probing)."""
    return _cache


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    report = run_checks()
    if "--json" in args:
        print(report.to_json())
        return 0
    width = max(len(c.feature) for c in report.checks)
    for c in report.checks:
        print(f"{c.feature:<{width}}  {'yes' if c.works else 'NO '}  {c.why}" + (f" -> {c.fix}" if c.fix else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["Check", "Report", "cached", "diagnose", "run_checks"]
