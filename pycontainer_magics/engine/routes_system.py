"""`/_ping`, `/version`, `/info`, `/events`: what a client asks first, answered as dockerd answers, with
this project's name."""

from __future__ import annotations

import asyncio
import os
import platform
import socket
import time
from typing import TYPE_CHECKING, Any

from .. import __version__
from .events import matches
from .http import Request, Response, json_response
from .params import time_param
from .router import API_VERSION, MIN_API_VERSION

if TYPE_CHECKING:
    from .core import Engine

NAME = "pycontainer_magics Engine"


def routes(e: Engine) -> list[tuple[str, str, Any]]:
    return [
        ("GET", "/_ping", lambda r: ping(e, r)),
        ("HEAD", "/_ping", lambda r: ping(e, r)),
        ("GET", "/version", lambda r: version(e, r)),
        ("GET", "/info", lambda r: info(e, r)),
        ("GET", "/events", lambda r: events(e, r)),
    ]


def common_headers() -> dict[str, str]:
    return {"Api-Version": API_VERSION, "Docker-Experimental": "false", "Ostype": "linux",
            "Server": f"Docker/{__version__} (linux; {NAME})"}


async def ping(e: Engine, req: Request) -> Response:
    return Response(200, b"OK", "text/plain; charset=utf-8",
                    {"Builder-Version": "1", "Cache-Control": "no-cache, no-store, must-revalidate",
                     "Pragma": "no-cache"})


def _arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


async def version(e: Engine, req: Request) -> Response:
    details = {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "GitCommit": "", "GoVersion":
               f"python{platform.python_version()}", "Os": "linux", "Arch": _arch(),
               "KernelVersion": platform.release(), "BuildTime": "", "Experimental": "false"}
    return json_response({
        "Platform": {"Name": NAME},
        "Components": [{"Name": "Engine", "Version": __version__, "Details": details}],
        "Version": __version__, "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "GitCommit": "",
        "GoVersion": details["GoVersion"], "Os": "linux", "Arch": _arch(), "KernelVersion": platform.release(),
        "BuildTime": "",
    })


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


async def info(e: Engine, req: Request) -> Response:
    from ..linux.cgroups import detect_layout

    cs = e.containers.all()
    running = sum(1 for c in cs if c.status == "running")
    paused = sum(1 for c in cs if c.status == "paused")
    try:
        n_images = len(await asyncio.to_thread(e.images.store.images))
    except OSError:
        n_images = 0
    layout = detect_layout()
    mem_total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return json_response({
        "ID": e.daemon_id, "Containers": len(cs), "ContainersRunning": running, "ContainersPaused": paused,
        "ContainersStopped": len(cs) - running - paused, "Images": n_images, "Driver": "overlay",
        "DriverStatus": [["Backing Filesystem", "overlayfs"]],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "none"], "Authorization": None,
                    "Log": ["json-file"]},
        "MemoryLimit": True, "SwapLimit": True, "KernelMemory": False, "KernelMemoryTCP": False,
        "CpuCfsPeriod": True, "CpuCfsQuota": True, "CPUShares": True, "CPUSet": True, "PidsLimit": True,
        "IPv4Forwarding": True, "BridgeNfIptables": False, "BridgeNfIp6tables": False, "Debug": False,
        "NFd": len(os.listdir("/proc/self/fd")), "OomKillDisable": False, "NGoroutines": len(asyncio.all_tasks()),
        "SystemTime": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs", "CgroupVersion": "2" if layout == "unified" else "1",
        "NEventsListener": len(e.events.subscribers), "KernelVersion": platform.release(),
        "OperatingSystem": _os_name(), "OSVersion": "", "OSType": "linux", "Architecture": platform.machine(),
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"AllowNondistributableArtifactsCIDRs": [], "AllowNondistributableArtifactsHostnames": [],
                           "InsecureRegistryCIDRs": ["127.0.0.0/8"], "IndexConfigs": {}, "Mirrors": []},
        "NCPU": os.cpu_count() or 1, "MemTotal": mem_total, "GenericResources": None,
        "DockerRootDir": e.data_root, "HttpProxy": "", "HttpsProxy": "", "NoProxy": "", "Name": socket.gethostname(),
        "Labels": [], "ExperimentalBuild": False, "ServerVersion": __version__,
        "Runtimes": {"pycontainer": {"path": "pycontainer"}}, "DefaultRuntime": "pycontainer",
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                  "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": e.live_restore, "Isolation": "", "InitBinary": "",
        "ContainerdCommit": {"ID": "", "Expected": ""}, "RuncCommit": {"ID": "", "Expected": ""},
        "InitCommit": {"ID": "", "Expected": ""},
        "SecurityOptions": ["name=seccomp,profile=default", "name=cgroupns"], "Warnings": [],
    })


async def events(e: Engine, req: Request) -> Response | None:
    """Past events from `since`, then new ones as they happen, until `until` (or the client leaves)."""
    since = time_param(req.q("since"))
    until = time_param(req.q("until"))
    filters = req.q_json("filters") or {}
    if isinstance(filters, dict):
        filters = {k: (list(v) if isinstance(v, list | dict) else [v]) for k, v in filters.items()}
    q = e.events.subscribe()
    past = list(e.events.recent) if since is not None else []  # taken with the subscription: no gap, no repeat
    try:
        out = await req.stream("application/json")
        if since is not None:
            for ev in past:
                if ev["timeNano"] / 1e9 >= since and (until is None or ev["timeNano"] / 1e9 <= until) \
                        and matches(ev, filters):
                    await out.json(ev)
        while until is None or time.time() < until:
            timeout = None if until is None else max(0.0, until - time.time())
            try:
                ev = await asyncio.wait_for(q.get(), timeout)
            except TimeoutError:
                break
            if matches(ev, filters):
                await out.json(ev)
        await out.end()
    except ConnectionError:
        pass
    finally:
        e.events.unsubscribe(q)
    return None
