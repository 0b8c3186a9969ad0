"""The suite's own state and run directories (images, networks, volumes, sockets, the notebooks' too): made
when the session starts, unless the caller names them (PYCONTAINER_STATE_DIR / PYCONTAINER_RUN_DIR), and
removed when it ends with what the project made for them (a network's bridge, a killed kernel's leftovers).
A run leaves nothing of its own on the host, and a lab's state on this machine (/var/lib/pycontainer_magics)
is not used. A session that was killed leaves its directories: the next session removes them (their names
carry the session's pid)."""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import tempfile

MADE: dict[str, str] = {}  # variable -> the directory this session made for it
# root's default directories: only reported when a process of the session made them (one started without the
# session's environment), never removed here (a lab kernel may have made them meanwhile)
DEFAULTS = ("/var/lib/pycontainer_magics", "/run/pycontainer_magics")
DEFAULTS_BEFORE: set[str] = set()
_PID = os.getpid()
_NAME = re.compile(r"^pcm-tests-(state|run)-(\d+)-")


def _parents() -> list[tuple[str, str, str | None]]:
    root = os.geteuid() == 0
    return [("PYCONTAINER_STATE_DIR", "state", "/var/tmp"), ("PYCONTAINER_RUN_DIR", "run", "/run" if root else None)]


def make() -> None:
    for var, kind, parent in _parents():
        if not os.environ.get(var):
            if parent is not None and not os.access(parent, os.W_OK):
                parent = None
            _remove_stale(parent or tempfile.gettempdir())
            MADE[var] = os.environ[var] = tempfile.mkdtemp(prefix=f"pcm-tests-{kind}-{_PID}-", dir=parent)
    DEFAULTS_BEFORE.update(d for d in DEFAULTS if os.path.exists(d))
    if MADE:
        atexit.register(_remove_again)  # (first registered, last run: after the library's own exit clean-up)


def _remove_stale(parent: str) -> None:
    """The directories of an earlier session that was killed (its pid gone), with nothing mounted under them."""
    for name in os.listdir(parent):
        m = _NAME.match(name)
        path = os.path.join(parent, name)
        if m is None or not os.path.isdir(path) or os.stat(path).st_uid != os.geteuid():
            continue
        if not os.path.exists(f"/proc/{m.group(2)}") and not _mounted_under(path):
            shutil.rmtree(path, ignore_errors=True)


def _mounted_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == path or p.startswith(path + "/")]


def _remove_again() -> None:
    """At exit: the library's exit clean-up may have made a directory again (empty) after the session ended."""
    if os.getpid() != _PID:  # (a forked child exiting through atexit)
        return
    for path in MADE.values():
        if os.path.isdir(path) and not _mounted_under(path):
            shutil.rmtree(path, ignore_errors=True)


def defaults_made() -> list[str]:
    """root's default directories made during the session (a process without the session's environment), with
    what they hold: reported, not removed."""
    if not MADE or os.geteuid() != 0:
        return []
    notes = []
    for path in DEFAULTS:
        if path in DEFAULTS_BEFORE or not os.path.isdir(path):
            continue
        held = sorted(os.path.relpath(os.path.join(d, f), path) for d, _, fs in os.walk(path) for f in fs)
        notes.append(f"{path} was made during the session (left as it is): {', '.join(held[:6]) or 'empty'}")
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
    containers, as docker0 does): the network layer's orphans (networks.orphaned_links: links whose state dir
    is gone, this one's among them)."""
    try:
        from pycontainer_magics.network import links, networks
    except ImportError:
        return []
    left = []
    try:
        for name, kind in networks.orphaned_links():
            if kind in ("bridge", "veth"):
                with contextlib.suppress(Exception):
                    links.delete_link(name)
                left += [name] if os.path.exists(f"/sys/class/net/{name}") else []
    except Exception as exc:  # noqa: BLE001 - reported as what is left
        return [f"links of {state}: {exc}"]
    return [f"link {name} (its state directory is gone)" for name in left]
