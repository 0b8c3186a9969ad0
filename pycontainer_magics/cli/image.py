"""`pycontainer image`: the image store from a terminal, as `docker image` (and `%image` in a notebook).

    pycontainer image ls [-q]                      REPOSITORY  TAG  IMAGE ID  CREATED  SIZE
    pycontainer image pull REF                     from a registry (progress on stderr)
    pycontainer image push REF [DEST]
    pycontainer image build [-t REF] [-f FILE] [--build-arg K=V] [--target STAGE] CONTEXT
    pycontainer image load [-i FILE|DIR] [-t REF]  a docker-archive tar (stdin without -i) or an OCI layout
    pycontainer image save [-o FILE] REF...        a docker-archive tar (stdout without -o)
    pycontainer image tag SRC DST
    pycontainer image rm [-f] REF...
    pycontainer image inspect REF...               a JSON array, as `docker image inspect`
    pycontainer image history [--no-trunc] REF

The same library calls as the `%image` magic (images/ and workloads/build.py); only the output differs:
text tables instead of DataFrames. Errors are one line and exit 1, as Docker's; bad options exit 125.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .common import EXIT_USAGE, fail

COMMANDS = ("image",)
EXIT_FAILED = 1  # Docker: the command itself failed (no such image, registry unreachable, ...)


def add_parsers(sub: Any) -> None:
    from .common import Parser

    image = sub.add_parser("image", help="manage images: ls, pull, push, build, load, save, tag, rm, inspect, "
                           "history", description="The image store (the same as %image in a notebook).")
    isub = image.add_subparsers(dest="image_cmd", metavar="COMMAND", required=True, parser_class=Parser)
    ls = isub.add_parser("ls", aliases=["list"], help="list images")
    ls.add_argument("-q", "--quiet", action="store_true", help="only image ids")
    pull = isub.add_parser("pull", help="pull an image from a registry")
    pull.add_argument("ref", metavar="REF")
    push = isub.add_parser("push", help="push an image to a registry")
    push.add_argument("ref", metavar="REF")
    push.add_argument("dest", metavar="DEST", nargs="?", help="another name to push it as")
    build = isub.add_parser("build", help="build an image from a Dockerfile")
    build.add_argument("context", metavar="CONTEXT")
    build.add_argument("-t", "--tag")
    build.add_argument("-f", "--file", help="the Dockerfile (default: CONTEXT/Dockerfile)")
    build.add_argument("--build-arg", action="append", default=[], metavar="NAME=VALUE")
    build.add_argument("--target", metavar="STAGE")
    build.add_argument("-q", "--quiet", action="store_true", help="print only the image id")
    load = isub.add_parser("load", help="load images from a docker-archive tar or an OCI layout directory")
    load.add_argument("-i", "--input", metavar="PATH", help="the archive or layout (default: stdin, a tar)")
    load.add_argument("-t", "--tag", help="tag the (first) loaded image")
    save = isub.add_parser("save", help="save images to a docker-archive tar")
    save.add_argument("-o", "--output", metavar="FILE", help="default: stdout")
    save.add_argument("refs", metavar="REF", nargs="+")
    tag = isub.add_parser("tag", help="give an image another name")
    tag.add_argument("src", metavar="SOURCE")
    tag.add_argument("dst", metavar="TARGET")
    rm = isub.add_parser("rm", aliases=["rmi"], help="remove images")
    rm.add_argument("-f", "--force", action="store_true")
    rm.add_argument("refs", metavar="REF", nargs="+")
    inspect = isub.add_parser("inspect", help="an image's manifest, config and layers (JSON)")
    inspect.add_argument("refs", metavar="REF", nargs="+")
    history = isub.add_parser("history", help="the steps that made an image, newest first")
    history.add_argument("--no-trunc", action="store_true")
    history.add_argument("ref", metavar="REF")


def main(ns: argparse.Namespace) -> int:
    from .. import images as im
    from ..workloads.build import BuildError

    cmd = {"list": "ls", "rmi": "rm"}.get(ns.image_cmd, ns.image_cmd)
    try:
        return int(_COMMANDS[cmd](ns, im.Store()))
    except (im.ImageError, BuildError, OSError) as e:
        sys.stderr.write(f"pycontainer: error: {e}\n")
        return EXIT_FAILED


def _table(headers: list[str], rows: list[list[str]]) -> str:
    """Docker's plain table: columns padded to their widest cell, three spaces apart."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = ["   ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [headers, *rows]]
    return "\n".join(lines) + "\n"


def _size(n: int) -> str:
    """Docker's decimal sizes: 4.26MB, 1.2GB, 512B."""
    for unit, factor in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= factor:
            return f"{n / factor:.3g}{unit}"
    return f"{n}B"


def _progress() -> Any:
    from ..images.progress import TextProgress  # text lines, as `docker pull` without a terminal

    return TextProgress(sys.stderr)


def _ls(ns: argparse.Namespace, store: Any) -> int:
    from ..images import parse_reference

    images = store.images()
    if ns.quiet:
        sys.stdout.write("".join(f"{img.short_id}\n" for img in images))
        return 0
    rows = []
    for img in images:
        for ref in img.refs or ("<none>:<none>",):
            if ref == "<none>:<none>":
                repo, tag = "<none>", "<none>"
            else:
                r = parse_reference(ref)
                repo, _, tag = r.short.rpartition(":") if r.tag else (r.short, "", "<none>")
            rows.append([repo, tag, img.short_id, img.created, _size(img.size)])
    sys.stdout.write(_table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], rows))
    return 0


