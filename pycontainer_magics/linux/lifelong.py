"""Helper processes that live as long as this process, whichever of its threads starts them.

A helper sets PR_SET_PDEATHSIG to go with the process that started it, but the kernel sends that signal when the
*thread* that forked it exits, not the process. A helper started from a thread that ends early (a detached
container's relay thread, a thread of the caller's own) was killed with that thread, and with it everything it had
made: the namespace holders of runs still going in other threads, whose containers then ended with no exit code. So
a helper is started from a thread that lives as long as the process: the main thread when it is the caller (it ends
only with the process), else this module's own thread, which never ends.
"""

from __future__ import annotations

import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_calls: queue.SimpleQueue[tuple[Callable[[], Any], dict[str, Any], threading.Event]] = queue.SimpleQueue()
_thread: threading.Thread | None = None
_lock = threading.Lock()


def call(fn: Callable[[], T], *, own_thread: bool = False) -> T:
    """fn() (which starts a helper: a fork, a subprocess), from a thread that lives as long as the process.
    own_thread: in this module's thread even when called from the main thread (network/_offloop.py: a thread with
    no asyncio loop running)."""
    global _thread
    here = threading.current_thread()
    if here is _thread or (here is threading.main_thread() and not own_thread):  # (a call from a call: run it)
        return fn()
    with _lock:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_serve, name="pycontainer-helpers", daemon=True)
            _thread.start()
    box: dict[str, Any] = {}
    done = threading.Event()
    _calls.put((fn, box, done))
    done.wait()
    if "error" in box:
        raise box["error"]
    result: T = box["result"]
    return result


def spawn(module: str, kind: int = socket.SOCK_SEQPACKET,
          stderr: int | None = subprocess.DEVNULL) -> tuple[subprocess.Popen[bytes], socket.socket]:
    """`python -m MODULE FD`: a helper that talks with this process on a socket pair of `kind` (FD its end; ours is
    returned), started by call(), in a session of its own (a terminal's signals are this process's to take), with no
    stdin or stdout, in /. stderr: where its own goes (None: ours)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, kind)
    try:
        proc = call(lambda: subprocess.Popen(
            [sys.executable, "-m", module, str(theirs.fileno())], pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=stderr, cwd="/", start_new_session=True))
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return proc, ours


def end(proc: subprocess.Popen[bytes] | None, sock: socket.socket | None, grace: float = 0.0) -> None:
    """Close our end of a helper's socket (it exits when that closes), give it `grace` seconds to, kill it if it has
    not, and reap it."""
    if sock is not None:
        sock.close()
    if proc is None:
        return
    if grace > 0:
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def _serve() -> None:
    while True:
        fn, box, done = _calls.get()
        try:
            box["result"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the caller
            box["error"] = e
        finally:
            done.set()


__all__ = ["call", "end", "spawn"]
