"""Kubernetes in the notebook: `%%kube` plays a cell of Pod/Deployment YAML here, `%container kube NAME` and
`%%compose --to-kube` export as validated YAML.

    %%kube [--name N] [--network NET]      run the cell's Pods and Deployments (stored as `_kube_play`)
    %%kube validate                        a green/red line per document and Kubernetes version
    %kube ps [NAME] | logs [NAME] | events [NAME] | ls | down [NAME] [-v] [-t SECONDS]
    %container kube NAME                   a container or pod of this kernel as YAML (stored as `_kube`)

A thin skin over `kube/`; errors are one line and fail the cell.
"""

from __future__ import annotations

import argparse
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class

from ._parser import UsageParser, echo, split_line


def _parser() -> argparse.ArgumentParser:
    p = UsageParser(prog="%kube", add_help=False)
    p.add_argument("--name")
    p.add_argument("--network")
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("cmd", nargs="?", choices=("play", "validate", "ps", "logs", "events", "ls", "down"),
                   default="play")
    p.add_argument("target", nargs="?")
    p.add_argument("-v", "--volumes", action="store_true")
    p.add_argument("-t", "--down-timeout", type=float)
    return p


def export_view(export: Any, title: str) -> Any:
    """The YAML of an Export with a line per document and version (validated offline) and its warnings."""
    from ..display.kube_views import KubeYamlView
    from ..kube.validate import available, validate_documents

    checks = validate_documents(export.dicts()) if available() else []
    view = KubeYamlView(export.yaml(), checks, export.warnings, title)
    if checks and not view.ok:  # generated YAML must validate: a red line here is a bug, fail the cell
        from IPython.display import display
        display(view)
        raise UsageError(f"{title}: {sum(not c.ok for c in checks)} invalid document check(s): "
                         f"{next(str(c) for c in checks if not c.ok)}")
    return view


def container_kube(self: Any, rest: str) -> Any:  # a ContainerMagics method in all but place
    """`%container kube NAME`: a detached container or a pod of this kernel as Kubernetes YAML."""
    from ..kube import generate
    from ..kube.errors import KubeError
    from ..workloads import pods
    from ..workloads.containers import DetachedContainerError, containers

    argv = split_line(rest)
    if len(argv) != 1:
        raise UsageError("usage: %container kube NAME (a container or a pod of this kernel)")
    name = argv[0]
    try:
        try:
            c = containers.get(name)
            export = generate.from_spec(c.spec, c.name or name)
        except DetachedContainerError:
            try:
                pod = pods.get(name)
            except pods.PodError:
                raise UsageError(f"no container or pod named {name!r} (see %container ps, %container pod ls)") \
                    from None
            members = [(c.name.removeprefix(f"{name}-") if c.name else c.id[:12], c.spec) for c in containers.list()
                       if c.spec.pod == name]
            export = generate.from_pod(pod, members)
    except KubeError as e:
        raise UsageError(str(e)) from None
    self.shell.user_ns["_kube"] = export
    return export_view(export, f"Kubernetes YAML of {export.source}")


def compose_to_kube(magics: Any, cell: str | None, project: str | None) -> Any:
    """`%%compose --to-kube`: the cell's compose project as Kubernetes YAML."""
    from ..kube import generate
    from ..workloads.compose import load

    if not cell or not cell.strip():
        raise UsageError("%%compose --to-kube needs the compose file as the cell body (services: ...)")
    export = generate.from_compose(load(cell, project=project))
    magics.shell.user_ns["_kube"] = export
    return export_view(export, f"Kubernetes YAML of {export.source}")


