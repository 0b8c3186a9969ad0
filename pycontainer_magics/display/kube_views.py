"""Views of Kubernetes YAML in a notebook: the documents, a green or red line per document and Kubernetes
version it was validated against, and the warnings (what has no Kubernetes equivalent); `kube ps` as a
DataFrame."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import pandas as pd

GREEN, RED, AMBER = "#1a7f37", "#cf222e", "#9a6700"


class KubeYamlView:
    """Kubernetes YAML with its validation lines and warnings. `.yaml` is the text, `.checks` the
    DocumentChecks, `.warnings` the lines; `.ok` is True when every document validated."""

    def __init__(self, yaml_text: str, checks: Sequence[Any], warnings: Sequence[str] = (), title: str = "",
                 show_yaml: bool = True) -> None:
        self.yaml = yaml_text
        self.checks = list(checks)
        self.warnings = list(warnings)
        self.title = title
        self.show_yaml = show_yaml

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def lines(self) -> list[str]:
        out = [f"{'✔' if c.ok else '✘'} {c}" for c in self.checks]
        out += [f"⚠ {w}" for w in self.warnings]
        return out

    def __repr__(self) -> str:
        head = [self.title] if self.title else []
        body = [self.yaml.rstrip("\n")] if self.show_yaml else []
        return "\n".join([*head, *self.lines(), *body])

    def _repr_html_(self) -> str:
        rows = []
        for c in self.checks:
            color, mark = (GREEN, "✔") if c.ok else (RED, "✘")
            rows.append(f'<div style="color:{color};font-family:monospace">{mark} {html.escape(str(c))}</div>')
        for w in self.warnings:
            rows.append(f'<div style="color:{AMBER};font-family:monospace">⚠ {html.escape(w)}</div>')
        title = f"<b>{html.escape(self.title)}</b>" if self.title else ""
        yaml = (f'<pre style="max-height:30em;overflow:auto">{html.escape(self.yaml)}</pre>'
                if self.show_yaml else "")
        return f"<div>{title}{''.join(rows)}{yaml}</div>"


PS_COLUMNS = ["pod", "container", "name", "status", "ready", "restarts", "exit_code"]


def kube_ps_frame(statuses: Sequence[Any]) -> pd.DataFrame:
    """`kubectl get pods`-like: one row per container of the play (initContainers included)."""
    rows = [{"pod": s.pod, "container": s.container, "name": s.name, "status": s.status,
             "ready": "" if s.ready is None else ("yes" if s.ready else "no"), "restarts": s.restarts,
             "exit_code": "" if s.exit_code is None else s.exit_code} for s in statuses]
    return pd.DataFrame(rows, columns=PS_COLUMNS)


EVENT_COLUMNS = ["time", "pod", "container", "reason", "message"]


def kube_events_frame(events: Sequence[Any]) -> pd.DataFrame:
    """`kubectl get events`-like: probe failures and the kills they caused, oldest first."""
    rows = [{"time": pd.Timestamp(e.time, unit="s"), "pod": e.pod, "container": e.container, "reason": e.reason,
             "message": e.message} for e in events]
    return pd.DataFrame(rows, columns=EVENT_COLUMNS)


__all__ = ["KubeYamlView", "kube_events_frame", "kube_ps_frame"]
