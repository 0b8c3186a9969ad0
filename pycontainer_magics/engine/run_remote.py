"""`pycontainer run` through the daemon: a ContainerSpec as Docker's create body, then the docker CLI's own
sequence (create, attach, wait registered, start, output until the end, the exit code) over the API.

The daemon launches the container from its warm launcher, so the command line pays neither the runtime's
imports nor its set-up. A spec the Engine API cannot say (namespaces shared with the host, user-namespace
remapping, time offsets, pods, a --rootfs directory, stdin, a timeout) is run in-process as before.
"""

from __future__ import annotations

import _thread  # not threading: the command line's start-up (one relay thread, joined by a lock)
import time

from .client import Client, EngineError, wait_answer

TYPE_CHECKING = False  # typing is not imported: the command line's path (cli/run_daemon.py)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def expressible(spec: Any) -> bool:
    return (spec.python_code is None and not spec.share - {"net"} and spec.userns == "private" and not spec.uid_map
            and not spec.time_offsets and spec.pod is None and spec.rootfs is None and spec.stdin_data is None
            and spec.timeout is None and not spec.extra_networks and not spec.network_aliases)


def create_body(spec: Any) -> dict[str, Any]:
    """Docker's create body for `spec` (see expressible())."""
    binds = [f"{m.source}:{m.target}" + (":ro" if m.read_only else "") for m in spec.mounts]
    tmpfs = {t.target: ",".join(([f"size={t.size}"] if t.size else []) + [f"mode={t.mode:o}"]) for t in spec.tmpfs}
    ports: dict[str, list[dict[str, str]]] = {}
    for host_ip, host_port, ctr_port, proto in spec.publish:
        ports.setdefault(f"{ctr_port}/{proto}", []).append({"HostIp": host_ip, "HostPort": str(host_port)})
    security = [] if spec.seccomp == "default" else \
        ["seccomp=unconfined" if spec.seccomp == "unconfined" else f"seccomp={spec.seccomp}"]
    host_config: dict[str, Any] = {
        "AutoRemove": True, "NetworkMode": "host" if spec.network == "host" else spec.network,
        "Memory": spec.memory or 0, "MemorySwap": spec.memory_swap or 0,
        "NanoCpus": int(spec.cpus * 1e9) if spec.cpus else 0, "CpuShares": spec.cpu_shares or 0,
        "CpusetCpus": spec.cpuset_cpus or "", "Binds": binds or None,
        "PidsLimit": spec.pids_limit if spec.pids_limit is not None else -1,  # unlimited (None: the default)
        "Tmpfs": tmpfs or None, "ReadonlyRootfs": spec.read_only, "CapAdd": sorted(spec.cap_add) or None,
        "CapDrop": sorted(spec.cap_drop) or None, "PortBindings": ports or None, "SecurityOpt": security or None,
        "Ulimits": [{"Name": n, "Soft": s, "Hard": h} for n, s, h in spec.ulimits] or None,
    }
    body: dict[str, Any] = {
        "Image": spec.image, "Cmd": list(spec.command) or None, "Env": [f"{k}={v}" for k, v in spec.env] or None,
        "WorkingDir": spec.workdir or "", "User": spec.user or "", "Hostname": spec.hostname or "",
        "AttachStdout": True, "AttachStderr": True, "HostConfig": host_config,
    }
    if spec.entrypoint is not None:
        body["Entrypoint"] = list(spec.entrypoint) or [""]
    return body


def run(c: Client, spec: Any, on_output: Callable[[str, bytes], None]) -> tuple[int, float]:
    """Run `spec` on the daemon, its output to on_output; returns (exit code, seconds)."""
    t0 = time.monotonic()
    cid = create(c, create_body(spec), spec.name)
    return run_created(c, cid, on_output, t0)


def create(c: Client, body: dict[str, Any], name: str | None) -> str:
    """`docker create`: the new container's id (EngineError with the daemon's status and message)."""
    return str(c.post("/containers/create", body, name=name)["Id"])


def run_created(c: Client, cid: str, on_output: Callable[[str, bytes], None],
                t0: float | None = None) -> tuple[int, float]:
    """The rest of `docker run` for a created container: attach, wait registered, start, output to on_output
    until its end; (exit code, seconds since t0)."""
    t0 = time.monotonic() if t0 is None else t0
    frames = c.attach(cid)
    # Registered before start, as the docker CLI does: the answer comes once it is gone (AutoRemove).
    wait_sock, wait_rest = c.open_wait(cid, "removed")
    try:
        c.post(f"/containers/{cid}/start")
    except EngineError:
        wait_sock.close()
        raise

    relayed = _thread.allocate_lock()
    relayed.acquire()

    def relay() -> None:
        try:
            for stream, data in frames:
                on_output(stream, data)
        finally:
            relayed.release()

    _thread.start_new_thread(relay, ())
    code = int(wait_answer(wait_sock, wait_rest).get("StatusCode", 125))
    relayed.acquire(timeout=10)
    return code, time.monotonic() - t0

