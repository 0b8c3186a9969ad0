"""Networks do not reach each other, as Docker's do not: with forwarding on, the host routes between two
bridges of ours, so a container on one network could reach one on another by address. Docker's
DOCKER-ISOLATION chains drop that; here one chain of our own, PCM-ISOLATION, jumped to first from the
filter table's FORWARD chain, holds two rules per network: traffic staying on its bridge returns (to the
host's own rules), traffic from its bridge to another bridge of ours is dropped. Every rule carries a
comment naming its network, so only ours are ever listed or removed; the chain and the jump go with the
last network.

Like nat.py this calls `iptables` (pyroute2 wraps no netfilter API). Without iptables networks still work,
unisolated, as they would on a host whose forwarding is off anyway."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator

from ..linux.files import FileLock

CHAIN = "PCM-ISOLATION"
TAG = "pycontainer_magics"

# The chain is the host's, shared by every state directory (each has its own state lock): without a lock of
# the host's, one process could drop the chain as empty between another's check for it and its -A ("No
# chain/target/match by that name"), or remove the jump to a chain that has just gained a rule.
_HOST_LOCK = FileLock(lambda: os.path.join("/run" if os.path.isdir("/run") else "/tmp",
                                           "pycontainer_magics-isolation.lock"))


@contextlib.contextmanager
def _host_locked() -> Iterator[None]:
    if os.geteuid() != 0:  # iptables is root's; nothing to serialise
        yield
        return
    with _HOST_LOCK:
        yield


def _iptables(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["iptables", "-w", "-t", "filter", *args], capture_output=True, text=True)


def available() -> bool:
    return shutil.which("iptables") is not None


def _rules(bridge: str, bridge_prefix: str, network: str) -> list[list[str]]:
    tag = ["-m", "comment", "--comment", f"{TAG}:{network}"]
    return [[CHAIN, "-i", bridge, "-o", bridge, "-j", "RETURN", *tag],
            [CHAIN, "-i", bridge, "-o", bridge_prefix + "+", "-j", "DROP", *tag]]


def _jump() -> list[str]:
    return ["FORWARD", "-j", CHAIN, "-m", "comment", "--comment", TAG]


def add(bridge: str, bridge_prefix: str, network: str) -> None:
    """Isolate `network` (whose bridge is `bridge`) from every other bridge named `bridge_prefix`*."""
    if not available():
        return
    with _host_locked():
        if _iptables(["-S", CHAIN]).returncode != 0:
            _iptables(["-N", CHAIN])
        if _iptables(["-C", *_jump()]).returncode != 0:
            _iptables(["-I", *_jump()])  # first, so the host's own ACCEPT rules cannot let it through
        for rule in _rules(bridge, bridge_prefix, network):
            if _iptables(["-C", *rule]).returncode != 0:
                p = _iptables(["-A", *rule])
                if p.returncode != 0:
                    raise OSError(f"could not add the isolation rule of network {network}: {p.stderr.strip()}")


def remove(bridge: str, bridge_prefix: str, network: str) -> None:
    if not available():
        return
    # Each rule is there once (add checks with -C first): one -D each, as a failing -D costs as much as
    # a successful one (the nft backend lists the chain for both).
    with _host_locked():
        for rule in _rules(bridge, bridge_prefix, network):
            _iptables(["-D", *rule])
        _drop_chain_if_empty()


def _drop_chain_if_empty() -> None:
    listing = _iptables(["-S", CHAIN])
    if listing.returncode == 0 and listing.stdout.strip() == f"-N {CHAIN}":
        _iptables(["-D", *_jump()])
        _iptables(["-X", CHAIN])


def _network_of(line: str) -> str | None:
    m = re.search(r'--comment "?' + TAG + r':([^"\s]+)', line)
    return m.group(1) if m else None


def rules() -> list[str]:
    """Our isolation rules as `iptables -S` prints them."""
    if not available():
        return []
    return [line for line in _iptables(["-S", CHAIN]).stdout.splitlines() if _network_of(line)]


def prune(host_links: set[str]) -> list[str]:
    """Delete the rules whose bridge is gone from the host (its network was removed by a process that
    died first); returns their networks. Judged by the bridge, not by network records: the rules are
    the host's, shared by every state directory, while each directory knows only its own networks."""
    gone = set()
    with _host_locked():
        for line in rules():
            words = shlex.split(line)
            bridge = words[words.index("-i") + 1] if "-i" in words else None
            if bridge is not None and bridge not in host_links:
                _iptables(["-D", *words[1:]])
                gone.add(_network_of(line) or bridge)
        if available():
            _drop_chain_if_empty()
    return sorted(gone)


__all__ = ["CHAIN", "add", "available", "prune", "remove", "rules"]
