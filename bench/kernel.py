"""Cells through a real Jupyter kernel: what a notebook user waits for, from the execute request to its reply.

bench.py times the magic called in this process (an IPython shell with no kernel around it). In Jupyter a cell is
a message to an ipykernel process: IPython's run_cell with its history (a thread IPython stops before every fork
of the kernel and starts again at the next cell), the kernel's output streams flushed through its IOPub thread,
then the reply. What the library does in the background after a run (the next cell's holder prepared, the clean-up)
competes with that reply for the interpreter. This measures it all, in rotation with `crun run` of the same
bundle as bench.py:

    sudo .venv/bin/python bench/kernel.py [--rounds 30] [--idle-ms 50]

Cells: `pass` (the kernel's own round trip), `%%container --memory 64m --pids-limit 64 --quiet` with `pass`,
`%container ... -- /bin/true`, and the Python cell without --quiet (its card shown, as a notebook user types it).
Printed: medians, and each cell's ratio to crun both whole and less the empty cell's round trip (what the container
adds to a cell).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench as B  # noqa: E402 - bench.py beside this file: its bundle and crun helper

CELLS = {
    "empty cell (pass)": "pass",
    "%%container (python: pass)": f"%%container {B.MAGIC_OPTS}\npass",
    "%container -- /bin/true": f"%container {B.MAGIC_OPTS} -- /bin/true",
    "%%container (python), card shown": f"%%container {B.MAGIC_OPTS.replace(' --quiet', '')}\npass",
}
CRUN = "crun run (from this process)"
SHOWN = {CELLS["%%container (python), card shown"]}  # cells that must display their card


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--idle-ms", type=float, default=50.0)
    args = ap.parse_args()
    from jupyter_client.manager import start_new_kernel

    env = B.Env()
    km = kc = None
    try:
        env.build_bundle()
        env.start_crun_helper()
        # The kernel of this interpreter (the venv's), with this checkout's package first on its path.
        top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        km, kc = start_new_kernel(kernel_name="python3", env={
            **os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [top, os.environ.get("PYTHONPATH")]))})

        def execute(code: str) -> None:
            shown: list[str] = []  # what the cell displayed (mime types)

            def output(msg: dict) -> None:
                if msg["msg_type"] == "display_data":
                    shown.extend(msg["content"]["data"])

            reply = kc.execute_interactive(code, timeout=120, output_hook=output)
            if reply["content"]["status"] != "ok":
                raise RuntimeError(f"cell failed: {code!r}: {reply['content'].get('evalue')}")
            if code in SHOWN and "text/html" not in shown:
                raise RuntimeError(f"cell displayed no card: {code!r} (displayed: {shown})")

        execute(f"import sys; assert sys.executable == {str(B.VENV_PY)!r}, sys.executable")
        execute("%load_ext pycontainer_magics")
        execute(f"import pycontainer_magics; assert pycontainer_magics.__file__.startswith({top!r}), "
                "pycontainer_magics.__file__")
        tools = {name: (lambda code=code: execute(code)) for name, code in CELLS.items()}
        tools[CRUN] = lambda: B.checked(env.crun_cmd(env.next_id()))()
        for fn in tools.values():  # every tool works before anything is timed
            fn()
        load0 = os.getloadavg()[0]
        samples = B.round_robin(tools, args.rounds, args.idle_ms / 1000)
        med = {k: statistics.median(v) * 1000 for k, v in samples.items()}
        ref, empty = med[CRUN], med["empty cell (pass)"]
        print(f"cells through an ipykernel, {args.rounds} rounds, {args.idle_ms:.0f} ms idle before each "
              f"(load average {load0:.2f} at start, {os.getloadavg()[0]:.2f} at the end)")
        print(f"  {'tool':34s} {'median ms':>9s} {'min ms':>7s} {'x crun':>7s} {'less the empty cell, x crun':>28s}")
        for name, xs in samples.items():
            extra = "" if name in (CRUN, "empty cell (pass)") else f"{(med[name] - empty) / ref:27.2f}x"
            print(f"  {name:34s} {med[name]:9.1f} {min(xs) * 1000:7.1f} {med[name] / ref:6.2f}x {extra}")
    finally:
        if km is not None:
            if kc is not None:
                kc.stop_channels()
            km.shutdown_kernel(now=False)  # (the extension's own clean-up runs at the kernel's exit)
        left = env.cleanup()
        if left:
            print("left behind:", left)


if __name__ == "__main__":
    main()
