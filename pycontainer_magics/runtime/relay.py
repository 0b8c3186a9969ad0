"""The one way a container's output becomes text for the caller: `run`, `exec` and a process run in a
cgroup read their pipes into an OutputRelay (detached containers' logs and compose's follow come
through `run`).

Per stream (stdout, stderr): an incremental UTF-8 decoder, so a character whose bytes arrive in two
reads is decoded whole (never two replacement characters); line-buffered delivery to `on_output`, so the
notebook gets whole lines, as a terminal would show them; a partial line waits for its newline, the end
of the stream, or `flush()` (the reader calls it when the pipes have been quiet for QUIET seconds, so a
prompt without a newline still shows), or when it reaches MAX_LINE; and a capture bounded to `max_capture`
characters per stream (all of it is delivered live).
"""

from __future__ import annotations

import codecs
from collections.abc import Callable

OutputFn = Callable[[str, str], None]  # (stream, text)
QUIET = 0.05  # seconds without output after which a partial line is delivered
MAX_CAPTURE = 1 << 20  # characters per stream kept in the result
MAX_LINE = 1 << 16  # characters of a partial line held: a longer one (binary or newline-less output) goes in pieces


class _Stream:
    __slots__ = ("captured", "decoder", "held", "size")

    def __init__(self) -> None:
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.held = ""  # a partial line, not delivered yet
        self.captured: list[str] = []
        self.size = 0


class OutputRelay:
    def __init__(self, on_output: OutputFn | None = None, *, max_capture: int = MAX_CAPTURE,
                 streams: tuple[str, ...] = ("stdout", "stderr")) -> None:
        self.on_output = on_output
        self.max_capture = max_capture
        self._streams = {name: _Stream() for name in streams}

    def feed(self, stream: str, data: bytes) -> None:
        """Bytes read from `stream`'s pipe; b"" (end of file) ends the stream: the rest is delivered."""
        s = self._streams[stream]
        text = s.decoder.decode(data, final=not data)
        if not data:
            self._deliver(stream, s, s.held + text)
            s.held = ""
            return
        if not text:
            return
        cut = text.rfind("\n") + 1
        if cut == 0:
            s.held += text
            if len(s.held) >= MAX_LINE:  # else held without bound, and copied whole at each read (quadratic)
                self._deliver(stream, s, s.held)
                s.held = ""
            return
        self._deliver(stream, s, s.held + text[:cut])
        s.held = text[cut:]

    @property
    def holding(self) -> bool:
        """A partial line is waiting (the reader should wake up after QUIET to flush it)."""
        return any(s.held for s in self._streams.values())

    def flush(self) -> None:
        """Deliver what partial lines are held (the pipes went quiet)."""
        for name, s in self._streams.items():
            if s.held:
                text, s.held = s.held, ""
                self._deliver(name, s, text)

    def text(self, stream: str) -> str:
        """What was captured of `stream` (held text included)."""
        s = self._streams[stream]
        return "".join(s.captured) + s.held

    def _deliver(self, name: str, s: _Stream, text: str) -> None:
        if not text:
            return
        if s.size < self.max_capture:
            s.captured.append(text)
            s.size += len(text)
        if self.on_output is not None:
            self.on_output(name, text)


__all__ = ["MAX_CAPTURE", "MAX_LINE", "QUIET", "OutputFn", "OutputRelay"]
