"""The OCI runtime command set with state, as runc has it: create, start, state, kill, delete, list, spec.

    create(bundle, id)  set the container up (namespaces, cgroup, root filesystem) and stop PID 1 just
                        before it executes the user's process; returns once the status is "created"
    start(id)           let PID 1 execute it ("running"); "stopped" once it has exited
    state(id)           the runtime-spec state: ociVersion, id, status, pid, bundle, annotations
    kill(id, signal)    signal PID 1
    delete(id, force)   remove the state (a running container only with force: it is killed first)

A container outlives the `create` call: a supervisor process (double fork, own session) runs it through
the ordinary `run` machinery with a gate before exec - a FIFO in the state directory that PID 1 opens
while it can still see the host, and reads one byte from, after everything else is set up (runc's
exec.fifo). `start` writes that byte. The supervisor records the exit status when the process ends,
removes the cgroup, and exits; the state stays until `delete`.

State lives in `<root>/<id>/` (root: run_dir()/oci, or --root like runc's): state.json (the record;
written under a lock on the directory, replaced atomically), exec.fifo (until started) and, unless the
caller's stdio is inherited, the container's output in stdout.log and stderr.log - like runc detached
without a terminal, the process gets no terminal.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import select
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from ..linux.files import FileLock, write_json
from ..linux.proc import start_time
from ..paths import run_dir
from .bundle import OCI_VERSION, BundleError, load_bundle, validate_config, validate_state

STATE_FILE = "state.json"
FIFO = "exec.fifo"
ID_RE = re.compile(r"^[\w+\-.]+$")  # runc's rule for container ids
CREATE_TIMEOUT = 60.0
DELETE_TIMEOUT = 10.0


class LifecycleError(OSError):
    """A lifecycle command cannot be done. str() is one line."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def state_root(root: str | None = None) -> str:
    return os.path.abspath(root) if root else os.path.join(run_dir(), "oci")


def _dir(cid: str, root: str | None) -> str:
    if not ID_RE.match(cid):
        raise LifecycleError(errno.EINVAL, f"invalid container id {cid!r}: use letters, digits and + - . _")
    return os.path.join(state_root(root), cid)


# -- processes ---------------------------------------------------------------------------------------

def _alive(pid: int | None, start: int | None) -> bool:
    return bool(pid) and start is not None and start_time(pid) == start  # type: ignore[arg-type]


def _wait_gone(pid: int, start: int | None, timeout: float) -> bool:
    """Wait until a process (not our child) has exited; False on timeout."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        if not _alive(pid, start):
            return True
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


# -- the record --------------------------------------------------------------------------------------

def _locked(directory: str) -> FileLock:
    """The container's directory, locked against other processes (flock on the directory itself)."""
    return FileLock(directory, directory=True)


def _load(directory: str, cid: str) -> dict[str, Any]:
    try:
        with open(os.path.join(directory, STATE_FILE)) as f:
            rec: dict[str, Any] = json.load(f)
            return rec
    except FileNotFoundError:
        raise LifecycleError(errno.ENOENT, f"container {cid!r} does not exist") from None


def _save(directory: str, rec: dict[str, Any]) -> None:
    write_json(os.path.join(directory, STATE_FILE), rec, newline=False)


def _update(directory: str, **changes: Any) -> None:
    with _locked(directory):
        rec = _load(directory, os.path.basename(directory))
        rec.update(changes)
        _save(directory, rec)


def _status(rec: dict[str, Any]) -> str:
    """The status now: the recorded one, unless the process it names is gone."""
    st = rec["status"]
    if st == "creating":
        return st if _alive(rec.get("supervisor"), rec.get("supervisor_start")) else "stopped"
    if st in ("created", "running"):
        return st if _alive(rec.get("pid"), rec.get("pid_start")) else "stopped"
    return str(st)


def _public(rec: dict[str, Any], owner: bool = False) -> dict[str, Any]:
    """The runtime-spec state (plus runc's rootfs, created and owner, and the exit status once stopped).
    As runc, `state` leaves the owner empty and `list` names it."""
    st = _status(rec)
    out = {"ociVersion": OCI_VERSION, "id": rec["id"], "status": st,
           "pid": (rec.get("pid") or 0) if st in ("created", "running") else 0, "bundle": rec["bundle"],
           "rootfs": rec.get("rootfs", ""), "created": rec["created"], "owner": rec.get("owner", "") if owner else "",
           "annotations": rec.get("annotations") or {}}
    if st == "stopped" and rec.get("exit_status") is not None:
        out["exitStatus"] = rec["exit_status"]
    return out


