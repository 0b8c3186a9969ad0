"""The namespace holder: a small process that makes a container's namespaces and root filesystem and
keeps them until the container is done.

Prepared ahead of time (by the launch helper, see zygote.py), a holder leaves only PID 1's own work on
a cell's critical path. Preparation, in the order the kernel forces:

  1. a mount namespace, made private, with a tmpfs over the scratch directory (so the writable layer
     vanishes with the namespace), the mount-point layer, and the overlay root - built while still host
     root, since an overlay over the host's / is refused inside a user namespace (without root the
     user namespace has to come first, and the host image is one overlay per top-level directory);
  2. the user namespace; the preparer writes the id maps (a full map needs a writer outside it);
  3. network, UTS, IPC, PID and time namespaces, owned by the new user namespace; time offsets are
     written before any process enters;
     in a pod (workloads/pods.py), the pod infra's user, network, IPC and UTS namespaces are joined
     instead of made (setns on /proc/<infra>/ns/*, opened first, while still outside any of them);
  4. "ready". Then one run order: fork PID 1 (nested) or wait while the caller runs it (direct); then
     the layer diff, read from the upper directory this holder still sees, and exit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import gc
import os
import select
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from ..linux import caps, idmap, libc, rlimits
from ..linux.libc import MS_NODEV, MS_NOSUID, MS_REMOUNT, PR_SET_PDEATHSIG, mount, prctl
from ..linux.namespaces import CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWUSER, CLONE_NEWUTS
from ..linux.netdev import loopback_up
from . import rootfs
from .channel import recv_ctl, send, send_ctl
from .launch import (
    STATUS_FD,
    Launch,
    become_root,
    failure,
    pid1_nested,
    pid1_parked,
    report_failure,
    reset_signals,
)

CTL_FD = 4


class SetupFailed(Exception):
    """Preparing a holder failed; `.info` has the stage, errno and file."""

    def __init__(self, info: dict[str, Any]) -> None:
        super().__init__(info.get("message"))
        self.info = info


@dataclass(frozen=True)
class HolderPlan:
    """What a holder prepares. Equal plans give interchangeable holders (the pool's key)."""

    new_mount: bool
    new_user: bool
    flags_rest: int  # network, UTS, IPC, PID, time: unshared after the user namespace
    scratch: str | None
    lower: str | None  # the image root ("/" or a directory); None without a new mount namespace
    mountpoints: tuple[tuple[str, str], ...]
    writable: bool
    time_offsets: tuple[tuple[str, int], ...]
    maps: tuple[str, str, bool]  # uid_map, gid_map, deny setgroups
    rootless: bool
    # A pod's member: (infra pid, inode of its network namespace, checked against a recycled pid). The
    # user namespace and the network, IPC and UTS ones in flags_rest are joined, not unshared.
    join: tuple[int, int] | None = None
    join_pid: bool = False  # the pod's PID namespace too (its infra's pid_for_children)
    hostname: str | None = None  # set in the new UTS namespace at once (a pod's infra)
    loopback: bool = False  # bring lo up in the new network namespace (a pod's infra)
    pid_init: bool = False  # fork an init into the new PID namespace, for others to join (a pod's infra)
    raise_rlimits: tuple[tuple[str, int, int], ...] = ()  # hard limits PID 1 needs above ours (--ulimit)
    upper_dir: str | None = None  # keeps upper/ and work/ on disk (a daemon's container), not in the scratch tmpfs
    storage_size: int | None = None  # the scratch tmpfs's size= (bounds the writable layer); None: tmpfs's default

    @property
    def merged(self) -> str | None:
        return self.scratch + "/merged" if self.scratch and self.new_mount else None

    def resizable_to(self, other: HolderPlan) -> bool:
        """A holder prepared for this plan serves `other` once its writable layer's bound is changed
        (resize_writable_layer): the plans differ in storage_size only, and the bound is the size of the
        scratch tmpfs that root mounted (without root the bound is also in the mount points' own tmpfs)."""
        return not self.rootless and self.scratch is not None and self.upper_dir is None \
            and dataclasses.replace(self, storage_size=other.storage_size) == other


def holder_main(hp: HolderPlan, ctl: int, launch: Launch | None = None) -> NoReturn:
    """Entry point of a freshly forked holder. Never returns."""
    stage = "starting the holder"
    try:
        os.setsid()
        reset_signals()
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        devnull = os.open("/dev/null", os.O_RDWR)
        os.dup2(ctl, 100)
        # 3 too (STATUS_FD comes with the run order): a pod's infra lives long, and a dup of the caller's socket
        # or lock it kept there would outlive their close. Not closed: a received fd must not land on it.
        for i in (0, 1, 2, STATUS_FD):
            os.dup2(devnull, i)
        os.dup2(100, CTL_FD, inheritable=False)
        os.closerange(CTL_FD + 1, 1 << 20)
        sock = socket.socket(fileno=CTL_FD)
        upper = mp = None
        pod: dict[int, int] = {}
        if hp.raise_rlimits:  # before any user namespace: only here can a hard limit go up
            stage = "raising resource limits"
            rlimits.raise_hard(hp.raise_rlimits)
        if hp.join is not None:
            stage = "opening the pod's namespaces"
            pod = _open_pod(*hp.join, hp.join_pid)
        if hp.new_user and hp.rootless:
            stage = "creating the user namespace"
            _enter_user_namespace(sock, pod.pop(CLONE_NEWUSER, None))
        if hp.new_mount and hp.scratch and hp.lower:
            stage = "building the overlay root filesystem"
            upper, mp = _build_rootfs(hp)
        if hp.new_user and not hp.rootless:
            stage = "creating the user namespace"
            _enter_user_namespace(sock, pod.pop(CLONE_NEWUSER, None))
        stage = "joining the pod's namespaces"
        for flag, fd in pod.items():
            libc.setns(fd, flag)
            os.close(fd)
        stage = "creating namespaces"
        if hp.flags_rest & ~_joined(hp):
            libc.unshare(hp.flags_rest & ~_joined(hp))
        if hp.hostname:
            libc.sethostname(hp.hostname)
        if hp.loopback:
            stage = "bringing up the loopback interface"
            loopback_up()
        if hp.pid_init:
            stage = "starting the PID namespace's init"
            _fork_init()
        if hp.time_offsets:
            stage = "setting time namespace offsets"
            with open("/proc/self/timens_offsets", "w") as f:
                for clock, secs in hp.time_offsets:
                    f.write(f"{clock} {secs} 0\n")
        if hp.new_user:
            # Last: changing credentials makes the process non-dumpable, which hands its /proc/self
            # files (timens_offsets among them) to host root.
            become_root()
        caps.last_cap()  # read once here: the PID 1 we fork drops capabilities without reading it
        send_ctl(sock, {"ready": True})
    except BaseException as e:  # noqa: BLE001
        try:
            send_ctl(socket.socket(fileno=CTL_FD), {"setup_error": failure(stage, e)})
        finally:
            os._exit(125)
    _serve_one_run(hp, sock, upper, mp, launch)


def _serve_one_run(hp: HolderPlan, sock: socket.socket, upper: str | None, mp: str | None,
                   launch: Launch | None) -> NoReturn:
    msg, fds = recv_ctl(sock)
    parked = None
    if msg is not None and "park" in msg:  # the pool: prepare PID 1 too, for a run like the last
        parked = _park(msg["park"], fds[:-1], fds[-1])
        msg, fds = recv_ctl(sock)
    if msg is None:
        # Prepared but never used. A parked PID 1 would die with us (PDEATHSIG) but stay a zombie for whoever adopts
        # it: an init that reaps late kept it counted in its cgroup's pids, and a kernel that is PID 1 of its own
        # container never reaps it. Reaped here, before we go.
        _discard(parked)
        os._exit(0)
    L = launch or msg.get("launch")  # (none sent for a direct run: see below)
    os.dup2(fds[0], STATUS_FD, inheritable=True)
    os.close(fds[0])
    stage = "starting PID 1"
    try:
        if msg["mode"] == "nested":
            assert L is not None
            want_diff, export_layer = L.want_diff, L.export_layer
            stdin, stdout, stderr, *join_fds = fds[1:]
            console = join_fds.pop(0) if L.terminal else None  # where PID 1 sends its terminal's master
            # A PID 1 parked here is this run's (take() hands a run only a holder whose PID 1 fits it): the caller
            # sent it the run itself (run._give_run), its hostname set already; or it could not (rootless, with a host
            # name to set) and we hand it over. One that failed to get ready never read it: one is forked then.
            if msg.get("parked"):
                pid = _took_run(parked)
            else:
                if L.hostname:
                    libc.sethostname(L.hostname)
                pid = _hand_over(parked, L, (stdin, stdout, stderr))
            if pid is None:
                _discard(parked)
                parked = None
            if pid is not None:
                for fd in (stdin, stdout, stderr):
                    os.close(fd)
            else:
                for i, fd in enumerate((stdin, stdout, stderr)):
                    os.dup2(fd, i)
                    os.close(fd)
                pid = os.fork()
                if pid == 0:
                    sock.close()
                    pid1_nested(L, join_fds, console)
                for i in (0, 1, 2):
                    os.close(i)
            if console is not None:
                os.close(console)
            for fd in join_fds:
                os.close(fd)
            send(STATUS_FD, {"pid1": pid, "prepared": parked is not None and parked[0] == pid})
            status = _wait(pid)
            exited = _now()
        else:
            # Direct: the caller forks PID 1 (a Python cell) and sends only what is left here — the layer diff or
            # its export — not the whole launch (pickling its plan was 0.1 ms of the cell's path).
            want_diff, export_layer = msg["want_diff"], msg["export_layer"]
            _discard(parked)
            stage = "waiting for the container"
            # The caller says when its PID 1 has exited and it wants the diff (or the export) from here. When it read
            # the diff itself, it only lets us go (an end of file): nothing to send, so no wake-up on its path.
            done, _ = recv_ctl(sock)
            status, exited = None, _now()
            if done is None:
                want_diff, export_layer = False, None
        diff = None
        if want_diff and upper is not None and hp.lower is not None:
            stage = "computing the layer diff"
            diff = rootfs.layer_diff(upper, hp.lower, mp, split_top=hp.rootless and hp.lower == "/",
                                     top=hp.merged, mountpoints=hp.mountpoints)
        if export_layer and upper is not None:
            stage = "packing the writable layer"
            from ..images.unpack import pack_dir
            with open(export_layer, "wb") as f:
                pack_dir(upper, f)
        send(STATUS_FD, {"exit_status": status, "exited": exited, "diff": diff})
        os.closerange(0, CTL_FD + 1)  # the caller sees EOF now, not after our exit tears everything down
        os._exit(0)
    except BaseException as e:  # noqa: BLE001
        report_failure(stage, e)
        os._exit(125)


Parked = tuple[int, socket.socket]  # PID 1 prepared ahead and the socket on which it says it is ready


def _park(L: Launch, join_fds: list[int], run_channel: int) -> Parked | None:
    """Fork PID 1 now and let it get as far as it can without its run (launch.pid1_parked): the cgroup it
    joins (`join_fds`, the pool's next cgroup), its namespaces, filesystems and pivot_root, off the cell's
    critical path; it then waits for its run on `run_channel`, which the caller sends there itself (the pool
    keeps the other end: only a run it fits takes this holder). Returns (pid, the socket it reports on)."""
    try:
        if not L.parkable():
            return None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            ours.close()
            os.close(CTL_FD)  # the holder's control socket stays the holder's alone
            pid1_parked(L, join_fds, theirs, socket.socket(fileno=run_channel))
        theirs.close()
        return pid, ours
    except OSError:
        return None
    finally:
        for fd in (*join_fds, run_channel):
            os.close(fd)


def _took_run(parked: Parked | None) -> int | None:
    """The pid of the parked PID 1 when it got ready (then it reads the run the caller sent it), else None (it
    failed and never read it). Our end of its socket stays open until we exit: its end of file tells PID 1 that we
    have gone (launch.pid1_parked)."""
    if not _got_ready(parked):
        return None
    assert parked is not None
    return parked[0]


def _hand_over(parked: Parked | None, L: Launch, stdio: tuple[int, int, int]) -> int | None:
    """Give the run to the parked PID 1 ourselves, on the socket it reports on; its pid, or None when there is none
    or it failed to get ready."""
    if not _got_ready(parked):
        return None
    assert parked is not None
    try:
        send_ctl(parked[1], {"launch": L}, [STATUS_FD, *stdio])
    except OSError:
        return None  # (it died meanwhile: discarded, and one is forked)
    return parked[0]


def _got_ready(parked: Parked | None) -> bool:
    """Did the parked PID 1 say it is ready (at once, unless the run came very soon)?"""
    if parked is None:
        return False
    try:
        reply, _ = recv_ctl(parked[1])
    except OSError:
        return False
    return reply is not None and bool(reply.get("parked"))


def _discard(parked: Parked | None) -> None:
    if parked is None:
        return
    parked[1].close()
    try:
        os.kill(parked[0], signal.SIGKILL)
    except ProcessLookupError:
        pass
    _wait(parked[0])


def _now() -> float:
    import time
    return time.monotonic()


def _wait(pid: int) -> int:
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except ChildProcessError:
            return -1
        except InterruptedError:
            continue


_POD_NS = (("user", CLONE_NEWUSER), ("net", CLONE_NEWNET), ("ipc", CLONE_NEWIPC), ("uts", CLONE_NEWUTS))


def _joined(hp: HolderPlan) -> int:
    if hp.join is None:
        return 0
    return CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | (CLONE_NEWPID if hp.join_pid else 0)


def _open_pod(pid: int, net_inode: int, with_pid: bool = False) -> dict[int, int]:
    """The infra's namespaces, opened while we are still outside them (a process in another user namespace
    may not open /proc/<infra>/ns/*); the network namespace's inode tells a recycled pid apart."""
    fds: dict[int, int] = {}
    try:
        for name, flag in _POD_NS + ((("pid_for_children", CLONE_NEWPID),) if with_pid else ()):
            fds[flag] = os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
        if os.fstat(fds[CLONE_NEWNET]).st_ino != net_inode:
            raise OSError(errno.ESRCH, "the pod's infra process is gone", f"/proc/{pid}/ns/net")
    except BaseException:
        for fd in fds.values():
            os.close(fd)
        raise
    return fds


def _fork_init() -> None:
    """PID 1 of a pod's shared PID namespace: reaps what its containers leave, goes with the infra."""
    infra = os.pidfd_open(os.getpid())
    if os.fork() != 0:
        os.close(infra)
        return
    try:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        # An infra that died before that line sent no signal, and only signals end this loop (getppid cannot
        # tell: the parent of a PID namespace's init is outside it): its pidfd says whether it has exited.
        if select.select([infra], [], [], 0)[0]:
            return
        os.closerange(3, 1 << 20)

        def reap(_sig: int, _frame: object) -> None:
            while True:
                try:
                    if os.waitpid(-1, os.WNOHANG)[0] == 0:
                        return
                except ChildProcessError:
                    return

        signal.signal(signal.SIGCHLD, reap)
        while True:
            signal.pause()
    finally:
        os._exit(0)


def _enter_user_namespace(sock: socket.socket, pod_user: int | None = None) -> None:
    if pod_user is not None:  # a pod's: its maps are written already
        libc.setns(pod_user, CLONE_NEWUSER)
        os.close(pod_user)
        return
    libc.unshare(CLONE_NEWUSER)
    send_ctl(sock, {"need_maps": True})
    reply, _ = recv_ctl(sock)
    if not reply or not reply.get("maps"):
        raise OSError(errno.EPIPE, "the id maps could not be written")


def _build_rootfs(hp: HolderPlan) -> tuple[str | None, str]:
    """A tmpfs over the scratch directory (private to this mount namespace, so it vanishes with it)
    holding the upper and work directories, the mount-point layer and the merged root."""
    assert hp.scratch and hp.lower
    scratch = hp.scratch
    libc.unshare(CLONE_NEWNS)
    rootfs.make_private_root()
    size = f",size={hp.storage_size}" if hp.storage_size else ""  # a full layer: ENOSPC, not the host's RAM
    mount("tmpfs", scratch, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755" + size)
    mp, merged = scratch + "/mp", scratch + "/merged"
    os.mkdir(mp)
    os.mkdir(merged)
    upper = work = None
    if hp.writable:
        base = hp.upper_dir or scratch
        upper, work = base + "/upper", base + "/work"
        os.makedirs(upper, mode=0o755, exist_ok=True)
        os.makedirs(work, mode=0o700, exist_ok=True)
    if hp.rootless and hp.lower == "/":
        rootfs.mount_host_tree(merged, upper, work, hp.mountpoints, hp.storage_size)
    else:
        rootfs.make_mountpoints(mp, hp.mountpoints)
        rootfs.mount_overlay(hp.lower, mp, upper, work, merged)
    return upper, mp


def resize_writable_layer(holder_pid: int, hp: HolderPlan, size: int | None) -> None:
    """Set the bound of a prepared holder's writable layer: the size= of its scratch tmpfs (None: tmpfs's
    default, half of the RAM, as a holder prepared without a bound has it).
    Only the launch helper calls this: the holder itself cannot, its user namespace does not own the mount
    namespace root made for it; the helper is host root and single-threaded (setns into a mount namespace
    and back). A size the layer's contents exceed is refused by the kernel (EINVAL)."""
    assert hp.scratch is not None
    own = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    try:
        theirs = os.open(f"/proc/{holder_pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        try:
            libc.setns(theirs, CLONE_NEWNS)
        finally:
            os.close(theirs)
        try:
            # (A remount sets the mount's flags too: the ones it was made with.)
            mount("tmpfs", hp.scratch, None, MS_REMOUNT | MS_NOSUID | MS_NODEV, f"size={size}" if size else "size=50%")
        finally:
            try:
                libc.setns(own, CLONE_NEWNS)
            except OSError:
                os._exit(70)  # never serve another request from inside a container's mount namespace
    finally:
        os.close(own)


def premount(holder_pid: int, ahead_root: str, plan: rootfs.RootfsPlan, root: str | None = None) -> int | None:
    """Make the mounts of `plan` (rootfs.ahead_ops of a container's filesystem plan: /dev and its nodes, sysfs, the
    masks under /sys) ahead of the container's PID 1, in a prepared holder's mount namespace, under `ahead_root` (a
    directory of its scratch tmpfs beside the root). A Python cell's PID 1 moves the trees into its root
    (rootfs.move_ahead) and mounts only /proc, its masks and the cgroup mounts itself (launch.pid1_direct). Made by
    host root in the holder's network and IPC namespaces (sysfs shows the network namespace it is mounted from,
    mqueue the IPC one), as that PID 1 would make them. Beside the root, not in it: a run that does not take them
    (a command, whose PID 1 binds the root without what is below it — and a locked mount below it would make that
    bind fail —, or a cell whose plan asks for other mounts) never sees them; they go with the holder's mount
    namespace, so a holder nobody takes leaves nothing.
    With `root` (the holder's merged root), the root is also pivoted into ahead, in a copy of the holder's mount
    namespace (pivoted_root): returns an fd of that namespace, which a Python cell's PID 1 enters instead of taking a
    copy, moving the trees in and pivoting itself (None: not made; PID 1 then does that).
    Only the launch helper calls this (host root, single-threaded: setns into the namespaces and back), as
    resize_writable_layer does."""
    own = [(os.open(f"/proc/self/ns/{n}", os.O_RDONLY | os.O_CLOEXEC), f) for n, f in _PREMOUNT_NS]
    root_ns = None
    try:
        theirs = [(os.open(f"/proc/{holder_pid}/ns/{n}", os.O_RDONLY | os.O_CLOEXEC), f) for n, f in _PREMOUNT_NS]
        entered = 0
        try:
            for fd, flag in theirs:
                libc.setns(fd, flag)
                entered += 1
            rootfs.apply_ahead(ahead_root, plan)
            if root is not None:
                with contextlib.suppress(OSError):  # (the set-up left for PID 1 then, as without a root)
                    root_ns = pivoted_root(root, ahead_root, rootfs.ahead_tops(plan, tuple(range(len(plan.ops)))))
        finally:
            for fd, _ in theirs:
                os.close(fd)
            try:
                for fd, flag in own[:entered]:
                    libc.setns(fd, flag)
            except OSError:
                os._exit(70)  # never serve another request from inside a container's namespaces
    finally:
        for fd, _ in own:
            os.close(fd)
    return root_ns


def pivoted_root(root: str, ahead_root: str, tops: tuple[str, ...]) -> int:
    """A copy of the mount namespace this process is in (a holder's, entered by premount) with the trees made ahead
    moved into `root` and the root pivoted into, the old one detached: what a Python cell's PID 1 would do there
    (launch._enter_root), done ahead — the detach alone waits for an RCU grace period, 0.2 ms. Returns an fd of the
    new namespace: it lives as long as the fd or a process in it (PID 1 enters it and the fd is closed), so nothing
    is left when either goes. The caller (premount) goes back to its own mount namespace."""
    libc.unshare(CLONE_NEWNS)  # (private already, as the holder's is: _build_rootfs)
    fd = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    try:
        rootfs.move_ahead(root, ahead_root, tops)
        rootfs.pivot_into(root)
    except BaseException:
        os.close(fd)
        raise
    return fd


_PREMOUNT_NS = (("net", CLONE_NEWNET), ("ipc", CLONE_NEWIPC), ("mnt", CLONE_NEWNS))


def prepare_holder(hp: HolderPlan, launch: Launch | None = None,
                   fork: Callable[[], int] = os.fork) -> tuple[int, socket.socket]:
    """Fork a holder and see it through preparation (writing its id maps). Returns (pid, control socket).
    `launch` is passed in memory to a holder forked from the caller (it may hold the caller's globals)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    gc.freeze()  # keep the child's collector from touching (and so copying) the caller's heap
    try:
        pid = fork()
        if pid == 0:
            ours.close()
            holder_main(hp, theirs.fileno(), launch)
    finally:
        gc.unfreeze()
    theirs.close()
    try:
        while True:
            msg, _ = recv_ctl(ours)
            if msg is None:
                raise SetupFailed({"stage": "preparing the namespaces", "errno": errno.EPIPE,
                                   "message": "the holder process died"})
            if msg.get("need_maps"):
                try:
                    idmap.write_maps(pid, *hp.maps)
                    send_ctl(ours, {"maps": True})
                except OSError as e:
                    send_ctl(ours, {"maps": False})
                    raise SetupFailed(failure("writing the id maps", e)) from None
            elif "setup_error" in msg:
                raise SetupFailed(msg["setup_error"])
            elif msg.get("ready"):
                return pid, ours
    except BaseException:
        ours.close()
        _kill_and_reap(pid)
        raise


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
