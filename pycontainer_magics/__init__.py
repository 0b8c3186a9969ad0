"""pycontainer_magics: IPython magics that turn a notebook into a container lab.

    %load_ext pycontainer_magics

    %%container --memory 50M --pids-limit 20 --hostname lab
    import os, socket
    print(os.getpid(), socket.gethostname())

Importing the package is cheap: IPython, pandas and matplotlib are imported only when the extension is
loaded or a result is displayed.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing itself is not imported: the command line's start-up
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"


def load_ipython_extension(ip: Any) -> None:
    """`%load_ext pycontainer_magics`: register `%%container` and clean up what a killed kernel left."""
    from .magics import ContainerMagics
    from .magics.cgroup import CgroupMagics
    from .magics.compose import ComposeMagics
    from .magics.image import ImageMagics
    from .magics.kube import KubeMagics
    from .magics.netns import NetnsMagics

    ip.register_magics(ContainerMagics)
    ip.register_magics(CgroupMagics)
    ip.register_magics(ImageMagics)
    ip.register_magics(NetnsMagics)
    ip.register_magics(ComposeMagics)
    ip.register_magics(KubeMagics)
    from .display import register_figure_formatter
    from .magics import errors

    register_figure_formatter(ip)  # the plot_* functions return Figures: show them as pictures
    from .magics.doctor import load_message

    # A missing capability (no user namespaces, no writable cgroup, ...) is one line, never a traceback.
    errors.install(ip, (ContainerMagics, CgroupMagics, ImageMagics, NetnsMagics, ComposeMagics, KubeMagics))
    message = load_message()
    if message:
        print(message)
    try:
        from .kube.play import prune_records
        from .workloads.prune import prune

        removed = prune_records() + prune()  # a killed kernel's kube plays: their records and files
    except Exception:  # never let cleanup of old leftovers stop the extension from loading
        return
    if removed:
        print(f"pycontainer_magics: removed {len(removed)} leftover(s) of a previous kernel")


def unload_ipython_extension(ip: Any) -> None:
    """`%unload_ext pycontainer_magics` (and `%reload_ext`): remove the magics again."""
    from .magics import ContainerMagics, errors

    errors.uninstall(ip)
    mm = ip.magics_manager
    for kind in ("line", "cell"):
        table = mm.magics[kind]
        for name, fn in list(table.items()):
            if isinstance(getattr(fn, "__self__", None), ContainerMagics):
                del table[name]
    mm.registry.pop("ContainerMagics", None)


__all__ = ["__version__", "load_ipython_extension", "unload_ipython_extension"]
