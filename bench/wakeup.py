"""Where this machine runs a task another one wakes or forks, and when (a property of the machine, not of the library).

A cell's steps hand work between processes: the caller forks PID 1 (a Python cell) or wakes a PID 1 prepared ahead
through a socket (a shell cell), and wakes the namespace holder. Whether the woken task starts on an idle CPU at once,
or waits on the waker's CPU until the waker blocks, decides whether the caller's work after the hand-off runs beside
PID 1's or before it. This measures it: after 50 ms of idle, the waker wakes a process blocked on a unix socket, a
pipe or an eventfd (or forks one), then keeps its CPU busy for --busy-ms; the woken task notes the time and its CPU.

  on the other CPU, after ~0 ms:     the hand-off runs beside the waker at once
  on the other CPU, after a while:   beside the waker, once the idle CPU is up (a VM's halted vCPU is woken first)
  on the waker's CPU, after busy-ms: it waits for the waker (no idle CPU, or a kernel that packs wake-ups)

Measure it on an otherwise idle machine: a process keeping the other CPU busy turns every row into the last kind.

    python bench/wakeup.py [--rounds 30] [--busy-ms 1.0]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import socket
import statistics
import time
from collections.abc import Callable

_libc = ctypes.CDLL(None, use_errno=True)


def cpu() -> int:
    return int(_libc.sched_getcpu())


def spin(ms: float) -> None:
    end = time.monotonic() + ms / 1e3
    while time.monotonic() < end:
        pass


def one(kind: str, busy_ms: float) -> tuple[float, bool]:
    """(ms from the wake-up or fork to the woken task's first step, whether that ran on the waker's CPU)."""
    a, b = socket.socketpair()
    efd = os.eventfd(0)
    wake_r, wake_w = os.pipe()
    out_r, out_w = os.pipe()
    wait: dict[str, Callable[[], object]] = {
        "unix socket": lambda: b.recv(1), "pipe": lambda: os.read(wake_r, 1), "eventfd": lambda: os.eventfd_read(efd)}
    wake: dict[str, Callable[[], object]] = {
        "unix socket": lambda: a.send(b"x"), "pipe": lambda: os.write(wake_w, b"x"),
        "eventfd": lambda: os.eventfd_write(efd, 1)}

    def child() -> None:
        os.write(out_w, f"{time.monotonic()} {cpu()}".encode())
        os._exit(0)

    try:
        if kind == "fork":
            time.sleep(0.05)
            mine, t0 = cpu(), time.monotonic()
            pid = os.fork()
            if pid == 0:
                child()
        else:
            pid = os.fork()
            if pid == 0:
                wait[kind]()
                child()
            time.sleep(0.05)
            mine, t0 = cpu(), time.monotonic()
            wake[kind]()
        spin(busy_ms)
        t, where = os.read(out_r, 100).split()
        os.waitpid(pid, 0)
        return (float(t) - t0) * 1e3, int(where) == mine
    finally:
        a.close()
        b.close()
        for fd in (efd, wake_r, wake_w, out_r, out_w):
            os.close(fd)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--busy-ms", type=float, default=1.0, help="how long the waker keeps its CPU after the wake-up")
    args = ap.parse_args()
    print(f"{os.cpu_count()} CPUs, kernel {os.uname().release}; the waker busy {args.busy_ms} ms after each wake-up")
    knob = "/proc/sys/kernel/sched_vcpu_pack"
    if os.path.exists(knob):
        with open(knob) as f:
            print(f"{knob} = {f.read().strip()}")
    for kind in ("unix socket", "pipe", "eventfd", "fork"):
        rs = [one(kind, args.busy_ms) for _ in range(args.rounds)]
        print(f"  {kind:12}  woken task's first step after {statistics.median(r[0] for r in rs):5.2f} ms (median), "
              f"on the waker's CPU {sum(r[1] for r in rs)}/{len(rs)}")


if __name__ == "__main__":
    main()
