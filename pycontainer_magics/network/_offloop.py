"""pyroute2's synchronous API runs an asyncio loop of its own, and refuses to where one is already running
in the calling thread: a notebook kernel runs cells inside its asyncio loop. The public functions of this
package therefore run in another thread when called from inside a running loop: the one thread of linux/lifelong.py
(no loop runs there), which lives as long as the process, so a server forked there (serve_echo) does not die with
it (PR_SET_PDEATHSIG follows the forking thread), and no thread is started per call."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from ..linux import lifelong

F = TypeVar("F", bound=Callable[..., Any])


def off_loop(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # No asyncio loaded, no loop running: asyncio is not imported for this check (with ssl, 3 MB of a kernel
        # that has no loop, which every Python cell's fork copies the page tables of).
        # (A module another thread is importing is in sys.modules before it has its functions: no loop yet either.)
        running = getattr(sys.modules.get("asyncio"), "get_running_loop", None)
        if running is not None:
            try:
                running()
            except RuntimeError:
                pass  # no loop in this thread
            else:
                return lifelong.call(lambda: fn(*args, **kwargs), own_thread=True)
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
