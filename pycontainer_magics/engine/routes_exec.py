"""`docker exec`: `POST /containers/{id}/exec` (create), `POST /exec/{id}/start` (run it; hijacked, its
output multiplexed as attach's), `GET /exec/{id}/json` (its exit code once done).

The process joins the running container's namespaces and cgroup with its PID 1's capabilities,
no_new_privs and seccomp filter (workloads/exec.py), from a worker thread; its output is relayed into the
event loop as it comes. With -i the client's input goes to a pipe that is its stdin (closed when the input
ends); with -t it gets a terminal of the container's devpts whose master the daemon holds while it runs:
raw bytes both ways, `POST /exec/{id}/resize` sets its size, ctrl-p ctrl-q detaches.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import secrets
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..linux import pty
from ..runtime.run import Terminal
from . import frames
from .http import ApiError, Request, Response, empty, json_response
from .params import content_type
from .stdio import parse_detach_keys, pump_stdin, read_fd, write_fd

EXEC_BUFFER = 64  # output messages held for an exec's client; then the process waits for it to read

if TYPE_CHECKING:
    from .core import Engine


@dataclass
class Exec:
    id: str
    container_id: str
    config: dict[str, Any]
    running: bool = False
    exit_code: int | None = None
    pid: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    master: int | None = None  # its terminal's master (-t), while it runs
    size: tuple[int, int] = (0, 0)  # the window size asked for before the terminal existed

    def set_master(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.master = fd
        if any(self.size):
            with contextlib.suppress(OSError):
                pty.set_size(fd, *self.size)


def routes(e: Engine) -> list[tuple[str, str, Any]]:
    return [
        ("POST", "/containers/{id}/exec", lambda r, id: create(e, r, id)),
        ("POST", "/exec/{id}/start", lambda r, id: start(e, r, id)),
        ("GET", "/exec/{id}/json", lambda r, id: inspect(e, r, id)),
        ("POST", "/exec/{id}/resize", lambda r, id: resize(e, r, id)),
    ]


def _get(e: Engine, eid: str) -> Exec:
    x: Exec | None = e.execs.get(eid)
    if x is None:
        raise ApiError(404, f"No such exec instance: {eid}")
    return x


async def create(e: Engine, req: Request, ref: str) -> Response:
    c = e.containers.get(ref)
    body = await req.json()
    if not isinstance(body, dict):
        raise ApiError(400, "invalid exec configuration: expected a JSON object")
    if not c.running:
        raise ApiError(409, f"Container {c.id} is not running")
    if c.status == "paused":
        raise ApiError(409, f"Container {c.id} is paused, unpause the container before exec")
    cmd = body.get("Cmd")
    if not cmd or not isinstance(cmd, list):
        raise ApiError(400, "No exec command specified")
    from . import container_config

    for key in ("Cmd", "Env"):
        container_config.check_string_list(key, body.get(key))
    for key in ("WorkingDir", "User", "DetachKeys"):
        container_config.check_string(key, body.get(key))
    container_config.check_console_size("ConsoleSize", body.get("ConsoleSize"))
    if body.get("Privileged"):
        raise ApiError(400, "exec --privileged is not supported by this engine: the process gets the container's "
                       "capabilities")
    x = Exec(secrets.token_hex(32), c.id, body)
    e.execs[x.id] = x
    e.events.emit("container", "exec_create: " + " ".join(cmd), c.id, e.containers.attrs(c, execID=x.id))
    return json_response({"Id": x.id}, 201)


async def start(e: Engine, req: Request, eid: str) -> Response | None:
    x = _get(e, eid)
    body = await req.json(required=False) or {}
    if x.running or x.exit_code is not None:
        raise ApiError(409, f"Error: Exec command {x.id} has already run")
    c = e.containers.get(x.container_id)
    if not c.running:
        raise ApiError(409, f"Container {c.id} is not running")
    want = {s for s, k in (("stdout", "AttachStdout"), ("stderr", "AttachStderr")) if x.config.get(k, True)}
    tty = bool(x.config.get("Tty") or body.get("Tty"))
    detach = bool(body.get("Detach"))
    use_stdin = bool(x.config.get("AttachStdin")) and not detach
    detach_keys = parse_detach_keys(x.config.get("DetachKeys") or req.q("detachKeys")) if tty else b""
    from . import container_config

    container_config.check_console_size("ConsoleSize", body.get("ConsoleSize"))
    size = body.get("ConsoleSize") or x.config.get("ConsoleSize")
    if size:
        x.size = (int(size[0] or 0), int(size[1] or 0))
    loop = asyncio.get_running_loop()
    q: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue(maxsize=EXEC_BUFFER)
    got_master: asyncio.Future[int] = loop.create_future()
    dropping = threading.Event()  # no client takes the output (detached, or it left): what comes is dropped

    def on_output(stream: str, text: str) -> None:
        # In the worker thread, which relays the process's pipes: it waits for room in the queue, so a client
        # that reads slowly holds the process up (as dockerd's exec does), not the daemon's memory.
        if dropping.is_set():
            return
        with contextlib.suppress(RuntimeError, concurrent.futures.CancelledError):  # the loop is closing
            asyncio.run_coroutine_threadsafe(q.put((stream, text.encode())), loop).result()

    def drop_output() -> None:
        dropping.set()
        while not q.empty():  # frees a put the worker waits on
            q.get_nowait()

    def on_master(fd: int) -> None:  # in the worker thread, before the command runs
        loop.call_soon_threadsafe(got_master.set_result, fd)

    stdin_r = stdin_w = None
    if use_stdin and not tty:
        stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(stdin_w, False)
    terminal = Terminal(on_master, x.size) if tty else None
    x.running = True
    e.events.emit("container", "exec_start: " + " ".join(x.config["Cmd"]), c.id,
                  e.containers.attrs(c, execID=x.id))
    task = asyncio.ensure_future(asyncio.to_thread(_run, e, c, x, on_output, stdin_r, terminal))
    task.add_done_callback(lambda _t: None if dropping.is_set() else asyncio.ensure_future(q.put(None)))
    if tty:
        task.add_done_callback(lambda _t: got_master.done() or got_master.cancel())
        got_master.add_done_callback(lambda f: None if f.cancelled() else x.set_master(f.result()))
    if detach:
        drop_output()
        if tty:
            asyncio.ensure_future(_discard_terminal(x, got_master, task))
        return empty(200)
    _, writer = await req.hijack("application/vnd.docker.raw-stream" if tty else content_type(req))
    inp = None
    if use_stdin and stdin_w is not None:
        inp = asyncio.ensure_future(_exec_input(req.reader, stdin_w, detach_keys))
    elif x.config.get("AttachStdin") and tty:
        inp = asyncio.ensure_future(_terminal_input(req.reader, got_master, detach_keys))
    out = asyncio.ensure_future(_terminal_output(writer, got_master, task) if tty else
                                _exec_output(writer, q, want))
    try:
        await asyncio.wait([t for t in (out, inp) if t is not None], return_when=asyncio.FIRST_COMPLETED)
        if inp is not None and inp.done() and not inp.exception() and not inp.result():
            await asyncio.wait([out])  # the client's input ended (not detached): the output goes on to the end
    finally:
        for t in (out, inp):
            if t is not None:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                    await t  # the client may have left: the process runs to its end all the same
        drop_output()  # (all of it was taken, or the client left: the worker must not wait for room)
        if tty and not task.done():  # detached: its terminal is read (and dropped) until it ends
            asyncio.ensure_future(_discard_terminal(x, got_master, task))
        elif not task.done():
            await asyncio.shield(task)
        if task.done() and tty:
            _close_master(x)
    return None


async def _exec_output(writer: asyncio.StreamWriter, q: asyncio.Queue[tuple[str, bytes] | None],
                       want: set[str]) -> None:
    while (item := await q.get()) is not None:
        stream, data = item
        if stream in want:
            writer.write(frames.frame(stream, data))
            await writer.drain()


async def _exec_input(reader: asyncio.StreamReader, stdin_w: int, detach_keys: bytes) -> bool:
    """The client's input to the process's stdin pipe, closed when the client's input ends (or it detaches)."""
    try:
        return await pump_stdin(reader, lambda data: write_fd(stdin_w, data), detach_keys)
    finally:
        with contextlib.suppress(OSError):
            os.close(stdin_w)


