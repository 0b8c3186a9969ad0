"""A small HTTP/1.1 server on asyncio streams, with what the Docker Engine API needs beyond plain
request/response: keep-alive (the docker CLI reuses one connection), chunked request bodies (a build
context or an image archive of unknown length), chunked streamed responses (logs --follow, events, stats,
pull and build progress) and hijacked connections (attach and exec: after `101 UPGRADED` the socket
carries the container's raw streams both ways).

A handler is `async def handler(req, **path_params)`; it returns a Response, or takes the connection
over with `req.stream(...)` or `req.hijack(...)`. Errors it raises as ApiError become Docker's
`{"message": ...}` with the error's status.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("pycontainer.engine")

MAX_HEADER = 64 * 1024
MAX_JSON_BODY = 16 * 2**20  # a create body or a JSON parameter; archives are streamed, not buffered
REASONS = {200: "OK", 201: "Created", 204: "No Content", 304: "Not Modified", 400: "Bad Request",
           401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
           411: "Length Required", 413: "Payload Too Large", 500: "Internal Server Error",
           501: "Not Implemented", 503: "Service Unavailable"}


class ApiError(Exception):
    """An error answered as Docker does: `status` and `{"message": message}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _ClientGone(Exception):
    """The client closed the connection (or sent garbage): drop it quietly."""


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(status, (json.dumps(obj) + "\n").encode(), "application/json", headers or {})


def empty(status: int = 204) -> Response:
    return Response(status)


class Request:
    def __init__(self, method: str, target: str, version: str, headers: dict[str, str],
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        self.method = method
        self.target = target
        self.http_version = version
        self.headers = headers
        self.reader = reader
        self.writer = writer
        self.server = server
        parts = urllib.parse.urlsplit(target)
        self.path = urllib.parse.unquote(parts.path)
        self.query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        self.api_version: str | None = None  # from a /vX.Y prefix (set by the router)
        self.route_path = self.path  # the path without the version prefix
        self.status = 0  # what was answered (for the access log)
        self.taken = False  # the handler took the connection over (stream or hijack)
        self.streamed: ChunkedWriter | None = None  # a chunked response; once ended, the connection is reusable
        self._body_read = False
        self.t0 = time.monotonic()
        self.started = time.time()  # wall clock, for the request log (ordered by when requests began)

    # -- query parameters, as dockerd reads them (httputils.BoolValue and friends) -------------------
    def q(self, name: str, default: str | None = None) -> str | None:
        v = self.query.get(name)
        return v[-1] if v else default

    def q_bool(self, name: str, default: bool = False) -> bool:
        v = self.q(name)
        if v is None:
            return default
        return v.strip().lower() not in ("", "0", "no", "false", "none")

    def q_int(self, name: str, default: int | None = None) -> int | None:
        v = self.q(name)
        if v is None or v == "":
            return default
        try:
            return int(v)
        except ValueError:
            raise ApiError(400, f"invalid value for {name}: {v!r} is not an integer") from None

    def q_json(self, name: str) -> Any:
        v = self.q(name)
        if not v:
            return None
        try:
            return json.loads(v)
        except ValueError as e:
            raise ApiError(400, f"invalid JSON in parameter {name}: {e}") from None

    # -- the body ---------------------------------------------------------------------------------------
    @property
    def chunked(self) -> bool:
        return "chunked" in self.headers.get("transfer-encoding", "").lower()

    async def body_chunks(self, limit: int | None = None) -> AsyncIterator[bytes]:
        """The request body as it arrives (Content-Length or chunked); at most `limit` bytes."""
        if self._body_read:
            return
        self._body_read = True
        total = 0
        if self.chunked:
            while True:
                line = await self._line()
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise ApiError(400, "malformed chunked request body") from None
                if size == 0:
                    while (await self._line()).strip():  # trailers
                        pass
                    return
                total += size
                if limit is not None and total > limit:
                    raise ApiError(413, f"request body larger than {limit} bytes")
                data = await self._exactly(size)
                await self._exactly(2)
                yield data
        else:
            n = int(self.headers.get("content-length") or 0)
            if limit is not None and n > limit:
                raise ApiError(413, f"request body larger than {limit} bytes")
            while n > 0:
                data = await self.reader.read(min(n, 1 << 16))
                if not data:
                    raise _ClientGone()
                n -= len(data)
                yield data

    async def body(self, limit: int = MAX_JSON_BODY) -> bytes:
        return b"".join([c async for c in self.body_chunks(limit)])

    async def json(self, required: bool = True) -> Any:
        raw = await self.body()
        if not raw.strip():
            if required:
                raise ApiError(400, "request body is required")
            return None
        try:
            return json.loads(raw)
        except ValueError as e:
            raise ApiError(400, f"invalid JSON: {e}") from None

    async def drain(self) -> None:
        async for _ in self.body_chunks():
            pass

    async def _line(self) -> bytes:
        try:
            return await self.reader.readuntil(b"\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            raise _ClientGone() from None

    async def _exactly(self, n: int) -> bytes:
        try:
            return await self.reader.readexactly(n)
        except asyncio.IncompleteReadError:
            raise _ClientGone() from None

    # -- taking the connection over ---------------------------------------------------------------------
    async def stream(self, content_type: str = "application/json", status: int = 200,
                     headers: dict[str, str] | None = None) -> ChunkedWriter:
        """Start a chunked response; the handler writes to it and ends it (or the client goes away)."""
        self.taken = True
        self.status = status
        await self.drain()
        head = self._head(status, {"Content-Type": content_type, "Transfer-Encoding": "chunked", **(headers or {})})
        self.writer.write(head)
        await self.writer.drain()
        self.streamed = ChunkedWriter(self.writer)
        return self.streamed

    async def hijack(self, content_type: str = "application/vnd.docker.raw-stream") -> tuple[
            asyncio.StreamReader, asyncio.StreamWriter]:
        """Answer `101 UPGRADED` (or `200 OK` to a client that did not ask to upgrade, as dockerd does) and
        hand over the raw connection; it is closed once the handler returns."""
        self.taken = True
        await self.drain()
        if "upgrade" in self.headers:
            self.status = 101
            head = (f"HTTP/1.1 101 UPGRADED\r\nContent-Type: {content_type}\r\nConnection: Upgrade\r\n"
                    "Upgrade: tcp\r\n\r\n")
        else:
            self.status = 200
            head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n\r\n"
        self.writer.write(head.encode())
        await self.writer.drain()
        return self.reader, self.writer

    def _head(self, status: int, headers: dict[str, str]) -> bytes:
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
        for k, v in {**self.server.common_headers(), **headers}.items():
            lines.append(f"{k}: {v}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()


class ChunkedWriter:
    """The body of a streamed response. write() raises ConnectionError once the client has gone."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.closed = False

    async def write(self, data: bytes) -> None:
        if not data:
            return
        if self.writer.is_closing():
            raise ConnectionResetError("client gone")
        self.writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        await self.writer.drain()

    async def json(self, obj: Any) -> None:
        await self.write((json.dumps(obj) + "\n").encode())

    async def end(self) -> None:
        if not self.closed:
            self.closed = True
            if not self.writer.is_closing():
                self.writer.write(b"0\r\n\r\n")
                await self.writer.drain()


Handler = Callable[..., Awaitable[Response | None]]
Dispatch = Callable[[Request], Awaitable[Response | None]]


class Server:
    """Serves one dispatch function on unix sockets and TCP ports; `access` is told of every request."""

    def __init__(self, dispatch: Dispatch, common_headers: Callable[[], dict[str, str]],
                 access: Callable[[Request], None] | None = None) -> None:
        self.dispatch = dispatch
        self.common_headers = common_headers
        self.access = access
        self.servers: list[asyncio.AbstractServer] = []
        self.connections: set[asyncio.Task[None]] = set()

    async def listen_unix(self, path: str) -> None:
        self.servers.append(await asyncio.start_unix_server(self._serve, path=path, limit=MAX_HEADER))

    async def listen_tcp(self, host: str, port: int) -> None:
        self.servers.append(await asyncio.start_server(self._serve, host=host, port=port, limit=MAX_HEADER))

    async def close(self) -> None:
        for s in self.servers:
            s.close()
        for t in list(self.connections):
            t.cancel()
        for s in self.servers:
            await s.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        try:
            while True:
                req = await self._read_request(reader, writer)
                if req is None:
                    break
                keep = await self._handle(req)
                if not keep:
                    break
        except (_ClientGone, ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self.connections.discard(task)
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - already gone
                pass

    async def _read_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Request | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        except asyncio.LimitOverrunError:
            writer.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\r\n")
            return None
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        return Request(method.upper(), target, version, headers, reader, writer, self)

    async def _handle(self, req: Request) -> bool:
        """Answer one request; True if the connection can take another."""
        try:
            resp = await self.dispatch(req)
        except ApiError as e:
            resp = json_response({"message": e.message}, e.status)
        except (_ClientGone, ConnectionError):
            self._log(req)
            return False
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - a bug must answer 500, not hang the client
            log.exception("handler for %s %s failed", req.method, req.path)
            resp = json_response({"message": f"internal error: {type(e).__name__}: {e}"}, 500)
        if req.taken:
            self._log(req)
            # A chunked response that was ended leaves the connection as HTTP/1.1 says: reusable (the docker CLI
            # sends its next request on it). A hijacked one, or a stream cut short, ends with the handler.
            return req.streamed is not None and req.streamed.closed and not req.writer.is_closing() \
                and req.headers.get("connection", "").lower() != "close"
        assert resp is not None
        try:
            await req.drain()  # what the handler did not read must not be taken for the next request
        except ApiError:
            pass
        req.status = resp.status
        headers = dict(resp.headers)
        if resp.content_type and resp.body:
            headers["Content-Type"] = resp.content_type
        if resp.status not in (204, 304):
            headers["Content-Length"] = str(len(resp.body))
        close = req.headers.get("connection", "").lower() == "close" or req.http_version == "HTTP/1.0"
        if close:
            headers["Connection"] = "close"
        req.writer.write(req._head(resp.status, headers) + (resp.body if req.method != "HEAD" else b""))
        await req.writer.drain()
        self._log(req)
        return not close

    def _log(self, req: Request) -> None:
        if self.access is not None:
            try:
                self.access(req)
            except Exception:  # noqa: BLE001 - logging must never break serving
                log.exception("access log")
