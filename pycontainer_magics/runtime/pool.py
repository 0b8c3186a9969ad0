"""Namespace holders and cgroups ready before they are needed.

After a run, a holder for the same plan is prepared in the background by the launch helper, and a
cgroup with the same limits is made, so the next identical cell (a lecture re-run, a benchmark, a
parameter sweep) starts with its namespaces, root filesystem and cgroup already there. One slot each:
a holder for another plan is dropped (it exits when its control socket closes), a cgroup with other
limits removed. Holders forked from the caller itself (a Python cell without root) are never pooled.
"""

from __future__ import annotations

import collections
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..linux import proc
from ..linux.cgroups import Cgroup, CgroupLimits, Hierarchy
from . import cleanup
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
    endpoint: Endpoint | None = None  # reserved ahead in its network namespace (networking.reserve), for a run there
    # Mounts for its root made ahead, beside it (holder.premount): the plan's operations done (() for none).
    premounted: tuple[MountOp, ...] = ()

    def close(self) -> None:
        """Let the holder go (it exits when its control socket closes); an endpoint reserved in it is released."""
        self.sock.close()
        if self.endpoint is not None:
            from . import networking

            ep, self.endpoint = self.endpoint, None
            networking.release(ep)


PARK_MIN_MEMORY = 64 << 20  # below this memory limit no PID 1 is prepared ahead (its interpreter waits in the cgroup)
SPARES = 2  # spare holders at most, besides the one for a run like the last: one per other network used lately
SPARE_IDLE = 120.0  # seconds a spare holder (and a network's "used lately") lasts unused


def network_of(h: Holder) -> str | None:
    """The network a holder was prepared for: the one its endpoint is reserved on (None: none)."""
    return h.endpoint.network if h.endpoint is not None else None


