"""runc's command line, as containerd's shim, conmon, dockerd and the OCI conformance suite call it:

    pycontainer [--root DIR] [--log FILE] [--log-format text|json] [--debug] [--systemd-cgroup]
                [--rootless auto|true|false] COMMAND [flags] ARGS
    create --bundle B --pid-file F [--console-socket S] [--no-pivot] [--no-new-keyring] [--preserve-fds N] ID
    start ID | state ID | kill [--all] ID [SIGNAL] | delete [--force] ID | list [--format json] [--quiet]
    exec --process FILE [--detach] [--pid-file F] [--console-socket S] [--tty] ID | exec [flags] ID CMD...
    ps [--format table|json] ID [PS ARGS] | events [--stats] [--interval 5s] ID | update --resources FILE|- ID
    pause ID | resume ID | features | run [--detach] ... ID | spec [--bundle B] [--rootless]

Flags go before the positional arguments (urfave/cli's rule, which runc follows); `--flag value`,
`--flag=value` and one dash work; `--root` is also taken after the command. Every failure is exit
status 1 with one line in the log (JSON when asked; stderr by default), as runc. cli/__init__.py hands
any such argv here before argparse is loaded: this path imports no IPython, pandas, matplotlib, argparse
or jsonschema. The logic is in oci/ (lifecycle.py, exec.py, ...); this is its command line.
"""

from __future__ import annotations

import os
import sys

from ..oci import log

TYPE_CHECKING = False  # typing itself is not imported: the command line's start-up
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

VERSION = "0.1.0"
GLOBAL_FLAGS = {"--root": "root", "--log": "log", "--log-format": "log_format", "--criu": "criu",
                "--rootless": "rootless"}
GLOBAL_BOOLS = {"--debug": "debug", "--systemd-cgroup": "systemd_cgroup"}
RUNC_COMMANDS = ("create", "start", "state", "kill", "delete", "list", "exec", "ps", "events", "update", "pause",
                 "resume", "features", "run", "spec", "checkpoint", "restore")
VERBS = ("create", "start", "state", "kill", "delete", "list", "exec", "ps", "events", "update", "pause",
         "resume", "features", "spec")  # runc's verbs argparse lists (run is the project's own, cli/run.py)
COMMANDS = (*VERBS, "install-runtime")

# command -> {flag: (dest, kind)}; kind: "str", "bool", "int", "list"
_CREATE = {"--bundle": ("bundle", "str"), "-b": ("bundle", "str"), "--console-socket": ("console_socket", "str"),
           "--pid-file": ("pid_file", "str"), "--no-pivot": ("no_pivot", "bool"),
           "--no-new-keyring": ("no_new_keyring", "bool"), "--preserve-fds": ("preserve_fds", "int"),
           "--root": ("root", "str")}
