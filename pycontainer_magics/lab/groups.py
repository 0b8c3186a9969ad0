"""Named cgroups for exploration (`%cgroup`), running a cell or a command inside one, sampling, and the
experiments' data (OOM hog, throttling, fork bomb, competing CPU groups).

Groups made here live under the project's parent like containers do, as `<parent>/named-<NAME>`
(a name `prune`'s owner rule never matches, so `%load_ext` keeps them). They are removed by `rm`, by
`prune`, and at interpreter exit (atexit) for those this process created. Writing is only ever done
through a `Cgroup` of our hierarchy: anything outside our parent is refused with EPERM.
"""

from __future__ import annotations

import atexit
import errno
import os
import re
import selectors
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..linux.cgroups import Cgroup, CgroupError, CgroupLimits, Hierarchy, explore, new_name, open_hierarchy
from ..runtime import launch
from ..runtime.channel import decode_frames

NAMED_PREFIX = "named-"
NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,63}")
MiB = 2**20


# -- named groups -------------------------------------------------------------------------------------


class Groups:
    """The named groups of one hierarchy (default: the project's, from `open_hierarchy()`)."""

    def __init__(self, hierarchy: Hierarchy | None = None) -> None:
        self._h = hierarchy
        self.created: set[str] = set()  # names this process created (removed at exit)
        self._atexit = False

    @property
    def hierarchy(self) -> Hierarchy:
        if self._h is None:
            self._h = open_hierarchy()
        return self._h

    @property
    def version(self) -> str:
        return self.hierarchy.version

    @staticmethod
    def check_name(name: str) -> str:
        if not NAME_RE.fullmatch(name):
            raise CgroupError(errno.EINVAL, f"invalid group name {name!r}: a letter, then letters, digits, "
                              "'_' or '.' (up to 64)", name)
        return name

    def create(self, name: str, limits: CgroupLimits | None = None, *, memory_high: int | None = None,
               oom_group: bool | None = None, oom_kill_disable: bool | None = None) -> Cgroup:
        self.check_name(name)
        dirname = NAMED_PREFIX + name
        if dirname in self.hierarchy.list():
            raise CgroupError(errno.EEXIST, f"group {name!r} exists already", dirname)
        cg = self.hierarchy.create(dirname, limits)
        try:
            set_extra(cg, memory_high=memory_high, oom_group=oom_group, oom_kill_disable=oom_kill_disable)
        except BaseException:
            cg.remove()
            raise
        self.created.add(name)
        if not self._atexit:
            atexit.register(self.cleanup)
            self._atexit = True
        return cg

    def names(self) -> list[str]:
        """Named groups under our parent (any process's)."""
        return [n[len(NAMED_PREFIX):] for n in self.hierarchy.list() if n.startswith(NAMED_PREFIX)]

    def get(self, target: str) -> Cgroup:
        """A named group, a container's cgroup under our parent (its directory name), a running container
        (its name or id), or a path to one of those (absolute, or relative to the hierarchy root). Anything
        else: EPERM, nothing written."""
        h = self.hierarchy
        if "/" in target:
            rel = self._relative(target)
            parent = getattr(h, "parent", "")
            head, _, child = rel.rpartition("/")
            if head != parent or not child:
                raise CgroupError(errno.EPERM, f"refusing to touch {target!r}: only cgroups directly under "
                                  f"the project's parent {parent!r} can be written (reading is allowed: "
                                  "%cgroup tree, %cgroup ls)", target)
            return h.get(child)
        if NAME_RE.fullmatch(target) and NAMED_PREFIX + target in h.list():
            return h.get(NAMED_PREFIX + target)
        if target in h.list():
            return h.get(target)
        # a running container of this process, by name or id (`%cgroup set web --memory 80M`)
        from ..workloads.containers import ContainerError, containers
        try:
            c = containers.get(target)
        except ContainerError:
            c = None
        if c is not None and c.running and c.id in h.list():
            return h.get(c.id)
        raise CgroupError(errno.ENOENT, f"no group or running container {target!r} under "
                          f"{getattr(h, 'parent', '')!r} (see %cgroup list, %container ps)", target)

    def _relative(self, path: str) -> str:
        h = self.hierarchy
        root = getattr(h, "root", "/sys/fs/cgroup")
        p = os.path.normpath(path)
        if p.startswith("/"):
            mps = sorted(getattr(h, "mount_points", {}).values(), key=len, reverse=True) or [root]
            for mp in [*mps, root]:
                if p == mp or p.startswith(mp.rstrip("/") + "/"):
                    return p[len(mp):].strip("/")
            return p.strip("/")
        return p.strip("/")

    def remove(self, name: str) -> None:
        cg = self.get(name)
        cg.remove()
        self.created.discard(cg.name[len(NAMED_PREFIX):] if cg.name.startswith(NAMED_PREFIX) else cg.name)

    def prune(self) -> list[str]:
        """Remove every named group that holds no process, and the cgroups of dead owners (containers a
        killed kernel left). Returns what was removed."""
        removed = []
        for name in self.names():
            cg = self.hierarchy.get(NAMED_PREFIX + name)
            if cg.procs():
                continue
            cg.remove()
            self.created.discard(name)
            removed.append(name)
        removed += self.hierarchy.prune()
        return removed

    def cleanup(self) -> None:
        """At exit: remove the groups this process created (killing what is left in them)."""
        for name in sorted(self.created):
            try:
                self.hierarchy.get(NAMED_PREFIX + name).remove()
            except OSError:
                pass
        self.created.clear()
        try:
            self.hierarchy.remove_parent()
        except OSError:
            pass


