"""`%%container`: run a cell in new namespaces, under cgroup limits, on an overlay root filesystem.

A thin skin: parse the options (the shared table in `args.py`), build the spec with
`runtime.parse.build_spec`, call `runtime.run`, and hand the result to the display layer.
"""

from __future__ import annotations

import argparse
import collections
import functools
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

from IPython.core import magic_arguments
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand

from . import args as _args
from . import expect
from ._parser import echo, expand, split_line
from .doctor import doctor as _doctor
from .engine_verbs import VERBS as _ENGINE_VERBS
from .expect import from_namespace
from .kube import container_kube as _container_kube
from .refs import engine_call as _engine_call
from .refs import get_container as _get


def _with_options(func: Any) -> Any:
    """Apply the shared option table as magic_arguments decorators (in table order)."""
    for o in reversed(_args.options_for("magic")):
        func = magic_arguments.argument(*o.flags, **o.kwargs)(func)
    return magic_arguments.magic_arguments()(func)


def _parsed(parser: Any, line: str) -> argparse.Namespace:
    """The options of a %%container line: parsed once per distinct line (a lecture re-runs the same cells; the
    split and the parse over the whole option table are a quarter to half a millisecond of a cell's start)."""
    ns = _parse_line(parser, line)
    return argparse.Namespace(**{k: list(v) if isinstance(v, list) else v for k, v in vars(ns).items()})


@functools.lru_cache(maxsize=64)
def _parse_line(parser: Any, line: str) -> argparse.Namespace:
    ns: argparse.Namespace = parser.parse_args(split_line(line))  # (an error is raised, not kept)
    return ns


# Options whose spec depends on the host at the time (a bind source or --rootfs must exist, --cpuset-cpus is checked
# against the CPUs online, a seccomp profile is read from its file): their specs are built for each cell.
_READS_HOST = ("volume", "rootfs", "cpuset_cpus", "security_opt")


class _Cell(NamedTuple):
    """What a %%container line and body come to before anything runs. A spec is immutable: one serves every re-run."""

    spec: Any
    command: tuple[str, ...]
    result_name: str
    expectation: Any  # expect.Expectation (frozen)
    quiet: bool
    no_plot: bool


# The cells already prepared, by (line, body, configuration). A lecture re-runs its cells: the options' parse and
# copy, the spec's checks and the expectation were a quarter millisecond of each re-run (with the memory they touch
# cold after the last cell's fork, 20 times what they take warm). Not kept when an option reads the host or `-e NAME`
# copies a variable from here (_reusable).
_CELLS: collections.OrderedDict[tuple[Any, ...], _Cell] = collections.OrderedDict()


def _reusable(ns: argparse.Namespace, opts: dict[str, Any]) -> bool:
    return not ns.bundle and not ns.explain and not ns.detach and not any(opts.get(k) for k in _READS_HOST) \
        and all("=" in e for e in opts.get("env") or ())


def _remember(key: tuple[Any, ...], cell: _Cell) -> None:
    _CELLS[key] = cell
    while len(_CELLS) > 64:
        _CELLS.popitem(last=False)


def _build_spec(cell: str | None, command: list[str], opts: dict[str, Any]) -> Any:
    from ..runtime.parse import build_spec

    if command:
        return build_spec(command=command, stdin_data=cell, **opts)
    return build_spec(python_code=cell, **opts)


def _after_reply(work: Callable[[], None]) -> None:
    """Start what a run leaves to the background (the next cell's preparation, its clean-up) once the event loop of
    this thread turns again: in a kernel, once it has flushed the cell's output and sent its reply, which that work
    would delay by taking the interpreter. Now where no loop runs here (IPython in a terminal, a script). (asyncio
    is not imported for this: with ssl, megabytes that every Python cell's fork would copy the page tables of.)"""
    aio = sys.modules.get("asyncio")
    try:
        loop = aio.get_running_loop() if aio is not None else None
    except RuntimeError:
        loop = None
    if loop is None:
        work()
        return
    loop.call_soon(work)


