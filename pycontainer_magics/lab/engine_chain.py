"""The lecture's engine diagram, measured instead of drawn: `docker run` -> dockerd -> containerd -> shim ->
OCI runtime -> the container, on this machine, with this project's runtime at the bottom or with runc.

    with EngineChain() as chain:               # a private dockerd: own roots, exec root, socket
        ours = chain.observe("pyc")            # docker run --runtime pyc ..., then the host's process tree
        theirs = chain.observe("runc")
    ours.processes                             # dockerd, containerd, the shim, the container's init, its child

Each process is recorded with its parent and its namespaces (the host's or new ones) while the container
runs; the runtime itself is not among them: it ran `create` and `start` and exited, leaving the container's
init to the shim. dockerd runs with no iptables, no bridge and no network for its containers, its
containers under the project's cgroup parent; everything it made is removed when the block ends, the directories
dockerd and containerd's shims make under /run on a machine that had none included.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PycontainerError

IMAGE = "lab/engine-chain:1"
# What dockerd, containerd, its shims and ctr make under /run whatever their private roots say (compiled-in paths:
# the shims' socket directory, dockerd's plugins, ctr's fifos): the first engine on a machine creates them.
ENGINE_RUN_DIRS = ("/run/containerd", "/run/containerd/fifo", "/run/containerd/s",
                   "/run/containerd/io.containerd.runtime.v1.linux", "/run/containerd/io.containerd.runtime.v2.task",
                   "/run/docker", "/run/docker/plugins")
NS_KINDS = ("pid", "mnt", "net", "uts", "ipc", "cgroup", "user")


class EngineChainError(PycontainerError, RuntimeError):
    """dockerd or a container could not be started here: one line saying why."""


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    role: str  # dockerd, containerd, shim, container init, container process
    command: str
    namespaces: dict[str, str]  # kind -> "host" or "new"


@dataclass
class Chain:
    runtime: str
    container: str
    processes: list[Proc] = field(default_factory=list)
    runtime_calls: list[str] = field(default_factory=list)  # what the shim asked the runtime (ours logs it)

    def by_role(self, role: str) -> Proc:
        return next(p for p in self.processes if p.role == role)


def engine_run_dirs_present() -> frozenset[str]:
    """Which of ENGINE_RUN_DIRS are there now: taken before an engine starts, says which it made."""
    return frozenset(d for d in ENGINE_RUN_DIRS if os.path.isdir(d))


def remove_engine_run_dirs(present_before: frozenset[str], own: tuple[str, ...] = ()) -> None:
    """`own` (directories of ours below them, such as a containerd namespace's), then those of ENGINE_RUN_DIRS that
    were not there before, deepest first. rmdir only: one another engine uses now is not empty, and stays."""
    for d in [*own, *sorted(set(ENGINE_RUN_DIRS) - present_before, key=len, reverse=True)]:
        with contextlib.suppress(OSError):
            os.rmdir(d)


def _stat(pid: int) -> tuple[int, str]:
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    return int(text.rsplit(")", 1)[1].split()[1]), text[text.index("(") + 1:text.rindex(")")]


def _cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return " ".join(a.decode(errors="replace") for a in f.read().split(b"\0") if a)


def _namespaces(pid: int, host: dict[str, str]) -> dict[str, str]:
    out = {}
    for kind in NS_KINDS:
        try:
            out[kind] = "host" if os.readlink(f"/proc/{pid}/ns/{kind}") == host[kind] else "new"
        except OSError:
            out[kind] = "?"
    return out


def _children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                if _stat(int(d))[0] == pid:
                    out.append(int(d))
    return sorted(out)


def _docker_cli() -> str:
    for c in ("/usr/local/bin/docker", "/usr/bin/docker", shutil.which("docker") or ""):
        if c and os.access(c, os.X_OK):
            return c
    raise EngineChainError("no docker CLI here (apt-get install docker.io)")


class EngineChain:
    def __init__(self, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.tmp: Path | None = None
        self.run_dirs_before: frozenset[str] | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.parent = f"/pycontainer_magics/engine-chain-{os.getpid()}"

    # -- a private dockerd -------------------------------------------------------------------------
    def __enter__(self) -> EngineChain:
        if os.geteuid() != 0:
            raise EngineChainError("starting dockerd needs root")
        if shutil.which("dockerd") is None:
            raise EngineChainError("dockerd is not installed (apt-get install docker.io)")
        self.cli = _docker_cli()
        self.tmp = Path(tempfile.mkdtemp(prefix="pyc-chain-", dir="/tmp"))  # short: a socket path lives here
        self.run_dirs_before = engine_run_dirs_present()
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self) -> None:
        assert self.tmp is not None
        from ..oci.launcher import install_runtime

        ours = install_runtime(str(self.tmp / "pycontainer-runc"))
        self.calls_log = self.tmp / "runtime-calls.log"
        wrapper = self.tmp / "pyc"  # records each call the shim makes, then is the runtime
        wrapper.write_text(f"#!/bin/sh\necho \"$*\" >> {self.calls_log}\nexec {ours} \"$@\"\n")
        wrapper.chmod(0o755)
        image = self.tmp / "image.tar"
        self._build_image(image)
        d = self.tmp / "d"
        d.mkdir()
        self.sock = d / "d.sock"
        self.proc = subprocess.Popen(
            ["dockerd", "--data-root", str(d / "data"), "--exec-root", str(d / "exec"), "--pidfile", str(d / "pid"),
             "-H", f"unix://{self.sock}", "--iptables=false", "--ip-masq=false", "--ip-forward=false",
             "--bridge=none", "--userland-proxy=false", "--exec-opt", "native.cgroupdriver=cgroupfs",
             "--cgroup-parent", self.parent, "--add-runtime", f"pyc={wrapper}", "--log-level", "error"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(self.tmp / "dockerd.log", "wb"),
            preexec_fn=_die_with_parent)
        deadline = time.monotonic() + self.timeout
        while self.docker("version", check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.tmp / "dockerd.log").read_text(errors="replace").strip().splitlines()[-1:]
                raise EngineChainError(f"dockerd did not start: {' '.join(tail) or 'no log'}")
            time.sleep(0.2)
        self.docker("load", "-i", str(image))

    def _build_image(self, out: Path) -> None:
        """busybox as an image of this project's store, exported as `docker save` does."""
        from ..images.archive import export_docker_archive
        from ..images.image import ImageConfig
        from ..images.store import Store

        busybox = shutil.which("busybox")
        if busybox is None:
            raise EngineChainError("busybox-static is not installed (apt-get install busybox-static)")
        assert self.tmp is not None
        root = self.tmp / "rootfs"
        (root / "bin").mkdir(parents=True)
        shutil.copy(busybox, root / "bin" / "busybox")
        for applet in ("sh", "sleep"):
            os.symlink("busybox", root / "bin" / applet)
        store = Store(str(self.tmp / "store"))
        store.create_image(IMAGE, [str(root)], ImageConfig(cmd=("sh",), env=("PATH=/bin",)))
        with open(out, "wb") as f:
            export_docker_archive(store, [IMAGE], f)

    def docker(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DOCKER_HOST": f"unix://{self.sock}", "DOCKER_CONFIG": str(self.tmp) + "/client"}
        p = subprocess.run([self.cli, *argv], capture_output=True, text=True, env=env, timeout=self.timeout)
        if check and p.returncode != 0:
            raise EngineChainError(f"docker {argv[0]}: {p.stderr.strip() or p.stdout.strip()}")
        return p

    # -- one container, its chain ------------------------------------------------------------------
    def observe(self, runtime: str) -> Chain:
        """A container started with `docker run -d --runtime RUNTIME`, the host's processes from dockerd down
        to it recorded, then the container removed."""
        assert self.proc is not None
        if self.calls_log.exists():
            self.calls_log.unlink()
        cid = self.docker("run", "-d", "--network", "none", "--runtime", runtime, IMAGE, "sh", "-c",
                          "sleep 600 & wait").stdout.strip()
        try:
            init = int(self.docker("inspect", "--format", "{{.State.Pid}}", cid).stdout)
            deadline = time.monotonic() + 10
            while not _children(init) and time.monotonic() < deadline:  # the shell's `sleep`
                time.sleep(0.02)
            return self._walk(runtime, cid, init)
        finally:
            self.docker("rm", "-f", cid, check=False)

    def _walk(self, runtime: str, cid: str, init: int) -> Chain:
        assert self.proc is not None
        host = {k: os.readlink(f"/proc/self/ns/{k}") for k in NS_KINDS}
        chain = Chain(runtime, cid[:12])

        def add(pid: int, role: str) -> None:
            ppid, _ = _stat(pid)
            chain.processes.append(Proc(pid, ppid, role, _cmdline(pid)[:120], _namespaces(pid, host)))

        add(self.proc.pid, "dockerd")
        containerd = next((c for c in _children(self.proc.pid) if "containerd" in _cmdline(c)), None)
        if containerd is not None:
            add(containerd, "containerd")
        shim_pid = _stat(init)[0]
        add(shim_pid, "shim")
        add(init, "container init")
        for child in _children(init):
            add(child, "container process")
        if runtime == "pyc" and self.calls_log.exists():
            chain.runtime_calls = [_verb(line) for line in self.calls_log.read_text().splitlines()]
        return chain

    # -- and nothing left --------------------------------------------------------------------------
    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            with contextlib.suppress(Exception):
                for cid in self.docker("ps", "-aq", check=False).stdout.split():
                    self.docker("rm", "-f", cid, check=False)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        if self.tmp is not None:
            with open("/proc/self/mountinfo") as f:
                left = [line.split()[4] for line in f if line.split()[4].startswith(str(self.tmp))]
            for mp in sorted(left, key=len, reverse=True):
                subprocess.run(["umount", "-l", mp], capture_output=True)
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
        if self.run_dirs_before is not None:
            remove_engine_run_dirs(self.run_dirs_before)
            self.run_dirs_before = None
        for root in Path("/sys/fs/cgroup").iterdir():
            top = root / self.parent.lstrip("/")
            if top.is_dir():
                for d in sorted(top.rglob("*"), key=lambda p: len(str(p)), reverse=True):
                    with contextlib.suppress(OSError):
                        d.rmdir()
                with contextlib.suppress(OSError):
                    top.rmdir()


def _verb(line: str) -> str:
    """`--root R --log L --log-format json create --bundle B --pid-file F ID` -> `create`."""
    words = line.split()
    i = 0
    while i < len(words) and words[i].startswith("-"):
        i += 1 if "=" in words[i] or words[i] in ("--debug", "--systemd-cgroup") else 2
    return words[i] if i < len(words) else ""


def _die_with_parent() -> None:
    """dockerd goes with the process that started it (a notebook kernel killed mid-cell leaves no daemon)."""
    import ctypes
    ctypes.CDLL(None).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


def _main() -> int:  # pragma: no cover - `python -m pycontainer_magics.lab.engine_chain`
    with EngineChain() as chain:
        for rt in ("pyc", "runc"):
            c = chain.observe(rt)
            print(rt, [(p.role, p.pid, p.ppid) for p in c.processes], c.runtime_calls)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_main())


__all__ = ["Chain", "EngineChain", "EngineChainError", "Proc"]
