"""`pycontainer kube`: Kubernetes YAML from a terminal, as `podman kube` does.

    pycontainer kube generate [run options] -- CMD     a container as a Pod (the options of `run`)
    pycontainer kube generate --compose FILE           a compose project: Deployments, Services, PVCs...
    pycontainer kube validate FILE...                  every document against Kubernetes 1.30 and the newest
    pycontainer kube play FILE [--name N]              run its Pods and Deployments here until Ctrl-C
    pycontainer kube down NAME|FILE [--volumes]        end a play (this process's or another's)

YAML goes to stdout, warnings (what has no Kubernetes equivalent) and progress to stderr. validate exits 1
when a document is invalid; an error is one line with the document and the field path (exit 125).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from typing import Any

from ..magics import args as _args
from .common import EXIT_INTERRUPTED, fail

COMMANDS = ("kube",)


def add_parsers(sub: Any) -> None:
    kube = sub.add_parser("kube", help="Kubernetes YAML: generate, validate, play, down",
                          description="Export containers and compose projects as Kubernetes YAML, validate it "
                                      "offline, and run Pod/Deployment YAML here.")
    ks = kube.add_subparsers(dest="kube_command", metavar="COMMAND", required=True)
    gen = ks.add_parser("generate", help="a container (run options -- CMD) or a compose project as YAML",
                        description="Print Kubernetes YAML for a container given with the options of `pycontainer "
                                    "run`, or for a compose project (--compose FILE).")
    gen.add_argument("--compose", metavar="FILE", help="a compose file: its services become Kubernetes objects")
    gen.add_argument("--project-name", metavar="NAME", help="the compose project's name (default: its directory's)")
    _args.add_arguments(gen, "cli")
    val = ks.add_parser("validate", help="check Kubernetes YAML offline (kubernetes-validate, strict)",
                        description="Validate every document of each FILE (- for stdin) against the Kubernetes "
                                    "OpenAPI schema of 1.30 and of the newest version known, quantities and "
                                    "container names included.")
    val.add_argument("files", nargs="+", metavar="FILE")
    val.add_argument("-k", "--kubernetes-version", action="append", metavar="X.Y",
                     help="check against this version instead (repeatable)")
    play = ks.add_parser("play", help="run the Pods and Deployments of a YAML file here",
                         description="Run FILE's Pods and Deployments with this project's runtime and follow their "
                                     "output; Ctrl-C (or `pycontainer kube down NAME`) removes them.")
    play.add_argument("file", metavar="FILE")
    play.add_argument("--name", help="the play's name (default: the file's name)")
    play.add_argument("--network", help="put the pods on this existing network (default: one of the play's own "
                      "when it has Services, several pods or host ports)")
    down = ks.add_parser("down", help="remove what `kube play` made",
                         description="Stop and remove a play's containers, pods, network and files.")
    down.add_argument("target", metavar="NAME|FILE")
    down.add_argument("--volumes", action="store_true", help="also remove the volumes its claims made")
    down.add_argument("-t", "--timeout", type=float, help="seconds between SIGTERM and SIGKILL (default: the "
                      "pod's terminationGracePeriodSeconds)")


def main(ns: argparse.Namespace) -> int:
    from ..kube.errors import KubeError
    from ..runtime.spec import SpecError

    try:
        return int({"generate": _generate, "validate": _validate, "play": _play, "down": _down}[ns.kube_command](ns))
    except (KubeError, SpecError, OSError) as e:
        fail(str(e))


def _generate(ns: argparse.Namespace) -> int:
    from ..kube import generate

    command = _args.command_of(ns)
    if ns.compose:
        if command:
            fail("give --compose FILE or a command, not both")
        from ..workloads.compose.model import ComposeError, load

        text = _read(ns.compose)
        try:
            cf = load(text, project=ns.project_name, workdir=os.path.dirname(os.path.abspath(ns.compose)))
        except ComposeError as e:
            fail(str(e))
        export = generate.from_compose(cf)
    else:
        if not command:
            fail("nothing to export: give a command (`pycontainer kube generate --memory 64m -- sh -c 'echo hi'`) "
                 "or --compose FILE")
        from ..runtime.parse import build_spec

        export = generate.from_spec(build_spec(command=command, **_args.spec_options(ns)))
    sys.stdout.write(export.yaml())
    for w in export.warnings:
        sys.stderr.write(f"pycontainer: warning: {w}\n")
    return 0


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        fail(f"cannot read {path}: {e.strerror or e}")
    except UnicodeDecodeError:
        fail(f"{path} is not a text file (Kubernetes YAML)")


def _validate(ns: argparse.Namespace) -> int:
    from ..kube.validate import load_documents, validate_documents

    bad = 0
    for path in ns.files:
        docs = load_documents(_read(path), source=path)
        for c in validate_documents(docs, tuple(ns.kubernetes_version) if ns.kubernetes_version else None):
            sys.stdout.write(f"{path}: {c}\n")
            bad += not c.ok
    return 1 if bad else 0


def _play_name(file: str) -> str:
    from ..kube.generate import dns_label

    return dns_label(os.path.splitext(os.path.basename(file))[0], "kube")


def _play(ns: argparse.Namespace) -> int:
    from ..kube import play as K

    name = ns.name or _play_name(ns.file)
    p = K.play(_read(ns.file), name=name, network=ns.network, on_output=_progress)
    for n in p.notes:
        sys.stderr.write(f"pycontainer: note: {n}\n")
    ended = {"signal": 0, "force": 0}

    def stop(signum: int, _frame: Any) -> None:
        # A flag the loops below read (a KeyboardInterrupt raised inside the play's locks and waits could leave
        # one held, and the down that follows would hang on it). A Ctrl-C once stopping: no more grace.
        if ended["signal"] and signum == signal.SIGINT:
            ended["force"] = 1
        ended["signal"] = ended["signal"] or signum

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    seen: dict[int, int] = {}  # id(container) -> log lines shown
    while not ended["signal"]:
        _follow(p, seen)
        if p.wait(timeout=0.2):
            _follow(p, seen)
            break
    timeout = K.requested_timeout(name) if ended["signal"] == signal.SIGTERM else None
    if ended["signal"] == signal.SIGINT:  # the grace period can be long (30 s by default): say what happens
        sys.stderr.write(f" Play {name}  Stopping (each container's grace period; Ctrl-C again: at once)\n")
    lines: list[str] = []
    downer = threading.Thread(target=lambda: lines.extend(p.down(timeout=timeout)), name="kube-down", daemon=True)
    downer.start()
    killed = False
    while downer.is_alive():
        downer.join(0.2)
        if ended["force"] and not killed:  # a second Ctrl-C, as docker compose's: every container killed now
            killed = True
            p.kill()
    sys.stderr.write("".join(f" {line}\n" for line in lines))
    if ended["signal"]:
        return EXIT_INTERRUPTED if ended["signal"] == signal.SIGINT else 0
    failed = [s for s in p.ps() if s.exit_code not in (0, None)]
    return 1 if failed else 0


def _progress(_stream: str, text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def _follow(p: Any, seen: dict[int, int]) -> None:
    """Print the lines the play's containers wrote since last time, `pod/container | line`."""
    for pr in p.pods.values():
        groups = [(cp.name, [c for c in pr.init_runs if c.spec is cp.spec]) for cp in pr.plan.init]
        groups += [(cr.plan.name, list(cr.containers)) for cr in pr.containers]
        for cname, cs in groups:
            for c in cs:
                log = list(c.log)
                for ln in log[seen.get(id(c), 0):]:
                    out = sys.stderr if ln.stream == "stderr" else sys.stdout
                    for text in ln.text.splitlines():
                        out.write(f"{pr.plan.name}/{cname} | {text}\n")
                seen[id(c)] = len(log)
    sys.stdout.flush()
    time.sleep(0)


def _down(ns: argparse.Namespace) -> int:
    from ..kube import play as K

    name = _play_name(ns.target) if os.path.isfile(ns.target) else ns.target
    for line in K.down(name, volumes=ns.volumes, timeout=ns.timeout):
        sys.stderr.write(f" {line}\n")
    return 0
