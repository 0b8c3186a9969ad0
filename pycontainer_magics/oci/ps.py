"""`ps ID`: the container's processes (every pid in its cgroup) — as JSON for containerd's shim (`docker top`
asks it for the pids), or as the host's `ps` table (default `ps -ef`, or the arguments given) filtered to
them, as runc prints it."""

from __future__ import annotations

import json
import subprocess
import sys

from .lifecycle import pids as container_pids


def ps(root: str, cid: str, fmt: str, ps_args: list[str]) -> int:
    pids = container_pids(root, cid)
    if fmt == "json":
        sys.stdout.write(json.dumps(pids) + "\n")
        return 0
    if fmt != "table":
        raise ValueError("invalid format option")
    out = subprocess.run(["ps", *(ps_args or ["-ef"])], capture_output=True, text=True, check=False)
    lines = (out.stdout + out.stderr).split("\n")
    header = lines[0]
    try:
        index = header.split().index("PID")
    except ValueError:
        raise ValueError("couldn't find PID field in ps output") from None
    wanted = set(pids)
    sys.stdout.write(header + "\n")
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > index and fields[index].isdigit() and int(fields[index]) in wanted:
            sys.stdout.write(line + "\n")
    return 0


__all__ = ["ps"]
