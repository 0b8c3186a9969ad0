"""A jupyter_client kernel provisioner that starts the whole kernel inside a limited cgroup.

kernel.json:
    "metadata": {"kernel_provisioner": {"provisioner_name": "pycontainer-cgroup",
                                        "config": {"memory": "2G", "cpus": 1, "pids": 200}}}

The config keys are this class's traits. The kernel's command is wrapped in
`python -m pycontainer_magics.kernel.in_cgroup ... -- CMD` (created, joined, then exec'ed: the kernel
never runs unlimited); the cgroup is removed in `cleanup()` when the kernel ends or restarts, and by
`pycontainer prune` / `%load_ext` when the server died with the kernel (its owner pid is the kernel's).
"""

from __future__ import annotations

import os
from typing import Any

from jupyter_client.provisioning.local_provisioner import LocalProvisioner
from traitlets import Float, Int, Unicode

from .in_cgroup import cgroup_name


class CgroupProvisioner(LocalProvisioner):  # type: ignore[misc,unused-ignore]
    """LocalProvisioner whose kernel runs in `<project parent>/kernel-<pid>-0-<tag>` with limits."""

    memory = Unicode(None, allow_none=True, config=True, help="memory limit, Docker style: 2G, 512m")
    cpus = Float(None, allow_none=True, config=True, help="CPU quota in CPUs: 1, 0.5")
    pids = Int(None, allow_none=True, config=True, help="pids limit (threads count)")
    hostname = Unicode(None, allow_none=True, config=True, help="a hostname of its own (UTS namespace)")

    _tag: str | None = None
    _kernel_pid: int | None = None

    def limits(self) -> Any:
        from .kernelspec import parse_limits

        return parse_limits(self.memory, self.cpus, self.pids, self.hostname)

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        from ..runtime.spec import SpecError

        try:
            lim = self.limits()
        except SpecError as e:
            raise ValueError(f"kernelspec {self.kernel_spec.display_name!r}: {e}") from None
        _check_cgroups(lim)
        kwargs = await super().pre_launch(**kwargs)
        cmd = list(kwargs["cmd"])
        self._tag = os.urandom(6).hex()
        # cmd[0] is the kernelspec's Python (where this package is installed), maybe not the server's.
        kwargs["cmd"] = [cmd[0], "-m", "pycontainer_magics.kernel.in_cgroup", *lim.argv(), "--tag", self._tag,
                         "--", *cmd]
        return kwargs

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
        info = await super().launch_kernel(cmd, **kwargs)
        self._kernel_pid = self.pid
        return info

    @property
    def cgroup_name(self) -> str | None:
        """The running kernel's cgroup (directory name under the project's parent)."""
        if self._tag is None or self._kernel_pid is None:
            return None
        return cgroup_name(self._kernel_pid, self._tag)

    async def cleanup(self, restart: bool = False) -> None:
        try:
            self._remove_cgroup()
        finally:
            await super().cleanup(restart=restart)

    def _remove_cgroup(self) -> None:
        if self._tag is None:
            return
        from ..linux.cgroups import open_hierarchy

        try:
            h = open_hierarchy()
            for name in h.list():
                if name.startswith("kernel-") and name.endswith("-" + self._tag):
                    h.get(name).remove()  # kills what the kernel left running in it
        except OSError as e:
            self.log.warning("pycontainer: could not remove the kernel's cgroup: %s", e)
        self._tag = None
        self._kernel_pid = None

    async def get_provisioner_info(self) -> dict[str, Any]:
        info: dict[str, Any] = await super().get_provisioner_info()
        info.update({"pycontainer_tag": self._tag, "pycontainer_pid": self._kernel_pid})
        return info

    async def load_provisioner_info(self, provisioner_info: dict[str, Any]) -> None:
        await super().load_provisioner_info(provisioner_info)
        self._tag = provisioner_info.get("pycontainer_tag")
        self._kernel_pid = provisioner_info.get("pycontainer_pid")


def _check_cgroups(lim: Any) -> None:
    """Fail before launching, in one line, when the limits cannot be applied here."""
    from ..linux.cgroups import PARENT_ENV, open_hierarchy

    try:
        h = open_hierarchy()
    except OSError as e:
        raise RuntimeError(f"the limited kernel needs cgroups: {e}") from None
    if not h.writable:
        from ..linux.cgroups.delegation import for_this_user

        d = for_this_user() if os.geteuid() != 0 else None
        how = f"delegate one to this user ({d.one_line()})" if d else f"set {PARENT_ENV} to a delegated subtree"
        raise RuntimeError(
            f"the limited kernel needs a writable cgroup ({', '.join(h.parent_paths) or 'none'} is not): run "
            f"Jupyter as root, or {how}")
    have = set(h.available_controllers())
    need = {"memory": lim.memory, "cpu": lim.cpus, "pids": lim.pids}
    missing = [c for c, v in need.items() if v is not None and c not in have]
    if missing:
        raise RuntimeError(f"the limited kernel needs the cgroup controller(s) {', '.join(missing)}, "
                           f"not available here (available: {', '.join(sorted(have)) or 'none'})")
