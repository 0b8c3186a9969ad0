"""The daemon's event stream (`docker events`, `GET /events`): what happened to containers, images,
networks and volumes, as dockerd reports it. Recent events are kept in memory for `since`; subscribers
get new ones as they happen."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

KEEP = 1000


class Events:
    def __init__(self) -> None:
        self.recent: deque[dict[str, Any]] = deque(maxlen=KEEP)
        self.subscribers: set[asyncio.Queue[dict[str, Any]]] = set()

    def emit(self, type_: str, action: str, actor_id: str, attributes: dict[str, str] | None = None) -> None:
        now = time.time_ns()
        attrs = {k: str(v) for k, v in (attributes or {}).items()}
        ev: dict[str, Any] = {"Type": type_, "Action": action, "Actor": {"ID": actor_id, "Attributes": attrs},
                              "scope": "local", "time": now // 10**9, "timeNano": now}
        if type_ == "container":  # the fields of the old format, still sent by dockerd
            ev.update(status=action, id=actor_id, **({"from": attrs["image"]} if "image" in attrs else {}))
        self.recent.append(ev)
        for q in list(self.subscribers):
            q.put_nowait(ev)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        self.subscribers.discard(q)


def matches(ev: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    """dockerd's event filters: type, event, container, image, network, volume, label (k or k=v)."""
    attrs = ev["Actor"]["Attributes"]
    for key, values in filters.items():
        if not values:
            continue
        if key == "type":
            ok = ev["Type"] in values
        elif key == "event":
            ok = ev["Action"].split(":")[0] in values or ev["Action"] in values
        elif key in ("container", "network", "volume", "image"):
            ok = ev["Type"] == key and (ev["Actor"]["ID"] in values or attrs.get("name") in values
                                        or any(ev["Actor"]["ID"].startswith(v) for v in values if len(v) >= 4)) \
                or (key == "image" and attrs.get("image") in values)
        elif key == "label":
            ok = any(attrs.get(v.partition("=")[0]) == v.partition("=")[2] if "=" in v else v in attrs
                     for v in values)
        else:
            ok = True
        if not ok:
            return False
    return True
