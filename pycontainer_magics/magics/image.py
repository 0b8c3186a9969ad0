"""`%image`: the image store from a notebook, in Docker's words.

    %image ls                     %image pull REF            %image push REF [DEST]
    %image history REF            %image inspect REF         %image files REF
    %image tag SRC DST            %image rm [-f] REF...      %image prune [-a]
    %image du                     %image import PATH [--tag REF]   (an OCI layout dir or a docker-archive tar)
    %image export REF DIR         (an OCI image layout)
    %image build DIR [-t REF] [-f FILE] [--build-arg K=V] [--target STAGE]
    %%dockerfile [--tag REF] [--context DIR] [--build-arg K=V] [--target STAGE]  (the cell is the Dockerfile)

A thin skin over `pycontainer_magics.images`: parse, call, show a DataFrame; errors as one UsageError line.
"""

from __future__ import annotations

import argparse
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from ._parser import UsageParser, echo, split_line


def _parser() -> argparse.ArgumentParser:
    p = UsageParser(prog="%image", add_help=False)
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=UsageParser)
    sub.add_parser("ls", aliases=["images"], add_help=False)
    for name in ("pull", "history", "inspect", "files"):
        sub.add_parser(name, add_help=False).add_argument("ref")
    push = sub.add_parser("push", add_help=False)
    push.add_argument("ref")
    push.add_argument("dest", nargs="?")
    tag = sub.add_parser("tag", add_help=False)
    tag.add_argument("src")
    tag.add_argument("dst")
    rm = sub.add_parser("rm", aliases=["rmi"], add_help=False)
    rm.add_argument("-f", "--force", action="store_true")
    rm.add_argument("refs", nargs="+")
    prune = sub.add_parser("prune", add_help=False)
    prune.add_argument("-a", "--all", action="store_true")
    sub.add_parser("du", add_help=False)
    imp = sub.add_parser("import", add_help=False)
    imp.add_argument("path")
    imp.add_argument("--tag")
    exp = sub.add_parser("export", add_help=False)
    exp.add_argument("ref")
    exp.add_argument("dest")
    b = sub.add_parser("build", add_help=False)
    b.add_argument("context")
    b.add_argument("-t", "--tag")
    b.add_argument("-f", "--file")
    b.add_argument("--build-arg", action="append", default=[])
    b.add_argument("--target")
    return p


def _build_args(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise UsageError(f"invalid --build-arg {item!r}: expected NAME=VALUE")
        out[k] = v
    return out


def _run_build(text: str, tag: str | None, context: str, build_args: dict[str, str],
               target: str | None = None) -> Any:
    from .. import images as im
    from ..display import image_views as views
    from ..workloads.build import build

    try:
        result = build(text, tag=tag, context=context, build_args=build_args, target=target, on_output=echo)
    except (im.ImageError, OSError) as e:
        raise UsageError(str(e)) from None
    return views.build_frame(result.steps)


@magics_class
class ImageMagics(Magics):
    @line_magic
    def image(self, line: str) -> Any:
        """The image store, in Docker's words.

            %image ls                     %image pull REF            %image push REF [DEST]
            %image history REF            %image inspect REF         %image files REF
            %image tag SRC DST            %image rm [-f] REF...      %image prune [-a]
            %image du                     %image import PATH [--tag REF]   (an OCI layout dir or a docker-archive)
            %image export REF DIR         (an OCI image layout)
            %image build DIR [-t REF] [-f FILE] [--build-arg K=V] [--target STAGE]

        Run one with `%%container --image REF -- CMD` (its ENV, CMD, WORKDIR and USER apply); build one from a
        cell with `%%dockerfile --tag REF` (see `%%dockerfile?`)."""
        from .. import images as im
        from ..display import image_views as views
        from ..display.progress import LayerProgress

        argv = split_line(line)
        if not argv:
            raise UsageError("usage: %image ls|pull|push|tag|rm|prune|history|inspect|files|du|import|export ...")
        ns = _parser().parse_args(argv)
        store = im.Store()
        try:
            if ns.cmd in ("ls", "images"):
                return views.images_frame(store.images())
            if ns.cmd == "pull":
                img = im.pull(store, ns.ref, progress=LayerProgress())
                print(f"Digest: {img.manifest_digest}\nStatus: {ns.ref} pulled")
                return None
            if ns.cmd == "push":
                digest = im.push(store, ns.ref, ns.dest, progress=LayerProgress())
                print(f"{ns.dest or ns.ref}: digest: {digest}")
                return None
            if ns.cmd == "tag":
                store.tag(ns.src, ns.dst)
                return None
            if ns.cmd in ("rm", "rmi"):
                for ref in ns.refs:
                    report = store.rm(ref, force=ns.force)
                    print(f"Untagged/deleted: {ref} ({len(report.layers)} layer(s), {report.freed} bytes freed)")
                return None
            if ns.cmd == "prune":
                report = store.prune(all=ns.all)
                print(f"Deleted {len(report.images)} image(s), {len(report.layers)} layer(s); "
                      f"reclaimed {report.freed} bytes")
                return None
            if ns.cmd == "history":
                return views.history_frame(store.history(ns.ref))
            if ns.cmd == "inspect":
                return store.inspect(ns.ref)
            if ns.cmd == "files":
                return views.files_frame(store.file_table(ns.ref))
            if ns.cmd == "du":
                return views.du_frame(store.du())
            if ns.cmd == "import":
                import os
                if os.path.isdir(ns.path):
                    imgs = im.import_layout(store, ns.path, tag=ns.tag)
                else:
                    imgs = im.import_docker_archive(store, ns.path)
                    for img in imgs[:1]:
                        if ns.tag:
                            store.tag(img.id, ns.tag)
                return views.images_frame(imgs)
            if ns.cmd == "build":
                import os
                path = ns.file or os.path.join(ns.context, "Dockerfile")
                try:
                    with open(path) as f:
                        text = f.read()
                except OSError as e:
                    raise UsageError(f"cannot read {path}: {e.strerror}") from None
                return _run_build(text, ns.tag, ns.context, _build_args(ns.build_arg), ns.target)
            if ns.cmd == "export":
                im.export_layout(store, [ns.ref], ns.dest)
                print(ns.dest)
                return None
        except (im.ImageError, OSError) as e:
            raise UsageError(str(e)) from None
        raise UsageError(f"unknown %image command {ns.cmd}")  # pragma: no cover


    @cell_magic
    def dockerfile(self, line: str, cell: str) -> Any:
        """%%dockerfile [--tag REF] [--context DIR] [--build-arg NAME=VALUE] [--target STAGE]: the cell is a
        Dockerfile; build it (each RUN in a container of this project, COPY/ADD from the context directory or a URL,
        COPY --from an earlier stage, a Docker-like cache). FROM an image, `scratch`, `host` or a stage."""
        p = UsageParser(prog="%%dockerfile", add_help=False)
        p.add_argument("-t", "--tag")
        p.add_argument("--context", default=".")
        p.add_argument("--build-arg", action="append", default=[])
        p.add_argument("--target")
        ns = p.parse_args(split_line(line))
        return _run_build(cell, ns.tag, ns.context, _build_args(ns.build_arg), ns.target)


__all__ = ["ImageMagics"]
