"""The other side: run Kubernetes YAML with the real `podman kube play` (Debian's podman 4.3), on a private
store, so a notebook or a test can show that the YAML this project writes is what a real consumer runs,
and read YAML `podman kube generate` writes.

    with PrivatePodman() as pm:                 # podman --root/--runroot/--tmpdir in a temp dir of its own
        pm.load_images(["lab/busybox:1"])       # images of this project's store, copied in (docker-archive)
        pm.play(yaml_text)                      # podman kube play --network none
        pm.logs("demo-cli"); pm.generate("demo"); pm.down(yaml_text)
    # everything podman made is gone: containers, pods, its storage, its mounts

What podman needs here, measured: `--runtime runc` (crun 1.8 refuses the cgroup v1 hybrid layout), a
containers.conf with ulimits root can set here (nofile/nproc: root lacks CAP_SYS_RESOURCE on this VM),
network configs in the temp dir, `--network none` (only lo: no CNI bridge or firewall rule on the host),
and images whose config has PATH. Every podman command runs in a mount namespace of its own (kept by a
small `sleep` holder, entered with nsenter), so podman's overlay and shm mounts — and those of the conmon and
containers it starts — never show in the host's mount table, and vanish with the namespace. Under its cgroupfs
manager podman puts each pod's cgroup under `libpod_parent` in every hierarchy and, on cgroup v1, leaves the pod's
directories in the named (systemd) and v2 hierarchies when the pod goes, and `libpod_parent` itself everywhere:
close() removes those of the pods it saw, and the parent where it was not there before (remove_podman_cgroups:
empty cgroups only; rmdir, nothing killed).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Collection, Mapping
from typing import Any

from ..linux.cgroups.others import hierarchy_mounts, remove_empty, remove_empty_tree
from .errors import KubeError

POD_CGROUP_PARENT = "libpod_parent"  # podman's parent for pods under its cgroupfs manager


class PrivatePodman:
    """podman on a store of its own under a temp dir; `close()` (or the `with` block) removes it all."""

    def __init__(self, top: str | None = None) -> None:
        """`top`: the directory for its store (short: podman refuses a runroot over 50 characters);
        default a new temp dir, removed by close()."""
        if shutil.which("podman") is None:
            raise KubeError("podman is not installed (apt-get install podman runc conmon catatonit)")
        self._own = top is None
        self.top = top or tempfile.mkdtemp(prefix="pcm-podman-")
        os.makedirs(self.top, 0o700, exist_ok=True)
        conf = os.path.join(self.top, "containers.conf")
        with open(conf, "w") as f:
            f.write('[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n'
                    f'[network]\nnetwork_config_dir = "{self.top}/cni"\n'
                    '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n')
        self.env = {**os.environ, "CONTAINERS_CONF": conf}
        # every podman command runs in self.top: conmon writes a file `oom` into its working directory when a
        # container is OOM-killed (it would land in the notebook's directory)
        self._holder = _mount_namespace_holder()
        # where podman's parent already was (another podman's: kept), and the pods seen in this store
        self._cgroup_parents = podman_cgroup_parents()
        self._pods: set[str] = set()
        self.base = ["nsenter", f"--mount=/proc/{self._holder.pid}/ns/mnt", "--",
                     "podman", "--root", f"{self.top}/root", "--runroot", f"{self.top}/runroot",
                     "--tmpdir", f"{self.top}/tmp"]

    def __call__(self, *args: str, check: bool = True, input: str | None = None,  # noqa: A002
                 timeout: float = 120.0) -> str:
        """`podman ARGS...` on the private store: its stdout; KubeError (one line) when it fails."""
        r = subprocess.run([*self.base, *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                           input=input, cwd=self.top)
        if check and r.returncode != 0:
            tail = (r.stderr.strip().splitlines() or [""])[-1]
            raise KubeError(f"podman {' '.join(args[:2])}: exit {r.returncode}: {tail}")
        return r.stdout

    def load_images(self, refs: list[str]) -> None:
        """Copy images of this project's store into podman's (as a docker-archive)."""
        from ..images import Store
        from ..images.archive import export_docker_archive

        path = os.path.join(self.top, "images.tar")
        with open(path, "wb") as f:
            export_docker_archive(Store(), refs, f)
        try:
            self("load", "-i", path)
        finally:
            os.unlink(path)

    def play(self, yaml_text: str, *extra: str) -> str:
        """`podman kube play --network none` of the YAML."""
        try:
            return self("kube", "play", "--network", "none", *extra, "-", input=yaml_text)
        finally:  # (a play that failed half-way may have made a pod; its own error is the one to see)
            with contextlib.suppress(Exception):
                self._note_pods()

    def _note_pods(self) -> None:
        """Remember the pods in this store now (their ids name their cgroups), for close()."""
        self._pods.update(i for i in self("pod", "ps", "-q", "--no-trunc", check=False).split()
                          if re.fullmatch(r"[0-9a-f]{64}", i))

    def down(self, yaml_text: str) -> str:
        return self("kube", "down", "-", input=yaml_text)

    def generate(self, name: str) -> str:
        """`podman kube generate NAME`: podman's YAML of its pod or container."""
        return self("kube", "generate", name)

    def logs(self, container: str) -> str:
        r = subprocess.run([*self.base, "logs", container], env=self.env, capture_output=True, text=True,
                           timeout=60, cwd=self.top)
        return r.stdout + r.stderr

    def inspect(self, name: str, fmt: str) -> str:
        return self("inspect", name, "--format", fmt).strip()

    def close(self) -> None:
        """Remove every pod and container, podman's storage (its overlay mounts go with it) and the dir."""
        with contextlib.suppress(Exception):
            self._note_pods()
            self("pod", "rm", "-af", "-t", "0", check=False)
            self("rm", "-af", "-t", "0", check=False)
            self("system", "reset", "-f", check=False)
        if self._holder.poll() is None:
            self._holder.kill()  # the namespace, and any mount podman left in it, goes with its last process
            self._holder.wait()
        remove_podman_cgroups(self._cgroup_parents, self._pods)
        if self._own:
            shutil.rmtree(self.top, ignore_errors=True)

    def __enter__(self) -> PrivatePodman:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def podman_cgroup_parents() -> dict[str, bool]:
    """podman's parent (`libpod_parent`) in every cgroup hierarchy mounted here (v1 controllers, named ones such as
    systemd's, the v2 one) -> whether it is there now. Taken before podman runs: which of them podman made."""
    return {p: os.path.isdir(p) for p in (os.path.join(mp, POD_CGROUP_PARENT) for mp in hierarchy_mounts())}


