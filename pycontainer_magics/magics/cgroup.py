"""`%cgroup`: explore cgroups and the OOM killer interactively (v1 and v2 alike), and `%%cgroup run NAME`.

A thin skin over `lab/` (groups, group_run, experiments) and `display.cgroup_views`: parse, call, show. Each subcommand
returns its data (DataFrame or GroupRun) and stores it as `_cgroup`.

    %cgroup tree [--root PATH] [--depth N]      %cgroup ls [--pid PID]        %cgroup list
    %cgroup create NAME [limits]                %cgroup set NAME [limits]     %cgroup rm NAME | prune
    %cgroup stats NAME   %cgroup files NAME     %cgroup watch NAME [--for 30s] [--interval 200ms]
    %cgroup oom [--hog 100M] [--memory 50M] [--memory-high 40M] [--oom-group] [--oom-kill-disable]
                [--memory-swap SIZE] [--slider]
    %cgroup cpu [--cpus 0.2] [--for 1s]         %cgroup compete [--shares 1024 256 | --cpus-each 0.5 1]
    %cgroup forkbomb [--pids-limit 20] [--for 1s]
    %%cgroup run NAME [-- CMD ...]              (the cell: Python, or CMD's arguments' stdin-less run)
"""

from __future__ import annotations

import argparse
import os
from typing import Any, NoReturn

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.display import display

from ._parser import echo, split_line

_groups: Any = None


def groups() -> Any:
    """The process-wide Groups registry (created on first use)."""
    global _groups
    if _groups is None:
        from ..lab.groups import Groups

        _groups = Groups()
    return _groups


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"%cgroup {self.prog.split()[-1] if ' ' in self.prog else ''}: {message}".replace(
            "%cgroup %cgroup", "%cgroup"))

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            raise UsageError(message.strip())
        raise UsageError("%cgroup: see %cgroup? for the subcommands")


def _limit_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--memory", "-m", help="memory limit, like 100M (-1: unlimited)")
    p.add_argument("--memory-swap", help="memory + swap, like 200M (-1: unlimited swap)")
    p.add_argument("--memory-high", help="v2 memory.high: throttle above it (max: none)")
    p.add_argument("--cpus", help="CPU quota in CPUs, like 0.5 (-1: none)")
    p.add_argument("--cpu-shares", help="relative CPU weight (v1 shares; v2 converted to cpu.weight)")
    p.add_argument("--cpuset-cpus", help="CPUs to run on, like 0 or 0-1")
    p.add_argument("--pids-limit", help="pids.max (-1: unlimited)")
    p.add_argument("--oom-group", choices=["on", "off"], help="v2 memory.oom.group")
    p.add_argument("--oom-kill-disable", choices=["on", "off"], help="v1: disable the OOM killer")


def _parser() -> _Parser:
    top = _Parser(prog="%cgroup", add_help=False)
    sub = top.add_subparsers(dest="cmd", parser_class=_Parser)
    p = sub.add_parser("tree")
    p.add_argument("--root", default="/")
    p.add_argument("--depth", type=int, default=3)
    p = sub.add_parser("ls")
    p.add_argument("--pid", type=int, default=None)
    sub.add_parser("list")
    for name in ("create", "set"):
        p = sub.add_parser(name)
        p.add_argument("name")
        _limit_options(p)
    for name in ("stats", "files", "rm", "psi"):
        p = sub.add_parser(name)
        p.add_argument("name", nargs="?" if name == "psi" else None)
    sub.add_parser("prune")
    p = sub.add_parser("watch")
    p.add_argument("name")
    p.add_argument("--for", dest="duration", default="30s")
    p.add_argument("--interval", default="200ms")
    p = sub.add_parser("oom")
    p.add_argument("--hog", default="100M")
    p.add_argument("--memory", "-m", default="50M")
    p.add_argument("--memory-swap")
    p.add_argument("--memory-high")
    p.add_argument("--oom-group", action="store_true")
    p.add_argument("--oom-kill-disable", action="store_true")
    p.add_argument("--timeout", default=None, help="default 30s (3s with --oom-kill-disable)")
    p.add_argument("--slider", action="store_true")
    p = sub.add_parser("cpu")
    p.add_argument("--cpus", default="0.2")
    p.add_argument("--for", dest="duration", default="1s")
    p = sub.add_parser("compete")
    p.add_argument("--shares", nargs=2, default=None)
    p.add_argument("--cpus-each", nargs=2, default=None)
    p.add_argument("--for", dest="duration", default="1s")
    p.add_argument("--cpuset", default="0")
    p = sub.add_parser("forkbomb")
    p.add_argument("--pids-limit", default="20")
    p.add_argument("--for", dest="duration", default="1s")
    return top


