"""The daemon: one asyncio event loop serving the Engine API on a unix socket (and TCP when asked).

    pycontainer serve [-H unix:///run/pycontainer_magics/docker.sock] [-H tcp://127.0.0.1:2375]
                      [--live-restore] [--log-file PATH]

On SIGTERM or SIGINT the daemon stops accepting requests and, as dockerd does by default, stops its
running containers (their stop signal, SIGKILL after their stop timeout) before it exits. With
--live-restore it leaves them running, as `dockerd --live-restore`: each has a supervisor of its own, and
the next daemon finds them. A daemon killed with SIGKILL leaves them running either way; the next daemon
reads their records and watches them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import urllib.parse
from typing import Any

from ..paths import run_dir
from . import (
    routes_archive,
    routes_containers,
    routes_exec,
    routes_images,
    routes_inspection,
    routes_networks,
    routes_system,
)
from .core import Engine, Options, daemon_log_path, default_host, pid_file
from .http import Server

log = logging.getLogger("pycontainer.engine")


def _unix_path(host: str) -> str | None:
    return host[len("unix://"):] if host.startswith("unix://") else None


def check_hosts(hosts: list[str]) -> str | None:
    """What is wrong with the -H addresses given (one line), before anything is started or made; None: nothing.
    (The default, in the run directory, is made.)"""
    for h in hosts:
        path = _unix_path(h)
        if path is not None:
            if not os.path.isabs(path):
                return f"-H {h}: the socket's path must be absolute, like unix:///run/pyc/docker.sock"
            parent = os.path.dirname(path)
            if not os.path.isdir(parent):
                return f"-H {h}: no such directory {parent}"
        elif h.startswith("tcp://"):
            try:
                urllib.parse.urlsplit(h).port  # noqa: B018 - validates the port
            except ValueError as e:
                return f"-H {h}: {e}"
        else:
            return f"unsupported host {h!r}: unix:///path or tcp://HOST:PORT"
    return None


def _prepare_socket(path: str) -> None:
    """A socket file left by a killed daemon is removed; one a live daemon answers on is an error."""
    if os.path.exists(path):
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(path)
            except OSError:
                os.unlink(path)
            else:
                raise SystemExit(f"pycontainer serve: a daemon is already listening on {path}")
    os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)  # the default's: the run dir


def _say(line: str) -> None:
    """One line on stderr, as dockerd's "API listen on ..."; a reader that went away (a notebook that started
    this daemon and closed the pipe) is no error."""
    with contextlib.suppress(OSError):
        os.write(2, (line + "\n").encode())


async def serve(options: Options, ready: Any = None) -> None:
    engine = Engine(options)
    for module in (routes_system, routes_containers, routes_exec, routes_images, routes_inspection,
                   routes_networks, routes_archive):
        for method, pattern, handler in module.routes(engine):
            engine.router.add(method, pattern, handler)
    from ..workloads.daemon_store import empty_trash
    from ..workloads.supervisor import prune_spares

    prune_spares()  # what spares killed with a previous daemon left
    await asyncio.to_thread(empty_trash)  # and the files of containers it removed and had no time to delete
    await asyncio.to_thread(engine.launcher.start)
    engine.containers.load()
    server = Server(engine.router.dispatch, routes_system.common_headers, engine.access)
    hosts = options.hosts or [default_host()]
    sockets = []
    for h in hosts:
        path = _unix_path(h)
        if path is not None:
            _prepare_socket(path)
            await server.listen_unix(path)
            os.chmod(path, options.socket_mode)
            sockets.append(path)
        elif h.startswith("tcp://"):
            u = urllib.parse.urlsplit(h)
            host, port = u.hostname or "127.0.0.1", u.port or 2375
            if host not in ("127.0.0.1", "localhost", "::1"):
                log.warning("listening on tcp://%s:%d without TLS: anyone who can reach it is root here", host, port)
                _say(f"pycontainer serve: WARNING: tcp://{host}:{port} has no TLS and no authentication: anyone "
                     "who can reach it is root on this machine")
            await server.listen_tcp(host, port)
        else:
            raise SystemExit(f"pycontainer serve: unsupported host {h!r}: unix:///path or tcp://HOST:PORT")
    with open(pid_file(), "w") as f:
        f.write(f"{os.getpid()}\n")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("API listening on %s (live-restore %s)", ", ".join(hosts), "on" if options.live_restore else "off")
    _say(f"pycontainer serve: API listening on {', '.join(hosts)}; clients: export DOCKER_HOST={hosts[0]}")
    if ready is not None:
        ready()
    await stop.wait()
    log.info("shutting down")
    await server.close()
    if not options.live_restore:
        await engine.containers.stop_all()
    engine.launcher.stop()
    for path in sockets:
        with contextlib.suppress(OSError):
            os.unlink(path)
    with contextlib.suppress(OSError):
        os.unlink(pid_file())
    log.info("stopped")


def setup_logging(path: str | None) -> None:
    target = path or daemon_log_path()
    os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
    handler = logging.FileHandler(target)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger("pycontainer")
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def main(options: Options) -> int:
    if os.geteuid() != 0:
        sys.stderr.write("pycontainer serve: needs root (it creates namespaces, cgroups and mounts)\n")
        return 1
    problem = check_hosts(options.hosts)
    if problem is not None:
        sys.stderr.write(f"pycontainer serve: {problem}\n")
        return 1
    os.makedirs(run_dir(), mode=0o755, exist_ok=True)
    setup_logging(options.log_file)
    asyncio.run(serve(options))
    return 0
