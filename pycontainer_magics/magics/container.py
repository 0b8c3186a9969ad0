"""`%%container`: run a cell in new namespaces, under cgroup limits, on an overlay root filesystem.

A thin skin: parse the options (the shared table in `args.py`), build the spec with
`runtime.parse.build_spec`, call `runtime.run`, and hand the result to the display layer.
"""

from __future__ import annotations

import sys
from typing import Any

from IPython.core import magic_arguments
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.utils.process import arg_split

from . import args as _args


def _with_options(func: Any) -> Any:
    """Apply the shared option table as magic_arguments decorators (in table order)."""
    for o in reversed(_args.options_for("magic")):
        func = magic_arguments.argument(*o.flags, **o.kwargs)(func)
    return magic_arguments.magic_arguments()(func)


def _echo(stream: str, text: str) -> None:
    """on_output: write a chunk of the container's output where the cell's output goes (looked up at
    call time: ipykernel and capture tools replace sys.stdout/sys.stderr)."""
    out = sys.stderr if stream == "stderr" else sys.stdout
    out.write(text)
    out.flush()


@magics_class
class ContainerMagics(Magics):
    """The `%%container` magic."""

    @line_cell_magic
    @_with_options
    def container(self, line: str, cell: str | None = None) -> None:
        """Run the cell in a fresh container: new namespaces, cgroup limits, an overlay root filesystem.

        Without `--` the cell body is Python, run in a fork of this kernel that sees the notebook's
        variables; `-o VAR` sends variables back. After `--` comes a command, and the cell body becomes
        its stdin (like %%script). Output streams live; then a summary card shows exit status,
        OOMKilled, peak memory, CPU time, a usage plot, the namespaces and the filesystem diff. The
        result is stored as `_container` (see --result): `.usage`, `.namespaces`, `.diff` DataFrames.

        Examples::

            %%container --memory 50M --pids-limit 20 --hostname lab
            import os, socket
            print(os.getpid(), socket.gethostname())

            %%container --network none -- sh
            echo $$; hostname; ip link

            %container run --cpus 0.5 -- python3 -c "print('hi')"
        """
        if cell is None:
            word, _, rest = line.strip().partition(" ")
            if word == "run":  # `%container run [opts] -- CMD`: the subcommand form (more to come)
                line = rest
        try:  # posix quoting (like %%script), so `-- sh -c 'echo hi'` passes `echo hi` without quotes
            argv = arg_split(line, posix=True, strict=True)
        except ValueError as e:  # unbalanced quotes
            raise UsageError(f"cannot split the options: {e}") from None
        magic_func: Any = self.container
        ns = magic_func.parser.parse_args(argv)  # MagicArgumentParser: errors raise UsageError
        command = _args.command_of(ns)
        result_name = ns.result
        if not str(result_name).isidentifier():
            raise UsageError(f"invalid --result {result_name!r}: expected a variable name, like run1")
        if cell is None and not command:
            raise UsageError("%container needs a command after --, like `%container -- hostname`; "
                             "use %%container for a Python cell")

        from ..runtime.parse import build_spec
        from ..runtime.spec import SpecError

        opts = _args.spec_options(ns)
        try:
            if command:
                spec = build_spec(command=command, stdin_data=cell, **opts)
            else:
                spec = build_spec(python_code=cell, **opts)
        except SpecError as e:
            raise UsageError(str(e)) from None

        from .. import runtime

        assert self.shell is not None
        user_ns = self.shell.user_ns
        try:
            run = runtime.run(spec, python_globals=None if command else user_ns, on_output=_echo)
        except runtime.ContainerInterrupted as e:
            if getattr(e, "run", None) is not None:
                user_ns[result_name] = self._view(e.run)
            raise
        except (SpecError, runtime.LaunchError) as e:
            raise UsageError(str(e)) from None

        view = self._view(run)
        user_ns[result_name] = view
        user_ns.update(run.outputs)
        if run.error and run.error.strip() not in (run.stderr or ""):  # not already streamed
            _echo("stderr", run.error if run.error.endswith("\n") else run.error + "\n")
        if not ns.quiet:
            view.show(plot=not ns.no_plot)

    @staticmethod
    def _view(run: Any) -> Any:
        from ..display import RunView

        return RunView(run)


__all__ = ["ContainerMagics"]
