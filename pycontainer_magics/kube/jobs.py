"""batch/v1 Jobs in a play: the Job's terms (backoffLimit, activeDeadlineSeconds, one completion) and its
state, as `kubectl describe job` shows them.

A Job's pod runs to completion: with restartPolicy OnFailure a failed container is restarted in its pod,
with Never the whole pod is run again (here: its initContainers and containers anew, in the same pod
sandbox — Kubernetes makes a new pod, with a new address and fresh emptyDirs); either way each failure
counts, and once more than `backoffLimit` (6) have happened the Job has failed (BackoffLimitExceeded) and
what still runs is stopped. `activeDeadlineSeconds` bounds the whole Job (DeadlineExceeded). The retry delay
is the play's (0.1 s doubling to 5 s), not the Job controller's 10 s doubling to 6 min: a lab waits less.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .errors import KubeError

DEFAULT_BACKOFF_LIMIT = 6


@dataclass(frozen=True)
class JobPlan:
    name: str
    backoff_limit: int = DEFAULT_BACKOFF_LIMIT
    deadline: float | None = None  # activeDeadlineSeconds of the Job


def plan(doc: dict[str, Any], notes: list[str]) -> JobPlan:
    """Read a Job's spec; what is not played is a KubeError naming the field."""
    name = str(doc["metadata"]["name"])
    where = f"job/{name}"
    spec = doc.get("spec") or {}
    for key in ("completions", "parallelism"):
        v = spec.get(key)
        if v is not None and v != 1:
            raise KubeError(f"{where}: spec.{key}: {v!r}: only 1 is played here (one pod, run to completion)")
    if spec.get("completionMode") not in (None, "NonIndexed"):
        raise KubeError(f"{where}: spec.completionMode: {spec['completionMode']}: only NonIndexed is played here")
    if spec.get("suspend"):
        raise KubeError(f"{where}: spec.suspend: true: a suspended Job runs nothing (leave it out to play it)")
    for key in ("podFailurePolicy", "successPolicy", "ttlSecondsAfterFinished", "backoffLimitPerIndex",
                "maxFailedIndexes", "podReplacementPolicy"):
        if key in spec:
            notes.append(f"{where}: spec.{key}: not applied here")
    limit = spec.get("backoffLimit", DEFAULT_BACKOFF_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise KubeError(f"{where}: spec.backoffLimit: {limit!r}: a whole number, 0 or more")
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and (isinstance(deadline, bool) or not isinstance(deadline, int) or deadline < 1):
        raise KubeError(f"{where}: spec.activeDeadlineSeconds: {deadline!r}: a whole number of seconds, 1 or more")
    policy = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy")
    if policy not in ("Never", "OnFailure"):
        raise KubeError(f"{where}: spec.template.spec.restartPolicy: {policy or 'Always (the default)'} is not "
                        "allowed for a Job: Never or OnFailure")
    return JobPlan(name, limit, None if deadline is None else float(deadline))


@dataclass
class JobState:
    """Where a played Job stands."""

    plan: JobPlan
    started: float = field(default_factory=time.monotonic)
    succeeded: int = 0
    failed: int = 0  # failures so far: failed pods (Never) or container restarts (OnFailure)
    condition: str | None = None  # Complete | Failed
    reason: str | None = None  # BackoffLimitExceeded | DeadlineExceeded
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def status(self) -> str:
        return self.condition or "Running"

    def failure(self) -> bool:
        """Count one failure; True while another try is allowed, False once the backoff limit is passed (and
        the Job has failed)."""
        self.failed += 1
        if self.failed > self.plan.backoff_limit:
            self.finish("Failed", "BackoffLimitExceeded")
            return False
        return True

    def past_deadline(self) -> bool:
        return self.plan.deadline is not None and time.monotonic() - self.started >= self.plan.deadline

    def finish(self, condition: str, reason: str | None = None) -> None:
        if self.condition is None:
            self.condition, self.reason = condition, reason
            if condition == "Complete":
                self.succeeded = 1
        self.done.set()

    def __str__(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        return f"job/{self.plan.name}: {self.status}{why}, {self.succeeded} succeeded, {self.failed} failed"


__all__ = ["JobPlan", "JobState", "plan"]
