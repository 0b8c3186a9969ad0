"""Dockerfile builds: each instruction a step, each RUN a container of this project whose writable layer
becomes the image's next layer, each COPY/ADD a layer made from the build context, the rest changes to
the image configuration (an empty-layer history entry, as Docker records them).

The build cache is keyed like Docker's: the parent image and the instruction as written (after ARG
substitution), plus, for COPY/ADD, a digest of the files copied. A repeated build reuses every step.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from ..images import Image, ImageConfig, ImageError, ImageNotFound, Store, pull
from ..images.dockerfile import (
    Arg,
    Cmd,
    Copy,
    DockerfileError,
    Entrypoint,
    Env,
    Expose,
    Label,
    Run,
    User,
    Workdir,
    parse_dockerfile,
)
from ..images.unpack import pack_dir
from .result import ContainerRun
from .run import run
from .spec import ContainerSpec

OutputFn = Callable[[str, str], None]


class BuildError(ImageError):
    """A step failed: one line naming the Dockerfile line and what went wrong."""


@dataclass
class BuildStep:
    line: int
    instruction: str
    cached: bool
    image_id: str
    seconds: float
    layer: bool  # the step added a layer (RUN, COPY, ADD)


@dataclass
class BuildResult:
    image: Image
    steps: list[BuildStep]


def _cache_path(store: Store) -> str:
    return os.path.join(store.root, "build-cache.json")


def _load_cache(store: Store) -> dict[str, str]:
    try:
        with open(_cache_path(store)) as f:
            return dict(json.load(f))
    except (OSError, ValueError):
        return {}


def _save_cache(store: Store, cache: dict[str, str]) -> None:
    tmp = _cache_path(store) + ".tmp"
    with open(tmp, "w") as f:
        json.dump(cache, f)
    os.replace(tmp, _cache_path(store))


def _context_digest(context: str, sources: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for src in sources:
        path = _in_context(context, src)
        for dirpath, dirnames, filenames in os.walk(path) if os.path.isdir(path) else [(os.path.dirname(path), [],
                                                                                           [os.path.basename(path)])]:
            dirnames.sort()
            for name in sorted(filenames):
                p = os.path.join(dirpath, name)
                h.update(os.path.relpath(p, context).encode() + b"\0")
                st = os.lstat(p)
                h.update(f"{st.st_mode}".encode())
                if os.path.islink(p):
                    h.update(os.readlink(p).encode())
                else:
                    with open(p, "rb") as f:
                        h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


def _in_context(context: str, src: str) -> str:
    path = os.path.realpath(os.path.join(context, src))
    root = os.path.realpath(context)
    if path != root and not path.startswith(root + os.sep):
        raise BuildError(f"COPY {src}: outside the build context {context}")
    if not os.path.lexists(path):
        raise BuildError(f"COPY {src}: no such file in the build context {context}")
    return path


def _copy_layer(context: str, ins: Copy, workdir: str) -> bytes:
    """A layer holding the COPY/ADD sources at their destination, packed as a tarball."""
    tmp = tempfile.mkdtemp(prefix="pcm-copy-")
    try:
        dest = ins.dest if ins.dest.startswith("/") else os.path.join(workdir or "/", ins.dest)
        into_dir = dest.endswith("/") or len(ins.sources) > 1
        for src in ins.sources:
            path = _in_context(context, src)
            target = tmp + (os.path.join(dest, os.path.basename(path)) if into_dir and not os.path.isdir(path)
                            else dest)
            if os.path.isdir(path):
                shutil.copytree(path, target, symlinks=True, dirs_exist_ok=True)
            else:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.copy2(path, target, follow_symlinks=False)
        buf = io.BytesIO()
        pack_dir(tmp, buf)
        return buf.getvalue()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build(text: str, *, tag: str | None = None, context: str = ".", build_args: dict[str, str] | None = None,
          on_output: OutputFn | None = None, store: Store | None = None) -> BuildResult:
    """Build the image `text` describes; tag it `tag`. Steps and their output go to on_output."""
    store = store or Store()
    say = on_output or (lambda _s, _t: None)
    df = parse_dockerfile(text, build_args)
    if len(df.stages) != 1:
        raise BuildError(f"Dockerfile line {df.stages[1].base.line}: multi-stage builds are not supported yet")
    stage = df.stages[0]
    current: Image | None = None
    if stage.base.image != "scratch":
        try:
            current = store.get(stage.base.image)
        except ImageNotFound:
            current = pull(store, stage.base.image)
    config = current.config if current is not None else ImageConfig()
    # ARG values are in RUN's environment (not the image's), and in its cache key, as Docker has them
    args: dict[str, str] = {}
    cache = _load_cache(store)
    steps: list[BuildStep] = []
    total = len(stage.instructions) + 1
    say("stdout", f"Step 1/{total} : {stage.base.original}\n")
    for i, ins in enumerate(stage.instructions, start=2):
        say("stdout", f"Step {i}/{total} : {ins.original}\n")
        t0 = time.monotonic()
        parent = current.id if current is not None else "scratch"
        if isinstance(ins, Arg):
            value = (build_args or {}).get(ins.name, ins.default)
            if value is not None:
                args[ins.name] = value
        extra = _context_digest(context, ins.sources) if isinstance(ins, Copy) else \
            json.dumps(sorted(args.items())) if isinstance(ins, Run) else ""
        key = hashlib.sha256(f"{parent}\n{ins.original}\n{extra}".encode()).hexdigest()
        cached_id = cache.get(key)
        if cached_id is not None:
            try:
                current = store.get(cached_id)
                config = current.config
                steps.append(BuildStep(ins.line, ins.original, True, current.id, time.monotonic() - t0,
                                       isinstance(ins, Run | Copy)))
                say("stdout", f" ---> Using cache {current.short_id}\n")
                continue
            except ImageNotFound:
                pass
        layer: bytes | None = None
        if isinstance(ins, Run):
            layer = _run_step(ins, current, config, args, say)
        elif isinstance(ins, Copy):
            if ins.from_stage:
                raise BuildError(f"Dockerfile line {ins.line}: COPY --from is not supported yet")
            layer = _copy_layer(context, ins, config.workdir)
        elif isinstance(ins, Env):
            env = dict(config.env_dict())
            env.update(dict(ins.pairs))
            config = replace(config, env=tuple(f"{k}={v}" for k, v in env.items()))
        elif isinstance(ins, Workdir):
            config = replace(config, workdir=ins.path if ins.path.startswith("/")
                             else os.path.join(config.workdir or "/", ins.path))
        elif isinstance(ins, User):
            config = replace(config, user=ins.user)
        elif isinstance(ins, Label):
            config = replace(config, labels={**config.labels, **dict(ins.pairs)})
        elif isinstance(ins, Expose):
            config = replace(config, exposed_ports=tuple(dict.fromkeys((*config.exposed_ports, *ins.ports))))
        elif isinstance(ins, Cmd):
            config = replace(config, cmd=ins.command)
        elif isinstance(ins, Entrypoint):
            config = replace(config, entrypoint=ins.command)
        else:  # ARG: already substituted by the parser
            steps.append(BuildStep(ins.line, ins.original, False, parent, time.monotonic() - t0, False))
            continue
        current = store.derive_image(current, layer, config, ins.original)
        cache[key] = current.id
        _save_cache(store, cache)
        steps.append(BuildStep(ins.line, ins.original, False, current.id, time.monotonic() - t0, layer is not None))
        say("stdout", f" ---> {current.short_id}\n")
    if current is None:
        raise BuildError("the Dockerfile makes no layer and has no base image: nothing to tag")
    if tag:
        current = store.tag(current.id, tag)
        say("stdout", f"Successfully tagged {tag}\n")
    return BuildResult(current, steps)


def _run_step(ins: Run, current: Image | None, config: ImageConfig, args: dict[str, str], say: OutputFn) -> bytes:
    if current is None:
        raise BuildError(f"Dockerfile line {ins.line}: RUN needs a base image (FROM scratch has no shell)")
    fd, path = tempfile.mkstemp(prefix="pcm-layer-", suffix=".tar.gz")
    os.close(fd)
    try:
        env = {**args, **config.env_dict()}  # ENV wins over ARG of the same name
        spec = ContainerSpec(image=current.id, command=ins.command, env=tuple(env.items()),
                             workdir=config.workdir or None, user=config.user or None, diff=False)
        r: ContainerRun = run(spec, on_output=say, export_layer=path)
        if r.exit_code != 0:
            raise BuildError(f"Dockerfile line {ins.line}: `{ins.original}` exited with {r.exit_code}"
                             + (f" ({r.error})" if r.error else ""))
        with open(path, "rb") as f:
            return f.read()
    finally:
        os.unlink(path)


__all__ = ["BuildError", "BuildResult", "BuildStep", "DockerfileError", "build"]
