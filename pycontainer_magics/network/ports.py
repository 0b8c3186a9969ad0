"""Port publishing (`-p 8080:80`): a small userspace TCP proxy in this process — a listener on the
host's loopback (or another host address) whose connections are spliced to CONTAINER_IP:PORT over
the bridge. No firewall rule is touched. One thread per publication accepts; one per connection
splices both ways. `unpublish()` closes the listener and every open connection.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import selectors
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from . import networks
from .errors import EndpointNotFound, InvalidArgument, NetworkError, NotSupported, PortInUse
from .networks import Endpoint


@dataclass
class Publication:
    network: str
    container_id: str
    host_ip: str
    host_port: int
    container_ip: str
    container_port: int
    proto: str = "tcp"
    _forwarder: Forwarder | None = field(default=None, repr=False)

    @property
    def spec(self) -> str:
        """Docker's notation: 127.0.0.1:8080->80/tcp."""
        return f"{self.host_ip}:{self.host_port}->{self.container_port}/{self.proto}"

    @property
    def active(self) -> bool:
        return self._forwarder is not None and self._forwarder.active

    @property
    def connections(self) -> int:
        return self._forwarder.connections if self._forwarder is not None else 0


_publications: dict[tuple[str, int, str], Publication] = {}
_registry_lock = threading.Lock()


def _check_port(port: object, what: str, zero_ok: bool = False) -> int:
    if isinstance(port, bool) or not isinstance(port, int | str) or not str(port).isdigit():
        raise InvalidArgument(f"invalid {what} {port!r}")
    p = int(port)
    if not (0 if zero_ok else 1) <= p <= 65535:
        raise InvalidArgument(f"invalid {what} {port!r}: not in 1-65535")
    return p


def parse_publish(spec: str) -> tuple[str, int, int, str]:
    """Docker's `-p` syntax: [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp] -> (host_ip, host_port,
    container_port, proto); HOST_IP defaults to 127.0.0.1 (this lab publishes on loopback)."""
    rest, _, proto = spec.partition("/")
    proto = proto or "tcp"
    parts = rest.rsplit(":", 2)
    if len(parts) == 2:
        host_ip, (hp, cp) = "127.0.0.1", parts
    elif len(parts) == 3:
        host_ip, hp, cp = parts
        host_ip = host_ip.strip("[]")
    else:
        raise InvalidArgument(f"invalid port publication {spec!r}: use [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp]")
    return host_ip, _check_port(hp, "host port", zero_ok=True), _check_port(cp, "container port"), proto


def publish(endpoint: Endpoint, host_port: int, container_port: int, proto: str = "tcp",
            host_ip: str = "127.0.0.1") -> Publication:
    """Forward HOST_IP:HOST_PORT to the endpoint's address:CONTAINER_PORT. host_port 0 picks a free
    port (see `.host_port`). Errors: PortInUse, InvalidArgument, NotSupported (udp)."""
    if proto != "tcp":
        raise NotSupported(f"publishing {proto} ports is not supported (tcp only)")
    hp = _check_port(host_port, "host port", zero_ok=True)
    cp = _check_port(container_port, "container port")
    try:
        hip = ipaddress.ip_address(host_ip)
    except ValueError as e:
        raise InvalidArgument(f"invalid host address {host_ip!r}: {e}") from None
    with _registry_lock:
        if (str(hip), hp, proto) in _publications and hp != 0:
            raise PortInUse(f"port {hip}:{hp}/{proto} is already published")
        fam = socket.AF_INET6 if hip.version == 6 else socket.AF_INET
        lsock = socket.socket(fam, socket.SOCK_STREAM)
        try:
            lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            lsock.bind((str(hip), hp))
            lsock.listen(128)
        except OSError as e:
            lsock.close()
            if e.errno == errno.EADDRINUSE:
                raise PortInUse(f"port {hip}:{hp}/{proto} is already in use on the host") from None
            raise NetworkError(f"cannot listen on {hip}:{hp}: {e.strerror}", e.errno) from None
        pub = Publication(network=endpoint.network, container_id=endpoint.container_id, host_ip=str(hip),
                          host_port=lsock.getsockname()[1], container_ip=endpoint.address, container_port=cp,
                          proto=proto)
        target = (pub.container_ip, pub.container_port)
        pub._forwarder = Forwarder(lsock, lambda: target, name=f"publish-{pub.host_port}").start()
        _publications[(pub.host_ip, pub.host_port, proto)] = pub
    _record(pub.network, pub.container_id)
    return pub


