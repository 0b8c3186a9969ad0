"""Dockerfile builds: each instruction a step, each RUN a container of this project whose writable layer
becomes the image's next layer, each COPY/ADD a layer made from the build context (or from an earlier
stage, `COPY --from`), the rest changes to the image configuration (an empty-layer history entry, as
Docker records them).

Bases: an image (pulled on first use), `scratch` (nothing), `host` (this machine's `/` as the bottom,
read-only layer, as `%%container` uses by default: the image records it with a label and cannot be
exported or pushed, its base not being in it), or an earlier stage (multi-stage builds).

The build cache is keyed like Docker's: the parent image and the instruction as written (after ARG
substitution), plus, for COPY/ADD, a digest of the files copied (of the downloaded content for an ADD
of a URL, of the source image for COPY --from). A repeated build reuses every step.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..images import Image, ImageConfig, ImageError, ImageNotFound, Store, pull
from ..images.dockerfile import (
    Arg,
    Cmd,
    Copy,
    DockerfileError,
    Instruction,
    Run,
    Stage,
    apply_metadata,
    parse_dockerfile,
)
from ..images.dockerignore import DockerIgnore
from ..images.image import HOST_BASE_LABEL
from ..images.unpack import is_opaque, pack_dir, unpack_layer
from ..linux.files import write_json
from ..runtime.result import ContainerRun
from ..runtime.rootfs import LayerView
from ..runtime.run import run
from ..runtime.spec import ContainerSpec

OutputFn = Callable[[str, str], None]
URL_TIMEOUT = 30.0


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
    stage: int = 0


@dataclass
class BuildResult:
    image: Image
    steps: list[BuildStep]


@dataclass
class _StageState:
    """Where a stage is: its image so far (None while it is `scratch`) and config."""

    image: Image | None
    config: ImageConfig = field(default_factory=ImageConfig)
    args: dict[str, str] = field(default_factory=dict)  # ARG values: in RUN's environment and cache key
    cmd_set: bool = False  # a CMD came in this stage: a later ENTRYPOINT keeps it (else drops the base's)

    @property
    def parent_key(self) -> str:
        return self.image.id if self.image is not None else "scratch"

    def lower(self) -> str | None:
        """The stage's root as overlayfs's lowerdir (topmost first), None for an empty scratch."""
        return ":".join(self.image.lower_dirs()) if self.image is not None else None


def _cache_path(store: Store) -> str:
    return os.path.join(store.root, "build-cache.json")


def _load_cache(store: Store) -> dict[str, str]:
    try:
        with open(_cache_path(store)) as f:
            return dict(json.load(f))
    except (OSError, ValueError):
        return {}


def _save_cache(store: Store, cache: dict[str, str]) -> None:
    write_json(_cache_path(store), cache, indent=None, newline=False)


def _is_url(src: str) -> bool:
    return src.startswith(("http://", "https://"))


def _digest_tree(h: Any, path: str, base: str, skip: Callable[[str], bool] | None = None) -> None:
    for dirpath, dirnames, filenames in os.walk(path) if os.path.isdir(path) else [(os.path.dirname(path), [],
                                                                                       [os.path.basename(path)])]:
        if skip is not None:  # left out by .dockerignore: not copied, so not in the cache key either
            dirnames[:] = [d for d in dirnames if not skip(os.path.join(dirpath, d))]
            filenames = [f for f in filenames if not skip(os.path.join(dirpath, f))]
        dirnames.sort()
        for name in sorted(filenames):
            p = os.path.join(dirpath, name)
            h.update(os.path.relpath(p, base).encode() + b"\0")
            st = os.lstat(p)
            h.update(f"{st.st_mode}".encode())
            if os.path.islink(p):
                h.update(os.readlink(p).encode())
            else:
                with open(p, "rb") as f:
                    h.update(hashlib.sha256(f.read()).digest())


@dataclass(frozen=True)
class _Context:
    """The build context: a directory, less what its .dockerignore leaves out."""

    root: str
    ignore: DockerIgnore

    @classmethod
    def of(cls, directory: str) -> _Context:
        return cls(os.path.realpath(directory), DockerIgnore.of_context(directory))

    def excluded(self, path: str) -> bool:
        return self.ignore.excluded(os.path.relpath(path, self.root))

    def path(self, src: str, what: str = "COPY") -> str:
        path = os.path.realpath(os.path.join(self.root, src))
        if path != self.root and not path.startswith(self.root + os.sep):
            raise BuildError(f"{what} {src}: outside the build context {self.root}")
        if not os.path.lexists(path):
            raise BuildError(f"{what} {src}: no such file in the build context {self.root}")
        if path != self.root and self.excluded(path):
            raise BuildError(f"{what} {src}: excluded by the build context's .dockerignore")
        return path

    def digest(self, h: Any, path: str) -> None:
        _digest_tree(h, path, self.root, self.excluded)


# -- sources: the build context, a URL, an earlier stage ------------------------------------------------------


def _download(url: str, into: str, line: int, checksum: str | None) -> str:
    """ADD URL: fetch to a file named after the URL's last path component (Docker's rule)."""
    name = os.path.basename(urllib.parse.urlparse(url).path.rstrip("/")) or "index.html"
    path = os.path.join(into, name)
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=URL_TIMEOUT) as resp, open(path, "wb") as out:  # noqa: S310
            while chunk := resp.read(1 << 20):
                h.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise BuildError(f"Dockerfile line {line}: ADD {url}: cannot download ({reason})") from None
    if checksum and checksum != "sha256:" + h.hexdigest():
        raise BuildError(f"Dockerfile line {line}: ADD {url}: content is sha256:{h.hexdigest()}, "
                         f"--checksum wants {checksum}")
    return path


def _copy_merged(view: LayerView, rel: str, target: str) -> None:
    """Copy `rel` as the union of `view`'s layers shows it (whiteouts and opaque directories applied)."""
    found = view.find(rel)
    if found is None:
        raise FileNotFoundError(rel)
    st = os.lstat(found)
    if not stat.S_ISDIR(st.st_mode):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(found, target, follow_symlinks=False)
        return
    os.makedirs(target, exist_ok=True)
    shutil.copystat(found, target)
    names: set[str] = set()
    for layer in view.layers:  # topmost first, down to a layer where rel is not a plain directory
        p = os.path.join(layer, rel.lstrip("/"))
        if not os.path.lexists(p):
            continue
        if not os.path.isdir(p) or os.path.islink(p):
            break
        names.update(os.listdir(p))
        if is_opaque(p):
            break
    for name in sorted(names):
        child = os.path.join(rel, name)
        if view.find(child) is not None:
            _copy_merged(view, child, os.path.join(target, name))


