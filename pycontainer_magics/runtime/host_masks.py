"""What the host-as-image hides: with the host's `/` as the image, a container would otherwise read the host's
password hashes, root's and every user's home directory (SSH keys, cloud tokens), the host's private keys,
and other containers' state and logs. No lecture needs them, so the image layer on top of the host (the
small "mount-point" layer, see rootfs.py) hides them:

- /etc/shadow, /etc/gshadow (and their `-` backups): replaced by copies with every password locked (`*`),
  so tools that read them still work;
- /root and /home: emptied — except the directories a container needs from there: the working directory
  (the notebook's), this Python's installation and import path (a pyenv or a venv in a home directory), and
  where volumes and mounts go. Credential stores (.ssh, .aws, .kube, ...) are hidden even in those;
- the host's unix sockets need no mask: seen through the overlay, a socket is an overlay inode no listener is
  bound to (connect answers ECONNREFUSED), and /run (a filesystem of its own) is not part of the lower layer;
- /etc/ssh/ssh_host_*_key, /etc/ssl/private, /etc/krb5.keytab: hidden;
- this project's state and run directories (images, volumes, other containers' state and logs): hidden.

Hidden is overlayfs's own way: a whiteout, or an opaque directory, in a lower layer. The container may
still create files there (they go to its writable layer, as anywhere). `--security-opt unmask=PATH[:PATH]`
lifts the masks at or below PATH (`unmask=ALL`: every mask, /proc's too, as podman's option).
"""

from __future__ import annotations

import glob
import os
import stat
import sys
import threading
import time
from collections.abc import Iterable

SANITIZED = ("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-")
HIDDEN = ("/etc/ssl/private", "/etc/krb5.keytab")
HIDDEN_GLOBS = ("/etc/ssh/ssh_host_*_key",)
EMPTIED = ("/root", "/home")
CREDENTIALS = (".ssh", ".gnupg", ".aws", ".azure", ".config/gcloud", ".kube", ".docker", ".netrc",
               ".git-credentials", ".pgpass", ".password-store", ".vault-token", ".local/share/keyrings")


def _unmasked(path: str, unmask: Iterable[str]) -> bool:
    return any(u == "ALL" or path == u or path.startswith(u.rstrip("/") + "/") for u in unmask)


def _listdir(path: str, seen: set[str]) -> list[str]:
    seen.update((path, os.path.dirname(path)))
    try:
        return sorted(os.listdir(path)) if os.path.isdir(path) and not os.path.islink(path) else []
    except OSError:
        return []


def _looked_up(path: str, seen: set[str]) -> str:
    """Note the directory a name was looked up in (whether it exists is decided there)."""
    seen.add(os.path.dirname(path) or "/")
    return path


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top + "/")


def _empty_except(top: str, keep: list[str], out: dict[str, str], seen: set[str]) -> None:
    """Hide everything in `top` but the paths in `keep` (and the directories leading to them)."""
    if not keep:
        out[top] = "opaque"
        return
    if any(k == top for k in keep):
        return  # kept whole (credential stores aside, see below)
    following = {k[len(top) + 1:].split("/")[0] for k in keep}
    for name in _listdir(top, seen):
        child = f"{top}/{name}"
        if name not in following:
            out[child] = "whiteout"
        else:
            _empty_except(child, [k for k in keep if _under(k, child)], out, seen)


def keep_paths(cwd: str, mount_targets: Iterable[str]) -> list[str]:
    """Directories under /root or /home a container keeps: the working directory, this interpreter's
    installation and import path, and mount targets."""
    paths = [cwd, sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path, *mount_targets]
    return sorted({os.path.normpath(p) for p in paths if p and os.path.isabs(p)})


# The last scans, kept while every directory they looked into is as it was. A scan looks names up in a dozen
# directories (/etc, /etc/ssh, /root, /home, the kept homes, ...): a stat of each of those is a third of the scan
# (0.18 ms of every cell, on its path). A directory changed less than RACY seconds before a scan may change again
# within its timestamp's granularity unseen: such a scan is not kept.
RACY = 1.0
_scans: dict[tuple[object, ...], tuple[tuple[tuple[str, str], ...],
                                       tuple[tuple[str, tuple[int, int, int, int, int] | None], ...]]] = {}
_scans_lock = threading.Lock()  # (the pool's thread plans a parked PID 1's launch while the caller plans its own)


def _state(path: str) -> tuple[int, int, int, int, int] | None:
    """What changes when a name is added to, removed from or renamed in a directory (or the path is replaced). The
    ctime too: a tool that adds a name and puts the directory's mtime back (tar -x, rsync -t, touch -r) cannot set
    it."""
    try:
        st = os.lstat(path or ".")
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_mode, st.st_mtime_ns, st.st_ctime_ns


