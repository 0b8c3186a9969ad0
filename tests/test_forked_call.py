"""linux/forked_call.py: a function run in a forked child, its result or its error back, its modules left there."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest
from helpers import on_fork

from pycontainer_magics.linux.forked_call import ChildFailed, call_in_fork


def test_the_result_comes_back_and_the_modules_stay_in_the_child() -> None:
    assert "mailbox" not in sys.modules
    answer = call_in_fork("forked_targets:answer")
    assert answer["mailbox"] is True and answer["pid"] != os.getpid()
    assert "mailbox" not in sys.modules  # imported by the child only
    assert "forked_targets" not in sys.modules


def test_an_error_in_the_child_is_one_line_here() -> None:
    with pytest.raises(ChildFailed, match=r"forked_targets:fails in a forked child: ValueError: no such thing"):
        call_in_fork("forked_targets:fails")


def _forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pids of the children call_in_fork forks from now on."""
    pids: list[int] = []
    on_fork(monkeypatch, pids.append)
    return pids


def _reaped(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def test_a_child_that_dies_without_answering_is_an_error_and_is_reaped(monkeypatch: pytest.MonkeyPatch) -> None:
    pids = _forks(monkeypatch)
    with pytest.raises(ChildFailed, match="ended without an answer"):
        call_in_fork("forked_targets:dies")
    assert len(pids) == 1 and _reaped(pids[0])


def test_a_child_that_does_not_answer_in_time_is_killed_and_reaped(monkeypatch: pytest.MonkeyPatch) -> None:
    pids = _forks(monkeypatch)
    t = time.monotonic()
    with pytest.raises(ChildFailed, match=r"forked_targets:hangs in a forked child: no answer within 0.5 s"):
        call_in_fork("forked_targets:hangs", timeout=0.5)
    assert time.monotonic() - t < 5
    assert len(pids) == 1 and _reaped(pids[0])


def test_an_interrupt_while_waiting_kills_and_reaps_the_child(monkeypatch: pytest.MonkeyPatch) -> None:
    pids = _forks(monkeypatch)

    def interrupt(*_a: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(KeyboardInterrupt):
            call_in_fork("forked_targets:hangs")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert len(pids) == 1 and _reaped(pids[0])


def test_the_child_ignores_a_notebooks_interrupt_and_writes_nothing_to_the_callers_streams(
        capfd: pytest.CaptureFixture[str]) -> None:
    """A notebook's interrupt reaches the caller's whole process group: the child finishes its work regardless; and
    what it prints (to sys.stdout or to fd 1 and 2) goes nowhere — a kernel's streams are its sending thread's."""
    assert call_in_fork("forked_targets:interrupted_and_prints") == "finished"
    out, err = capfd.readouterr()
    assert "printed" not in out + err


def test_a_missing_module_is_named() -> None:
    with pytest.raises(ChildFailed, match="ModuleNotFoundError: No module named 'no_such_module'"):
        call_in_fork("no_such_module:f")


def test_a_child_ends_by_itself_past_its_deadline() -> None:
    """Its caller killed while it waits, nobody would end a child stuck on a lock: it has an alarm of its own."""
    assert 0 < call_in_fork("forked_targets:alarm_left", timeout=10) <= 12
