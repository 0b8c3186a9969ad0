"""What every magic's skin shares: splitting its line, an argparse parser whose errors are IPython
UsageErrors (one line, no traceback, no exit), and streaming a run's output to the notebook."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from IPython.core.error import UsageError
from IPython.utils.process import arg_split  # type: ignore[attr-defined]


class UsageParser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise UsageError(f"{self.prog}: {message}")


def split_line(line: str) -> list[str]:
    """A magic's line as argv, with POSIX quoting (like %%script): `-- sh -c 'echo hi'` passes `echo hi`."""
    try:
        return arg_split(line, posix=True, strict=True)
    except ValueError as e:  # unbalanced quotes
        raise UsageError(f"cannot split the arguments: {e}") from None


def echo(stream: str, text: str) -> None:
    """An on_output callback: a container's stdout/stderr chunk to the cell's, as it comes."""
    out = sys.stderr if stream == "stderr" else sys.stdout
    out.write(text)
    out.flush()
