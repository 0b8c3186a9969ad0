"""`pycontainer create|start|state|kill|delete|list|spec`: the OCI runtime command set, as runc has it.

    pycontainer spec [--rootless] [--bundle DIR]             write a default config.json
    pycontainer create [--bundle DIR] [--root DIR] ID        set up, stop just before the process executes
    pycontainer start ID                                     let it execute
    pycontainer state ID                                     the runtime-spec state JSON
    pycontainer kill ID [SIGNAL]                             signal PID 1 (default TERM)
    pycontainer delete [--force] ID                          remove it (--force: kill a running one first)
    pycontainer list [--format table|json] [--quiet]         like `runc list`

The container's output goes to stdout.log and stderr.log in its state directory (<root>/<ID>/), or, with
`create --inherit-stdio`, to the caller's stdout and stderr (as runc detached without a terminal: a
caller reading them through pipes then waits until the container ends). The logic is in
oci/lifecycle.py; this is its command-line skin.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .common import fail

COMMANDS = ("create", "start", "state", "kill", "delete", "list", "spec")


def add_parsers(sub: Any) -> None:
    def cmd(name: str, help: str, with_id: bool = True) -> argparse.ArgumentParser:  # noqa: A002
        p: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help)
        p.add_argument("--root", metavar="DIR", help="state directory (default: /run/pycontainer_magics/oci as "
                       "root)")
        if with_id:
            p.add_argument("id", metavar="ID", help="the container id")
        return p

    p = cmd("create", "OCI: create a container from a bundle, its process not yet executed")
    p.add_argument("-b", "--bundle", metavar="DIR", default=".", help="the bundle directory (default: .)")
    p.add_argument("--pid-file", metavar="FILE", help="write PID 1's host pid to FILE")
    p.add_argument("--inherit-stdio", action="store_true",
                   help="the container writes to this stdout/stderr, not to log files in its state directory")
    cmd("start", "OCI: execute the process of a created container")
    cmd("state", "OCI: print the state of a container (runtime-spec JSON)")
    p = cmd("kill", "OCI: send a signal to a container's PID 1")
    p.add_argument("signal", metavar="SIGNAL", nargs="?", default="TERM", help="name or number (default: TERM)")
    p = cmd("delete", "OCI: remove a container's state, cgroup and everything else of it")
    p.add_argument("-f", "--force", action="store_true", help="kill the container first if it is running")
    p = cmd("list", "OCI: list the containers of the state directory", with_id=False)
    p.add_argument("-f", "--format", choices=("table", "json"), default="table")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the ids")
    p = cmd("spec", "OCI: write a default config.json (like `runc spec`)", with_id=False)
    p.add_argument("-b", "--bundle", metavar="DIR", default=".", help="where to write it (default: .)")
    p.add_argument("--rootless", action="store_true", help="a config for an unprivileged user")


def main(ns: argparse.Namespace) -> int:
    from ..oci import lifecycle as oci
    from ..oci.bundle import BundleError

    try:
        return _dispatch(ns, oci)
    except (oci.LifecycleError, BundleError) as e:
        fail(str(e))
    except OSError as e:
        fail(f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}")


def _dispatch(ns: argparse.Namespace, oci: Any) -> int:
    c = ns.subcommand
    if c == "create":
        notes = oci.create(ns.bundle, ns.id, ns.root, inherit_stdio=ns.inherit_stdio)
        for note in notes:
            sys.stderr.write(f"pycontainer: note: {note}\n")
        if ns.pid_file:
            from ..linux.files import atomic_write
            atomic_write(ns.pid_file, str(oci.state(ns.id, ns.root)["pid"]))
    elif c == "start":
        oci.start(ns.id, ns.root)
    elif c == "state":
        print(json.dumps(oci.state(ns.id, ns.root), indent=2))
    elif c == "kill":
        oci.kill(ns.id, ns.signal, ns.root)
    elif c == "delete":
        oci.delete(ns.id, ns.root, force=ns.force)
    elif c == "list":
        states = oci.list_states(ns.root)
        if ns.quiet:
            sys.stdout.write("".join(s["id"] + "\n" for s in states))
        elif ns.format == "json":
            print(json.dumps(states))
        else:
            sys.stdout.write(oci.format_list(states))
    elif c == "spec":
        oci.write_spec(ns.bundle, rootless=ns.rootless)
    return 0
