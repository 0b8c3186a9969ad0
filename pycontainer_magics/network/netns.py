"""Named network namespaces of our own, and running code inside any network namespace.

Our namespaces are nsfs files bind-mounted under `<run dir>/netns/NAME` (/run/pycontainer_magics/netns
as root), never /run/netns, so `ip netns` and ours never collide. Each has a small owner record
(`<run dir>/netns-meta/NAME.json`) so `prune()` can remove those whose owner process is gone.

A namespace is named by a `NsRef`: our name ("lab1"), a pid (its /proc/PID/ns/net), a path to any
nsfs file ("/proc/123/ns/net", "/run/netns/x"), or None for the caller's own namespace.
Code runs inside in a forked child that calls setns(2): the caller's threads never change namespace.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
import re
import select
import signal
import socket
import subprocess
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..linux import libc, proc
from ..linux.namespaces import CLONE_NEWNET, CLONE_NEWNS
from ..linux.netdev import loopback_up
from . import state
from .errors import InvalidArgument, NamespaceError, NetworkError

NsRef = str | int | None

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class NetNamespace:
    name: str
    path: str
    inode: int
    owner: str  # owner token "PID:STARTTIME" (linux.proc.token)

    @property
    def owner_alive(self) -> bool:
        return proc.token_alive(self.owner, unknown_start=True)


def check_name(name: str, what: str = "name") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidArgument(f"invalid {what} {name!r}: use letters, digits, '_', '.', '-' (max 64)")
    return name


def netns_path(ref: NsRef) -> str | None:
    """The nsfs path of a namespace reference (None: the caller's own). Does not check it exists."""
    if ref is None:
        return None
    if isinstance(ref, bool):
        raise InvalidArgument(f"invalid network namespace {ref!r}")
    if isinstance(ref, int):
        return f"/proc/{ref}/ns/net"
    if "/" in ref:
        return ref
    if ref.isdigit():
        return f"/proc/{ref}/ns/net"
    check_name(ref, "network namespace name")
    return os.path.join(state.netns_dir(), ref)


def open_netns(ref: NsRef) -> int:
    """An O_RDONLY fd on the namespace (the caller closes it); NamespaceError when it does not exist."""
    path = netns_path(ref) or "/proc/self/ns/net"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise NamespaceError(f"network namespace {ref!r} not found ({path}: {e.strerror})", e.errno, path) from None
    try:
        NS_GET_NSTYPE = 0xB703
        try:
            kind = fcntl.ioctl(fd, NS_GET_NSTYPE)
        except OSError:
            kind = -1
        if kind != CLONE_NEWNET:
            raise NamespaceError(f"{path} is not a network namespace", None, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def netns_inode(ref: NsRef) -> int:
    fd = open_netns(ref)
    try:
        return os.fstat(fd).st_ino
    finally:
        os.close(fd)


def _meta_path(name: str) -> str:
    return os.path.join(state.netns_meta_dir(), f"{name}.json")


def _child_exit(code: int) -> None:
    os._exit(code)


def _fork_and_wait(child: Callable[[], None], what: str) -> None:
    """Run `child` in a forked process (one thread; ends with os._exit) and raise its error here."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(r)
        code = 0
        try:
            child()
        except BaseException as e:  # noqa: BLE001
            code = 1
            with contextlib.suppress(BaseException):
                os.write(w, f"{type(e).__name__}: {e}".encode()[:4000])
        _child_exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        msg = f.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise NetworkError(f"{what}: {msg or 'child failed'}")


def create_netns(name: str, owner_pid: int | None = None) -> NetNamespace:
    """Create the named network namespace (loopback up). EEXIST when the name is taken."""
    check_name(name, "network namespace name")
    path = os.path.join(state.netns_dir(), name)
    with state.locked():
        os.makedirs(state.netns_dir(), mode=0o755, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
        except FileExistsError:
            raise NetworkError(f"network namespace {name!r} already exists", 17, path) from None
        os.close(fd)

        def child() -> None:
            libc.unshare(CLONE_NEWNET)
            loopback_up()
            libc.mount("/proc/self/ns/net", path, None, libc.MS_BIND)

        try:
            _fork_and_wait(child, f"create network namespace {name!r}")
            owner = proc.token(owner_pid)
            state.write_json(_meta_path(name), {"name": name, "owner": owner, "created": time.time()})
        except BaseException:
            with contextlib.suppress(OSError):
                libc.umount2(path, libc.MNT_DETACH)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        return NetNamespace(name, path, os.stat(path).st_ino, owner)


def delete_netns(name: str, missing_ok: bool = False) -> None:
    """Unmount and remove our named namespace (the kernel frees it when its last user goes)."""
    check_name(name, "network namespace name")
    path = os.path.join(state.netns_dir(), name)
    with state.locked():
        if not os.path.exists(path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(_meta_path(name))
            if missing_ok:
                return
            raise NamespaceError(f"network namespace {name!r} not found", None, path)
        with contextlib.suppress(OSError):
            libc.umount2(path, libc.MNT_DETACH)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_meta_path(name))


def list_netns() -> list[NetNamespace]:
    """Our named namespaces (sorted by name)."""
    out = []
    d = state.netns_dir()
    try:
        names = sorted(os.listdir(d))
    except FileNotFoundError:
        return []
    for name in names:
        path = os.path.join(d, name)
        try:
            ino = netns_inode(path)
        except NetworkError:
            continue  # a file whose mount is gone (half-created or unmounted elsewhere)
        owner = ""
        with contextlib.suppress(OSError, ValueError):
            owner = state.read_json(_meta_path(name)).get("owner", "")
        out.append(NetNamespace(name, path, ino, owner))
    return out


def prune_netns() -> list[str]:
    """Delete our namespaces whose owner is gone, and files whose nsfs mount is gone."""
    removed = []
    d = state.netns_dir()
    with state.locked():
        try:
            names = sorted(os.listdir(d))
        except FileNotFoundError:
            names = []
        alive = {ns.name for ns in list_netns() if ns.owner_alive}
        for name in names:
            if name not in alive:
                delete_netns(name, missing_ok=True)
                removed.append(f"netns {name}")
        with contextlib.suppress(FileNotFoundError):
            for meta in os.listdir(state.netns_meta_dir()):
                if meta.endswith(".json") and meta[:-5] not in alive and not os.path.exists(os.path.join(d, meta[:-5])):
                    os.unlink(os.path.join(state.netns_meta_dir(), meta))
    return removed


# --- running code inside -------------------------------------------------------------------------


def _enter(fd: int, hosts_file: str | None) -> None:
    """In a forked child: join the network namespace; with `hosts_file`, also a private mount
    namespace in which that file is bind-mounted over /etc/hosts (how a container sees it)."""
    libc.setns(fd, CLONE_NEWNET)
    if hosts_file is not None:
        libc.unshare(CLONE_NEWNS)
        libc.mount(None, "/", None, libc.MS_REC | libc.MS_PRIVATE)
        libc.mount(hosts_file, "/etc/hosts", None, libc.MS_BIND)


def run_in_netns(ns: NsRef, fn: Callable[..., Any], *args: Any, hosts_file: str | None = None,
                 timeout: float | None = 30.0, **kwargs: Any) -> Any:
    """Call `fn(*args, **kwargs)` in a forked child inside namespace `ns`; return its (picklable)
    result or re-raise its exception here. `hosts_file`: see `_enter`."""
    fd = open_netns(ns)
    r, w = os.pipe()
    try:
        pid = os.fork()
    except BaseException:
        os.close(fd)
        os.close(r)
        os.close(w)
        raise
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            os.close(r)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
            _enter(fd, hosts_file)
            payload = pickle.dumps((True, fn(*args, **kwargs)))
        except BaseException as e:  # noqa: BLE001
            code = 1
            try:
                payload = pickle.dumps((False, e))
            except Exception:  # noqa: BLE001 - an unpicklable exception
                payload = pickle.dumps((False, NetworkError("".join(traceback.format_exception_only(e)).strip())))
        try:
            with os.fdopen(w, "wb") as f:
                f.write(payload)
        finally:
            os._exit(code)
    os.close(fd)
    os.close(w)
    chunks = []
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([r], [], [], left)
            if not ready:
                os.kill(pid, signal.SIGKILL)
                raise NetworkError(f"code in network namespace {ns!r} timed out after {timeout}s", 110)
            b = os.read(r, 1 << 16)
            if not b:
                break
            chunks.append(b)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    if not chunks:
        raise NetworkError(f"code in network namespace {ns!r} died without a result")
    ok, value = pickle.loads(b"".join(chunks))
    if ok:
        return value
    raise value


def run_command(ns: NsRef, argv: Sequence[str] | str, input: str | bytes | None = None,
                timeout: float | None = 60.0, hosts_file: str | None = None,
                check: bool = False) -> subprocess.CompletedProcess[bytes]:
    """Run a command inside namespace `ns` (a string runs with /bin/sh -c); output captured."""
    fd = open_netns(ns)
    cmd: list[str] = ["/bin/sh", "-c", argv] if isinstance(argv, str) else list(argv)
    data = input.encode() if isinstance(input, str) else input

    def pre() -> None:
        _enter(fd, hosts_file)

    try:
        return subprocess.run(cmd, input=data, capture_output=True, timeout=timeout, check=check,
                              preexec_fn=pre, pass_fds=(fd,))
    finally:
        os.close(fd)


# --- a small background server inside a namespace (tests, connectivity matrix, demos) -------------


@dataclass
class Server:
    """A TCP echo server running in a forked child inside a namespace; `stop()` kills it."""

    ns: NsRef
    host: str
    port: int
    pid: int

    def stop(self) -> None:
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
            self.pid = 0

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _echo_loop(listener: socket.socket, banner: bytes) -> None:  # pragma: no cover - in the child
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock is listener:
                conn, _ = listener.accept()
                if banner:
                    with contextlib.suppress(OSError):
                        conn.sendall(banner)
                sel.register(conn, selectors.EVENT_READ)
                continue
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                sel.unregister(sock)
                sock.close()
            else:
                with contextlib.suppress(OSError):
                    sock.sendall(data)


def serve_echo(ns: NsRef, port: int = 0, host: str = "0.0.0.0", banner: bytes = b"") -> Server:
    """Start a TCP echo server (optionally sending `banner` first) inside `ns`; returns when it
    listens. port 0 picks a free port (see `.port`)."""
    fd = open_netns(ns)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.close(r)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
            _enter(fd, None)
            fam = socket.AF_INET6 if ":" in host else socket.AF_INET
            listener = socket.socket(fam, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, port))
            listener.listen(128)
            os.write(w, str(listener.getsockname()[1]).encode())
            os.close(w)
            _echo_loop(listener, banner)
        except BaseException as e:  # noqa: BLE001
            with contextlib.suppress(BaseException):
                os.write(w, f"error: {e}".encode())
        os._exit(1)
    os.close(fd)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        msg = f.read(200).decode(errors="replace")
    if not msg.isdigit():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise NetworkError(f"echo server in {ns!r} on {host}:{port}: {msg or 'failed'}")
    return Server(ns, host, int(msg), pid)


def tcp_probe(host: str, port: int, timeout: float = 1.0, payload: bytes = b"ping") -> bool:
    """Connect, send `payload`, and expect it echoed back (the check `serve_echo` answers)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(payload)
            got = b""
            while len(got) < len(payload):
                b = s.recv(65536)
                if not b:
                    break
                got += b
            return got.endswith(payload)
    except OSError:
        return False


def socket_in(ns: NsRef, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM,  # noqa: A002
              proto: int = 0) -> socket.socket:
    """A socket created inside namespace `ns`, by a short-lived thread that joins it (setns(2) of a
    network namespace changes only the calling thread; the socket keeps the namespace it was made in).
    Much faster than pyroute2's own netns= (a forked helper, ~0.2 s). A connect() from it starts inside
    that namespace (a pod's loopback, say), a listen() there accepts its clients. Without root, joining a
    namespace that a user namespace of ours owns needs that user namespace first, which only a single-threaded
    process may join: a forked child does both and hands the socket back."""
    path = netns_path(ns)
    out: dict[str, Any] = {}

    def worker() -> None:
        try:
            fd = open_netns(path)
            try:
                libc.setns(fd, CLONE_NEWNET)
            finally:
                os.close(fd)
            out["sock"] = socket.socket(family, type, proto)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            out["error"] = e

    t = threading.Thread(target=worker, name="pcm-netns-socket", daemon=True)
    t.start()
    t.join()
    if "error" in out:
        e = out["error"]
        if isinstance(e, PermissionError) and os.geteuid() != 0:
            return _socket_through_user_namespace(path, family, type, proto)
        raise e  # NamespaceError when it is missing; the OSError of setns(2) as it came
    sock: socket.socket = out["sock"]
    return sock


NS_GET_USERNS = 0xB701  # ioctl on a namespace fd: an fd of the user namespace that owns it


def _socket_through_user_namespace(path: str | None, family: int, type: int,  # noqa: A002
                                   proto: int) -> socket.socket:
    """socket_in without root: a forked child joins the user namespace owning the network namespace, then
    the network namespace, makes the socket and sends it back over a socketpair (SCM_RIGHTS)."""
    import gc

    from ..linux.namespaces import CLONE_NEWUSER

    net_fd = open_netns(path)
    try:
        user_fd = fcntl.ioctl(net_fd, NS_GET_USERNS)
    except OSError:
        os.close(net_fd)
        raise
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    gc.freeze()
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child: syscalls only, then _exit
            code = 1
            try:
                ours.close()
                libc.setns(user_fd, CLONE_NEWUSER)
                libc.setns(net_fd, CLONE_NEWNET)
                s = socket.socket(family, type, proto)
                socket.send_fds(theirs, [b"ok"], [s.fileno()])
                code = 0
            except BaseException as e:  # noqa: BLE001
                with contextlib.suppress(BaseException):
                    theirs.send(f"{getattr(e, 'errno', None) or 0}:{e}".encode())
            finally:
                os._exit(code)
    finally:
        gc.unfreeze()
        theirs.close()
        os.close(user_fd)
        os.close(net_fd)
    try:
        msg, fds, _, _ = socket.recv_fds(ours, 4096, 1)
    finally:
        ours.close()
        os.waitpid(pid, 0)
    if msg == b"ok" and fds:
        return socket.socket(fileno=fds[0])
    for fd in fds:
        os.close(fd)
    err, _, text = msg.decode(errors="replace").partition(":")
    raise NamespaceError(f"cannot make a socket in network namespace {path}: {text or 'the helper died'}",
                         int(err) if err.isdigit() and int(err) else None, path)


def _netlink_socket_in(path: str) -> int:
    """A NETLINK_ROUTE socket created inside the namespace at `path` (see socket_in)."""
    return socket_in(path, socket.AF_NETLINK, socket.SOCK_DGRAM, 0).detach()


@contextlib.contextmanager
def iproute(ns: NsRef = None) -> Iterator[Any]:
    """A pyroute2 IPRoute bound to namespace `ns` (None: ours); NamespaceError when it is missing."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    path = netns_path(ns)
    ipr = IPRoute() if path is None else IPRoute(fileno=_netlink_socket_in(path))
    try:
        yield ipr
    except NetlinkError as e:  # errno kept, one line, never pyroute2's tuple text
        raise NetworkError.from_netlink(e, f"netlink in {'the host' if path is None else path}") from e
    finally:
        ipr.close()
