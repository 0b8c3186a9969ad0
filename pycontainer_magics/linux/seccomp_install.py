"""Installing a compiled seccomp filter (prctl PR_SET_SECCOMP), apart from the compiler in seccomp.py: the OCI
runtime installs a cached program on every `create` and should not pay the compiler's imports for it."""

from __future__ import annotations

import ctypes
import errno

from .libc import libc

PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_prctl = libc.prctl
# Programs made ready to install: each one's buffer and struct sock_fprog, kept alive with the struct's address.
# Made in a Python cell's caller before it forks PID 1 (prepare): made in that fresh fork, every ctypes object is an
# allocation on pages it shares with the caller, a copy-on-write fault each (0.15 ms of its start here).
# (A dict, in order of last use: the OCI runtime's `create` imports no collections.)
_ready: dict[bytes, tuple[ctypes.Array[ctypes.c_char], _SockFprog, int]] = {}
_KEPT = 8  # programs kept ready (a notebook's cells use one or two)


def _make(program: bytes) -> tuple[ctypes.Array[ctypes.c_char], _SockFprog, int]:
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.addressof(buf))
    return buf, fprog, ctypes.addressof(fprog)


def prepare(program: bytes) -> None:
    """Make the program's struct sock_fprog ready (kept with the last programs made ready or used here)."""
    _ready[program] = _ready.pop(program) if program in _ready else _make(program)  # (to the end)
    while len(_ready) > _KEPT:
        del _ready[next(iter(_ready))]


def install(program: bytes) -> None:
    """Install a compiled filter on the calling thread (and so on everything it executes): its struct made ready
    before (prepare), as a rule — not reordered here (in a fresh fork, a write) — else made now."""
    entry = _ready.get(program) or _make(program)  # (held here for the call: another thread may let it go meanwhile)
    if _prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, entry[2], 0, 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"installing the seccomp filter: {errno.errorcode.get(e, e)}")


__all__ = ["install", "prepare"]
