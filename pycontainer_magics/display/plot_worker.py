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
import signal
import socket
import subprocess
import sys
import threading

from ..linux import lifelong
from ..linux.libc import PR_SET_PDEATHSIG, prctl
from ..runtime.channel import recv_ctl, send_ctl
from ..runtime.result import ContainerRun


class PlotWorker:
    """The kernel's handle on the helper: started on the first plot, started again once if it died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._failed = False  # (it could not be started, or died twice: the kernel draws from then on)

    def _start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            # (From a thread that lives as long as this process: PDEATHSIG follows the thread that started it.)
            self._proc = lifelong.call(lambda: subprocess.Popen(
                [sys.executable, "-m", "pycontainer_magics.display.plot_worker", str(theirs.fileno())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, cwd="/", start_new_session=True))
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._sock = ours

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def fd(self) -> int | None:
        """Our end of its socket (kept while it runs)."""
        return self._sock.fileno() if self._sock is not None else None

    def png(self, run: ContainerRun) -> bytes | None:
        """The plot of `run` (display.plots.plot_run) as PNG, drawn by the helper; None when it cannot be had."""
        # Only what the plot shows goes over: a cell's output, diff or variables may be large, or not picklable.
        slim = dataclasses.replace(run, stdout="", stderr="", diff=[], outputs={}, notes=[], timeline=[],
                                   namespaces=[], plan=None)
        with self._lock:
            for _attempt in (1, 2):
                if self._failed:
                    return None
                if self._proc is None or self._proc.poll() is not None:
                    self.stop()
                    try:
                        self._start()
                    except OSError:
                        self._failed = True
                        return None
                assert self._sock is not None
                try:
                    send_ctl(self._sock, {"run": slim})
                    reply, _ = recv_ctl(self._sock)
                except OSError:  # (gone; or a PNG larger than the socket takes: drawn here then)
                    reply = None
                if reply is not None:
                    png = reply.get("png")
                    return png if isinstance(png, bytes) else None  # (its error: the kernel's draw shows it)
                self.stop()
            self._failed = True
            return None

    def stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            self._proc = None


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
            msg, _fds = recv_ctl(sock)
        except OSError:
            break
        if msg is None:
            break  # the kernel closed its end
        try:
            reply: dict[str, object] = {"png": figure_png(plot_run(msg["run"]))}
        except Exception as e:  # noqa: BLE001 - said to the kernel, which draws it itself
            reply = {"error": f"{type(e).__name__}: {e}"}
        try:
            send_ctl(sock, reply)
        except OSError:
            break


if __name__ == "__main__":
    main(int(sys.argv[1]))
