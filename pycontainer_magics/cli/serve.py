"""`pycontainer serve`: the Docker Engine API daemon (engine/daemon.py) from a shell.

    pycontainer serve [-H unix:///PATH] [-H tcp://127.0.0.1:2375] [--live-restore] [--log-file PATH]

Then `DOCKER_HOST=unix:///run/pycontainer_magics/docker.sock docker run --rm IMAGE echo hi`.
"""

from __future__ import annotations

import argparse
from typing import Any

COMMANDS = ("serve",)


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("serve", help="serve the Docker Engine API (docker CLI, docker-py) on a unix socket",
                       description="A daemon speaking the Docker Engine API: point the docker CLI or docker-py "
                                   "at it with DOCKER_HOST=unix://SOCKET.")
    p.add_argument("-H", "--host", action="append", default=[], metavar="URL",
                   help="unix:///PATH (default: unix://<run dir>/docker.sock) or tcp://HOST:PORT (loopback unless "
                        "you mean it: there is no TLS); repeatable")
    p.add_argument("--live-restore", action="store_true",
                   help="leave containers running when the daemon stops (the next daemon finds them)")
    p.add_argument("--log-file", metavar="PATH", help="the daemon's log (default: <state dir>/engine/daemon.log)")


def main(ns: argparse.Namespace) -> int:
    from ..engine.core import Options
    from ..engine.daemon import main as serve

    return serve(Options(hosts=ns.host, live_restore=ns.live_restore, log_file=ns.log_file))
