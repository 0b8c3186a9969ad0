"""A forked child started on another CPU than its parent's, then given its CPUs back (a Python cell's PID 1).

Linux often queues a fork's child on its parent's CPU (here, 12 of 28 Python cells): when the parent has work left
after the fork (a cell's caller, 1-1.5 ms of it), the two take turns on one CPU while another idles. The parent
narrows the child's CPUs to the others right after the fork (a child still queued moves at once) and then says so
through a pipe; the child takes back the CPUs it was forked with only once it has that word — as a rule long there
by the time it asks, a few hundred microseconds into its start. The word makes the order certain: a child that took
its CPUs back before the parent narrowed them would keep one CPU too few (one cell in 540 did, without it).

Where the child is in a cpuset by then (a cell's --cpuset-cpus), the set it takes back is bounded by it; a cpuset
with none of its caller's CPUs leaves the child on the cpuset's, as the fork alone would. What stays, on Linux 6.2 and
later: the kernel keeps the set the child took back as its requested affinity, which later cpuset changes are
intersected with — the CPUs its caller had at the fork, so neither a CPU brought online during the cell nor a cpuset
widened beyond its caller's CPUs is the cell's.
"""

from __future__ import annotations

import errno
import os

from . import libc


class CpusApart:
    """Made in the parent before the fork; parent() right after it in the parent; child() in the child once it is in
    its cgroup, before it closes the fds it inherited and before anything of the cell's runs. Nothing is done (no
    pipe made) when the caller may use one CPU only."""

    def __init__(self) -> None:
        self.cpus = os.sched_getaffinity(0)
        self.fds = os.pipe2(os.O_CLOEXEC) if len(self.cpus) > 1 else None

    def parent(self, pid: int) -> None:
        """The child (pid) put on the CPUs but ours, and told so."""
        if self.fds is None:
            return
        try:
            os.sched_setaffinity(pid, self.cpus - {libc.sched_getcpu()})
        except OSError:  # (gone already; or in a cpuset of other CPUs by now: it starts where it is)
            pass
        try:
            os.write(self.fds[1], b"\0")
        finally:
            self.close()

    def close(self) -> None:
        """The parent's ends closed (after parent(), or when the fork failed)."""
        if self.fds is not None:
            r, w = self.fds
            self.fds = None
            os.close(r)
            os.close(w)

    def child(self) -> None:
        """Wait until the parent has moved us, then take our CPUs back (the cell's PID 1 must have its caller's)."""
        if self.fds is None:
            return
        r, w = self.fds
        self.fds = None
        os.close(w)
        os.read(r, 1)  # (b"" if the parent went: nothing will move us then)
        os.close(r)
        try:
            os.sched_setaffinity(0, self.cpus)
        except OSError as e:  # (in a cpuset of none of them: its CPUs, as joining it gave before the move)
            if e.errno != errno.EINVAL:
                raise
            os.sched_setaffinity(0, range(os.cpu_count() or 1))