def _pull(ns: argparse.Namespace, store: Any) -> int:
    from ..images import pull

    img = pull(store, ns.ref, progress=_progress())
    print(f"Digest: {img.manifest_digest}\nStatus: {ns.ref} pulled")
    return 0


def _push(ns: argparse.Namespace, store: Any) -> int:
    from ..images import push

    digest = push(store, ns.ref, ns.dest, progress=_progress())
    print(f"{ns.dest or ns.ref}: digest: {digest}")
    return 0


def _build(ns: argparse.Namespace, store: Any) -> int:
    import os

    from ..workloads.build import build

    args = {}
    for item in ns.build_arg:
        k, sep, v = item.partition("=")
        if not sep or not k:
            fail(f"invalid --build-arg {item!r}: expected NAME=VALUE")
        args[k] = v
    path = ns.file or os.path.join(ns.context, "Dockerfile")
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        fail(f"cannot read {path}: {e.strerror}")

    def echo(stream: str, chunk: str) -> None:  # steps and RUN output go to stderr; stdout is the result
        if not ns.quiet:
            sys.stderr.write(chunk)
            sys.stderr.flush()

    result = build(text, tag=ns.tag, context=ns.context, build_args=args, target=ns.target, on_output=echo,
                   store=store)
    if ns.quiet:
        print(result.image.id)
        return 0
    print(f"Successfully built {result.image.short_id}")
    if ns.tag:
        print(f"Successfully tagged {ns.tag}")
    return 0


def _load(ns: argparse.Namespace, store: Any) -> int:
    import os
    import shutil
    import tempfile

    from ..images import import_docker_archive, import_layout

    if ns.input and os.path.isdir(ns.input):
        images = import_layout(store, ns.input, tag=ns.tag)
    else:
        tmp = None
        path = ns.input
        if path is None:  # `docker load < archive.tar`
            if sys.stdin.isatty():
                fail("load: give -i FILE, or an archive on stdin")
            tmp = tempfile.NamedTemporaryFile(prefix="pycontainer-load-", suffix=".tar", delete=False)
            with tmp:
                shutil.copyfileobj(sys.stdin.buffer, tmp)
            path = tmp.name
        try:
            images = import_docker_archive(store, path, progress=_progress())
        finally:
            if tmp is not None:
                os.unlink(tmp.name)
        if ns.tag and images:
            store.tag(images[0].id, ns.tag)
            images[0] = store.get(ns.tag)
    for img in images:
        for ref in img.refs or (img.id,):
            print(f"Loaded image: {ref}" if ref != img.id else f"Loaded image ID: {img.id}")
    return 0


def _save(ns: argparse.Namespace, store: Any) -> int:
    import os

    from ..images.archive import export_docker_archive

    for ref in ns.refs:
        store.get(ref)  # an unknown name is one line before anything is written
    if ns.output is None:
        if sys.stdout.isatty():
            fail("save: refusing to write a tar to a terminal: give -o FILE or redirect stdout")
        export_docker_archive(store, ns.refs, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return 0
    tmp = ns.output + ".part"
    try:
        with open(tmp, "wb") as out:
            export_docker_archive(store, ns.refs, out)
        os.replace(tmp, ns.output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return 0


def _tag(ns: argparse.Namespace, store: Any) -> int:
    store.tag(ns.src, ns.dst)
    return 0


def _rm(ns: argparse.Namespace, store: Any) -> int:
    from ..images import ImageError

    status = 0
    for ref in ns.refs:  # as docker rmi: each one tried, an error reported and the rest still removed
        try:
            report = store.rm(ref, force=ns.force)
        except (ImageError, OSError) as e:
            sys.stderr.write(f"pycontainer: error: {e}\n")
            status = EXIT_FAILED
            continue
        print(f"Untagged/deleted: {ref} ({len(report.layers)} layer(s), {report.freed} bytes freed)")
    return status


def _inspect(ns: argparse.Namespace, store: Any) -> int:
    import json

    docs = [store.inspect(ref) for ref in ns.refs]
    print(json.dumps(docs, indent=4, default=str))
    return 0


def _history(ns: argparse.Namespace, store: Any) -> int:
    rows = []
    for e in store.history(ns.ref):
        by = e.created_by if ns.no_trunc or len(e.created_by) <= 45 else e.created_by[:44] + "…"
        layer = (e.layer or "")[7:] if ns.no_trunc else (e.layer or "")[7:19]
        rows.append([layer or "<missing>", e.created, by, _size(e.size), e.comment or ""])
    sys.stdout.write(_table(["LAYER", "CREATED", "CREATED BY", "SIZE", "COMMENT"], rows))
    return 0


_COMMANDS = {"ls": _ls, "pull": _pull, "push": _push, "build": _build, "load": _load, "save": _save, "tag": _tag,
             "rm": _rm, "inspect": _inspect, "history": _history}

__all__ = ["COMMANDS", "EXIT_FAILED", "EXIT_USAGE", "add_parsers", "main"]
