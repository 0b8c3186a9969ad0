"""What a running (or stopped) container is doing and holds: `docker stats` (from its cgroup), `top` (its
cgroup's processes), `diff` (its writable layer against its image), `commit` (that layer as a new image
layer), and `pause|unpause|update|rename`."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..workloads import daemon_store as store
from ..workloads.json_log import rfc3339_nano
from .http import ApiError, Request, Response, empty, json_response

if TYPE_CHECKING:
    from .backend import Container
    from .core import Engine

STATS_INTERVAL = 1.0  # seconds between the lines of a stats stream, as dockerd's collector
ONE_SHOT_GAP = 0.5  # `stats?stream=0`: two readings this far apart, so the CPU share means something


def routes(e: Engine) -> list[tuple[str, str, Any]]:
    return [
        ("GET", "/containers/{id}/stats", lambda r, id: stats(e, r, id)),
        ("GET", "/containers/{id}/top", lambda r, id: top(e, r, id)),
        ("GET", "/containers/{id}/changes", lambda r, id: changes(e, r, id)),
        ("POST", "/containers/{id}/pause", lambda r, id: pause(e, r, id)),
        ("POST", "/containers/{id}/unpause", lambda r, id: unpause(e, r, id)),
        ("POST", "/containers/{id}/update", lambda r, id: update(e, r, id)),
        ("POST", "/containers/{id}/rename", lambda r, id: rename(e, r, id)),
        ("POST", "/commit", lambda r: commit(e, r)),
    ]


# -- stats -------------------------------------------------------------------------------------------

def _system_cpu_ns() -> int:
    """All CPUs' time since boot (the first line of /proc/stat), as dockerd's system_cpu_usage."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:8]
    return sum(int(x) for x in fields) * (10**9 // os.sysconf("SC_CLK_TCK"))


def _net(pid: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.readlines()[2:]
    except OSError:
        return out
    for line in lines:
        name, _, rest = line.partition(":")
        name = name.strip()
        if name == "lo":
            continue
        v = [int(x) for x in rest.split()]
        out[name] = {"rx_bytes": v[0], "rx_packets": v[1], "rx_errors": v[2], "rx_dropped": v[3],
                     "tx_bytes": v[8], "tx_packets": v[9], "tx_errors": v[10], "tx_dropped": v[11]}
    return out


def reading(e: Engine, c: Container) -> dict[str, Any]:
    """One stats reading (zeros for a container that does not run, as dockerd's)."""
    cg = e.containers.cgroup_of(c)
    now = rfc3339_nano()
    base: dict[str, Any] = {"read": now, "name": "/" + c.name, "id": c.id, "num_procs": 0, "storage_stats": {},
                            "blkio_stats": {k: None for k in (
                                "io_service_bytes_recursive", "io_serviced_recursive", "io_queue_recursive",
                                "io_service_time_recursive", "io_wait_time_recursive", "io_merged_recursive",
                                "io_time_recursive", "sectors_recursive")}}
    if cg is None:
        base.update(pids_stats={}, cpu_stats={"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0,
                                                            "usage_in_usermode": 0}, "throttling_data": {}},
                    memory_stats={})
        return base
    st = cg.stats()
    mem_total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    base.update(
        pids_stats={"current": st.pids_current, **({"limit": st.pids_limit} if st.pids_limit else {})},
        cpu_stats={"cpu_usage": {"total_usage": st.cpu_usage_ns, "usage_in_kernelmode": st.cpu_system_ns or 0,
                                 "usage_in_usermode": st.cpu_user_ns or 0},
                   "system_cpu_usage": _system_cpu_ns(), "online_cpus": os.cpu_count() or 1,
                   "throttling_data": {"periods": st.nr_periods or 0, "throttled_periods": st.nr_throttled or 0,
                                       "throttled_time": st.throttled_ns or 0}},
        memory_stats={"usage": st.memory_current, "max_usage": st.memory_peak or 0, "stats": {},
                      "failcnt": st.oom_count, "limit": st.memory_limit or mem_total},
        networks=_net(int(c.state.get("Pid") or 0)),
    )
    return base


async def stats(e: Engine, req: Request, ref: str) -> Response | None:
    c = e.containers.get(ref)
    stream = req.q_bool("stream", True)
    one_shot = req.q_bool("one-shot")
    first = await asyncio.to_thread(reading, e, c)
    empty_pre = {"cpu_usage": {"total_usage": 0}, "throttling_data": {}}
    if not stream:
        if one_shot or not c.running:
            return json_response({**first, "preread": "0001-01-01T00:00:00Z", "precpu_stats": empty_pre})
        await asyncio.sleep(ONE_SHOT_GAP)
        second = await asyncio.to_thread(reading, e, c)
        return json_response({**second, "preread": first["read"], "precpu_stats": first["cpu_stats"]})
    out = await req.stream("application/json")
    prev: dict[str, Any] | None = None
    cur = first
    try:
        while True:
            await out.json({**cur, "preread": prev["read"] if prev else "0001-01-01T00:00:00Z",
                            "precpu_stats": prev["cpu_stats"] if prev else empty_pre})
            if not c.running:
                break
            await asyncio.sleep(STATS_INTERVAL)
            prev, cur = cur, await asyncio.to_thread(reading, e, c)
        await out.end()
    except ConnectionError:
        pass
    return None


# -- top ---------------------------------------------------------------------------------------------

async def top(e: Engine, req: Request, ref: str) -> Response:
    c = e.containers.get(ref)
    if not c.running:
        raise ApiError(409, f"Container {c.id} is not running")
    cg = e.containers.cgroup_of(c)
    pids = set(cg.procs()) if cg is not None else {int(c.state["Pid"])}
    args = (req.q("ps_args") or "-ef").split()
    r = await asyncio.to_thread(subprocess.run, ["ps", *args], capture_output=True, text=True,
                                env={**os.environ, "COLUMNS": "65535"})  # no terminal: no truncated CMD
    if r.returncode != 0:
        raise ApiError(500, f"ps: {r.stderr.strip() or 'failed'}")
    lines = r.stdout.splitlines()
    titles = lines[0].split()
    if "PID" not in titles:
        raise ApiError(500, "Couldn't find PID field in ps output")
    col = titles.index("PID")
    procs = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in pids:
            procs.append(fields)
    return json_response({"Titles": titles, "Processes": procs})


# -- the writable layer: diff, commit -----------------------------------------------------------------

def _layers(e: Engine, c: Container) -> tuple[str, str]:
    """(the container's upper directory, its image's layers as overlayfs's lowerdir)."""
    img = e.images.get(c.record["Image"])
    return os.path.join(store.layer_dir(c.id), "upper"), ":".join(img.lower_dirs())


async def changes(e: Engine, req: Request, ref: str) -> Response:
    from ..runtime.rootfs import layer_diff

    c = e.containers.get(ref)

    def work() -> list[dict[str, Any]]:
        upper, lower = _layers(e, c)
        if not os.path.isdir(upper):
            return []
        kinds = {"C": 0, "A": 1, "D": 2}
        return [{"Path": d.path, "Kind": kinds[d.kind]} for d in layer_diff(upper, lower)]

    return json_response(await asyncio.to_thread(work) or None)


async def commit(e: Engine, req: Request) -> Response:
    """`docker commit`: the writable layer, packed, on top of the container's image, with its config."""
    from ..images import parse_reference
    from ..images.dockerfile import DockerfileError, InvalidChange, apply_changes, parse_changes
    from ..images.errors import ImageError
    from ..images.image import image_config
    from ..images.unpack import pack_dir

    c = e.containers.get(req.q("container") or "")
    body = await req.json(required=False) or {}
    repo = req.q("repo") or ""
    ref = f"{repo}:{req.q('tag') or 'latest'}" if repo else None
    if ref:
        try:
            parse_reference(ref)
        except ImageError as err:
            raise ApiError(400, str(err)) from None
    cfg = {k: v for k, v in c.record["Config"].items() if k in ("Env", "Cmd", "Entrypoint", "WorkingDir", "User",
                                                                  "Labels", "ExposedPorts", "StopSignal", "Volumes")}
    cfg.update({k: v for k, v in body.items() if v})
    config = image_config({"config": cfg})
    if "changes" in req.query:  # `--change 'CMD ["x"]'`: Dockerfile instructions over that config, as dockerd's
        try:
            config = apply_changes(config, parse_changes(req.query["changes"], config.env_dict()))
        except (DockerfileError, InvalidChange) as err:
            raise ApiError(400, str(err)) from None
    pause = req.q_bool("pause", True) and c.status == "running"
    if pause:
        await e.containers.pause(c)
    try:
        def work() -> Any:
            upper, _ = _layers(e, c)
            base = e.images.get(c.record["Image"])
            buf = io.BytesIO()
            if os.path.isdir(upper):
                pack_dir(upper, buf)
            else:
                os.makedirs(upper, exist_ok=True)
                pack_dir(upper, buf)
            created_by = " ".join([c.record.get("Path") or "", *(c.record.get("Args") or [])]).strip()
            if base.id == "host":  # over this machine's /: an image built FROM host, as %%dockerfile makes them
                from ..images.image import HOST_BASE_LABEL
                labels = {**config.labels, HOST_BASE_LABEL: "host"}
                return e.images.store.derive_image(None, buf.getvalue(), replace(config, labels=labels), created_by,
                                                   ref=ref)
            return e.images.store.derive_image(base, buf.getvalue(), config, created_by, ref=ref)

        img = await asyncio.to_thread(work)
    finally:
        if pause:
            await e.containers.unpause(c)
    e.events.emit("container", "commit", c.id, e.containers.attrs(c, comment=req.q("comment") or ""))
    return json_response({"Id": img.id}, 201)


# -- pause, unpause, update, rename -------------------------------------------------------------------

async def pause(e: Engine, req: Request, ref: str) -> Response:
    await e.containers.pause(e.containers.get(ref))
    return empty(204)


async def unpause(e: Engine, req: Request, ref: str) -> Response:
    await e.containers.unpause(e.containers.get(ref))
    return empty(204)


async def update(e: Engine, req: Request, ref: str) -> Response:
    c = e.containers.get(ref)
    body = await req.json()
    return json_response({"Warnings": await e.containers.update(c, body) or None})


async def rename(e: Engine, req: Request, ref: str) -> Response:
    c = e.containers.get(ref)
    await e.containers.rename(c, req.q("name") or "")
    return empty(204)


__all__ = ["routes", "time"]
