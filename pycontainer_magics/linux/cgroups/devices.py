"""Which device nodes a container may create and open: the devices cgroup (v1: `devices.deny`/`devices.allow`)
or, on cgroup v2, a BPF_PROG_TYPE_CGROUP_DEVICE program attached to the container's cgroup (what runc and crun
generate). Without it, a device node in an image layer or in the host's tree (the lower layer) opens as on the
host: a container wrote to the host's kernel log through a `kmsg` node from an image.

The default is runc's allow-list (libcontainer/specconv's AllowedDevices): the standard character devices,
the pseudo-terminals and /dev/net/tun; `mknod` of any character device (harmless: opening is what the list
guards). Unlike runc, `mknod` of a block device is refused too: no block device is usable in a container
anyway, and the early refusal is the clearer error.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from .. import bpf

WILDCARD = -1


@dataclass(frozen=True)
class DeviceRule:
    """One rule in the devices cgroup's terms: kind `c` (character), `b` (block) or `a` (all); major and minor
    numbers (-1: any); access a subset of `rwm` (read, write, mknod)."""

    kind: str
    major: int
    minor: int
    access: str = "rwm"
    allow: bool = True

    def __str__(self) -> str:
        major = "*" if self.major == WILDCARD else str(self.major)
        minor = "*" if self.minor == WILDCARD else str(self.minor)
        return f"{self.kind} {major}:{minor} {self.access}"


DEFAULT_DEVICES: tuple[DeviceRule, ...] = (
    DeviceRule("c", WILDCARD, WILDCARD, "m"),  # mknod of a character device (opening it is what counts)
    DeviceRule("c", 1, 3),  # /dev/null
    DeviceRule("c", 1, 5),  # /dev/zero
    DeviceRule("c", 1, 7),  # /dev/full
    DeviceRule("c", 1, 8),  # /dev/random
    DeviceRule("c", 1, 9),  # /dev/urandom
    DeviceRule("c", 5, 0),  # /dev/tty
    DeviceRule("c", 5, 1),  # /dev/console
    DeviceRule("c", 5, 2),  # /dev/ptmx
    DeviceRule("c", 136, WILDCARD),  # /dev/pts/*
    DeviceRule("c", 10, 200),  # /dev/net/tun
)


def v1_writes(rules: tuple[DeviceRule, ...]) -> list[tuple[str, str]]:
    """(file, line) writes for a v1 devices cgroup: deny everything, then allow each rule."""
    out = [("devices.deny", "a")]
    out += [("devices.allow" if r.allow else "devices.deny", str(r)) for r in rules]
    return out


# -- cgroup v2: the BPF program ---------------------------------------------------------------------------
# struct bpf_cgroup_dev_ctx { u32 access_type (access << 16 | type); u32 major; u32 minor; }
_TYPE = {"b": 1, "c": 2}  # BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR
_ACCESS = {"m": 1, "r": 2, "w": 4}  # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, dst | (src << 4), off, imm)


_LDXW = 0x61  # BPF_LDX | BPF_MEM | BPF_W
_AND32 = 0x54  # BPF_ALU | BPF_AND | BPF_K
_RSH32 = 0x74  # BPF_ALU | BPF_RSH | BPF_K
_MOV32_X = 0xBC  # BPF_ALU | BPF_MOV | BPF_X
_MOV64 = 0xB7  # BPF_ALU64 | BPF_MOV | BPF_K
_JNE = 0x55  # BPF_JMP | BPF_JNE | BPF_K
_EXIT = 0x95


def device_program(rules: tuple[DeviceRule, ...]) -> bytes:
    """An eBPF program returning 1 (allow) or 0 (deny) for a device access: the first rule that matches
    decides (runc lists rules so that the last one wins: give them here in that order reversed), nothing
    matching is denied."""
    head = [
        _insn(_LDXW, 2, 1, 0), _insn(_AND32, 2, imm=0xFFFF),  # r2 = device type
        _insn(_LDXW, 3, 1, 0), _insn(_RSH32, 3, imm=16),  # r3 = access asked for
        _insn(_LDXW, 4, 1, 4),  # r4 = major
        _insn(_LDXW, 5, 1, 8),  # r5 = minor
    ]
    body: list[bytes] = []
    for r in rules:
        # an instruction, or (reg, imm): "if reg != imm, skip the rest of this rule"
        seq: list[bytes | tuple[int, int]] = []
        if r.kind != "a":
            seq.append((2, _TYPE[r.kind]))
        mask = sum(_ACCESS[a] for a in set(r.access))
        if mask != 7:  # asked for more than the rule grants?
            seq += [_insn(_MOV32_X, 1, 3), _insn(_AND32, 1, imm=~mask & 0xFFFF), (1, 0)]
        if r.major != WILDCARD:
            seq.append((4, r.major))
        if r.minor != WILDCARD:
            seq.append((5, r.minor))
        seq += [_insn(_MOV64, 0, imm=1 if r.allow else 0), _insn(_EXIT)]
        for i, item in enumerate(seq):
            body.append(item if isinstance(item, bytes) else _insn(_JNE, item[0], off=len(seq) - i - 1, imm=item[1]))
    tail = [_insn(_MOV64, 0, imm=0), _insn(_EXIT)]
    return b"".join(head + body + tail)


def attach_v2(cgroup_dir: str, rules: tuple[DeviceRule, ...]) -> None:
    """Replace the device programs attached to a v2 cgroup by one enforcing `rules`."""
    prog = bpf.load_device_program(device_program(tuple(reversed(rules))))
    cg = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        old = bpf.attached_device_programs(cg)
        bpf.attach_device_program(cg, prog)
        for prog_id in old:
            bpf.detach_device_program(cg, prog_id)
    finally:
        os.close(cg)
        os.close(prog)


__all__ = ["DEFAULT_DEVICES", "DeviceRule", "WILDCARD", "attach_v2", "device_program", "v1_writes"]
