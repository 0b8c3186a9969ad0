"""/proc/PID/mountinfo parsing."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MountInfo:
    mount_id: int
    parent_id: int
    major_minor: str
    root: str
    mount_point: str
    options: frozenset[str]
    optional: tuple[str, ...]  # shared:N, master:N, ...
    fstype: str
    source: str
    super_options: frozenset[str]

    @property
    def read_only(self) -> bool:
        return "ro" in self.options

    @property
    def propagation(self) -> str:
        kinds = [o.split(":")[0] for o in self.optional]
        if "shared" in kinds:
            return "shared"
        if "master" in kinds:
            return "slave"
        return "private"


def _unescape(s: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal
    if "\\" not in s:
        return s
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 3 < len(s) + 1 and s[i + 1:i + 4].isdigit():
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def parse_mountinfo_line(line: str) -> MountInfo:
    left, _, right = line.rstrip("\n").partition(" - ")
    f = left.split(" ")
    r = right.split(" ")
    return MountInfo(
        mount_id=int(f[0]), parent_id=int(f[1]), major_minor=f[2], root=_unescape(f[3]),
        mount_point=_unescape(f[4]), options=frozenset(f[5].split(",")), optional=tuple(f[6:]),
        fstype=r[0], source=_unescape(r[1]) if len(r) > 1 else "",
        super_options=frozenset(r[2].split(",")) if len(r) > 2 else frozenset(),
    )


def mountinfo(pid: int | str = "self") -> list[MountInfo]:
    with open(f"/proc/{pid}/mountinfo") as f:
        return [parse_mountinfo_line(line) for line in f if line.strip()]