FLAGS: dict[str, dict[str, tuple[str, str]]] = {
    "create": _CREATE,
    "run": {**_CREATE, "--detach": ("detach", "bool"), "-d": ("detach", "bool"), "--keep": ("keep", "bool")},
    "start": {"--root": ("root", "str")},
    "state": {"--root": ("root", "str")},
    "kill": {"--all": ("all", "bool"), "-a": ("all", "bool"), "--root": ("root", "str")},
    "delete": {"--force": ("force", "bool"), "-f": ("force", "bool"), "--root": ("root", "str")},
    "list": {"--format": ("format", "str"), "-f": ("format", "str"), "--quiet": ("quiet", "bool"),
             "-q": ("quiet", "bool"), "--root": ("root", "str")},
    "ps": {"--format": ("format", "str"), "-f": ("format", "str"), "--root": ("root", "str")},
    "events": {"--interval": ("interval", "str"), "--stats": ("stats", "bool"), "--root": ("root", "str")},
    "update": {"--resources": ("resources", "str"), "-r": ("resources", "str"), "--memory": ("memory", "str"),
               "--memory-swap": ("memory_swap", "str"), "--memory-reservation": ("memory_reservation", "str"),
               "--kernel-memory": ("kernel_memory", "str"), "--kernel-memory-tcp": ("kernel_memory_tcp", "str"),
               "--cpu-shares": ("cpu_shares", "str"), "--cpu-quota": ("cpu_quota", "str"),
               "--cpu-period": ("cpu_period", "str"), "--cpu-rt-period": ("cpu_rt_period", "str"),
               "--cpu-rt-runtime": ("cpu_rt_runtime", "str"), "--cpuset-cpus": ("cpuset_cpus", "str"),
               "--cpuset-mems": ("cpuset_mems", "str"), "--pids-limit": ("pids_limit", "str"),
               "--blkio-weight": ("blkio_weight", "str"), "--l3-cache-schema": ("l3", "str"),
               "--mem-bw-schema": ("membw", "str"), "--root": ("root", "str")},
    "pause": {"--root": ("root", "str")},
    "resume": {"--root": ("root", "str")},
    "features": {},
    "spec": {"--bundle": ("bundle", "str"), "-b": ("bundle", "str"), "--rootless": ("rootless", "bool")},
    "exec": {"--console-socket": ("console_socket", "str"), "--pidfd-socket": ("pidfd_socket", "str"),
             "--cwd": ("cwd", "str"), "--env": ("env", "list"), "-e": ("env", "list"), "--tty": ("tty", "bool"),
             "-t": ("tty", "bool"), "--user": ("user", "str"), "-u": ("user", "str"),
             "--additional-gids": ("additional_gids", "list"), "-g": ("additional_gids", "list"),
             "--process": ("process", "str"), "-p": ("process", "str"), "--detach": ("detach", "bool"),
             "-d": ("detach", "bool"), "--pid-file": ("pid_file", "str"), "--process-label": ("label", "str"),
             "--apparmor": ("apparmor", "str"), "--no-new-privs": ("no_new_privs", "bool"),
             "--cap": ("cap", "list"), "-c": ("cap", "list"), "--preserve-fds": ("preserve_fds", "int"),
             "--ignore-paused": ("ignore_paused", "bool"), "--cgroup": ("cgroup", "list"),
             "--root": ("root", "str")},
}
# how many positional arguments each command takes: (min, max); None: unbounded
ARITY: dict[str, tuple[int, int | None]] = {
    "create": (1, 1), "run": (1, 1), "start": (1, 1), "state": (1, 1), "kill": (1, 2), "delete": (1, 1),
    "list": (0, 0), "ps": (1, None), "events": (1, 1), "update": (1, 1), "pause": (1, 1), "resume": (1, 1),
    "features": (0, 0), "spec": (0, 0), "exec": (1, None),
}


class UsageError(Exception):
    pass


def add_parsers(sub: Any) -> None:
    """The verbs in `pycontainer --help`; their arguments are parsed here (runc's way), not by argparse."""
    helps = {"create": "OCI: create a container from a bundle, its process not yet executed",
             "start": "OCI: execute the process of a created container", "state": "OCI: the runtime-spec state",
             "kill": "OCI: signal the container's init (--all: every process)",
             "delete": "OCI: remove a stopped container (--force: kill it first)",
             "list": "OCI: the containers of the state root", "exec": "OCI: run another process in a container",
             "ps": "OCI: the container's processes", "events": "OCI: stats and OOM events (--stats: once)",
             "update": "OCI: change a container's cgroup limits", "pause": "OCI: freeze every process",
             "resume": "OCI: thaw a paused container", "features": "OCI: what this runtime implements (JSON)",
             "spec": "OCI: write a default config.json"}
    for name, text in helps.items():
        sub.add_parser(name, help=text, description=text + ". " + (__doc__ or "").split("\n\n")[0], add_help=False)
    p = sub.add_parser("install-runtime", help="write the fast launcher engines should call (prints its path)",
                       description="Write `pycontainer-runc`: this command line started with `python -I -S`, for "
                                   "dockerd --add-runtime, containerd's BinaryName and podman --runtime.")
    p.add_argument("--output", metavar="PATH", help="where (default: next to pycontainer)")


def is_runc_call(argv: Sequence[str]) -> bool:
    """True when argv is runc-style: a runc global flag first, or one of the lifecycle commands."""
    if not argv:
        return False
    a = argv[0].split("=", 1)[0]
    return a in GLOBAL_FLAGS or a in GLOBAL_BOOLS or a in ("-v", "--version") or argv[0] in VERBS


