"""`pycontainer`: the same containers from a terminal.

    pycontainer run [options] [--] CMD [ARG...]   run a command; exits with its exit code (run.py)
    pycontainer run [options] IMAGE -- [CMD...]   the same in an image of the store (pulled on first use)
    pycontainer image ls|pull|push|build|load|save|tag|rm|inspect|history   the image store (image.py)
    pycontainer bundle DIR [options] -- CMD       write an OCI runtime bundle for a command (run.py)
    pycontainer [--root DIR --log F --log-format json] create|start|state|kill|delete|exec|ps|events|update|
                pause|resume|features|list|spec ...   runc's command line, as engines call it (oci.py)
    pycontainer kube generate|validate|play|down  Kubernetes YAML: export, check, run here (kube.py)
    pycontainer prune                             remove what a killed kernel left behind (system.py)
    pycontainer install-kernel [--limited ...]    the Jupyter kernel "Python 3 (container lab)" (kernel.py)
    pycontainer serve [-H unix:///PATH]           the Docker Engine API daemon (serve.py)
    pycontainer container ps|logs|exec|stop       the engine daemon's containers (containers.py)

One module per command group, each with `COMMANDS`, `add_parsers(sub)` and `main(ns) -> int`; this
module only wires them together. Exit codes follow Docker: the command's own code, 137 when OOM-killed,
125 when the container could not be set up or the options are wrong (common.py).

May import everything below it; the command modules import what a command needs inside the command, so
`pycontainer --help` and the OCI verbs engines call often stay lean. No IPython, pandas, matplotlib or
ipywidgets on any of its paths (tests/test_layering.py).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing itself is not imported: the command line's start-up

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from types import ModuleType


def groups() -> tuple[ModuleType, ...]:
    """The command groups, in `--help` order (imported only when argparse is: not on the OCI verbs' path)."""
    from . import containers, image, kernel, kube, oci, run, serve, system
    return (run, oci, image, kube, system, kernel, serve, containers)


def build_parser() -> argparse.ArgumentParser:
    from .common import Parser

    parser = Parser(prog="pycontainer", description="Run commands in fresh Linux containers (namespaces, "
                    "cgroup limits, an overlay root filesystem).")
    sub = parser.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)
    for group in groups():
        group.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["run"]:  # through a running daemon, before argparse and the runtime load (run_daemon.py)
        from .run_daemon import main as run_on_daemon
        through_daemon = run_on_daemon(args[1:])
        if through_daemon is not None:
            if argv is None:  # the program itself: its output flushed, no interpreter teardown (~3 ms of each run)
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(through_daemon)
            return through_daemon
    from . import oci
    if oci.is_runc_call(args):  # what engines call, often: runc's own command line, before argparse loads
        return oci.runc_main(args)
    ns = build_parser().parse_args(args)
    for group in groups():
        if ns.subcommand in group.COMMANDS:
            code: int = group.main(ns)
            return code
    raise AssertionError(f"no command group for {ns.subcommand}")  # pragma: no cover - argparse refuses it


__all__ = ["build_parser", "groups", "main"]
