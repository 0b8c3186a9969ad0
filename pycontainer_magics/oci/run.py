"""`run ID`: create, start and (unless --detach) wait for the container as a subreaper — its init is then
our child once the intermediate process has exited — forwarding signals, then delete it and exit with
its status, as `runc run` does."""

from __future__ import annotations

import os

from ..linux import libc
from .forward import Forwarder
from .lifecycle import CreateOptions, create, delete, start

PR_SET_CHILD_SUBREAPER = 36


def run(root: str, cid: str, opts: CreateOptions, detach: bool = False, keep: bool = False) -> int:
    forwarder = None
    if not detach:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        forwarder = Forwarder()  # before the process exists: what comes meanwhile is held for it
    pid = create(root, cid, opts)
    try:
        start(root, cid)
    except BaseException:
        delete(root, cid, force=True)
        raise
    if forwarder is None:
        return 0
    forwarder.to(pid)
    code = 255
    while True:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if got == pid:
            code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
            break
    if not keep:
        delete(root, cid, force=True)
    return code


__all__ = ["run"]
