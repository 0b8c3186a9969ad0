"""Namespace holders and cgroups ready before they are needed.

After a run, the pool prepares in the background (the launch helper does the work) what the next run of the same
KIND on the same network starts from, in a slot keyed by (network, kind):

  - "command": a holder whose PID 1 is parked in a cgroup of its own (holder.py _park: its namespaces, filesystems,
    pivot_root and privilege drop done; it waits for its command, environment and pipes). That cgroup belongs to
    the holder: it goes only to a command that can take that PID 1 over (take_cgroup, parked_for), never to a
    Python cell (whose peak memory and OOM count stay its own).
  - "python": a holder with what a Python cell's PID 1 moves into its root mounted ahead (holder.premount), and a
    free cgroup with the last cell's limits.

So a notebook that alternates Python and shell cells, or rotates between networks, finds a holder of the right
kind for every cell. After a run only its own slot is filled again; the other kind's is left as it is — unless
this run took its holder, having none ready of its own: then both are (a run never takes another slot's cgroup).
What is kept is bounded: two slots per network, for at most 1 + SPARES networks (the least recently filled go
first); a slot other than the one asked for last goes after SPARE_IDLE seconds unused; everything goes at drain()
(release(): %unload_ext; the process's exit). A killed process's holders and parked PID 1s die with it (their
parent's death, their sockets' end); the next prune removes its cgroups and reservations. Holders forked from
the caller itself (a Python cell without the helper) are never pooled, save what a process offer()s itself (the
engine daemon's spare supervisor).
"""

from __future__ import annotations

import collections
import contextlib
import os
import select
import socket
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..linux import libc, proc
from ..linux.cgroups import Cgroup, CgroupLimits, Hierarchy
from . import cleanup
from .cell_fork import HolderNamespaces, close_namespaces, open_holder_namespaces
from .channel import send_ctl
from .holder import HolderPlan, SetupFailed, prepare_holder
from .launch import Launch
from .rootfs import MountOp
from .state import new_id
from .zygote import HelperUnavailable, Premount, zygote

if TYPE_CHECKING:
    from ..network.networks import Endpoint  # (pyroute2 loads only for containers on a network)


@dataclass
class Holder:
    pid: int
    sock: socket.socket
    plan: HolderPlan
    ours: bool  # forked by the caller (reap it), not by the helper
    has_launch: bool = False  # forked with the launch in memory: the order need not carry it
    parked: tuple[Any, ...] | None = None  # PID 1 prepared too: for runs with this Launch.park_key() ...
    parked_cgroup: str | None = None  # ... in this cgroup (its name; None: no cgroup)
    parked_channel: socket.socket | None = None  # ... which takes its run from the caller over this socket (_park)
    parked_uts: int | None = None  # ... its host name set by the caller in this UTS namespace (an fd: run._give_run)
    run_given: bool = False  # a run was sent to that PID 1 (it must not be ordered from another holder then)
    endpoint: Endpoint | None = None  # reserved ahead in its network namespace (networking.reserve), for a run there
    # Mounts for its root made ahead, beside it (holder.premount): the plan's operations done (() for none).
    premounted: tuple[MountOp, ...] = ()
    # Its namespaces a Python cell's PID 1 enters, opened ahead (cell_fork.open_holder_namespaces): the run takes them.
    namespaces: HolderNamespaces | None = None
    # A mount namespace with its root pivoted into ahead (holder.pivoted_root), for a Python cell's PID 1: an fd.
    root_ns: int | None = None
    # Its writable layer's bound (plan.storage_size) is still to be set, by the run after it forks PID 1 (take()).
    bound_pending: bool = False
    # A pidfd of it, opened by the pool's thread that made it: whether it can still serve is one poll (_alive).
    pidfd: int | None = None

    def take_namespaces(self) -> HolderNamespaces | None:
        ns, self.namespaces = self.namespaces, None
        return ns

    def take_root_ns(self) -> int | None:
        fd, self.root_ns = self.root_ns, None
        return fd

    def close(self) -> None:
        """Let the holder go (it exits when its control socket closes); an endpoint reserved in it is released."""
        ns = self.take_namespaces()
        if ns is not None:
            close_namespaces(ns)
        fd = self.take_root_ns()
        if fd is not None:
            os.close(fd)
        if self.parked_channel is not None:
            self.parked_channel.close()  # (a PID 1 waiting on it then waits for the holder, which ends it)
            self.parked_channel = None
        if self.parked_uts is not None:
            os.close(self.parked_uts)
            self.parked_uts = None
        self.sock.close()
        pidfd, self.pidfd = self.pidfd, None
        if pidfd is not None:
            os.close(pidfd)
        if self.endpoint is not None:
            from . import networking

            ep, self.endpoint = self.endpoint, None
            networking.release(ep)


PARK_MIN_MEMORY = 64 << 20  # below this memory limit no PID 1 is prepared ahead (its interpreter waits in the cgroup)
SPARES = 2  # networks kept besides the last run's: at most 1 + SPARES networks, two slots (kinds) each
SPARE_IDLE = 120.0  # seconds a slot other than the one filled last lasts unused (and a network's "used lately")

