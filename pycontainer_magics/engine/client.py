"""A small Engine API client for this project's own front ends (the `pycontainer` CLI, the magics): the
standard library only, so a command that talks to the daemon pays no import it does not need.

    c = connect()            # the running daemon on the default socket (or DOCKER_HOST=unix://...), else None
    c.get("/containers/json", all=1)
    for stream, data in c.logs("web", follow=True): ...
"""

from __future__ import annotations

import _socket  # not socket.py: its enum and selectors imports cost `pycontainer run` ~1.5 ms
import os

from ..errors import OSFailure
from ..oci import jsonin, jsonout  # not json: it imports re, enum, functools (~2 ms of `pycontainer run`)

TYPE_CHECKING = False  # typing is not imported: `pycontainer run` through the daemon starts with this module
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

API = "/v1.41"
USER_AGENT = "pycontainer-magics"  # the daemon's request log tells this project's front ends by it


class EngineError(OSFailure):
    """The daemon answered with an error: `status` and Docker's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(None, message)
        self.status = status

    def __str__(self) -> str:
        return self.message


def default_socket() -> str:
    from ..paths import run_dir

    return os.path.join(run_dir(), "docker.sock")


def socket_path(host: str | None = None) -> str:
    """The daemon's socket: `host` (unix://PATH), else the project's default (not DOCKER_HOST: that may name
    a real dockerd)."""
    if host:
        if not host.startswith("unix://"):
            raise ValueError(f"unsupported daemon address {host!r}: unix:///PATH")
        return host[len("unix://"):]
    return default_socket()


class Client:
    def __init__(self, path: str, timeout: float | None = 60.0) -> None:
        self.path = path
        self.timeout = timeout

    @property
    def host(self) -> str:
        return "unix://" + self.path

    # -- plain requests (raw sockets: http.client would cost the command line tens of ms to import) ----------
    def request(self, method: str, path: str, body: Any = None, *, params: dict[str, Any] | None = None,
                raw: bytes | None = None, timeout: float | None = None) -> Any:
        data = raw if raw is not None else (jsonout.dumps(body).encode() if body is not None else b"")
        s, rest, status, headers = self._send(method, self._url(path, params), data,
                                              timeout if timeout is not None else self.timeout)
        try:
            if "chunked" in headers.get("transfer-encoding", ""):
                payload = b"".join(self.chunks(s, rest))
            else:
                n = int(headers.get("content-length") or 0)
                payload = rest
                while len(payload) < n and (more := s.recv(65536)):
                    payload += more
        finally:
            s.close()
        return self._decode(status, payload)

    def _send(self, method: str, target: str, data: bytes, timeout: float | None,
              extra: tuple[str, ...] = ()) -> tuple[_socket.socket, bytes, int, dict[str, str]]:
        """Send one request on a new connection; the socket, what followed the response head, the status and
        the headers (lower-case names)."""
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(self.path)
            head = [f"{method} {target} HTTP/1.1", "Host: localhost", "Content-Type: application/json",
                    f"Content-Length: {len(data)}", f"User-Agent: {USER_AGENT}", *extra]
            s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + data)
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    raise EngineError(502, "the daemon closed the connection")
                buf += chunk
        except BaseException:
            s.close()
            raise
        head_b, rest = buf.split(b"\r\n\r\n", 1)
        lines = head_b.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        return s, rest, int(lines[0].split(" ", 2)[1]), headers

    def _url(self, path: str, params: dict[str, Any] | None) -> str:
        q = []
        for k, v in (params or {}).items():
            for item in (v if isinstance(v, list | tuple) else [v]):
                if item is not None:
                    q.append(f"{_quote(k)}={_quote(int(item) if isinstance(item, bool) else item)}")
        return API + path + ("?" + "&".join(q) if q else "")

    @staticmethod
    def _decode(status: int, data: bytes) -> Any:
        try:
            parsed = jsonin.loads(data) if data.strip() else None
        except ValueError:
            parsed = data
        if status >= 400:
            msg = parsed.get("message") if isinstance(parsed, dict) else data.decode(errors="replace")
            raise EngineError(status, msg or f"HTTP {status}")
        return parsed

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        return self.request("POST", path, body, params=params)

    def delete(self, path: str, **params: Any) -> Any:
        return self.request("DELETE", path, params=params)

    def ping(self) -> bool:
        try:
            return bool(self.request("GET", "/_ping", timeout=2.0) == b"OK")
        except (OSError, EngineError):
            return False

    # -- streams -----------------------------------------------------------------------------------
    def _open(self, method: str, path: str, params: dict[str, Any] | None, body: Any = None,
              upgrade: bool = False) -> tuple[_socket.socket, bytes]:
        """Send a request whose answer is a stream; returns the socket and what came after the head."""
        data = jsonout.dumps(body).encode() if body is not None else b""
        s, rest, status, headers = self._send(method, self._url(path, params), data, self.timeout,
                                              ("Connection: Upgrade", "Upgrade: tcp") if upgrade else ())
        if status >= 400:
            try:
                n = int(headers.get("content-length") or 0)
                s.settimeout(10)
                while len(rest) < n and (more := s.recv(65536)):
                    rest += more
            finally:
                s.close()
            self._decode(status, rest)
        s.settimeout(None)
        return s, rest

    @staticmethod
    def chunks(s: _socket.socket, rest: bytes) -> Iterator[bytes]:
        """The body of a chunked response, piece by piece, up to its last (empty) chunk: the daemon keeps the
        connection open after it, so the end is the zero-size chunk, not the socket closing."""
        buf = rest
        while True:
            while b"\r\n" not in buf:
                more = s.recv(65536)
                if not more:
                    return
                buf += more
            size_line, buf = buf.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                return
            while len(buf) < size + 2:
                more = s.recv(65536)
                if not more:
                    return
                buf += more
            yield buf[:size]
            buf = buf[size + 2:]

    @staticmethod
    def raw(s: _socket.socket, rest: bytes) -> Iterator[bytes]:
        """A hijacked stream: everything until the daemon closes it."""
        if rest:
            yield rest
        while chunk := s.recv(65536):
            yield chunk

    @classmethod
    def _frames(cls, s: _socket.socket, rest: bytes, chunked: bool) -> Iterator[tuple[str, bytes]]:
        """Docker's multiplexed frames from a hijacked (raw) or chunked response, until the end."""
        names = {0: "stdin", 1: "stdout", 2: "stderr"}
        buf = b""
        try:
            for data in (cls.chunks(s, rest) if chunked else cls.raw(s, rest)):
                buf += data
                while len(buf) >= 8:
                    kind, n = buf[0], int.from_bytes(buf[4:8], "big")  # Docker's 8-byte frame header
                    if len(buf) < 8 + n:
                        break
                    yield names.get(kind, "stdout"), buf[8:8 + n]
                    buf = buf[8 + n:]
        finally:
            s.close()

    def body(self, method: str, path: str, params: dict[str, Any] | None = None) -> bytes:
        """A streamed (chunked) response's whole body: an archive, an export."""
        s, rest = self._open(method, path, params)
        try:
            return b"".join(self.chunks(s, rest))
        finally:
            s.close()

    def logs(self, ref: str, *, follow: bool = False, tail: str = "all", timestamps: bool = False
             ) -> Iterator[tuple[str, bytes]]:
        s, rest = self._open("GET", f"/containers/{ref}/logs", {"stdout": 1, "stderr": 1, "follow": follow,
                                                                 "tail": tail, "timestamps": timestamps})
        return self._frames(s, rest, chunked=True)

    def attach(self, ref: str) -> Iterator[tuple[str, bytes]]:
        s, rest = self._open("POST", f"/containers/{ref}/attach", {"stream": 1, "stdout": 1, "stderr": 1},
                             upgrade=True)
        return self._frames(s, rest, chunked=False)

    def exec(self, ref: str, cmd: list[str], env: list[str] | None = None,
             workdir: str | None = None) -> tuple[Iterator[tuple[str, bytes]], str]:
        """Start `cmd` in the container; returns its output stream and the exec id (for exec_exit_code)."""
        eid = self.post(f"/containers/{ref}/exec", {"Cmd": cmd, "AttachStdout": True, "AttachStderr": True,
                                                     "Env": env or None, "WorkingDir": workdir or ""})["Id"]
        s, rest = self._open("POST", f"/exec/{eid}/start", None, {"Detach": False, "Tty": False}, upgrade=True)
        return self._frames(s, rest, chunked=False), eid

    def exec_exit_code(self, eid: str) -> int:
        return int(self.get(f"/exec/{eid}/json")["ExitCode"] or 0)

    def wait(self, ref: str, condition: str = "not-running") -> dict[str, Any]:
        """`{"StatusCode": n, "Error": ...}` once the condition holds."""
        return wait_answer(*self.open_wait(ref, condition))

    def open_wait(self, ref: str, condition: str = "not-running") -> tuple[_socket.socket, bytes]:
        """A wait registered now (before a start, as the docker CLI does); wait_answer() reads its answer."""
        return self._open("POST", f"/containers/{ref}/wait", {"condition": condition})


def wait_answer(s: _socket.socket, data: bytes) -> dict[str, Any]:
    """A wait's answer, read to its end and the socket closed (the body is one chunk of JSON)."""
    try:
        while not data.endswith(b"0\r\n\r\n") and (chunk := s.recv(65536)):
            data += chunk
    finally:
        s.close()
    text = data.decode(errors="replace")
    start, end = text.find("{"), text.rfind("}")
    result: dict[str, Any] = jsonin.loads(text[start:end + 1]) if start >= 0 else {}
    return result


def _quote(value: Any) -> str:
    """A query value percent-encoded (urllib.parse.quote_plus's output for what this client sends)."""
    out = []
    for b in str(value).encode():
        c = chr(b)
        out.append(c if c.isascii() and (c.isalnum() or c in "-._~") else "+" if c == " " else f"%{b:02X}")
    return "".join(out)


def connect(host: str | None = None) -> Client | None:
    """A client of the daemon listening on `host` (default: this project's socket), None if none answers."""
    try:
        c = Client(socket_path(host))
    except ValueError:
        return None
    if not os.path.exists(c.path):
        return None
    return c if c.ping() else None
