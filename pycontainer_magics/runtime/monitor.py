"""The sampler: reads a cgroup's memory, CPU and pids counters at a fixed interval in a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..linux.cgroups import Cgroup
from .result import Sample


class Monitor:
    """Samples `cgroup` every `interval` seconds until stopped. Each reading is three small file reads;
    the final figures of a run come from the kernel's own peak counters, not from these samples."""

    def __init__(self, cgroup: Cgroup, interval: float, t0: float,
                 on_sample: Callable[[Sample], None] | None = None) -> None:
        self.cgroup = cgroup
        self.interval = interval
        self.t0 = t0
        self.samples: list[Sample] = []
        self.on_sample = on_sample
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pycontainer-monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def sample(self) -> None:
        cg = self.cgroup
        try:
            s = Sample(time.monotonic() - self.t0, cg.memory_usage(), cg.cpu_usage_ns(), cg.pids_current())
        except OSError:
            return  # the cgroup is going away
        self.samples.append(s)
        if self.on_sample is not None:
            self.on_sample(s)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def stop(self) -> list[Sample]:
        """Stop, take one last reading, and return the samples."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.sample()
        return self.samples