def set_extra(cg: Cgroup, *, memory_high: int | None = None, oom_group: bool | None = None,
              oom_kill_disable: bool | None = None, memory_high_max: bool = False) -> None:
    """The knobs outside CgroupLimits (one version each: a clear error on the other)."""
    if memory_high is not None or memory_high_max:
        explore.set_memory_high(cg, None if memory_high_max else memory_high)
    if oom_group is not None:
        explore.set_oom_group(cg, oom_group)
    if oom_kill_disable is not None:
        explore.set_oom_kill_disable(cg, oom_kill_disable)


# -- counters and samples -----------------------------------------------------------------------------


def counters(cg: Cgroup) -> dict[str, int]:
    """The counters the experiments compare before/after, flat: memory.events/oom_control (+failcnt),
    pids.events (`pids_max`), cpu.stat (`nr_throttled`, `throttled_usec`, ...), peaks."""
    out: dict[str, int] = {}
    for k, v in explore.memory_events(cg).items():
        out[k] = v
    for k, v in explore.pids_events(cg).items():
        out[f"pids_{k}"] = v
    for k, v in explore.cpu_stat(cg).items():
        if k in ("nr_periods", "nr_throttled", "throttled_usec", "usage_usec"):
            out[k] = v
    st = cg.stats()
    if st.memory_peak is not None:
        out["memory_peak"] = st.memory_peak
    if st.pids_peak is not None:
        out["pids_peak"] = st.pids_peak
    return out


@dataclass(frozen=True)
class GroupSample:
    t: float
    memory: int
    cpu_ns: int
    pids: int
    oom_kill: int
    nr_throttled: int | None = None
    throttled_usec: int | None = None
    psi_cpu: float | None = None  # some avg10 (%)
    psi_memory: float | None = None


def take_sample(cg: Cgroup, t0: float, full: bool = True) -> GroupSample:
    """One reading: the cheap hot files, plus (full) cpu.stat and PSI."""
    t = time.monotonic() - t0
    s = GroupSample(t, cg.memory_usage(), cg.cpu_usage_ns(), cg.pids_current(), cg.oom_kill_count())
    if not full:
        return s
    cs = explore.cpu_stat(cg)
    pr = explore.pressure(cg)
    return GroupSample(s.t, s.memory, s.cpu_ns, s.pids, s.oom_kill, cs.get("nr_throttled"),
                       cs.get("throttled_usec"), pr.cpu.get("some_avg10") if pr else None,
                       pr.memory.get("some_avg10") if pr else None)


def watch(cg: Cgroup, duration: float, interval: float = 0.2,
          on_sample: Callable[[GroupSample], None] | None = None,
          stop: Callable[[], bool] | None = None) -> list[GroupSample]:
    """Sample `cg` every `interval` s for `duration` s (or until stop() or Ctrl-C)."""
    t0 = time.monotonic()
    samples: list[GroupSample] = []
    due = t0
    try:
        while True:
            try:
                s = take_sample(cg, t0)
            except OSError:
                break  # the group went away
            samples.append(s)
            if on_sample is not None:
                on_sample(s)
            if s.t >= duration or (stop is not None and stop()):
                break
            due += interval
            time.sleep(max(0.0, due - time.monotonic()))
    except KeyboardInterrupt:
        pass
    return samples