COMMAND, PYTHON = "command", "python"  # the kinds of run a slot is prepared for (kind_of)
Key = tuple[str | None, str]  # a slot's key: (the network of the runs it is for, or None; their kind)


def kind_of(python: bool) -> str:
    """The kind of a run: a Python cell (its PID 1 the caller's child) or a command (PID 1 the holder's child)."""
    return PYTHON if python else COMMAND


def network_of(h: Holder) -> str | None:
    """The network a holder was prepared for: the one its endpoint is reserved on (None: none)."""
    return h.endpoint.network if h.endpoint is not None else None


@dataclass
class Slot:
    """What is kept ready for the next run of one kind on one network."""

    holder: Holder | None = None
    cgroup: tuple[CgroupLimits, Cgroup] | None = None  # a command slot's: where its PID 1 waits, if parked
    at: float = 0.0  # when it was last filled (a slot unused for SPARE_IDLE goes, unless it was filled last)

    def parked_here(self) -> bool:
        """Does a PID 1 wait in this slot's cgroup? (Then that cgroup is its holder's, for a command only.)"""
        return self.holder is not None and self.cgroup is not None and self.holder.parked_cgroup == self.cgroup[1].name


@dataclass(frozen=True)
class Recipe:
    """How a slot is filled (Pool.prefetch_later, the helper doing the work): kept, so that a slot emptied by a run of
    the other kind is filled again. A holder for `plan` and a cgroup with the limits `cgroup` gives; with `launch` (the
    launch of a run like the last in a given cgroup, without the caller's globals), the holder also prepares that
    run's PID 1, in the new cgroup, up to the payload (holder.py: parked) — that cgroup is then the holder's; with
    `reserve`, an endpoint on that network is attached to the holder's network namespace (reserved, see
    networking); with `premount` (a Python cell's: where, its filesystem plan's operations that can be made ahead, and
    the root to pivot into), the helper makes those mounts in the holder's namespaces (holder.premount)."""

    plan: HolderPlan | None  # the holder's (None: no holder, a cgroup only)
    cgroup: tuple[Hierarchy, CgroupLimits] | None
    launch: Callable[[Cgroup | None], Launch] | None  # a command's PID 1 to park in the slot's own new cgroup
    reserve: str | None  # the network an endpoint is reserved on, in the holder's network namespace
    premount: Premount | None  # a Python cell's mounts made ahead (holder.premount)
    made: Callable[[Cgroup], None] | None = None  # told of the cgroup made, for what the run works out from it ahead


