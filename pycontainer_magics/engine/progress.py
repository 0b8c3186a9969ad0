"""Long jobs (pull, push, build, load) run in a worker thread and report as dockerd does: a stream of JSON
objects, one a line. An error before the first line is an ordinary error response (404 for an unknown
image, say); once the stream has begun, it is a last `{"errorDetail": ..., "error": ...}` line. A client
that leaves mid-stream does not stop the job: it runs to its end, and the daemon goes on serving."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from .http import ApiError, ChunkedWriter, Request

log = logging.getLogger("pycontainer.engine")

Emit = Callable[[dict[str, Any]], None]
_DONE = object()


async def json_stream(req: Request, work: Callable[[Emit], Any], status_of: Callable[[BaseException], int]) -> Any:
    """Run `work(emit)` in a thread, streaming what it emits. Returns its result (None if it failed after
    the stream began)."""
    loop = asyncio.get_running_loop()
    q: asyncio.Queue[Any] = asyncio.Queue()

    def emit(obj: dict[str, Any]) -> None:
        loop.call_soon_threadsafe(q.put_nowait, obj)

    task = asyncio.ensure_future(asyncio.to_thread(work, emit))
    task.add_done_callback(lambda _t: q.put_nowait(_DONE))
    out: ChunkedWriter | None = None
    gone = False
    while True:
        item = await q.get()
        if item is _DONE:
            break
        if gone:
            continue
        try:
            if out is None:
                out = await req.stream("application/json")
            await out.json(item)
        except ConnectionError:
            gone = True  # the client left: let the job finish, quietly
    try:
        result = task.result()
    except ApiError:
        if out is None:
            raise
        result = None
    except Exception as e:  # noqa: BLE001 - reported to the client in Docker's shape
        msg = str(e) or type(e).__name__
        if out is None:
            raise ApiError(status_of(e), msg) from None
        log.info("%s %s failed: %s", req.method, req.path, msg)
        if not gone:
            try:
                await out.json({"errorDetail": {"message": msg}, "error": msg})
            except ConnectionError:
                gone = True
        result = None
    if out is None:
        out = await req.stream("application/json")
    if not gone:
        try:
            await out.end()
        except ConnectionError:
            pass
    return result
