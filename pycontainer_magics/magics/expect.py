"""What a cell says its workload will do, and the ContainerError when it does otherwise.

By default a workload must succeed: exit code 0, no signal, no OOM kill, no timeout; anything else fails the
cell with one line (exit code, signal, OOMKilled, the last line of stderr). A cell that shows a failure
says so, and then fails when the failure does NOT happen:

    --expect oom            the OOM killer ended it (OOMKilled)
    --expect exit=N         exit code N (also --expect-exit N; 137 = SIGKILL, as Docker reports it)
    --expect signal=KILL    killed by this signal (a name, with or without SIG, or a number)
    --expect timeout        killed by --timeout
    --expect error[=NAME]   a Python cell raised (an exception of class NAME)
    --no-raise-error        whatever happens, the cell passes (IPython's %%script spelling)

Several --expect must all hold. The outcome is read from any result with the usual fields (ContainerRun,
GroupRun, ExecResult, a CompletedProcess): exit_code/returncode, signal, oom_killed, timed_out, error_name.
"""

from __future__ import annotations

import argparse
import signal as _signal
from dataclasses import dataclass
from typing import Any

from ..runtime.result import HOLDER_LOST, STATUS_LOST
from .errors import ContainerError, MagicUsageError

EXPECT_FLAGS = ("--expect", "--expect-exit", "--no-raise-error")  # defined in args.OPTIONS, with their help
EXEC_FAILED = "ExecError"  # the error name of a command that could not be executed (not found: 127)
LOST = (HOLDER_LOST, STATUS_LOST)  # a run that ended without an exit status: not the cell's


@dataclass(frozen=True)
class Outcome:
    """How a workload ended, whatever ran it."""

    exit_code: int | None
    signal: int | None = None
    oom_killed: bool = False
    timed_out: bool = False
    error_name: str | None = None  # a Python cell's exception class
    error_line: str | None = None  # its last traceback line, e.g. "ZeroDivisionError: division by zero"
    stderr: str = ""
    memory_limit: int | None = None

    @classmethod
    def of(cls, result: Any) -> Outcome:
        code = getattr(result, "exit_code", getattr(result, "returncode", None))
        sig = getattr(result, "signal", None)
        if isinstance(code, int) and code < 0 and sig is None:  # subprocess: -N = killed by signal N
            sig, code = -code, 128 - code
        if code is None and sig is not None:
            code = 128 + sig
        err = getattr(result, "error", None)
        err_line = next((ln.strip() for ln in reversed(str(err).splitlines()) if ln.strip()), None) if err else None
        stderr = getattr(result, "stderr", "") or ""
        if isinstance(stderr, bytes):
            stderr = stderr.decode(errors="replace")
        return cls(exit_code=code, signal=sig, oom_killed=bool(getattr(result, "oom_killed", False)),
                   timed_out=bool(getattr(result, "timed_out", False)), error_name=getattr(result, "error_name", None),
                   error_line=err_line, stderr=stderr, memory_limit=getattr(result, "memory_limit", None))

    @property
    def signal_name(self) -> str | None:
        return None if self.signal is None else _signal_name(self.signal)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.signal is None and not self.oom_killed and not self.timed_out

    def describe(self) -> str:
        """`exited with code 3`, `was killed by the OOM killer (OOMKilled, exit code 137, memory limit 50 MiB)` ..."""
        if self.oom_killed:
            limit = f", memory limit {_mib(self.memory_limit)}" if self.memory_limit else ""
            return f"was killed by the OOM killer (OOMKilled, exit code {self.exit_code}{limit})"
        if self.timed_out:
            return f"was killed at its --timeout (exit code {self.exit_code})"
        if self.error_name == EXEC_FAILED:  # a command that never ran: its exit code is the story (127, 126)
            return f"could not be run: {self.error_line or self.error_name} (exit code {self.exit_code})"
        if self.error_name in LOST:  # the runtime lost the container's end, not an exception of the cell's
            return self.error_line or "ended without an exit status"
        if self.error_name:
            return f"raised {self.error_line or self.error_name} (exit code {self.exit_code})"
        if self.signal is not None:
            return f"was killed by {self.signal_name} (exit code {self.exit_code})"
        return f"exited with code {self.exit_code}"

    def stderr_tail(self, n: int = 5) -> tuple[str, ...]:
        lines = [ln.rstrip() for ln in self.stderr.splitlines() if ln.strip()]
        return tuple(lines[-n:])


