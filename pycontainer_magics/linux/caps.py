"""Linux capabilities: names and numbers, Docker's default set, and setting the process's sets."""

from __future__ import annotations

import ctypes
import os

from .libc import PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, PR_CAPBSET_DROP, check, libc, prctl

CAP_NUMBERS: dict[str, int] = {
    "CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "FSETID": 4, "KILL": 5,
    "SETGID": 6, "SETUID": 7, "SETPCAP": 8, "LINUX_IMMUTABLE": 9, "NET_BIND_SERVICE": 10,
    "NET_BROADCAST": 11, "NET_ADMIN": 12, "NET_RAW": 13, "IPC_LOCK": 14, "IPC_OWNER": 15,
    "SYS_MODULE": 16, "SYS_RAWIO": 17, "SYS_CHROOT": 18, "SYS_PTRACE": 19, "SYS_PACCT": 20,
    "SYS_ADMIN": 21, "SYS_BOOT": 22, "SYS_NICE": 23, "SYS_RESOURCE": 24, "SYS_TIME": 25,
    "SYS_TTY_CONFIG": 26, "MKNOD": 27, "LEASE": 28, "AUDIT_WRITE": 29, "AUDIT_CONTROL": 30,
    "SETFCAP": 31, "MAC_OVERRIDE": 32, "MAC_ADMIN": 33, "SYSLOG": 34, "WAKE_ALARM": 35,
    "BLOCK_SUSPEND": 36, "AUDIT_READ": 37, "PERFMON": 38, "BPF": 39, "CHECKPOINT_RESTORE": 40,
}
CAP_NAMES = {v: k for k, v in CAP_NUMBERS.items()}

# Docker's (and runc's default spec's) 14.
DEFAULT_CAPS: frozenset[str] = frozenset({
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID", "SETFCAP",
    "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
})


def normalize_cap(name: str) -> str:
    """'cap_net_admin' / 'CAP_NET_ADMIN' / 'net_admin' -> 'NET_ADMIN'; 'all' -> 'ALL'."""
    n = name.strip().upper()
    return n[4:] if n.startswith("CAP_") else n


_last_cap: int | None = None


def last_cap() -> int:
    """The highest capability number of this kernel; read once (a container's PID 1 forked after the caller read
    it drops its capabilities without opening /proc/sys, about 0.2 ms of a fresh fork's time)."""
    global _last_cap
    if _last_cap is None:
        try:
            fd = os.open("/proc/sys/kernel/cap_last_cap", os.O_RDONLY | os.O_CLOEXEC)
            try:
                _last_cap = int(os.read(fd, 32))
            finally:
                os.close(fd)
        except OSError:  # (no /proc/sys here: the names we know, once — not an open() in every PID 1)
            _last_cap = max(CAP_NAMES)
    return _last_cap


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_LINUX_CAPABILITY_VERSION_3 = 0x20080522
# Made here, once, in the caller: a Python cell's PID 1 (a fork of it) that makes them itself — a ctypes function's
# first lookup, an array type — writes dozens of pages it shares with the caller, a copy-on-write fault each
# (0.15-0.2 ms of its start).
_CapPair = _CapData * 2
_capget = libc.capget
_capset = libc.capset


def mask_of(names: frozenset[str] | set[str]) -> int:
    m = 0
    for n in names:
        m |= 1 << CAP_NUMBERS[n]
    return m


def names_of(mask: int) -> frozenset[str]:
    return frozenset(CAP_NAMES.get(i, f"CAP_{i}") for i in range(64) if mask >> i & 1)


def capget(pid: int = 0) -> tuple[int, int, int]:
    """(effective, permitted, inheritable) masks of a process."""
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, pid)
    data = _CapPair()
    check(_capget(ctypes.byref(hdr), data), "capget")
    eff = data[0].effective | data[1].effective << 32
    prm = data[0].permitted | data[1].permitted << 32
    inh = data[0].inheritable | data[1].inheritable << 32
    return eff, prm, inh


def capset(effective: int, permitted: int, inheritable: int) -> None:
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = _CapPair()
    for i in range(2):
        data[i].effective = effective >> (32 * i) & 0xFFFFFFFF
        data[i].permitted = permitted >> (32 * i) & 0xFFFFFFFF
        data[i].inheritable = inheritable >> (32 * i) & 0xFFFFFFFF
    check(_capset(ctypes.byref(hdr), data), "capset")


def restrict_to(keep: frozenset[str]) -> None:
    """Drop every capability not in `keep` from the bounding set, then set effective = permitted = keep
    and clear the inheritable and ambient sets (what runc does for a root process)."""
    restrict_mask(mask_of(keep))


def restrict_mask(keep_mask: int) -> None:
    """restrict_to() of the capabilities whose bits are set (mask_of, worked out before a fork: in a fresh fork
    every name looked up is a write to its page, a copy-on-write fault)."""
    drop = libc.prctl
    for i in range(last_cap() + 1):
        if not keep_mask >> i & 1 and drop(PR_CAPBSET_DROP, i, 0, 0, 0) != 0:
            check(-1, "prctl(PR_CAPBSET_DROP)")
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    _eff, prm, _inh = capget()
    keep_mask &= prm
    capset(keep_mask, keep_mask, 0)


def proc_status_caps(pid: int | str = "self") -> dict[str, frozenset[str]]:
    """CapInh/CapPrm/CapEff/CapBnd/CapAmb of /proc/PID/status as name sets."""
    out: dict[str, frozenset[str]] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Cap"):
                k, v = line.split(":", 1)
                out[k[3:]] = names_of(int(v.strip(), 16))
    return out


__all__ = ["CAP_NUMBERS", "CAP_NAMES", "DEFAULT_CAPS", "normalize_cap", "restrict_to", "restrict_mask", "capget",
           "capset", "proc_status_caps"]
