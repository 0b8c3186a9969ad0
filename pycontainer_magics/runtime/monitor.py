"""The sampler: reads the memory, CPU and pids counters of running containers' cgroups at a fixed
interval. One long-lived thread serves every run (starting a thread per cell costs more than the
sampling itself); each reading is three small file reads. The final figures of a run come from the
kernel's own counters, not from these samples."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..linux.cgroups import Cgroup
from .result import Sample


class Monitor:
    """Samples one cgroup every `interval` seconds between start() and stop()."""

    def __init__(self, cgroup: Cgroup, interval: float, t0: float,
                 on_sample: Callable[[Sample], None] | None = None) -> None:
        self.cgroup = cgroup
        self.interval = interval
        self.t0 = t0
        self.samples: list[Sample] = []
        self.on_sample = on_sample
        self.due = 0.0

    def start(self) -> None:
        """Take the first sample now, on the calling thread; the next ones come every interval from the sampler's
        once arm() tells it. (Before PID 1 exists: the sampler's thread, woken then, would take the interpreter
        from the caller at its next system call on the way to the fork.)"""
        self.sample()
        self.due = time.monotonic() + self.interval
        _sampler.add(self)

    def arm(self) -> None:
        """Let the sampler's thread know of it (once PID 1 is on its way): well before the next sample is due."""
        _sampler.wake()

    def sample(self) -> None:
        cg = self.cgroup
        try:
            s = Sample(time.monotonic() - self.t0, cg.memory_usage(), cg.cpu_usage_ns(), cg.pids_current())
        except OSError:
            return  # the cgroup is going away
        self.samples.append(s)
        if self.on_sample is not None:
            self.on_sample(s)

    def stop(self) -> list[Sample]:
        """Stop and return the samples. The last reading is the caller's: run._execute takes it from the final
        counters it reads anyway."""
        _sampler.remove(self)
        return self.samples


class _Sampler:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active: list[Monitor] = []
        self._thread: threading.Thread | None = None

    def add(self, m: Monitor) -> None:
        """Sampled from the next wake() (or the thread's next timed wake-up for another monitor)."""
        with self._cond:
            self._active.append(m)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="pycontainer-sampler", daemon=True)
                self._thread.start()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify()

    def remove(self, m: Monitor) -> None:
        # The lock is held while sampling: once this returns, m gets no more samples from the thread.
        with self._cond:
            if m in self._active:
                self._active.remove(m)

    def _loop(self) -> None:
        with self._cond:
            while True:
                if not self._active:
                    self._cond.wait()
                    continue
                now = time.monotonic()
                for m in self._active:
                    if m.due <= now:
                        m.sample()
                        m.due = max(m.due + m.interval, now)
                self._cond.wait(max(0.0, min(m.due for m in self._active) - time.monotonic()))


_sampler = _Sampler()
