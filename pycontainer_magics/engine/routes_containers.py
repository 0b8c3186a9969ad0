"""`/containers/...`: the endpoints behind `docker create|start|run|attach|logs|ps|inspect|wait|kill|stop|
restart|rm`, with dockerd's status codes and JSON shapes."""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import shlex
import time
from typing import TYPE_CHECKING, Any

from ..workloads import daemon_store as store
from ..workloads.json_log import Reader, Record, parse_time
from . import frames
from .backend import Container, parse_signal
from .http import ApiError, Request, Response, empty, json_response
from .params import content_type, time_param
from .stdio import listener_queue, parse_detach_keys, pump_stdin

if TYPE_CHECKING:
    from .core import Engine

FOLLOW_POLL = 0.05  # seconds between looks at a followed log


def routes(e: Engine) -> list[tuple[str, str, Any]]:
    return [
        ("POST", "/containers/create", lambda r: create(e, r)),
        ("GET", "/containers/json", lambda r: list_(e, r)),
        ("POST", "/containers/prune", lambda r: prune(e, r)),
        ("GET", "/containers/{id}/json", lambda r, id: inspect(e, r, id)),
        ("POST", "/containers/{id}/start", lambda r, id: start(e, r, id)),
        ("POST", "/containers/{id}/stop", lambda r, id: stop(e, r, id)),
        ("POST", "/containers/{id}/restart", lambda r, id: restart(e, r, id)),
        ("POST", "/containers/{id}/kill", lambda r, id: kill(e, r, id)),
        ("POST", "/containers/{id}/wait", lambda r, id: wait(e, r, id)),
        ("DELETE", "/containers/{id}", lambda r, id: remove(e, r, id)),
        ("POST", "/containers/{id}/attach", lambda r, id: attach(e, r, id)),
        ("GET", "/containers/{id}/logs", lambda r, id: logs(e, r, id)),
        ("POST", "/containers/{id}/resize", lambda r, id: resize(e, r, id)),
    ]


# -- create, list, inspect ---------------------------------------------------------------------------

async def create(e: Engine, req: Request) -> Response:
    body = await req.json()
    if not isinstance(body, dict):
        raise ApiError(400, "invalid container configuration: expected a JSON object")
    ref = body.get("Image")
    if not ref or not isinstance(ref, str):
        raise ApiError(400, "No image was specified")
    image = await e.images.resolve(ref)
    c = await e.containers.create(req.q("name"), body, image)
    return json_response({"Id": c.id, "Warnings": []}, 201)


async def list_(e: Engine, req: Request) -> Response:
    all_ = req.q_bool("all")
    limit = req.q_int("limit", -1) or -1
    filters = req.q_json("filters") or {}
    if isinstance(filters, dict):
        filters = {k: (list(v) if isinstance(v, list | dict) else [v]) for k, v in filters.items()}
    out = []
    for c in e.containers.all():
        if not (all_ or c.running or filters.get("status")):
            continue
        if not _matches(c, filters):
            continue
        out.append(summary(e, c))
    if limit > 0:
        out = out[:limit]
    return json_response(out)


def _matches(c: Container, filters: dict[str, list[str]]) -> bool:
    labels = c.record["Config"].get("Labels") or {}
    for key, values in filters.items():
        if not values:
            continue
        if key == "status":
            ok = c.status in values
        elif key == "name":
            ok = any(v.lstrip("/") in c.name for v in values)
        elif key == "id":
            ok = any(c.id.startswith(v) for v in values)
        elif key == "label":
            ok = all((labels.get(v.partition("=")[0]) == v.partition("=")[2]) if "=" in v
                     else v in labels for v in values)
        elif key == "exited":
            ok = c.status == "exited" and str(c.state.get("ExitCode")) in values
        elif key == "ancestor":
            ok = any(v in (c.image_name(), c.record["Image"]) or c.record["Image"].removeprefix("sha256:")
                     .startswith(v) for v in values)
        else:
            raise ApiError(400, f"invalid filter '{key}'")
        if not ok:
            return False
    return True


def _epoch(t: str) -> int:
    try:
        return int(parse_time(t))
    except ValueError:
        return 0


