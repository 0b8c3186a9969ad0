"""Pull, push and load progress as text: one line per layer and status change, as `docker pull` prints
without a terminal (`a1b2c3d4e5f6: Pull complete`). The command line's callback; the notebook's bars
(display/progress.py) write the same lines when no widget can be shown."""

from __future__ import annotations

from typing import Any, TextIO

# Statuses that repeat while bytes move: only the change to them is news, and even that is noise in text.
ONGOING = ("Downloading", "Extracting", "Pushing")


def title(e: Any) -> str:
    """A layer's short digest (Docker's twelve hex digits), or the reference for a whole-image step."""
    return str(e.digest[7:19]) if e.digest else str(e.ref)


class TextProgress:
    """`images.pull(store, ref, progress=TextProgress(sys.stderr))`."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.status: dict[str, str] = {}

    def __call__(self, e: Any) -> None:
        key = e.digest or e.ref
        if self.status.get(key) == e.status:
            return
        self.status[key] = e.status
        if e.status not in ONGOING:
            self.stream.write(f"{title(e)}: {e.status}\n")
            self.stream.flush()


__all__ = ["ONGOING", "TextProgress", "title"]