# -- running a cell or a command in a group -----------------------------------------------------------


@dataclass
class GroupRun:
    """One process run inside a group: its outcome, output, counters before/after, and samples."""

    group: str
    version: str
    pid: int
    exit_code: int | None = None  # None: killed by a signal
    signal: int | None = None
    stdout: str = ""
    stderr: str = ""
    error: str | None = None  # a Python cell's traceback
    duration: float = 0.0
    timed_out: bool = False
    before: dict[str, int] = field(default_factory=dict)
    after: dict[str, int] = field(default_factory=dict)
    at_timeout: dict[str, int] = field(default_factory=dict)  # counters when the timeout struck
    samples: list[GroupSample] = field(default_factory=list)
    kernel_messages: list[str] = field(default_factory=list)
    limits: dict[str, Any] = field(default_factory=dict)
    t0: float = 0.0  # time.monotonic() at the fork; samples' t are relative to it

    def cpu_between(self, start: float, end: float) -> float | None:
        """CPU seconds the group used between two time.monotonic() moments (interpolated samples)."""
        import bisect

        ts = [s.t for s in self.samples]
        if len(ts) < 2 or start - self.t0 < ts[0] or end - self.t0 > ts[-1]:
            return None

        def at(t: float) -> float:
            i = max(1, min(bisect.bisect_left(ts, t), len(ts) - 1))
            a, b = self.samples[i - 1], self.samples[i]
            f = 0.0 if b.t == a.t else (t - a.t) / (b.t - a.t)
            return a.cpu_ns + f * (b.cpu_ns - a.cpu_ns)

        return (at(end - self.t0) - at(start - self.t0)) / 1e9

    def delta(self, key: str) -> int:
        return self.after.get(key, 0) - self.before.get(key, 0)

    @property
    def moved(self) -> dict[str, tuple[int, int]]:
        """Counters that changed (peaks and usage left out): name -> (before, after)."""
        skip = {"memory_peak", "pids_peak", "usage_usec", "nr_periods"}
        keys = sorted(set(self.before) | set(self.after))
        return {k: (self.before.get(k, 0), self.after.get(k, 0)) for k in keys
                if k not in skip and self.before.get(k, 0) != self.after.get(k, 0)}

    @property
    def oom_killed(self) -> bool:
        """Killed by SIGKILL while the group's oom_kill counter moved."""
        return self.signal == signal.SIGKILL and self.delta("oom_kill") > 0

    @property
    def oom_at(self) -> float | None:
        """Time of the first sample where oom_kill moved."""
        base = self.before.get("oom_kill", 0)
        for s in self.samples:
            if s.oom_kill > base:
                return s.t
        return None

    @property
    def status(self) -> str:
        if self.timed_out:
            return "timed out (killed)"
        if self.oom_killed:
            return "OOMKilled"
        if self.signal is not None:
            return f"killed by {signal.Signals(self.signal).name}"
        return f"exited {self.exit_code}"


class _Kmsg:
    """The kernel log from now on (root only; silently empty otherwise)."""

    def __init__(self) -> None:
        try:
            self.fd: int | None = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.lseek(self.fd, 0, os.SEEK_END)
        except OSError:
            self.fd = None

    def lines_about(self, pid: int) -> list[str]:
        if self.fd is None:
            return []
        out: list[str] = []
        try:
            while True:
                try:
                    rec = os.read(self.fd, 8192)
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno == errno.EPIPE:  # overwritten records: continue with the next
                        continue
                    break
                if not rec:
                    break
                msg = rec.decode(errors="replace").partition(";")[2].split("\n", 1)[0]
                if f"pid={pid}," in msg or f"process {pid} " in msg or f"Killed process {pid}" in msg:
                    out.append(msg)
        finally:
            os.close(self.fd)
            self.fd = None
        return out


OutputFn = Callable[[str, str], None]