def parse(argv: Sequence[str]) -> tuple[dict[str, Any], str, dict[str, Any], list[str]]:
    """(global options, command, command options, positional arguments)."""
    g: dict[str, Any] = {"root": None, "log": None, "log_format": "text", "debug": False, "systemd_cgroup": False,
                         "rootless": "auto"}
    i = 0
    args = list(argv)
    while i < len(args) and args[i].startswith("-"):
        name, eq, value = _split(args[i])
        if name in GLOBAL_BOOLS:
            g[GLOBAL_BOOLS[name]] = value.lower() != "false" if eq else True
            i += 1
        elif name in GLOBAL_FLAGS:
            if not eq:
                if i + 1 >= len(args):
                    raise UsageError(f"flag needs an argument: {args[i]}")
                value, i = args[i + 1], i + 1
            g[GLOBAL_FLAGS[name]] = value
            i += 1
        elif name in ("--version", "-v"):
            return g, "version", {}, []
        elif name in ("--help", "-h"):
            return g, "help", {}, []
        else:
            raise UsageError(f"flag provided but not defined: {args[i]}")
    if i >= len(args):
        raise UsageError("no command given")
    cmd = args[i]
    i += 1
    if cmd not in FLAGS:
        raise UsageError(f"No help topic for '{cmd}'" if cmd not in RUNC_COMMANDS else
                         f"{cmd}: not supported by this runtime")
    spec = FLAGS[cmd]
    opts: dict[str, Any] = {dest: ([] if kind == "list" else None) for dest, kind in spec.values()}
    positional: list[str] = []
    while i < len(args):
        a = args[i]
        if positional or not a.startswith("-") or a == "-":
            positional.append(a)
            i += 1
            continue
        if a == "--":
            positional += args[i + 1:]
            break
        name, eq, value = _split(a)
        if name in ("--help", "-h"):
            return g, "help", {"command": cmd}, []
        if name not in spec:
            raise UsageError(f"flag provided but not defined: {a}")
        dest, kind = spec[name]
        if kind == "bool":
            opts[dest] = value.lower() != "false" if eq else True
            i += 1
            continue
        if not eq:
            if i + 1 >= len(args):
                raise UsageError(f"flag needs an argument: {a}")
            value, i = args[i + 1], i + 1
        i += 1
        if kind == "int":
            try:
                opts[dest] = int(value)
            except ValueError:
                raise UsageError(f"invalid value {value!r} for flag {name}") from None
        elif kind == "list":
            opts[dest].append(value)
        else:
            opts[dest] = value
    lo, hi = ARITY[cmd]
    if len(positional) < lo or (hi is not None and len(positional) > hi):
        want = f"exactly {lo}" if lo == hi else f"a minimum of {lo}" if hi is None else f"{lo} to {hi}"
        raise UsageError(f'"{cmd}" requires {want} argument(s)')
    if opts.get("root"):
        g["root"] = opts["root"]
    return g, cmd, opts, positional


def _split(arg: str) -> tuple[str, bool, str]:
    name, eq, value = arg.partition("=")
    if name.startswith("-") and not name.startswith("--") and len(name) > 2:
        name = "-" + name  # -root DIR, as Go's flag package takes it
    return name, bool(eq), value


def _keep_running_if_parent_thread_exits() -> None:
    """containerd's shim starts the runtime with a parent-death signal (SIGKILL) tied to the Go thread that
    forked it, and that thread may end while a call of ours is still running (a Python start-up is slower
    than runc's): observed as `delete --force` killed mid-way in the shim's clean-up. Our commands are
    short and leave nothing half-done when they finish, so finish them."""
    try:
        from ..linux import pdeathsig
        pdeathsig.clear()
    except (OSError, AttributeError, ImportError):
        pass


def runc_main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _keep_running_if_parent_thread_exits()
    try:
        g, cmd, opts, pos = parse(argv)
    except UsageError as e:
        _configure_from_argv(argv)
        log.error(str(e))
        return 1
    try:
        log.configure(g["log"], g["log_format"], g["debug"])
    except (ValueError, OSError) as e:
        sys.stderr.write(f"{e}\n")
        return 1
    if cmd == "version":
        sys.stdout.write(f"pycontainer version {VERSION}\nspec: 1.0.2\n")
        return 0
    if cmd == "help":
        usage = (__doc__ or "").split("\n\n")[0]
        if opts.get("command"):
            flags = ", ".join(sorted(FLAGS[opts["command"]]))
            usage = f"usage: pycontainer [global flags] {opts['command']} [flags] ARGS\nflags: {flags or '(none)'}"
        sys.stdout.write(usage + "\n")
        return 0
    from ..oci.state import default_root
    # (features and spec keep no state: the default root, made on first use, is not made for them — dockerd asks
    # every runtime for its features at start, without --root)
    root = os.path.abspath(g["root"]) if g["root"] else "" if cmd in ("features", "spec") else default_root()
    try:
        return dispatch(g, cmd, opts, pos, root)
    except (OSError, ValueError) as e:  # StateError, ConfigError, SeccompError and the kernel's own
        log.error(_message(cmd, e))
        return 1
    except KeyboardInterrupt:
        return 130


