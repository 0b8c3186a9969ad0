"""Dockerfile builds beyond one stage: FROM host, multi-stage builds with COPY --from and --target, ADD of
local archives (extracted) and of URLs (fetched from a loopback server), COPY --chown/--chmod; and an image
made by buildah running here."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import io
import os
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Iterator

import pytest
from helpers import host_clean, make_busybox_rootfs  # noqa: F401

from pycontainer_magics.images import ImageConfig, ImageError, Store, export_layout, import_layout
from pycontainer_magics.runtime import ContainerSpec, run
from pycontainer_magics.workloads.build import BuildError, build

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    d = tmp_path_factory.mktemp("image-build")
    old = os.environ.get("PYCONTAINER_STATE_DIR")
    os.environ["PYCONTAINER_STATE_DIR"] = str(d / "state")
    base = make_busybox_rootfs(str(d / "base"))
    with open(os.path.join(base, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nlab:x:1000:1001:lab:/home/lab:/bin/sh\n")
    s = Store()
    s.create_image("lab/bb:1", [base], ImageConfig(env=("PATH=/bin",)), history=["busybox"])
    yield s
    if old is None:
        del os.environ["PYCONTAINER_STATE_DIR"]
    else:
        os.environ["PYCONTAINER_STATE_DIR"] = old


@contextlib.contextmanager
def http_server(directory: str) -> Iterator[str]:
    """A static file server on the loopback, for ADD of URLs."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=directory)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()
        t.join()


@pytest.mark.usefixtures("host_clean")
def test_from_host_runs_on_this_machines_root_and_cannot_leave_it(store, tmp_path) -> None:
    r = build('FROM host\nENV STAGE=lab\nRUN echo "built on $(cat /etc/debian_version | cut -c1-2)" > /built.txt\n'
              'CMD ["sh", "-c", "cat /built.txt; echo $STAGE; test -x /usr/bin/python3 && echo python"]\n',
              tag="lab/onhost:1", context=str(tmp_path))
    # an empty base layer (a manifest needs one) and the RUN's: the host itself is not in the image
    assert r.image.host_based and len(r.image.layers) == 2 and r.image.layers[0].size < 100
    with open("/etc/debian_version") as f:
        major = f.read()[:2]
    out = run(ContainerSpec(image="lab/onhost:1"))
    assert out.stdout == f"built on {major}\nlab\npython\n", out.stderr
    assert not os.path.exists("/built.txt")  # the RUN wrote into its own layer, not the host
    cell = run(ContainerSpec(image="lab/onhost:1", python_code="print(open('/built.txt').read().strip())"))
    assert cell.stdout == f"built on {major}\n", cell.stderr
    with pytest.raises(ImageError, match="built FROM host"):
        export_layout(store, ["lab/onhost:1"], str(tmp_path / "layout"))
    assert not (tmp_path / "layout").exists()


@pytest.mark.usefixtures("host_clean")
def test_multi_stage_copies_from_an_earlier_stage_only(store, tmp_path) -> None:
    text = ("FROM lab/bb:1 AS build\nRUN mkdir -p /out/sub && echo artifact > /out/sub/a.txt && echo junk > /junk\n"
            "RUN rm /out/sub/a.txt && echo final > /out/sub/a.txt && echo kept > /out/k.txt\n"
            "FROM scratch\nCOPY --from=build /bin/busybox /bin/busybox\nCOPY --from=0 /out /data\n"
            'CMD ["/bin/busybox", "sh", "-c", "/bin/busybox cat /data/sub/a.txt /data/k.txt; '
            '/bin/busybox ls /junk 2>&1 || echo no-junk"]\n')
    r = build(text, tag="lab/multi:1", context=str(tmp_path))
    assert [s.stage for s in r.steps] == [0, 0, 1, 1, 1]
    assert len(r.image.layers) == 2 and not r.image.host_based  # only the final stage's COPY layers
    out = run(ContainerSpec(image="lab/multi:1"))
    assert out.stdout.splitlines()[:2] == ["final", "kept"] and out.stdout.rstrip().endswith("no-junk"), out.stderr
    again = build(text, tag="lab/multi:1", context=str(tmp_path))
    assert all(s.cached for s in again.steps) and again.image.id == r.image.id
    first = build(text, tag="lab/stage0:1", context=str(tmp_path), target="build")
    assert len(first.steps) == 2 and len(first.image.layers) == 3
    with pytest.raises(BuildError, match="--target nope: no such stage"):
        build(text, context=str(tmp_path), target="nope")
    with pytest.raises(BuildError, match="line 3: COPY --from=build /missing: no such file in that stage"):
        build("FROM lab/bb:1 AS build\nFROM lab/bb:1\nCOPY --from=build /missing /x\n", context=str(tmp_path))
    with pytest.raises(BuildError, match="line 2: COPY --from=later: that stage comes later"):
        build("FROM lab/bb:1\nCOPY --from=later /bin /x\nFROM lab/bb:1 AS later\n", context=str(tmp_path))