def _is_archive(path: str) -> bool:
    """ADD extracts a local tar archive (plain, gzip, bzip2, xz, zstd), as Docker does."""
    if not os.path.isfile(path) or os.path.islink(path):
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(6)
        if head.startswith(b"\x28\xb5\x2f\xfd"):  # zstd: tarfile cannot tell, unpack_layer can read it
            return True
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def _owner(spec: str, lower: str | None, line: int) -> tuple[int, int]:
    from ..runtime.image_source import resolve_user

    if all(part.isdigit() for part in spec.split(":") if part):
        uid, _, gid = spec.partition(":")
        return int(uid), int(gid or uid)
    if lower is None:
        raise BuildError(f"Dockerfile line {line}: --chown={spec}: the image has no /etc/passwd to look names up in")
    try:
        return resolve_user(spec, lower)
    except LookupError as e:
        raise BuildError(f"Dockerfile line {line}: --chown={spec}: {e}") from None


def _copy_layer(ctx: _Context, ins: Copy, state: _StageState, source: _StageState | None,
                downloads: dict[str, str]) -> bytes:
    """A layer holding the COPY/ADD sources at their destination, packed as a tarball."""
    workdir = state.config.workdir
    tmp = tempfile.mkdtemp(prefix="pcm-copy-")
    try:
        dest = ins.dest if ins.dest.startswith("/") else os.path.join(workdir or "/", ins.dest)
        into_dir = dest.endswith("/") or len(ins.sources) > 1
        made: list[str] = []  # container paths of what was copied (what --chown/--chmod apply to)

        def place(name: str) -> str:
            target = os.path.join(dest, name) if into_dir else dest
            made.append(os.path.normpath(target))
            os.makedirs(os.path.dirname(tmp + target), exist_ok=True)
            return tmp + target

        for src in ins.sources:
            if source is not None:  # COPY --from: a path in the earlier stage's (or image's) root
                lower = source.lower()
                view = LayerView(lower) if lower else None
                rel = os.path.normpath("/" + src)
                if view is None or view.find(rel) is None:
                    raise BuildError(f"Dockerfile line {ins.line}: COPY --from={ins.from_stage} {src}: "
                                     "no such file in that stage")
                found = view.find(rel)
                is_dir = found is not None and os.path.isdir(found) and not os.path.islink(found)
                _copy_merged(view, rel, tmp + dest if is_dir else place(os.path.basename(rel)))
                if is_dir:
                    made.append(os.path.normpath(dest))
                continue
            if _is_url(src):
                shutil.copy2(downloads[src], place(os.path.basename(downloads[src])))
                continue
            path = ctx.path(src, "ADD" if ins.add else "COPY")
            if ins.add and _is_archive(path):  # extracted into dest (a directory), not copied
                made.append(os.path.normpath(dest))
                try:
                    unpack_layer(path, tmp + dest, mode="archive", what=f"ADD {src}")
                except ImageError as e:
                    raise BuildError(f"Dockerfile line {ins.line}: {e}") from None
            elif os.path.isdir(path):
                made.append(os.path.normpath(dest))
                shutil.copytree(path, tmp + dest, symlinks=True, dirs_exist_ok=True,
                                ignore=lambda d, names: [n for n in names if ctx.excluded(os.path.join(d, n))])
            else:
                shutil.copy2(path, place(os.path.basename(path)), follow_symlinks=False)
        if ins.chmod:
            try:
                mode = int(ins.chmod, 8)
            except ValueError:
                raise BuildError(f"Dockerfile line {ins.line}: --chmod={ins.chmod}: not an octal mode") from None
            for top in made:
                for p in _walk(tmp + top):
                    if not os.path.islink(p):
                        os.chmod(p, mode)
        owner = _owner(ins.chown, state.lower(), ins.line) if ins.chown else None
        roots = tuple(m.lstrip("/") for m in made)

        def owner_of(rel: str) -> tuple[int, int] | None:
            return owner if any(rel == r or rel.startswith(r + "/") for r in roots) else None

        buf = io.BytesIO()
        pack_dir(tmp, buf, owner_of=owner_of if owner else None)
        return buf.getvalue()
    except OSError as e:
        raise BuildError(f"Dockerfile line {ins.line}: {ins.original}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _walk(top: str) -> list[str]:
    if not os.path.isdir(top) or os.path.islink(top):
        return [top]
    out = [top]
    for dirpath, dirnames, filenames in os.walk(top):
        out += [os.path.join(dirpath, n) for n in dirnames + filenames]
    return out


# -- the build -------------------------------------------------------------------------------------------------


def build(text: str, *, tag: str | None = None, context: str = ".", build_args: dict[str, str] | None = None,
          target: str | None = None, on_output: OutputFn | None = None, store: Store | None = None) -> BuildResult:
    """Build the image `text` describes (its last stage, or stage `target`); tag it `tag`. Steps and their
    output go to on_output."""
    store = store or Store()
    say = on_output or (lambda _s, _t: None)
    df = parse_dockerfile(text, build_args)
    stages = df.stages
    if target is not None:
        names = [s.name.lower() if s.name else None for s in stages]
        if target.lower() not in names:
            named = ", ".join(n for n in names if n) or "none is named"
            raise BuildError(f"--target {target}: no such stage (stages: {named})")
        stages = stages[:names.index(target.lower()) + 1]
    ctx = _Context.of(context)
    cache = _load_cache(store)
    done: list[_StageState] = []
    steps: list[BuildStep] = []
    total = sum(len(s.instructions) + 1 for s in stages)
    number = 0
    for index, stage in enumerate(stages):
        number += 1
        say("stdout", f"Step {number}/{total} : {stage.base.original}\n")
        state = _base(stage, df.stages, done, store, cache)
        for ins in stage.instructions:
            number += 1
            say("stdout", f"Step {number}/{total} : {ins.original}\n")
            steps.append(_step(ins, state, index, ctx, build_args, cache, store, df.stages, done, say))
        done.append(state)
    current = done[-1].image
    if current is None:
        raise BuildError("the Dockerfile makes no layer and has no base image: nothing to tag")
    if tag:
        current = store.tag(current.id, tag)
        say("stdout", f"Successfully tagged {tag}\n")
    return BuildResult(current, steps)


def _stage_ref(ref: str, all_stages: list[Stage], done: list[_StageState]) -> _StageState | None:
    """An earlier stage by name or index, as FROM and COPY --from name them (None: not a stage)."""
    for i, s in enumerate(all_stages[:len(done)]):
        if (s.name and s.name.lower() == ref.lower()) or ref == str(i):
            return done[i]
    return None


def _image_state(store: Store, ref: str) -> _StageState:
    try:
        img = store.get(ref)
    except ImageNotFound:
        img = pull(store, ref)
    return _StageState(img, img.config)


def _base(stage: Stage, all_stages: list[Stage], done: list[_StageState], store: Store,
          cache: dict[str, str]) -> _StageState:
    ref = stage.base.image
    earlier = _stage_ref(ref, all_stages, done)
    if earlier is not None:
        return _StageState(earlier.image, earlier.config)  # ARGs are the stage's own
    if ref == "scratch":
        return _StageState(None)
    if ref == "host":
        img = _host_base(store, cache)
        return _StageState(img, img.config)
    return _image_state(store, ref)


def _host_base(store: Store, cache: dict[str, str]) -> Image:
    """The image `FROM host` starts from: one empty layer (a manifest needs one) and the label saying the
    host's / lies below it; made once and cached, so builds on it are cached too."""
    key = hashlib.sha256(b"FROM host").hexdigest()
    with contextlib.suppress(ImageNotFound, KeyError):
        return store.get(cache[key])
    empty = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix="pcm-empty-") as d:
        pack_dir(d, empty)
    img = store.derive_image(None, empty.getvalue(), ImageConfig(labels={HOST_BASE_LABEL: "host"}), "FROM host")
    cache[key] = img.id
    _save_cache(store, cache)
    return img


