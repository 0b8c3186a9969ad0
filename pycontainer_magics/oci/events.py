"""`events ID`: runc's event stream — `{"type":"stats","id":...,"data":{cpu, memory, pids, blkio, ...}}` every
--interval (default 5s) and `{"type":"oom","id":...}` when the container's OOM-kill counter goes up — until
the container stops; `events --stats ID` prints one stats event and exits (containerd's shim v1 and
`ctr task metrics` read these)."""

from __future__ import annotations

import json
import sys
import time

from . import state as st
from .cgroups import OciCgroup


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration for the forms engines pass: 5s, 500ms, 1m, 1m30s, 2h."""
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    total, num, i = 0.0, "", 0
    t = text.strip()
    if not t:
        raise ValueError(f"invalid duration {text!r}")
    while i < len(t):
        c = t[i]
        if c.isdigit() or c == ".":
            num += c
            i += 1
            continue
        unit = next((u for u in ("ns", "us", "µs", "ms", "s", "m", "h") if t.startswith(u, i)), None)
        if unit is None or not num:
            raise ValueError(f"invalid duration {text!r}")
        total += float(num) * units[unit]
        num, i = "", i + len(unit)
    if num:
        raise ValueError(f"missing unit in duration {text!r}")
    return total


def _emit(event: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def events(root: str, cid: str, once: bool, interval: str) -> int:
    seconds = parse_duration(interval)
    if seconds <= 0:
        raise ValueError("duration interval must be greater than 0")
    directory = st.container_dir(root, cid)
    rec = st.load(directory)
    if st.status(directory, rec) == "stopped":
        raise ValueError(f"container with id {cid} is not running")
    if not rec.get("cgroup"):
        raise ValueError(f"container {cid} has no cgroup (created without root and without a delegated one)")
    cg = OciCgroup(rec["cgroup"])
    if once:
        _emit({"type": "stats", "id": cid, "data": cg.stats()})
        return 0
    ooms = cg.oom_kills()
    next_stats = time.monotonic() + seconds
    while st.status(directory, rec) != "stopped" and cg.exists():
        n = cg.oom_kills()
        if n > ooms:
            _emit({"type": "oom", "id": cid})
            ooms = n
        if time.monotonic() >= next_stats:
            _emit({"type": "stats", "id": cid, "data": cg.stats()})
            next_stats += seconds
        time.sleep(min(0.1, seconds))
    return 0


__all__ = ["events", "parse_duration"]
