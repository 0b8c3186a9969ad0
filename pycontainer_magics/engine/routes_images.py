"""`/images/...` and `/build`: `docker pull|push|images|inspect|tag|rmi|history|save|load|import|build`, over
the project's image store, with dockerd's progress streams."""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import json
import os
import shutil
import tempfile
import time
from typing import TYPE_CHECKING, Any

from .http import ApiError, Request, Response, json_response
from .progress import Emit, json_stream

if TYPE_CHECKING:
    from .core import Engine


def routes(e: Engine) -> list[tuple[str, str, Any]]:
    return [
        ("GET", "/images/json", lambda r: list_(e, r)),
        ("POST", "/images/create", lambda r: create(e, r)),
        ("POST", "/images/load", lambda r: load(e, r)),
        ("GET", "/images/get", lambda r: save(e, r, None)),
        ("POST", "/images/prune", lambda r: prune(e, r)),
        ("POST", "/build", lambda r: build(e, r)),
        ("POST", "/build/prune", lambda r: build_prune(e, r)),
        ("GET", "/images/{name:.+}/json", lambda r, name: inspect(e, r, name)),
        ("GET", "/images/{name:.+}/history", lambda r, name: history(e, r, name)),
        ("GET", "/images/{name:.+}/get", lambda r, name: save(e, r, name)),
        ("POST", "/images/{name:.+}/tag", lambda r, name: tag(e, r, name)),
        ("POST", "/images/{name:.+}/push", lambda r, name: push(e, r, name)),
        ("DELETE", "/images/{name:.+}", lambda r, name: remove(e, r, name)),
    ]


# -- shapes ------------------------------------------------------------------------------------------

def _short(ref: str) -> str:
    from .images import short_ref

    return short_ref(ref)


