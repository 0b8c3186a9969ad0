"""The container options, defined once, for both `%%container` and `pycontainer run`.

Each entry is (flags, argparse keyword arguments, where it applies). `add_arguments` puts them on a
plain argparse parser (the CLI); `magics/container.py` turns the same table into
`IPython.core.magic_arguments.argument` decorators (which wrap argparse too), so `%%container?` and
`pycontainer run --help` print the same options. Values stay strings here: `runtime.parse.build_spec`
parses them, so a bad value gives the same one-line SpecError in the notebook and in the terminal.

No IPython import here: the CLI uses this module.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

BOTH = frozenset({"magic", "cli"})
MAGIC = frozenset({"magic"})
CLI = frozenset({"cli"})


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    where: frozenset[str] = BOTH
    spec: bool = True  # passed to build_spec (False: display or CLI behaviour only)


def _opt(*flags: str, where: frozenset[str] = BOTH, spec: bool = True, **kwargs: Any) -> Option:
    return Option(flags, kwargs, where, spec)


OPTIONS: list[Option] = [
    # cgroup limits
    _opt("-m", "--memory", metavar="SIZE",
         help="memory limit, like 50M, 512m or 1g (the OOM killer acts above it)"),
    _opt("--memory-swap", metavar="SIZE",
         help="memory plus swap limit (>= --memory), or -1 for unlimited swap"),
    _opt("--cpus", metavar="N", help="CPU quota in CPUs, like 0.5 or 1.5"),
    _opt("--cpu-shares", metavar="N", help="relative CPU weight (default 1024)"),
    _opt("--cpuset-cpus", metavar="LIST", help="CPUs the container may use, like 0 or 0-1 or 0,2"),
    _opt("--pids-limit", "--pids", metavar="N", dest="pids_limit",
         help="maximum number of processes (default 1024, or the configuration's; -1: no limit)"),
    _opt("--storage-opt", metavar="size=SIZE", action="append", dest="storage_opt",
         help="the writable layer's size, like size=2g (default 1g, or the configuration's; size=unlimited)"),
    # namespaces and identity
    _opt("--hostname", metavar="NAME", help="host name inside the container (new UTS namespace)"),
    _opt("--share", metavar="NS,...", action="append",
         help="namespaces to share with the host instead of new ones: "
              "mount, uts, ipc, pid, net, user, cgroup, time, or all"),
    _opt("--network", "--net", metavar="MODE", dest="network",
         help="none (default: a new network namespace with only lo), host (the host's), bridge (the default "
              "network: an address, no names) or NAME (a network of %%netns network create: names resolve)"),
    _opt("--pod", metavar="NAME",
         help="run in pod NAME (made on first use, or by %%container pod create): its containers share "
              "the pod's network (talk over localhost), IPC and UTS namespaces and host name; each keeps its "
              "own mount, PID and cgroup"),
    _opt("-p", "--publish", metavar="[IP:]HOST:CTR", action="append",
         help="publish a container port on the host's loopback, like 8080:80 (repeatable)"),
    _opt("--expose", metavar="PORT[/PROTO]", action="append",
         help="document a port the container listens on (shown by %%netns network inspect), publish nothing"),
    _opt("--userns", metavar="MODE",
         help="private (default: a new user namespace; as root container root is host root, "
              "without root your user is container root), remap (container root maps to an "
              "unprivileged host range, like podman's --userns auto) or host (no user namespace)"),
    _opt("--time-offset", metavar="CLOCK=SECS", action="append",
         help="shift a clock in a new time namespace, like boottime=3600 (repeatable)"),
    # filesystem
    _opt("--image", metavar="IMAGE", help="root filesystem image: host (default: the host's / as a read-only "
                                          "lower layer under a writable overlay)"),
    _opt("--rootfs", metavar="DIR", help="use DIR as the read-only lower layer of the root filesystem"),
    _opt("--read-only", action="store_true", help="mount the container's root filesystem read-only"),
    _opt("-v", "--volume", metavar="SRC:DST[:ro]", action="append",
         help="bind mount /host/path:/ctr/path[:ro] or named volume NAME:/ctr/path (repeatable)"),
    _opt("--tmpfs", metavar="DST[:OPTS]", action="append",
         help="mount a tmpfs, like /run:size=64m,mode=1777 (repeatable)"),
    _opt("-w", "--workdir", metavar="DIR", help="working directory inside the container (default: the "
         "image's WORKDIR, or /)"),
    _opt("-u", "--user", metavar="USER[:GROUP]", help="run as this user (a name from the image or a uid), "
         "like 1000:1000; a user other than root has no effective capabilities"),
    _opt("-e", "--env", metavar="K=V", action="append",
         help="set an environment variable; K alone copies it from here (repeatable)"),
    # security
    _opt("--cap-add", metavar="CAP,...", action="append",
         help="add capabilities to Docker's default 14, like NET_ADMIN or ALL"),
    _opt("--cap-drop", metavar="CAP,...", action="append", help="drop capabilities, like NET_RAW or ALL"),
    _opt("--security-opt", metavar="OPT", action="append",
         help="seccomp=unconfined (no filter), seccomp=PROFILE.json (an OCI or Docker profile); the default "
              "refuses what Docker's default seccomp profile refuses"),
    _opt("--ulimit", metavar="NAME=SOFT[:HARD]", action="append",
         help="a resource limit (setrlimit), like nofile=1024:2048 or nproc=64 (repeatable; -1: unlimited)"),
    # run control
    _opt("--bundle", metavar="DIR", spec=False,
         help="run an OCI runtime bundle (DIR/config.json, ours or crun's or runc's); the other options "
              "come from its config"),
    _opt("--name", metavar="NAME", help="a name for the container"),
    _opt("--timeout", metavar="DURATION", help="kill the container after this long, like 10s or 500ms"),
    _opt("--stop-signal", metavar="SIGNAL", help="what an interrupt (or stop) sends PID 1 first, like docker stop "
         "(default TERM); SIGKILL follows after --stop-timeout, or at once on a second interrupt"),
    _opt("--stop-timeout", metavar="DURATION", help="how long PID 1 has to exit after the stop signal before "
         "SIGKILL (default 5s)"),
    _opt("--interval", metavar="DURATION", help="sampling interval of memory/CPU/pids (default 10ms)"),
    _opt("--no-diff", action="store_true", help="do not compute the filesystem diff at exit"),
    # notebook only
    _opt("-o", "--output", metavar="VAR,...", action="append", where=MAGIC,
         help="variables the cell sends back into the notebook's namespace (repeatable)"),
    _opt("--result", metavar="VAR", default="_container", where=MAGIC, spec=False,
         help="store the run's view under this name (default _container)"),
    _opt("--no-plot", action="store_true", where=MAGIC, spec=False, help="summary card without the plot"),
    _opt("--expect", metavar="OUTCOME", action="append", where=MAGIC, spec=False,
         help="what the workload will do, and the cell fails if it does not: oom, exit=N, signal=KILL, timeout, "
              "error[=NAME] (repeatable: all must hold). Without it a non-zero exit, a signal, an OOM kill or a "
              "timeout fails the cell"),
    _opt("--expect-exit", metavar="N", where=MAGIC, spec=False,
         help="the exit code the workload will end with (same as --expect exit=N)"),
    _opt("--no-raise-error", action="store_true", where=MAGIC, spec=False,
         help="never fail the cell because of how the workload ended (as %%%%script --no-raise-error)"),
    _opt("--explain", action="store_true", where=MAGIC, spec=False,
         help="show the setup plan (namespaces, id maps, cgroup, each mount, pivot_root, masked paths, "
              "capabilities, rlimits, no_new_privs, seccomp, exec) as a table, without running anything"),
    _opt("-d", "--detach", action="store_true", where=MAGIC, spec=False,
         help="run in the background; see %%container ps, logs NAME, exec NAME -- CMD, stop NAME, rm NAME"),
    # display, both
    _opt("-q", "--quiet", action="store_true", spec=False,
         help="no summary (notebook: no card; terminal: no summary line)"),
    # terminal only
    _opt("-i", "--interactive", action="store_true", where=CLI, spec=False,
         help="feed this process's stdin to the command, as it comes"),
    _opt("-t", "--tty", action="store_true", where=CLI, spec=False,
         help="give the command a terminal, as docker run -t (with -i: an interactive shell, `-it`)"),
    _opt("--json", action="store_true", where=CLI, spec=False,
         help="print the run's summary as JSON on stderr instead of the one-line summary"),
    # what runs
    _opt("command", metavar="-- CMD", nargs=argparse.REMAINDER, spec=False,
         help="the command to run; in a cell it replaces Python and the body becomes its stdin "
              "(like %%%%script)"),
]


def options_for(where: str) -> list[Option]:
    return [o for o in OPTIONS if where in o.where]


def add_arguments(parser: argparse.ArgumentParser, where: str = "cli") -> argparse.ArgumentParser:
    """Add the options that apply to `where` ("cli" or "magic") to an argparse parser."""
    for o in options_for(where):
        parser.add_argument(*o.flags, **o.kwargs)
    return parser


def _dest(o: Option) -> str:
    if "dest" in o.kwargs:
        return str(o.kwargs["dest"])
    long = next((f for f in o.flags if f.startswith("--")), o.flags[0])
    return long.lstrip("-").replace("-", "_")


SPEC_KEYS: frozenset[str] = frozenset(_dest(o) for o in OPTIONS if o.spec)


def command_of(ns: argparse.Namespace) -> list[str]:
    """The command after `--` (argparse keeps a leading '--' in a REMAINDER argument)."""
    cmd = list(getattr(ns, "command", None) or [])
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    return cmd


def bundle_spec(ns: argparse.Namespace, name: str | None = None) -> tuple[Any, list[str]]:
    """`--bundle DIR`: the spec from its config.json. Other container options are refused: they would
    silently disagree with the config. Raises SpecError or BundleError (one line each)."""
    from ..oci.bundle import load_bundle
    from ..runtime.spec import SpecError

    extra = sorted(k for k in spec_options(ns) if k not in ("name", "timeout", "interval", "diff", "stop_signal",
                                                            "stop_timeout"))
    if extra:
        flag = "--" + extra[0].replace("_", "-")
        raise SpecError(f"--bundle takes the container's settings from config.json: drop {flag}")
    opts = spec_options(ns)
    spec, notes = load_bundle(ns.bundle, name or opts.get("name"))
    changes = {k: v for k, v in opts.items() if k in ("timeout", "interval", "stop_signal", "stop_timeout")}
    if changes:
        from ..runtime.parse import build_spec
        spec = spec.with_(**{k: getattr(build_spec(command=["true"], **changes), k) for k in changes})
    return spec, notes


def spec_options(ns: argparse.Namespace) -> dict[str, Any]:
    """The parsed options `runtime.parse.build_spec` takes (display-only ones left out)."""
    return {k: v for k, v in vars(ns).items() if k in SPEC_KEYS and v is not None and v is not False}


__all__ = ["OPTIONS", "Option", "add_arguments", "command_of", "options_for", "spec_options"]