def _tar(path: str, mode: str, files: dict[str, bytes]) -> None:
    with tarfile.open(path, mode) as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), 0o644
            tf.addfile(ti, io.BytesIO(data))


@pytest.mark.usefixtures("host_clean")
def test_add_extracts_archives_fetches_urls_and_copy_sets_owner_and_mode(store, tmp_path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    _tar(str(ctx / "site.tar.gz"), "w:gz", {"index.html": b"<h1>gz</h1>\n", "css/a.css": b"body{}\n"})
    _tar(str(ctx / "more.tar.xz"), "w:xz", {"x.txt": b"from xz\n"})
    (ctx / "plain.txt").write_text("plain\n")
    served = tmp_path / "www"
    served.mkdir()
    _tar(str(served / "remote.tar.gz"), "w:gz", {"inside.txt": b"not extracted\n"})
    digest = hashlib.sha256((served / "remote.tar.gz").read_bytes()).hexdigest()
    with http_server(str(served)) as url:
        text = ("FROM lab/bb:1\nADD site.tar.gz /srv/www/\nADD more.tar.xz /srv/\n"
                f"ADD --checksum=sha256:{digest} {url}/remote.tar.gz /downloads/\n"
                "COPY --chown=lab --chmod=600 plain.txt /home/lab/\n"
                'CMD ["sh", "-c", "cat /srv/www/index.html /srv/www/css/a.css /srv/x.txt; ls /downloads; '
                'busybox stat -c %u:%g:%a /home/lab/plain.txt; busybox stat -c %u /home"]\n')
        r = build(text, tag="lab/add:1", context=str(ctx))
        out = run(ContainerSpec(image="lab/add:1"))
        assert out.stdout == "<h1>gz</h1>\nbody{}\nfrom xz\nremote.tar.gz\n1000:1001:600\n0\n", out.stderr
        again = build(text, tag="lab/add:1", context=str(ctx))
        assert all(s.cached for s in again.steps) and again.image.id == r.image.id  # same download: cached
        with pytest.raises(BuildError, match=r"line 2: ADD .*remote.tar.gz: content is sha256:.*--checksum wants"):
            build(f"FROM lab/bb:1\nADD --checksum=sha256:{'0' * 64} {url}/remote.tar.gz /d/\n", context=str(ctx))
        with pytest.raises(BuildError, match="line 2: ADD .*/missing.txt: cannot download"):
            build(f"FROM lab/bb:1\nADD {url}/missing.txt /d/\n", context=str(ctx))
        with pytest.raises(BuildError, match="line 2: COPY cannot fetch .*: use ADD"):
            build(f"FROM lab/bb:1\nCOPY {url}/remote.tar.gz /d/\n", context=str(ctx))
    with pytest.raises(BuildError, match="--chown=nobody: unable to find user nobody"):
        build("FROM lab/bb:1\nCOPY --chown=nobody plain.txt /x\n", context=str(ctx))


@pytest.mark.skipif(shutil.which("buildah") is None, reason="buildah is not installed")
@pytest.mark.usefixtures("host_clean")
def test_an_image_made_by_buildah_runs_here(store, tmp_path) -> None:
    # buildah with storage of its own in tmp_path: nothing of the machine's container storage is touched
    bud = ["buildah", "--root", str(tmp_path / "root"), "--runroot", str(tmp_path / "runroot"),
           "--storage-driver", "vfs"]

    def sh(*argv: str) -> str:
        p = subprocess.run([*bud, *argv], capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        return p.stdout.strip()

    rootfs = make_busybox_rootfs(str(tmp_path / "rootfs"))
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Containerfile").write_text(
        "FROM scratch\nCOPY rootfs/ /\nENV WHO=buildah\nWORKDIR /tmp\n"
        'CMD ["/bin/sh", "-c", "echo made by $WHO in $(pwd)"]\n')
    shutil.move(rootfs, tmp_path / "ctx" / "rootfs")
    sh("bud", "--isolation", "chroot", "-t", "lab/from-buildah:1", str(tmp_path / "ctx"))
    sh("push", "lab/from-buildah:1", f"oci:{tmp_path / 'layout'}:lab/from-buildah:1")
    imgs = import_layout(store, str(tmp_path / "layout"), tag="lab/from-buildah:1")
    assert len(imgs) == 1
    out = run(ContainerSpec(image="lab/from-buildah:1"))
    assert out.stdout == "made by buildah in /tmp\n", out.stderr
    sh("rmi", "--all", "--force")


@pytest.mark.usefixtures("host_clean")
def test_dockerignore_leaves_files_out_of_copy_and_of_the_cache_key(store, tmp_path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "build").mkdir(parents=True)
    (ctx / "sub").mkdir()
    for name, text in {"a.txt": "a", "x.log": "noise", "keep.log": "kept", "build/out": "artifact",
                       "sub/y.tmp": "tmp", "sub/z.txt": "z"}.items():
        (ctx / name).write_text(text + "\n")
    (ctx / ".dockerignore").write_text("*.log\n!keep.log\nbuild\n**/*.tmp\n")
    text = 'FROM lab/bb:1\nCOPY . /app\nCMD ["sh", "-c", "cd /app && ls -A . sub | tr \'\\n\' \' \'"]\n'
    r = build(text, tag="lab/ignored:1", context=str(ctx))
    assert run(ContainerSpec(image="lab/ignored:1")).stdout.split() == [
        ".:", ".dockerignore", "a.txt", "keep.log", "sub", "sub:", "z.txt"]
    (ctx / "x.log").write_text("changed noise\n")  # an ignored file changes: the COPY is still cached
    assert all(s.cached for s in build(text, context=str(ctx)).steps)
    (ctx / "a.txt").write_text("changed\n")
    assert not build(text, context=str(ctx)).steps[0].cached
    with pytest.raises(BuildError, match="COPY x.log: excluded by the build context's .dockerignore"):
        build("FROM lab/bb:1\nCOPY x.log /x\n", context=str(ctx))
    assert r.image.layers


@pytest.mark.usefixtures("host_clean")
def test_metadata_instructions_as_docker_applies_them(store, tmp_path) -> None:
    """ENTRYPOINT drops the CMD a stage inherited (kept when the stage set one first), VOLUME and STOPSIGNAL
    land in the config, WORKDIR joins."""
    build("FROM lab/bb:1\nCMD [\"sh\"]\nWORKDIR /srv\n", tag="lab/meta-base:1", context=str(tmp_path), store=store)
    img = build("FROM lab/meta-base:1\nENTRYPOINT [\"echo\"]\nVOLUME /data\nSTOPSIGNAL SIGINT\nWORKDIR app\n",
                context=str(tmp_path), store=store).image
    assert img.config.entrypoint == ("echo",) and img.config.cmd is None
    assert img.config.volumes == ("/data",) and img.config.stop_signal == "SIGINT" and img.config.workdir == "/srv/app"
    img = build("FROM lab/meta-base:1\nCMD [\"hi\"]\nENTRYPOINT [\"echo\"]\n", context=str(tmp_path), store=store).image
    assert img.config.entrypoint == ("echo",) and img.config.cmd == ("hi",)