@magics_class
class KubeMagics(Magics):
    """The `%%kube` magic."""

    @line_cell_magic
    def kube(self, line: str, cell: str | None = None) -> Any:
        """Run Kubernetes Pod and Deployment YAML here, as `podman kube play` does.

        Usage::

            %%kube [--name N] [--network NET]   play the cell: each Pod (or Deployment replica:
                                                <name>-pod, or <name>-0..N-1; or a Job's pod, run to
                                                completion with retries) becomes a pod here whose
                                                containers share localhost, IPC and the host name; a
                                                Service is an address on the play's network forwarding
                                                its ports to the ready pods it selects; probes run;
                                                ConfigMaps, emptyDir, hostPath and PVCs are mounted
            %%kube validate                     check the cell offline: a line per document against
                                                Kubernetes 1.30 and the newest known (fails if invalid)
            %kube ps [NAME]                     one row per container (a DataFrame)
            %kube logs [NAME]                   `pod/container | line`, in time order
            %kube events [NAME]                 probe failures and the restarts they caused (a DataFrame)
            %kube ls                            the plays of this kernel
            %kube down [NAME] [-v] [-t SECONDS] remove containers, pods, network (-v: volumes it made)

        Bad YAML (unknown kind, missing image, `memory: 12QB`, two containers with one name) is one line
        with the document and the field path, and nothing is left behind. `%%kube` stores the play as
        `_kube_play` (`.ps()`, `.logs()`, `.events`, `.job(name)`, `.service(name)`, `.container(pod, name)`,
        `.down()`).
        """
        ns = _parser().parse_args(split_line(line))
        from ..kube.errors import KubeError

        try:
            return getattr(self, f"_{ns.cmd}")(ns, cell)
        except KubeError as e:
            raise UsageError(str(e)) from None

    def _play(self, ns: argparse.Namespace, cell: str | None) -> Any:
        from ..display.kube_views import kube_ps_frame
        from ..kube import play as K

        if not cell or not cell.strip():
            raise UsageError("%%kube needs Kubernetes YAML as the cell body (a Pod or a Deployment)")
        p = K.play(cell, name=ns.name or ns.target, network=ns.network, on_output=echo, timeout=ns.timeout)
        for n in p.notes:
            echo("stderr", f"note: {n}\n")
        assert self.shell is not None
        self.shell.user_ns["_kube_play"] = p
        return kube_ps_frame(p.ps())

    def _validate(self, ns: argparse.Namespace, cell: str | None) -> Any:
        from ..display.kube_views import KubeYamlView
        from ..kube.validate import load_documents, validate_documents

        if not cell or not cell.strip():
            raise UsageError("%%kube validate needs Kubernetes YAML as the cell body")
        checks = validate_documents(load_documents(cell, source="the cell"))
        view = KubeYamlView(cell, checks, show_yaml=False)
        if not view.ok:
            from IPython.display import display
            display(view)
            bad = [c for c in checks if not c.ok]
            raise UsageError(f"{len(bad)} invalid document check(s): {bad[0]}")
        return view

    def _one(self, name: str | None) -> Any:
        from ..kube import play as K
        from ..kube.errors import KubeError

        if name:
            return K.get(name)
        plays = K.list_plays()
        if len(plays) != 1:
            raise KubeError(f"{len(plays)} plays are up ({', '.join(p.name for p in plays) or 'none'}): name one")
        return plays[0]

    def _ps(self, ns: argparse.Namespace, cell: str | None) -> Any:
        from ..display.kube_views import kube_ps_frame

        return kube_ps_frame(self._one(ns.target).ps())

    def _events(self, ns: argparse.Namespace, cell: str | None) -> Any:
        from ..display.kube_views import kube_events_frame

        return kube_events_frame(list(self._one(ns.target).events))

    def _logs(self, ns: argparse.Namespace, cell: str | None) -> None:
        echo("stdout", self._one(ns.target).logs())

    def _ls(self, ns: argparse.Namespace, cell: str | None) -> Any:
        import pandas as pd

        from ..kube import play as K

        return pd.DataFrame([{"name": p.name, "pods": ", ".join(p.pods), "network": p.network or "none"}
                             for p in K.list_plays()], columns=["name", "pods", "network"])

    def _down(self, ns: argparse.Namespace, cell: str | None) -> None:
        from ..kube import play as K

        names = [ns.target] if ns.target else [p.name for p in K.list_plays()]
        if not names:
            raise UsageError("no kube play is up in this kernel")
        for n in names:
            for line in K.down(n, volumes=ns.volumes, timeout=ns.down_timeout):
                print(" " + line)


__all__ = ["KubeMagics", "compose_to_kube", "container_kube", "export_view"]
