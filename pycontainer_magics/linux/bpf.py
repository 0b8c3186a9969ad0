"""The bpf(2) calls a cgroup v2 device filter needs: load a BPF_PROG_TYPE_CGROUP_DEVICE program, attach it
to a cgroup directory, and list and detach what is attached there (to replace a filter). Raw `union bpf_attr`
layouts from linux/bpf.h, packed by hand: no libbpf needed.
"""

from __future__ import annotations

import ctypes
import os
import struct

from .libc import libc

SYS_bpf = 321  # x86_64
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6  # attach type
BPF_F_ALLOW_MULTI = 2

_ATTR_SIZE = 128  # larger than every layout used here; the kernel wants the tail zeroed


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_char], what: str) -> int:
    ret: int = libc.syscall(SYS_bpf, cmd, attr, _ATTR_SIZE)
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"bpf({what}): {os.strerror(e)}")
    return ret


def load_device_program(insns: bytes, name: bytes = b"pcm_devices") -> int:
    """Load a cgroup device program (eBPF instructions, 8 bytes each); returns its fd."""
    prog = ctypes.create_string_buffer(insns, len(insns))
    license = ctypes.create_string_buffer(b"Apache-2.0")
    log = ctypes.create_string_buffer(65536)
    attr = ctypes.create_string_buffer(_ATTR_SIZE)
    # prog_type, insn_cnt, insns, license, log_level, log_size, log_buf, kern_version, prog_flags, prog_name[16]
    struct.pack_into("IIQQIIQII16s", attr, 0, BPF_PROG_TYPE_CGROUP_DEVICE, len(insns) // 8,
                     ctypes.addressof(prog), ctypes.addressof(license), 1, len(log), ctypes.addressof(log), 0, 0,
                     name[:15])
    try:
        return _bpf(BPF_PROG_LOAD, attr, "PROG_LOAD")
    except OSError as e:
        verifier = log.value.decode(errors="replace").strip().splitlines()[-3:]
        raise OSError(e.errno, f"{e.strerror} {' | '.join(verifier)}".strip()) from None


def attach_device_program(cgroup_fd: int, prog_fd: int) -> None:
    attr = ctypes.create_string_buffer(_ATTR_SIZE)
    struct.pack_into("IIII", attr, 0, cgroup_fd, prog_fd, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI)
    _bpf(BPF_PROG_ATTACH, attr, "PROG_ATTACH")


def attached_device_programs(cgroup_fd: int) -> list[int]:
    """Ids of the device programs attached directly to the cgroup."""
    ids = (ctypes.c_uint32 * 64)()
    attr = ctypes.create_string_buffer(_ATTR_SIZE)
    # target_fd, attach_type, query_flags, attach_flags, prog_ids, prog_cnt
    struct.pack_into("IIIIQI", attr, 0, cgroup_fd, BPF_CGROUP_DEVICE, 0, 0, ctypes.addressof(ids), len(ids))
    _bpf(BPF_PROG_QUERY, attr, "PROG_QUERY")
    count = struct.unpack_from("I", attr, 24)[0]
    return list(ids[:count])


def detach_device_program(cgroup_fd: int, prog_id: int) -> None:
    attr = ctypes.create_string_buffer(_ATTR_SIZE)
    struct.pack_into("I", attr, 0, prog_id)
    prog_fd = _bpf(BPF_PROG_GET_FD_BY_ID, attr, "PROG_GET_FD_BY_ID")
    try:
        attr = ctypes.create_string_buffer(_ATTR_SIZE)
        struct.pack_into("III", attr, 0, cgroup_fd, prog_fd, BPF_CGROUP_DEVICE)
        _bpf(BPF_PROG_DETACH, attr, "PROG_DETACH")
    finally:
        os.close(prog_fd)


__all__ = ["attach_device_program", "attached_device_programs", "detach_device_program", "load_device_program"]
