"""prctl(PR_SET_PDEATHSIG, 0) through _ctypes alone: `import ctypes` (its struct, _endian and type tables)
costs ~1.5 ms of CPU, paid by every call an engine makes to the runtime (`start`, `state`, `delete` need
nothing else from ctypes). A CFuncPtr without a restype returns a C int, as ctypes' default does."""

from __future__ import annotations

import _ctypes

PR_SET_PDEATHSIG = 1


class _Func(_ctypes.CFuncPtr):
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO


class _Self:
    _handle = _ctypes.dlopen(None, 2)  # type: ignore[arg-type]  # RTLD_NOW: the running process's own symbols (libc)


def clear() -> int:
    """No parent-death signal for this process (the one a caller's forking thread set); 0 on success."""
    return int(_Func(("prctl", _Self))(  # type: ignore[arg-type]
        PR_SET_PDEATHSIG, 0, 0, 0, 0))


__all__ = ["clear"]