class Pool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready: Holder | None = None
        self._thread: threading.Thread | None = None  # one long-lived worker, started on first use
        self._wanted: HolderPlan | None = None
        self._work = threading.Condition(self._lock)
        self._busy = False
        self._cgroup: tuple[CgroupLimits, Cgroup] | None = None
        self._wanted_cgroup: tuple[Hierarchy, CgroupLimits] | None = None
        self._wanted_launch: Callable[[Cgroup | None], Launch] | None = None
        self._wanted_network: str | None = None
        self._wanted_premount: Premount | None = None
        # Spare holders for the other networks used lately (network or None -> holder, when it was kept), and when
        # a run last went on each network (what makes it "used lately": a reservation is made for it).
        self._spares: dict[str | None, tuple[Holder, float]] = {}
        self._used: dict[str | None, float] = {}
        # How take() served: "pooled" (prepared ahead for this plan), "resized" (prepared ahead, its writable
        # layer re-bounded), "made" (prepared on the cell's path). What a benchmark or a test reads.
        self.served: collections.Counter[str] = collections.Counter()

    def take(self, plan: HolderPlan, *, helper: bool, launch: Launch | None = None,
             run: tuple[Launch, Cgroup | None] | None = None, network: str | None = None) -> Holder:
        """A ready holder for `plan`: the pooled one if it matches, else a fresh one (from the helper when
        `helper`, else forked from the caller with `launch` in memory). `run`: the run's launch and cgroup;
        a pooled holder whose PID 1 was prepared for another launch or cgroup is not taken (a parked PID 1 is
        its PID namespace's init: once discarded, nothing more can be forked into that namespace). `network`:
        the network the run goes on (None: none); a holder with an endpoint reserved on another is not taken
        (a container on no network must not find a veth in its namespace)."""
        if not helper:
            # A process that prepared its next run itself (offer(): the engine daemon's spare supervisor) takes
            # what it kept if it fits; anything else stays for the helper's runs.
            with self._lock:
                h = self._ready
                if h is not None and self.fits(h, plan, run, network):
                    self._ready = None
                else:
                    h = None
            if h is not None:
                self.served["pooled"] += 1
                return h
        if helper:
            with self._lock:
                while self._busy or self._wanted is not None:  # a preparation under way: it may be ours
                    self._work.wait()
                h, drop = self._pick(plan, run, network)
            for d in drop:
                if network is not None and network_of(d) == network:
                    d.close()  # its address released now, before this run attaches on the same network
                else:
                    _let_go(d)
            if h is not None:
                if self.fits(h, plan, run, network):
                    self.served["pooled"] += 1
                    return h
                if h.plan.resizable_to(plan) and self.fits(h, h.plan, run, network):
                    # Only the bound of the writable layer differs (a cell with --storage-opt size=, or a
                    # library run() after a magic's bounded cell): re-bound it rather than make another.
                    try:
                        zygote().resize(h.pid, h.plan, plan.storage_size)
                        h.plan = plan
                        self.served["resized"] += 1
                        return h
                    except (SetupFailed, HelperUnavailable):
                        pass
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

    def _pick(self, plan: HolderPlan, run: tuple[Launch, Cgroup | None] | None,
              network: str | None) -> tuple[Holder | None, list[Holder]]:
        """(Under the lock.) The holder for this run, taken out of the pool: the one for a run like the last when it
        was prepared for this network, else the spare for it, else one on no network that fits (no veth to find in
        it) — or the one for a run like the last, to be re-bounded or dropped by take(). What else is let go: the
        one for a run like the last when it cannot serve the next (a PID 1 parked in a cgroup this run has taken or
        removed; another plan), spares unused too long. One prepared for another network is kept as its spare."""
        now = time.monotonic()
        drop = self._expire_spares()
        main, self._ready = self._ready, None
        spares = [h for h, _ in self._spares.values()]
        candidates = [h for h in (main,) if h is not None and network_of(h) == network]
        candidates += [h for h in spares if network_of(h) == network]
        candidates += [h for h in (main, *spares) if h is not None and h.endpoint is None
                       and all(h is not c for c in candidates)]
        pick = next((h for h in candidates if self.fits(h, plan, run, network)), None)
        if pick is None and main is not None and network_of(main) == network:
            pick = main  # (take() re-bounds its writable layer, or drops it)
        self._spares = {k: (h, at) for k, (h, at) in self._spares.items() if h is not pick}
        if network is not None and network in self._spares:
            # Prepared for this network, not for this run (another plan): it holds an address there, which this
            # run may need on a small subnet. take() releases it before the run attaches.
            drop.append(self._spares.pop(network)[0])
        if main is not None and main is not pick:
            if main.parked is None and main.plan == plan and network_of(main) != network and _alive(main.pid):
                drop += self._keep_spare(main, now)
            else:
                drop.append(main)
        return pick, drop

    def _keep_spare(self, h: Holder, now: float) -> list[Holder]:
        """(Under the lock.) Keep `h` as the spare for its network; returns what that displaces (the spare it
        replaces, the least recently kept beyond SPARES)."""
        key = network_of(h)
        old = self._spares.pop(key, None)
        self._spares[key] = (h, now)
        out = [old[0]] if old is not None else []
        while len(self._spares) > SPARES:
            oldest = min(self._spares, key=lambda k: self._spares[k][1])
            out.append(self._spares.pop(oldest)[0])
        # The worker may be waiting without a timeout (no spare before): it must count this one's expiry. Kept by
        # take() for a run that then fails, nothing else would wake it before the next run.
        self._work.notify_all()
        return out

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
        return h.plan == plan and fits and _alive(h.pid)

    def ready_for(self, plan: HolderPlan, run: tuple[Launch, Cgroup | None]) -> bool:
        """Would take() hand this run the holder kept ready (without preparing one)?"""
        with self._lock:
            h = self._ready
        return h is not None and self.fits(h, plan, run)

    def fds(self) -> tuple[int, ...]:
        """The descriptors what is kept ready holds (the holders' control sockets): a process that closes
        every other descriptor must keep these."""
        with self._lock:
            held = [self._ready] if self._ready is not None else []
            return tuple(h.sock.fileno() for h in [*held, *(h for h, _ in self._spares.values())])

    def ready_holder(self) -> tuple[int, bool] | None:
        """The pid of the holder kept ready, if any, and whether it was asked to park a PID 1."""
        with self._lock:
            return (self._ready.pid, self._ready.parked is not None) if self._ready is not None else None

    def ready_cgroup(self) -> tuple[CgroupLimits, Cgroup] | None:
        with self._lock:
            return self._cgroup

    def offer(self, holder: Holder, cgroup: tuple[CgroupLimits, Cgroup] | None, launch: Launch | None) -> None:
        """Keep what the caller prepared itself (a process that knows its next run: the engine daemon's spare
        supervisor) for the next take(): a holder, a cgroup, and with `launch` that run's PID 1 parked in the
        cgroup (see _park). What was kept before is dropped."""
        cg = cgroup[1] if cgroup is not None else None
        if launch is not None and (cgroup is None or cgroup[0].memory is None or cgroup[0].memory >= PARK_MIN_MEMORY):
            _park(holder, cg, lambda _cg: launch)
        with self._lock:
            old, self._ready = self._ready, holder
            old_cg, self._cgroup = self._cgroup, cgroup
        if old is not None:
            old.close()
        if old_cg is not None:
            cleanup.defer(old_cg[1].remove)

    def take_cgroup(self, h: Hierarchy, limits: CgroupLimits, *, parkable: bool = True) -> Cgroup:
        """A cgroup with `limits`: the one made ahead of time if it matches, else a new one (named like a
        container id: its name is the run's id). One that holds a PID 1 prepared ahead goes only to a run
        that can take that PID 1 over (`parkable`); otherwise it is removed with the prepared holder."""
        with self._lock:
            while self._busy or self._wanted_cgroup is not None:
                self._work.wait()
            ready, self._cgroup = self._cgroup, None
            holder = self._ready
            parked_here = ready is not None and holder is not None and holder.parked_cgroup == ready[1].name
        if ready is not None:
            if ready[0] == limits and (parkable or not parked_here):
                return ready[1]
            # Its removal kills a PID 1 waiting there; the holder stays usable by a Python cell (whose PID 1 the
            # caller forks into a PID namespace of its own), not by a command (its cgroup is another).
            cleanup.defer(ready[1].remove)
        return h.create(new_id(), limits)

    def parked_for(self, cg: Cgroup, network: str | None = None) -> tuple[Any, ...] | None:
        """The park key of the PID 1 prepared ahead in `cg`, if there is one; for a run on `network`: a PID 1 whose
        holder was prepared for another network is not this run's (its key may be the same: a hosts file of the
        same id is all a network adds to the mounts), NOT_YOURS."""
        with self._lock:
            h = self._ready
            if h is None or h.parked_cgroup != cg.name:
                return None
            return h.parked if network_of(h) == network else NOT_YOURS

    def prefetch(self, plan: HolderPlan | None, cgroup: tuple[Hierarchy, CgroupLimits] | None = None,
                 launch: Callable[[Cgroup | None], Launch] | None = None, network: str | None = None,
                 premount: Premount | None = None) -> None:
        """Prepare a holder for `plan` (the helper does the work) and a cgroup, in the background; with
        `launch` (the launch of a run like the last in a given cgroup, without the caller's globals), the
        holder also prepares that run's PID 1, in the new cgroup, up to the payload (holder.py: parked); with
        `network`, an endpoint on it is attached to the holder's network namespace (reserved, see networking); with
        `premount` (a Python cell's: the last run's merged root, its filesystem plan, rootfs.ahead_ops of it), the
        helper makes those mounts in the holder's namespaces (holder.premount)."""
        with self._lock:
            self._wanted = plan
            self._wanted_premount = premount
            self._wanted_cgroup = cgroup
            self._wanted_launch = launch
            self._wanted_network = network
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._worker, daemon=True, name="pycontainer-prepare")
                self._thread.start()
            self._work.notify_all()

    def _worker(self) -> None:
        while True:
            with self._lock:
                while self._wanted is None and self._wanted_cgroup is None:
                    for h in self._expire_spares():
                        _let_go(h)  # (cheap: a socket closed, or a release queued for the clean-up thread)
                    self._work.wait(self._next_expiry())
                plan, self._wanted, self._busy = self._wanted, None, True
                want_cg, self._wanted_cgroup = self._wanted_cgroup, None
                park, self._wanted_launch = self._wanted_launch, None
                network, self._wanted_network = self._wanted_network, None
                premount, self._wanted_premount = self._wanted_premount, None
            holder = cg = None
            if plan is not None:
                try:
                    pid, sock, done = zygote().prepare_premounted(plan, premount)
                    holder = Holder(pid, sock, plan, ours=False)
                    if premount is not None and done:
                        holder.premounted = premount[1].ops
                except (SetupFailed, OSError):
                    pass
            if want_cg is not None:
                try:
                    cg = (want_cg[1], want_cg[0].create(new_id(), want_cg[1]))
                except OSError:
                    pass
            # Not under a small memory limit: the waiting interpreter's pages count against it.
            roomy = cg is None or cg[0].memory is None or cg[0].memory >= PARK_MIN_MEMORY
            will_park = holder is not None and park is not None and (want_cg is None or cg is not None) and roomy
            if holder is not None and network is not None:
                # A PID 1 for a run on a network binds the hosts file of the id its endpoint is reserved under: the
                # next cgroup's name, the id of the run that takes that PID 1. Otherwise an id of its own: the next
                # cgroup may go to a run on another network, whose id must not name this reservation too.
                _reserve(holder, network, cg[1].name if cg is not None and will_park else None)
            if holder is not None and park is not None and will_park \
                    and (network is None or holder.endpoint is not None):
                _park(holder, cg[1] if cg is not None else None, park)
            if holder is not None and network is not None and holder.endpoint is not None and holder.parked is None \
                    and cg is not None and holder.endpoint.container_id == cg[1].name:
                # Reserved under the next cgroup's name for a PID 1 that was not parked after all: that cgroup may
                # go to a run on another network (or one attaching afresh), whose id would then name this
                # reservation too (its hosts file, its veth's name). Under an id of its own instead.
                from . import networking

                ep, holder.endpoint = holder.endpoint, None
                networking.release(ep)
                _reserve(holder, network, None)
            with self._lock:
                old, old_cg = [], None
                if holder is not None:
                    replaced, self._ready = self._ready, holder
                    if replaced is not None:
                        # Prepared for another network (and no PID 1 in a cgroup): kept as that network's spare.
                        if replaced.parked is None and replaced.plan == holder.plan \
                                and network_of(replaced) != network_of(holder):
                            old = self._keep_spare(replaced, time.monotonic())
                        else:
                            old = [replaced]
                if cg is not None:
                    old_cg, self._cgroup = self._cgroup, cg
                # Queue the replaced cgroup's removal before anyone can see us idle: drain() and then
                # cleanup.settle() at exit must find it queued, or it outlives the process.
                if old_cg is not None:
                    cleanup.defer(old_cg[1].remove)
                for h in old:
                    _let_go(h)  # (under the lock: drain() must find a reservation's release queued)
                self._busy = False
                self._work.notify_all()

    def _expire_spares(self) -> list[Holder]:
        """(Under the lock.) Take out the spares unused for SPARE_IDLE seconds."""
        now = time.monotonic()
        old = [k for k, (_, at) in self._spares.items() if now - at > SPARE_IDLE]
        return [self._spares.pop(k)[0] for k in old]

    def _next_expiry(self) -> float | None:
        if not self._spares:
            return None
        return max(0.0, min(at for _, at in self._spares.values()) + SPARE_IDLE - time.monotonic()) + 0.01

    def drain(self) -> int | None:
        """Drop the prepared holders (they exit; the pid of the one for a run like the last is returned), their
        reservations and the cgroup; used by tests and at shutdown."""
        with self._lock:
            while self._busy or self._wanted is not None or self._wanted_cgroup is not None:
                self._work.wait()
            h, self._ready = self._ready, None
            cg, self._cgroup = self._cgroup, None
            spares = [s for s, _ in self._spares.values()]
            self._spares.clear()
            self._used.clear()
        if h is not None:
            h.close()
        for s in spares:
            s.close()
        if cg is not None:
            cg[1].remove()
        return h.pid if h is not None else None