class Pool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None  # one long-lived worker, started on first use
        self._busy = False  # the worker is filling a slot
        self._slots: dict[Key, Slot] = {}
        self._recipes: dict[Key, Recipe] = {}  # how each slot was last asked to be filled
        self._recipe_failed = False  # (a recipe that could not be made is said once)
        # slots the worker is to fill, in order: with a recipe, or what makes it (prefetch_later)
        self._wanted: dict[Key, Recipe | Callable[[], Recipe]] = {}
        self._stale: set[Key] = set()  # slots a run of another kind (or network) emptied: filled again at next prefetch
        self._last: Key | None = None  # the slot asked for last: "a run like the last" (never expires)
        self._used: dict[str | None, float] = {}  # when a run last went on each network ("used lately")
        # How take() served: "pooled" (prepared ahead for this plan), "resized" (prepared ahead, its writable
        # layer re-bounded), "made" (prepared on the cell's path). What a benchmark or a test reads.
        self.served: collections.Counter[str] = collections.Counter()

    def take(self, plan: HolderPlan, *, helper: bool, launch: Launch | None = None,
             run: tuple[Launch, Cgroup | None] | None = None, network: str | None = None) -> Holder:
        """A ready holder for `plan`: a pooled one if it fits, else a fresh one (from the helper when `helper`, else
        forked from the caller with `launch` in memory). `run`: the run's launch and cgroup; a pooled holder whose
        PID 1 was prepared for another launch or cgroup is not taken (a parked PID 1 is its PID namespace's init:
        once discarded, nothing more can be forked into that namespace). `network`: the network the run goes on
        (None: none); a holder with an endpoint reserved on another is not taken (a container on no network must
        not find a veth in its namespace)."""
        kind = kind_of(run is not None and run[0].python_code is not None)
        if not helper and (launch is None or launch.python_code is None):
            # A process that prepared its next run itself (offer(): the engine daemon's spare supervisor) takes
            # what it kept if it fits; anything else stays for the helper's runs. Not a Python cell forked by its
            # holder (nested): that holder must be a fork of the caller, the cell's globals in its memory (a kept
            # one the helper made would get the launch in the order, without them).
            with self._lock:
                s = self._slots.get((network, kind))
                h = s.holder if s is not None else None
                if s is not None and h is not None and self.fits(h, plan, run, network):
                    s.holder = None
                else:
                    h = None
            if h is not None:
                self.served["pooled"] += 1
                return h
        if helper:
            with self._lock:
                self._idle()  # (a preparation under way: it may be ours)
                h, fit, drop, gone = self._pick(plan, run, network, kind)
            for cg in gone:
                cleanup.defer(cg.remove)
            for d in drop:
                if network is not None and network_of(d) == network:
                    d.close()  # its address released now, before this run attaches on the same network
                else:
                    _let_go(d)
            if h is not None:
                if fit:
                    self.served["pooled"] += 1
                    return h
                if h.plan.resizable_to(plan) and self.fits(h, h.plan, run, network):
                    # Only the bound of the writable layer differs (a cell with --storage-opt size=, or a
                    # library run() after a magic's bounded cell): re-bound it rather than make another.
                    if run is not None and run[0].mode == "direct" and _rebound_here:
                        # A Python cell's: its PID 1, forked by the run, waits for the run's word before anything
                        # of the cell's, so the run sets the bound after that fork, beside PID 1's start
                        # (finish_rebound): 0.3 ms off the cell's path.
                        h.plan, h.bound_pending = plan, True
                        self.served["resized"] += 1
                        return h
                    try:
                        _rebound(h, plan.storage_size)
                        h.plan = plan
                        self.served["resized"] += 1
                        return h
                    except (SetupFailed, HelperUnavailable):
                        pass
                    except BaseException:
                        _let_go(h)  # (a Ctrl-C meanwhile: out of its slot and not the run's, it is nobody's)
                        raise
                _let_go(h)
            try:
                pid, sock = zygote().prepare(plan)
                self.served["made"] += 1
                return Holder(pid, sock, plan, ours=False)
            except HelperUnavailable:
                pass  # fork from the caller after all
        # (Also when the helper is unavailable: then without the launch, which the order carries.)
        self.served["made"] += 1
        pid, sock = prepare_holder(plan, launch)
        return Holder(pid, sock, plan, ours=True, has_launch=launch is not None)

    def _pick(self, plan: HolderPlan, run: tuple[Launch, Cgroup | None] | None, network: str | None,
              kind: str) -> tuple[Holder | None, bool, list[Holder], list[Cgroup]]:
        """(Under the lock.) The holder for this run, taken out of its slot: its own slot's (this network, this kind)
        if it fits, else the other kind's on this network, else one on no network that fits (no veth to find in it);
        "fits" here includes once take() has re-bounded its writable layer. A slot so emptied for a run
        of another kind or network is filled again at the next prefetch. Also returned: whether it fits as it is
        (not only once re-bounded), what is let go (its own slot's holder when it cannot serve, slots unused too
        long) and the cgroups that go with them (a PID 1 waits there)."""
        drop, gone = self._expire()
        own_key = (network, kind)
        order = [own_key, (network, PYTHON if kind == COMMAND else COMMAND),
                 *(k for k in self._slots if k[0] != network)]
        usable = [k for k in order if k in self._slots and (h := self._slots[k].holder) is not None
                  and (k[0] == network or h.endpoint is None)]
        # (One that serves once take() has re-bounded its writable layer serves as well: its own slot's rather than
        # another's that fits as it is, which that slot's own kind would then miss.)
        fit = False
        pick_key = None
        for k in usable:
            h = self._slots[k].holder
            if h is None:
                continue
            fit = self.fits(h, plan, run, network)
            if fit or (h.plan.resizable_to(plan) and self.fits(h, h.plan, run, network)):
                pick_key = k
                break
        own = self._slots.get(own_key)
        pick = None
        if pick_key is not None:
            s = self._slots[pick_key]
            pick, s.holder = s.holder, None
            if pick_key != own_key:
                self._stale.add(pick_key)
            if s.cgroup is not None and pick is not None and pick.parked_cgroup == s.cgroup[1].name:
                gone.append(s.cgroup[1])  # a PID 1 waits there that this run discards (a Python cell's holder)
                s.cgroup = None
        if own is not None and own.holder is not None and own.holder.parked_cgroup is not None and own.cgroup is None:
            pass  # its PID 1's cgroup went to another run (take_cgroup), which takes this holder: not ours to drop
        elif own is not None and own.holder is not None:  # its own slot's, when it cannot serve this run
            if own.parked_here():
                gone.append(own.cgroup[1])  # type: ignore[index]
                own.cgroup = None
            drop.append(own.holder)
            own.holder = None
        return pick, fit and pick is not None, drop, gone

    def used_lately(self, network: str | None) -> bool:
        """Note a run on `network` (None: none); True when a run went on it in the last SPARE_IDLE seconds before."""
        now = time.monotonic()
        with self._lock:
            last = self._used.get(network)
            self._used[network] = now
        return last is not None and now - last <= SPARE_IDLE

    @staticmethod
    def fits(h: Holder, plan: HolderPlan, run: tuple[Launch, Cgroup | None] | None,
             network: str | None = None) -> bool:
        """Can this run take `h`? Its plan must be equal. A Python cell's PID 1 is the caller's child in a PID
        namespace of its own: the holder discards its parked PID 1 and serves it. A command needs the parked
        PID 1 to fit (same mounts, same cgroup). An endpoint reserved in it must be on the run's `network`."""
        fits = h.parked is None or (run is not None and (
            run[0].mode == "direct" or (h.parked == run[0].park_key()
                                        and h.parked_cgroup == (run[1].name if run[1] is not None else None))))
        fits = fits and (h.endpoint is None or h.endpoint.network == network)
        return (h.plan is plan or h.plan == plan) and fits and _alive(h)

    def ready_for(self, plan: HolderPlan, run: tuple[Launch, Cgroup | None], network: str | None = None) -> bool:
        """Would take() hand this run a holder kept ready (without preparing one)?"""
        with self._lock:  # (asked while it is in its slot: only then is nobody closing it)
            s = self._slots.get((network, kind_of(run[0].python_code is not None)))
            h = s.holder if s is not None else None
            return h is not None and self.fits(h, plan, run, network)

    def fds(self) -> tuple[int, ...]:
        """The descriptors what is kept ready holds (the holders' control sockets and the namespaces opened ahead,
        the cgroups' counter and join files): a process that closes every other descriptor must keep these."""
        out: list[int] = []
        with self._lock:
            for s in self._slots.values():
                if s.holder is not None:
                    out.append(s.holder.sock.fileno())
                    if s.holder.parked_channel is not None:
                        out.append(s.holder.parked_channel.fileno())
                    if s.holder.parked_uts is not None:
                        out.append(s.holder.parked_uts)
                    if s.holder.namespaces is not None:
                        ns_fds, user_fd = s.holder.namespaces
                        out += [fd for fd, _ in ns_fds] + ([user_fd] if user_fd is not None else [])
                    if s.holder.root_ns is not None:
                        out.append(s.holder.root_ns)
                    if s.holder.pidfd is not None:
                        out.append(s.holder.pidfd)
                if s.cgroup is not None:
                    out += s.cgroup[1].kept_fds()
        return tuple(out)

    def ready_holder(self) -> tuple[int, bool] | None:
        """The pid of the holder kept ready for a run like the last, if any, and whether it was asked to park a
        PID 1."""
        with self._lock:
            s = self._slots.get(self._last) if self._last is not None else None
            h = s.holder if s is not None else None
            return (h.pid, h.parked is not None) if h is not None else None

    def ready_cgroup(self, network: str | None = None, kind: str = COMMAND) -> tuple[CgroupLimits, Cgroup] | None:
        with self._lock:
            s = self._slots.get((network, kind))
            return s.cgroup if s is not None else None

    def holders(self) -> dict[Key, Holder]:
        """The holders kept ready, by slot."""
        with self._lock:
            return {k: s.holder for k, s in self._slots.items() if s.holder is not None}

    def offer(self, holder: Holder, cgroup: tuple[CgroupLimits, Cgroup] | None, launch: Launch | None) -> None:
        """Keep what the caller prepared itself (a process that knows its next run: the engine daemon's spare
        supervisor) for the next take() of a command on no network: a holder, a cgroup, and with `launch` that
        run's PID 1 parked in the cgroup (see _park). What that slot kept before is dropped."""
        cg = cgroup[1] if cgroup is not None else None
        if launch is not None and (cgroup is None or cgroup[0].memory is None or cgroup[0].memory >= PARK_MIN_MEMORY):
            _park(holder, cg, lambda _cg: launch)
        key = (None, COMMAND)
        with self._lock:
            s = self._slots.setdefault(key, Slot())
            old, s.holder = s.holder, holder
            old_cg, s.cgroup = s.cgroup, cgroup
            s.at, self._last = time.monotonic(), key
        if old is not None:
            old.close()
        if old_cg is not None:
            cleanup.defer(old_cg[1].remove)

    def take_cgroup(self, h: Hierarchy, limits: CgroupLimits, *, parkable: bool = True, python: bool = False,
                    network: str | None = None) -> Cgroup:
        """A cgroup with `limits`: the one kept in the slot of the run's kind on its `network` if it matches, else a
        new one (named like a container id: its name is the run's id). A command slot's cgroup in which a PID 1
        waits goes only to a run that can take that PID 1 over (`parkable`: not a Python cell, whose peak memory
        and OOM count must be its own, nor a pod's member); such a run makes its own and leaves it there. One with
        other limits is removed (with a PID 1 waiting there: its holder then goes at take())."""
        with self._lock:
            self._idle()
            s = self._slots.get((network, kind_of(python)))
            ready = s.cgroup if s is not None else None
            if s is not None and ready is not None and (ready[0] != limits or parkable or not s.parked_here()):
                s.cgroup = None
            else:
                ready = None
        if ready is not None:
            if ready[0] == limits:
                return ready[1]
            cleanup.defer(ready[1].remove)
        return h.create(new_id(), limits)

    def forsake(self, cg: Cgroup) -> None:
        """The run handed `cg` (take_cgroup) will not take the PID 1 parked there (parked_for: not its own): the
        holder waits for nobody now, and the next run that cannot use it lets it go (_pick)."""
        with self._lock:
            for s in self._slots.values():
                if s.holder is not None and s.holder.parked_cgroup == cg.name:
                    s.holder.parked_cgroup = None

    def parked_for(self, cg: Cgroup, network: str | None = None,
                   plan: HolderPlan | None = None) -> tuple[Any, ...] | None:
        """The park key of the PID 1 prepared ahead in `cg`, if there is one; for a run on `network` with the holder
        plan `plan`: a PID 1 whose holder was prepared for another network (its key may be the same: a hosts file of
        the same id is all a network adds to the mounts) or another plan the holder cannot be re-bounded to (--share,
        --time offsets: not in the key) is not this run's, NOT_YOURS — take() would let that holder go, and its PID 1
        with it, leaving this run in the cgroup that PID 1 waited in."""
        with self._lock:
            for s in self._slots.values():
                h = s.holder
                if h is not None and h.parked_cgroup == cg.name:
                    if network_of(h) != network or (plan is not None and h.plan != plan
                                                    and not h.plan.resizable_to(plan)):
                        return NOT_YOURS
                    return h.parked
        return None

    def prefetch_later(self, slot: Key, make: Callable[[], Recipe]) -> None:
        """Fill `slot` (the last run's network and kind) in the background with what the recipe `make` returns, made
        by the pool's thread when it gets to it (not on the path of the run that asks for it: a run's end works it out
        from the run's plan, 0.1-0.2 ms of cold Python). The other slots stay as they are; one this run emptied
        (having none of its own ready) is filled again as it was before."""
        with self._lock:
            self._want(slot, make)

    def _want(self, slot: Key, recipe: Recipe | Callable[[], Recipe]) -> None:
        """(Under the lock.) Fill `slot` with `recipe` next, and the slots a run of another kind emptied again."""
        self._wanted[slot] = recipe
        for k in self._stale:
            if k != slot and k in self._recipes:
                self._wanted.setdefault(k, self._recipes[k])
        self._stale.clear()
        self._last = slot
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._worker, daemon=True, name="pycontainer-prepare")
            self._thread.start()
        self._work.notify_all()

    def _made(self, key: Key, make: Callable[[], Recipe]) -> Recipe | None:
        """The recipe of prefetch_later, made here (off the lock; busy meanwhile: a run waits for what it makes)."""
        try:
            recipe = make()
        except BaseException as e:  # noqa: BLE001 - (never seen) nothing is made for that slot: said once
            if not self._recipe_failed:
                self._recipe_failed = True
                warnings.warn(f"pycontainer_magics: the next container could not be prepared ahead: {e!r}",
                              RuntimeWarning, stacklevel=1)
            with self._lock:
                self._busy = False
                self._work.notify_all()
            return None
        with self._lock:
            self._recipes[key] = recipe
        return recipe

    def _worker(self) -> None:
        while True:
            with self._lock:
                while not self._wanted:
                    holders, cgroups = self._expire()
                    for h in holders:
                        _let_go(h)  # (cheap: a socket closed, or a release queued for the clean-up thread)
                    for c in cgroups:
                        cleanup.defer(c.remove)
                    self._work.wait(self._next_expiry())
                key = next(iter(self._wanted))
                wanted = self._wanted.pop(key)
                self._busy = True
            recipe = wanted if isinstance(wanted, Recipe) else self._made(key, wanted)
            if recipe is None:
                continue
            with self._lock:
                s = self._slots.get(key)
                # A free cgroup the slot still has with these limits serves (a slot emptied by a run of another
                # kind keeps it); a PID 1 is parked in a new one.
                keep_cg = s is not None and s.cgroup is not None and recipe.launch is None and not s.parked_here() \
                    and recipe.cgroup is not None and s.cgroup[0] == recipe.cgroup[1]
            try:
                holder, cg = self._fill(recipe, keep_cg)
            except BaseException:  # noqa: BLE001 - (never seen) the worker must not die with _busy set; _fill let
                holder, cg = None, None  # go of what it had made
            with self._lock:
                s = self._slots.setdefault(key, Slot())
                old = [s.holder] if holder is not None and s.holder is not None else []
                old_cgs = []
                if old and cg is None and s.parked_here():  # its PID 1 goes with the holder replaced: so does the
                    old_cgs.append(s.cgroup[1])  # type: ignore[index]  # cgroup it waited in (never a free one after)
                    s.cgroup = None
                if holder is not None:
                    s.holder = holder
                if cg is not None:
                    if s.cgroup is not None:
                        old_cgs.append(s.cgroup[1])
                    s.cgroup = cg
                s.at = time.monotonic()
                more_h, more_cg = self._bound()
                # Queue the removals before anyone can see us idle: drain() and then cleanup.settle() at exit must
                # find them queued, or they outlive the process.
                for c in old_cgs + more_cg:
                    cleanup.defer(c.remove)
                for h in old + more_h:
                    _let_go(h)  # (under the lock: drain() must find a reservation's release queued)
                if key in self._slots and s.holder is None and s.cgroup is None:
                    del self._slots[key]  # (nothing made: no empty slot kept)
                self._busy = False
                self._work.notify_all()

    @staticmethod
    def _fill(recipe: Recipe, keep_cg: bool) -> tuple[Holder | None, tuple[CgroupLimits, Cgroup] | None]:
        """Make what `recipe` asks for (off the lock): a holder (with its mounts made ahead, its endpoint reserved,
        its PID 1 parked in the new cgroup) and a cgroup (None when the slot keeps its own)."""
        holder = cg = None
        try:
            plan, want_cg, park, network, premount = recipe.plan, recipe.cgroup, recipe.launch, recipe.reserve, \
                recipe.premount
            if plan is not None:
                try:
                    pid, sock, done, root_ns = zygote().prepare_premounted(plan, premount)
                    holder = Holder(pid, sock, plan, ours=False, root_ns=root_ns)
                    with contextlib.suppress(OSError):  # (no pidfd_open before Linux 5.3: /proc is read then)
                        holder.pidfd = os.pidfd_open(pid)
                    if premount is not None and done:
                        holder.premounted = premount[1].ops
                    if premount is not None and os.geteuid() == 0:  # (for a Python cell's PID 1: direct mode)
                        with contextlib.suppress(OSError):  # (opened by the run then)
                            holder.namespaces = open_holder_namespaces(pid, plan)
                except (SetupFailed, OSError):
                    pass
            if want_cg is not None and not keep_cg:
                try:
                    cg = (want_cg[1], want_cg[0].create(new_id(), want_cg[1]))
                    cg[1].keep_open()  # (the run's final counters: a pread each, not an open on its path)
                    if recipe.made is not None:
                        recipe.made(cg[1])
                except OSError:
                    pass
            # Not under a small memory limit: the waiting interpreter's pages count against it.
            roomy = cg is None or cg[0].memory is None or cg[0].memory >= PARK_MIN_MEMORY
            will_park = holder is not None and park is not None and (want_cg is None or cg is not None) and roomy
            if holder is not None and network is not None:
                # A PID 1 for a run on a network binds the hosts file of the id its endpoint is reserved under: the
                # next cgroup's name, the id of the run that takes that PID 1. Otherwise an id of its own.
                _reserve(holder, network, cg[1].name if cg is not None and will_park else None)
            if holder is not None and park is not None and will_park \
                    and (network is None or holder.endpoint is not None):
                _park(holder, cg[1] if cg is not None else None, park)
            if holder is not None and network is not None and holder.endpoint is not None and holder.parked is None \
                    and cg is not None and holder.endpoint.container_id == cg[1].name:
                # Reserved under the next cgroup's name for a PID 1 that was not parked after all: that cgroup may
                # go to a run that attaches afresh, whose id would then name this reservation too (its hosts file, its
                # veth's name). Under an id of its own instead.
                from . import networking

                ep, holder.endpoint = holder.endpoint, None
                networking.release(ep)
                _reserve(holder, network, None)
        except BaseException:
            # (Never seen.) Nothing of it may outlive the failure unrecorded: the holder (its reservation), the cgroup.
            if holder is not None:
                cleanup.defer(holder.close)
            if cg is not None:
                cleanup.defer(cg[1].remove)
            raise
        return holder, cg

    def _expire(self) -> tuple[list[Holder], list[Cgroup]]:
        """(Under the lock.) Empty the slots unused for SPARE_IDLE seconds (but the one asked for last)."""
        now = time.monotonic()
        return self._empty([k for k, s in self._slots.items() if k != self._last and now - s.at > SPARE_IDLE])

    def _bound(self) -> tuple[list[Holder], list[Cgroup]]:
        """(Under the lock.) At most 1 + SPARES networks keep slots: the least recently filled go."""
        by_net: dict[str | None, float] = {}
        for (n, _), s in self._slots.items():
            by_net[n] = max(by_net.get(n, 0.0), s.at)
        keep = self._last[0] if self._last is not None else None
        extra = sorted((n for n in by_net if n != keep), key=lambda n: by_net[n])[: max(0, len(by_net) - 1 - SPARES)]
        return self._empty([k for k in self._slots if k[0] in extra])

    def _empty(self, keys: list[Key]) -> tuple[list[Holder], list[Cgroup]]:
        holders, cgroups = [], []
        for k in keys:
            s = self._slots.pop(k)
            self._recipes.pop(k, None)
            self._stale.discard(k)
            if s.holder is not None:
                holders.append(s.holder)
            if s.cgroup is not None:
                cgroups.append(s.cgroup[1])
        return holders, cgroups

    def _next_expiry(self) -> float | None:
        ats = [s.at for k, s in self._slots.items() if k != self._last]
        if not ats:
            return None
        return max(0.0, min(ats) + SPARE_IDLE - time.monotonic()) + 0.01

    def give_back(self, network: str) -> bool:
        """Let go, now, of the holders kept with an endpoint reserved on `network` (their addresses released before
        this returns): a run there found no free address, and what the pool holds for the next runs must not starve
        it. Their slots are emptied. False when there was none."""
        with self._lock:
            holders, cgroups = self._empty([k for k, s in self._slots.items()
                                            if s.holder is not None and network_of(s.holder) == network])
        for h in holders:
            h.close()
        for c in cgroups:
            cleanup.defer(c.remove)
        return bool(holders)

    def wait_idle(self) -> None:
        """Wait until what was asked to be prepared is made (bench/work.py counts a run's background work with it)."""
        with self._lock:
            self._idle()

    def _idle(self) -> None:
        """(Under the lock.) Wait until the worker has made what was asked of it."""
        while self._busy or self._wanted:
            self._work.wait()

    def drain(self) -> int | None:
        """Drop every prepared holder (they exit; the pid of the one for a run like the last is returned), their
        reservations and cgroups; used by tests and at shutdown."""
        return self._drain()[0]

    def _drain(self) -> tuple[int | None, list[int]]:
        """drain(), also returning the pids of every holder the launch helper forked that it let go — those a
        preparation under way made too (it is waited for): release() waits for all of them to exit."""
        cleanup.start_waiting()  # (a preparation the last run left for its caller's starter: made, then dropped)
        with self._lock:
            self._idle()
            last = self._slots.get(self._last) if self._last is not None else None
            pid = last.holder.pid if last is not None and last.holder is not None else None
            holders, cgroups = self._empty(list(self._slots))
            self._recipes.clear()
            self._stale.clear()
            self._used.clear()
            self._last = None
        for h in holders:
            h.close()
        for c in cgroups:
            c.remove()
        return pid, [h.pid for h in holders if not h.ours]


