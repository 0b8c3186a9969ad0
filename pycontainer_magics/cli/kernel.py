"""`pycontainer install-kernel`: the subcommand's parser and action (the kernelspec is kernel/'s)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .common import EXIT_USAGE

COMMANDS = ("install-kernel",)


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "install-kernel", help="install the Jupyter kernel \"Python 3 (container lab)\" (extension preloaded)",
        description="Install a kernelspec that starts ipykernel with pycontainer_magics already loaded. With "
                    "--limited (or any of --memory/--cpus/--pids) the whole kernel runs in a cgroup with those "
                    "limits, started by the `pycontainer-cgroup` kernel provisioner.")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="install for this user (~/.local/share/jupyter)")
    where.add_argument("--prefix", metavar="P", help="install under P/share/jupyter/kernels (e.g. a venv)")
    p.add_argument("--name", metavar="N", help="kernelspec name (default pycontainer-lab[-LIMITS])")
    p.add_argument("--display-name", metavar="TEXT", help="name shown in the launcher")
    p.add_argument("--limited", action="store_true", help="run the whole kernel in a limited cgroup")
    p.add_argument("--memory", metavar="SIZE", help="the kernel's memory limit, like 2G (implies --limited)")
    p.add_argument("--cpus", metavar="N", help="the kernel's CPU quota, like 1 or 0.5 (implies --limited)")
    p.add_argument("--pids", metavar="N", help="the kernel's pids limit, at least 16 (implies --limited)")
    p.add_argument("--hostname", metavar="NAME", help="the limited kernel's own hostname (a UTS namespace)")


def main(ns: argparse.Namespace) -> int:
    """Install; print the directory. Errors: one line on stderr, exit 125 (as the other subcommands)."""
    from ..kernel.kernelspec import install_kernel, parse_limits
    from ..runtime.spec import SpecError

    limited = ns.limited or any(v is not None for v in (ns.memory, ns.cpus, ns.pids))
    try:
        if ns.hostname is not None and not limited:
            raise SpecError("--hostname is for the limited kernel: add --memory, --cpus or --pids")
        limits = parse_limits(ns.memory, ns.cpus, ns.pids, ns.hostname) if limited else None
        if limits is not None and limits.memory is None and limits.cpus is None and limits.pids is None:
            raise SpecError("--limited needs at least one limit: --memory 2G, --cpus 1 or --pids 200")
        path = install_kernel(limits, user=ns.user, prefix=ns.prefix, name=ns.name,
                              display_name=ns.display_name)
    except ImportError as e:  # a core install: the kernel is the notebook stack's
        sys.stderr.write(f"pycontainer: error: install-kernel needs the notebook stack ({e.name or e} is missing): "
                         "pip install 'pycontainer_magics[notebook]'\n")
        return EXIT_USAGE
    except (SpecError, OSError, ValueError) as e:
        sys.stderr.write(f"pycontainer: error: {e}\n")
        return EXIT_USAGE
    print(path)
    return 0
