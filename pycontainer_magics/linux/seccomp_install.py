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


def install(program: bytes) -> None:
    """Install a compiled filter on the calling thread (and so on everything it executes)."""
    buf = ctypes.c_char_p(program)  # the bytes' own buffer, not a copy (the kernel copies it)
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"installing the seccomp filter: {errno.errorcode.get(e, e)}")


__all__ = ["install"]
