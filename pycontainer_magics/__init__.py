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
    """`%load_ext pycontainer_magics`: register the magics and clean up what a killed kernel left."""
    try:
        removed = _prune_leftovers()  # (first: before this kernel has any of the runtime's state, see there)
    except Exception:  # never let cleanup of old leftovers stop the extension from loading
        removed = []
    from .display import register_figure_formatter
    from .magics import errors, magic_classes
    from .magics.doctor import load_message
    from .magics.history_thread import HISTORY_THREAD, kept_history_thread
    from .runtime.cell_fork import fork_guards

    classes = magic_classes()
    for cls in classes:
        ip.register_magics(cls)
    fork_guards[HISTORY_THREAD] = kept_history_thread
    register_figure_formatter(ip)  # the plot_* functions return Figures: show them as pictures
    # A missing capability (no user namespaces, no writable cgroup, ...) is one line, never a traceback.
    errors.install(ip, classes)
    message = load_message()
    if message:
        print(message)
    try:
        from .runtime.run import hierarchy

        hierarchy()  # (known now: the project's cgroup parent, emptied by the prune, goes when this kernel exits)
    except Exception:  # (no cgroups here: the first cell says so)
        pass
    if removed:
        print(f"pycontainer_magics: removed {len(removed)} leftover(s) of a previous kernel")


def _prune_leftovers() -> list[str]:
    """A killed kernel's leftovers removed (workloads/prune.py). In a forked child while this kernel has imported
    none of the runtime (a first %load_ext): the child imports the network, workloads and kube modules the prune
    needs and takes them away — a kernel that uses no network, pod or kube play never keeps them (2-3 MB, whose page
    tables every Python cell's fork would copy) — and it shares no state with the kernel's threads: no pool of
    prepared containers, no clean-up queue, none of their locks. Once the kernel has those (a %reload_ext, the
    library used first): in the kernel, as before."""
    import sys

    if any(m.startswith("pycontainer_magics.runtime") for m in sys.modules):
        return _prune_all()
    from .linux.forked_call import call_in_fork

    return list(call_in_fork("pycontainer_magics:_prune_all"))


def _prune_all() -> list[str]:
    """A killed kernel's kube plays (their records and files), then the rest of its leftovers (workloads/prune.py)."""
    from .kube.records import prune_records
    from .workloads.prune import prune

    return prune_records() + prune()


def unload_ipython_extension(ip: Any) -> None:
    """`%unload_ext pycontainer_magics` (and `%reload_ext`): remove every magic of ours and release what was
    kept ready for the next cell (the launch helper, a namespace holder, a cgroup). Containers started in
    the background keep running (`%container ps`); they end with the kernel as before."""
    from .magics import errors, magic_classes
    from .magics.history_thread import HISTORY_THREAD
    from .runtime.cell_fork import fork_guards
    from .runtime.pool import release

    classes = magic_classes()
    errors.uninstall(ip)
    fork_guards.pop(HISTORY_THREAD, None)
    mm = ip.magics_manager
    for kind in ("line", "cell"):
        table = mm.magics[kind]
        for name, fn in list(table.items()):
            if isinstance(getattr(fn, "__self__", None), classes):
                del table[name]
    for cls in classes:
        mm.registry.pop(cls.__name__, None)
    import sys

    drawer = sys.modules.get("pycontainer_magics.display.plot_worker")  # (the cards' plot helper, if one was drawn)
    if drawer is not None:
        drawer.worker().stop()
    serving = release()
    if serving:
        print(f"pycontainer_magics: the launch helper stays while {len(serving)} background container(s) or "
              "pod(s) started through it run (%container ps); they end with the kernel")


__all__ = ["__version__", "load_ipython_extension", "unload_ipython_extension"]
