"""`python -m pycontainer_magics.kernel.in_cgroup [--memory 2G] [--cpus 1] [--pids N] [--hostname H] --tag HEX
-- CMD...`

Create a cgroup of the project's own with these limits, join it, then exec CMD (the kernel): the kernel's
first instruction already runs under the limits, and everything it starts inherits them. The cgroup is
named `kernel-<pid>-0-<tag>`: the pid is the kernel's own (exec keeps it), so `prune` removes the cgroup
of a killed kernel, and the provisioner finds it by its tag to remove it when the kernel ends.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence

from ..linux import libc
from ..linux.cgroups import CgroupLimits, open_hierarchy
from ..linux.namespaces import CLONE_NEWUTS

ENV = "PYCONTAINER_KERNEL_CGROUP"  # set for the kernel: the name of its cgroup
EXIT_SETUP = 125


def cgroup_name(pid: int, tag: str) -> str:
    return f"kernel-{pid}-0-{tag}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pycontainer_magics.kernel.in_cgroup")
    parser.add_argument("--memory")
    parser.add_argument("--cpus")
    parser.add_argument("--pids")
    parser.add_argument("--hostname")
    parser.add_argument("--tag", required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    ns = parser.parse_args(argv)
    command = ns.command[1:] if ns.command[:1] == ["--"] else ns.command
    if not command or not re.fullmatch(r"[0-9a-f]{4,32}", ns.tag):
        parser.error("give --tag HEX and the kernel's command after --")
    from ..runtime.spec import SpecError
    from .kernelspec import parse_limits

    cg = None
    try:
        lim = parse_limits(ns.memory, ns.cpus, ns.pids, ns.hostname)
        h = open_hierarchy()
        cg = h.create(cgroup_name(os.getpid(), ns.tag),
                      CgroupLimits(memory=lim.memory_bytes, cpus=lim.cpus, pids_max=lim.pids))
        # Single-threaded here: writing 0 moves this very process (v1 `tasks`, v2 `cgroup.procs`).
        for f in cg.join_files():
            with open(f, "w") as fh:
                fh.write("0")
        os.environ[ENV] = cg.name
        if lim.hostname is not None:  # a UTS namespace of its own: the lecture's "this kernel is contained"
            libc.unshare(CLONE_NEWUTS)
            libc.sethostname(lim.hostname)
        os.execvp(command[0], command)
    except (OSError, SpecError) as e:
        if cg is not None:
            try:
                cg.remove()
            except OSError:
                pass
        sys.stderr.write(f"pycontainer: cannot start the kernel in a limited cgroup: {e}\n")
        return EXIT_SETUP
    return EXIT_SETUP  # pragma: no cover - execvp does not return


if __name__ == "__main__":
    raise SystemExit(main())
