"""What every command group shares: Docker's exit codes and the one-line error."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

EXIT_USAGE = 125  # Docker: error of the daemon/CLI itself (bad options, setup failed)
EXIT_OOM = 137  # 128 + SIGKILL
EXIT_INTERRUPTED = 130  # 128 + SIGINT


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        fail(message)


def fail(message: str) -> NoReturn:
    sys.stderr.write(f"pycontainer: error: {message}\n")
    raise SystemExit(EXIT_USAGE)
