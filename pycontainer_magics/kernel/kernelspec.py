"""The kernelspecs: "Python 3 (container lab)" and its limited variant (a kernel provisioner's config)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

from ..runtime.parse import parse_cpus, parse_int, parse_size
from ..runtime.spec import SpecError

KERNEL_NAME = "pycontainer-lab"
DISPLAY_NAME = "Python 3 (container lab)"
PROVISIONER_NAME = "pycontainer-cgroup"  # entry point in group jupyter_client.kernel_provisioners
EXTENSION = "pycontainer_magics"


@dataclass(frozen=True)
class KernelLimits:
    """The limited kernel's cgroup: memory as written ("2G"), CPUs, a pids limit (None: unlimited); and a
    hostname of its own (a UTS namespace) when given."""

    memory: str | None = None
    cpus: float | None = None
    pids: int | None = None
    hostname: str | None = None

    @property
    def memory_bytes(self) -> int | None:
        return None if self.memory is None else parse_size(self.memory, "--memory")

    def config(self) -> dict[str, Any]:
        """The provisioner's config (kernelspec metadata.kernel_provisioner.config): its traits."""
        return {k: v for k, v in (("memory", self.memory), ("cpus", self.cpus), ("pids", self.pids),
                                  ("hostname", self.hostname)) if v is not None}

    def label(self) -> str:
        """`2G, 1 CPU, 100 pids`."""
        parts = []
        if self.memory is not None:
            parts.append(self.memory)
        if self.cpus is not None:
            n = f"{self.cpus:g}"
            parts.append(f"{n} CPU" if self.cpus == 1 else f"{n} CPUs")
        if self.pids is not None:
            parts.append(f"{self.pids} pids")
        return ", ".join(parts)

    def slug(self) -> str:
        """A kernelspec-name part: `2g-1cpu-100pids`."""
        parts = []
        if self.memory is not None:
            parts.append(self.memory.lower().replace(" ", ""))
        if self.cpus is not None:
            parts.append(f"{self.cpus:g}cpu")
        if self.pids is not None:
            parts.append(f"{self.pids}pids")
        return "-".join(parts)

    def argv(self) -> list[str]:
        """The in_cgroup wrapper's options."""
        out = []
        if self.memory is not None:
            out += ["--memory", self.memory]
        if self.cpus is not None:
            out += ["--cpus", f"{self.cpus:g}"]
        if self.pids is not None:
            out += ["--pids", str(self.pids)]
        if self.hostname is not None:
            out += ["--hostname", self.hostname]
        return out


def parse_limits(memory: str | int | None = None, cpus: str | float | None = None,
                 pids: str | int | None = None, hostname: str | None = None) -> KernelLimits:
    """Validated limits (SpecError with the flag and an example when one is wrong)."""
    mem = None
    if memory is not None:
        mem = str(memory).strip()
        if parse_size(mem, "--memory") < 64 * 2**20:
            raise SpecError(f"--memory {mem} is too small for a Python kernel: give at least 64M, like 2G")
    n = None if pids is None else parse_int(pids, "--pids")
    if n is not None and n < 16:  # pids counts threads: ipykernel alone runs about ten
        raise SpecError(f"--pids {n} is too small for a Python kernel (its threads count): give at least 16")
    if hostname is not None and not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,62})", hostname):
        raise SpecError(f"invalid --hostname {hostname!r}: letters, digits, '.' and '-', up to 63, like lab-kernel")
    return KernelLimits(memory=mem, cpus=None if cpus is None else parse_cpus(cpus), pids=n, hostname=hostname)


def kernel_dict(limits: KernelLimits | None = None, *, python: str | None = None,
                display_name: str | None = None) -> dict[str, Any]:
    """kernel.json: ipykernel with the extension loaded; with limits, our provisioner and its config."""
    spec: dict[str, Any] = {
        "argv": [python or sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                 f"--ext={EXTENSION}"],
        "display_name": display_name or DISPLAY_NAME,
        "language": "python",
        "metadata": {"debugger": True},
    }
    if limits is not None:
        if display_name is None and limits.label():
            spec["display_name"] = f"{DISPLAY_NAME[:-1]}, {limits.label()})"
        spec["metadata"]["kernel_provisioner"] = {"provisioner_name": PROVISIONER_NAME, "config": limits.config()}
    return spec


def default_name(limits: KernelLimits | None) -> str:
    if limits is None:
        return KERNEL_NAME
    return f"{KERNEL_NAME}-{limits.slug() or 'limited'}"


def install_kernel(limits: KernelLimits | None = None, *, user: bool = False, prefix: str | None = None,
                   name: str | None = None, display_name: str | None = None, python: str | None = None) -> str:
    """Install the kernelspec with jupyter_client's KernelSpecManager; returns the directory written."""
    from jupyter_client.kernelspec import KernelSpecManager

    name = name or default_name(limits)
    src = tempfile.mkdtemp(prefix="pycontainer-kernelspec-")
    try:
        for logo in _ipykernel_logos():  # so the launcher shows the Python icon
            with contextlib.suppress(OSError):
                shutil.copy(logo, src)
        with open(os.path.join(src, "kernel.json"), "w") as f:
            json.dump(kernel_dict(limits, python=python, display_name=display_name), f, indent=1)
        os.chmod(src, 0o755)
        return str(KernelSpecManager().install_kernel_spec(src, name, user=user, prefix=prefix))
    finally:
        shutil.rmtree(src, ignore_errors=True)


def _ipykernel_logos() -> list[str]:
    """ipykernel's logo files, found without importing it (the command line never loads IPython)."""
    spec = importlib.util.find_spec("ipykernel")
    if spec is None or not spec.submodule_search_locations:
        return []
    resources = os.path.join(next(iter(spec.submodule_search_locations)), "resources")
    try:
        return [os.path.join(resources, f) for f in sorted(os.listdir(resources))]
    except OSError:
        return []
