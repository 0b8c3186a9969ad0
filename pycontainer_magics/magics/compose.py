"""`%%compose`: multi-container projects from a compose file, as `docker compose` runs them.

    %%compose [-p PROJECT] up [-d] [--follow-for 10s]   the cell is the compose file
    %%compose [-p PROJECT] config           validate it, show the services in start order
    %compose ps|logs [SERVICE...]|stats|down [-v] [-t SECONDS] [-p PROJECT]

A thin skin over `workloads.compose`; errors are one UsageError line.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class

from ._parser import UsageParser, echo, split_line

FOLLOW_FOR = 10.0  # seconds `up` without -d follows the logs, at most, before leaving the project running


def _parser() -> argparse.ArgumentParser:
    p = UsageParser(prog="%compose", add_help=False)
    p.add_argument("-p", "--project-name", dest="project")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=UsageParser)
    up = sub.add_parser("up", add_help=False)
    up.add_argument("-d", "--detach", action="store_true")
    up.add_argument("--wait-timeout", type=float, default=120.0)
    up.add_argument("--follow-for", default=None)
    up.add_argument("-p", "--project-name", dest="project_sub")
    down = sub.add_parser("down", add_help=False)
    down.add_argument("-v", "--volumes", action="store_true")
    down.add_argument("-t", "--timeout", type=float)
    down.add_argument("-p", "--project-name", dest="project_sub")
    ps = sub.add_parser("ps", add_help=False)
    ps.add_argument("-a", "--all", action="store_true")
    ps.add_argument("-p", "--project-name", dest="project_sub")
    logs = sub.add_parser("logs", add_help=False)
    logs.add_argument("services", nargs="*")
    logs.add_argument("-p", "--project-name", dest="project_sub")
    sub.add_parser("ls", add_help=False)
    for name in ("stats", "config"):
        sub.add_parser(name, add_help=False).add_argument("-p", "--project-name", dest="project_sub")
    return p


@magics_class
class ComposeMagics(Magics):
    """The `%%compose` magic."""

    @line_cell_magic
    def compose(self, line: str, cell: str | None = None) -> Any:
        """Run a multi-container project; the cell body is a compose file (the Compose Specification's
        common subset: services with image or build, command, entrypoint, environment, ports, volumes,
        tmpfs, networks, depends_on with conditions, healthcheck, restart, mem_limit/cpus/pids_limit and
        deploy.resources.limits, hostname, working_dir, user, container_name).

        Usage::

            %%compose [-p PROJECT] up [-d] [--follow-for 10s]
                                                bring it up (without -d: follow the logs until every
                                                service has ended, for 10 s at most or until interrupted;
                                                the project then keeps running, as with -d)
            %%compose [-p PROJECT] config       validate, and show the services in start order
            %compose ps [-a] [-p PROJECT]       one row per running service (-a: ended ones too)
            %compose logs [SERVICE...]          merged in time order, `service | line`
            %compose stats                      memory, CPU and pids per service (a DataFrame)
            %compose down [-v] [-t SECONDS]     remove the containers and networks (-v: named volumes)
            %compose ls                         the projects of this kernel

        Services reach each other by service name on the project's network `<project>_default`. The
        project name is -p, else the file's `name:`, else the current directory's name. `up` stores
        the project as `_compose` (`.ps()`, `.logs()`, `.stats()`, `.down()`).
        """
        argv = split_line(line)
        if "--to-kube" in argv:  # %%compose [-p PROJECT] --to-kube: the project as Kubernetes YAML
            argv.remove("--to-kube")
            if argv and (len(argv) != 2 or argv[0] not in ("-p", "--project-name")):
                raise UsageError("usage: %%compose [-p PROJECT] --to-kube (the cell is the compose file)")
            from ..workloads.compose import ComposeError
            from .kube import compose_to_kube
            try:
                return compose_to_kube(self, cell, argv[-1] if argv else None)
            except ComposeError as e:
                raise UsageError(str(e)) from None
        if not argv:
            raise UsageError("usage: %%compose [-p PROJECT] up [-d] | config, or %compose ps | logs | stats | "
                             "down [-v] [-p PROJECT] | ls")
        ns = _parser().parse_args(argv)
        project = getattr(ns, "project_sub", None) or ns.project
        from ..workloads.compose import ComposeError

        try:
            return getattr(self, f"_{ns.cmd}")(ns, project, cell)
        except ComposeError as e:
            raise UsageError(str(e)) from None

    # -- helpers -----------------------------------------------------------------------------------------
    def _load(self, cell: str | None, project: str | None) -> Any:
        from ..workloads.compose import load

        if not cell or not cell.strip():
            raise UsageError("%%compose up needs the compose file as the cell body (services: ...)")
        return load(cell, project=project)

    def _project(self, project: str | None, cell: str | None) -> Any:
        from ..workloads.compose import ComposeError, load
        from ..workloads.compose import project as P

        if project is None and cell and cell.strip():
            project = load(cell).project
        if project is None:
            up = P.list_projects()
            if len(up) == 1:
                return up[0]
            from ..workloads.compose.model import default_project_name
            project = default_project_name()
            if not any(p.name == project for p in up) and up:
                raise ComposeError(f"{len(up)} projects are up ({', '.join(p.name for p in up)}): name one with -p")
        return P.get(project)

    # -- commands -----------------------------------------------------------------------------------------
    def _up(self, ns: argparse.Namespace, project: str | None, cell: str | None) -> Any:
        from ..display.compose_views import ps_frame
        from ..runtime.parse import parse_duration
        from ..runtime.spec import SpecError
        from ..workloads.compose import project as P

        try:
            bound = FOLLOW_FOR if ns.follow_for is None else parse_duration(ns.follow_for, "--follow-for")
        except SpecError as e:
            raise UsageError(str(e)) from None
        cf = self._load(cell, project)
        p = P.up(cf, on_output=echo, timeout=ns.wait_timeout)
        assert self.shell is not None
        self.shell.user_ns["_compose"] = p
        if ns.detach:
            return ps_frame(p.ps())
        if not self._follow(p, bound):
            # A notebook cell must end ("Run all", nbval): docker compose would follow for ever.
            echo("stderr", f"{p.name}: still running after following its logs; it keeps running (%compose logs, "
                           f"%compose ps, %compose down -p {p.name})\n")
        return ps_frame(p.ps())

    def _follow(self, p: Any, bound: float) -> bool:
        """Print the merged logs as they come until every service has ended for good (True), for `bound`
        seconds at most, or until interrupted (False: the project keeps running)."""
        printed: dict[str, int] = {}
        width = max(len(n) for n in p.file.services)

        def flush(final: bool) -> None:
            lines = p.log_lines()
            by: dict[str, list[str]] = {}
            for _, s, _, text in lines:
                by.setdefault(s, []).append(text)
            out = []
            for s, texts in by.items():
                done = len(texts) if final else max(len(texts) - 1, 0)  # the last may be unfinished
                for text in texts[printed.get(s, 0):done]:
                    out.append(f"{s:<{width}} | {text}\n")
                printed[s] = max(printed.get(s, 0), done)
            if out:
                echo("stdout", "".join(out))

        deadline = time.monotonic() + bound
        try:
            while not p.wait(min(0.2, max(deadline - time.monotonic(), 0))):
                flush(False)
                if time.monotonic() >= deadline:
                    flush(True)
                    return False
        except KeyboardInterrupt:
            flush(True)
            return False
        flush(True)
        return True

    def _config(self, ns: argparse.Namespace, project: str | None, cell: str | None) -> Any:
        from ..display.compose_views import config_frame

        return config_frame(self._load(cell, project))

    def _down(self, ns: argparse.Namespace, project: str | None, cell: str | None) -> None:
        for line in self._project(project, cell).down(volumes=ns.volumes, timeout=ns.timeout):
            print(" " + line)

    def _ps(self, ns: argparse.Namespace, project: str | None, cell: str | None) -> Any:
        from ..display.compose_views import ps_frame

        return ps_frame(self._project(project, cell).ps(all=ns.all))

    def _logs(self, ns: argparse.Namespace, project: str | None, cell: str | None) -> None:
        echo("stdout", self._project(project, cell).logs(ns.services or None))

    def _ls(self, ns: argparse.Namespace, project: str | None, cell: str | None) -> Any:
        from ..display.compose_views import projects_frame
        from ..workloads.compose import project as P

        return projects_frame(P.list_projects())

    def _stats(self, ns: argparse.Namespace, project: str | None, cell: str | None) -> Any:
        from ..display.compose_views import compose_stats_frame

        return compose_stats_frame(self._project(project, cell).stats())


__all__ = ["ComposeMagics"]
