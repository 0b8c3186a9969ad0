"""DataFrames of the image store: `docker images`, `docker history`, disk usage, the layer file table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd


def images_frame(images: Sequence[Any]) -> pd.DataFrame:
    """repository:tag, image id, created, size, layers (one row per tag, as `docker images`)."""
    rows = []
    for img in images:
        for ref in img.refs or ("<none>",):
            rows.append({"ref": ref, "id": img.id.removeprefix("sha256:")[:12], "created": img.created,
                         "size": img.size, "layers": len(img.layers)})
    return pd.DataFrame(rows, columns=["ref", "id", "created", "size", "layers"])


def history_frame(entries: Sequence[Any]) -> pd.DataFrame:
    """created, created_by, size, layer: newest first, as `docker history`."""
    rows = [{"created": e.created, "created_by": e.created_by, "size": e.size,
             "layer": (e.layer or "")[7:19] or "<missing>", "comment": e.comment} for e in entries]
    return pd.DataFrame(rows, columns=["created", "created_by", "size", "layer", "comment"])


def files_frame(entries: Sequence[Any]) -> pd.DataFrame:
    """path, layer, kind, size, status: where each path comes from and which copy wins."""
    rows = [{"path": e.path, "layer": e.layer, "kind": e.kind, "size": e.size, "status": e.status} for e in entries]
    return pd.DataFrame(rows, columns=["path", "layer", "kind", "size", "status"])


def du_frame(du: Any) -> pd.DataFrame:
    """Per image: size, shared with other images, unique; plus totals in .attrs."""
    rows = [{"ref": u.ref, "id": u.id.removeprefix("sha256:")[:12], "size": u.size, "shared": u.shared,
             "unique": u.unique} for u in du.per_image]
    df = pd.DataFrame(rows, columns=["ref", "id", "size", "shared", "unique"])
    df.attrs.update(images=du.images, blobs=du.blobs, layers=du.layers, reclaimable=du.reclaimable)
    return df


def build_frame(steps: Sequence[Any]) -> pd.DataFrame:
    """One row per Dockerfile step: stage, line, instruction, cached, image id, layer added, seconds."""
    rows = [{"stage": st.stage, "line": st.line, "instruction": st.instruction, "cached": st.cached,
             "image": st.image_id.removeprefix("sha256:")[:12], "layer": st.layer, "seconds": round(st.seconds, 3)}
            for st in steps]
    return pd.DataFrame(rows, columns=["stage", "line", "instruction", "cached", "image", "layer", "seconds"])