def _step(ins: Instruction, state: _StageState, index: int, ctx: _Context, build_args: dict[str, str] | None,
          cache: dict[str, str], store: Store, all_stages: list[Stage], done: list[_StageState],
          say: OutputFn) -> BuildStep:
    t0 = time.monotonic()
    parent = state.parent_key
    args = state.args
    if isinstance(ins, Arg):
        value = (build_args or {}).get(ins.name, ins.default)
        if value is not None:
            args[ins.name] = value
        return BuildStep(ins.line, ins.original, False, parent, time.monotonic() - t0, False, index)
    source: _StageState | None = None
    downloads: dict[str, str] = {}
    tmp_dl: str | None = None
    try:
        if isinstance(ins, Copy):
            if ins.from_stage:
                source = _stage_ref(ins.from_stage, all_stages, done)
                if source is None:
                    if any(s.name and s.name.lower() == ins.from_stage.lower() for s in all_stages):
                        raise BuildError(f"Dockerfile line {ins.line}: COPY --from={ins.from_stage}: "
                                         "that stage comes later; it must be defined before it is used")
                    source = _image_state(store, ins.from_stage)
                extra = f"from {source.parent_key}"
            else:
                h = hashlib.sha256()
                urls = [s for s in ins.sources if _is_url(s)]
                if urls and not ins.add:
                    raise BuildError(f"Dockerfile line {ins.line}: COPY cannot fetch {urls[0]}: use ADD for URLs")
                if urls:
                    tmp_dl = tempfile.mkdtemp(prefix="pcm-add-")
                for src in ins.sources:
                    if _is_url(src):
                        downloads[src] = _download(src, _fresh_dir(tmp_dl), ins.line, ins.checksum)
                        _digest_tree(h, downloads[src], os.path.dirname(downloads[src]))
                    else:
                        ctx.digest(h, ctx.path(src, "ADD" if ins.add else "COPY"))
                extra = h.hexdigest()
        elif isinstance(ins, Run):
            extra = json.dumps(sorted(args.items()))
        else:
            extra = ""
        if isinstance(ins, Cmd):
            state.cmd_set = True
        key = hashlib.sha256(f"{parent}\n{ins.original}\n{extra}".encode()).hexdigest()
        cached_id = cache.get(key)
        if cached_id is not None:
            try:
                state.image = store.get(cached_id)
                state.config = state.image.config
                say("stdout", f" ---> Using cache {state.image.short_id}\n")
                return BuildStep(ins.line, ins.original, True, state.image.id, time.monotonic() - t0,
                                 isinstance(ins, Run | Copy), index)
            except ImageNotFound:
                pass
        layer: bytes | None = None
        config = state.config
        if isinstance(ins, Run):
            layer = _run_step(ins, state, args, say)
        elif isinstance(ins, Copy):
            if ins.add and ins.from_stage:
                raise BuildError(f"Dockerfile line {ins.line}: ADD has no --from; use COPY --from")
            layer = _copy_layer(ctx, ins, state, source, downloads)
        else:  # ENV, WORKDIR, USER, LABEL, EXPOSE, VOLUME, STOPSIGNAL, CMD, ENTRYPOINT: the config only
            config = apply_metadata(config, ins, state.cmd_set)
        state.image = store.derive_image(state.image, layer, config, ins.original)
        state.config = state.image.config
        cache[key] = state.image.id
        _save_cache(store, cache)
        say("stdout", f" ---> {state.image.short_id}\n")
        return BuildStep(ins.line, ins.original, False, state.image.id, time.monotonic() - t0, layer is not None,
                         index)
    finally:
        if tmp_dl is not None:
            shutil.rmtree(tmp_dl, ignore_errors=True)