@magics_class
class ContainerMagics(Magics):
    """The `%%container` magic."""

    @line_cell_magic
    @no_var_expand  # (expanded below, when the line can have anything to expand)
    @_with_options
    def container(self, line: str, cell: str | None = None) -> None:
        """Run the cell in a fresh container: new namespaces, cgroup limits, an overlay root filesystem.

        Without `--` the cell body is Python, run in a fork of this kernel that sees the notebook's
        variables; `-o VAR` sends variables back. After `--` comes a command, and the cell body becomes
        its stdin (like %%script). Output streams live; then a summary card shows exit status,
        OOMKilled, peak memory, CPU time, a usage plot (for a run long enough to have a curve: five samples, or an
        OOM kill; `_container.plot()` draws any run), the namespaces and the filesystem diff. The
        result is stored as `_container` (see --result): `.usage`, `.namespaces`, `.diff` DataFrames.

        Examples::

            %%container --memory 50M --pids-limit 20 --hostname lab
            import os, socket
            print(os.getpid(), socket.gethostname())

            %%container --network none -- sh
            echo $$; hostname; ip link

            %container run --cpus 0.5 -- python3 -c "print('hi')"

        Background containers (`--detach`, like `docker run -d`) are managed with the line magic:
        `%container ps [-a]`, `logs NAME`, `exec NAME -- CMD`, `stats`, `stop [-t SECONDS] NAME`,
        `kill NAME`, `wait NAME`, `rm [-f] NAME`. Named volumes (`-v NAME:/path`): `%container volume ls`,
        `volume create NAME`, `volume rm NAME`.

        Pods (`--pod NAME`, as in Kubernetes): the pod's containers share its network (they talk over
        localhost), IPC and UTS namespaces. `%container pod create NAME [--network NET] [-p HOST:CTR]
        [--hostname H]`, `pod ls`, `pod inspect NAME`, `pod ns NAME` (the namespace table), `pod rm [-f] NAME`.
        """
        line = expand(self.shell, line)
        if cell is None:
            word, _, rest = line.strip().partition(" ")
            if word == "run":  # `%container run [opts] -- CMD`: the subcommand form
                line = rest
            elif word in _SUBCOMMANDS:
                return _SUBCOMMANDS[word](self, rest)  # type: ignore[no-any-return]
        from ..runtime.config import defaults

        key = (line, cell, defaults())  # (defaults(): the configuration file as it is now)
        prepared = _CELLS.get(key)
        if prepared is not None:
            _CELLS.move_to_end(key)
            return self._run_cell(prepared, cell)

        magic_func: Any = self.container
        ns = _parsed(magic_func.parser, line)  # MagicArgumentParser: errors raise UsageError
        command = _args.command_of(ns)
        result_name = ns.result
        if not str(result_name).isidentifier():
            raise UsageError(f"invalid --result {result_name!r}: expected a variable name, like run1")
        if cell is None and not command and not ns.bundle and ns.image in (None, "host"):
            raise UsageError("%container needs a command after --, like `%container -- hostname`; "
                             "use %%container for a Python cell")

        from ..runtime.spec import SpecError

        opts = _args.spec_options(ns)
        if ns.bundle:
            from ..oci.bundle import BundleError
            try:
                spec, notes = _args.bundle_spec(ns)
            except (SpecError, BundleError) as e:
                raise UsageError(str(e)) from None
            for note in notes:
                echo("stderr", f"note: {note}\n")
            command = list(spec.command)
            if cell:
                spec = spec.with_(stdin_data=cell.encode())
        else:
            try:
                spec = _build_spec(cell, command, opts)
            except SpecError as e:
                raise UsageError(str(e)) from None

        from .. import runtime

        expectation = from_namespace(ns)
        if spec.pod is not None:
            from .. import workloads  # noqa: F401 - installs the pod resolver (pods are workloads)
        assert self.shell is not None
        user_ns = self.shell.user_ns
        if ns.explain:  # the setup plan, step by step; nothing runs
            from ..runtime.run import explain
            try:
                plan = explain(spec)
            except (SpecError, runtime.LaunchError) as e:
                raise UsageError(str(e)) from None
            user_ns[result_name] = plan
            return plan  # type: ignore[return-value]  # shown as a table (SetupPlan._repr_html_)
        if ns.detach:
            if expectation.stated or expectation.no_raise:
                raise UsageError("a detached container has no outcome yet: put --expect or --no-raise-error on "
                                 "%container wait NAME")
            from ..workloads.containers import DetachedContainerError, start
            try:
                c = start(spec, python_globals=None if command else user_ns)
            except (SpecError, runtime.LaunchError, DetachedContainerError) as e:
                raise UsageError(str(e)) from None
            user_ns[result_name] = c
            if not ns.quiet:
                print(c.id)  # as `docker run -d` prints
            return None
        prepared = _Cell(spec, tuple(command), result_name, expectation, bool(ns.quiet), bool(ns.no_plot))
        if _reusable(ns, opts):
            _remember(key, prepared)
        return self._run_cell(prepared, cell)

    def _run_cell(self, c: _Cell, cell: str | None) -> None:
        from .. import runtime
        from ..runtime.cleanup import started_by
        from ..runtime.spec import SpecError

        spec = c.spec
        if spec.pod is not None:
            from .. import workloads  # noqa: F401 - installs the pod resolver (pods are workloads)
        assert self.shell is not None
        user_ns = self.shell.user_ns
        try:
            with started_by(_after_reply):
                run = runtime.run(spec, python_globals=None if c.command else user_ns, on_output=echo)
        except runtime.ContainerInterrupted as e:
            if getattr(e, "run", None) is not None:
                user_ns[c.result_name] = self._view(e.run)
            raise
        except (SpecError, runtime.LaunchError) as e:
            raise UsageError(str(e)) from None

        view = self._view(run)
        user_ns[c.result_name] = view
        user_ns.update(run.outputs)
        if run.error and run.error.strip() not in (run.stderr or ""):  # not already streamed
            echo("stderr", run.error if run.error.endswith("\n") else run.error + "\n")
        if not c.quiet:
            view.show(plot=not c.no_plot)
        c.expectation.check("%%container" if cell is not None else "%container", run,
                            f"container {spec.name}" if spec.name else "the command" if c.command else "the cell")

    @staticmethod
    def _view(run: Any) -> Any:
        from ..display import RunView

        return RunView(run)

    # -- background containers: %container ps | logs | exec | stop | kill | wait | rm | stats ---------
    def _ps(self, rest: str) -> Any:
        """This kernel's containers and the engine daemon's (`%container serve`, the docker CLI): one table."""
        from ..display.frames import containers_frame
        from ..engine.control import listing
        from ..workloads.containers import containers

        argv = split_line(rest)
        show_all = "-a" in argv or "--all" in argv
        if not show_all:
            return containers_frame([*containers.list(all=False), *listing(all=False)])
        from ..runtime.pool import prepared

        # and what waits for the next cell
        return containers_frame([*containers.list(all=True), *listing(all=True)], prepared())

    def _logs(self, rest: str) -> None:
        c = _get(_one_ref(rest, "logs"))
        argv = split_line(rest)
        stream = "stderr" if "--stderr" in argv else "stdout" if "--stdout" in argv else None
        if not hasattr(c, "log"):  # the daemon's: its json log, through the API
            for s, data in _engine_call(lambda: list(c.logs())):
                if stream is None or s == stream:
                    echo(s, data.decode(errors="replace"))
            return
        for line in c.log:
            if stream is None or line.stream == stream:
                echo(line.stream, line.text)

    def _exec(self, rest: str) -> Any:
        expectation, argv = expect.split_flags(split_line(rest))
        if "--" in argv:
            ref_part, command = argv[:argv.index("--")], argv[argv.index("--") + 1:]
        else:
            ref_part, command = argv[:1], argv[1:]
        if len(ref_part) != 1 or not command:
            raise UsageError("usage: %container exec [--expect-exit N | --no-raise-error] NAME -- CMD [ARG...]")
        from ..engine.client import EngineError
        from ..workloads.containers import DetachedContainerError
        from ..workloads.exec import ExecError
        try:
            r = _get(ref_part[0]).exec(command, on_output=echo)
        except (DetachedContainerError, ExecError, EngineError) as e:
            raise UsageError(str(e)) from None
        expectation.check("%container exec", r, "the command")
        return None

    def _stop(self, rest: str) -> None:
        argv = split_line(rest)
        timeout = 10.0
        for flag in ("-t", "--time", "--timeout"):
            if flag in argv:
                i = argv.index(flag)
                try:
                    timeout = float(argv[i + 1])
                except (IndexError, ValueError):
                    raise UsageError(f"{flag} needs a number of seconds, like -t 2") from None
                del argv[i:i + 2]
        if not argv:
            raise UsageError("usage: %container stop [-t SECONDS] NAME [NAME...]")
        for ref in argv:
            c = _get(ref)
            _engine_call(functools.partial(c.stop, timeout=timeout))
            print(c.label)

    def _kill(self, rest: str) -> None:
        for ref in split_line(rest) or [_one_ref(rest, "kill")]:
            c = _get(ref)
            _engine_call(c.kill)
            _engine_call(functools.partial(c.wait, timeout=30))
            print(c.label)

    def _wait(self, rest: str) -> Any:
        """`%container wait [--expect ... | --no-raise-error] NAME`: its exit code, as `docker wait` prints it;
        a detached container's failure fails this cell, as a foreground one's fails its own — but not the end
        of a container `%container stop`/`kill` (or a docker client) ended on purpose."""
        expectation, argv = expect.split_flags(split_line(rest))
        c = _get(_one_ref(" ".join(argv), "wait"))
        run = _engine_call(c.wait)
        if hasattr(run, "spec"):  # not the daemon's container (exit code and OOMKilled only): a RunView
            assert self.shell is not None
            self.shell.user_ns["_container"] = self._view(run)
        print(run.exit_code)
        if getattr(c, "stop_requested", False) and not expectation.stated and not run.oom_killed:
            return None  # it ended because this notebook stopped or killed it: as `docker wait` after `docker stop`
        expectation.check("%container wait", run, f"container {c.label}")
        return None

    def _rm(self, rest: str) -> None:
        from ..workloads.containers import DetachedContainerError, containers

        argv = split_line(rest)
        force = "-f" in argv or "--force" in argv
        refs = [a for a in argv if a not in ("-f", "--force")]
        if not refs:
            raise UsageError("usage: %container rm [-f] NAME [NAME...]")
        for ref in refs:
            try:
                containers.remove(ref, force=force)
            except DetachedContainerError as e:
                from ..engine.control import find
                d = find(ref)
                if d is None:
                    raise UsageError(str(e)) from None
                _engine_call(functools.partial(d.remove, force=force))
            print(ref)

    def _bundle(self, rest: str) -> None:
        """`%container bundle [options] DIR -- CMD`: write an OCI runtime bundle (see `pycontainer bundle`)."""
        import argparse

        from ..oci.bundle import BundleError, write_bundle
        from ..runtime.parse import build_spec
        from ..runtime.spec import SpecError

        parser = argparse.ArgumentParser(prog="%container bundle", add_help=False)
        parser.add_argument("--copy-rootfs", action="store_true")
        parser.add_argument("directory")
        _args.add_arguments(parser, "cli")
        try:
            ns = parser.parse_args(split_line(rest))
        except SystemExit:
            raise UsageError("usage: %container bundle [options] DIR -- CMD [ARG...]") from None
        command = _args.command_of(ns)
        if not command:
            raise UsageError("usage: %container bundle [options] DIR -- CMD [ARG...]")
        try:
            spec = build_spec(command=command, **_args.spec_options(ns))
            print(write_bundle(spec, ns.directory, copy_rootfs=ns.copy_rootfs))
        except (SpecError, BundleError, OSError) as e:
            raise UsageError(str(e)) from None

    def _diff(self, rest: str) -> Any:
        """`%container diff NAME`: what a background container added, changed and deleted (A/C/D, with the
        size each copy takes in its writable layer), once it has ended."""
        from ..display.frames import diff_frame

        c = _get(_one_ref(rest, "diff"))
        if c.running:
            raise UsageError(f"container {c.label} is running: its layer diff is read when it ends "
                             f"(%container stop {c.label}, or wait)")
        return diff_frame(c.wait())

    def _pod(self, rest: str) -> Any:
        """`%container pod create NAME [--network NET] [-p HOST:CTR] [--hostname H] [--share pid] [--userns remap] |
        ls | inspect NAME | ns NAME | rm [-f] NAME`: pods, whose containers (`--pod NAME`) share network, IPC, UTS
        and the user namespace (--userns remap: its root is an unprivileged range of host ids)."""
        argv = split_line(rest)
        sub, args = (argv[0], argv[1:]) if argv else ("", [])
        from ..workloads import pods

        try:
            if sub == "create":
                ns = _pod_create_parser().parse_args(args)
                publish: tuple[tuple[str, int, int, str], ...] = ()
                if ns.publish:
                    from ..network import NetworkError, parse_publish
                    try:
                        publish = tuple(parse_publish(p) for p in ns.publish)
                    except NetworkError as e:
                        raise UsageError(str(e)) from None
                kinds = {k.strip() for v in ns.share or [] for k in v.split(",") if k.strip()}
                if kinds - {"net", "ipc", "uts", "user", "pid"}:
                    raise UsageError(f"pod create --share {','.join(sorted(kinds))}: a pod always shares net, ipc, "
                                     "uts (and user); add pid for one PID namespace across its containers")
                p = pods.create(ns.name, network=ns.network, publish=publish, hostname=ns.hostname,
                                share_pid="pid" in kinds,
                                userns="remap" if ns.userns in ("remap", "auto") else "private")
                print(p.name)
                return None
            if sub in ("ls", "list", "ps"):
                from ..display.pod_views import pods_frame
                return pods_frame(pods.list_pods())
            if sub in ("inspect", "ns"):
                name = _one_ref(" ".join(args), f"pod {sub}")
                from ..display.pod_views import PodView
                view = PodView(pods.inspect(name), *pods.namespace_table(name))
                return view if sub == "inspect" else view.namespaces
            if sub == "rm":
                force = any(a in ("-f", "--force") for a in args)
                names = [a for a in args if a not in ("-f", "--force")]
                if not names:
                    raise UsageError("usage: %container pod rm [-f] NAME [NAME...]")
                for name in names:
                    pods.remove(name, force=force)
                    print(name)
                return None
        except pods.PodError as e:
            raise UsageError(str(e)) from None
        raise UsageError("usage: %container pod create NAME [--network NET] [-p HOST:CTR] [--hostname H] "
                         "[--share pid] [--userns remap] | ls | inspect NAME | ns NAME | rm [-f] NAME")

    def _volume(self, rest: str) -> Any:
        """`%container volume ls | create NAME... | rm NAME...`: named volumes (`-v NAME:/path`), as
        `docker volume` has them. A volume a running container mounts is not removed."""
        from ..display.net_views import records_frame
        from ..runtime.state import volume_path
        from ..workloads import volumes
        from ..workloads.containers import containers

        argv = split_line(rest)
        usage = "usage: %container volume ls | create NAME [NAME...] | rm NAME [NAME...]"
        if not argv or argv[0] not in ("ls", "create", "rm") or (argv[0] != "ls") != bool(argv[1:]):
            raise UsageError(usage)
        if argv[0] == "ls":
            rows = [{"name": n, "path": volume_path(n, create=False)} for n in volumes.list_volumes()]
            return records_frame(rows, ["name", "path"])
        for name in argv[1:]:
            try:
                if argv[0] == "create":
                    volumes.create_volume(name)
                else:
                    users = [c.label for c in containers.list(all=False)
                             if any(m.kind == "volume" and m.source == name for m in c.spec.mounts)]
                    if users:
                        raise UsageError(f"volume {name} is in use by container {', '.join(users)}: "
                                         "remove the container first")
                    volumes.remove_volume(name)
            except ValueError as e:
                raise UsageError(str(e)) from None
            except OSError as e:
                raise UsageError(e.strerror or str(e)) from None
            print(name)
        return None

    def _stats(self, rest: str) -> Any:
        from ..display.frames import stats_frame
        from ..engine.control import listing
        from ..workloads.containers import containers

        return stats_frame([*containers.list(all=False), *listing(all=False)])


