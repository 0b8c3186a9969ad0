"""Image benchmarks, side by side in the same run:

1. unpacking layers: this project's `unpack_layer` (which also hashes the diff_id and checks every path) vs
   `tar -x` of the same file (GNU tar, gzip and zstd through their own programs) and, for the plain large
   layer, `umoci unpack` of an image holding it. Three trees — 100 files of 1 MiB, one 100 MiB file, and a
   node_modules-like tree of 20,000 small files (log-normal sizes around 2 KiB, 400 packages, a symlink
   each) — each plain, gzip (level 6) and zstd (level 3), the small files also as a plain ustar layer (what
   Docker's and BuildKit's writers make of them: no pax header per file). Rounds interleaved; wall time
   (median) and the CPU time each tool used (user + system, its child processes included), as ratios to
   `tar -x`; ours also without its C fast lane (images/native/: what an install without a compiler unpacks
   with); for the plain
   layers also `tar -x` with the layer's sha256 (`openssl dgst`) computed beside it (the floor: what ours
   does, the diff_id included);
2. a Dockerfile build, then the same build again (fully cached);
3. the layer diff of a container on a large image: its cost follows the writable layer, not the image.

    sudo .venv/bin/python bench/images.py [--mib 100] [--rounds 3] [--tmpfs] [--only plain-1mib,...]

Root (umoci unpack and overlay whiteouts need it); needs umoci, busybox-static, zstd (the zstd rows are
skipped without it). The layers are written by this project's own packer (pax headers, as its layers
have). `--tmpfs` unpacks into a tmpfs mounted for the run (what the unpacker itself costs, without the disk's
file system: on ext4 without a journal, creating files right after many were deleted is slow for everyone).
Everything lives in a temporary directory removed at the end.
"""

from __future__ import annotations

import argparse
import atexit
import gzip
import os
import random
import resource
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


