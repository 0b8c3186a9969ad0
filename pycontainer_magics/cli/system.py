"""`pycontainer prune`: remove what a killed kernel left behind (cgroups, pods, network leftovers)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .common import fail

COMMANDS = ("prune",)


def add_parsers(sub: Any) -> None:
    sub.add_parser("prune", help="remove what a killed kernel left behind (cgroups, mounts, state)")


def main(ns: argparse.Namespace) -> int:
    from ..kube.records import prune_records
    from ..workloads.prune import prune

    try:
        removed = prune_records() + prune()  # a killed process's kube plays: their records and files
    except OSError as e:
        fail(str(e))
    for item in removed:
        print(item)
    sys.stderr.write(f"pycontainer: removed {len(removed)} leftover(s)\n")
    return 0
