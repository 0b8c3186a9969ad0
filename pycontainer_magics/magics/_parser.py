"""An argparse parser whose errors are IPython UsageErrors (one line, no traceback, no exit)."""

from __future__ import annotations

import argparse
from typing import Any

from IPython.core.error import UsageError


class UsageParser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise UsageError(f"{self.prog}: {message}")