NOT_YOURS = ("prepared for another network or plan",)  # parked_for(): a PID 1 this run does not take


def _let_go(h: Holder) -> None:
    """Drop a holder: its reservation's release is a few netlink requests, done in the background (off the path)."""
    if h.endpoint is not None:
        cleanup.defer(h.close)
    else:
        h.close()


def finish_rebound(h: Holder) -> None:
    """Set the bound of the writable layer that take() left to the run (Holder.bound_pending): here only, not by the
    launch helper (the run waits with PID 1 forked). Raises OSError; take() then re-bounds before its runs again."""
    global _rebound_here
    if h.bound_pending:
        try:
            _reconfigure(h, h.plan.storage_size)
        except OSError:
            _rebound_here = False
            raise
        h.bound_pending = False


_rebound_here = False  # the caller has re-bounded a holder itself (_rebound): take() may leave it to the run


def _reconfigure(h: Holder, size: int | None) -> None:
    assert h.plan.scratch is not None
    libc.reconfigure(f"/proc/{h.pid}/root{h.plan.scratch}", "size", str(size) if size else "50%")


def _rebound(h: Holder, size: int | None) -> None:
    """Set the bound of a prepared holder's writable layer, the size= of its scratch tmpfs (None: tmpfs's default, as
    a holder made without a bound has it): by fspick/fsconfig through /proc/<holder>/root, here (host root, as
    resizable_to requires; some 60 us), else by the launch helper entering its mount namespace (holder.
    resize_writable_layer: a round trip to it, 0.2-0.5 ms on the cell's path). Raises as zygote().resize does."""
    global _rebound_here
    assert h.plan.scratch is not None
    try:
        _reconfigure(h, size)
        _rebound_here = True
    except OSError:  # (no new mount API: ENOSYS, or not allowed here)
        _rebound_here = False
        zygote().resize(h.pid, h.plan, size)


