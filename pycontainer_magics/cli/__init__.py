"""`pycontainer`: the same containers from a terminal.

    pycontainer run [options] [--] CMD [ARG...]   run a command; exits with its exit code (run.py)
    pycontainer bundle DIR [options] -- CMD       write an OCI runtime bundle for a command (run.py)
    pycontainer create|start|state|kill|delete|list|spec   the OCI runtime command set (oci.py)
    pycontainer kube generate|validate|play|down  Kubernetes YAML: export, check, run here (kube.py)
    pycontainer prune                             remove what a killed kernel left behind (system.py)
    pycontainer install-kernel [--limited ...]    the Jupyter kernel "Python 3 (container lab)" (kernel.py)
    pycontainer serve [-H unix:///PATH]           the Docker Engine API daemon (serve.py)

One module per command group, each with `COMMANDS`, `add_parsers(sub)` and `main(ns) -> int`; this
module only wires them together. Exit codes follow Docker: the command's own code, 137 when OOM-killed,
125 when the container could not be set up or the options are wrong (common.py).

May import everything below it; the command modules import what a command needs inside the command, so
`pycontainer --help` and the OCI verbs engines call often stay lean. No IPython, pandas, matplotlib or
ipywidgets on any of its paths (tests/test_layering.py).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from . import image, kernel, kube, oci, run, serve, system
from .common import Parser

GROUPS = (run, oci, image, kube, system, kernel, serve)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="pycontainer", description="Run commands in fresh Linux containers (namespaces, "
                    "cgroup limits, an overlay root filesystem).")
    sub = parser.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)
    for group in GROUPS:
        group.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    for group in GROUPS:
        if ns.subcommand in group.COMMANDS:
            code: int = group.main(ns)
            return code
    raise AssertionError(f"no command group for {ns.subcommand}")  # pragma: no cover - argparse refuses it


__all__ = ["build_parser", "main"]
