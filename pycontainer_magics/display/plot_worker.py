"""The plot under a cell's card, drawn in a process of its own.

matplotlib (with numpy, about 48 MiB) imported into a notebook's kernel stays there, and every later Python cell
forks the kernel: a fork copies the page tables of all the process has mapped. After one card with a plot, the
Python cell took 13.2 ms where it had taken 8.6 (bench/README.md, the eleventh round). The card's PNG is drawn here
instead: a helper started with the first card that has a plot, kept while the kernel lives and gone with it (its
socket closes; PDEATHSIG). `_container.plot()`, which returns a Figure to work with, still draws in the kernel; so
does the card when the helper cannot be had.

    python -m pycontainer_magics.display.plot_worker FD
"""

from __future__ import annotations

import dataclasses
import pickle
import signal
import socket
import struct
import subprocess
import sys
import threading

from ..linux import lifelong
from ..linux.libc import PR_SET_PDEATHSIG, prctl
from ..runtime.result import ContainerRun

ANSWER_WITHIN = 60.0  # seconds for a plot (the first pays matplotlib's import, and on a new machine its font cache)
_LENGTH = struct.Struct(">Q")


def _send(sock: socket.socket, data: bytes) -> None:
    """One message, its length first (a stream: a long run's samples or a large PNG fit as well as a short one's)."""
    sock.sendall(_LENGTH.pack(len(data)))
    sock.sendall(data)


def _recv_exactly(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            return None  # the other end has gone
        buf += chunk
    return bytes(buf)


def _recv(sock: socket.socket) -> bytes | None:
    head = _recv_exactly(sock, _LENGTH.size)
    return None if head is None else _recv_exactly(sock, _LENGTH.unpack(head)[0])


class PlotWorker:
    """The kernel's handle on the helper: started on the first plot, started again once if it died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._failed = False  # (it could not be started, died twice or went silent: the kernel draws from then on)

    def _start(self) -> None:
        proc, sock = lifelong.spawn("pycontainer_magics.display.plot_worker", socket.SOCK_STREAM)
        sock.settimeout(ANSWER_WITHIN)
        self._proc, self._sock = proc, sock

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def fd(self) -> int | None:
        """Our end of its socket (kept while it runs)."""
        return self._sock.fileno() if self._sock is not None else None

    def png(self, run: ContainerRun) -> bytes | None:
        """The plot of `run` (display.plots.plot_run) as PNG, drawn by the helper; None when it cannot be had (or
        could not draw this run: the kernel's own draw then says why)."""
        # Only what the plot shows goes over: a cell's output, diff or variables may be large, or not picklable.
        slim = dataclasses.replace(run, stdout="", stderr="", diff=[], outputs={}, notes=[], timeline=[],
                                   namespaces=[], plan=None)
        try:
            request = pickle.dumps(slim)
        except Exception:  # noqa: BLE001 - something of the spec's that does not pickle: drawn in the kernel
            return None
        with self._lock:
            for _attempt in (1, 2):
                if self._failed:
                    return None
                if self._proc is None or self._sock is None or self._proc.poll() is not None:
                    self._stop()  # (gone; or started without its socket kept: an interrupt just then)
                    try:
                        self._start()
                    except OSError:
                        self._failed = True
                        return None
                assert self._sock is not None
                try:
                    _send(self._sock, request)
                    answer = _recv(self._sock)
                except TimeoutError:  # (stuck: not waited for again)
                    self._stop()
                    self._failed = True
                    return None
                except OSError:  # (gone)
                    answer = None
                except BaseException:  # an interrupt: its answer would come to the next card, which must not take it
                    self._stop()
                    raise
                if answer is not None:
                    return answer or None  # (empty: it could not draw this run)
                self._stop()
            self._failed = True
            return None

    def stop(self) -> None:
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        proc, sock, self._proc, self._sock = self._proc, self._sock, None, None
        lifelong.end(proc, sock)


_worker: PlotWorker | None = None
_worker_lock = threading.Lock()


def worker() -> PlotWorker:
    global _worker
    with _worker_lock:
        if _worker is None:
            _worker = PlotWorker()
        return _worker


def card_png(run: ContainerRun) -> bytes:
    """The card's plot of `run` as PNG: drawn by the helper, or here when it cannot be."""
    png = worker().png(run)
    if png is not None:
        return png
    from .plots import figure_png, plot_run
    return figure_png(plot_run(run))


def main(fd: int) -> None:
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # go with the kernel that started us
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # (the notebook's interrupt is the kernel's)
    sock = socket.socket(fileno=fd)
    from .plots import figure_png, plot_run

    while True:
        try:
            request = _recv(sock)
        except OSError:
            break
        if request is None:
            break  # the kernel closed its end
        try:
            png = figure_png(plot_run(pickle.loads(request)))
        except Exception:  # noqa: BLE001 - an empty answer: the kernel draws it, and its error is seen there
            png = b""
        try:
            _send(sock, png)
        except OSError:
            break


if __name__ == "__main__":
    main(int(sys.argv[1]))
