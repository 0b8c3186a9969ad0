"""One process run inside a cgroup, watched: counters before and after (OOM kills, throttling, refused
forks), samples over time (memory, CPU, pids, PSI), the kernel's messages about it, its output.
What `%cgroup run`, the experiments (experiments.py) and `%cgroup watch` use.
"""

from __future__ import annotations

import errno
import os
import selectors
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..linux.cgroups import Cgroup, CgroupError, explore
from ..runtime import launch
from ..runtime.channel import decode_frames
from ..runtime.plan import Chdir
from ..runtime.relay import QUIET, OutputFn, OutputRelay

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
    pids_refused: int | None = None  # pids.events max: forks refused at pids.max so far


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
                       pr.memory.get("some_avg10") if pr else None, explore.pids_events(cg).get("max"))


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
    L = launch.Launch(mode="plain", pid1_unshare=0, merged=None, plan=None, hostname=None,
                      env=dict(os.environ if env is None else env), steps=(Chdir(os.getcwd()),),
                      command=tuple(command or ()), python_code=python_code,
                      want_diff=False, rebind_root=False, python_globals=python_globals)
    join_fds = _open_join_files(cg)
    r = GroupRun(group=cg.name, version=cg.version, pid=0, before=counters(cg))
    kmsg = _Kmsg()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    st_r, st_w = os.pipe()
    devnull = os.open(os.devnull, os.O_RDONLY)
    r.t0 = time.monotonic()
    r.pid = _fork_member(L, join_fds, (devnull, out_w, err_w, st_w))
    for fd in (out_w, err_w, st_w, devnull, *join_fds):
        os.close(fd)
    output = OutputRelay(on_output)
    watch = _Watch(cg, r, interval, full_samples, on_sample, timeout, on_timeout)
    status = watch.relay(output, out_r, err_r, st_r)
    _finish(r, cg, watch, status, output, kmsg)
    return r


def _open_join_files(cg: Cgroup) -> list[int]:
    """The group's join files, opened here (a process joins by writing 0 into each)."""
    join_fds: list[int] = []
    try:
        for f in cg.join_files():
            join_fds.append(os.open(f, os.O_WRONLY | os.O_CLOEXEC))
    except OSError as exc:
        for fd in join_fds:
            os.close(fd)
        raise CgroupError(exc.errno or errno.EIO, f"cannot open join file: {exc.strerror}", exc.filename) from None
    return join_fds


def _fork_member(L: launch.Launch, join_fds: list[int], fds: tuple[int, int, int, int]) -> int:
    """Fork the process that joins the group and runs the payload. fds: stdin, stdout, stderr, status."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status_fd = fds[3]
        try:
            os.setsid()
            launch.reset_signals()
            for fd in join_fds:
                os.write(fd, b"0")
            launch.setup_fds(*fds)
            status_fd = launch.STATUS_FD
            if L.command:
                launch._exec_command(L)
            else:
                launch._run_python(L)
        except BaseException as e:  # noqa: BLE001
            launch.report_failure("join", e, fd=status_fd)
        os._exit(125)
    return pid


class _Watch:
    """Relays the member's output and status while sampling the group and enforcing the timeout."""

    def __init__(self, cg: Cgroup, r: GroupRun, interval: float | None, full_samples: bool,
                 on_sample: Callable[[GroupSample], None] | None, timeout: float | None,
                 on_timeout: Callable[[Cgroup], bool] | None) -> None:
        self.cg, self.r = cg, r
        self.interval, self.full_samples, self.on_sample = interval, full_samples, on_sample
        self.timeout, self.on_timeout = timeout, on_timeout
        self.deadline = r.t0 + timeout if timeout else None
        self.next_sample = r.t0
        self.killed = False

    def _sample(self, now: float) -> None:
        if not self.interval or now < self.next_sample:
            return
        try:
            s = take_sample(self.cg, self.r.t0, self.full_samples)
            self.r.samples.append(s)
            if self.on_sample is not None:
                self.on_sample(s)
        except OSError:
            pass
        self.next_sample = max(self.next_sample + self.interval, now)

    def _check_timeout(self, now: float) -> None:
        if self.deadline is None or now < self.deadline or self.killed:
            return
        self.r.at_timeout = counters(self.cg)
        if self.on_timeout is not None and self.on_timeout(self.cg):
            self.deadline = now + (self.timeout or 0)
            self.on_timeout = None
        else:
            self.r.timed_out = True
            self.killed = True
            self.cg.kill_all()

    def _wait(self, output: OutputRelay) -> float | None:
        waits = [t for t in (self.next_sample if self.interval else None,
                             self.deadline if not self.killed else None) if t]
        wait = max(0.0, min(waits) - time.monotonic()) if waits else None
        if output.holding:  # a partial line: show it once the pipes go quiet
            wait = QUIET if wait is None else min(wait, QUIET)
        return wait

    def relay(self, output: OutputRelay, out_r: int, err_r: int, st_r: int) -> bytearray:
        """Until the pipes close; returns what came on the status pipe. On any exception (an interrupt) the
        group is killed and the member reaped before it propagates."""
        status = bytearray()
        streams = {out_r: "stdout", err_r: "stderr"}
        sel = selectors.DefaultSelector()
        for fd in (out_r, err_r, st_r):
            sel.register(fd, selectors.EVENT_READ)
        try:
            while sel.get_map():
                now = time.monotonic()
                self._sample(now)
                self._check_timeout(now)
                events = sel.select(self._wait(output))
                if not events:
                    output.flush()
                for key, _ in events:
                    fd = int(key.fd)
                    data = os.read(fd, 65536)
                    if fd == st_r:
                        status += data
                    else:
                        output.feed(streams[fd], data)
                    if not data:
                        sel.unregister(fd)
                        os.close(fd)
        except BaseException:
            try:
                self.cg.kill_all()
            finally:
                for key in list(sel.get_map().values()):
                    os.close(int(key.fd))
                _reap(self.r.pid)
            raise
        finally:
            sel.close()
        return status


def _finish(r: GroupRun, cg: Cgroup, watch: _Watch, status: bytearray, output: OutputRelay, kmsg: _Kmsg) -> None:
    """Reap the member; the last sample, exit status, errors, output, what it left, counters, kernel log."""
    wstatus = _reap(r.pid)
    r.duration = time.monotonic() - r.t0
    if watch.interval:
        try:
            r.samples.append(take_sample(cg, r.t0, watch.full_samples))
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
    output.flush()
    r.stdout = output.text("stdout")
    r.stderr = output.text("stderr")
    if cg.procs():  # what the process left (daemonized children, a fork bomb's rest)
        cg.kill_all()
    r.after = counters(cg)
    r.kernel_messages = kmsg.lines_about(r.pid)


def _reap(pid: int) -> int:
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except ChildProcessError:
            return 0
        except InterruptedError:
            continue


__all__ = ["GroupRun", "GroupSample", "counters", "run_in_group", "take_sample", "watch"]