def run_in_group(cg: Cgroup, *, python_code: str | None = None, command: list[str] | None = None,
                 python_globals: dict[str, Any] | None = None, timeout: float | None = None,
                 on_timeout: Callable[[Cgroup], bool] | None = None, interval: float | None = None,
                 on_output: OutputFn | None = None, on_sample: Callable[[GroupSample], None] | None = None,
                 full_samples: bool = False, env: dict[str, str] | None = None) -> GroupRun:
    """Fork, join `cg` (writing 0 into its join files), run the Python code (in the fork, so it sees
    python_globals) or exec the command; relay its output; sample the group every `interval` s.

    At `timeout` the counters are recorded (`at_timeout`), then on_timeout(cg) is asked: True means it
    freed the process (e.g. raised a limit) and the run may go on for another `timeout`; otherwise the
    process and the rest of the group are killed. No namespaces: a plain process under the group's limits.
    """
    if (python_code is None) == (command is None):
        raise ValueError("give python_code or command")
    L = launch.Launch(mode="plain", pid1_unshare=0, merged=None, plan=None, hostname=None, workdir=os.getcwd(),
                      env=dict(os.environ if env is None else env), capabilities=frozenset(),
                      no_new_privileges=False, command=tuple(command or ()), python_code=python_code,
                      want_diff=False, rebind_root=False, python_globals=python_globals)
    join_fds = []
    try:
        for f in cg.join_files():
            join_fds.append(os.open(f, os.O_WRONLY | os.O_CLOEXEC))
    except OSError as exc:
        for fd in join_fds:
            os.close(fd)
        raise CgroupError(exc.errno or errno.EIO, f"cannot open join file: {exc.strerror}", exc.filename) from None
    r = GroupRun(group=cg.name, version=cg.version, pid=0, before=counters(cg))
    kmsg = _Kmsg()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    st_r, st_w = os.pipe()
    devnull = os.open(os.devnull, os.O_RDONLY)
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status_fd = st_w
        try:
            os.setsid()
            launch.reset_signals()
            for fd in join_fds:
                os.write(fd, b"0")
            launch.setup_fds(devnull, out_w, err_w, st_w)
            status_fd = launch.STATUS_FD
            if L.command:
                launch._exec_command(L)
            else:
                launch._run_python(L)
        except BaseException as e:  # noqa: BLE001
            launch.report_failure("join", e, fd=status_fd)
        os._exit(125)
    r.pid = pid
    r.t0 = t0
    for fd in (out_w, err_w, st_w, devnull, *join_fds):
        os.close(fd)
    status = bytearray()
    decoders = {out_r: ("stdout", bytearray()), err_r: ("stderr", bytearray())}
    texts: dict[str, list[str]] = {"stdout": [], "stderr": []}
    sel = selectors.DefaultSelector()
    for fd in (out_r, err_r, st_r):
        sel.register(fd, selectors.EVENT_READ)
    deadline = t0 + timeout if timeout else None
    next_sample = t0
    killed = False
    try:
        while sel.get_map():
            now = time.monotonic()
            if interval and now >= next_sample:
                try:
                    s = take_sample(cg, t0, full_samples)
                    r.samples.append(s)
                    if on_sample is not None:
                        on_sample(s)
                except OSError:
                    pass
                next_sample = max(next_sample + interval, now)
            if deadline is not None and now >= deadline and not killed:
                r.at_timeout = counters(cg)
                if on_timeout is not None and on_timeout(cg):
                    deadline = now + (timeout or 0)
                    on_timeout = None
                else:
                    r.timed_out = True
                    killed = True
                    cg.kill_all()
            waits = [t for t in (next_sample if interval else None, deadline if not killed else None) if t]
            wait = max(0.0, min(waits) - time.monotonic()) if waits else None
            for key, _ in sel.select(wait):
                fd = int(key.fd)  # type: ignore[arg-type]
                data = os.read(fd, 65536)
                if not data:
                    sel.unregister(fd)
                    os.close(fd)
                    continue
                if fd == st_r:
                    status += data
                    continue
                name, _buf = decoders[fd]
                text = data.decode(errors="replace")
                texts[name].append(text)
                if on_output is not None:
                    on_output(name, text)
    except BaseException:
        try:
            cg.kill_all()
        finally:
            for key in list(sel.get_map().values()):
                os.close(int(key.fd))  # type: ignore[arg-type]
            _reap(pid)
        raise
    finally:
        sel.close()
    wstatus = _reap(pid)
    r.duration = time.monotonic() - t0
    if interval:
        try:
            r.samples.append(take_sample(cg, t0, full_samples))
        except OSError:
            pass
    if os.WIFSIGNALED(wstatus):
        r.signal = os.WTERMSIG(wstatus)
    else:
        r.exit_code = os.WEXITSTATUS(wstatus)
    for msg in decode_frames(status):
        if "error" in msg:
            r.error = msg["error"]
        if "setup_error" in msg:
            r.error = msg["setup_error"].get("message")
        if "exec_error" in msg:
            r.error = msg["exec_error"].get("message")
    r.stdout = "".join(texts["stdout"])
    r.stderr = "".join(texts["stderr"])
    if cg.procs():  # what the process left (daemonized children, a fork bomb's rest)
        cg.kill_all()
    r.after = counters(cg)
    r.kernel_messages = kmsg.lines_about(pid)
    return r


