"""Jupyter kernels for the container lab.

    pycontainer install-kernel [--user|--prefix P]            "Python 3 (container lab)"
    pycontainer install-kernel --limited --memory 2G --cpus 1 "Python 3 (container lab, 2G, 1 CPU)"

The first is ipykernel with `pycontainer_magics` already loaded (`--ext`). The second runs the whole
kernel in a cgroup of the project's own with the limits of its kernelspec: a jupyter_client kernel
provisioner (`provisioner.py`, entry point `pycontainer-cgroup`) starts the kernel through
`python -m pycontainer_magics.kernel.in_cgroup`, which creates the cgroup, joins it and execs the kernel.

May import: runtime/ and everything below it. Never magics/, display/ or cli/; no IPython, pandas,
matplotlib or ipywidgets (it starts kernels, it is not one). Its command is cli/kernel.py.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DISPLAY_NAME", "KERNEL_NAME", "PROVISIONER_NAME", "KernelLimits", "install_kernel", "kernel_dict",
           "parse_limits"]


def __getattr__(name: str) -> Any:
    # Loaded on first use: `pycontainer`'s parser imports this package, and kernelspec pulls in the runtime.
    if name in __all__:
        from . import kernelspec
        return getattr(kernelspec, name)
    raise AttributeError(name)