def _spec_call(fn: Any, *args: Any) -> Any:
    from ..runtime.spec import SpecError

    try:
        return fn(*args)
    except SpecError as e:
        raise UsageError(str(e)) from None


def _size(value: str | None, flag: str) -> int | None:
    if value is None:
        return None
    if value.strip() == "-1":
        return -1
    from ..runtime.parse import parse_size

    return int(_spec_call(parse_size, value, flag))


def _limits(ns: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    from ..linux.cgroups import CgroupLimits
    from ..runtime.parse import parse_cpus, parse_int

    cpus = None
    if ns.cpus is not None:
        cpus = -1.0 if ns.cpus.strip() == "-1" else _spec_call(parse_cpus, ns.cpus)
    limits = CgroupLimits(
        memory=_size(ns.memory, "--memory"),
        memory_swap=_size(ns.memory_swap, "--memory-swap"),
        cpus=cpus,
        cpu_shares=None if ns.cpu_shares is None else _spec_call(parse_int, ns.cpu_shares, "--cpu-shares"),
        cpuset_cpus=ns.cpuset_cpus,
        pids_max=None if ns.pids_limit is None else _spec_call(parse_int, ns.pids_limit, "--pids-limit"),
    )
    extra: dict[str, Any] = {}
    if ns.memory_high is not None:
        if ns.memory_high.strip() == "max":
            extra["memory_high_max"] = True
        else:
            extra["memory_high"] = _size(ns.memory_high, "--memory-high")
    if ns.oom_group is not None:
        extra["oom_group"] = ns.oom_group == "on"
    if ns.oom_kill_disable is not None:
        extra["oom_kill_disable"] = ns.oom_kill_disable == "on"
    return limits, extra


def _duration(value: str, flag: str) -> float:
    from ..runtime.parse import parse_duration

    return float(_spec_call(parse_duration, value, flag))


@magics_class
class CgroupMagics(Magics):
    """`%cgroup SUBCOMMAND ...` and `%%cgroup run NAME`."""

    @line_cell_magic
    def cgroup(self, line: str, cell: str | None = None) -> Any:
        """Explore cgroups (v1 and v2): tree, ls, list, create, set, stats, files, watch, rm, prune, psi,
        and the experiments oom, cpu, compete, forkbomb. `%%cgroup run NAME` runs the cell (Python, in a
        fork of this kernel) inside group NAME; `%%cgroup run NAME -- CMD ARGS` runs a command instead.

        Examples::

            %cgroup create demo --memory 100M --cpus 0.5 --pids-limit 50
            %cgroup set demo --memory 80M
            %cgroup stats demo
            %cgroup oom --hog 120M --memory 60M --slider
            %cgroup rm demo
        """
        from ..linux.cgroups import CgroupError

        argv = split_line(line)
        if cell is not None:
            return self._run_cell(argv, cell)
        if not argv:
            raise UsageError("%cgroup needs a subcommand: tree, ls, list, create, set, stats, files, watch, rm, "
                             "prune, psi, oom, cpu, compete, forkbomb (and %%cgroup run NAME)")
        if argv[0] == "run":
            raise UsageError("run is a cell magic: %%cgroup run NAME, with the code in the cell")
        ns = _parser().parse_args(argv)
        try:
            result = getattr(self, "_do_" + ns.cmd)(ns)
        except CgroupError as e:
            where = f" ({e.filename})" if e.filename else ""
            raise UsageError(f"%cgroup {ns.cmd}: {e.strerror or e}{where}") from None
        if self.shell is not None and result is not None:
            self.shell.user_ns["_cgroup"] = result
        return result

    # -- reading ------------------------------------------------------------------------------------
    def _header(self, what: str, version: str, note: str = "") -> None:
        from ..linux.cgroups import detect_layout

        print(f"[cgroup {version}, {detect_layout()} layout] {what}" + (f"\nnote: {note}" if note else ""))

    def _do_tree(self, ns: argparse.Namespace) -> Any:
        from ..display.cgroup_views import tree_frame
        from ..linux.cgroups import explore

        df = tree_frame(explore.walk_tree(start=ns.root, max_depth=ns.depth))
        self._header(f"hierarchy below {ns.root} (depth {ns.depth}, read-only)", df.attrs["cgroup"],
                     "v1: the union of the memory, cpu, cpuacct, pids and cpuset hierarchies"
                     if df.attrs["cgroup"] == "v1" else "")
        return df

    def _do_ls(self, ns: argparse.Namespace) -> Any:
        from ..display.cgroup_views import membership_frame
        from ..linux.cgroups import explore

        pid = ns.pid if ns.pid is not None else os.getpid()
        df = membership_frame(explore.process_cgroups(pid))
        self._header(f"cgroups of pid {pid}", df.attrs["cgroup"],
                     "v1: one line per hierarchy; the 0:: line is the unified (v2) tree" if df.attrs["cgroup"] == "v1"
                     else "")
        return df

    def _do_list(self, ns: argparse.Namespace) -> Any:
        import pandas as pd

        g = groups()
        rows = []
        for name in g.names():
            cg = g.get(name)
            st = cg.stats()
            rows.append({"name": name, "procs": len(cg.procs()), "memory": st.memory_current,
                         "memory_limit": st.memory_limit, "pids_limit": st.pids_limit,
                         "paths": " ".join(sorted(set(cg.paths.values())))})
        df = pd.DataFrame(rows, columns=["name", "procs", "memory", "memory_limit", "pids_limit", "paths"])
        df.attrs["cgroup"] = g.version
        self._header("groups made by %cgroup create", g.version)
        return df

    def _do_stats(self, ns: argparse.Namespace) -> Any:
        from ..display.cgroup_views import stats_frame

        cg = groups().get(ns.name)
        df = stats_frame(cg)
        self._header(f"counters of {ns.name}", cg.version, df.attrs.get("note", ""))
        return df

    def _do_files(self, ns: argparse.Namespace) -> Any:
        from ..display.cgroup_views import files_frame
        from ..linux.cgroups import explore

        cg = groups().get(ns.name)
        df = files_frame(explore.control_files(cg), cg.version)
        self._header(f"control files of {ns.name} ({len(df)})", cg.version)
        return df

    def _do_psi(self, ns: argparse.Namespace) -> Any:
        import pandas as pd

        from ..linux.cgroups import explore

        g = groups()
        cg = g.get(ns.name) if ns.name else None
        pr = explore.pressure(cg)
        version = cg.version if cg is not None else g.version
        if pr is None:
            print(f"[cgroup {version}] the kernel exposes no pressure stall information (boot with psi=1)")
            return None
        df = pd.DataFrame([{"resource": r, **getattr(pr, r)} for r in ("cpu", "memory", "io")])
        df.attrs["cgroup"] = version
        self._header(f"PSI ({pr.scope})", version, pr.note)
        return df

    # -- writing ------------------------------------------------------------------------------------
    def _do_create(self, ns: argparse.Namespace) -> Any:
        limits, extra = _limits(ns)
        g = groups()
        cg = g.create(ns.name, limits, **{k: v for k, v in extra.items() if k != "memory_high_max"})
        self._header(f"created {ns.name}: " + " ".join(sorted(set(cg.paths.values()))), cg.version)
        return None

    def _do_set(self, ns: argparse.Namespace) -> Any:
        from ..lab.groups import set_extra

        limits, extra = _limits(ns)
        cg = groups().get(ns.name)
        cg.set_limits(limits)
        set_extra(cg, **extra)
        self._header(f"updated {ns.name}", cg.version)
        return None

    def _do_rm(self, ns: argparse.Namespace) -> Any:
        g = groups()
        g.remove(ns.name)
        self._header(f"removed {ns.name}", g.version)
        return None

    def _do_prune(self, ns: argparse.Namespace) -> Any:
        g = groups()
        removed = g.prune()
        self._header("pruned: " + (", ".join(removed) or "nothing"), g.version)
        return removed

    def _do_watch(self, ns: argparse.Namespace) -> Any:
        from ..display.cgroup_views import WatchView, samples_frame
        from ..lab.group_run import watch

        cg = groups().get(ns.name)
        duration = _duration(ns.duration, "--for")
        interval = _duration(ns.interval, "--interval")
        st = cg.stats()
        view = WatchView(ns.name, cg.version, memory_limit=st.memory_limit, pids_limit=st.pids_limit)
        display(view)
        samples = watch(cg, duration, interval, on_sample=view.push)
        view.refresh()
        return samples_frame(samples, cg.version)

    # -- experiments --------------------------------------------------------------------------------
    def _show_run(self, r: Any, title: str = "") -> Any:
        from ..display.cgroup_views import run_summary
        from ..display.experiment_plots import plot_experiment
        from ..display.plots import ensure_figure_formatter

        print(run_summary(r))
        ensure_figure_formatter()
        display(plot_experiment(r, title))
        return r

    def _do_oom(self, ns: argparse.Namespace) -> Any:
        from ..lab.experiments import oom_experiment

        hog = _size(ns.hog, "--hog") or 0
        memory = _size(ns.memory, "--memory")
        swap = _size(ns.memory_swap, "--memory-swap")
        high = _size(ns.memory_high, "--memory-high")
        timeout = _duration(ns.timeout or ("3s" if ns.oom_kill_disable else "30s"), "--timeout")
        kw: dict[str, Any] = {"swap": swap, "memory_high": high, "oom_group": True if ns.oom_group else None,
                              "oom_kill_disable": True if ns.oom_kill_disable else None, "timeout": timeout}

        def run(limit: int) -> Any:
            return oom_experiment(hog, limit, **kw)

        if ns.slider:
            from ..display.cgroup_views import OomExplorer

            ex = OomExplorer(run, hog, (memory or hog) // 2**20, max(64, 2 * hog // 2**20))
            ex.update()
            return ex  # shown once, as the cell's value (displaying it too showed the widget twice)
        return self._show_run(run(memory if memory is not None else -1))

    def _do_cpu(self, ns: argparse.Namespace) -> Any:
        from ..lab.experiments import cpu_experiment
        from ..runtime.parse import parse_cpus

        cpus = None if ns.cpus.strip() in ("-1", "none") else _spec_call(parse_cpus, ns.cpus)
        r = cpu_experiment(_duration(ns.duration, "--for"), cpus)
        return self._show_run(r)

    def _do_compete(self, ns: argparse.Namespace) -> Any:
        from ..display.experiment_plots import plot_shares
        from ..display.plots import ensure_figure_formatter
        from ..lab.experiments import cpu_competition
        from ..linux.cgroups import CgroupLimits

        if ns.cpus_each:
            a, b = (CgroupLimits(cpus=float(x)) for x in ns.cpus_each)
        else:
            sh = ns.shares or ["1024", "256"]
            try:
                a, b = (CgroupLimits(cpu_shares=int(x)) for x in sh)
            except ValueError:
                raise UsageError(f"invalid --shares {sh}: expected two whole numbers, like 1024 256") from None
        c = cpu_competition(a, b, _duration(ns.duration, "--for"), cpuset=ns.cpuset or None)
        print(f"[cgroup {c.runs[0].version}] {c.labels[0]}: {c.cpu_seconds[0]:.2f} CPU s, "
              f"{c.labels[1]}: {c.cpu_seconds[1]:.2f} CPU s (ratio {c.ratio:.2f})")
        ensure_figure_formatter()
        display(plot_shares(c))
        return c

    def _do_forkbomb(self, ns: argparse.Namespace) -> Any:
        from ..lab.experiments import fork_bomb
        from ..runtime.parse import parse_int

        n = _spec_call(parse_int, ns.pids_limit, "--pids-limit")
        r = fork_bomb(n, _duration(ns.duration, "--for"))
        return self._show_run(r)

    # -- %%cgroup run -------------------------------------------------------------------------------
    def _run_cell(self, argv: list[str], cell: str) -> Any:
        from ..lab.group_run import run_in_group
        from ..linux.cgroups import CgroupError
        from .expect import split_flags

        expectation, argv = split_flags(argv)
        if len(argv) < 2 or argv[0] != "run":
            raise UsageError("usage: %%cgroup run NAME [--expect OUTCOME | --no-raise-error] [-- CMD ARGS...]")
        command = argv[3:] if len(argv) > 2 and argv[2] == "--" else None
        if len(argv) > 2 and command is None:
            raise UsageError(f"unexpected {argv[2]!r}: %%cgroup run NAME [-- CMD ARGS...]")
        if command == []:
            raise UsageError("a command is needed after --")
        try:
            cg = groups().get(argv[1])
            user_ns = self.shell.user_ns if self.shell is not None else {}
            r = run_in_group(cg, python_code=None if command else cell, command=command,
                             python_globals=None if command else user_ns, on_output=echo)
        except CgroupError as e:
            raise UsageError(f"%%cgroup run: {e.strerror or e}" + (f" ({e.filename})" if e.filename else "")) from None
        if r.error:
            echo("stderr", r.error if r.error.endswith("\n") else r.error + "\n")
        if r.exit_code != 0:
            from ..display.cgroup_views import run_summary

            print(run_summary(r))
        if self.shell is not None:
            self.shell.user_ns["_cgroup"] = r
        expectation.check("%%cgroup run", r, "the cell" if command is None else "the command")
        return None


__all__ = ["CgroupMagics"]