def masks(*, cwd: str, mount_targets: Iterable[str] = (), data_dirs: Iterable[str] = (),
          unmask: Iterable[str] = ()) -> tuple[tuple[str, str], ...]:
    """(path, kind) entries for the mount-point layer over the host image: kind `whiteout` (hide),
    `opaque` (an empty directory) or `sanitized` (a copy with passwords locked). The host as it is now: a scan is
    reused only while every directory it looked into is unchanged (see RACY)."""
    unmask, mount_targets, data_dirs = tuple(unmask), tuple(mount_targets), tuple(data_dirs)
    key = (cwd, mount_targets, data_dirs, unmask, sys.prefix, sys.base_prefix, sys.exec_prefix, tuple(sys.path))
    with _scans_lock:
        kept = _scans.get(key)
    if kept is not None and all(_state(d) == st for d, st in kept[1]):
        return kept[0]
    began = time.time_ns()
    seen: set[str] = set()
    found = _scan(cwd, mount_targets, data_dirs, unmask, seen)
    # A directory that does not exist is watched through its parent too (its creation changes the parent).
    for d in list(seen):
        while d not in ("/", "") and not os.path.isdir(d):  # ("": a relative path's last step)
            d = os.path.dirname(d)
            seen.add(d)
    states = tuple((d, _state(d)) for d in sorted(seen))
    racy = began - int(RACY * 1e9)
    keep = all(st is None or (not stat.S_ISLNK(st[2]) and max(st[3], st[4]) < racy) for _, st in states)
    with _scans_lock:  # (a symlink, or a directory changed within RACY: not kept)
        _scans.pop(key, None)
        if keep:
            while len(_scans) >= 8:
                _scans.pop(next(iter(_scans)))
            _scans[key] = (found, states)
    return found


def _scan(cwd: str, mount_targets: tuple[str, ...], data_dirs: tuple[str, ...], unmask: tuple[str, ...],
          seen: set[str]) -> tuple[tuple[str, str], ...]:
    out: dict[str, str] = {}
    for path in SANITIZED:
        seen.add(path)  # (a file followed through a symlink: its own state too)
        if os.path.isfile(_looked_up(path, seen)):
            out[path] = "sanitized"
    hidden = [*HIDDEN, *data_dirs]
    for pattern in HIDDEN_GLOBS:
        hidden += sorted(glob.glob(_looked_up(pattern, seen)))
    for path in hidden:
        if os.path.lexists(_looked_up(path, seen)):
            out[os.path.normpath(path)] = "whiteout"
    keep = keep_paths(cwd, mount_targets)
    for top in EMPTIED:
        if os.path.isdir(_looked_up(top, seen)) and not os.path.islink(top):
            _empty_except(top, [k for k in keep if _under(k, top)], out, seen)
    # credential stores in the kept home directories themselves (cwd = ~, say)
    homes = [h for h in ("/root", *(f"/home/{n}" for n in _listdir("/home", seen))) if h not in out]
    for home in homes:
        if any(_under(k, home) for k in keep):
            for name in CREDENTIALS:
                p = f"{home}/{name}"
                if os.path.lexists(_looked_up(p, seen)) and not any(_under(k, p) for k in keep) \
                        and not any(_under(p, hidden) for hidden in out):
                    out[p] = "whiteout"
    return tuple(sorted((p, k) for p, k in out.items() if not _unmasked(p, unmask)))


def rootless_masks(*, cwd: str, mount_targets: Iterable[str] = (), unmask: Iterable[str] = ()) -> list[str]:
    """Rootless, the container is you and sees what you see. But a top-level directory with mounts of its own
    is bound there, not overlaid (rootfs.mount_host_tree), and through a bind a socket answers: /run/user
    (your session's D-Bus, systemd --user, an ssh-agent) and, when bound, /tmp and /var/tmp (an X server's, a
    tmux's, an agent's sockets) get a fresh tmpfs instead, unless something the container needs is below."""
    keep = keep_paths(cwd, mount_targets)
    bound = _bound_top_levels()
    wanted = ["/run/user"] + [d for d in ("/tmp", "/var/tmp") if d.split("/")[1] in bound]
    return [d for d in wanted if os.path.isdir(d) and not os.path.islink(d) and not _unmasked(d, tuple(unmask))
            and not any(_under(k, d) for k in keep)]


def _bound_top_levels() -> set[str]:
    """Top-level directories holding mounts of their own (what mount_host_tree binds instead of overlaying)."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split(" ")[4] for line in f]
    return {p.split("/")[1] for p in points if p != "/"}


def sanitized(path: str) -> bytes:
    """/etc/shadow or /etc/gshadow with every password field locked."""
    lines = []
    with open(path, "rb") as f:
        for line in f.read().splitlines():
            fields = line.split(b":")
            if len(fields) > 1:
                fields[1] = b"*" if fields[1] not in (b"", b"!", b"*", b"!!") else fields[1]
            lines.append(b":".join(fields))
    return b"\n".join(lines) + b"\n"


__all__ = ["masks", "rootless_masks", "sanitized"]
