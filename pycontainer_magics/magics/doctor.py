"""`%container doctor`: which features work where this kernel runs (measured), and the `%load_ext` line."""

from __future__ import annotations

import os
from typing import Any

CAP_SYS_ADMIN = 21


def doctor(self: Any, rest: str) -> Any:  # a ContainerMagics method in all but place
    """`%container doctor`: a DataFrame, one row per feature: works, why, what to do, needed for."""
    import dataclasses

    from ..display.doctor import doctor_frame
    from ..lab.doctor import Check, diagnose
    from ..runtime.pool import prepared

    report = diagnose(refresh=True)
    items = prepared()
    kept = "; ".join(f"{p.kind}{f' (pid {p.pid})' if p.pid else ''}: {p.what}" for p in items) or "nothing"
    row = Check("prepared", "kept ready for the next cell", True, kept,
                "%unload_ext pycontainer_magics releases it" if items else "", "a fast next cell")
    return doctor_frame(dataclasses.replace(report, checks=(*report.checks, row)))


def _surely_fine() -> bool:
    """Root of the host with CAP_SYS_ADMIN and a writable cgroup parent: skip probing at load (a second)."""
    try:
        with open("/proc/self/uid_map") as f:
            if f.read().split() != ["0", "0", "4294967295"]:
                return False
        with open("/proc/self/status") as f:
            cap_eff = next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))
        if not cap_eff >> CAP_SYS_ADMIN & 1:
            return False
        from ..linux.cgroups import open_hierarchy

        return os.geteuid() == 0 and open_hierarchy().writable
    except (OSError, StopIteration, ValueError):
        return False


def load_message() -> str | None:
    """The one line `%load_ext` prints when something the magics need is missing here."""
    if _surely_fine():
        return None
    from ..lab.doctor import diagnose

    try:
        return diagnose().load_message()
    except Exception as e:  # noqa: BLE001 - the extension loads anyway
        return f"pycontainer_magics: could not check what works here ({e}); try %container doctor"


__all__ = ["doctor", "load_message"]