def _reserve(holder: Holder, network: str, container_id: str | None) -> None:
    """Attach an endpoint on `network` to the holder's network namespace ahead of its run, under the id the next
    container will have when it takes the prepared cgroup (its name)."""
    from ..network import NetworkError
    from . import networking

    try:
        holder.endpoint = networking.reserve(network, holder.pid, container_id)
    except (NetworkError, OSError):
        pass  # (a network removed meanwhile...): the run attaches one itself


def _park(holder: Holder, cg: Cgroup | None, make_launch: Callable[[Cgroup | None], Launch]) -> None:
    """Ask the holder to prepare PID 1 for a run like the last one in `cg` (the next run's cgroup when its
    limits are the same; take() checks both before handing that holder to a run). PID 1 gets the other end of a
    socket the holder keeps (parked_channel): the run that takes the holder sends its launch and pipes to PID 1
    over it, not through the holder (run._give_run) — one wake-up on the cell's path instead of three."""
    fds: list[int] = []
    ours = theirs = None
    uts: int | None = None
    try:
        launch = make_launch(cg)
        if not launch.parkable():
            return
        fds = cg.join_fds() if cg is not None else []
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # The holder's UTS namespace, where the run's host name is set (as root: rootless the caller cannot), opened
        # now, while that pid is surely the holder's.
        if os.geteuid() == 0:
            uts = os.open(f"/proc/{holder.pid}/ns/uts", os.O_RDONLY | os.O_CLOEXEC)
        send_ctl(holder.sock, {"park": launch}, [*fds, theirs.fileno()])
        holder.parked, holder.parked_cgroup = launch.park_key(), cg.name if cg is not None else None
        holder.parked_channel, ours = ours, None
        holder.parked_uts, uts = uts, None
    except Exception:  # noqa: BLE001 - a spec that no longer plans (an image removed...): no PID 1 ahead
        pass  # (a holder that died is replaced when it is taken)
    finally:
        for fd in fds:
            os.close(fd)
        for sock in (ours, theirs):
            if sock is not None:
                sock.close()
        if uts is not None:
            os.close(uts)


