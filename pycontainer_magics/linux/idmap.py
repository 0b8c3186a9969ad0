"""User-namespace id maps: /proc/PID/uid_map, gid_map and setgroups."""

from __future__ import annotations

import os
import pwd


def format_map(lines: list[tuple[int, int, int]] | tuple[tuple[int, int, int], ...]) -> str:
    return "".join(f"{a} {b} {c}\n" for a, b, c in lines)


def write_maps(pid: int, uid_map: str, gid_map: str, deny_setgroups: bool) -> None:
    """Write a child's maps from the parent user namespace. An unprivileged writer may only map its
    own ids and must deny setgroups first (user_namespaces(7))."""
    if deny_setgroups:
        _write(f"/proc/{pid}/setgroups", "deny")
    _write(f"/proc/{pid}/uid_map", uid_map)
    _write(f"/proc/{pid}/gid_map", gid_map)


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    except OSError as e:
        raise OSError(e.errno, f"writing {text.strip()!r}: {e.strerror}", path) from None
    finally:
        os.close(fd)


def subid_range(user: str, kind: str = "uid") -> tuple[int, int] | None:
    """First range of /etc/subuid (or subgid) for a user name or uid: (start, count)."""
    path = "/etc/subuid" if kind == "uid" else "/etc/subgid"
    try:
        uid = str(pwd.getpwnam(user).pw_uid)
    except KeyError:
        uid = user
    try:
        with open(path) as f:
            for line in f:
                parts = line.strip().split(":")
                if len(parts) == 3 and parts[0] in (user, uid):
                    return int(parts[1]), int(parts[2])
    except OSError:
        pass
    return None


def read_map(pid: int | str, kind: str = "uid") -> list[tuple[int, int, int]]:
    with open(f"/proc/{pid}/{kind}_map") as f:
        return [tuple(int(x) for x in line.split()) for line in f if line.strip()]  # type: ignore[misc]