def _epoch(t: str) -> int:
    try:
        return calendar.timegm(time.strptime(t[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return 0


def _config(c: Any) -> dict[str, Any]:
    """An image config as Docker's Config object."""
    return {"Hostname": "", "Domainname": "", "User": c.user, "AttachStdin": False, "AttachStdout": False,
            "AttachStderr": False, "ExposedPorts": {p: {} for p in c.exposed_ports} or None, "Tty": False,
            "OpenStdin": False, "StdinOnce": False, "Env": list(c.env) or None,
            "Cmd": list(c.cmd) if c.cmd is not None else None, "Image": "", "Volumes": {v: {} for v in c.volumes}
            or None, "WorkingDir": c.workdir, "Entrypoint": list(c.entrypoint) if c.entrypoint is not None else None,
            "OnBuild": None, "Labels": dict(c.labels) or None, "StopSignal": c.stop_signal or None}


def summary(img: Any, containers: int = -1) -> dict[str, Any]:
    return {"Id": img.id, "ParentId": "", "RepoTags": [_short(r) for r in img.refs],
            "RepoDigests": list(img.repo_digests), "Created": _epoch(img.created), "Size": img.size,
            "SharedSize": -1, "VirtualSize": img.size, "Labels": dict(img.config.labels) or {},
            "Containers": containers}


def inspect_json(img: Any) -> dict[str, Any]:
    return {"Id": img.id, "RepoTags": [_short(r) for r in img.refs], "RepoDigests": list(img.repo_digests),
            "Parent": "", "Comment": "", "Created": img.created, "Container": "",
            "ContainerConfig": _config(img.config),
            "DockerVersion": "", "Author": "", "Config": _config(img.config), "Architecture": img.architecture,
            "Variant": img.variant or None, "Os": img.os, "Size": img.size, "VirtualSize": img.size,
            "GraphDriver": {"Name": "overlay", "Data": {"LowerDir": ":".join(img.lower_dirs())}},
            "RootFS": {"Type": "layers", "Layers": [layer.diff_id for layer in img.layers]},
            "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"}}


# -- list, inspect, history, tag, remove --------------------------------------------------------------

async def list_(e: Engine, req: Request) -> Response:
    filters = req.q_json("filters") or {}
    if isinstance(filters, dict):
        filters = {k: (list(v) if isinstance(v, list | dict) else [v]) for k, v in filters.items()}
    images = await asyncio.to_thread(e.images.store.images)
    used: dict[str, int] = {}
    for c in e.containers.all():
        used[c.record["Image"]] = used.get(c.record["Image"], 0) + 1
    out = []
    for img in images:
        dangling = not img.refs
        if "dangling" in filters and (str(dangling).lower() not in [v.lower() for v in filters["dangling"]]):
            continue
        if "reference" in filters and not any(_matches_ref(img, v) for v in filters["reference"]):
            continue
        if "label" in filters and not all(_has_label(img, v) for v in filters["label"]):
            continue
        if dangling and not req.q_bool("all") and "dangling" not in filters:
            pass  # untagged images built by us are results too: shown, as <none>
        entry = summary(img, used.get(img.id, 0))
        if "reference" in filters:  # as dockerd: only the tags that matched
            entry["RepoTags"] = [t for t in entry["RepoTags"] if any(_matches_tag(t, v) for v in filters["reference"])]
        out.append(entry)
    out.sort(key=lambda d: d["Created"], reverse=True)
    return json_response(out)


def _matches_tag(short: str, pattern: str) -> bool:
    import fnmatch

    return fnmatch.fnmatch(short, pattern) or fnmatch.fnmatch(short.rsplit(":", 1)[0], pattern)


def _matches_ref(img: Any, pattern: str) -> bool:
    return any(_matches_tag(_short(r), pattern) for r in img.refs)


def _has_label(img: Any, v: str) -> bool:
    k, eq, val = v.partition("=")
    labels = img.config.labels
    return k in labels and (not eq or labels[k] == val)


async def inspect(e: Engine, req: Request, name: str) -> Response:
    img = await e.images.resolve(name)
    return json_response(inspect_json(img))


async def history(e: Engine, req: Request, name: str) -> Response:
    img = await e.images.resolve(name)
    out = []
    layers = {layer.diff_id: layer for layer in img.layers}
    for i, h in enumerate(reversed(img.history)):
        out.append({"Id": img.id if i == 0 else "<missing>", "Created": _epoch(h.created), "CreatedBy": h.created_by,
                    "Tags": [_short(r) for r in img.refs] if i == 0 else None,
                    "Size": h.size or (layers[h.layer].size if h.layer in layers else 0), "Comment": h.comment})
    return json_response(out)


async def tag(e: Engine, req: Request, name: str) -> Response:
    from ..images import ImageError, parse_reference

    repo = req.q("repo")
    if not repo:
        raise ApiError(400, "repository name must have at least one component")
    target = f"{repo}:{req.q('tag') or 'latest'}" if "@" not in repo else repo
    img = await e.images.resolve(name)
    try:
        parse_reference(target)
        await asyncio.to_thread(e.images.store.tag, img.id, target)
    except ImageError as err:
        raise ApiError(400, str(err)) from None
    e.events.emit("image", "tag", img.id, {"name": _short(target)})
    return Response(201)


async def remove(e: Engine, req: Request, name: str) -> Response:
    from ..images import ImageError

    img = await e.images.resolve(name)
    if img.id == "host":
        raise ApiError(409, "conflict: the host image is this machine's / and cannot be removed")
    force = req.q_bool("force")
    users = [c for c in e.containers.all() if c.record["Image"] == img.id]
    by_name = name != img.id and not img.id.removeprefix("sha256:").startswith(name.removeprefix("sha256:"))
    last_ref = len(img.refs) <= 1 or not by_name
    if users and last_ref:
        running = [c for c in users if c.running]
        if running:
            raise ApiError(409, f"conflict: unable to delete {img.short_id} (cannot be forced) - image is being "
                           f"used by running container {running[0].id[:12]}")
        if not force:
            ref = f'repository reference "{_short(name)}"' if by_name else img.short_id
            raise ApiError(409, f"conflict: unable to remove {ref} (must force) - container {users[0].id[:12]} is "
                           f"using its referenced image {img.short_id}")
    refs_before = list(img.refs)
    try:
        report = await asyncio.to_thread(e.images.store.rm, name, force=force or len(users) > 0)
    except ImageError as err:
        raise ApiError(409, f"conflict: unable to delete {img.short_id} (must be forced) - {err}") from None
    out: list[dict[str, str]] = []
    gone = img.manifest_digest in report.images
    still = set()
    if not gone:
        with contextlib.suppress(Exception):
            still = set((await asyncio.to_thread(e.images.store.get, img.id)).refs)
    for r in refs_before:
        if r not in still:
            out.append({"Untagged": _short(r)})
            e.events.emit("image", "untag", img.id, {"name": _short(r)})
    if gone:
        out.append({"Deleted": img.id})
        e.events.emit("image", "delete", img.id, {"name": _short(refs_before[0]) if refs_before else img.id})
    return json_response(out)


async def prune(e: Engine, req: Request) -> Response:
    filters = req.q_json("filters") or {}
    dangling = filters.get("dangling", ["true"]) if isinstance(filters, dict) else ["true"]
    keep = {c.record["Image"] for c in e.containers.all()}
    everything = [str(v).lower() for v in (dangling if isinstance(dangling, list) else [dangling])] == ["false"]
    report = await asyncio.to_thread(e.images.store.prune, all=everything, keep=keep)
    return json_response({"ImagesDeleted": [{"Deleted": d} for d in report.images] or None,
                          "SpaceReclaimed": report.freed})


# -- pull, import, push ------------------------------------------------------------------------------

def _status_of(err: BaseException) -> int:
    from ..images import ImageNotFound, InvalidReference, RegistryUnreachable

    if isinstance(err, ImageNotFound):
        return 404
    if isinstance(err, InvalidReference):
        return 400
    if isinstance(err, RegistryUnreachable):
        return 500
    return 500


def _progress_line(ev: Any) -> dict[str, Any]:
    """A store ProgressEvent as a line of dockerd's pull/push stream."""
    line: dict[str, Any] = {"status": ev.status, "progressDetail": {}, "id": ev.digest.removeprefix("sha256:")[:12]}
    if ev.status in ("Downloading", "Pushing", "Extracting") and ev.total:
        line["progressDetail"] = {"current": ev.current, "total": ev.total}
        width = 50
        done = int(width * ev.current / ev.total) if ev.total else 0
        bar = "=" * max(0, done - 1) + (">" if done else "") + " " * (width - done)
        line["progress"] = f"[{bar}] {_human(ev.current)}/{_human(ev.total)}"
    return line


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.3g}{unit}"
        n /= 1000
    return f"{n:.3g}GB"  # pragma: no cover


async def create(e: Engine, req: Request) -> Response | None:
    """`docker pull` (fromImage, tag) and `docker import` (fromSrc=- with a tarball body, repo, tag)."""
    from ..images import parse_reference

    if req.q("fromSrc"):
        return await _import(e, req)
    image = req.q("fromImage")
    if not image:
        raise ApiError(400, "fromImage or fromSrc is required")
    tag_ = req.q("tag") or ""
    ref = image if (not tag_ or "@" in image) else (f"{image}@{tag_}" if tag_.startswith("sha256:")
                                                    else f"{image}:{tag_}")
    try:
        r = parse_reference(ref)
    except Exception as err:  # noqa: BLE001
        raise ApiError(400, f"invalid reference format: {err}") from None
    store = e.images.store

    def work(emit: Emit) -> Any:
        from ..images import pull

        had = None
        with contextlib.suppress(Exception):
            had = store.get(str(r)).manifest_digest
        started = False

        def progress(ev: Any) -> None:
            nonlocal started
            if not started:
                started = True
                emit({"status": f"Pulling from {r.repository.removeprefix('library/')}", "id": r.tag or r.digest})
            emit(_progress_line(ev))

        img = pull(store, str(r), progress=progress)
        if not started:
            emit({"status": f"Pulling from {r.repository.removeprefix('library/')}", "id": r.tag or r.digest})
        digest = img.repo_digests[0].split("@", 1)[1] if img.repo_digests else img.manifest_digest
        emit({"status": f"Digest: {digest}"})
        verb = "Image is up to date for" if had == img.manifest_digest else "Downloaded newer image for"
        emit({"status": f"Status: {verb} {r.short}"})
        return img

    img = await json_stream(req, work, _status_of)
    if img is not None:
        e.events.emit("image", "pull", r.short, {"name": r.short})
    return None


async def _import(e: Engine, req: Request) -> Response | None:
    from ..images import ImageConfig

    if req.q("fromSrc") != "-":
        raise ApiError(400, "only fromSrc=- (the tarball in the request body) is supported")
    repo = req.q("repo") or None
    # `docker import FILE name:tag` sends repo=name:tag and no tag
    target = (f"{repo}:{req.q('tag')}" if req.q("tag") else repo) if repo else None
    path = await _spool(req)
    try:
        def work(emit: Emit) -> Any:
            with open(path, "rb") as f:
                img = e.images.store.create_image(target, [f.read()], ImageConfig(), history=["imported from -"])
            emit({"status": img.id})
            return img

        img = await json_stream(req, work, lambda _e: 400)
    finally:
        os.unlink(path)
    if img is not None:
        e.events.emit("image", "import", img.id, {"name": target or img.id})
    return None


async def push(e: Engine, req: Request, name: str) -> Response | None:
    from ..images import parse_reference

    tag_ = req.q("tag")
    ref = f"{name}:{tag_}" if tag_ else name
    img = await e.images.resolve(ref)
    r = parse_reference(ref)
    store = e.images.store

    def work(emit: Emit) -> Any:
        from ..images import push as push_image

        emit({"status": f"The push refers to repository [{r.name.removeprefix('docker.io/')}]"})
        digest = push_image(store, ref, progress=lambda ev: emit(_progress_line(ev)))
        size = len(store.read_blob(img.manifest_digest))
        emit({"status": f"{r.tag}: digest: {digest} size: {size}"})
        emit({"progressDetail": {}, "aux": {"Tag": r.tag, "Digest": digest, "Size": size}})
        return digest

    if await json_stream(req, work, _status_of) is not None:
        e.events.emit("image", "push", r.short, {"name": r.short})
    return None


# -- save and load -----------------------------------------------------------------------------------

async def _spool(req: Request) -> str:
    """The request body into a temporary file (archives and build contexts can be large)."""
    fd, path = tempfile.mkstemp(prefix="pycontainer-engine-", dir=_tmp_dir())
    try:
        with os.fdopen(fd, "wb") as f:
            async for chunk in req.body_chunks():
                f.write(chunk)
    except BaseException:
        os.unlink(path)
        raise
    return path


def _tmp_dir() -> str:
    from ..paths import state_dir

    d = os.path.join(state_dir(), "engine", "tmp")
    os.makedirs(d, mode=0o700, exist_ok=True)
    return d


async def save(e: Engine, req: Request, name: str | None) -> Response | None:
    from ..images import ImageError
    from ..images.archive import export_docker_archive

    names = [name] if name else (req.query.get("names") or [])
    if not names:
        raise ApiError(400, "no image names given")
    for n in names:
        await e.images.resolve(n)
    fd, path = tempfile.mkstemp(prefix="pycontainer-save-", dir=_tmp_dir())
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                await asyncio.to_thread(export_docker_archive, e.images.store, names, f)
        except ImageError as err:
            raise ApiError(400, str(err)) from None
        out = await req.stream("application/x-tar")
        try:
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    await out.write(chunk)
            await out.end()
        except ConnectionError:
            pass
    finally:
        os.unlink(path)
    for n in names:
        e.events.emit("image", "save", n, {"name": n})
    return None


async def load(e: Engine, req: Request) -> Response | None:
    from ..images import import_docker_archive

    path = await _spool(req)
    try:
        def work(emit: Emit) -> Any:
            images = import_docker_archive(e.images.store, path)
            for img in images:
                for r in img.refs or ():
                    emit({"stream": f"Loaded image: {_short(r)}\n"})
                if not img.refs:
                    emit({"stream": f"Loaded image ID: {img.id}\n"})
            return images

        images = await json_stream(req, work, lambda _e: 400)
    finally:
        os.unlink(path)
    for img in images or []:
        e.events.emit("image", "load", img.id, {"name": _short(img.refs[0]) if img.refs else img.id})
    return None


# -- build -------------------------------------------------------------------------------------------

async def build(e: Engine, req: Request) -> Response | None:
    """`docker build` with the classic builder: the context as a tarball, the Dockerfile in it."""
    from ..images import unpack_layer

    tags = req.query.get("t") or []
    dockerfile = req.q("dockerfile") or "Dockerfile"
    build_args = req.q_json("buildargs") or {}
    if not isinstance(build_args, dict):
        raise ApiError(400, "buildargs must be a JSON object")
    target = req.q("target") or None
    if req.q("remote"):
        raise ApiError(400, "remote build contexts are not supported: send the context as a tarball")
    path = await _spool(req)
    ctx = tempfile.mkdtemp(prefix="pycontainer-build-", dir=_tmp_dir())
    try:
        def work(emit: Emit) -> Any:
            from ..images import parse_reference
            from ..workloads.build import build as run_build

            with open(path, "rb") as context_tar:
                unpack_layer(context_tar, ctx, mode="archive", what="build context")
            df_path = os.path.normpath(os.path.join(ctx, dockerfile))
            if not df_path.startswith(ctx + os.sep) or not os.path.isfile(df_path):
                raise FileNotFoundError(f"Cannot locate specified Dockerfile: {dockerfile}")
            with open(df_path, encoding="utf-8") as df_file:
                text = df_file.read()
            for t in tags:
                parse_reference(t)

            def say(_stream: str, text: str) -> None:
                emit({"stream": text})

            result = run_build(text, context=ctx, build_args={str(k): str(v) for k, v in build_args.items()},
                               target=target, on_output=say, store=e.images.store)
            img = result.image
            emit({"aux": {"ID": img.id}})
            emit({"stream": f"Successfully built {img.short_id}\n"})
            for t in tags:
                e.images.store.tag(img.id, t)
                emit({"stream": f"Successfully tagged {_short(t)}\n"})
            return img

        def status(err: BaseException) -> int:
            return 400 if isinstance(err, FileNotFoundError | ValueError) else 500

        img = await json_stream(req, work, status)
    finally:
        os.unlink(path)
        shutil.rmtree(ctx, ignore_errors=True)
    if img is not None:
        for t in tags:
            e.events.emit("image", "tag", img.id, {"name": _short(t)})
    return None


async def build_prune(e: Engine, req: Request) -> Response:
    return json_response({"CachesDeleted": None, "SpaceReclaimed": 0})


__all__ = ["json", "routes"]
