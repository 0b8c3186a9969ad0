"""`pycontainer` image commands (pull, images, build, ...): none yet; they come here, one group."""

from __future__ import annotations

import argparse
from typing import Any

COMMANDS: tuple[str, ...] = ()


def add_parsers(sub: Any) -> None:
    """Adds this group's subcommands to the `pycontainer` parser (none yet)."""


def main(ns: argparse.Namespace) -> int:
    raise AssertionError(f"not an image command: {ns.subcommand}")  # pragma: no cover