def _reap(pid: int) -> int:
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except ChildProcessError:
            return 0
        except InterruptedError:
            continue


# -- experiments --------------------------------------------------------------------------------------

HOG = """
import sys, time
total, step, pause = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
held = []
while sum(len(b) for b in held) < total:
    held.append(b"x" * step)
    time.sleep(pause)
print(f"allocated {sum(len(b) for b in held) >> 20} MiB")
"""

SPIN = """
import sys, time
start = float(sys.argv[2]) if len(sys.argv) > 2 else time.monotonic()
time.sleep(max(0.0, start - time.monotonic()))
end = start + float(sys.argv[1])
n = 0
while time.monotonic() < end:
    n += 1
print(n)
"""

FORK_BOMB = """
import os, sys, time
end = time.monotonic() + float(sys.argv[1])
main = os.getpid()
refused = 0
while time.monotonic() < end:
    try:
        if os.fork() == 0:
            os.closerange(0, 3)
            continue          # the child forks too: a real bomb, held back only by pids.max
    except OSError:
        refused += 1
        time.sleep(0.002)
if os.getpid() == main:
    print(f"refused forks seen by the first process: {refused}")
    time.sleep(0.05)
os._exit(0)
"""


def hog_command(size: int, step: int = 4 * MiB, pause: float = 0.005) -> list[str]:
    """A Python process that allocates (and touches) `size` bytes in `step` chunks."""
    return [sys.executable, "-c", HOG, str(size), str(step), str(pause)]


def spin_command(seconds: float, start: float | None = None) -> list[str]:
    """Spin for `seconds` (from `start`, a time.monotonic() value, when given)."""
    return [sys.executable, "-c", SPIN, str(seconds), *([] if start is None else [repr(start)])]


def fork_bomb_command(seconds: float) -> list[str]:
    return [sys.executable, "-c", FORK_BOMB, str(seconds)]


class _Temp:
    """A throw-away group of ours (owner-pid name, so a killed kernel's leftovers are pruned)."""

    def __init__(self, h: Hierarchy | None, prefix: str, limits: CgroupLimits, **extra: Any) -> None:
        self.h = h or open_hierarchy()
        self.cg = self.h.create(new_name(prefix), limits)
        try:
            set_extra(self.cg, **extra)
        except BaseException:
            self.cg.remove()
            raise

    def __enter__(self) -> Cgroup:
        return self.cg

    def __exit__(self, *exc: object) -> None:
        self.cg.remove()


def oom_experiment(hog: int, memory: int, *, hierarchy: Hierarchy | None = None, swap: int | None = None,
                   memory_high: int | None = None, oom_group: bool | None = None,
                   oom_kill_disable: bool | None = None, interval: float = 0.01, timeout: float = 20.0,
                   step: int = 4 * MiB, on_timeout: Callable[[Cgroup], bool] | None = None,
                   on_sample: Callable[[GroupSample], None] | None = None) -> GroupRun:
    """Run a memory hog of `hog` bytes in a fresh group limited to `memory` (memory.max / limit_in_bytes;
    -1 for none), optionally with swap (memory+swap, Docker's --memory-swap), memory.high (v2),
    memory.oom.group (v2) or the OOM killer disabled (v1). Returns counters before/after and samples."""
    limits = CgroupLimits(memory=memory, memory_swap=swap)
    with _Temp(hierarchy, "oom-", limits, memory_high=memory_high, oom_group=oom_group,
               oom_kill_disable=oom_kill_disable) as cg:
        r = run_in_group(cg, command=hog_command(hog, step), interval=interval, timeout=timeout,
                         on_timeout=on_timeout, on_sample=on_sample)
        r.limits = {"memory": memory if memory >= 0 else None, "memory_swap": swap, "memory_high": memory_high,
                    "oom_group": oom_group, "oom_kill_disable": oom_kill_disable, "hog": hog}
        return r


