"""`/networks/...` and `/volumes/...`: `docker network ls|create|inspect|connect|disconnect|rm|prune` and
`docker volume ls|create|inspect|rm|prune`, over the project's networks (bridges, IPAM, names through
hosts files) and named volumes.

Networks made through the API are the daemon's, not a process's: they stay until removed, across
daemon restarts (owned by PID 1 for the network layer's prune)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from typing import TYPE_CHECKING, Any

from .http import ApiError, Request, Response, empty, json_response

if TYPE_CHECKING:
    from .backend import Container
    from .core import Engine

BUILTIN = ("bridge", "host", "none")
PERSISTENT_OWNER = 1  # a network owned by init: prune never takes it


def routes(e: Engine) -> list[tuple[str, str, Any]]:
    return [
        ("GET", "/networks", lambda r: list_networks(e, r)),
        ("POST", "/networks/create", lambda r: create_network(e, r)),
        ("POST", "/networks/prune", lambda r: prune_networks(e, r)),
        ("GET", "/networks/{id}", lambda r, id: inspect_network(e, r, id)),
        ("DELETE", "/networks/{id}", lambda r, id: remove_network(e, r, id)),
        ("POST", "/networks/{id}/connect", lambda r, id: connect(e, r, id)),
        ("POST", "/networks/{id}/disconnect", lambda r, id: disconnect(e, r, id)),
        ("GET", "/volumes", lambda r: list_volumes(e, r)),
        ("POST", "/volumes/create", lambda r: create_volume(e, r)),
        ("POST", "/volumes/prune", lambda r: prune_volumes(e, r)),
        ("GET", "/volumes/{name}", lambda r, name: inspect_volume(e, r, name)),
        ("DELETE", "/volumes/{name}", lambda r, name: remove_volume(e, r, name)),
    ]


def network_id(name: str) -> str:
    return hashlib.sha256(f"pycontainer-network:{name}".encode()).hexdigest()


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e9):09d}Z"


def _net_json(e: Engine, name: str, net: Any) -> dict[str, Any]:
    by_run = {c.state.get("RunId"): c for c in e.containers.all() if c.state.get("RunId")}
    containers = {}
    ipam: list[dict[str, str]] = []
    created = _rfc3339(time.time())
    internal = False
    if net is not None:
        ipam = [{"Subnet": str(net.subnet), "Gateway": str(net.gateway)}]
        created = _rfc3339(net.created or time.time())
        internal = net.internal
        for ep in net.endpoints:
            c = by_run.get(ep.container_id)
            key = c.id if c is not None else ep.container_id
            containers[key] = {"Name": c.name if c is not None else ep.name, "EndpointID": network_id(ep.host_veth),
                               "MacAddress": "", "IPv4Address": ep.cidr, "IPv6Address": ""}
    driver = {"host": "host", "none": "null"}.get(name, "bridge")
    return {"Name": name, "Id": network_id(name), "Created": created, "Scope": "local", "Driver": driver,
            "EnableIPv6": False, "IPAM": {"Driver": "default", "Options": None, "Config": ipam},
            "Internal": internal, "Attachable": False, "Ingress": False, "ConfigFrom": {"Network": ""},
            "ConfigOnly": False, "Containers": containers, "Options": {}, "Labels": {}}


def _all(e: Engine) -> dict[str, Any]:
    from ..network import networks as nets

    out: dict[str, Any] = {n: None for n in BUILTIN}
    for n in nets.list_networks():
        out[n.name] = n
    return out


def _find(e: Engine, ref: str) -> tuple[str, Any]:
    found = _all(e)
    if ref in found:
        return ref, found[ref]
    hits = [n for n in found if network_id(n).startswith(ref)] if len(ref) >= 3 else []
    if len(hits) == 1:
        return hits[0], found[hits[0]]
    raise ApiError(404, f"network {ref} not found")


async def list_networks(e: Engine, req: Request) -> Response:
    filters = req.q_json("filters") or {}
    found = await asyncio.to_thread(_all, e)
    out = []
    for name, net in found.items():
        if "name" in filters and not any(v in name for v in filters["name"]):
            continue
        if "id" in filters and not any(network_id(name).startswith(v) for v in filters["id"]):
            continue
        out.append(_net_json(e, name, net))
    return json_response(out)


async def inspect_network(e: Engine, req: Request, ref: str) -> Response:
    name, net = await asyncio.to_thread(_find, e, ref)
    return json_response(_net_json(e, name, net))


def _check_network_body(body: dict[str, Any]) -> None:
    """dockerd's decoder: a field of the wrong JSON type is a 400 (it was a 500: an AttributeError)."""
    from .container_config import check_string

    for key in ("Name", "Driver"):
        check_string(key, body.get(key))
    ipam = body.get("IPAM")
    if ipam is None:
        return
    if not isinstance(ipam, dict):
        raise ApiError(400, f"json: cannot unmarshal {type(ipam).__name__} into IPAM (expected an object)")
    configs = ipam.get("Config")
    if configs is not None and not (isinstance(configs, list) and all(isinstance(c, dict) for c in configs)):
        raise ApiError(400, "json: cannot unmarshal IPAM.Config (expected a list of objects)")
    for c in configs or []:
        for key in ("Subnet", "Gateway", "IPRange"):
            check_string(f"IPAM.Config.{key}", c.get(key))


