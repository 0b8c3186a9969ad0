"""OCI hooks: each one executed with the container's state on its stdin, in the order the spec gives —

    prestart, createRuntime   by `create`, in the runtime's namespaces, once the container's namespaces and
                              mounts exist and before pivot_root
    createContainer           by the container's init, in its namespaces, before pivot_root
    startContainer            by the init, after `start`, just before the user's process is executed
    poststart                 by `start`, after the process was started
    poststop                  by `delete`

A hook that exits non-zero or outlives its timeout fails prestart/createRuntime/createContainer/
startContainer (the container is then torn down); poststart and poststop failures are logged and the
lifecycle goes on (runtime-spec config.md, "POSIX-platform Hooks").
"""

from __future__ import annotations

import json
import os
import select
import signal
import time

from ..errors import OSFailure

TYPE_CHECKING = False  # typing is not imported at run time: every engine call pays its imports
if TYPE_CHECKING:
    from typing import Any


class HookError(OSFailure):
    """A hook could not be run, or failed: one line."""


def run_hooks(kind: str, hooks: list[dict[str, Any]], state: dict[str, Any]) -> None:
    data = json.dumps(state).encode()
    for i, h in enumerate(hooks):
        run_hook(h, data, f"{kind} hook #{i}")


def run_hook(hook: dict[str, Any], data: bytes, label: str) -> None:
    path = hook["path"]
    args = hook.get("args") or [path]
    env = dict(e.split("=", 1) for e in hook.get("env") or [] if "=" in e)
    timeout = hook.get("timeout")
    if timeout is not None and int(timeout) <= 0:
        raise HookError(0, f"{label}: timeout must be greater than zero")
    r, w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the hook's side
        try:
            os.dup2(r, 0)
            os.dup2(err_w, 2)
            os.closerange(3, 1 << 16)
            os.execve(path, args, env)
        except OSError as e:
            os.write(2, f"{e.strerror}".encode())
        os._exit(127)
    os.close(r)
    os.close(err_w)
    try:
        try:
            os.write(w, data)  # a state document is far below the pipe's buffer
        except BrokenPipeError:
            pass  # the hook need not read it
        os.close(w)
        status = _wait(pid, float(timeout) if timeout else None)
        err = b""
        while select.select([err_r], [], [], 0)[0]:
            chunk = os.read(err_r, 4096)
            if not chunk or len(err) > 4096:
                break
            err += chunk
    finally:
        os.close(err_r)
    if status is None:
        raise HookError(0, f"{label} ({path}) did not finish within {timeout} s: killed")
    if os.WIFSIGNALED(status):
        raise HookError(0, f"{label} ({path}) killed by signal {os.WTERMSIG(status)}")
    code = os.WEXITSTATUS(status)
    if code:
        detail = err.decode(errors="replace").strip()
        raise HookError(0, f"{label} ({path}) exited with status {code}" + (f": {detail}" if detail else ""))


def _wait(pid: int, timeout: float | None) -> int | None:
    if timeout is None:
        return os.waitpid(pid, 0)[1]
    fd = os.pidfd_open(pid)
    try:
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return None
            select.select([fd], [], [], left)
    finally:
        os.close(fd)


__all__ = ["HookError", "run_hook", "run_hooks"]
