"""linux/forked_call.py: a function run in a forked child, its result or its error back, its modules left there."""

from __future__ import annotations

import os
import sys

import pytest

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


def test_a_child_that_dies_without_answering_is_an_error_and_is_reaped() -> None:
    with pytest.raises(ChildFailed, match="ended without an answer"):
        call_in_fork("forked_targets:dies")
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # no child left unreaped


def test_a_missing_module_is_named() -> None:
    with pytest.raises(ChildFailed, match="ModuleNotFoundError: No module named 'no_such_module'"):
        call_in_fork("no_such_module:f")
