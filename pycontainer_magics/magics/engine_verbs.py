"""`%container serve|pause|unpause|update|top|rename|commit|cp|export`: the engine daemon from a notebook,
and the verbs Docker has for a running container, on this kernel's containers and the daemon's alike.

    %container serve [--live-restore] | serve stop | serve status | serve requests [SINCE]
    %container pause NAME / unpause NAME
    %container update NAME --memory 128m [--memory-swap S] [--cpus 0.5] [--pids-limit N]
    %container top NAME                       (a DataFrame: the container's processes)
    %container rename NAME NEW
    %container commit NAME [REPO[:TAG]] [-c INSTRUCTION]   (the daemon's containers: their layer is kept)
    %container cp NAME:PATH DEST  |  cp SRC NAME:DIR
    %container export NAME FILE.tar
"""

from __future__ import annotations

import os
from typing import Any

from IPython.core.error import UsageError

from ._parser import split_line
from .refs import engine_call, get_container


def _serve(self: Any, rest: str) -> Any:
    from ..engine import control

    argv = split_line(rest)
    action = argv[0] if argv and not argv[0].startswith("-") else "start"
    if action == "stop":
        stopped = control.stop()
        from ..engine.client import connect, default_socket
        if os.environ.get("DOCKER_HOST") == "unix://" + default_socket():
            del os.environ["DOCKER_HOST"]
        print("stopped" if stopped else "no daemon was running")
        return None
    if action == "status":
        from ..engine.client import connect
        c = connect()
        print(f"running, DOCKER_HOST={c.host}, pid {control.daemon_pid()}" if c else "not running")
        return None
    if action == "requests":
        # `%container serve requests [SINCE]`: the API requests of the daemon (SINCE: seconds since the epoch)
        from ..display.api_views import api_requests_frame
        from ..engine.core import access_log_path
        since = float(argv[1]) if len(argv) > 1 else None
        if not os.path.exists(access_log_path()):
            raise UsageError("no request log yet: start the daemon with %container serve")
        return api_requests_frame(access_log_path(), since)
    if action != "start":
        raise UsageError("usage: %container serve [start] [--live-restore] | serve stop | serve status | "
                         "serve requests [SINCE]")
    c = engine_call(lambda: control.start_background(live_restore="--live-restore" in argv))
    os.environ["DOCKER_HOST"] = c.host  # `!docker ...` and docker.from_env() in this kernel find it
    print(f"DOCKER_HOST={c.host}")
    return None


def _one(rest: str, verb: str) -> Any:
    refs = split_line(rest)
    if len(refs) != 1:
        raise UsageError(f"usage: %container {verb} NAME")
    return get_container(refs[0])


def _pause(self: Any, rest: str) -> None:
    c = _one(rest, "pause")
    engine_call(c.pause)
    print(c.label)


def _unpause(self: Any, rest: str) -> None:
    c = _one(rest, "unpause")
    engine_call(c.unpause)
    print(c.label)


def _update(self: Any, rest: str) -> None:
    """New limits on a running container, in its cgroup at once (as `docker update`)."""
    from ..runtime.parse import parse_cpus, parse_int, parse_memory_swap, parse_size
    from ..runtime.spec import SpecError
    from ._parser import UsageParser

    p = UsageParser(prog="%container update", add_help=False)
    p.add_argument("name")
    p.add_argument("--memory", "-m")
    p.add_argument("--memory-swap")
    p.add_argument("--cpus")
    p.add_argument("--cpu-shares")
    p.add_argument("--pids-limit")
    ns = p.parse_args(split_line(rest))
    try:
        limits: dict[str, Any] = {"memory": parse_size(ns.memory) if ns.memory else None,
                  "memory_swap": parse_memory_swap(ns.memory_swap) if ns.memory_swap else None,
                  "cpus": parse_cpus(ns.cpus) if ns.cpus else None,
                  "cpu_shares": parse_int(ns.cpu_shares, "--cpu-shares") if ns.cpu_shares else None,
                  "pids_limit": parse_int(ns.pids_limit, "--pids-limit", unlimited=-1) if ns.pids_limit else None}
    except SpecError as e:
        raise UsageError(str(e)) from None
    if not any(v is not None for v in limits.values()):
        raise UsageError("%container update NAME needs a limit: --memory, --memory-swap, --cpus, --cpu-shares "
                         "or --pids-limit")
    c = get_container(ns.name)
    if hasattr(c, "log"):  # this kernel's: straight into its cgroup
        from ..linux.cgroups import CgroupLimits
        from ..workloads.containers import DetachedContainerError
        try:
            c.update(CgroupLimits(memory=limits["memory"], memory_swap=limits["memory_swap"], cpus=limits["cpus"],
                                  cpu_shares=limits["cpu_shares"], pids_max=limits["pids_limit"]))
        except (DetachedContainerError, OSError) as e:
            raise UsageError(f"%container update {ns.name}: {e}") from None
    else:
        engine_call(lambda: c.update(**limits))
    print(c.label)


