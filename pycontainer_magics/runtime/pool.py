"""Namespace holders ready before they are needed.

After a run, a holder for the same plan is prepared in the background by the launch helper, so the next
identical cell (a lecture re-run, a benchmark, a parameter sweep) starts with its namespaces and root
filesystem already made. One slot: a holder for another plan is dropped (it exits when its control
socket closes). Holders forked from the caller itself (a Python cell without root) are never pooled.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass

from .holder import HolderPlan, SetupFailed, prepare_holder
from .launch import Launch
from .zygote import HelperUnavailable, zygote


@dataclass
class Holder:
    pid: int
    sock: socket.socket
    plan: HolderPlan
    ours: bool  # forked by the caller (reap it), not by the helper

    def close(self) -> None:
        self.sock.close()


class Pool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready: Holder | None = None
        self._thread: threading.Thread | None = None

    def take(self, plan: HolderPlan, *, helper: bool, launch: Launch | None = None) -> Holder:
        """A ready holder for `plan`: the pooled one if it matches, else a fresh one (from the helper when
        `helper`, else forked from the caller with `launch` in memory)."""
        if helper:
            if self._thread is not None:
                self._thread.join()
            with self._lock:
                h, self._ready = self._ready, None
            if h is not None:
                if h.plan == plan and _alive(h.pid):
                    return h
                h.close()
            try:
                pid, sock = zygote().prepare(plan)
                return Holder(pid, sock, plan, ours=False)
            except HelperUnavailable:
                pass  # fork from the caller after all
        pid, sock = prepare_holder(plan, launch)
        return Holder(pid, sock, plan, ours=True)

    def prefetch(self, plan: HolderPlan) -> None:
        """Prepare a holder for `plan` in the background (the helper does the work)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self._prepare, args=(plan,), daemon=True,
                                        name="pycontainer-prepare")
        self._thread.start()

    def _prepare(self, plan: HolderPlan) -> None:
        try:
            pid, sock = zygote().prepare(plan)
        except (SetupFailed, OSError):
            return
        with self._lock:
            old, self._ready = self._ready, Holder(pid, sock, plan, ours=False)
        if old is not None:
            old.close()

    def drain(self) -> None:
        """Drop the prepared holder (it exits); used by tests and at shutdown."""
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            h, self._ready = self._ready, None
        if h is not None:
            h.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


pool = Pool()