async def create_network(e: Engine, req: Request) -> Response:
    from ..network import NetworkError, NetworkExists
    from ..network import networks as nets

    body = await req.json()
    if not isinstance(body, dict):
        raise ApiError(400, "invalid network configuration: expected a JSON object")
    name = body.get("Name") or ""
    if not name:
        raise ApiError(400, "network name is required")
    _check_network_body(body)
    driver = body.get("Driver") or "bridge"
    if driver != "bridge":
        raise ApiError(400, f'plugin "{driver}" not found: this engine has bridge networks only')
    if name in BUILTIN:
        raise ApiError(403, f"{name} is a pre-defined network and cannot be created")
    if body.get("EnableIPv6"):
        raise ApiError(400, "IPv6 networks are not supported by this engine")
    configs = ((body.get("IPAM") or {}).get("Config") or [])
    subnet = configs[0].get("Subnet") if configs else None
    gateway = configs[0].get("Gateway") if configs else None
    try:
        net = await asyncio.to_thread(nets.create_network, name, subnet, gateway,
                                      internal=bool(body.get("Internal")), owner_pid=PERSISTENT_OWNER)
    except NetworkExists:
        raise ApiError(409, f"network with name {name} already exists") from None
    except NetworkError as err:
        raise ApiError(400, str(err)) from None
    e.events.emit("network", "create", network_id(name), {"name": name, "type": "bridge"})
    return json_response({"Id": network_id(net.name), "Warning": ""}, 201)


async def remove_network(e: Engine, req: Request, ref: str) -> Response:
    from ..network import NetworkError, NetworkInUse
    from ..network import networks as nets

    name, net = await asyncio.to_thread(_find, e, ref)
    if name in BUILTIN:
        raise ApiError(403, f"{name} is a pre-defined network and cannot be removed")
    try:
        await asyncio.to_thread(nets.remove_network, name)
    except NetworkInUse:
        raise ApiError(403, f"error while removing network: network {name} id {network_id(name)} has active "
                       "endpoints") from None
    except NetworkError as err:
        raise ApiError(500, str(err)) from None
    _forget_network(e, name)
    e.events.emit("network", "destroy", network_id(name), {"name": name, "type": "bridge"})
    return empty(204)


def _forget_network(e: Engine, name: str) -> None:
    """A removed network leaves the configs of stopped containers that named it, as dockerd's."""
    for c in e.containers.all():
        eps = c.record["NetworkingConfig"].get("EndpointsConfig") or {}
        if name in eps and not c.running:
            eps.pop(name)
            e.containers.save_record(c)


async def prune_networks(e: Engine, req: Request) -> Response:
    from ..network import NetworkError
    from ..network import networks as nets

    deleted = []
    for name, net in (await asyncio.to_thread(_all, e)).items():
        if name in BUILTIN or net is None or net.endpoints:
            continue
        try:
            await asyncio.to_thread(nets.remove_network, name)
            deleted.append(name)
        except NetworkError:
            continue
    return json_response({"NetworksDeleted": deleted or None})