def _pod_create_parser() -> Any:
    from ._parser import UsageParser

    p = UsageParser(prog="%container pod create", add_help=False)
    p.add_argument("name")
    p.add_argument("--network", "--net", dest="network")
    p.add_argument("-p", "--publish", action="append")
    p.add_argument("--hostname")
    p.add_argument("--share", action="append")
    p.add_argument("--userns", choices=("private", "remap", "auto"), default="private")
    return p


def _one_ref(rest: str, sub: str) -> str:
    refs = [a for a in split_line(rest) if not a.startswith("-")]
    if len(refs) != 1:
        raise UsageError(f"usage: %container {sub} NAME")
    return refs[0]


_SUBCOMMANDS = {"ps": ContainerMagics._ps, "logs": ContainerMagics._logs, "exec": ContainerMagics._exec,
                "stop": ContainerMagics._stop, "kill": ContainerMagics._kill, "wait": ContainerMagics._wait,
                "rm": ContainerMagics._rm, "stats": ContainerMagics._stats, "bundle": ContainerMagics._bundle,
                "diff": ContainerMagics._diff, "pod": ContainerMagics._pod, "volume": ContainerMagics._volume}
_SUBCOMMANDS["doctor"] = _doctor  # %container doctor: what works here (magics/doctor.py)
_SUBCOMMANDS["kube"] = _container_kube  # %container kube NAME: as Kubernetes YAML (magics/kube.py)
_SUBCOMMANDS.update(_ENGINE_VERBS)  # serve, pause, unpause, update, top, rename, commit, cp, export (engine_verbs.py)

__all__ = ["ContainerMagics"]
