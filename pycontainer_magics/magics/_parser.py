"""What every magic's skin shares: splitting its line, an argparse parser whose errors are IPython
UsageErrors (one line, no traceback, no exit), and streaming a run's output to the notebook."""

from __future__ import annotations

import argparse
import sys
import types
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


def expand(shell: Any, line: str) -> str:
    """IPython's `$name` / `{expr}` expansion of a magic's line, for a magic that opted out of IPython's own
    (`@no_var_expand`): that copies the whole user namespace and parses the line on every call, 0.09 ms of each
    %%container cell, when most lines have nothing to expand. A line that can have something (a `$` or a `{`) is
    expanded exactly as IPython would: against the user namespace and the locals of the frame it names, `stack_depth`
    frames above its run_cell_magic / run_line_magic."""
    if "$" not in line and "{" not in line:
        return line
    from IPython.core.interactiveshell import InteractiveShell

    runners = (InteractiveShell.run_cell_magic.__code__, InteractiveShell.run_line_magic.__code__)
    f: types.FrameType | None = sys._getframe(1)  # (the frame that called this; var_expand's is one below it)
    depth = 0
    while f is not None and f.f_code not in runners:
        f, depth = f.f_back, depth + 1
    if f is None:  # not called through IPython's magic machinery: the user namespace alone
        return str(shell.var_expand(line, depth=10_000))
    # var_expand(line, d) takes the locals of the frame d above its caller: here, `stack_depth` above the runner
    return str(shell.var_expand(line, depth=depth + f.f_locals.get("stack_depth", 2) + 1))


def echo(stream: str, text: str) -> None:
    """An on_output callback: a container's stdout/stderr chunk to the cell's, as it comes."""
    out = sys.stderr if stream == "stderr" else sys.stdout
    out.write(text)
    out.flush()