async def connect(e: Engine, req: Request, ref: str) -> Response:
    name, _net = await asyncio.to_thread(_find, e, ref)
    body = await req.json()
    c = e.containers.get(body.get("Container") or "")
    if name in ("host", "none"):
        raise ApiError(400, f"container cannot be connected to network {name}: give a bridge network")
    await e.containers.connect(c, name, (body.get("EndpointConfig") or {}))
    e.events.emit("network", "connect", network_id(name), {"name": name, "type": "bridge", "container": c.id})
    return empty(200)


async def disconnect(e: Engine, req: Request, ref: str) -> Response:
    name, _net = await asyncio.to_thread(_find, e, ref)
    body = await req.json()
    c = e.containers.get(body.get("Container") or "")
    await e.containers.disconnect(c, name, bool(body.get("Force")))
    e.events.emit("network", "disconnect", network_id(name), {"name": name, "type": "bridge", "container": c.id})
    return empty(200)


# -- volumes -----------------------------------------------------------------------------------------

def _volume_json(name: str) -> dict[str, Any]:
    from ..runtime.state import volume_path

    path = volume_path(name, create=False)
    try:
        created = _rfc3339(os.stat(os.path.dirname(path)).st_mtime)
    except OSError:
        created = _rfc3339(time.time())
    return {"Name": name, "Driver": "local", "Mountpoint": path, "CreatedAt": created, "Labels": {},
            "Scope": "local", "Options": {}}


def _users(e: Engine, name: str) -> list[Container]:
    out = []
    for c in e.containers.all():
        hc = c.record["HostConfig"]
        binds = [b.split(":")[0] for b in hc.get("Binds") or []]
        mounts = [m.get("Source") for m in hc.get("Mounts") or [] if (m.get("Type") or "").lower() == "volume"]
        if name in binds or name in mounts:
            out.append(c)
    return out


async def list_volumes(e: Engine, req: Request) -> Response:
    from ..workloads.volumes import list_volumes as names

    filters = req.q_json("filters") or {}
    out = []
    for n in await asyncio.to_thread(names):
        if "name" in filters and not any(v in n for v in filters["name"]):
            continue
        if "dangling" in filters and (str(not _users(e, n)).lower() not in [v.lower() for v in filters["dangling"]]):
            continue
        out.append(_volume_json(n))
    return json_response({"Volumes": out, "Warnings": []})


async def create_volume(e: Engine, req: Request) -> Response:
    from ..workloads.volumes import create_volume as make

    body = await req.json(required=False) or {}
    if not isinstance(body, dict):
        raise ApiError(400, "invalid volume configuration: expected a JSON object")
    from .container_config import check_string

    check_string("Name", body.get("Name"))
    name = body.get("Name") or os.urandom(32).hex()
    if (body.get("Driver") or "local") != "local":
        raise ApiError(400, f'plugin "{body["Driver"]}" not found: this engine has local volumes only')
    try:
        await asyncio.to_thread(make, name)
    except ValueError as err:
        raise ApiError(400, str(err)) from None
    e.events.emit("volume", "create", name, {"driver": "local"})
    return json_response(_volume_json(name), 201)


async def inspect_volume(e: Engine, req: Request, name: str) -> Response:
    from ..workloads.volumes import list_volumes as names

    if name not in await asyncio.to_thread(names):
        raise ApiError(404, f"get {name}: no such volume")
    return json_response(_volume_json(name))


async def remove_volume(e: Engine, req: Request, name: str) -> Response:
    from ..workloads.volumes import list_volumes as names
    from ..workloads.volumes import remove_volume as rm

    if name not in await asyncio.to_thread(names):
        if req.q_bool("force"):
            return empty(204)
        raise ApiError(404, f"get {name}: no such volume")
    users = _users(e, name)
    if users:
        raise ApiError(409, f"remove {name}: volume is in use - [{', '.join(c.id for c in users)}]")
    await asyncio.to_thread(rm, name)
    e.events.emit("volume", "destroy", name, {"driver": "local"})
    return empty(204)


async def prune_volumes(e: Engine, req: Request) -> Response:
    from ..workloads.volumes import list_volumes as names
    from ..workloads.volumes import remove_volume as rm

    deleted = []
    for n in await asyncio.to_thread(names):
        if not _users(e, n):
            await asyncio.to_thread(rm, n)
            deleted.append(n)
    return json_response({"VolumesDeleted": deleted or None, "SpaceReclaimed": 0})