def _message(cmd: str, e: BaseException) -> str:
    text = str(e)
    if isinstance(e, OSError) and e.strerror and not text.startswith(e.strerror):
        text = e.strerror if e.filename is None or str(e.filename) in e.strerror else f"{e.strerror}: {e.filename}"
    return f"runc {cmd} failed: {text}" if cmd in ("create", "run") else text


def _configure_from_argv(argv: list[str]) -> None:
    """Even a usage error goes to the log the caller asked for (the shim reads it)."""
    path, fmt = None, "text"
    for i, a in enumerate(argv):
        name, eq, value = _split(a)
        if name in ("--log", "--log-format"):
            v = value if eq else (argv[i + 1] if i + 1 < len(argv) else "")
            if name == "--log":
                path = v
            else:
                fmt = v
    try:
        log.configure(path, fmt if fmt in ("text", "json") else "text", False)
    except (ValueError, OSError):
        pass


def dispatch(g: dict[str, Any], cmd: str, o: dict[str, Any], pos: list[str], root: str) -> int:
    from ..oci import lifecycle as c

    if cmd == "create":
        c.create(root, pos[0], _create_options(g, o))
        return 0
    if cmd == "run":
        from ..oci.run import run
        return run(root, pos[0], _create_options(g, o), detach=bool(o.get("detach")), keep=bool(o.get("keep")))
    if cmd == "start":
        c.start(root, pos[0])
    elif cmd == "state":
        from ..oci.jsonout import dumps
        sys.stdout.write(dumps(c.state(root, pos[0]), indent=2) + "\n")
    elif cmd == "kill":
        c.kill(root, pos[0], c.parse_signal(pos[1] if len(pos) > 1 else "TERM"), bool(o.get("all")))
    elif cmd == "delete":
        c.delete(root, pos[0], bool(o.get("force")))
    elif cmd == "list":
        states = c.list_states(root)
        if o.get("quiet"):
            sys.stdout.write("".join(s["id"] + "\n" for s in states))
        elif (o.get("format") or "table") == "json":
            from ..oci.jsonout import dumps
            sys.stdout.write(dumps(states) + "\n")
        else:
            sys.stdout.write(format_list(states))
    elif cmd == "pause":
        c.pause(root, pos[0])
    elif cmd == "resume":
        c.resume(root, pos[0])
    elif cmd == "ps":
        from ..oci.ps import ps
        return ps(root, pos[0], o.get("format") or "table", pos[1:])
    elif cmd == "events":
        from ..oci.events import events
        return events(root, pos[0], bool(o.get("stats")), o.get("interval") or "5s")
    elif cmd == "update":
        from ..oci.update import update_command
        update_command(root, pos[0], o)
    elif cmd == "features":
        import json

        from ..oci.features import features
        sys.stdout.write(json.dumps(features(), indent=4) + "\n")
    elif cmd == "exec":
        from ..oci.exec import exec_command
        return exec_command(root, pos[0], pos[1:], o, g)
    elif cmd == "spec":
        from ..oci.spec import write_spec
        write_spec(o.get("bundle") or ".", rootless=bool(o.get("rootless")))
    return 0


def _create_options(g: dict[str, Any], o: dict[str, Any]) -> Any:
    from ..oci.lifecycle import CreateOptions
    return CreateOptions(bundle=o.get("bundle") or ".", pid_file=o.get("pid_file"),
                         console_socket=o.get("console_socket"), no_pivot=bool(o.get("no_pivot")),
                         no_new_keyring=bool(o.get("no_new_keyring")), preserve_fds=o.get("preserve_fds") or 0,
                         systemd_cgroup=bool(g.get("systemd_cgroup")))


def format_list(states: list[dict[str, Any]]) -> str:
    """`runc list`'s table: ID PID STATUS BUNDLE CREATED OWNER."""
    rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
    rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"]) for s in states]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "   " + r[5]
                     for r in rows) + "\n"


def main(ns: Any) -> int:
    """argparse's side of this group: `install-runtime`."""
    from ..oci.launcher import install_runtime
    print(install_runtime(ns.output))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(runc_main())