def _fresh_dir(parent: str | None) -> str:
    """One directory per download, so two URLs with the same file name do not collide."""
    return tempfile.mkdtemp(dir=parent)


def _run_step(ins: Run, state: _StageState, args: dict[str, str], say: OutputFn) -> bytes:
    if state.image is None:
        raise BuildError(f"Dockerfile line {ins.line}: RUN needs a base image (FROM scratch has no shell)")
    fd, path = tempfile.mkstemp(prefix="pcm-layer-", suffix=".tar.gz")
    os.close(fd)
    config = state.config
    try:
        env = {**args, **config.env_dict()}  # ENV wins over ARG of the same name
        spec = ContainerSpec(image=state.image.id, command=ins.command,
                             env=tuple(env.items()), workdir=config.workdir or None, user=config.user or None,
                             diff=False)
        r: ContainerRun = run(spec, on_output=say, export_layer=path)
        if r.exit_code != 0:
            raise BuildError(f"Dockerfile line {ins.line}: `{ins.original}` exited with {r.exit_code}"
                             + (f" ({r.error})" if r.error else ""))
        with open(path, "rb") as f:
            return f.read()
    finally:
        os.unlink(path)


__all__ = ["BuildError", "BuildResult", "BuildStep", "DockerfileError", "build"]
