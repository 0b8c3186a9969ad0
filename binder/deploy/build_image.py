"""Build the course's lab image with this project's own Dockerfile builder, and push it.

    sudo .venv/bin/python binder/deploy/build_image.py registry.example.edu/course/pycontainer-lab:0.1.0 [--no-push]

Steps: mmdebstrap makes a Debian 12 root filesystem (python3, venv, busybox-static, iproute2, ca-certificates;
`apt-get install mmdebstrap`); pip downloads the wheels of the package (built from this checkout) and of
JupyterHub for the image's Python; workloads.build runs binder/deploy/Dockerfile over a context holding
those and the notebooks; images.push sends the result to the registry (a registry needing a login: log in
first with skopeo or docker, whose auth file the push reads).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGES = "python3,python3-venv,python3-pip,busybox-static,iproute2,ca-certificates,passwd"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ref", help="the image reference to build and push (REGISTRY/NAME:TAG)")
    ap.add_argument("--no-push", action="store_true", help="build only (the image stays in the local store)")
    ns = ap.parse_args(argv)
    from pycontainer_magics.images import Store, push
    from pycontainer_magics.workloads.build import build

    with tempfile.TemporaryDirectory(prefix="lab-image-") as ctx:
        subprocess.run(["mmdebstrap", "--variant=minbase", f"--include={PACKAGES}", "bookworm",
                        os.path.join(ctx, "debian-bookworm.tar")], check=True)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", os.path.join(ctx, "wheels"),
                        f"{TOP}[lab]", "jupyterhub"], check=True)
        shutil.copytree(os.path.join(TOP, "notebooks"), os.path.join(ctx, "notebooks"))
        with open(os.path.join(TOP, "binder", "deploy", "Dockerfile")) as f:
            text = f.read()

        def say(_stream: str, chunk: str) -> None:
            sys.stderr.write(chunk)

        store = Store()
        result = build(text, tag=ns.ref, context=ctx, on_output=say, store=store)
        print(result)
        if not ns.no_push:
            push(store, ns.ref)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
