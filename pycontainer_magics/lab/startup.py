"""Start-up time of one OCI bundle under several runtimes, measured side by side.

Each runtime runs the bundle (`run --bundle DIR ID`, runc's command line) as a whole process, round-robin, so
every runtime sees the same machine load; a LIBRARY row runs the same bundle through `runtime.run` from
this process (what a `%%container` cell pays: no interpreter start-up, no imports). The figures are for
comparing runtimes in one run, not absolute numbers (bench/ has the careful version).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Command = Callable[[str, str, str], list[str]]  # (bundle, container id, state dir) -> argv


@dataclass(frozen=True)
class StartupSample:
    runtime: str
    round: int
    seconds: float  # wall time from fork to the runtime's exit (the container has come and gone)
    exit_code: int


def runc_style(*prefix: str) -> Command:
    """`PREFIX --root STATE run --bundle BUNDLE ID`: runc's and crun's command line (PREFIX may be an
    nsenter command around crun)."""
    return lambda bundle, cid, state: [*prefix, "--root", state, "run", "--bundle", bundle, cid]


def pycontainer_command() -> Command:
    """This project's CLI (`pycontainer run --bundle BUNDLE --root STATE ID`), next to this interpreter."""
    exe = os.path.join(os.path.dirname(sys.executable), "pycontainer")
    if not os.path.exists(exe):
        exe = shutil.which("pycontainer") or exe
    return lambda bundle, cid, state: [exe, "run", "--root", state, "--bundle", bundle, cid]


LIBRARY = "pycontainer in-process"


def startup_times(bundle: str, commands: dict[str, Command], rounds: int = 10,
                  library: bool = True) -> list[StartupSample]:
    """`rounds` runs of `bundle` per runtime, round-robin; with `library`, also through `runtime.run` in this
    process (the row named LIBRARY: what a `%%container` cell pays)."""
    from ..oci.bundle import load_bundle
    from ..runtime.run import remove_empty_parents, run

    spec = load_bundle(bundle)[0].with_(diff=False) if library else None
    samples: list[StartupSample] = []
    state = tempfile.mkdtemp(prefix="pcm-startup-")
    try:
        for i in range(rounds):
            for name, command in commands.items():
                cid = f"pcm-startup-{os.getpid()}-{i}"
                t0 = time.perf_counter()
                p = subprocess.run(command(bundle, cid, os.path.join(state, name)), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
                samples.append(StartupSample(name, i, time.perf_counter() - t0, p.returncode))
            if spec is not None:
                t0 = time.perf_counter()
                r = run(spec)
                samples.append(StartupSample(LIBRARY, i, time.perf_counter() - t0,
                                             r.exit_code if r.exit_code is not None else -1))
    finally:
        shutil.rmtree(state, ignore_errors=True)
        remove_empty_parents()  # runc and crun make our parent cgroup in hierarchies we never touch
    return samples


def medians(samples: Sequence[StartupSample]) -> dict[str, float]:
    """Median seconds per runtime, in first-seen order."""
    import statistics

    by: dict[str, list[float]] = {}
    for s in samples:
        by.setdefault(s.runtime, []).append(s.seconds)
    return {k: statistics.median(v) for k, v in by.items()}


__all__ = ["LIBRARY", "Command", "StartupSample", "medians", "pycontainer_command", "runc_style", "startup_times"]
