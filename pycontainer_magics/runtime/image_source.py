"""A container's image: the host's /, a --rootfs directory, or an image of the store (pulled on first
use, as `docker run` does). What the image's configuration says (ENTRYPOINT and CMD, ENV, WORKDIR, USER)
applies unless the spec says otherwise."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from .rootfs import LayerView
from .spec import ContainerSpec


@dataclass(frozen=True)
class ImageSource:
    lower: str  # overlayfs's lowerdir: "/", a directory, or layer directories joined with ":" (topmost first)
    command: tuple[str, ...]
    env: dict[str, str]
    workdir: str
    user: str | None
    image_id: str | None = None


def resolve(spec: ContainerSpec, on_progress: Callable[[str], None] | None = None) -> ImageSource:
    if spec.image == "host":
        return ImageSource(spec.rootfs or "/", spec.command, {}, spec.workdir or "/", spec.user)
    from ..images import ImageNotFound, ProgressEvent, RegistryError, Store, pull  # loaded only when used

    store = Store()
    try:
        img = store.get(spec.image)
    except ImageNotFound:
        def progress(e: ProgressEvent) -> None:
            if on_progress is not None and e.status not in ("Downloading", "Extracting"):
                on_progress(f"{e.digest[7:19] if e.digest else spec.image}: {e.status}\n")
        try:
            img = pull(store, spec.image, progress=progress)
        except RegistryError as e:  # a mistyped name would read as a network problem: say both
            raise ImageNotFound(f"not in the image store, and pulling it failed: {e}") from e
    if img.host_based and os.geteuid() != 0:
        from .spec import SpecError
        raise SpecError(f"image {spec.image} is built FROM host: its layers over this machine's / need root "
                        "(the kernel refuses an overlay over / in a user namespace)")
    c = img.config
    if spec.python_code is not None:
        command: tuple[str, ...] = ()
    elif spec.entrypoint is not None:  # an ENTRYPOINT override drops the image's CMD too (Docker's rule)
        command = (*spec.entrypoint, *spec.command)
    else:
        command = tuple(c.argv(spec.command))
    if spec.python_code is None and not command:
        from .spec import SpecError
        raise SpecError(f"image {spec.image} has no CMD or ENTRYPOINT: give a command after --")
    return ImageSource(":".join(img.lower_dirs()), command, c.env_dict(), spec.workdir or c.workdir or "/",
                       spec.user or c.user or None, img.id)


def configured_user(spec: ContainerSpec) -> str | None:
    """The user a container's processes run as, as configured (-u, else the image's USER): what docker exec
    runs as by default. None: root."""
    if spec.user or spec.image == "host":
        return spec.user or None
    from ..images import ImageNotFound, Store

    try:
        return Store().get(spec.image).config.user or None
    except ImageNotFound:
        return None


def resolve_user(user: str, lower: str) -> tuple[int, int]:
    """`uid[:gid]` or `name[:group]`, names looked up in the image's /etc/passwd and /etc/group."""
    name, _, group = user.partition(":")
    view = LayerView(lower)
    passwd = _table(view, "/etc/passwd")
    if name.isdigit():
        uid = int(name)
        gid = next((int(r[3]) for r in passwd if r[2] == name), uid)
    else:
        row = next((r for r in passwd if r[0] == name), None)
        if row is None:
            raise LookupError(f"unable to find user {name}: no matching entries in the image's /etc/passwd")
        uid, gid = int(row[2]), int(row[3])
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            grow = next((r for r in _table(view, "/etc/group") if r[0] == group), None)
            if grow is None:
                raise LookupError(f"unable to find group {group}: no matching entries in the image's /etc/group")
            gid = int(grow[2])
    return uid, gid


def _table(view: LayerView, path: str) -> list[list[str]]:
    p = view.find(path)
    if p is None:
        return []
    with open(p, errors="replace") as f:
        return [line.rstrip("\n").split(":") for line in f if line.count(":") >= 3]
