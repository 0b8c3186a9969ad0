"""`update ID`: change a running container's cgroup limits — `--resources FILE|-` (OCI linux.resources JSON,
what containerd's shim sends for `docker update`) or runc's flags (--memory, --cpu-quota, --pids-limit, ...)."""

from __future__ import annotations

import json
import sys

from .lifecycle import update

TYPE_CHECKING = False  # typing is not imported at run time: every engine call pays its imports
if TYPE_CHECKING:
    from typing import Any


def _bytes(text: str) -> int:
    t = text.strip().lower()
    if t == "-1":
        return -1
    mult = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
    t = t.removesuffix("b")
    if t and t[-1] in mult:
        return int(float(t[:-1]) * mult[t[-1]])
    return int(t)


def resources_from_flags(o: dict[str, Any]) -> dict[str, Any]:
    res: dict[str, Any] = {}
    mem = {k: _bytes(o[f]) for k, f in (("limit", "memory"), ("swap", "memory_swap"),
                                        ("reservation", "memory_reservation"), ("kernel", "kernel_memory"),
                                        ("kernelTCP", "kernel_memory_tcp")) if o.get(f)}
    if mem:
        res["memory"] = mem
    cpu: dict[str, Any] = {}
    for k, f in (("shares", "cpu_shares"), ("quota", "cpu_quota"), ("period", "cpu_period"),
                 ("realtimePeriod", "cpu_rt_period"), ("realtimeRuntime", "cpu_rt_runtime")):
        if o.get(f):
            cpu[k] = int(o[f])
    for k, f in (("cpus", "cpuset_cpus"), ("mems", "cpuset_mems")):
        if o.get(f):
            cpu[k] = o[f]
    if cpu:
        res["cpu"] = cpu
    if o.get("pids_limit"):
        res["pids"] = {"limit": int(o["pids_limit"])}
    if o.get("blkio_weight"):
        res["blockIO"] = {"weight": int(o["blkio_weight"])}
    return res


def update_command(root: str, cid: str, o: dict[str, Any]) -> None:
    if o.get("resources"):
        src = o["resources"]
        text = sys.stdin.read() if src == "-" else open(src).read()
        try:
            res = json.loads(text)
        except ValueError as e:
            raise ValueError(f"--resources: not valid JSON: {e}") from None
        if not isinstance(res, dict):
            raise ValueError("--resources: must be a JSON object (OCI linux.resources)")
    else:
        res = resources_from_flags(o)
    update(root, cid, res)


__all__ = ["resources_from_flags", "update_command"]
