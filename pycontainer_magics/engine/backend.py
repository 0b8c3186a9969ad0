"""The daemon's containers: create, start, stop, kill, wait, remove, and watching them end.

Each container is a record on disk (workloads/daemon_store.py) and, while it runs, a supervisor process
of its own (workloads/supervisor.py) forked by the warm launcher. The daemon holds a pidfd on each
supervisor to learn of an exit at once; it never holds a container's processes, so it can be killed and
restarted and find them all again (`load`).
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import random
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..workloads import daemon_store as store
from ..workloads.json_log import rfc3339_nano
from ..workloads.launcher import Launcher, LauncherError
from . import container_config
from .events import Events
from .http import ApiError
from .stdio import ContainerIO

log = logging.getLogger("pycontainer.engine")

ZERO_TIME = "0001-01-01T00:00:00Z"
START_TIMEOUT = 120.0  # an image pulled at start, a slow network attach


@dataclass
class Container:
    id: str
    record: dict[str, Any]  # config.json: Name, Created, Config, HostConfig, NetworkingConfig, Image, ...
    state: dict[str, Any]
    exits: int = 0  # how many times it has ended since the daemon loaded it
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # set (and replaced) at each exit
    removed: asyncio.Event = field(default_factory=asyncio.Event)
    watching: int | None = None  # pidfd of the supervisor
    stopping: bool = False
    started: asyncio.Event = field(default_factory=asyncio.Event)  # set (and replaced) at each start
    io: ContainerIO | None = None  # the stdio channel of its run (-i, -t)
    tty_listeners: set[asyncio.Queue[bytes | None]] = field(default_factory=set)  # attach sessions of a -t one

    @property
    def name(self) -> str:
        return str(self.record["Name"]).lstrip("/")

    @property
    def running(self) -> bool:
        return self.state.get("Status") in ("running", "paused")

    @property
    def status(self) -> str:
        return str(self.state.get("Status") or "created")

    def image_name(self) -> str:
        return str(self.record["Config"].get("Image") or self.record["Image"])

    @property
    def tty(self) -> bool:
        return bool(self.record["Config"].get("Tty"))

    @property
    def open_stdin(self) -> bool:
        return bool(self.record["Config"].get("OpenStdin"))


class Containers:
    def __init__(self, events: Events, launcher: Launcher) -> None:
        self.events = events
        self.launcher = launcher
        self.by_id: dict[str, Container] = {}
        self._lock = asyncio.Lock()  # names and ids are handed out under it
        self.on_exit: list[Callable[[Container], None]] = []

    # -- finding -----------------------------------------------------------------------------------
    def get(self, ref: str) -> Container:
        """By full id, name (with or without the leading /), or a unique id prefix; 404 as dockerd."""
        ref = ref.strip()
        if ref in self.by_id:
            return self.by_id[ref]
        name = ref.lstrip("/")
        for c in self.by_id.values():
            if c.name == name:
                return c
        if ref:
            hits = [c for c in self.by_id.values() if c.id.startswith(ref)]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise ApiError(400, f"multiple IDs found with provided prefix: {ref}")
        raise ApiError(404, f"No such container: {ref}")

    def all(self) -> list[Container]:
        return sorted(self.by_id.values(), key=lambda c: c.record.get("Created", ""), reverse=True)

    def attrs(self, c: Container, **more: Any) -> dict[str, str]:
        a = {"image": c.image_name(), "name": c.name}
        a.update({k: str(v) for k, v in (c.record["Config"].get("Labels") or {}).items()})
        a.update({k: str(v) for k, v in more.items()})
        return a

    # -- loading what a previous daemon left -------------------------------------------------------
    def load(self) -> None:
        for cid in store.ids():
            try:
                record = store.load_config(cid)
                recorded = store._read(os.path.join(store.container_dir(cid), store.STATE))
                st = store.load_state(cid)
            except (OSError, ValueError):
                continue
            c = Container(cid, record, st)
            self.by_id[cid] = c
            if recorded.get("Status") != st.get("Status"):  # its supervisor died with it (a reboot, a kill)
                store.update_state(cid, **{k: st[k] for k in ("Status", "Running", "Paused", "Pid", "ExitCode",
                                                                  "Error")})
            if c.running:
                self._watch(c)
            elif record["HostConfig"].get("AutoRemove") and c.status == "exited":
                self._remove_now(c)  # its supervisor is gone (it would have been watched otherwise)
            elif c.status == "exited" and self._should_restart(c, at_boot=True):
                asyncio.ensure_future(self._restart_later(c))  # --restart always|unless-stopped: up again
        log.info("loaded %d containers (%d running)", len(self.by_id),
                 sum(1 for c in self.by_id.values() if c.running))

    # -- create ------------------------------------------------------------------------------------
    async def create(self, name: str | None, body: dict[str, Any], image: Any) -> Container:
        """`image`: the store's Image the container runs (resolved by the caller)."""
        host_config = body.get("HostConfig") or {}
        container_config.check(body, host_config)
        await asyncio.to_thread(container_config.check_networks, body, host_config)
        async with self._lock:
            if name:
                if not store.NAME_RE.match(name):
                    raise ApiError(400, f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are "
                                   "allowed")
                name = name.lstrip("/")
                for other in self.by_id.values():
                    if other.name == name:
                        raise ApiError(409, f'Conflict. The container name "/{name}" is already in use by '
                                       f'container "{other.id}". You have to remove (or rename) that container '
                                       "to be able to reuse that name.")
            else:
                name = self._new_name()
            cid = store.new_id()
            endpoints = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
            # Checked now, so a bad request fails `create` (400) with nothing made, as dockerd's does.
            container_config.spec_of(cid, name, image.id, body, host_config, endpoints, store.layer_dir(cid))
            cfg = _merged_config(body, image, cid)
            now = rfc3339_nano()
            record = {"Id": cid, "Name": "/" + name, "Created": now, "Config": cfg, "HostConfig": host_config,
                      "NetworkingConfig": {"EndpointsConfig": endpoints}, "Image": image.id,
                      "Path": (cfg.get("Entrypoint") or cfg.get("Cmd") or [""])[0],
                      "Args": ((cfg.get("Entrypoint") or []) + (cfg.get("Cmd") or []))[1:]
                      if cfg.get("Entrypoint") else (cfg.get("Cmd") or [])[1:]}
            state = {"Status": "created", "Running": False, "Paused": False, "Restarting": False,
                     "OOMKilled": False, "Dead": False, "Pid": 0, "ExitCode": 0, "Error": "",
                     "StartedAt": ZERO_TIME, "FinishedAt": ZERO_TIME}
            await asyncio.to_thread(store.create, cid, record, state)
            c = Container(cid, record, state)
            self.by_id[cid] = c
        self.events.emit("container", "create", cid, self.attrs(c))
        return c

    def _new_name(self) -> str:
        taken = {c.name for c in self.by_id.values()}
        while True:
            n = f"{random.choice(_ADJECTIVES)}_{random.choice(_SCIENTISTS)}"
            if n not in taken:
                return n

    # -- start -------------------------------------------------------------------------------------
    async def start(self, c: Container, manual: bool = True) -> bool:
        """False if it was running already (dockerd answers 304). A start by a client (`manual`) resets the
        restart count and the manual stop its restart policy honours."""
        if c.running:
            return False
        if manual and (c.state.get("ManuallyStopped") or c.state.get("RestartCount")):
            c.state = await asyncio.to_thread(store.update_state, c.id, ManuallyStopped=False, RestartCount=0)
        rec = c.record
        spec = container_config.spec_of(c.id, c.name, rec["Image"], rec["Config"], rec["HostConfig"],
                                        rec["NetworkingConfig"].get("EndpointsConfig") or {}, store.layer_dir(c.id))
        # The recorded Config has the image's ENTRYPOINT and CMD merged in already: run exactly that.
        spec = spec.with_(command=tuple(rec["Config"].get("Cmd") or ()),
                          entrypoint=tuple(rec["Config"].get("Entrypoint") or ()))
        r, w = os.pipe()
        exit_r, exit_w = os.pipe2(os.O_CLOEXEC)
        io = channel = None
        if c.tty or c.open_stdin:  # the supervisor relays stdin and the terminal over a channel born with it
            size = rec["HostConfig"].get("ConsoleSize") or (0, 0)
            io = {"tty": c.tty, "stdin": c.open_stdin, "size": (int(size[0] or 0), int(size[1] or 0))}
            channel, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            await asyncio.to_thread(self.launcher.launch, c.id, spec, w, exit_w, io,
                                    theirs.fileno() if channel is not None else None)
        except LauncherError as e:
            os.close(r)
            os.close(exit_r)
            if channel is not None:
                channel.close()
            raise ApiError(500, f"cannot start container {c.id[:12]}: {e}") from None
        finally:
            os.close(w)
            os.close(exit_w)
            if channel is not None:
                theirs.close()
        if channel is not None:
            c.io = ContainerIO(channel, c.tty_listeners)
        try:
            report = await asyncio.wait_for(_read_all(r), START_TIMEOUT)
        except TimeoutError:
            if c.io is not None:
                c.io.close()
            raise ApiError(500, f"container {c.id[:12]} did not start in {START_TIMEOUT:g} s") from None
        finally:
            os.close(r)
        try:
            msg = json.loads(report or b"{}")
        except ValueError:
            msg = {}
        c.state = await asyncio.to_thread(store.load_state, c.id)
        if not msg.get("ok"):
            os.close(exit_r)
            if c.io is not None:
                c.io.close()
            error = msg.get("error") or "the container's supervisor died while starting it"
            if rec["HostConfig"].get("AutoRemove"):  # as dockerd: a --rm container that cannot start goes
                self._remove_now(c)
            raise ApiError(int(msg.get("status") or 500), error)
        self._watch(c, exit_r)
        ev, c.started = c.started, asyncio.Event()
        ev.set()
        self.events.emit("container", "start", c.id, self.attrs(c))
        return True

    async def io_of(self, c: Container) -> ContainerIO | None:
        """The stdio channel of a running -i/-t container; a daemon that did not start it connects to its
        supervisor's attach.sock. None when it is not running (or has no stdin or terminal)."""
        if c.io is not None and not c.io.ended.is_set():
            return c.io
        if not c.running or not (c.tty or c.open_stdin):
            return None
        from ..workloads.container_io import connect

        try:
            sock = await asyncio.to_thread(connect, c.id)
        except OSError:
            return None
        c.io = ContainerIO(sock, c.tty_listeners)
        return c.io

    def _watch(self, c: Container, exit_r: int | None = None) -> None:
        """Learn of the container's end at once: the supervisor closes `exit_r`'s other end once the end is
        recorded (a daemon that started it has that pipe); else, through a pidfd, when the supervisor exits."""
        loop = asyncio.get_running_loop() if _in_loop() else asyncio.get_event_loop()
        if exit_r is not None:
            c.watching = exit_r
            loop.add_reader(exit_r, self._exited, c)
            return
        sup, sup_start = c.state.get("Supervisor"), c.state.get("SupervisorStart")
        try:
            fd = os.pidfd_open(int(sup or 0))
        except (ProcessLookupError, TypeError, OSError):
            fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)  # always readable: handled at once
        if not store.alive(sup, sup_start):  # gone, or the pid was reused before we opened it
            os.close(fd)
            fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        c.watching = fd
        loop.add_reader(fd, self._exited, c)

    def _exited(self, c: Container) -> None:
        if c.watching is None:
            return  # told already
        asyncio.get_running_loop().remove_reader(c.watching)
        os.close(c.watching)
        c.watching = None
        try:
            c.state = store.load_state(c.id)
        except (OSError, ValueError):
            return
        if c.state.get("Status") in ("running", "paused"):  # the supervisor died before recording: gone
            self._watch(c)  # its pidfd says when (load_state then reports the loss)
            return
        if c.state.get("OOMKilled"):
            self.events.emit("container", "oom", c.id, self.attrs(c))
        self.events.emit("container", "die", c.id, self.attrs(c, exitCode=c.state.get("ExitCode", 0)))
        c.exits += 1
        ev, c.changed = c.changed, asyncio.Event()
        ev.set()
        for fn in self.on_exit:
            fn(c)
        if c.record["HostConfig"].get("AutoRemove") and not c.removed.is_set():
            asyncio.ensure_future(self._remove_when_gone(c))  # (which tells the launcher it has ended)
        else:  # after what this wakes (a `docker wait`'s answer): the launcher may make the next spare now
            asyncio.get_running_loop().call_soon(self.launcher.ended, c.id)
            if self._should_restart(c):
                asyncio.ensure_future(self._restart_later(c))

    # -- restart policies (docker run --restart) ------------------------------------------------
    def _should_restart(self, c: Container, at_boot: bool = False) -> bool:
        policy = c.record["HostConfig"].get("RestartPolicy") or {}
        name = policy.get("Name") or "no"
        manual = bool(c.state.get("ManuallyStopped"))
        if c.stopping or c.removed.is_set() or name == "no":
            return False
        if name == "always":
            return at_boot or not manual  # a manual stop holds until the daemon restarts, as dockerd
        if name == "unless-stopped":
            return not manual
        if name == "on-failure":
            limit = int(policy.get("MaximumRetryCount") or 0)
            return not manual and int(c.state.get("ExitCode") or 0) != 0 and \
                (limit == 0 or int(c.state.get("RestartCount") or 0) < limit)
        return False

    async def _restart_later(self, c: Container) -> None:
        # dockerd's back-off: 100 ms, doubling with each restart in a row, at most a minute
        delay = min(60.0, 0.1 * 2 ** min(int(c.state.get("RestartCount") or 0), 10))
        await asyncio.sleep(delay)
        if c.running or c.removed.is_set() or c.id not in self.by_id:
            return
        count = int(c.state.get("RestartCount") or 0) + 1
        try:
            await self.start(c, manual=False)
        except ApiError as e:
            log.warning("restarting %s failed: %s", c.name, e.message)
            return
        # Counted once it runs, before its end can be handled (no await in between): the policy's limit
        # then sees this run.
        c.state = store.update_state(c.id, RestartCount=count)
        self.events.emit("container", "restart", c.id, self.attrs(c))

    # -- signals -----------------------------------------------------------------------------------
    def _signal(self, c: Container, sig: int) -> None:
        pid, start = c.state.get("Pid"), c.state.get("PidStart")
        if not pid or not store.alive(pid, start):
            return
        try:
            os.kill(int(pid), sig)
        except ProcessLookupError:
            pass

    async def kill(self, c: Container, sig: int) -> None:
        if not c.running:
            raise ApiError(409, f"Container {c.id} is not running")
        if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):  # as dockerd: a kill is a manual stop
            c.state = store.update_state(c.id, ManuallyStopped=True)
        ended = c.changed
        self._signal(c, sig)
        if c.status == "paused" and sig == signal.SIGKILL:  # a frozen process dies once thawed
            await asyncio.to_thread(self._thaw, c)
        self.events.emit("container", "kill", c.id, self.attrs(c, signal=sig))
        if sig == signal.SIGKILL and c.running:
            # As dockerd's Kill: the answer waits for the end, so `docker kill x && docker rm x` works.
            await _wait_event(ended, 10)

    async def stop(self, c: Container, timeout: int | None = None, sig: int | None = None) -> bool:
        """The stop signal (SIGTERM unless the container says otherwise), SIGKILL after `timeout` seconds.
        False if it was not running (304)."""
        if not c.running:
            return False
        if timeout is None:
            timeout = c.record["Config"].get("StopTimeout")
        if timeout is None:
            timeout = container_config.DEFAULT_STOP_TIMEOUT
        if sig is None:
            sig = _signal_number(c.record["Config"].get("StopSignal") or "SIGTERM")
        c.stopping = True
        c.state = store.update_state(c.id, ManuallyStopped=True)
        try:
            ended = c.changed
            if c.status == "paused":
                await asyncio.to_thread(self._thaw, c)
            self._signal(c, sig)
            self.events.emit("container", "kill", c.id, self.attrs(c, signal=sig))
            if timeout < 0 or not await _wait_event(ended, timeout):
                if c.running:
                    self._signal(c, signal.SIGKILL)
                    self.events.emit("container", "kill", c.id, self.attrs(c, signal=int(signal.SIGKILL)))
                await _wait_event(ended, 30)
        finally:
            c.stopping = False
        self.events.emit("container", "stop", c.id, self.attrs(c))
        return True

    def _thaw(self, c: Container) -> None:
        cg = self.cgroup_of(c)
        if cg is not None:
            cg.freeze(False)
        c.state = store.update_state(c.id, Status="running", Paused=False)

    # -- the running container's cgroup: pause, update ------------------------------------------
    def cgroup_of(self, c: Container) -> Any:
        """The cgroup of a running container (its supervisor made it, named by the run id), or None."""
        from ..runtime.run import hierarchy

        if not c.running or not c.state.get("RunId"):
            return None
        h = hierarchy()
        if h is None:
            return None
        try:
            return h.get(c.state["RunId"])
        except OSError:
            return None

    async def pause(self, c: Container) -> None:
        if not c.running:
            raise ApiError(409, f"Container {c.id} is not running")
        if c.status == "paused":
            raise ApiError(409, f"Container {c.id} is already paused")
        cg = self.cgroup_of(c)
        if cg is None:
            raise ApiError(500, f"cannot pause container {c.id}: it has no cgroup")
        try:
            await asyncio.to_thread(cg.freeze, True)
        except OSError as e:
            raise ApiError(500, f"cannot pause container {c.id}: {e}") from None
        c.state = store.update_state(c.id, Status="paused", Paused=True)
        self.events.emit("container", "pause", c.id, self.attrs(c))

    async def unpause(self, c: Container) -> None:
        if c.status != "paused":
            raise ApiError(409, f"Container {c.id} is not paused")
        try:
            await asyncio.to_thread(self._thaw, c)
        except OSError as e:
            raise ApiError(500, f"cannot unpause container {c.id}: {e}") from None
        self.events.emit("container", "unpause", c.id, self.attrs(c))

    async def update(self, c: Container, body: dict[str, Any]) -> list[str]:
        """`docker update`: new limits into HostConfig and, if it runs, into its cgroup at once."""
        from ..linux.cgroups import CgroupLimits

        keys = ("Memory", "MemorySwap", "NanoCpus", "CpuQuota", "CpuPeriod", "CpuShares", "CpusetCpus", "PidsLimit")
        hc = dict(c.record["HostConfig"])
        changes = {k: body[k] for k in keys if body.get(k)}  # 0 / null: unchanged, as dockerd
        if "RestartPolicy" in body and (body["RestartPolicy"] or {}).get("Name"):
            changes["RestartPolicy"] = body["RestartPolicy"]
        hc.update(changes)
        if "Memory" in changes and "MemorySwap" not in changes and (hc.get("MemorySwap") or 0) not in (0, -1) \
                and hc["MemorySwap"] < hc["Memory"]:
            hc["MemorySwap"] = hc["Memory"]  # no swap, as with --memory alone here
        container_config.check(c.record["Config"], hc)
        container_config.spec_of(c.id, c.name, c.record["Image"], c.record["Config"], hc,
                                 c.record["NetworkingConfig"].get("EndpointsConfig") or {}, store.layer_dir(c.id))
        cg = self.cgroup_of(c)
        if cg is not None:
            cpus = None
            if "NanoCpus" in changes:
                cpus = hc["NanoCpus"] / 1e9
            elif "CpuQuota" in changes:
                cpus = hc["CpuQuota"] / (hc.get("CpuPeriod") or 100000)
            swap = hc.get("MemorySwap") if "MemorySwap" in changes else None
            limits = CgroupLimits(memory=changes.get("Memory"), memory_swap=swap if swap else None, cpus=cpus,
                                  cpu_shares=changes.get("CpuShares"), cpuset_cpus=changes.get("CpusetCpus"),
                                  pids_max=changes.get("PidsLimit"))
            try:
                await asyncio.to_thread(cg.set_limits, limits)
            except OSError as e:
                raise ApiError(400, f"Cannot update container {c.id}: {e}") from None
        c.record["HostConfig"] = hc
        self.save_record(c)
        self.events.emit("container", "update", c.id, self.attrs(c))
        return []

    def save_record(self, c: Container) -> None:
        store.save_config(c.id, c.record)

    async def rename(self, c: Container, new: str) -> None:
        new = new.lstrip("/")
        if not new or not store.NAME_RE.match(new):
            raise ApiError(400, f"Invalid container name ({new}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        async with self._lock:
            if new == c.name:
                raise ApiError(409, "Renaming a container with the same name as its current name")
            for other in self.by_id.values():
                if other.name == new:
                    raise ApiError(409, f'Conflict. The container name "/{new}" is already in use by container '
                                   f'"{other.id}". You have to remove (or rename) that container to be able to reuse '
                                   "that name.")
            old = c.name
            c.record["Name"] = "/" + new
            self.save_record(c)
        self.events.emit("container", "rename", c.id, self.attrs(c, oldName="/" + old))

    # -- networks ------------------------------------------------------------------------------
    async def connect(self, c: Container, network: str, endpoint: dict[str, Any]) -> None:
        from ..network import NetworkError
        from ..network import networks as nets

        eps = c.record["NetworkingConfig"].setdefault("EndpointsConfig", {})
        mode = container_config.network_mode(c.record["HostConfig"])
        if network in eps or network == mode:
            raise ApiError(403, f"endpoint with name {c.name} already exists in network {network}")
        if mode in ("none", "host"):  # dockerd's words: no network namespace of its own to add to
            raise ApiError(400, f"container {c.name} is on network {mode}: a container sharing the host's network "
                           "namespace or without networking cannot be connected to any other network")
        if c.running:
            aliases = tuple(a for a in endpoint.get("Aliases") or [] if a != c.name)
            try:
                await asyncio.to_thread(nets.attach, network, int(c.state["Pid"]), c.state["RunId"], name=c.name,
                                        aliases=aliases, owner_pid=int(c.state["Supervisor"]))
            except NetworkError as e:
                raise ApiError(400, f"cannot connect {c.name} to {network}: {e}") from None
        eps[network] = endpoint or {}
        self.save_record(c)

    async def disconnect(self, c: Container, network: str, force: bool) -> None:
        from ..network import NetworkError
        from ..network import networks as nets

        eps = c.record["NetworkingConfig"].setdefault("EndpointsConfig", {})
        mode = container_config.network_mode(c.record["HostConfig"])
        if network == mode:
            raise ApiError(400, f"container {c.name} runs on network {network}: it cannot leave it (this engine "
                           "keeps one primary network per container)")
        if network not in eps and not force:
            raise ApiError(404, f"container {c.id} is not connected to network {network}")
        if c.running:
            try:
                await asyncio.to_thread(nets.detach, network, c.state["RunId"], True)
            except NetworkError as e:
                raise ApiError(500, str(e)) from None
        eps.pop(network, None)
        self.save_record(c)

    # -- wait --------------------------------------------------------------------------------------
    async def wait(self, c: Container, condition: str) -> dict[str, Any]:
        """`POST /containers/{id}/wait`: not-running (now, if it is not running), next-exit, removed."""
        if condition == "removed":
            await c.removed.wait()
        elif condition == "next-exit" or c.running:
            await c.changed.wait()
        err = c.state.get("Error") or ""
        return {"StatusCode": int(c.state.get("ExitCode") or 0), "Error": {"Message": err} if err else None}

    # -- remove ------------------------------------------------------------------------------------
    async def remove(self, c: Container, force: bool = False) -> None:
        if c.running:
            if not force:
                raise ApiError(409, f"You cannot remove a running container {c.id}. Stop the container before "
                               "attempting removal or force remove")
            await self.stop(c, timeout=-1, sig=signal.SIGKILL)
        await self._remove_when_gone(c)

    async def _remove_when_gone(self, c: Container, timeout: float = 30.0) -> None:
        """Remove once the supervisor has finished: it records the end first and then takes down what the
        run made (the network endpoint that holds the container's name, the cgroup); the record goes after.
        Without a network endpoint nothing of the run holds the name: the record goes at once (`docker run
        --rm` returns), while the supervisor removes the cgroup."""
        hc = c.record["HostConfig"]
        eps = c.record["NetworkingConfig"].get("EndpointsConfig") or {}
        if container_config.network_mode(hc) in ("none", "host") and not set(eps) - {"none", "host"}:
            if not c.removed.is_set():
                self._remove_now(c)
            return
        sup, start = c.state.get("Supervisor"), c.state.get("SupervisorStart")
        deadline = asyncio.get_running_loop().time() + timeout
        while sup and store.alive(sup, start) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.005)
        if not c.removed.is_set():
            self._remove_now(c)

    def _remove_now(self, c: Container) -> None:
        self.by_id.pop(c.id, None)
        store.remove(c.id)
        c.removed.set()
        if _in_loop():  # once the `docker wait --condition removed` this wakes has its answer: the next spare
            asyncio.get_running_loop().call_soon(self.launcher.ended, c.id)
        self.events.emit("container", "destroy", c.id, self.attrs(c))

    # -- shutdown ----------------------------------------------------------------------------------
    async def stop_all(self) -> None:
        running = [c for c in self.by_id.values() if c.running]
        await asyncio.gather(*(self.stop(c) for c in running), return_exceptions=True)