@dataclass(frozen=True)
class Prepared:
    """One thing kept ready for the next cell: the launch helper, a namespace holder, a cgroup."""

    kind: str  # "launch helper" | "holder" | "cgroup"
    pid: int | None
    what: str  # what it holds, in words
    paths: tuple[str, ...] = ()  # a cgroup's directories


def prepared() -> list[Prepared]:
    """What this process keeps ready ahead of time (at most one helper; per network, for at most 1 + SPARES networks,
    a holder and a cgroup for the next command and for the next Python cell)."""
    out = []
    z = zygote()
    if z.alive():
        out.append(Prepared("launch helper", z.pid, "forks the namespace holders of the next containers"))
    with pool._lock:  # (a holder's liveness asked while it is in its slot: only then is nobody closing it)
        slots = [(k, s.holder, s.cgroup, s.parked_here(), s.holder is not None and _alive(s.holder))
                 for k, s in pool._slots.items()]
    for (network, kind), h, cg, parked, alive in slots:
        for_what = f"the next {'Python cell' if kind == PYTHON else 'command'}" \
                   f"{f' on network {network}' if network is not None else ''}"
        if h is not None and alive:
            p = h.plan
            root = "no new mount namespace" if not p.new_mount else f"an overlay over {p.lower}"
            out.append(Prepared("holder", h.pid, f"namespaces and {root} for {for_what}"
                                                 f"{' (rootless)' if p.rootless else ''}"
                                                 f"{', with its PID 1 ready up to the command' if h.parked else ''}"
                                                 f"{', /dev and /sys mounted ahead' if h.premounted else ''}"
                                                 f"{', its root pivoted into' if h.root_ns is not None else ''}"
                                                 f"{_on_network(h.endpoint)}"))
        if cg is not None:
            limits = ", ".join(f"{k}={v}" for k, v in vars(cg[0]).items()
                               if isinstance(v, int | float | str) and not isinstance(v, bool)) or "no limits"
            out.append(Prepared("cgroup", None, f"{cg[1].name} with {limits}, for {for_what}"
                                                f"{' (its PID 1 waits there)' if parked else ''}",
                                tuple(sorted(set(cg[1].paths.values())))))
    return out


