"""Conformance, measured: a checker that runs inside a container and reports what it observes, run under
this project, crun and runc on one bundle, and compared.

The checker is a POSIX shell script (busybox is enough) printing `key=value` lines: namespaces, hostname,
id maps, capability sets, no_new_privs, seccomp mode, the open-files limit, mounts and their options,
masked and read-only paths, /dev and its links, cgroup limits as seen from inside, open fds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..runtime.rootfs import MASKED_PATHS, READONLY_PATHS

CHECKER = r"""
for n in mnt uts ipc pid net user cgroup time; do echo "ns.$n=$(readlink /proc/self/ns/$n 2>/dev/null)"; done
echo "hostname=$(hostname)"
echo "uid_map=$(cat /proc/self/uid_map | tr -s ' ' | tr '\n' ';')"
echo "gid_map=$(cat /proc/self/gid_map | tr -s ' ' | tr '\n' ';')"
echo "uid=$(id -u) gid=$(id -g)"
for f in CapInh CapPrm CapEff CapBnd CapAmb NoNewPrivs Seccomp; do
  echo "status.$f=$(grep "^$f:" /proc/self/status | tr -d '\t ' | cut -d: -f2)"
done
echo "rlimit.nofile=$(grep 'Max open files' /proc/self/limits | tr -s ' ' | cut -d' ' -f4,5)"
while read -r id parent mm root mp opts rest; do
  fstype=$(echo "$rest" | sed 's/.* - //' | cut -d' ' -f1)
  flags=$(echo "$opts" | tr ',' '\n' | grep -E '^(ro|rw|nosuid|nodev|noexec)$' | sort | tr '\n' ',')
  echo "mount.$mp=$fstype $flags"
done < /proc/self/mountinfo
for p in MASKED; do
  if [ -d "$p" ]; then echo "masked.$p=$(ls -A "$p" 2>/dev/null | wc -l) entries"
  elif [ -e "$p" ]; then echo "masked.$p=$(head -c 64 "$p" 2>/dev/null | wc -c) bytes"; fi
done
for p in READONLY; do
  [ -e "$p" ] && { touch "$p" 2>/dev/null && echo "readonly.$p=writable" || echo "readonly.$p=read-only"; }
done
echo "dev=$(ls -A /dev | sort | tr '\n' ' ')"
for d in null zero full random urandom tty ptmx; do [ -e "/dev/$d" ] && echo "dev.$d=present"; done
for l in fd stdin stdout stderr ptmx core; do [ -L "/dev/$l" ] && echo "devlink.$l=$(readlink /dev/$l)"; done
echo "cgroup.memory=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max)"
echo "cgroup.pids=$(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max)"
echo "fds=$(ls /proc/self/fd | sort -n | tr '\n' ' ')"
"""


def checker_script() -> str:
    return CHECKER.replace("MASKED", " ".join(MASKED_PATHS)).replace("READONLY", " ".join(READONLY_PATHS))


# What the runtime spec leaves to the runtime: these may differ without being a bug (namespace inodes are
# new each run; mount options, extra cgroup hierarchies and /dev/core are each runtime's choice).
SPEC_ALLOWS = ("ns.", "mount.", "fds", "devlink.core")
SPEC_ALLOWS_EXACT = ("dev",)


@dataclass
class Observation:
    runtime: str
    values: dict[str, str] = field(default_factory=dict)
    error: str | None = None


def parse(output: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in output.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            out[k.strip()] = v.strip()
    return out


def observe_ours(bundle: str) -> Observation:
    from ..runtime.run import run
    from .bundle import load_bundle

    spec, _notes = load_bundle(bundle)
    r = run(spec, helper=False)
    if r.exit_code != 0:
        return Observation("pycontainer", error=f"exit {r.exit_code}: {r.stderr.strip()[-200:]}")
    return Observation("pycontainer", parse(r.stdout))


def observe_with(name: str, argv_prefix: list[str]) -> Callable[[str], Observation]:
    """An observer that runs the bundle with an OCI runtime's command line (`crun`, `runc`, or one prefixed
    with nsenter for crun on a hybrid host)."""
    def observe(bundle: str) -> Observation:
        state = tempfile.mkdtemp(prefix=f"pcm-{name}-")
        try:
            p = subprocess.run([*argv_prefix, "--root", state, "run", "--bundle", bundle,
                                f"pcm-conf-{os.getpid()}"], capture_output=True, text=True, timeout=60)
        finally:
            shutil.rmtree(state, ignore_errors=True)
            from ..runtime.run import remove_empty_parents
            remove_empty_parents()  # the runtime made our parent in hierarchies we do not manage
        if p.returncode != 0:
            return Observation(name, error=f"exit {p.returncode}: {p.stderr.strip()[-200:]}")
        return Observation(name, parse(p.stdout))
    return observe


def bundle_with_checker(directory: str, base_config: dict[str, object]) -> str:
    """Write `directory`/config.json: `base_config` with the checker as its process."""
    config = json.loads(json.dumps(base_config))
    proc = config.setdefault("process", {})
    assert isinstance(proc, dict)
    proc["args"] = ["sh", "-c", checker_script()]
    proc["terminal"] = False
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    return directory


def compare(observations: list[Observation]) -> list[dict[str, object]]:
    """One row per key: each runtime's value, whether they agree, and whether the spec fixes that row."""
    keys = sorted({k for o in observations for k in o.values})
    rows: list[dict[str, object]] = []
    for k in keys:
        vals = {o.runtime: o.values.get(k) for o in observations}
        rows.append({"key": k, **vals, "same": len(set(vals.values())) == 1,
                     "spec_fixes": not k.startswith(SPEC_ALLOWS) and k not in SPEC_ALLOWS_EXACT})
    return rows


class CrunRunner:
    """crun 1.8 refuses the hybrid cgroup layout: on such a host run it in a mount namespace of our own where
    /sys/fs/cgroup/unified is unmounted (kept alive by a `sleep` we start and end by its pid)."""

    def __init__(self) -> None:
        self.holder: subprocess.Popen[bytes] | None = None
        self.prefix: list[str] = []

    def __enter__(self) -> CrunRunner:
        crun = shutil.which("crun")
        if crun is None:
            raise FileNotFoundError("crun is not installed (apt-get install crun)")
        unified = any(" /sys/fs/cgroup/unified " in line for line in open("/proc/self/mountinfo"))
        if not unified:
            self.prefix = [crun]
            return self
        self.holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sleep", "600"])
        ns = f"/proc/{self.holder.pid}/ns/mnt"
        for _ in range(100):  # until unshare has exec'd sleep in its new namespace
            if os.readlink(ns) != os.readlink("/proc/self/ns/mnt"):
                break
            time.sleep(0.01)
        subprocess.run(["nsenter", f"--mount={ns}", "umount", "/sys/fs/cgroup/unified"], check=True)
        self.prefix = ["nsenter", f"--mount={ns}", crun]
        return self

    def __exit__(self, *exc: object) -> None:
        if self.holder is not None:
            self.holder.kill()
            self.holder.wait()
