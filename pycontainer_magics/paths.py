"""Where the project keeps its state on the host (one answer for the images, network and runtime layers).

State that persists (images, named volumes, networks): /var/lib/pycontainer_magics as root, else under
XDG_DATA_HOME (~/.local/share/pycontainer_magics). Volatile state (scratch mount points, netns files):
/run/pycontainer_magics as root, else XDG_RUNTIME_DIR or /tmp/pycontainer_magics-UID.
PYCONTAINER_STATE_DIR and PYCONTAINER_RUN_DIR override them (tests, Binder).

Both are private (0700), made so on first use and tightened if found looser: they hold what image layers
and containers made — set-uid binaries owned by root, device nodes, volumes a container wrote — which any
local user could otherwise run or open by their path (Docker keeps /var/lib/docker 0710 for this reason).
"""

from __future__ import annotations

import errno
import os

from .errors import OSFailure


class DataRootNotPrivate(OSFailure, PermissionError):
    """The state or run directory belongs to another user: whoever owns it could swap in symlinks or plant
    files the containers then trust."""


def private_dir(path: str, variable: str = "PYCONTAINER_STATE_DIR") -> str:
    """`path`, made 0700 if missing, and tightened to 0700 if it is ours and others may enter it. One owned by
    another user is refused (root may use a root-owned one). A directory we may not create is left to the
    caller's own makedirs to report."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
            st = os.stat(path)
        except OSError:
            return path
    me = os.geteuid()
    if st.st_uid != me and (me == 0 or st.st_uid != 0 or st.st_mode & 0o022):
        raise DataRootNotPrivate(errno.EPERM, f"{path} belongs to uid {st.st_uid}, not to you (uid {me}): a data "
                                 f"root must be your own; remove it or set {variable} to a directory of yours", path)
    if st.st_uid == me and st.st_mode & 0o067:  # 0710 (see let_group_traverse) is private enough
        os.chmod(path, 0o700)
    return path


def let_group_traverse(path: str, gid: int) -> None:
    """Let group `gid` — the host gid of a user-namespaced container's root (`--userns remap`) — pass through
    the data root `path` (0710 root:gid, Docker's layout under userns-remap): that root resolves volume and
    rootfs paths below it while it mounts them. Other users still cannot enter."""
    st = os.stat(path)
    if st.st_uid != os.geteuid():
        return
    if st.st_gid != gid:
        os.chown(path, -1, gid)
    if st.st_mode & 0o777 != 0o710:
        os.chmod(path, 0o710)


def state_dir() -> str:
    env = os.environ.get("PYCONTAINER_STATE_DIR")
    if env:
        return private_dir(env)
    if os.geteuid() == 0:
        return private_dir("/var/lib/pycontainer_magics")
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return private_dir(os.path.join(base, "pycontainer_magics"))


def run_dir() -> str:
    env = os.environ.get("PYCONTAINER_RUN_DIR")
    if env:
        return private_dir(env, "PYCONTAINER_RUN_DIR")
    if os.geteuid() == 0:
        return private_dir("/run/pycontainer_magics", "PYCONTAINER_RUN_DIR")
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    path = os.path.join(xdg, "pycontainer_magics") if xdg else f"/tmp/pycontainer_magics-{os.geteuid()}"
    return private_dir(path, "PYCONTAINER_RUN_DIR")