def _on_network(ep: Endpoint | None) -> str:
    return f", attached to network {ep.network} ({ep.address}, reserved)" if ep is not None else ""


def release() -> list[int]:
    """Drop what is kept ready (the holders exit, the cgroups are removed) and stop the launch helper:
    `%unload_ext`. The helper stays while holders it forked serve containers still running (they go with
    it): their pids are returned. The next run prepares afresh."""
    # (What drain() let go, not what was kept before it: it waits for a preparation under way, whose holder it then
    # closes too — read before, that one was still the helper's child below, and the helper was left running.)
    _, kept = pool._drain()
    cleanup.settle()
    z = zygote()
    if not z.alive() or z.pid is None:
        return []
    deadline = time.monotonic() + 2.0  # their sockets are closed: they are on their way out
    while time.monotonic() < deadline and set(kept) & set(proc.children(z.pid)):
        time.sleep(0.01)
    busy = proc.children(z.pid)
    if not busy:
        z.stop()
    return busy


def _alive(h: Holder) -> bool:
    """A holder that can serve: a zombie (dead, not reaped yet) cannot. Asked of its pidfd, which polls readable
    once the process has exited: /proc/PID/stat, which the kernel writes out whole, took 0.08-0.1 ms of a cell's
    start (a poll: a few microseconds). Asked of a holder in its slot (under the pool's lock) or one a run has
    taken: nobody closes its pidfd meanwhile."""
    if h.pidfd is None:
        return proc.alive(h.pid)
    p = select.poll()
    p.register(h.pidfd, select.POLLIN)
    return not p.poll(0)


pool = Pool()
cleanup.at_exit(pool.drain, cleanup.POOL)  # a cgroup made ahead of time must not outlive us
