"""`docker exec`: `POST /containers/{id}/exec` (create), `POST /exec/{id}/start` (run it; hijacked, its
output multiplexed as attach's), `GET /exec/{id}/json` (its exit code once done).

The process joins the running container's namespaces and cgroup with its PID 1's capabilities,
no_new_privs and seccomp filter (workloads/exec.py), from a worker thread; its output is relayed into the
event loop as it comes.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import frames
from .http import ApiError, Request, Response, empty, json_response
from .params import content_type

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
    if body.get("Tty"):
        raise ApiError(400, "this engine gives processes no terminal: exec without -t (--tty)")
    if body.get("AttachStdin"):
        raise ApiError(400, "this engine does not feed an exec'd process's standard input yet: exec without -i")
    if body.get("User"):
        raise ApiError(400, "exec --user is not supported by this engine: the process runs as the container's user")
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
    loop = asyncio.get_running_loop()
    q: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()

    def on_output(stream: str, text: str) -> None:
        loop.call_soon_threadsafe(q.put_nowait, (stream, text.encode()))

    x.running = True
    e.events.emit("container", "exec_start: " + " ".join(x.config["Cmd"]), c.id,
                  e.containers.attrs(c, execID=x.id))
    task = asyncio.ensure_future(asyncio.to_thread(_run, e, c, x, on_output))
    task.add_done_callback(lambda _t: q.put_nowait(None))
    if body.get("Detach"):
        return empty(200)
    _, writer = await req.hijack(content_type(req))
    try:
        while (item := await q.get()) is not None:
            stream, data = item
            if stream in want:
                writer.write(frames.frame(stream, data))
                await writer.drain()
    except ConnectionError:
        pass  # the client left: the process runs to its end all the same
    await asyncio.shield(task)
    return None


def _run(e: Engine, c: Any, x: Exec, on_output: Any) -> None:
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
                    on_output=on_output, seccomp_filter=seccomp_filter(spec))
        x.exit_code = r.exit_code
    except (ExecError, OSError) as err:
        on_output("stderr", f"{err}\n")
        msg = str(err)
        x.exit_code = 127 if "No such file" in msg or "not found" in msg else 126
    finally:
        x.running = False
        x.done.set()


async def inspect(e: Engine, req: Request, eid: str) -> Response:
    x = _get(e, eid)
    cfg = x.config
    return json_response({
        "ID": x.id, "Running": x.running, "ExitCode": x.exit_code, "ProcessConfig": {
            "tty": False, "entrypoint": cfg["Cmd"][0], "arguments": cfg["Cmd"][1:], "privileged": False,
            "user": cfg.get("User") or ""},
        "OpenStdin": False, "OpenStderr": bool(cfg.get("AttachStderr")), "OpenStdout": bool(cfg.get("AttachStdout")),
        "CanRemove": False, "ContainerID": x.container_id, "DetachKeys": "", "Pid": x.pid})


async def resize(e: Engine, req: Request, eid: str) -> Response:
    _get(e, eid)
    return empty(200)