def human_duration(secs: float) -> str:
    """go-units HumanDuration, as `docker ps` shows ages."""
    s = int(secs)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(s / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 7 * 2:
        return f"{h // 24} days"
    if h < 24 * 30 * 2:
        return f"{h // 24 // 7} weeks"
    if h < 24 * 365 * 2:
        return f"{h // 24 // 30} months"
    return f"{h // 24 // 365} years"


def status_text(c: Container) -> str:
    st = c.state
    now = time.time()
    if c.running:
        up = "Up " + human_duration(now - parse_time(st.get("StartedAt") or "1970-01-01T00:00:00Z"))
        return up + " (Paused)" if c.status == "paused" else up
    if c.status == "created":
        return "Created"
    if c.status == "exited" and st.get("FinishedAt", "").startswith("0001"):
        return f"Exited ({st.get('ExitCode', 0)})"
    if c.status == "exited":
        return f"Exited ({st.get('ExitCode', 0)}) {human_duration(now - parse_time(st['FinishedAt']))} ago"
    return c.status.capitalize()


def _endpoints(c: Container) -> list[Any]:
    mode = _network_mode(c)
    if mode in ("none", "host") or not c.state.get("RunId") or not c.running:
        return []
    try:
        from ..network import networks
        return networks.endpoints_of(c.state["RunId"])
    except Exception:  # noqa: BLE001 - a network record being rewritten: show none this time
        return []


def _network_mode(c: Container) -> str:
    from .container_config import network_mode

    return network_mode(c.record["HostConfig"])


def _ports(c: Container, eps: list[Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(`docker ps` Ports, inspect's NetworkSettings.Ports)."""
    listed: list[dict[str, Any]] = []
    mapping: dict[str, Any] = {}
    for p in c.record["Config"].get("ExposedPorts") or {}:
        mapping.setdefault(p, None)
    for ep in eps:
        for pub in ep.published:  # "127.0.0.1:8080->80/tcp"
            host, _, ctr = pub.partition("->")
            hip, _, hport = host.rpartition(":")
            cport, _, proto = ctr.partition("/")
            listed.append({"IP": hip, "PrivatePort": int(cport), "PublicPort": int(hport), "Type": proto or "tcp"})
            mapping.setdefault(ctr, [])
            if mapping[ctr] is None:
                mapping[ctr] = []
            mapping[ctr].append({"HostIp": hip, "HostPort": hport})
    return listed, mapping


def _networks(c: Container, eps: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    mode = _network_mode(c)
    for ep in eps:
        out[ep.network] = {"IPAMConfig": None, "Links": None, "Aliases": list(ep.aliases) or None,
                           "NetworkID": ep.network, "EndpointID": ep.host_veth, "Gateway": ep.gateway,
                           "IPAddress": ep.address, "IPPrefixLen": ep.prefixlen, "IPv6Gateway": "",
                           "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "MacAddress": "", "DriverOpts": None}
    if not out:
        out[mode] = {"IPAMConfig": None, "Links": None, "Aliases": None, "NetworkID": mode, "EndpointID": "",
                     "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
                     "GlobalIPv6PrefixLen": 0, "MacAddress": "", "DriverOpts": None}
    return out


def _command(c: Container) -> str:
    argv = [c.record.get("Path") or "", *(c.record.get("Args") or [])]
    return shlex.join(a for a in argv if a is not None)


def _mounts(c: Container) -> list[dict[str, Any]]:
    out = []
    for b in c.record["HostConfig"].get("Binds") or []:
        parts = b.split(":")
        src, dst = parts[0], parts[1] if len(parts) > 1 else ""
        rw = not (len(parts) > 2 and "ro" in parts[2].split(","))
        if src.startswith("/"):
            out.append({"Type": "bind", "Source": src, "Destination": dst, "Mode": parts[2] if len(parts) > 2 else "",
                        "RW": rw, "Propagation": "rprivate"})
        else:
            out.append({"Type": "volume", "Name": src, "Source": store_volume(src), "Destination": dst,
                        "Driver": "local", "Mode": parts[2] if len(parts) > 2 else "z", "RW": rw, "Propagation": ""})
    for m in c.record["HostConfig"].get("Mounts") or []:
        kind = (m.get("Type") or "").lower()
        entry = {"Type": kind, "Source": m.get("Source", ""), "Destination": m.get("Target", ""), "Mode": "",
                 "RW": not m.get("ReadOnly"), "Propagation": "rprivate" if kind == "bind" else ""}
        if kind == "volume":
            entry.update(Name=m.get("Source", ""), Source=store_volume(m.get("Source", "")), Driver="local")
        out.append(entry)
    return out


def store_volume(name: str) -> str:
    from ..runtime.state import volume_path

    return volume_path(name, create=False)


def summary(e: Engine, c: Container) -> dict[str, Any]:
    """One entry of `GET /containers/json` (`docker ps`)."""
    eps = _endpoints(c)
    ports, _ = _ports(c, eps)
    return {"Id": c.id, "Names": ["/" + c.name], "Image": c.image_name(), "ImageID": c.record["Image"],
            "Command": _command(c), "Created": _epoch(c.record["Created"]), "Ports": ports,
            "Labels": c.record["Config"].get("Labels") or {}, "State": c.status, "Status": status_text(c),
            "HostConfig": {"NetworkMode": c.record["HostConfig"].get("NetworkMode") or "default"},
            "NetworkSettings": {"Networks": _networks(c, eps)}, "Mounts": _mounts(c)}


def inspect_json(e: Engine, c: Container) -> dict[str, Any]:
    st = c.state
    eps = _endpoints(c)
    _, port_map = _ports(c, eps)
    nets = _networks(c, eps)
    first = next(iter(nets.values()))
    hc = dict(c.record["HostConfig"])
    for k, v in (("NetworkMode", "default"), ("Memory", 0), ("MemorySwap", 0), ("NanoCpus", 0), ("CpuShares", 0),
                 ("PidsLimit", None), ("AutoRemove", False), ("Privileged", False), ("ReadonlyRootfs", False),
                 ("RestartPolicy", {"Name": "no", "MaximumRetryCount": 0}), ("LogConfig", {"Type": "json-file",
                                                                                           "Config": {}}),
                 ("Binds", None), ("CapAdd", None), ("CapDrop", None), ("CpusetCpus", ""), ("Runtime", "pycontainer")):
        hc.setdefault(k, v)
    return {
        "Id": c.id, "Created": c.record["Created"], "Path": c.record.get("Path", ""), "Args": c.record.get("Args", []),
        "State": {"Status": c.status, "Running": c.status in ("running", "paused"), "Paused": c.status == "paused",
                  "Restarting": False, "OOMKilled": bool(st.get("OOMKilled")), "Dead": False,
                  "Pid": int(st.get("Pid") or 0) if c.running else 0, "ExitCode": int(st.get("ExitCode") or 0),
                  "Error": st.get("Error") or "", "StartedAt": st.get("StartedAt"), "FinishedAt": st.get("FinishedAt")},
        "Image": c.record["Image"], "ResolvConfPath": "", "HostnamePath": "", "HostsPath": "",
        "LogPath": store.log_path(c.id), "Name": "/" + c.name, "RestartCount": int(st.get("RestartCount") or 0),
        "Driver": "overlay", "Platform": "linux", "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "",
        "ExecIDs": e.execs_of(c.id) or None, "HostConfig": hc,
        "GraphDriver": {"Name": "overlay", "Data": {"UpperDir": store.layer_dir(c.id) + "/upper",
                                                    "WorkDir": store.layer_dir(c.id) + "/work"}},
        "Mounts": _mounts(c), "Config": {k: v for k, v in c.record["Config"].items() if not k.startswith("_")},
        "NetworkSettings": {"Bridge": "", "SandboxID": st.get("RunId") or "", "HairpinMode": False,
                            "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "Ports": port_map,
                            "SandboxKey": f"/proc/{st.get('Pid')}/ns/net" if c.running else "",
                            "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
                            "EndpointID": first["EndpointID"], "Gateway": first["Gateway"],
                            "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPAddress": first["IPAddress"],
                            "IPPrefixLen": first["IPPrefixLen"], "IPv6Gateway": "", "MacAddress": "",
                            "Networks": nets},
    }


async def inspect(e: Engine, req: Request, ref: str) -> Response:
    c = e.containers.get(ref)
    return json_response(inspect_json(e, c))


# -- life --------------------------------------------------------------------------------------------

async def start(e: Engine, req: Request, ref: str) -> Response:
    c = e.containers.get(ref)
    return empty(204 if await e.containers.start(c) else 304)


async def stop(e: Engine, req: Request, ref: str) -> Response:
    c = e.containers.get(ref)
    sig = req.q("signal")
    return empty(204 if await e.containers.stop(c, req.q_int("t"), parse_signal(sig) if sig else None) else 304)


async def restart(e: Engine, req: Request, ref: str) -> Response:
    c = e.containers.get(ref)
    await e.containers.stop(c, req.q_int("t"))
    await e.containers.start(c)
    e.events.emit("container", "restart", c.id, e.containers.attrs(c))
    return empty(204)


async def kill(e: Engine, req: Request, ref: str) -> Response:
    c = e.containers.get(ref)
    await e.containers.kill(c, parse_signal(req.q("signal")))
    return empty(204)


async def wait(e: Engine, req: Request, ref: str) -> Response | None:
    c = e.containers.get(ref)
    condition = req.q("condition") or "not-running"
    if condition not in ("not-running", "next-exit", "removed"):
        raise ApiError(400, f"invalid condition: {condition!r}")
    # dockerd sends the headers at once: the client knows the wait is in place before it starts the
    # container (`docker run` waits, then starts).
    out = await req.stream("application/json")
    waiter = asyncio.ensure_future(e.containers.wait(c, condition))
    gone = asyncio.ensure_future(_client_gone(req))
    done, _ = await asyncio.wait({waiter, gone}, return_when=asyncio.FIRST_COMPLETED)
    if waiter in done:
        gone.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await gone  # off the reader before the connection takes its next request
        await out.json(waiter.result())
        await out.end()
    else:
        waiter.cancel()
    return None


async def _client_gone(req: Request) -> None:
    """Returns when the client has closed its end (it sends nothing more on a streamed request)."""
    while await req.reader.read(4096):
        pass


async def remove(e: Engine, req: Request, ref: str) -> Response:
    c = e.containers.get(ref)
    await e.containers.remove(c, force=req.q_bool("force"))
    return empty(204)


async def prune(e: Engine, req: Request) -> Response:
    deleted = []
    for c in e.containers.all():
        if c.status in ("exited", "created", "dead"):
            await e.containers.remove(c)
            deleted.append(c.id)
    return json_response({"ContainersDeleted": deleted or None, "SpaceReclaimed": 0})


async def resize(e: Engine, req: Request, ref: str) -> Response:
    """`docker run -t` and `docker attach` send the terminal's size (and each change of it): TIOCSWINSZ on the
    container's pty, and SIGWINCH to its foreground process group."""
    c = e.containers.get(ref)
    rows, cols = req.q_int("h", 0) or 0, req.q_int("w", 0) or 0
    if not c.running:
        raise ApiError(409, f"Container {c.id} is not running")
    io = await e.containers.io_of(c) if c.tty else None
    if io is not None:
        await io.resize(rows, cols)
    return empty(200)


# -- output, and input -------------------------------------------------------------------------------

async def attach(e: Engine, req: Request, ref: str) -> Response | None:
    """`docker run` (before start), `docker attach`, `docker start -a`: the run going on, or the next one if
    none is, until it ends (or the client types the detach keys). Output: the json log followed (multiplexed),
    or with a terminal its raw bytes as they come; input: the client's, to its stdin (-i) or terminal (-t)."""
    c = e.containers.get(ref)
    use_stdin = req.q_bool("stdin") and c.open_stdin  # dockerd ignores stdin for a container without -i
    want = {s for s in ("stdout", "stderr") if req.q_bool(s)}
    # As dockerd: the detach keys are looked for in a terminal's input only (piped data may hold any bytes).
    detach_keys = parse_detach_keys(req.q("detachKeys")) if c.tty else b""
    log_path = store.log_path(c.id)
    reader = Reader(log_path, 0 if req.q_bool("logs") else Reader.end_of(log_path))
    stream = req.q_bool("stream")
    exits = c.exits  # the run this attach follows ends when this grows (the one going on, or the next)
    tty = c.tty
    listener = listener_queue()
    if tty and stream and want:
        c.tty_listeners.add(listener)  # now: what a run starting from here writes reaches this session
    _, writer = await req.hijack("application/vnd.docker.raw-stream" if tty else content_type(req))
    out = asyncio.ensure_future(_attach_output(e, c, writer, reader, want, stream, exits, listener))
    inp = asyncio.ensure_future(_attach_input(e, c, req, exits, detach_keys)) if use_stdin and stream else None
    try:
        await asyncio.wait([t for t in (out, inp) if t is not None], return_when=asyncio.FIRST_COMPLETED)
        if inp is not None and inp.done() and not inp.exception() and not inp.result():
            await asyncio.wait([out])  # the client's input ended (not detached): the output goes on to the end
    finally:
        c.tty_listeners.discard(listener)
        for t in (out, inp):
            if t is not None:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                    await t  # the client may have left mid-attach: the container goes on
    return None


async def _until_running(c: Container, exits: int) -> bool:
    """Wait until the run this attach follows is going on (or over already); False if the container went."""
    while not c.running and c.exits == exits:
        if c.removed.is_set():  # gone without this run (a run that ended is removed right after: not this case)
            return False
        started, ended, removed = (asyncio.ensure_future(ev.wait()) for ev in (c.started, c.changed, c.removed))
        try:
            await asyncio.wait({started, ended, removed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for f in (started, ended, removed):
                f.cancel()
    return True


async def _attach_output(e: Engine, c: Container, writer: asyncio.StreamWriter, reader: Reader, want: set[str],
                         stream: bool, exits: int, listener: asyncio.Queue[bytes | None]) -> None:
    tty = c.tty
    for rec in reader.read():  # logs=1: what was written before
        if rec.stream in want:
            writer.write(rec.data if tty else frames.frame(rec.stream, rec.data))
    await writer.drain()
    if not stream:
        return
    if tty:
        if not want:
            await _until_running(c, exits) and await c.changed.wait()
            return
        if c.running and await e.containers.io_of(c) is None:
            return  # a terminal no one relays (its supervisor gone)
        while (data := await listener.get()) is not None:
            writer.write(data)
            await writer.drain()
        return
    if not await _until_running(c, exits):
        return
    while c.exits == exits:
        for rec in reader.read():
            if rec.stream in want:
                writer.write(frames.frame(rec.stream, rec.data))
        await writer.drain()
        try:
            await asyncio.wait_for(asyncio.shield(c.changed.wait()), FOLLOW_POLL)
        except TimeoutError:
            pass
    for rec in reader.read():  # what was written before the end was seen
        if rec.stream in want:
            writer.write(frames.frame(rec.stream, rec.data))
    await writer.drain()


async def _attach_input(e: Engine, c: Container, req: Request, exits: int, detach_keys: bytes) -> bool:
    """The client's input to the run's stdin or terminal; True when it detached (ctrl-p ctrl-q). When its
    input ends, a StdinOnce container's stdin is closed (`echo hi | docker run -i IMAGE cat` ends)."""
    async def write(data: bytes) -> None:
        if await _until_running(c, exits) and c.exits == exits:
            io = await e.containers.io_of(c)
            if io is not None:
                await io.write(data)

    detached = await pump_stdin(req.reader, write, detach_keys)
    if c.record["Config"].get("StdinOnce") and not c.tty and await _until_running(c, exits) and c.exits == exits:
        io = await e.containers.io_of(c)
        if io is not None:
            await io.close_stdin()
    return detached


def _select(records: list[Record], want: set[str], since: float, until: float | None) -> list[Record]:
    out = []
    for r in records:
        if r.stream not in want:
            continue
        t = r.t
        if t < since or (until is not None and t > until):
            continue
        out.append(r)
    return out


async def logs(e: Engine, req: Request, ref: str) -> Response | None:
    c = e.containers.get(ref)
    want = {s for s in ("stdout", "stderr") if req.q_bool(s)}
    if not want:
        raise ApiError(400, "Bad parameters: you must choose at least one stream")
    follow = req.q_bool("follow")
    stamps = req.q_bool("timestamps")
    since = time_param(req.q("since")) or 0.0
    until = time_param(req.q("until"))
    tail = req.q("tail") or "all"
    if tail != "all":
        try:
            n_tail = int(tail)
        except ValueError:
            n_tail = -1
    path = store.log_path(c.id)
    reader = Reader(path)
    exits = c.exits
    ended = c.changed
    first = _select(reader.read(), want, since, until)
    if tail != "all" and n_tail >= 0:
        first = first[len(first) - n_tail:] if n_tail else []
    tty = c.tty  # a terminal's output is one stream: sent raw, as dockerd does (the client copies it through)
    out = await req.stream("application/vnd.docker.raw-stream" if tty else content_type(req))

    def encode(recs: list[Record]) -> bytes:
        if tty:
            return b"".join((r.time.encode() + b" " if stamps else b"") + r.data for r in recs)
        return b"".join(frames.frame(r.stream, (r.time.encode() + b" " if stamps else b"") + r.data) for r in recs)

    try:
        await out.write(encode(first))
        if follow and c.running and (until is None or until > time.time()):
            while c.exits == exits and c.id in e.containers.by_id:
                try:
                    await asyncio.wait_for(asyncio.shield(ended.wait()), FOLLOW_POLL)
                except TimeoutError:
                    pass
                await out.write(encode(_select(reader.read(), want, since, until)))
            await out.write(encode(_select(reader.read(), want, since, until)))
        await out.end()
    except ConnectionError:
        pass  # the client stopped following
    return None


__all__ = ["calendar", "routes"]