async def _terminal_input(reader: asyncio.StreamReader, got_master: asyncio.Future[int], detach_keys: bytes) -> bool:
    try:
        master = await asyncio.shield(got_master)
    except asyncio.CancelledError:
        return False  # it ended before its terminal was made
    return await pump_stdin(reader, lambda data: write_fd(master, data), detach_keys)


async def _terminal_output(writer: asyncio.StreamWriter, got_master: asyncio.Future[int], task: Any) -> None:
    """The terminal's bytes as they come, until every holder of it is gone (EIO)."""
    try:
        master = await asyncio.shield(got_master)
    except asyncio.CancelledError:
        return

    async def send(data: bytes) -> None:
        writer.write(data)
        await writer.drain()

    await read_fd(master, send)
    await asyncio.shield(task)


async def _discard_terminal(x: Exec, got_master: asyncio.Future[int], task: Any) -> None:
    """`docker exec -dt`, or a client that detached: nobody reads the terminal, but it must be read (a full one
    blocks the process) until the process ends."""
    try:
        master = await asyncio.shield(got_master)
    except asyncio.CancelledError:
        return

    async def drop(_data: bytes) -> None:
        pass

    await read_fd(master, drop)
    await asyncio.shield(task)
    _close_master(x)


def _close_master(x: Exec) -> None:
    if x.master is not None:
        with contextlib.suppress(OSError):
            os.close(x.master)
        x.master = None


