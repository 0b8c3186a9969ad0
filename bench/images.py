"""Image benchmarks, side by side in the same run:

1. unpacking one large layer: this project's `unpack_layer` vs `tar -x` vs `umoci unpack` (medians, ratios);
2. a Dockerfile build, then the same build again (fully cached);
3. the layer diff of a container on a large image: its cost follows the writable layer, not the image.

    sudo .venv/bin/python bench/images.py [--mib 200] [--rounds 3]

Root (umoci unpack and overlay whiteouts need it); needs umoci and busybox-static. Everything lives in a
temporary state directory removed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def _make_tree(root: str, mib: int) -> None:
    """`mib` MiB in 1 MiB files across 10 directories (random bytes: compression does not help tar)."""
    for i in range(mib):
        d = os.path.join(root, "data", f"d{i % 10}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i}.bin"), "wb") as f:
            f.write(os.urandom(2**20))


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=200, help="size of the large layer")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="pcm-bench-images-")
    os.environ["PYCONTAINER_STATE_DIR"] = os.path.join(tmp, "state")
    from pycontainer_magics.images import ImageConfig, Store, export_layout
    from pycontainer_magics.images.unpack import pack_dir, unpack_layer
    from pycontainer_magics.runtime import ContainerSpec, run
    from pycontainer_magics.runtime.cleanup import settle
    from pycontainer_magics.workloads.build import build

    try:
        tree = os.path.join(tmp, "tree")
        _make_tree(tree, args.mib)
        tar = os.path.join(tmp, "layer.tar")
        with open(tar, "wb") as f:
            pack_dir(tree, f, compress="none")
        store = Store()
        base = os.path.join(tmp, "base")
        os.makedirs(os.path.join(base, "bin"))
        shutil.copy("/bin/busybox", os.path.join(base, "bin", "busybox"))
        for a in ("sh", "echo", "true", "cat"):
            os.symlink("busybox", os.path.join(base, "bin", a))
        with open(tar, "rb") as f:
            big_layer = f.read()
        store.create_image("bench/big:1", [base, big_layer], ImageConfig(env=("PATH=/bin",)))
        layout = os.path.join(tmp, "layout")
        export_layout(store, ["bench/big:1"], layout, tag="big")

        times: dict[str, list[float]] = {"unpack_layer (ours)": [], "tar -x": [], "umoci unpack": []}
        for r in range(args.rounds):  # interleaved
            for label in times:
                dest = os.path.join(tmp, f"out-{r}-{len(times[label])}-{label.split()[0]}")
                if label.startswith("unpack_layer"):
                    times[label].append(_timed(lambda d=dest: unpack_layer(tar, d)))
                elif label == "tar -x":
                    os.makedirs(dest)
                    times[label].append(_timed(lambda d=dest: subprocess.run(
                        ["tar", "-xf", tar, "-C", d], check=True)))
                else:
                    times[label].append(_timed(lambda d=dest: subprocess.run(
                        ["umoci", "unpack", "--image", f"{layout}:big", d], check=True,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
                shutil.rmtree(dest, ignore_errors=True)
        ref = statistics.median(times["tar -x"])
        print(f"1. unpacking a {args.mib} MiB layer, {args.rounds} rounds (median ms, x tar -x)")
        for label, ts in times.items():
            print(f"  {label:22s} {statistics.median(ts):8.1f}  {statistics.median(ts) / ref:5.2f}x")
        print("  (umoci unpack unpacks the whole image, the busybox layer too, and writes a runtime bundle)")

        ctx = os.path.join(tmp, "ctx")
        os.makedirs(ctx)
        with open(os.path.join(ctx, "file.txt"), "w") as f:
            f.write("x\n")
        dockerfile = ("FROM bench/big:1\nENV A=1\nCOPY file.txt /file.txt\nRUN echo built > /built\n"
                      "RUN cat /file.txt > /copy\nCMD [\"cat\", \"/built\"]\n")
        first = _timed(lambda: build(dockerfile, tag="bench/built:1", context=ctx))
        cached = [_timed(lambda: build(dockerfile, tag="bench/built:1", context=ctx)) for _ in range(args.rounds)]
        print("2. Dockerfile build of 5 steps on the large image (ms)")
        print(f"  first build {first:8.1f}   fully cached rebuild {statistics.median(cached):6.1f}"
              f"  ({statistics.median(cached) / first:.3f}x)")

        print("3. layer diff at exit on the large image, by what the container wrote (median ms of the diff stage)")
        for label, script in (("touch one file", "touch /x"), ("write 50 MiB", "dd if=/dev/zero of=/x bs=1M "
                                                                              "count=50 2>/dev/null"),
                              ("append to a 1 MiB file", "echo y >> /data/d0/f0.bin")):
            diffs = []
            for _ in range(args.rounds):
                r = run(ContainerSpec(image="bench/big:1", command=("sh", "-c", script)))
                stages = dict(r.timeline)
                diffs.append((stages["layer diff computed, holder done"] - stages["payload exited"]) * 1000
                             if "payload exited" in stages else float("nan"))
            print(f"  {label:24s} {statistics.median(diffs):7.2f} ms  ({len(r.diff)} entries)")
        settle()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
