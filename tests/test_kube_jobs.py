"""batch/v1 Jobs played here: a pod run to completion, failures retried (restartPolicy Never: the pod again;
OnFailure: the container) up to backoffLimit, activeDeadlineSeconds, and what is not played is one line."""

from __future__ import annotations

import os
import textwrap
import time

import pytest
from helpers import host_clean, wait_for  # noqa: F401

from pycontainer_magics.kube import play as K
from pycontainer_magics.kube.errors import KubeError
from pycontainer_magics.workloads import pods

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root"), pytest.mark.root,
              pytest.mark.usefixtures("host_clean")]

# Counts its tries in a volume that outlives them; fails until the third.
COUNTER = ("n=$(cat /data/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /data/n; echo try $n; "
           "test $n -ge 3")


def _tag(s: str) -> str:
    return f"k{os.getpid() % 100000}{s}"


def _job(name: str, policy: str, command: str, spec: str = "") -> str:
    return textwrap.dedent(f"""
        apiVersion: v1
        kind: PersistentVolumeClaim
        metadata: {{name: {name}-data}}
        spec: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 1Mi}}}}}}
        ---
        apiVersion: batch/v1
        kind: Job
        metadata: {{name: {name}}}
        spec:
          {spec or "backoffLimit: 4"}
          template:
            metadata: {{labels: {{app: {name}}}}}
            spec:
              restartPolicy: {policy}
              terminationGracePeriodSeconds: 0
              volumes: [{{name: data, persistentVolumeClaim: {{claimName: {name}-data}}}}]
              containers:
              - name: work
                image: host
                command: ["sh", "-c", "{command}"]
                volumeMounts: [{{name: data, mountPath: /data}}]
    """)


def _gone(name: str) -> None:
    assert f"{name}-pod" not in [p.name for p in pods.list_pods()]
    assert K.list_plays() == []


@pytest.mark.parametrize("policy", ["Never", "OnFailure"])
def test_a_job_retries_its_failures_until_it_completes(policy):
    name = _tag(f"j{policy[0].lower()}")
    p = K.play(_job(name, policy, COUNTER))
    try:
        assert list(p.pods) == [f"{name}-pod"]
        assert p.pods[f"{name}-pod"].plan.labels["job-name"] == name
        assert p.wait(60), str(p.job(name))
        job = p.job(name)
        assert (job.status, job.succeeded, job.failed) == ("Complete", 1, 2), str(job)
        assert [ln.split("| ")[1] for ln in p.logs().splitlines()] == ["try 1", "try 2", "try 3"]
        assert [(s.status, s.restarts) for s in p.ps()] == [("exited (0)", 2)]
        assert p.pods[f"{name}-pod"].status() == "Succeeded"
        assert str(job) == f"job/{name}: Complete, 1 succeeded, 2 failed"
    finally:
        p.down(volumes=True, timeout=0)
    _gone(name)


def test_a_job_fails_past_its_backoff_limit():
    name = _tag("jb")
    p = K.play(_job(name, "Never", "echo failing; exit 3", "backoffLimit: 1"))
    try:
        assert p.wait(60)
        job = p.job(name)
        assert (job.status, job.reason, job.failed, job.succeeded) == ("Failed", "BackoffLimitExceeded", 2, 0)
        assert p.logs().count("failing") == 2  # the first try and one retry
        assert any(e.reason == "BackoffLimitExceeded" for e in p.events)
        time.sleep(0.5)
        assert p.logs().count("failing") == 2  # and no more
    finally:
        p.down(volumes=True, timeout=0)
    _gone(name)


def test_a_job_past_its_deadline_is_stopped():
    name = _tag("jd")
    t0 = time.monotonic()
    p = K.play(_job(name, "OnFailure", "sleep 60", "activeDeadlineSeconds: 1"))
    try:
        assert p.wait(30)
        job = p.job(name)
        assert (job.status, job.reason) == ("Failed", "DeadlineExceeded")
        assert time.monotonic() - t0 < 20
        assert [s.status for s in p.ps()] != ["running"]
    finally:
        p.down(volumes=True, timeout=0)
    _gone(name)


@pytest.mark.parametrize(("change", "words"), [
    (("restartPolicy: Never", "restartPolicy: Always"),
     ["job/N: spec.template.spec.restartPolicy: Always is not allowed for a Job: Never or OnFailure"]),
    (("backoffLimit: 4", "completions: 3"), ["job/N: spec.completions: 3: only 1 is played here"]),
    (("backoffLimit: 4", "backoffLimit: -1"), ["job/N: spec.backoffLimit: -1"]),
    (("apiVersion: batch/v1", "apiVersion: v1"), ["job/N: apiVersion: 'v1': expected batch/v1"]),
])
def test_bad_jobs_are_one_line(change, words):
    name = _tag("jx")
    text = _job(name, "Never", "true")
    bad = text.replace(*change)
    assert bad != text
    with pytest.raises(KubeError) as e:
        K.play(bad, validate=False)
    assert "\n" not in str(e.value)
    for w in words:
        assert w.replace("N", name, 1) in str(e.value), str(e.value)
    _gone(name)