def cpu_experiment(seconds: float, cpus: float | None, *, hierarchy: Hierarchy | None = None,
                   interval: float = 0.05) -> GroupRun:
    """Spin one process for `seconds` under a quota of `cpus` (None: no quota)."""
    with _Temp(hierarchy, "cpu-", CgroupLimits(cpus=cpus)) as cg:
        r = run_in_group(cg, command=spin_command(seconds), interval=interval, full_samples=True,
                         timeout=seconds * 20 + 5)
        r.limits = {"cpus": cpus}
        return r


def fork_bomb(pids_max: int, seconds: float = 1.0, *, hierarchy: Hierarchy | None = None,
              interval: float = 0.02) -> GroupRun:
    """A fork bomb for `seconds` in a group with pids.max = pids_max; the rest is killed afterwards."""
    with _Temp(hierarchy, "bomb-", CgroupLimits(pids_max=pids_max)) as cg:
        r = run_in_group(cg, command=fork_bomb_command(seconds), interval=interval, timeout=seconds * 10 + 5)
        r.limits = {"pids_max": pids_max}
        return r


@dataclass
class Competition:
    """Two groups spinning at once: their settings and CPU seconds used."""

    labels: tuple[str, str]
    runs: tuple[GroupRun, GroupRun]
    cpu_seconds: tuple[float, float]
    cpuset: str | None

    @property
    def ratio(self) -> float:
        a, b = self.cpu_seconds
        return a / b if b else float("inf")


def cpu_competition(a: CgroupLimits, b: CgroupLimits, seconds: float = 1.0, *, cpuset: str | None = "0",
                    hierarchy: Hierarchy | None = None, interval: float = 0.05) -> Competition:
    """Two groups, each spinning one process per CPU of `cpuset` for `seconds`, pinned to `cpuset`
    (shares/weight only matter when they compete for the same CPU)."""
    import threading

    ncpu = len(_cpus(cpuset)) if cpuset else (os.cpu_count() or 1)
    la = CgroupLimits(**{**a.__dict__, "cpuset_cpus": cpuset or a.cpuset_cpus})
    lb = CgroupLimits(**{**b.__dict__, "cpuset_cpus": cpuset or b.cpuset_cpus})
    t = time.monotonic()  # Python's start-up (seconds under emulation): both groups spin from one moment after it
    subprocess_run([sys.executable, "-c", "pass"])
    start = time.monotonic() + 0.2 + 4 * (time.monotonic() - t)
    spin = spin_command(seconds, start)
    code = (f"import subprocess, sys\nps = [subprocess.Popen({spin!r}) for _ in range({ncpu})]\n"
            "sys.exit(max(p.wait() for p in ps))\n")
    with _Temp(hierarchy, "cpuA-", la) as ca, _Temp(hierarchy, "cpuB-", lb) as cb:
        results: dict[str, GroupRun] = {}

        def go(key: str, cg: Cgroup) -> None:
            results[key] = run_in_group(cg, command=[sys.executable, "-c", code], interval=interval,
                                        full_samples=True, timeout=seconds * 20 + 5)

        tb = threading.Thread(target=go, args=("b", cb))
        tb.start()
        go("a", ca)
        tb.join()
    ra, rb = results["a"], results["b"]
    # CPU within the common spinning window (start-up excluded); the whole run's if a window is unsampled.
    win = [r.cpu_between(start + 0.05 * seconds, start + 0.95 * seconds) for r in (ra, rb)]
    if None in win:
        win = [ra.delta("usage_usec") / 1e6, rb.delta("usage_usec") / 1e6]
    secs = (float(win[0] or 0.0), float(win[1] or 0.0))
    return Competition((_label(la), _label(lb)), (ra, rb), secs, cpuset)


def subprocess_run(argv: list[str]) -> None:
    import subprocess

    subprocess.run(argv, check=False)


def _label(lim: CgroupLimits) -> str:
    parts = []
    if lim.cpu_shares is not None:
        parts.append(f"shares {lim.cpu_shares}")
    if lim.cpus is not None:
        parts.append(f"cpus {lim.cpus}")
    return ", ".join(parts) or "default"


def _cpus(spec: str) -> list[int]:
    out: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


__all__ = ["Competition", "GroupRun", "GroupSample", "Groups", "NAMED_PREFIX", "counters", "cpu_competition",
           "cpu_experiment", "fork_bomb", "oom_experiment", "run_in_group", "set_extra", "take_sample", "watch"]
