"""`pycontainer run` and `pycontainer bundle`: one container from a terminal.

    pycontainer run [options] [--] CMD [ARG...]   run a command; exits with its exit code
    pycontainer run [options] IMAGE -- [CMD...]   in an image (`IMAGE --` alone: the image's own command)
    pycontainer run -it [options] IMAGE -- sh     an interactive shell (-i: stdin fed as it comes, -t: a terminal)
    pycontainer bundle DIR [options] -- CMD       write DIR/config.json (OCI runtime-spec) for CMD

Options are the `%%container` ones (one table, `magics/args.py`). Output streams to the terminal;
a one-line summary (`exit 0, 12.3 ms, peak 4.1 MiB`) goes to stderr, so stdout stays the command's.
Exit codes follow Docker: the command's own code, 137 when OOM-killed, 125 when the container could
not be set up or the options are wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any

from ..magics import args as _args
from .common import EXIT_INTERRUPTED, EXIT_OOM, EXIT_USAGE, fail

COMMANDS = ("run", "bundle")


def add_parsers(sub: Any) -> None:
    run = sub.add_parser("run", help="run a command in a new container",
                         description="Run CMD in a new container. Options use Docker's vocabulary.")
    _args.add_arguments(run, "cli")
    run.add_argument("--root", metavar="DIR", help="with --bundle DIR ID: where the state lives while it runs "
                     "(as runc's --root; default /run/pycontainer_magics/oci)")
    bundle = sub.add_parser("bundle", help="write an OCI runtime bundle (config.json) for a command",
                            description="Write DIR/config.json (OCI runtime-spec) for CMD with the same options "
                                        "as run; crun and runc can run it: `runc run --bundle DIR ID`.")
    bundle.add_argument("--copy-rootfs", action="store_true", help="copy --rootfs into DIR/rootfs")
    bundle.add_argument("directory", metavar="DIR", help="the bundle directory")
    _args.add_arguments(bundle, "cli")


def main(ns: argparse.Namespace) -> int:
    return _bundle(ns) if ns.subcommand == "bundle" else _run(ns)


def _echo(stream: str, text: str) -> None:
    out = sys.stderr if stream == "stderr" else sys.stdout
    out.write(text)
    out.flush()


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def summary_line(run: Any) -> str:
    """`exit 0, 12.3 ms, peak 4.1 MiB` (+ OOMKilled, timed out, signal, error)."""
    parts = [f"exit {run.exit_code}" if run.exit_code is not None else run.status]
    if run.signal is not None:
        parts[0] += f" ({run.signal_name})"
    d = run.duration
    parts.append(f"{d * 1000:.1f} ms" if d < 1 else f"{d:.2f} s")
    if run.peak_memory is not None:
        parts.append(f"peak {_size(run.peak_memory)}")
    if run.oom_killed:
        parts.append("OOMKilled")
    if run.timed_out:
        parts.append("timed out")
    return ", ".join(parts)


def exit_code_of(run: Any) -> int:
    if run.oom_killed:
        return EXIT_OOM
    if run.exit_code is None:
        return EXIT_USAGE
    return int(run.exit_code)


def image_and_command(ns: argparse.Namespace) -> tuple[str | None, list[str]]:
    """`pycontainer run [options] IMAGE -- CMD` as `docker run IMAGE CMD`: one word before `--` names the
    image (`IMAGE --` alone: the image's own command). Without `--` every word is the command (on the host's
    / unless --image says otherwise), as before."""
    raw = list(getattr(ns, "command", None) or [])
    if raw and raw[0] != "--" and "--" in raw:
        before, after = raw[:raw.index("--")], raw[raw.index("--") + 1:]
        if len(before) != 1:
            fail(f"give one image before `--`, not {' '.join(before)!r}: pycontainer run [OPTIONS] IMAGE -- CMD")
        return before[0], after
    return None, _args.command_of(ns)


def _run(ns: argparse.Namespace) -> int:
    from ..runtime.parse import build_spec
    from ..runtime.spec import SpecError

    image, command = image_and_command(ns)
    opts = _args.spec_options(ns)
    if image is not None:
        if ns.bundle:
            fail("--bundle runs the bundle's config.json: no IMAGE before `--`")
        if opts.get("image") not in (None, "host", image):
            fail(f"two images: {image} before `--` and --image {opts['image']}")
        opts["image"] = image
    if ns.bundle:  # `pycontainer run --bundle DIR [ID]`, as `runc run --bundle DIR ID`
        from ..oci.bundle import BundleError
        if len(command) > 1:
            fail("with --bundle, give at most a container id after the options (the command is in config.json)")
        try:
            spec, notes = _args.bundle_spec(ns, command[0] if command else None)
        except (SpecError, BundleError) as e:
            fail(str(e))
        if _wants_terminal(ns.bundle):  # as `runc run` in the foreground: our terminal relayed to the process's
            ns.tty = ns.interactive = True
            notes = [n for n in notes if not n.startswith("process/terminal:")]
        for note in notes:
            sys.stderr.write(f"pycontainer: note: {note}\n")
    else:
        try:
            # Options first (placeholder command), so a bad option is reported before a missing command.
            build_spec(command=command or ["true"], **opts)
        except SpecError as e:
            fail(str(e))
        if not command and image is None:
            fail("nothing to run: give a command, like `pycontainer run --memory 50m -- sh -c 'echo hi'`")
        if ns.interactive and ns.tty and not sys.stdin.isatty():
            fail("the input device is not a TTY: -it needs a terminal (leave out -t to feed a pipe)")
        spec = build_spec(command=command or None, **opts)
        if not (ns.interactive or ns.tty):  # the daemon path has no stdin or terminal of ours to relay
            remote = _through_daemon(spec, ns)
            if remote is not None:
                return remote

    from .. import runtime

    if spec.pod is not None:
        from .. import workloads  # noqa: F401 - installs the pod resolver (pods are workloads)
    recorded: Any = contextlib.nullcontext(None)
    if ns.bundle and command:  # with an id, as runc's run: state, list and kill see it while it runs
        from ..oci.lifecycle import recorded_run
        recorded = recorded_run(ns.bundle, command[0], ns.root)
    relay: Any = None
    terminal = None
    if getattr(ns, "tty", False):
        from ..runtime.run import Terminal
        from .terminal import TerminalRelay
        relay = TerminalRelay(interactive=bool(ns.interactive))
        terminal = Terminal(relay.on_master, relay.size())
    stdin_fd = sys.stdin.fileno() if getattr(ns, "interactive", False) and terminal is None else None
    try:
        with recorded as on_start:
            # This process is small and short-lived: forking it is cheaper than starting the launch helper.
            run = runtime.run(spec, on_output=_echo, helper=False, on_start=on_start, stdin_fd=stdin_fd,
                              terminal=terminal)
    except runtime.ContainerInterrupted:
        sys.stderr.write("pycontainer: interrupted\n")
        return EXIT_INTERRUPTED
    except (SpecError, runtime.LaunchError, OSError) as e:
        fail(str(e))
    finally:
        if relay is not None:
            relay.finish()
    shown = (run.stderr or "") + (relay.shown() if relay is not None else "")
    if run.error and run.error.strip() not in shown:  # not already streamed (or shown on the terminal)
        _echo("stderr", run.error if run.error.endswith("\n") else run.error + "\n")
    if ns.json:
        sys.stderr.write(json.dumps(run.summary()) + "\n")
    elif not ns.quiet:
        sys.stderr.write(summary_line(run) + "\n")
    return exit_code_of(run)


def _wants_terminal(bundle: str) -> bool:
    """config.json's process.terminal (what `runc spec` writes by default); load_bundle has read it already."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        with open(f"{bundle}/config.json") as f:
            return bool(json.load(f).get("process", {}).get("terminal"))
    return False