# -- the commands ------------------------------------------------------------------------------------

def create(bundle: str, cid: str, root: str | None = None, *, inherit_stdio: bool = False) -> list[str]:
    """Create container `cid` from `bundle`; returns notes on what the bundle asks that is not done here.
    On any error nothing is left: no state directory, process or cgroup. The supervisor is a fork of the
    caller that goes on running Python: call this from a single-threaded process (the CLI; a notebook
    runs `pycontainer create` instead), as a fork of a threaded one may inherit a lock held."""
    bundle = os.path.abspath(bundle)
    spec, notes = load_bundle(bundle, None)  # a bad bundle fails here, before anything is made
    directory = _new_state(cid, root, bundle, spec.rootfs or "", None)
    try:
        os.mkfifo(os.path.join(directory, FIFO), 0o600)
        report_r, report_w = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - the supervisor's side, seen through the state it writes
            try:
                os.close(report_r)
                os.setsid()
                if os.fork() == 0:
                    _supervise(spec, directory, report_w, inherit_stdio)
            finally:
                os._exit(0)
        os.close(report_w)
        os.waitpid(child, 0)
        report = _read_report(report_r)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    if not report.get("ok"):
        # The supervisor removes what it made (the cgroup last, at its exit): wait for it, and make sure of
        # the directory even if it died.
        if report.get("supervisor"):
            _wait_gone(report["supervisor"], report.get("supervisor_start"), DELETE_TIMEOUT)
        shutil.rmtree(directory, ignore_errors=True)
        raise LifecycleError(report.get("errno") or errno.EIO, report.get("error") or "the supervisor died")
    return notes


def _new_state(cid: str, root: str | None, bundle: str, rootfs: str, supervisor: int | None) -> str:
    """The state directory of a new container, with its first record ("creating"); an id in use is an
    error. Returns the directory (the caller removes it if what follows fails)."""
    directory = _dir(cid, root)
    os.makedirs(state_root(root), mode=0o700, exist_ok=True)
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        raise LifecycleError(errno.EEXIST, f"container {cid!r} already exists (delete it first)") from None
    try:
        with open(os.path.join(bundle, "config.json")) as f:
            annotations = json.load(f).get("annotations") or {}
        _save(directory, {"id": cid, "status": "creating", "bundle": bundle, "rootfs": rootfs,
                          "created": datetime.now(UTC).isoformat().replace("+00:00", "Z"), "owner": _owner(),
                          "annotations": annotations, "supervisor": supervisor,
                          "supervisor_start": start_time(supervisor) if supervisor else None,
                          "pid": None, "pid_start": None, "exit_status": None})
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return directory


@contextmanager
def recorded_run(bundle: str, cid: str, root: str | None = None) -> Iterator[Any]:
    """`run --bundle DIR ID`, as runc's run: the container runs attached to the caller, and while it runs
    its state is there for `state`, `list` and `kill` from elsewhere; it is deleted when the run ends.
    Yields the on_start callback to give `runtime.run`."""
    directory = _new_state(cid, root, os.path.abspath(bundle), "", os.getpid())
    try:
        def on_start(running: Any) -> None:
            with contextlib.suppress(OSError):
                _update(directory, status="running", pid=running.pid1, pid_start=start_time(running.pid1))

        yield on_start
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _owner() -> str:
    try:
        import pwd
        return pwd.getpwuid(os.geteuid()).pw_name
    except (KeyError, ImportError):
        return str(os.geteuid())


def _read_report(fd: int) -> dict[str, Any]:
    data = b""
    deadline = time.monotonic() + CREATE_TIMEOUT
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return {"error": f"the container was not set up within {CREATE_TIMEOUT:g} s", "errno": errno.ETIMEDOUT}
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    try:
        report: dict[str, Any] = json.loads(data.decode())
        return report
    except ValueError:
        return {}


