"""Deterministic text for sizes, durations and a run's status (no pandas, no matplotlib here)."""

from __future__ import annotations

from ..linux.namespaces import NAMESPACE_KINDS, canonical
from ..runtime.result import ContainerRun

MiB = 2**20

_BYTE_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def human_bytes(n: float | None) -> str:
    """Binary units with one decimal: 512 -> '512 B', 52_218_880 -> '49.8 MiB'; None -> '-'."""
    if n is None:
        return "-"
    sign = "-" if n < 0 else ""
    v = float(abs(n))
    if v < 1024:
        return f"{sign}{int(v)} B"
    for unit in _BYTE_UNITS:
        v /= 1024
        # Round first so 1023.97 KiB becomes '1.0 MiB', not '1024.0 KiB'.
        if round(v, 1) < 1024 or unit == _BYTE_UNITS[-1]:
            return f"{sign}{v:.1f} {unit}"
    raise AssertionError("unreachable")


_SUBSECOND = ((1e-9, "ns", 0), (1e-6, "µs", 1), (1e-3, "ms", 1))


def human_duration(seconds: float | None) -> str:
    """'850 ns', '12.5 µs', '35.2 ms', '1.25 s', '2 min 3 s', '1 h 2 min'; None -> '-'."""
    if seconds is None:
        return "-"
    if seconds < 0:
        return "-" + human_duration(-seconds)
    if seconds == 0:
        return "0 s"
    for scale, unit, digits in _SUBSECOND:
        v = seconds / scale
        if round(v, digits) < 1000:
            return f"{v:.{digits}f} {unit}"
    if round(seconds, 2) < 10:
        return f"{seconds:.2f} s"
    if round(seconds, 1) < 60:
        return f"{seconds:.1f} s"
    total = round(seconds)
    if total < 3600:
        m, s = divmod(total, 60)
        return f"{m} min {s} s"
    h, rest = divmod(total, 3600)
    return f"{h} h {rest // 60} min"


def short_id(run_id: str) -> str:
    """The first 12 characters, as `docker ps` shows container ids."""
    return run_id[:12]


def run_label(run: ContainerRun) -> str:
    """The container's name when it has one, else its short id."""
    return run.spec.name or short_id(run.id)


def status_text(run: ContainerRun) -> str:
    """One phrase for the outcome: 'exited 0', 'OOMKilled (exit 137, SIGKILL)', 'timeout (...)'."""
    detail = []
    if run.exit_code is not None:
        detail.append(f"exit {run.exit_code}")
    if run.signal_name:
        detail.append(run.signal_name)
    paren = f" ({', '.join(detail)})" if detail else ""
    st = run.status
    if st == "oomkilled":
        return "OOMKilled" + paren
    if st in ("timeout", "interrupted"):
        return st + paren
    if st == "killed":
        code = f" (exit {run.exit_code})" if run.exit_code is not None else ""
        return f"killed by {run.signal_name}{code}"
    if st == "error":
        name = f" {run.error_name}" if run.error_name else ""
        code = f" (exit {run.exit_code})" if run.exit_code is not None else ""
        return f"error{name}{code}"
    if run.exit_code is None:
        return "exited (no exit code)"
    return f"exited {run.exit_code}"


def status_colour(run: ContainerRun) -> str:
    """Green for success, orange for a non-zero exit, timeout or interrupt, red for kills and errors."""
    st = run.status
    if st == "exited":
        return "#1a7f37" if run.exit_code == 0 else "#b35900"
    if st in ("timeout", "interrupted"):
        return "#b35900"
    return "#cf222e"


def one_line(run: ContainerRun) -> str:
    """'<ContainerRun 1a2b3c4d5e6f exited 0 in 35.2 ms, peak 12.3 MiB>'."""
    label = short_id(run.id)
    if run.spec.name:
        label = f"{run.spec.name} ({label})"
    text = f"<ContainerRun {label} {status_text(run)} in {human_duration(run.duration)}"
    if run.peak_memory is not None:
        text += f", peak {human_bytes(run.peak_memory)}"
    return text + ">"


def namespace_table(run: ContainerRun) -> list[tuple[str, int | None, int | None, bool]]:
    """(namespace, container inode, host inode, isolated) for the eight kinds in their usual order.

    Kinds the run did not record get (None, None, False); unknown kinds follow the eight. A run
    with no namespace data at all (e.g. not started) gives an empty list.
    """
    if not run.namespaces:
        return []
    by_kind = {canonical(r.kind): r for r in run.namespaces}
    kinds = list(NAMESPACE_KINDS) + sorted(k for k in by_kind if k not in NAMESPACE_KINDS)
    rows: list[tuple[str, int | None, int | None, bool]] = []
    for k in kinds:
        r = by_kind.get(k)
        if r is None:
            rows.append((k, None, None, False))
        else:
            rows.append((k, r.container_inode, r.host_inode, r.isolated))
    return rows


def memory_limit_of(run: ContainerRun) -> int | None:
    return run.memory_limit if run.memory_limit is not None else run.spec.memory


def pids_limit_of(run: ContainerRun) -> int | None:
    return run.pids_limit if run.pids_limit is not None else run.spec.pids_limit
