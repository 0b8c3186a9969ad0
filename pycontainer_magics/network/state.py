"""Where the network layer keeps its records, and a lock shared by every process of the host.

Persistent records (networks, hosts files) live under the state dir (`PYCONTAINER_STATE_DIR`, else
/var/lib/pycontainer_magics as root); named network namespaces under the run dir
(`PYCONTAINER_RUN_DIR`, else /run/pycontainer_magics), since they do not survive a reboot anyway.
The same rules as runtime/state.py, repeated here because network/ sits below runtime/.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ..linux import files
from ..linux.files import FileLock
from ..paths import run_dir, state_dir


def networks_dir() -> str:
    return os.path.join(state_dir(), "networks")


def hosts_dir() -> str:
    return os.path.join(state_dir(), "hosts")


def netns_dir() -> str:
    return os.path.join(run_dir(), "netns")


def netns_meta_dir() -> str:
    return os.path.join(run_dir(), "netns-meta")


# One writer of the network records at a time, across threads and processes (two kernels on one host
# never hand out the same address or bridge).
_lock = FileLock(lambda: os.path.join(state_dir(), "network.lock"), make_dir=0o755)


def locked() -> FileLock:
    """`with locked():` the exclusive, re-entrant lock over the network state."""
    return _lock


def write_json(path: str, data: Any) -> None:
    """Replace a record at once (private, keys sorted)."""
    files.write_json(path, data, mode=0o600, sort_keys=True, make_dirs=0o755)


def read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


