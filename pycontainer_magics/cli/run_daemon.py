"""`pycontainer run` when `pycontainer serve` runs: the command line read without argparse, sent as Docker's create
body over the daemon's unix socket, the container's output and exit code relayed. Nothing of the runtime,
images or network layers is imported: the daemon builds the spec (the same build_spec as in-process) and its
warm launcher starts the container from what it prepared ahead.

Only the common options are read here (limits, name, network, image, env, workdir, user, hostname, volumes,
read-only); anything else, a value this reader does not understand, a request the daemon refuses, or no
daemon at all: None, and the full command line (cli/run.py) takes over, with its own messages and the
in-process runtime when no daemon answers.
"""

from __future__ import annotations

import os
import sys
import time

from ..sizes import size_bytes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# flag -> (key, repeatable); flags that take no value are in _SWITCHES
_VALUED = {
    "-m": ("memory", False), "--memory": ("memory", False), "--memory-swap": ("memory_swap", False),
    "--cpus": ("cpus", False), "--pids-limit": ("pids_limit", False), "--pids": ("pids_limit", False),
    "--name": ("name", False), "--network": ("network", False), "--net": ("network", False),
    "--image": ("image", False), "-e": ("env", True), "--env": ("env", True), "-w": ("workdir", False),
    "--workdir": ("workdir", False), "-u": ("user", False), "--user": ("user", False),
    "--hostname": ("hostname", False), "-v": ("volume", True), "--volume": ("volume", True),
}
_SWITCHES = {"-q": "quiet", "--quiet": "quiet", "--json": "json", "--read-only": "read_only"}


def parse(argv: list[str]) -> tuple[dict[str, Any], list[str], str | None] | None:
    """(options, command, image) from `run`'s arguments, or None for anything not read here."""
    opts: dict[str, Any] = {}
    i = 0
    rest: list[str] = []
    while i < len(argv):
        a = argv[i]
        if a == "--" or not a.startswith("-") or a == "-":
            rest = argv[i:]
            break
        flag, eq, value = a.partition("=") if a.startswith("--") else (a[:2], "", a[2:])
        if flag in _SWITCHES and not eq and not value:
            opts[_SWITCHES[flag]] = True
            i += 1
            continue
        if flag not in _VALUED:
            return None
        if not eq and not value:
            if i + 1 >= len(argv):
                return None
            value = argv[i + 1]
            i += 1
        i += 1
        key, many = _VALUED[flag]
        if many:
            opts.setdefault(key, []).append(value)
        else:
            opts[key] = value
    image = None
    if rest and rest[0] != "--" and "--" in rest:
        before, command = rest[:rest.index("--")], rest[rest.index("--") + 1:]
        if len(before) != 1:
            return None
        image = before[0]
    else:
        command = rest[1:] if rest[:1] == ["--"] else rest
    if not command and image is None:
        return None
    return opts, command, image


def create_body(opts: dict[str, Any], command: list[str], image: str | None) -> dict[str, Any] | None:
    """Docker's create body for these options (as engine/run_remote.create_body makes it from a spec), or
    None when a value needs the full parser."""
    if image is not None and opts.get("image") not in (None, image):
        return None
    host: dict[str, Any] = {"AutoRemove": True, "NetworkMode": opts.get("network") or "none"}
    for key, field in (("memory", "Memory"), ("memory_swap", "MemorySwap")):
        if key in opts:
            if key == "memory_swap" and opts[key].strip() == "-1":
                host[field] = -1
                continue
            size = size_bytes(opts[key])
            if size is None or size <= 0:
                return None
            host[field] = size
    if "cpus" in opts:
        try:
            cpus = float(opts["cpus"])
        except ValueError:
            return None
        if not 0 < cpus < float("inf"):
            return None
        host["NanoCpus"] = int(cpus * 1e9)
    if "pids_limit" in opts:
        if not opts["pids_limit"].lstrip("-").isdigit():
            return None
        host["PidsLimit"] = int(opts["pids_limit"])
    if opts.get("read_only"):
        host["ReadonlyRootfs"] = True
    binds = []
    for v in opts.get("volume", []):
        src = v.split(":", 1)[0]
        if v.count(":") not in (1, 2) or (src.startswith(".") or "/" in src and not src.startswith("/")):
            return None  # a relative path: the full parser says what it resolves to, or why not
        binds.append(v)
    if binds:
        host["Binds"] = binds
    env = []
    for e in opts.get("env", []):
        if "=" not in e:
            if e not in os.environ:
                continue
            e = f"{e}={os.environ[e]}"
        env.append(e)
    body: dict[str, Any] = {"Image": image or opts.get("image") or "host", "Cmd": command or None,
                            "Env": env or None, "WorkingDir": opts.get("workdir") or "",
                            "User": opts.get("user") or "", "Hostname": opts.get("hostname") or "",
                            "AttachStdout": True, "AttachStderr": True, "HostConfig": host}
    return body


def main(argv: list[str]) -> int | None:
    """Run through the daemon; the exit code, or None to let the full command line do it."""
    if os.environ.get("PYCONTAINER_NO_DAEMON"):
        return None
    parsed = parse(argv)
    if parsed is None:
        return None
    opts, command, image = parsed
    body = create_body(opts, command, image)
    if body is None:
        return None
    from ..engine.client import Client, EngineError, default_socket
    from ..engine.run_remote import create, run_created

    path = default_socket()
    if not os.path.exists(path):
        return None
    t0 = time.monotonic()
    c = Client(path)
    try:
        cid = create(c, body, opts.get("name"))
    except (EngineError, OSError):
        return None  # no daemon answering, or a request it refuses: the full command line says why in its words
    out, err = sys.stdout.buffer, sys.stderr.buffer

    def relay(stream: str, data: bytes) -> None:
        f = err if stream == "stderr" else out
        f.write(data)
        f.flush()

    try:
        code, seconds = run_created(c, cid, relay, t0)
    except (EngineError, OSError) as e:  # created: never run twice, say what went wrong
        sys.stderr.write(f"pycontainer: {e}\n")
        return 125
    if opts.get("json"):
        import json
        sys.stderr.write(json.dumps({"exit_code": code, "duration_s": round(seconds, 4),
                                     "daemon": "unix://" + path}) + "\n")
    elif not opts.get("quiet"):
        sys.stderr.write(f"exit {code}, {seconds * 1000:.1f} ms (daemon)\n")
    return code