@dataclass(frozen=True)
class Expectation:
    exit_code: int | None = None
    oom: bool = False
    signal: int | None = None
    timeout: bool = False
    error: str | None = None  # "" = any exception; else its class name
    no_raise: bool = False

    @property
    def stated(self) -> bool:
        return (self.exit_code is not None or self.oom or self.signal is not None or self.timeout
                or self.error is not None)

    def flags(self) -> str:
        out = []
        if self.oom:
            out.append("--expect oom")
        if self.exit_code is not None:
            out.append(f"--expect-exit {self.exit_code}")
        if self.signal is not None:
            out.append(f"--expect signal={_signal_name(self.signal).removeprefix('SIG')}")
        if self.timeout:
            out.append("--expect timeout")
        if self.error is not None:
            out.append("--expect error" + (f"={self.error}" if self.error else ""))
        return " ".join(out)

    def unmet(self, o: Outcome) -> list[str]:
        """What was expected and did not happen (empty: every expectation held)."""
        missing = []
        if self.oom and not o.oom_killed:
            missing.append("the OOM killer")
        if self.exit_code is not None and o.exit_code != self.exit_code:
            missing.append(f"exit code {self.exit_code}")
        if self.signal is not None and o.signal != self.signal:
            missing.append(f"a kill by {_signal_name(self.signal)}")
        if self.timeout and not o.timed_out:
            missing.append("the --timeout to strike")
        if self.error is not None and (o.error_name is None or o.error_name in LOST
                                       or (self.error and o.error_name != self.error)):
            missing.append(f"the cell to raise {self.error or 'an exception'}")
        return missing

    def check(self, label: str, result: Any, what: str = "the container") -> None:
        """Raise ContainerError when `result` is not what this expectation (or, without one, success) says."""
        if self.no_raise:
            return
        o = Outcome.of(result)
        if self.stated:
            missing = self.unmet(o)
            if not missing:
                return
            message = f"{label}: expected {' and '.join(missing)} ({self.flags()}), but {what} {o.describe()}"
        elif o.ok:
            return
        else:
            hint = _hint(o)
            message = f"{label}: {what} {o.describe()}"
            tail = o.stderr_tail(1)
            if tail and not (o.error_line and tail[-1].strip() == o.error_line):
                message += f"; stderr ends: {_short(tail[-1])}"
            message += f"; if the cell shows this, say so with {hint}" + \
                ("" if hint == "--no-raise-error" else " (or --no-raise-error)")
        raise ContainerError(message, result, exit_code=o.exit_code, signal=o.signal_name, oom_killed=o.oom_killed,
                             stderr_tail=o.stderr_tail())


def from_namespace(ns: argparse.Namespace) -> Expectation:
    """The expectation of parsed options (`expect`, `expect_exit`, `no_raise_error`; absent ones count as unset)."""
    return parse(getattr(ns, "expect", None) or [], getattr(ns, "expect_exit", None),
                 bool(getattr(ns, "no_raise_error", False)))


def parse(items: list[str], expect_exit: str | int | None = None, no_raise: bool = False) -> Expectation:
    kw: dict[str, Any] = {"no_raise": no_raise}
    if expect_exit is not None:
        kw["exit_code"] = _exit_code(str(expect_exit), "--expect-exit")
    for raw in items:
        for item in (i.strip() for i in raw.split(",")):
            key, sep, value = item.partition("=")
            key = key.lower()
            if key in ("oom", "oomkilled") and not sep:
                kw["oom"] = True
            elif key == "timeout" and not sep:
                kw["timeout"] = True
            elif key == "exit" and sep:
                kw["exit_code"] = _exit_code(value, "--expect exit=")
            elif key == "signal" and sep:
                kw["signal"] = _parse_signal(value)
            elif key == "error":
                if sep and not value.isidentifier():
                    raise MagicUsageError(f"--expect error={value}: expected an exception class name, like "
                                          "error=PermissionError")
                kw["error"] = value if sep else ""
            else:
                raise MagicUsageError(f"invalid --expect {item!r}: expected oom, exit=N, signal=KILL, timeout or "
                                      "error[=NAME]")
    if no_raise and any(k != "no_raise" for k in kw):
        raise MagicUsageError("--no-raise-error accepts any outcome: leave out --expect, or drop --no-raise-error")
    return Expectation(**kw)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """--expect, --expect-exit, --no-raise-error on a magic's parser (the shared table's entries)."""
    from .args import OPTIONS

    for o in OPTIONS:
        if o.flags[0] in EXPECT_FLAGS:
            p.add_argument(*o.flags, **o.kwargs)


def split_flags(argv: list[str]) -> tuple[Expectation, list[str]]:
    """The expectation flags taken out of a hand-parsed argv (before any `--`), and the rest."""
    items: list[str] = []
    exit_code: str | None = None
    no_raise = False
    rest: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            rest += argv[i:]
            break
        name, eq, value = a.partition("=")
        if name in ("--expect", "--expect-exit"):
            if not eq:
                if i + 1 >= len(argv):
                    example = "oom" if name == "--expect" else "1"
                    raise MagicUsageError(f"{name} needs a value, like {name} {example}")
                value, i = argv[i + 1], i + 1
            if name == "--expect":
                items.append(value)
            else:
                exit_code = value
        elif a == "--no-raise-error":
            no_raise = True
        else:
            rest.append(a)
        i += 1
    return parse(items, exit_code, no_raise), rest


def _exit_code(value: str, flag: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = -1
    if not 0 <= n <= 255:
        raise MagicUsageError(f"invalid {flag}{'' if flag.endswith('=') else ' '}{value}: expected an exit code "
                              "0-255, like 1 or 137")
    return n


def _parse_signal(value: str) -> int:
    v = value.strip().upper()
    if v.isdigit():
        n = int(v)
    else:
        try:
            n = int(_signal.Signals["SIG" + v.removeprefix("SIG")])
        except KeyError:
            n = 0
    if not 0 < n < _signal.NSIG:
        raise MagicUsageError(f"invalid --expect signal={value}: expected a signal name or number, like KILL, SEGV "
                              "or 9")
    return n


def _signal_name(n: int) -> str:
    try:
        return _signal.Signals(n).name
    except ValueError:
        return f"SIG{n}"


def _mib(n: int) -> str:
    return f"{n / 2**20:g} MiB"


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _hint(o: Outcome) -> str:
    if o.oom_killed:
        return "--expect oom"
    if o.timed_out:
        return "--expect timeout"
    if o.error_name in LOST:
        return "--no-raise-error"  # (no expectation states that the runtime lost the container's end)
    if o.error_name and o.error_name != EXEC_FAILED:
        return f"--expect error={o.error_name}"
    if o.signal is not None:
        return f"--expect signal={(o.signal_name or '').removeprefix('SIG')}"
    return f"--expect-exit {o.exit_code}"


__all__ = ["Expectation", "Outcome", "add_arguments", "from_namespace", "parse", "split_flags"]
