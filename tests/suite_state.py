"""The suite's own state and run directories (images, networks, volumes, sockets, the notebooks' too): made
when the session starts, unless the caller names them (PYCONTAINER_STATE_DIR / PYCONTAINER_RUN_DIR), and
removed when it ends with what the project made for them (a network's bridge, a killed kernel's leftovers).
A run leaves nothing of its own on the host, and a lab's state on this machine (/var/lib/pycontainer_magics)
is neither used nor pruned by it."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

MADE: dict[str, str] = {}  # variable -> the directory this session made for it
# root's default directories: a process started without the session's environment (an engine's runtime call,
# a command run with a clean environment) makes them; those that were not there before the session go too
DEFAULTS = ("/var/lib/pycontainer_magics", "/run/pycontainer_magics")
DEFAULTS_BEFORE: set[str] = set()


def make() -> None:
    for var, prefix, parent in (("PYCONTAINER_STATE_DIR", "pcm-tests-state-", "/var/tmp"),
                                ("PYCONTAINER_RUN_DIR", "pcm-tests-run-", "/run" if os.geteuid() == 0 else None)):
        if not os.environ.get(var):
            if parent is not None and not os.access(parent, os.W_OK):
                parent = None
            MADE[var] = os.environ[var] = tempfile.mkdtemp(prefix=prefix, dir=parent)
    DEFAULTS_BEFORE.update(d for d in DEFAULTS if os.path.exists(d))
    if MADE:
        atexit.register(_remove_again)  # (first registered, last run: after the library's own exit clean-up)


def _mounted_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == path or p.startswith(path + "/")]


def _remove_again() -> None:
    """At exit: the library's exit clean-up may have made a directory again (empty) after the session ended."""
    for path in [*MADE.values(), *(d for d in DEFAULTS if d not in DEFAULTS_BEFORE)]:
        if os.path.isdir(path) and not _mounted_under(path):
            shutil.rmtree(path, ignore_errors=True)


def remove_defaults() -> list[str]:
    """root's default directories a process of the session made (not there before it), removed; returns what
    they held, for the report."""
    if not MADE or os.geteuid() != 0:
        return []
    notes = []
    for path in DEFAULTS:
        if path in DEFAULTS_BEFORE or not os.path.isdir(path) or _mounted_under(path):
            continue
        held = sorted(os.path.relpath(os.path.join(d, f), path) for d, _, fs in os.walk(path) for f in fs)
        notes.append(f"{path} (made during the session, removed): {', '.join(held[:6]) or 'empty'}")
        shutil.rmtree(path, ignore_errors=True)
    return notes


def remove() -> list[str]:
    """Remove what make() made; returns what could not go (a mount under it: never deleted through)."""
    if not MADE:
        return []
    left = []
    try:
        from pycontainer_magics.workloads.prune import prune

        prune()  # a killed kernel's pods, networks and namespaces, by their records in these directories
    except Exception as exc:  # noqa: BLE001 - reported, and the directories still checked below
        left.append(f"prune failed: {exc}")
    for var, path in MADE.items():
        mounted = _mounted_under(path)
        if mounted:
            left.append(f"{path} ({var}): still mounted under it: {', '.join(mounted[:5])}")
            continue
        shutil.rmtree(path, ignore_errors=True)
        if os.path.exists(path):
            left.append(f"{path} ({var}): could not be removed")
    state = MADE.get("PYCONTAINER_STATE_DIR")
    if state and os.geteuid() == 0 and not os.path.exists(state):
        left += _remove_links_of(state)
    return left


def _remove_links_of(state: str) -> list[str]:
    """The bridges and host veths the removed state dir's networks had (a default bridge outlives its
    containers, as docker0 does)."""
    try:
        from pycontainer_magics.network import links, networks
        from pycontainer_magics.network.netns import iproute
    except ImportError:
        return []
    with iproute() as ipr:
        names = [str(link.get("ifname")) for link in ipr.get_links()
                 if networks.alias_state_dir(link.get("IFLA_IFALIAS")) == state]
    return [f"link {name} of {state}" for name in names if not links.delete_link(name)]