def _through_daemon(spec: Any, ns: argparse.Namespace) -> int | None:
    """When `pycontainer serve` runs (its default socket answers), run there: the daemon's warm launcher
    starts the container. None: no daemon (or a spec the Engine API cannot say): run in-process."""
    import os

    if os.environ.get("PYCONTAINER_NO_DAEMON"):
        return None
    from ..engine.client import EngineError, connect
    from ..engine.run_remote import expressible, run

    if not expressible(spec):
        return None
    c = connect()
    if c is None:
        return None

    def out(stream: str, data: bytes) -> None:
        f = sys.stderr.buffer if stream == "stderr" else sys.stdout.buffer
        f.write(data)
        f.flush()

    try:
        code, seconds = run(c, spec, out)
    except EngineError as e:
        fail(str(e))
    if ns.json:
        sys.stderr.write(json.dumps({"exit_code": code, "duration_s": round(seconds, 4), "daemon": c.host}) + "\n")
    elif not ns.quiet:
        sys.stderr.write(f"exit {code}, {seconds * 1000:.1f} ms (daemon)\n")
    return code


def _bundle(ns: argparse.Namespace) -> int:
    from ..oci.bundle import BundleError, write_bundle
    from ..runtime.parse import build_spec
    from ..runtime.spec import SpecError

    command = _args.command_of(ns)
    if ns.interactive or ns.tty:
        fail("bundle writes config.json and runs nothing: -i/-t are for `pycontainer run`")
    if not command:
        fail("nothing to run: give a command, like `pycontainer bundle DIR -- sh -c 'echo hi'`")
    try:
        spec = build_spec(command=command, **_args.spec_options(ns))
        print(write_bundle(spec, ns.directory, copy_rootfs=ns.copy_rootfs))
    except (SpecError, BundleError, OSError) as e:
        fail(str(e))
    return 0