def unpublish(pub: Publication) -> None:
    """Stop forwarding: close the listener and the open connections; idempotent."""
    with _registry_lock:
        _publications.pop((pub.host_ip, pub.host_port, pub.proto), None)
    if pub._forwarder is not None:
        pub._forwarder.stop()
    _record(pub.network, pub.container_id)


def publications(container_id: str | None = None) -> list[Publication]:
    with _registry_lock:
        return [p for p in _publications.values() if container_id is None or p.container_id == container_id]


def unpublish_all(container_id: str) -> list[Publication]:
    """Unpublish every port of a container (the runtime calls it when the container exits)."""
    pubs = publications(container_id)
    for p in pubs:
        unpublish(p)
    return pubs


def _record(network: str, container_id: str) -> None:
    """Keep the endpoint record's `published` list in step (inspect shows it)."""
    specs = tuple(p.spec for p in publications(container_id) if p.network == network)
    with contextlib.suppress(NetworkError, EndpointNotFound):
        networks.update_endpoint(network, container_id, published=specs)


def splice(client: socket.socket, upstream: socket.socket, stop: threading.Event, conns: set[socket.socket],
           lock: threading.Lock) -> None:
    """Copy both ways until both sides have closed (a half-close is passed on) or `stop` is set; `conns`
    holds both sockets meanwhile (so a stop can shut them down). Closes both."""
    upstream.settimeout(None)
    with lock:
        conns.update((client, upstream))
    peer = {client: upstream, upstream: client}
    open_dirs = 2
    sel = selectors.DefaultSelector()
    try:
        sel.register(client, selectors.EVENT_READ)
        sel.register(upstream, selectors.EVENT_READ)
        while open_dirs and not stop.is_set():
            for key, _ in sel.select(timeout=1.0):
                src = key.fileobj
                assert isinstance(src, socket.socket)
                try:
                    data = src.recv(65536)
                except OSError:
                    data = b""
                if data:
                    try:
                        peer[src].sendall(data)
                        continue
                    except OSError:
                        open_dirs = 0
                        break
                sel.unregister(src)  # EOF one way: pass the half-close on
                with contextlib.suppress(OSError):
                    peer[src].shutdown(socket.SHUT_WR)
                open_dirs -= 1
    finally:
        sel.close()
        with lock:
            conns.discard(client)
            conns.discard(upstream)
        client.close()
        upstream.close()


Upstream = Callable[[], "tuple[str, int] | None"]


class Forwarder:
    """A TCP forwarder: connections accepted on `listener` (a listening socket made anywhere — inside a
    network namespace with network.socket_in, say) are spliced to the address `choose()` returns for each
    one (round robin over a Service's ready pods, say); None, or an upstream that refuses, resets the
    client's connection as a refused one would. One thread accepts, one per connection splices."""

    def __init__(self, listener: socket.socket, choose: Upstream, name: str = "forward") -> None:
        self.listener: socket.socket | None = listener
        self.choose = choose
        self.name = name
        self._stop = threading.Event()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True, name=f"pcm-{name}")

    @property
    def address(self) -> tuple[str, int]:
        assert self.listener is not None
        addr = self.listener.getsockname()
        return str(addr[0]), int(addr[1])

    @property
    def active(self) -> bool:
        return self.listener is not None and not self._stop.is_set()

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._conns) // 2

    def start(self) -> Forwarder:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listener and every open connection; idempotent."""
        self._stop.set()
        lsock, self.listener = self.listener, None
        if lsock is not None:
            with contextlib.suppress(OSError):
                lsock.shutdown(socket.SHUT_RDWR)
            lsock.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)

    def _accept_loop(self) -> None:
        lsock = self.listener
        while lsock is not None and not self._stop.is_set():
            try:
                client, _ = lsock.accept()
            except OSError:
                break
            threading.Thread(target=self._serve, args=(client,), daemon=True, name=f"pcm-{self.name}-conn").start()

    def _serve(self, client: socket.socket) -> None:
        target = None
        with contextlib.suppress(Exception):
            target = self.choose()
        upstream = None
        if target is not None:
            with contextlib.suppress(OSError):
                upstream = socket.create_connection(target, timeout=5)
        if upstream is None:
            _reset(client)
            return
        splice(client, upstream, self._stop, self._conns, self._lock)


def _reset(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0): the client sees its connection refused/reset at once, not an EOF."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
