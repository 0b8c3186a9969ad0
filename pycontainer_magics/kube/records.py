"""The records of the kube plays this host's processes have up (one file each under the run directory), and the prune
of those whose process is gone. Apart from play.py, which writes them: loading the extension prunes them, and must not
import the play machinery (its HTTP probes alone bring http.client, ssl and email into the kernel's memory, which
every Python cell's fork copies the page tables of)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil


def records_dir() -> str:
    """Where the plays' records are (the run directory: they do not outlive a reboot)."""
    from .. import paths

    return os.path.join(paths.run_dir(), "kube")


def unrecord(name: str) -> None:
    """Remove a play's record (gone already is fine)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(records_dir(), f"{name}.json"))


def prune_records() -> list[str]:
    """Records and files of plays whose process is gone (their pods and networks go by their own prunes)."""
    from ..workloads import pods

    removed = []
    try:
        names = [f[:-5] for f in os.listdir(records_dir()) if f.endswith(".json")]
    except FileNotFoundError:
        return []
    for n in names:
        try:
            with open(os.path.join(records_dir(), f"{n}.json")) as f:
                tok = json.load(f).get("owner_token")
        except (OSError, ValueError):
            tok = None
        from ..linux.proc import token_alive

        if tok and token_alive(tok):
            continue
        unrecord(n)
        shutil.rmtree(os.path.join(records_dir(), n), ignore_errors=True)
        removed.append(f"kube play {n}")
    if removed:
        pods.prune()
        from .. import network as net

        with contextlib.suppress(Exception):
            net.prune()
    return removed
