"""Resource limits (setrlimit) by the names Docker's --ulimit and the OCI spec's process.rlimits use.

A container's PID 1 sets them just before it drops privileges. Inside a user namespace the kernel lets a
process lower a hard limit but not raise one (that needs CAP_SYS_RESOURCE in the initial namespace), so a
holder still outside it raises the hard limits first (`raise_hard`), and PID 1 then sets exact values.
"""

from __future__ import annotations

import resource
from collections.abc import Iterable

UNLIMITED = -1  # RLIM_INFINITY, as Docker writes it

# Docker's names (`--ulimit nofile=1024:2048`); the OCI spec's are RLIMIT_ + the upper-case name.
# RLIMIT_LOCKS (10) is Linux's, but Python's resource module does not name it.
NAMES: dict[str, int] = {
    "as": resource.RLIMIT_AS, "core": resource.RLIMIT_CORE, "cpu": resource.RLIMIT_CPU,
    "data": resource.RLIMIT_DATA, "fsize": resource.RLIMIT_FSIZE, "locks": 10,
    "memlock": resource.RLIMIT_MEMLOCK, "msgqueue": resource.RLIMIT_MSGQUEUE, "nice": resource.RLIMIT_NICE,
    "nofile": resource.RLIMIT_NOFILE, "nproc": resource.RLIMIT_NPROC, "rss": resource.RLIMIT_RSS,
    "rtprio": resource.RLIMIT_RTPRIO, "rttime": resource.RLIMIT_RTTIME, "sigpending": resource.RLIMIT_SIGPENDING,
    "stack": resource.RLIMIT_STACK,
}

Limit = tuple[str, int, int]  # (name, soft, hard); -1 = unlimited


def _kernel(v: int) -> int:
    return resource.RLIM_INFINITY if v == UNLIMITED else v


def raise_hard(limits: Iterable[Limit]) -> None:
    """Raise (never lower) this process's hard limits to what `limits` want, so a child in a user namespace
    can then set them exactly."""
    for name, _soft, hard in limits:
        r = NAMES[name]
        cur_soft, cur_hard = resource.getrlimit(r)
        want = _kernel(hard)
        if cur_hard != resource.RLIM_INFINITY and (want == resource.RLIM_INFINITY or want > cur_hard):
            try:
                resource.setrlimit(r, (cur_soft, want))
            except (ValueError, OSError) as e:
                raise PermissionError(_refused(name, soft=_soft, hard=hard, e=e)) from None


def apply(limits: Iterable[Limit]) -> None:
    """Set each limit exactly (soft and hard). Raises OSError naming the limit when the kernel refuses."""
    for name, soft, hard in limits:
        try:
            resource.setrlimit(NAMES[name], (_kernel(soft), _kernel(hard)))
        except (ValueError, OSError) as e:
            raise PermissionError(_refused(name, soft=soft, hard=hard, e=e)) from None


def _refused(name: str, *, soft: int, hard: int, e: BaseException) -> str:
    cur = resource.getrlimit(NAMES[name])[1]
    shown = "unlimited" if cur == resource.RLIM_INFINITY else str(cur)
    return (f"--ulimit {name}={soft}:{hard}: the kernel refuses it ({e}): the hard limit here is {shown}; raising "
            "it needs CAP_SYS_RESOURCE" + (" and stays under fs.nr_open" if name == "nofile" else ""))


__all__ = ["NAMES", "UNLIMITED", "Limit", "apply", "raise_hard"]