def _supervise(spec: Any, directory: str, report_w: int, inherit_stdio: bool) -> None:  # pragma: no cover
    """The supervisor: runs the container to its end, then records how it ended. Never returns."""
    from ..runtime.run import run as run_container

    code = 0
    reported = False
    me = os.getpid()
    me_start = start_time(me)

    def report(msg: dict[str, Any]) -> bool:
        """Tell `create` how it went; False if it is no longer listening (it gave up, or was interrupted)."""
        nonlocal reported
        if reported:
            return True
        reported = True
        try:
            os.write(report_w, json.dumps({**msg, "supervisor": me, "supervisor_start": me_start}).encode())
            return True
        except OSError:
            return False
        finally:
            os.close(report_w)

    try:
        os.chdir("/")
        devnull = os.open("/dev/null", os.O_RDWR)
        os.dup2(devnull, 0)
        if not inherit_stdio:  # the caller's pipes are let go of: a captured `create` returns at once
            for fd, name in ((1, "stdout.log"), (2, "stderr.log")):
                log = os.open(os.path.join(directory, name), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                os.dup2(log, fd)
                os.close(log)
        os.closerange(3, report_w)
        os.closerange(report_w + 1, 1 << 16)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _update(directory, supervisor=me, supervisor_start=me_start)

        def on_output(stream: str, text: str) -> None:
            data = text.encode()
            fd = 2 if stream == "stderr" else 1
            while data:
                try:
                    data = data[os.write(fd, data):]
                except OSError:
                    return  # a closed terminal must not end the container

        def on_start(running: Any) -> None:
            # Never raises: PID 1 waits at the gate, and the run would wait for it forever.
            pid = running.pid1
            try:
                _update(directory, status="created", pid=pid, pid_start=start_time(pid))
                ok = report({"ok": True})
            except OSError:
                ok = False
            if not ok:  # `create` gave up and removed the state: nobody could start or delete it
                running.kill()

        r = run_container(spec, on_output=on_output, helper=False, on_start=on_start,
                         gate=os.path.join(directory, FIFO))
        exit_status = r.exit_code if r.exit_code is not None else 255
        if not reported:  # it ended before it was ever created
            shutil.rmtree(directory, ignore_errors=True)
            report({"error": r.error or "container setup failed", "errno": errno.EIO})
        else:
            _update(directory, status="stopped", exit_status=exit_status, oom_killed=r.oom_killed,
                    error=r.error or None)
    except BaseException as e:  # noqa: BLE001
        code = 1
        if not reported:
            shutil.rmtree(directory, ignore_errors=True)
            report({"error": str(e), "errno": getattr(e, "errno", None) or errno.EIO})
        else:
            try:
                _update(directory, status="stopped", exit_status=255, error=str(e))
            except OSError:
                pass
    try:
        # What the interpreter would do at exit for the run (the caller's own exit handlers are not ours
        # to run): the cgroup's removal, deferred to the background, and the then empty parent cgroup.
        from ..runtime import cleanup
        from ..runtime.run import _leave_no_parent, hierarchy
        h = hierarchy()
        if h is not None:
            _leave_no_parent(h)
        cleanup.settle()
    finally:
        os._exit(code)


def start(cid: str, root: str | None = None) -> None:
    directory = _dir(cid, root)
    with _locked_existing(directory, cid):
        rec = _load(directory, cid)
        st = _status(rec)
        if st != "created":
            raise LifecycleError(errno.EINVAL, f"cannot start container {cid!r}: it is {st}, not created")
        fifo = os.path.join(directory, FIFO)
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:  # ENXIO: no reader, PID 1 is gone
            raise LifecycleError(e.errno, f"cannot start container {cid!r}: its process is gone ({e.strerror})") \
                from None
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
        os.unlink(fifo)
        rec["status"] = "running"
        _save(directory, rec)


@contextmanager
def _locked_existing(directory: str, cid: str) -> Iterator[None]:
    try:
        with _locked(directory):
            yield
    except FileNotFoundError as e:
        if e.filename == directory:
            raise LifecycleError(errno.ENOENT, f"container {cid!r} does not exist") from None
        raise


def state(cid: str, root: str | None = None, *, owner: bool = False) -> dict[str, Any]:
    """The runtime-spec state of `cid`, validated against state-schema.json."""
    directory = _dir(cid, root)
    with _locked_existing(directory, cid):
        out = _public(_load(directory, cid), owner)
    validate_state(out)
    return out


def list_states(root: str | None = None) -> list[dict[str, Any]]:
    base = state_root(root)
    out = []
    try:
        names = sorted(os.listdir(base))
    except FileNotFoundError:
        return []
    for name in names:
        try:
            out.append(state(name, root, owner=True))
        except (LifecycleError, OSError):
            continue  # being created or deleted right now
    return out


SIGNALS = {s.name.removeprefix("SIG"): int(s) for s in signal.Signals}


def parse_signal(text: str) -> int:
    """`TERM`, `SIGTERM`, `sigterm` or `15`."""
    t = text.strip().upper().removeprefix("SIG")
    if t.isdigit() and 0 < int(t) < signal.NSIG:
        return int(t)
    if t in SIGNALS:
        return SIGNALS[t]
    raise LifecycleError(errno.EINVAL, f"invalid signal {text!r}: give a name like TERM or KILL, or a number")


def kill(cid: str, sig: int | str = signal.SIGTERM, root: str | None = None) -> None:
    """Signal PID 1 of a created or running container. (PID 1 of a PID namespace ignores signals it has no
    handler for, except SIGKILL: as with runc, `kill` of a shell that traps nothing needs KILL.)"""
    signum = parse_signal(sig) if isinstance(sig, str) else int(sig)
    directory = _dir(cid, root)
    with _locked_existing(directory, cid):
        rec = _load(directory, cid)
        st = _status(rec)
        if st not in ("created", "running"):
            raise LifecycleError(errno.ESRCH, f"cannot kill container {cid!r}: it is {st}")
        try:
            os.kill(rec["pid"], signum)
        except ProcessLookupError:
            raise LifecycleError(errno.ESRCH, f"cannot kill container {cid!r}: its process is gone") from None


def delete(cid: str, root: str | None = None, *, force: bool = False) -> None:
    """Remove a stopped (or created) container's state; with force, kill a running one first. Returns once
    its supervisor has removed the cgroup and exited."""
    directory = _dir(cid, root)
    with _locked_existing(directory, cid):
        rec = _load(directory, cid)
        st = _status(rec)
        if st in ("running", "creating") and not force:
            raise LifecycleError(errno.EBUSY, f"cannot delete container {cid!r}: it is {st} (kill it first, "
                                 "or use --force)")
        if st in ("created", "running") and _alive(rec.get("pid"), rec.get("pid_start")):
            try:
                os.kill(rec["pid"], signal.SIGKILL)  # PID 1 takes its PID namespace with it
            except ProcessLookupError:
                pass
    sup, sup_start = rec.get("supervisor"), rec.get("supervisor_start")
    if sup and not _wait_gone(sup, sup_start, DELETE_TIMEOUT):
        # It should have finished long ago: end it, and remove what it could not.
        if _alive(sup, sup_start):
            os.kill(sup, signal.SIGKILL)
            _wait_gone(sup, sup_start, DELETE_TIMEOUT)
        from ..workloads.prune import prune
        prune()
    shutil.rmtree(directory, ignore_errors=True)


# -- spec: a default config.json, as `runc spec` writes ------------------------------------------------

def default_config(rootless: bool = False) -> dict[str, Any]:
    """runc's default bundle config (args `sh`, root `rootfs` read-only, the standard mounts, masked and
    read-only paths, three capabilities), except that the process gets no terminal (this runtime gives
    none) and the hostname is ours. --rootless: a user namespace mapping the caller to root, no network
    namespace (an unprivileged user cannot configure one), /sys bound from the host."""
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    pts = ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] + ([] if rootless else ["gid=5"])
    sys_mount: dict[str, Any] = (
        {"destination": "/sys", "type": "none", "source": "/sys", "options": ["rbind", "nosuid", "noexec", "nodev",
                                                                              "ro"]}
        if rootless else
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]})
    linux: dict[str, Any] = {
        "namespaces": [{"type": t} for t in (("pid", "ipc", "uts", "mount", "user") if rootless else
                                             ("pid", "network", "ipc", "uts", "mount"))],
        "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                        "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
    }
    if rootless:
        linux["uidMappings"] = [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
    else:
        linux["resources"] = {"devices": [{"allow": False, "access": "rwm"}]}
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted", "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "pycontainer",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": pts},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            sys_mount,
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": linux,
    }


def write_spec(directory: str = ".", rootless: bool = False) -> str:
    """Write `directory`/config.json with the default config; refuses to overwrite one (as runc)."""
    path = os.path.join(directory, "config.json")
    if os.path.exists(path):
        raise LifecycleError(errno.EEXIST, f"{path} exists: remove it first")
    if not os.path.isdir(directory):
        raise LifecycleError(errno.ENOENT, f"{directory}: no such directory")
    config = default_config(rootless)
    validate_config(config)
    with open(path, "x") as f:
        json.dump(config, f, indent="\t")
        f.write("\n")
    return path


def format_list(states: list[dict[str, Any]]) -> str:
    """`runc list`'s table: ID PID STATUS BUNDLE CREATED OWNER."""
    rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
    rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"]) for s in states]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "   " + r[5]
                     for r in rows) + "\n"


__all__ = ["BundleError", "LifecycleError", "create", "default_config", "delete", "format_list", "kill",
           "list_states", "parse_signal", "start", "state", "state_root", "write_spec"]