def _in_loop() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False


async def _wait_event(ev: asyncio.Event, timeout: float) -> bool:
    try:
        await asyncio.wait_for(ev.wait(), timeout)
        return True
    except TimeoutError:
        return False


async def _read_all(fd: int) -> bytes:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    chunks: list[bytes] = []

    def readable() -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            chunks.append(data)
            return
        loop.remove_reader(fd)
        if not fut.done():
            fut.set_result(None)

    os.set_blocking(fd, False)
    loop.add_reader(fd, readable)
    try:
        await fut
    finally:
        if not fut.done():
            loop.remove_reader(fd)
    return b"".join(chunks)


def _signal_number(sig: str | int) -> int:
    from ..oci.lifecycle import LifecycleError, parse_signal

    if isinstance(sig, int):
        return sig
    try:
        return parse_signal(sig)
    except LifecycleError:
        raise ApiError(400, f"Invalid signal: {sig}") from None


def parse_signal(sig: str | None, default: int = signal.SIGKILL) -> int:
    return _signal_number(sig) if sig else default


def _merged_config(body: dict[str, Any], image: Any, cid: str) -> dict[str, Any]:
    """The container's Config as dockerd records it: the request's fields over the image's defaults."""
    ic = image.config
    cfg: dict[str, Any] = {k: body.get(k) for k in (
        "Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr", "ExposedPorts", "Tty",
        "OpenStdin", "StdinOnce", "Env", "Cmd", "Image", "Volumes", "WorkingDir", "Entrypoint", "OnBuild",
        "Labels", "StopSignal", "StopTimeout", "Healthcheck")}
    cfg["Hostname"] = cfg["Hostname"] or cid[:12]
    cfg["Domainname"] = cfg["Domainname"] or ""
    cfg["User"] = cfg["User"] or ic.user or ""
    for k in ("AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin", "StdinOnce"):
        cfg[k] = bool(cfg[k])
    env = dict(e.split("=", 1) for e in (ic.env or ()) if "=" in e) if not isinstance(ic.env, dict) \
        else dict(ic.env)
    for e in body.get("Env") or []:
        if "=" in e:
            k, v = e.split("=", 1)
            env[k] = v
    if "PATH" not in env:
        env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    cfg["Env"] = [f"{k}={v}" for k, v in env.items()]
    entry = body.get("Entrypoint")
    if entry is None:
        cfg["Entrypoint"] = list(ic.entrypoint) if ic.entrypoint else None
        cfg["Cmd"] = list(body.get("Cmd") or ic.cmd or []) or None
    else:
        entry = [entry] if isinstance(entry, str) else entry
        cfg["Entrypoint"] = [e for e in entry if e] or None
        cfg["Cmd"] = list(body.get("Cmd") or []) or None  # an ENTRYPOINT override drops the image's CMD
    if not cfg["Entrypoint"] and not cfg["Cmd"]:
        raise ApiError(400, "No command specified")
    cfg["WorkingDir"] = cfg["WorkingDir"] or ic.workdir or ""
    cfg["Labels"] = {**(getattr(ic, "labels", None) or {}), **(cfg["Labels"] or {})}
    cfg["ExposedPorts"] = {**{p: {} for p in getattr(ic, "exposed_ports", None) or ()},
                           **(cfg["ExposedPorts"] or {})} or None  # the image's EXPOSE too (docker run -P)
    cfg["Image"] = body.get("Image") or image.id
    cfg["OnBuild"] = cfg["OnBuild"] or None
    cfg["Volumes"] = cfg["Volumes"] or None
    cfg["StopSignal"] = cfg["StopSignal"] or ic.stop_signal or None
    return cfg


_ADJECTIVES = ("admiring", "bold", "brave", "clever", "curious", "eager", "elegant", "focused", "gallant",
               "happy", "jolly", "keen", "lucid", "modest", "nifty", "patient", "quirky", "serene", "tender", "wise")
_SCIENTISTS = ("babbage", "curie", "darwin", "einstein", "euler", "faraday", "franklin", "galileo", "hopper",
               "hypatia", "kepler", "lovelace", "meitner", "newton", "noether", "pasteur", "ritchie", "thompson",
               "torvalds", "turing")

__all__ = ["Container", "Containers", "errno", "parse_signal"]