def remove_podman_cgroups(parents: Mapping[str, bool], pods: Collection[str] = ()) -> None:
    """What podman's cgroupfs manager left of our work under its parents (`parents`: podman_cgroup_parents() taken
    before it ran): each of our pods' directories with what is below them and, where the parent was not there
    before, its `conmon` cgroup (conmon's, for containers outside pods) and the parent itself — nothing else below
    it. rmdir only: a cgroup holding a process, or another podman's cgroup, stays (and the parent with it); one
    still being emptied (a conmon exiting) is retried for up to a second in all."""
    deadline = time.monotonic() + 1.0
    for parent, existed in parents.items():
        for pod in pods:
            remove_empty_tree(os.path.join(parent, pod), deadline)
        if not existed:
            remove_empty(os.path.join(parent, "conmon"), deadline)
            remove_empty(parent, deadline)


def _mount_namespace_holder() -> subprocess.Popen[bytes]:
    """`sleep` in a new mount namespace (private propagation), dying with us; returns once it is in it."""
    from ..linux.libc import PR_SET_PDEATHSIG, prctl

    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        raise KubeError("podman here runs in a mount namespace of its own: unshare and nsenter (util-linux) are "
                        "needed")
    holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sleep", "infinity"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              preexec_fn=lambda: prctl(PR_SET_PDEATHSIG, signal.SIGKILL))
    ns, ours = f"/proc/{holder.pid}/ns/mnt", os.readlink("/proc/self/ns/mnt")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and holder.poll() is None:
        with contextlib.suppress(OSError):
            if os.readlink(ns) != ours:  # unshare has made it and exec'd sleep there
                return holder
        time.sleep(0.005)
    holder.kill()
    holder.wait()
    raise KubeError("could not make a mount namespace for podman (unshare --mount failed)")


__all__ = ["PrivatePodman", "podman_cgroup_parents", "remove_podman_cgroups"]
