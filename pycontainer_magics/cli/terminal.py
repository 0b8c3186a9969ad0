"""`pycontainer run -t` / `-it`: the container's terminal relayed to this one, as `docker run -it` does.

PID 1 gets a pseudo-terminal made in the container (runtime.run's Terminal); its master end comes back here.
Its output is copied to our stdout; with -i our keystrokes go to it, our terminal in raw mode meanwhile (so
Ctrl-C, Ctrl-D and line editing reach the container's shell, not us); our window size follows on SIGWINCH.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import termios
import threading
import tty
from typing import Any

from ..linux import pty


class TerminalRelay:
    """Relays a container's terminal to this process's stdin/stdout: on_master (the runtime's Terminal) starts it,
    finish() ends it and puts our terminal back as it was."""

    def __init__(self, interactive: bool) -> None:
        self.interactive = interactive
        self.master: int | None = None
        self._out: threading.Thread | None = None
        self._saved: list[Any] | None = None
        self._old_winch: Any = None
        self._tail = b""  # the end of what the terminal showed: an error PID 1 wrote there is not repeated

    def size(self) -> tuple[int, int]:
        """Our terminal's rows and columns; (0, 0) when stdin is not a terminal (the container's is left alone)."""
        with contextlib.suppress(OSError):
            return pty.get_size(sys.stdin.fileno())
        return (0, 0)

    def on_master(self, fd: int) -> None:
        """From the runtime, once PID 1 has sent its terminal (it is forked: threads are safe now)."""
        self.master = fd
        if self.interactive and os.isatty(0):
            self._saved = termios.tcgetattr(0)
            tty.setraw(0)
        self._old_winch = signal.signal(signal.SIGWINCH, self._resize)
        self._resize(signal.SIGWINCH, None)  # a change between size() and now is not lost
        self._out = threading.Thread(target=self._copy_out, name="tty-out", daemon=True)
        self._out.start()
        if self.interactive:  # its own copy of the master: finish() may close ours while it writes
            threading.Thread(target=self._copy_in, args=(os.dup(fd),), name="tty-in", daemon=True).start()

    def _resize(self, _signum: int, _frame: Any) -> None:
        if self.master is not None:
            with contextlib.suppress(OSError):
                pty.set_size(self.master, *self.size())

    def _copy_out(self) -> None:
        assert self.master is not None
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: every slave end is closed (the container has ended)
                return
            if not data:
                return
            self._tail = (self._tail + data)[-4096:]
            try:
                os.write(1, data)
            except OSError:
                return

    @staticmethod
    def _copy_in(master: int) -> None:
        try:
            while True:
                data = os.read(0, 4096)
                if not data:  # our stdin ended: the terminal's end-of-file for the container
                    os.write(master, b"\x04")
                    return
                os.write(master, data)
        except OSError:
            return
        finally:
            os.close(master)

    def shown(self) -> str:
        """The last output the terminal showed (after finish()), its \\r\\n as \\n."""
        return self._tail.decode(errors="replace").replace("\r\n", "\n")

    def finish(self) -> None:
        """The run is over: the last output shown, our terminal as it was, the master closed."""
        if self._out is not None:
            self._out.join(10)
        if self._saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, self._saved)
            self._saved = None
        if self._old_winch is not None:
            signal.signal(signal.SIGWINCH, self._old_winch)
            self._old_winch = None
        master, self.master = self.master, None
        if master is not None:
            with contextlib.suppress(OSError):
                os.close(master)
