"""pyroute2's synchronous API runs an asyncio loop of its own, and refuses to where one is already running
in the calling thread: a notebook kernel runs cells inside its asyncio loop. The public functions of this
package therefore run in a short-lived thread of their own when called from inside a running loop."""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def off_loop(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # No asyncio loaded, no loop running: asyncio is not imported for this check (with ssl, 3 MB of a kernel
        # that has no loop, which every Python cell's fork copies the page tables of).
        asyncio = sys.modules.get("asyncio")
        try:
            if asyncio is None:
                raise RuntimeError
            asyncio.get_running_loop()
        except RuntimeError:
            return fn(*args, **kwargs)  # no loop here: call directly
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["result"] = fn(*args, **kwargs)
            except BaseException as e:  # noqa: BLE001 - handed back to the caller
                box["error"] = e

        t = threading.Thread(target=target, name=f"pycontainer-net-{fn.__name__}")
        t.start()
        t.join()
        if "error" in box:
            raise box["error"]
        return box.get("result")

    return wrapper  # type: ignore[return-value]
