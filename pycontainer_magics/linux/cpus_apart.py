"""A forked child started on another CPU than its parent's, then given its CPUs back (a Python cell's PID 1).

Linux often queues a fork's child on its parent's CPU (here, 12 of 28 Python cells): when the parent has work left
after the fork (a cell's caller, 1-1.5 ms of it), the two take turns on one CPU while another idles. The parent
narrows the child's CPUs to the others right after the fork (a child still queued moves at once) and then says so
through a pipe; the child takes back the CPUs it was forked with only once it has that word — as a rule long there
by the time it asks, a few hundred microseconds into its start. The word makes the order certain: a child that took
its CPUs back before the parent narrowed them would keep one CPU too few (one cell in 540 did, without it).

The same word can wait for more of the parent's work (parent's before_go: for a Python cell, its writable layer's
bound and its holder's order, made after the fork so that they are off the cell's path): the child goes on only once
it has the word, and a parent that gives up closes the pipe without it — the child then ends (it is killed as well).

Where the child is in a cpuset by then (a cell's --cpuset-cpus), the set it takes back is bounded by it; a cpuset
with none of its caller's CPUs leaves the child on the cpuset's, as the fork alone would. What stays, on Linux 6.2 and
later: the kernel keeps the set the child took back as its requested affinity, which later cpuset changes are
intersected with — the CPUs its caller had at the fork, so neither a CPU brought online during the cell nor a cpuset
widened beyond its caller's CPUs is the cell's.
"""

from __future__ import annotations

import errno
import os

from ..errors import OSFailure
from . import libc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


class CpusApart:
    """Made in the parent before the fork; parent() right after it in the parent; child() in the child once it is in
    its cgroup, before it closes the fds it inherited and before anything of the cell's runs. Nothing is done (no
    pipe made) when the caller may use one CPU only, unless `gate`: the child waits for the parent's before_go."""

    def __init__(self, gate: bool = False) -> None:
        self.cpus = os.sched_getaffinity(0)
        self.fds = os.pipe2(os.O_CLOEXEC) if len(self.cpus) > 1 or gate else None

    def parent(self, pid: int, before_go: Callable[[], None] | None = None) -> None:
        """The child (pid) put on the CPUs but ours; then `before_go` done; then the child told. When before_go
        raises, the child is not told (the caller ends it) and the error is raised here."""
        if self.fds is None:
            assert before_go is None, "a step before the child goes on needs CpusApart(gate=True)"
            return
        if len(self.cpus) > 1:
            try:
                os.sched_setaffinity(pid, self.cpus - {libc.sched_getcpu()})
            except OSError:  # (gone already; or in a cpuset of other CPUs by now: it starts where it is)
                pass
        if before_go is not None:
            before_go()  # (raises: the pipe stays open until close(), after the caller has killed the child)
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
        word = os.read(r, 1)
        os.close(r)
        if not word:  # the parent went, or gave up on us (and kills us): nothing of the cell's may run
            raise OSFailure(errno.ECANCELED, "its caller went away or gave up before it could start")
        if len(self.cpus) == 1:
            return  # (only the gate: nothing was moved, and a set of one would be kept as the requested affinity)
        try:
            os.sched_setaffinity(0, self.cpus)
        except OSError as e:  # (in a cpuset of none of them: its CPUs, as joining it gave before the move)
            if e.errno != errno.EINVAL:
                raise
            os.sched_setaffinity(0, range(os.cpu_count() or 1))