def _run(e: Engine, c: Any, x: Exec, on_output: Any, stdin_r: int | None = None,
         terminal: Terminal | None = None) -> None:
    from ..runtime.image_source import configured_user
    from ..runtime.run import container_env, hierarchy, seccomp_filter
    from ..workloads import daemon_store as store
    from ..workloads.exec import ExecError, exec_in
    from . import container_config

    rec = c.record
    try:
        spec = container_config.spec_of(c.id, c.name, rec["Image"], rec["Config"], rec["HostConfig"],
                                         rec["NetworkingConfig"].get("EndpointsConfig") or {}, store.layer_dir(c.id))
        env = container_env(spec, python=False)
        env.update(e_.split("=", 1) for e_ in rec["Config"].get("Env") or [] if "=" in e_)
        env.update(e_.split("=", 1) for e_ in x.config.get("Env") or [] if "=" in e_)
        h = hierarchy()
        cg = h.get(c.state["RunId"]) if h is not None and c.state.get("RunId") else None
        r = exec_in(int(c.state["Pid"]), cg, tuple(x.config["Cmd"]), env=env,
                    workdir=x.config.get("WorkingDir") or rec["Config"].get("WorkingDir") or "/",
                    capabilities=spec.capabilities, no_new_privileges=spec.no_new_privileges,
                    on_output=on_output, seccomp_filter=seccomp_filter(spec), stdin_fd=stdin_r, terminal=terminal,
                    user=x.config.get("User") or configured_user(spec), rlimits_=spec.ulimits)
        x.exit_code = r.exit_code
    except (ExecError, OSError) as err:
        on_output("stderr", f"{err}\n")
        msg = str(err)
        x.exit_code = 127 if "No such file" in msg or "not found" in msg else 126
    except Exception as err:  # noqa: BLE001 - (a spec this container's record no longer makes): said, not swallowed
        on_output("stderr", f"exec failed: {getattr(err, 'message', None) or err}\n")
        x.exit_code = 126
    finally:
        if stdin_r is not None:
            os.close(stdin_r)
        x.running = False
        x.done.set()


async def inspect(e: Engine, req: Request, eid: str) -> Response:
    x = _get(e, eid)
    cfg = x.config
    return json_response({
        "ID": x.id, "Running": x.running, "ExitCode": x.exit_code, "ProcessConfig": {
            "tty": bool(cfg.get("Tty")), "entrypoint": cfg["Cmd"][0], "arguments": cfg["Cmd"][1:],
            "privileged": False, "user": cfg.get("User") or ""},
        "OpenStdin": bool(cfg.get("AttachStdin")), "OpenStderr": bool(cfg.get("AttachStderr")),
        "OpenStdout": bool(cfg.get("AttachStdout")),
        "CanRemove": False, "ContainerID": x.container_id, "DetachKeys": "", "Pid": x.pid})


async def resize(e: Engine, req: Request, eid: str) -> Response:
    """`docker exec -t`: the window size of its terminal (kept for it if it is not made yet)."""
    x = _get(e, eid)
    x.size = (req.q_int("h", 0) or 0, req.q_int("w", 0) or 0)
    if x.master is not None:
        with contextlib.suppress(OSError):
            pty.set_size(x.master, *x.size)
    return empty(200)
