"""The daemon's state, as its handlers reach it: containers, images, events, execs, the launcher, the
router and the access log; and where the daemon keeps its files."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from ..paths import run_dir, state_dir
from ..workloads.launcher import Launcher
from .backend import Containers
from .events import Events
from .http import Request
from .images import Images
from .router import Router

log = logging.getLogger("pycontainer.engine")


def default_socket() -> str:
    return os.path.join(run_dir(), "docker.sock")


def default_host() -> str:
    return "unix://" + default_socket()


def engine_dir() -> str:
    return os.path.join(state_dir(), "engine")


def pid_file() -> str:
    return os.path.join(run_dir(), "engine.pid")


def access_log_path() -> str:
    """One JSON object per request: time, method, path, status, ms (a notebook shows it as a DataFrame)."""
    return os.path.join(engine_dir(), "api.log")


def daemon_log_path() -> str:
    return os.path.join(engine_dir(), "daemon.log")


@dataclass
class Options:
    hosts: list[str] = field(default_factory=list)
    live_restore: bool = False
    log_file: str | None = None
    socket_mode: int = 0o660


class Engine:
    """Everything the handlers reach: containers, images, events, the launcher."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.live_restore = options.live_restore
        self.data_root = state_dir()
        self.daemon_id = hashlib.sha256(f"{socket.gethostname()}:{self.data_root}".encode()).hexdigest()[:36].upper()
        self.events = Events()
        self.launcher = Launcher()
        self.containers = Containers(self.events, self.launcher)
        self.images = Images()
        self.router = Router()
        self.execs: dict[str, Any] = {}  # exec id -> routes_exec.Exec (dockerd keeps them in memory too)
        self._access: Any = None

    def execs_of(self, cid: str) -> list[str]:
        return [x.id for x in self.execs.values() if x.container_id == cid]

    def access(self, req: Request) -> None:
        if self._access is None:
            os.makedirs(engine_dir(), mode=0o700, exist_ok=True)
            self._access = open(access_log_path(), "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        ms = (time.monotonic() - req.t0) * 1000
        self._access.write(json.dumps({"time": req.started, "method": req.method, "path": req.path,
                                       "query": urllib.parse.urlsplit(req.target).query, "status": req.status,
                                       "ms": round(ms, 3), "agent": req.headers.get("user-agent", "")}) + "\n")
        log.debug("%s %s %s %.1f ms", req.method, req.target, req.status, ms)