NOT_YOURS = ("prepared for another network",)  # parked_for(): a PID 1 no run on this network takes


def _let_go(h: Holder) -> None:
    """Drop a holder: its reservation's release is a few netlink requests, done in the background (off the path)."""
    if h.endpoint is not None:
        cleanup.defer(h.close)
    else:
        h.close()


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
    limits are the same; take() and the holder check both before handing a run to it)."""
    fds: list[int] = []
    try:
        launch = make_launch(cg)
        if not launch.parkable():
            return
        fds = [os.open(f, os.O_WRONLY | os.O_CLOEXEC) for f in cg.join_files()] if cg is not None else []
        send_ctl(holder.sock, {"park": launch}, fds)
        holder.parked, holder.parked_cgroup = launch.park_key(), cg.name if cg is not None else None
    except Exception:  # noqa: BLE001 - a spec that no longer plans (an image removed...): no PID 1 ahead
        pass  # (a holder that died is replaced when it is taken)
    finally:
        for fd in fds:
            os.close(fd)


@dataclass(frozen=True)
class Prepared:
    """One thing kept ready for the next cell: the launch helper, a namespace holder, a cgroup."""

    kind: str  # "launch helper" | "holder" | "cgroup"
    pid: int | None
    what: str  # what it holds, in words
    paths: tuple[str, ...] = ()  # a cgroup's directories


def prepared() -> list[Prepared]:
    """What this process keeps ready ahead of time (at most one helper, 1 + SPARES holders and one cgroup)."""
    out = []
    z = zygote()
    if z.alive():
        out.append(Prepared("launch helper", z.pid, "forks the namespace holders of the next containers"))
    with pool._lock:
        h, cg = pool._ready, pool._cgroup
        spares = [s for s, _ in pool._spares.values()]
    for s, like in [(h, "the next cell like the last"), *((s, f"a cell {_net_words(s)}") for s in spares)]:
        if s is None or not _alive(s.pid):
            continue
        p = s.plan
        root = "no new mount namespace" if not p.new_mount else f"an overlay over {p.lower}"
        out.append(Prepared("holder", s.pid, f"namespaces and {root} for {like}"
                                             f"{' (rootless)' if p.rootless else ''}"
                                             f"{', with its PID 1 ready up to the command' if s.parked else ''}"
                                             f"{_on_network(s.endpoint)}"))
    if cg is not None:
        limits = ", ".join(f"{k}={v}" for k, v in vars(cg[0]).items()
                           if isinstance(v, int | float | str) and not isinstance(v, bool)) or "no limits"
        out.append(Prepared("cgroup", None, f"{cg[1].name} with {limits}",
                            tuple(sorted(set(cg[1].paths.values())))))
    return out


def _net_words(h: Holder) -> str:
    return f"on network {h.endpoint.network}" if h.endpoint is not None else "on another network or none"


def _on_network(ep: Endpoint | None) -> str:
    return f", attached to network {ep.network} ({ep.address}, reserved)" if ep is not None else ""


def release() -> list[int]:
    """Drop what is kept ready (the holder exits, the cgroup is removed) and stop the launch helper:
    `%unload_ext`. The helper stays while holders it forked serve containers still running (they go with
    it): their pids are returned. The next run prepares afresh."""
    with pool._lock:
        ready = pool._ready.pid if pool._ready is not None else None
    pool.drain()
    cleanup.settle()
    z = zygote()
    if not z.alive() or z.pid is None:
        return []
    if ready is not None:  # its socket is closed: it is on its way out
        deadline = time.monotonic() + 2.0
        while ready in proc.children(z.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
    busy = proc.children(z.pid)
    if not busy:
        z.stop()
    return busy


def _alive(pid: int) -> bool:
    """A holder that can serve: a zombie (one we forked, dead but not reaped yet) cannot."""
    return proc.alive(pid)


pool = Pool()
cleanup.at_exit(pool.drain, cleanup.POOL)  # a cgroup made ahead of time must not outlive us