def _make_one_file(root: str, mib: int) -> None:
    """One file of `mib` MiB, half random and half zeros in 512 KiB runs (compresses to about half)."""
    os.makedirs(os.path.join(root, "data"))
    with open(os.path.join(root, "data", "big.bin"), "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1 << 19) + bytes(1 << 19))


def _make_node_modules(root: str, files: int) -> None:
    """A node_modules-like tree: packages of a few directories, small text files, a symlink per package."""
    rnd = random.Random(1)
    words = [bytes(rnd.choices(b"abcdefghijklmnop ;(){}\n", k=40)) for _ in range(200)]
    per_pkg = 50
    for p in range(max(1, files // per_pkg)):
        d = os.path.join(root, "node_modules", f"pkg{p}", "lib", f"sub{p % 7}")
        os.makedirs(d)
        for j in range(per_pkg):
            size = int(rnd.lognormvariate(7.5, 1.2))
            with open(os.path.join(d, f"f{j}.js"), "wb") as f:
                f.write(b"".join(rnd.choices(words, k=size // 40 + 1))[:size])
        os.symlink("lib/sub0/f0.js", os.path.join(root, "node_modules", f"pkg{p}", "index.js"))


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def _cpu() -> float:
    """CPU seconds used so far by this process (all threads) and its waited-for children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _measured(fn) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(wall ms, CPU ms) of fn()."""
    c0, t0 = _cpu(), time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000, (_cpu() - c0) * 1000


TAR_FLAGS = {"plain": [], "gzip": ["-z"], "zstd": ["--zstd"]}
# The floor for a plain layer: `tar -x` and, beside it, the sha256 of the layer (its diff_id, which
# unpack_layer computes and `tar` does not), hashed from the file while tar extracts it, as ours hashes it on
# a second thread. `openssl dgst` hashes with the CPU's SHA instructions, as hashlib (OpenSSL) does;
# coreutils' sha256sum does not (3x slower here).
HASHER = ["openssl", "dgst", "-sha256"] if shutil.which("openssl") else ["sha256sum"]
FLOOR = f"tar -x & {HASHER[0]} sha256"
PYTHON_LANES = "unpack_layer, no C lane"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=100, help="size of the large layers (MiB)")
    ap.add_argument("--files", type=int, default=20000, help="files in the node_modules-like layer")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tmpfs", action="store_true", help="unpack into a tmpfs (the unpacker's own cost)")
    ap.add_argument("--only", default="", help="comma-separated layer names (e.g. plain-1mib,gzip-small)")
    ap.add_argument("--skip-build", action="store_true", help="only section 1")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="pcm-bench-images-")
    # Registered before the library registers its exit clean-up, so it runs after it (atexit runs last-first):
    # that clean-up may still write below the state dir.
    atexit.register(shutil.rmtree, tmp, True)
    os.environ["PYCONTAINER_STATE_DIR"] = os.path.join(tmp, "state")
    from pycontainer_magics.images import ImageConfig, Store, export_layout
    from pycontainer_magics.images.unpack import _gzip, pack_dir, unpack_layer
    from pycontainer_magics.runtime import ContainerSpec, run
    from pycontainer_magics.runtime.cleanup import settle
    from pycontainer_magics.workloads.build import build

    out_root = os.path.join(tmp, "out")
    os.makedirs(out_root)
    mounted = False
    try:
        if args.tmpfs:
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={4 * args.mib + 1024}m,mode=0700",
                            "pcm-bench-images", out_root], check=True)
            mounted = True
        print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs); gzip: "
              f"{_gzip().__name__}; output on {'tmpfs' if args.tmpfs else 'the temp dir (disk)'}")
        layers: dict[str, str] = {}
        for tree_name, make in (("1mib", lambda r: _make_tree(r, args.mib)),
                                ("onefile", lambda r: _make_one_file(r, args.mib)),
                                ("small", lambda r: _make_node_modules(r, args.files))):
            tree = os.path.join(tmp, f"tree-{tree_name}")
            make(tree)
            plain = os.path.join(tmp, f"{tree_name}.tar")
            with open(plain, "wb") as f:
                pack_dir(tree, f, compress="none")
            if tree_name == "small":  # the same tree as Docker's and BuildKit's Go writers have it: ustar headers
                ustar = os.path.join(tmp, "small-ustar.tar")  # (whole-second mtimes: no pax header per file)
                subprocess.run(["tar", "--sort=name", "--format=ustar", "-cf", ustar, *sorted(os.listdir(tree))],
                               cwd=tree, check=True)
                layers["plain-small-ustar"] = ustar
            shutil.rmtree(tree)
            layers[f"plain-{tree_name}"] = plain
            with open(plain, "rb") as src, open(plain + ".gz", "wb") as dst:
                with gzip.GzipFile(fileobj=dst, mode="wb", compresslevel=6, mtime=0) as gz:
                    shutil.copyfileobj(src, gz, 1 << 20)
            layers[f"gzip-{tree_name}"] = plain + ".gz"
            if shutil.which("zstd"):
                subprocess.run(["zstd", "-q", "-3", "-f", plain, "-o", plain + ".zst"], check=True)
                layers[f"zstd-{tree_name}"] = plain + ".zst"
        only = [n for n in args.only.split(",") if n]
        if only:
            layers = {k: v for k, v in layers.items() if k in only}

        tar = os.path.join(tmp, "1mib.tar")
        store = Store()
        base = os.path.join(tmp, "base")
        os.makedirs(os.path.join(base, "bin"))
        shutil.copy("/bin/busybox", os.path.join(base, "bin", "busybox"))
        for a in ("sh", "echo", "true", "cat"):
            os.symlink("busybox", os.path.join(base, "bin", a))
        with open(tar, "rb") as f:
            big_layer = f.read()
        store.create_image("bench/big:1", [base, big_layer], ImageConfig(env=("PATH=/bin",)))
        del big_layer
        layout = os.path.join(tmp, "layout")
        export_layout(store, ["bench/big:1"], layout, tag="big")

        from pycontainer_magics.images import native

        c_lane = native.lane
        # without its C fast lane (a machine without a compiler at install time): the Python lanes, beside it
        tools = ["unpack_layer (ours)", "tar -x"] + ([PYTHON_LANES] if c_lane is not None else [])
        samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
        outputs: list[str] = []
        for r in range(args.rounds):  # interleaved: every layer, every tool, then the next round
            for name, path in layers.items():
                kind = name.split("-", 1)[0]
                row = tools + ([FLOOR] if kind == "plain" else []) + (["umoci unpack"] if name == "plain-1mib" else [])
                for i in range(len(row)):
                    label = row[(i + r) % len(row)]  # the first tool rotates each round
                    dest = os.path.join(out_root, f"{name}-{r}-{row.index(label)}")
                    if label.startswith("unpack_layer"):
                        native.lane = c_lane if label != PYTHON_LANES else None
                        m = _measured(lambda d=dest, p=path: unpack_layer(p, d))
                        native.lane = c_lane
                    elif label == "tar -x":
                        os.makedirs(dest)
                        m = _measured(lambda d=dest, p=path, k=kind: subprocess.run(
                            ["tar", "-x", *TAR_FLAGS[k], "-f", p, "-C", d], check=True))
                    elif label == FLOOR:  # what ours does, with tar: extract and hash, side by side
                        os.makedirs(dest)
                        script = 'f=$1 d=$2; shift 2; "$@" "$f" >/dev/null & tar -x -f "$f" -C "$d" || exit 1; wait $!'
                        m = _measured(lambda d=dest, p=path, s=script: subprocess.run(
                            ["sh", "-c", s, "sh", p, d, *HASHER], check=True))
                    else:
                        m = _measured(lambda d=dest: subprocess.run(
                            ["umoci", "unpack", "--image", f"{layout}:big", d], check=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                    samples.setdefault((name, label), []).append(m)
                    if args.tmpfs:
                        shutil.rmtree(dest, ignore_errors=True)
                    else:
                        outputs.append(dest)
        # On disk removed only now: on ext4 without a journal, inodes deleted in the last minute (five when their
        # table block is dirty) are skipped one by one when new files are made (`recently_deleted`), which made
        # every tool pay for the tree the previous one removed.
        for dest in outputs:
            shutil.rmtree(dest, ignore_errors=True)
        print(f"1. unpacking layers, {args.rounds} rounds: median wall ms and CPU ms (x tar -x of the same file)")
        print(f"  {'layer':15s} {'size':>8s}  {'tool':24s} {'wall ms':>8s} {'x tar':>6s}  {'CPU ms':>8s} {'x tar':>6s}")
        for name, path in layers.items():
            ref = samples[(name, "tar -x")]
            ref_wall, ref_cpu = statistics.median(w for w, _ in ref), statistics.median(c for _, c in ref)
            for label in tools + [FLOOR, "umoci unpack"]:
                got = samples.get((name, label))
                if not got:
                    continue
                wall, cpu = statistics.median(w for w, _ in got), statistics.median(c for _, c in got)
                print(f"  {name:15s} {os.path.getsize(path) / 2**20:6.1f}Mi  {label:24s} {wall:8.1f} "
                      f"{wall / ref_wall:5.2f}x  {cpu:8.1f} {cpu / ref_cpu:5.2f}x")
        print("  (umoci unpack unpacks the whole image, the busybox layer too, and writes a runtime bundle)")
        print(f"load average at the end of section 1: {os.getloadavg()[0]:.2f}")
        if args.skip_build:
            return

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
        if mounted:
            subprocess.run(["umount", out_root], check=False)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
