"""`pycontainer container ps|logs|exec|stop` (as `docker container ...`): the engine daemon's containers
from a shell (`pycontainer serve`), the same ones the docker CLI and `%container ps` show. (Top-level `ps`
and `exec` are runc's verbs, oci.py.)

    pycontainer container ps [-a]
    pycontainer container logs [-f] NAME
    pycontainer container exec NAME -- CMD [ARG...]      (exits with CMD's exit code)
    pycontainer container stop [-t SECONDS] NAME...
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .common import fail

COMMANDS = ("container",)


def add_parsers(top: Any) -> None:
    group = top.add_parser("container", help="the engine daemon's containers: ps, logs, exec, stop")
    sub = group.add_subparsers(dest="verb", metavar="VERB", required=True)
    p = sub.add_parser("ps", aliases=["ls"], help="list the engine daemon's containers (pycontainer serve)")
    p.add_argument("-a", "--all", action="store_true", help="also the ones that are not running")
    p = sub.add_parser("logs", help="a daemon container's output")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("name")
    p = sub.add_parser("exec", help="run a command in a running daemon container")
    p.add_argument("name")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p = sub.add_parser("stop", help="stop daemon containers (SIGTERM, SIGKILL after -t seconds)")
    p.add_argument("-t", "--time", type=int, default=None)
    p.add_argument("names", nargs="+")


def _client() -> Any:
    from ..engine.client import connect

    c = connect()
    if c is None:
        fail("no engine daemon is running: start one with `pycontainer serve`")
    return c


def _out(stream: str, data: bytes) -> None:
    f = sys.stderr.buffer if stream == "stderr" else sys.stdout.buffer
    f.write(data)
    f.flush()


def main(ns: argparse.Namespace) -> int:
    from ..engine.client import EngineError

    c = _client()
    try:
        if ns.verb in ("ps", "ls"):
            rows = c.get("/containers/json", all=ns.all)
            print(f"{'CONTAINER ID':<14}{'IMAGE':<22}{'COMMAND':<24}{'STATUS':<26}NAMES")
            for r in rows:
                cmd = r["Command"] if len(r["Command"]) <= 20 else r["Command"][:19] + "…"
                print(f"{r['Id'][:12]:<14}{r['Image'][:20]:<22}{cmd!r:<24}{r['Status']:<26}{r['Names'][0][1:]}")
            return 0
        if ns.verb == "logs":
            for stream, data in c.logs(ns.name, follow=ns.follow):
                _out(stream, data)
            return 0
        if ns.verb == "exec":
            cmd = ns.command[1:] if ns.command[:1] == ["--"] else ns.command
            if not cmd:
                fail("usage: pycontainer container exec NAME -- CMD [ARG...]")
            frames, eid = c.exec(ns.name, cmd)
            for stream, data in frames:
                _out(stream, data)
            return int(c.exec_exit_code(eid))
        for name in ns.names:  # stop
            c.post(f"/containers/{name}/stop", t=ns.time)
            print(name)
        return 0
    except EngineError as e:
        fail(str(e))
