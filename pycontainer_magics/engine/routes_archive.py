"""`docker cp` (`HEAD|GET|PUT /containers/{id}/archive`) and `docker export` (`GET /containers/{id}/export`):
a container's files, running or not, through workloads/fs_access.py in a process of its own (which sees
them from inside the container's root, so a symlink in the container never reaches the host's files)."""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import sys
from typing import TYPE_CHECKING, Any

from ..workloads import daemon_store as store
from .http import ApiError, Request, Response, empty

if TYPE_CHECKING:
    from .backend import Container
    from .core import Engine

STAT_HEADER = "X-Docker-Container-Path-Stat"


def routes(e: Engine) -> list[tuple[str, str, Any]]:
    return [
        ("HEAD", "/containers/{id}/archive", lambda r, id: stat(e, r, id)),
        ("GET", "/containers/{id}/archive", lambda r, id: get(e, r, id)),
        ("PUT", "/containers/{id}/archive", lambda r, id: put(e, r, id)),
        ("GET", "/containers/{id}/export", lambda r, id: export(e, r, id)),
    ]


def _root(e: Engine, c: Container) -> str:
    if c.running:
        return f"pid:{int(c.state['Pid'])}"
    img = e.images.get(c.record["Image"])
    layer = store.layer_dir(c.id)
    return f"layers:{layer}/upper:{layer}/work:{':'.join(img.lower_dirs())}"


async def _helper(root: str, *args: str, stdin: int | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pycontainer_magics.workloads.fs_access", root, *args, stdin=stdin,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd="/")


def _path(req: Request) -> str:
    p = req.q("path")
    if not p:
        raise ApiError(400, "path is required")
    return p if p.startswith("/") else "/" + p


async def _failed(c: Container, proc: asyncio.subprocess.Process) -> ApiError:
    assert proc.stderr is not None
    err = (await proc.stderr.read()).decode(errors="replace").strip()
    code = await proc.wait()
    if code == 2:
        return ApiError(404, f"{err.splitlines()[-1] if err else 'no such path'} {c.name}")
    return ApiError(500, err.splitlines()[-1] if err else f"archive helper failed ({code})")


async def stat(e: Engine, req: Request, ref: str) -> Response:
    c = e.containers.get(ref)
    proc = await _helper(_root(e, c), "stat", _path(req))
    assert proc.stdout is not None
    out = await proc.stdout.read()
    if await proc.wait() != 0 or not out:
        raise await _failed(c, proc)
    return Response(200, b"", headers={STAT_HEADER: base64.b64encode(out.strip()).decode()})


async def get(e: Engine, req: Request, ref: str) -> Response | None:
    c = e.containers.get(ref)
    proc = await _helper(_root(e, c), "get", _path(req))
    assert proc.stdout is not None
    try:
        head = await proc.stdout.readexactly(4)
        info = await proc.stdout.readexactly(struct.unpack(">I", head)[0])
    except asyncio.IncompleteReadError:
        raise await _failed(c, proc) from None
    out = await req.stream("application/x-tar", headers={STAT_HEADER: base64.b64encode(info).decode()})
    try:
        while chunk := await proc.stdout.read(1 << 16):
            await out.write(chunk)
        await out.end()
    except ConnectionError:
        proc.kill()
    await proc.wait()
    return None


async def put(e: Engine, req: Request, ref: str) -> Response:
    c = e.containers.get(ref)
    if c.record["HostConfig"].get("ReadonlyRootfs"):
        raise ApiError(403, "container rootfs is marked read-only")
    r, w = os.pipe()
    proc = await _helper(_root(e, c), "put", _path(req), stdin=r)
    os.close(r)
    loop = asyncio.get_running_loop()
    try:
        with os.fdopen(w, "wb") as sink:
            async for chunk in req.body_chunks():
                await loop.run_in_executor(None, sink.write, chunk)
    except BrokenPipeError:
        pass
    if await proc.wait() != 0:
        raise await _failed(c, proc)
    return empty(200)


async def export(e: Engine, req: Request, ref: str) -> Response | None:
    c = e.containers.get(ref)
    proc = await _helper(_root(e, c), "export")
    assert proc.stdout is not None
    first = await proc.stdout.read(1 << 16)
    if not first:
        raise await _failed(c, proc)
    out = await req.stream("application/x-tar")
    try:
        await out.write(first)
        while chunk := await proc.stdout.read(1 << 16):
            await out.write(chunk)
        await out.end()
    except ConnectionError:
        proc.kill()
    await proc.wait()
    e.events.emit("container", "export", c.id, e.containers.attrs(c))
    return None
