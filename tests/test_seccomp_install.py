"""A compiled seccomp filter made ready in the caller before a fork (linux/seccomp_install.prepare), installed by
the fork: the same program's struct is made once, and a program no longer kept ready is made again by the child."""

from __future__ import annotations

import ctypes
import os

from pycontainer_magics.linux import libc, seccomp_install
from pycontainer_magics.linux.seccomp import Profile, Rule, compile_profile
from pycontainer_magics.linux.syscalls_x86_64 import X86_64


def _program(n: int) -> bytes:
    """A filter that allows everything but getppid, which fails with errno n + 1."""
    return compile_profile(Profile("SCMP_ACT_ALLOW", (Rule(("getppid",), "SCMP_ACT_ERRNO", errno_ret=n + 1),)))


def _in_child(program: bytes) -> int:
    """What getppid answers in a child that installed the program (the errno, 0 if it went through)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            libc.set_no_new_privs()
            seccomp_install.install(program)
            got = libc.libc.syscall(X86_64["getppid"])  # (through syscall(): glibc's getppid() sets no errno)
            os.write(w, str(ctypes.get_errno() if got < 0 else 0).encode())
        finally:
            os._exit(0)
    os.close(w)
    out = os.read(r, 16)
    os.close(r)
    os.waitpid(pid, 0)
    return int(out)


def test_a_program_is_made_ready_once_and_installed_from_there() -> None:
    program = _program(10)
    seccomp_install.prepare(program)
    made = seccomp_install._ready[program]
    seccomp_install.prepare(bytes(bytearray(program)))  # (an equal program: the same struct)
    assert seccomp_install._ready[program] is made
    assert _in_child(program) == 11


def test_the_programs_used_last_are_kept_ready_and_the_others_still_install() -> None:
    first, used = _program(20), _program(21)
    seccomp_install.prepare(first)
    seccomp_install.prepare(used)
    for n in range(seccomp_install._KEPT - 1):
        seccomp_install.prepare(_program(30 + n))
        seccomp_install.prepare(used)  # (used again: kept)
    assert first not in seccomp_install._ready and used in seccomp_install._ready
    assert len(seccomp_install._ready) == seccomp_install._KEPT
    assert _in_child(first) == 21


def test_the_caller_makes_what_pid1s_privilege_steps_use(monkeypatch) -> None:
    """plan.ready_steps, called before a Python cell's fork: the seccomp program's struct made ready, the kernel's
    capability count read (PID 1 then opens no /proc/sys and makes no ctypes object for them)."""
    from pycontainer_magics.linux import caps
    from pycontainer_magics.linux.caps import DEFAULT_CAPS
    from pycontainer_magics.runtime.plan import privilege_steps, ready_steps

    program = _program(40)
    monkeypatch.setattr(caps, "_last_cap", None)
    steps = privilege_steps(rlimits_=(), workdir="/", capabilities=frozenset(DEFAULT_CAPS), uid=None, gid=None,
                            no_new_privileges=True, seccomp_program=program)
    ready_steps(steps)
    assert program in seccomp_install._ready
    assert caps._last_cap is not None
