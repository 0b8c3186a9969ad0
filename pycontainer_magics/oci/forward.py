"""The signals `run` and `exec` (without --detach) pass on to the container's process, as runc's signal handler
does: caught from before the process exists and held until it runs, then sent to it. Caught only once it ran,
a signal that came in between (a caller that read the process's first line and stopped it at once) ended the
runtime instead, and left the container running without it."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing is not imported at run time: engines call `exec` often (oci/exec.py)
if TYPE_CHECKING:
    from typing import Any

# The signal module imports enum (~2.5 ms); _signal is what it wraps, and all this needs. The container's init
# (oci/init.py), forked with these handlers in place, imports this to put them back to the default.
signal: Any = __import__("_signal")

FORWARDED: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                              signal.SIGUSR2)


class Forwarder:
    def __init__(self, signals: tuple[int, ...] = FORWARDED) -> None:
        self.pid: int | None = None
        self.held: list[int] = []
        for s in signals:
            signal.signal(s, self._caught)

    def _caught(self, sig: int, _frame: Any) -> None:
        # (A Python handler runs in the main thread only, between two of its bytecodes; in a child forked before
        # its exec, it only holds the signal in that child's memory.)
        if self.pid is None:
            self.held.append(sig)
        else:
            self._send(sig)

    def _send(self, sig: int) -> None:
        assert self.pid is not None
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def to(self, pid: int) -> None:
        """The process runs: what was held goes to it now, in order; what comes later goes at once."""
        self.pid = pid
        held, self.held = self.held, []
        for sig in held:
            self._send(sig)


__all__ = ["FORWARDED", "Forwarder"]