def _top(self: Any, rest: str) -> Any:
    import pandas as pd

    c = _one(rest, "top")
    if hasattr(c, "log"):
        import subprocess

        from ..workloads.containers import DetachedContainerError
        try:
            pids = c.top()
        except DetachedContainerError as e:
            raise UsageError(str(e)) from None
        r = subprocess.run(["ps", "-o", "uid,pid,ppid,stime,time,args", "-p", ",".join(map(str, pids))],
                           capture_output=True, text=True)
        lines = r.stdout.splitlines()
        titles = lines[0].split() if lines else ["UID", "PID", "PPID", "STIME", "TIME", "CMD"]
        rows = [ln.split(None, len(titles) - 1) for ln in lines[1:]]
        return pd.DataFrame(rows, columns=titles)
    t = engine_call(c.top)
    return pd.DataFrame(t["Processes"], columns=t["Titles"])


def _rename(self: Any, rest: str) -> None:
    argv = split_line(rest)
    if len(argv) != 2:
        raise UsageError("usage: %container rename NAME NEW_NAME")
    c = get_container(argv[0])
    if hasattr(c, "log"):
        from ..workloads.containers import DetachedContainerError, containers
        try:
            containers.rename(argv[0], argv[1])
        except DetachedContainerError as e:
            raise UsageError(str(e)) from None
    else:
        engine_call(lambda: c.rename(argv[1]))
    print(argv[1])


def _commit(self: Any, rest: str) -> None:
    words = split_line(rest)
    argv: list[str] = []
    changes: list[str] = []
    while words:  # -c/--change 'INSTRUCTION', as docker commit's
        w = words.pop(0)
        if w in ("-c", "--change") and words:
            changes.append(words.pop(0))
        elif w.startswith("--change="):
            changes.append(w.split("=", 1)[1])
        else:
            argv.append(w)
    if len(argv) not in (1, 2):
        raise UsageError("usage: %container commit NAME [REPOSITORY[:TAG]] [-c 'CMD [\"x\"]' ...]")
    c = get_container(argv[0])
    if hasattr(c, "log"):
        raise UsageError(f"%container commit {argv[0]}: this kernel's containers keep their writable layer in "
                         "memory, gone with them; commit works on the engine daemon's containers (whose layer is kept "
                         "on disk): start it with %container serve and run the container with docker run or docker-py")
    print(engine_call(lambda: c.commit(argv[1] if len(argv) == 2 else None, changes)))


def _cp(self: Any, rest: str) -> None:
    argv = split_line(rest)
    if len(argv) != 2 or (":" in argv[0]) == (":" in argv[1]):
        raise UsageError("usage: %container cp NAME:PATH DEST | %container cp SRC NAME:DIR")
    src, dst = argv
    if ":" in src:
        ref, path = src.split(":", 1)
        c = get_container(ref)
        os.makedirs(dst, exist_ok=True)
        _do(lambda: c.copy_out(path, dst))
    else:
        ref, path = dst.split(":", 1)
        c = get_container(ref)
        if not os.path.exists(src):
            raise UsageError(f"%container cp: {src}: no such file or directory")
        _do(lambda: c.copy_in(src, path))


def _export(self: Any, rest: str) -> None:
    argv = split_line(rest)
    if len(argv) != 2:
        raise UsageError("usage: %container export NAME FILE.tar")
    c = get_container(argv[0])
    n = _do(lambda: c.export(argv[1]))
    print(f"{argv[1]}: {n} bytes")


def _do(fn: Any) -> Any:
    from ..workloads.containers import DetachedContainerError

    try:
        return engine_call(fn)
    except (DetachedContainerError, OSError) as e:
        raise UsageError(str(e)) from None


VERBS = {"serve": _serve, "pause": _pause, "unpause": _unpause, "update": _update, "top": _top, "rename": _rename,
         "commit": _commit, "cp": _cp, "export": _export}
