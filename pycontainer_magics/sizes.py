"""Sizes as users write them (`512m`, `1.5g`, `64MiB`): the one grammar of `--memory`, `--shm-size`, tmpfs sizes
and the rest, read without `re` — the command line through the daemon (cli/run_daemon.py) starts with it, and
importing re costs it ~1.5 ms. Imports nothing of the package: every layer may use it (tests/test_layering.py)."""

from __future__ import annotations

UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}  # powers of 1024, as Docker's


def size_bytes(text: str) -> int | None:
    """A number (`12`, `1.5`, `.5`), spaces, an optional unit b/k/m/g/t in either case, an optional `b` or `ib`,
    surrounding spaces: the bytes it says; None for anything else."""
    t = text.strip().lower()
    i = 0
    while i < len(t) and (t[i].isdecimal() or t[i] == "."):
        i += 1
    number, rest = t[:i], t[i:].lstrip()
    whole, _, frac = number.partition(".")
    if not (whole or frac) or "." in frac or not all(c.isdecimal() for c in whole + frac):
        return None
    unit = rest[:1] if rest[:1] in ("b", "k", "m", "g", "t") else ""
    if rest[len(unit):] not in ("", "b", "ib"):
        return None
    return int(float(number if whole else "0" + number) * UNITS[unit])


__all__ = ["UNITS", "size_bytes"]
