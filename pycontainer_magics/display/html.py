"""The HTML card of a ContainerRun: status, summary, namespaces, diff, error, notes.

Pure string building from the run's fields (no pandas), every value HTML-escaped, inline styles only
(notebook front ends strip <style> from untrusted output).
"""

from __future__ import annotations

from html import escape

from ..runtime.result import ContainerRun
from .format import (
    human_bytes,
    human_duration,
    memory_limit_of,
    namespace_table,
    pids_limit_of,
    short_id,
    status_colour,
    status_text,
)

DIFF_ROWS = 50  # rows of the diff shown before "… N more"
STREAM_TAIL_LINES = 40  # lines of stdout/stderr kept in the card
STREAM_TAIL_CHARS = 4000

_TABLE = "border-collapse:collapse;font-size:12px;margin:2px 0"
_TD = "padding:1px 8px;text-align:left;border-bottom:1px solid #eee"
_TH = "padding:1px 8px;text-align:left;border-bottom:1px solid #ccc;font-weight:600"
_PRE = "margin:2px 0;padding:4px 6px;font-size:11px;white-space:pre-wrap;max-height:20em;overflow:auto"
_KIND_COLOUR = {"A": "#1a7f37", "C": "#9a6700", "D": "#cf222e"}


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _table(header: list[str] | None, rows: list[list[str]]) -> str:
    """rows hold already-escaped HTML cells."""
    out = [f'<table style="{_TABLE}">']
    if header:
        out.append("<tr>" + "".join(f'<th style="{_TH}">{_e(h)}</th>' for h in header) + "</tr>")
    for row in rows:
        out.append("<tr>" + "".join(f'<td style="{_TD}">{c}</td>' for c in row) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _of(value: str, limit: str | None) -> str:
    return value if limit is None else f"{value} / {limit}"


def summary_rows(run: ContainerRun) -> list[tuple[str, str]]:
    """(label, text) pairs for the card, with human units; fields that are unknown are left out."""
    rows: list[tuple[str, str]] = [("id", short_id(run.id))]
    if run.spec.name:
        rows.append(("name", run.spec.name))
    rows.append(("status", run.status))
    rows.append(("exit code", "-" if run.exit_code is None else str(run.exit_code)))
    if run.signal_name:
        rows.append(("signal", run.signal_name))
    rows.append(("OOMKilled", "true" if run.oom_killed else "false"))
    rows.append(("duration", human_duration(run.duration)))
    mem_limit = memory_limit_of(run)
    if run.peak_memory is not None or mem_limit is not None:
        text = _of(human_bytes(run.peak_memory), None if mem_limit is None else human_bytes(mem_limit))
        if run.peak_memory is not None and mem_limit:
            text += f" ({100 * run.peak_memory / mem_limit:.0f}%)"
        rows.append(("peak memory", text))
    if run.cpu_time is not None:
        text = human_duration(run.cpu_time)
        if run.cpu_user is not None and run.cpu_system is not None:
            text += f" (user {human_duration(run.cpu_user)}, sys {human_duration(run.cpu_system)})"
        rows.append(("CPU time", text))
    if run.spec.cpus is not None:
        rows.append(("CPU limit", f"{run.spec.cpus:g} CPUs"))
    if run.throttled_periods:
        rows.append(("throttled", f"{run.throttled_periods} periods, {human_duration(run.throttled_time)}"))
    pids_limit = pids_limit_of(run)
    if run.peak_pids is not None or pids_limit is not None:
        peak = "-" if run.peak_pids is None else str(run.peak_pids)
        default = " (default)" if "pids_limit" in run.spec.default_bounds else ""
        rows.append(("peak pids", _of(peak, None if pids_limit is None else str(pids_limit)) + default))
    if run.spec.storage_size is not None:
        default = " (default)" if "storage_size" in run.spec.default_bounds else ""
        rows.append(("writable layer", f"up to {human_bytes(run.spec.storage_size)}{default}"))
    if run.cgroup_version:
        rows.append(("cgroup", run.cgroup_version))
    if run.samples:
        rows.append(("samples", str(len(run.samples))))
    return rows


def _namespaces_html(run: ContainerRun) -> str:
    rows = namespace_table(run)
    if not rows:
        return ""
    cells = []
    for kind, ctr, host, isolated in rows:
        mark = '<span style="color:#1a7f37">yes</span>' if isolated else '<span style="color:#888">no</span>'
        cells.append([_e(kind), _e("-" if ctr is None else ctr), _e("-" if host is None else host), mark])
    return _section("namespaces", _table(["namespace", "container", "host", "isolated"], cells))


def _diff_html(run: ContainerRun) -> str:
    if not run.diff:
        return ""
    entries = sorted(run.diff, key=lambda e: e.path)
    cells = []
    for e in entries[:DIFF_ROWS]:
        colour = _KIND_COLOUR.get(e.kind, "inherit")
        path = e.path + ("/" if e.is_dir and not e.path.endswith("/") else "")
        size = "" if e.is_dir or e.kind == "D" else human_bytes(e.size)
        cells.append([f'<b style="color:{colour}">{_e(e.kind)}</b>', f"<code>{_e(path)}</code>", _e(size)])
    more = len(entries) - DIFF_ROWS
    if more > 0:
        cells.append(["", _e(f"… {more} more"), ""])
    counts = {k: sum(1 for e in entries if e.kind == k) for k in ("A", "C", "D")}
    title = f"diff ({counts['A']} added, {counts['C']} changed, {counts['D']} deleted)"
    return _section(title, _table(None, cells))


def _tail(text: str) -> tuple[str, bool]:
    lines = text.splitlines()
    cut = False
    if len(lines) > STREAM_TAIL_LINES:
        lines, cut = lines[-STREAM_TAIL_LINES:], True
    out = "\n".join(lines)
    if len(out) > STREAM_TAIL_CHARS:
        out, cut = out[-STREAM_TAIL_CHARS:], True
    return out, cut


def _stream_html(name: str, text: str) -> str:
    if not text:
        return ""
    tail, cut = _tail(text)
    label = f"{name} (last lines)" if cut else name
    return (f'<details style="margin-top:4px"><summary style="cursor:pointer">{_e(label)}</summary>'
            f'<pre style="{_PRE}">{_e(tail)}</pre></details>')


def _section(title: str, body: str) -> str:
    return (f'<div style="margin-top:6px"><div style="font-weight:600;font-size:12px">{_e(title)}</div>'
            f"{body}</div>")


def render_html(run: ContainerRun) -> str:
    """The compact HTML card shown under a %%container cell."""
    colour = status_colour(run)
    head = (
        f'<div style="font-size:13px"><b>container</b> <code>{_e(short_id(run.id))}</code>'
        + (f" <b>{_e(run.spec.name)}</b>" if run.spec.name else "")
        + f' — <b style="color:{colour}">{_e(status_text(run))}</b>'
        + f" in {_e(human_duration(run.duration))}</div>"
    )
    parts = [
        f'<div class="pycontainer-run" style="border-left:4px solid {colour};padding:4px 10px;'
        f'font-family:sans-serif">',
        head,
        '<div style="display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start">',
        _section("summary", _table(None, [[_e(k), _e(v)] for k, v in summary_rows(run)])),
        _namespaces_html(run),
        "</div>",
        _diff_html(run),
    ]
    if run.error:
        parts.append(_section(
            f"error: {run.error_name}" if run.error_name else "error",
            f'<pre style="{_PRE};background:#fff5f5;color:#82071e">{_e(run.error)}</pre>',
        ))
    parts.append(_stream_html("stdout", run.stdout))
    parts.append(_stream_html("stderr", run.stderr))
    if run.notes:
        items = "".join(f"<li>{_e(n)}</li>" for n in run.notes)
        ul = f'<ul style="margin:2px 0;padding-left:18px;font-size:12px">{items}</ul>'
        parts.append(_section("notes", ul))
    parts.append("</div>")
    return "".join(p for p in parts if p)
