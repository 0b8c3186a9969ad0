"""`pycontainer image ls|pull|push|build|load|save|tag|rm|inspect|history` and `pycontainer run IMAGE -- CMD`
from a terminal, against a loopback registry (Debian's docker-registry) and a store of the test's own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from images_helpers import busybox_layer, registry_server

from pycontainer_magics.images import ImageConfig, Store, push

PYCONTAINER = str(Path(sys.executable).with_name("pycontainer"))
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="runs containers: needs root")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A registry holding lab/busybox:1 (CMD /bin/sh) and lab/cat:1 (CMD cat /etc/os-release), and the
    environment of a `pycontainer` whose store is empty."""
    tmp = tmp_path_factory.mktemp("cli-image")
    (tmp / "registry").mkdir()
    with registry_server(str(tmp / "registry")) as addr:
        old = os.environ.get("PYCONTAINER_STATE_DIR")
        os.environ["PYCONTAINER_STATE_DIR"] = str(tmp / "seed")
        try:
            seed = Store()
            base = busybox_layer()
            seed.create_image("lab/busybox:1", [base], ImageConfig(env=("PATH=/bin",), cmd=("/bin/sh",)),
                              history=["ADD busybox /"])
            seed.create_image("lab/cat:1", [base], ImageConfig(env=("PATH=/bin",), cmd=("cat", "/etc/os-release")),
                              history=["ADD busybox /", "CMD cat /etc/os-release"])
            push(seed, "lab/busybox:1", f"{addr}/lab/busybox:1")
            push(seed, "lab/cat:1", f"{addr}/lab/cat:1")
        finally:
            if old is None:
                os.environ.pop("PYCONTAINER_STATE_DIR")
            else:
                os.environ["PYCONTAINER_STATE_DIR"] = old
        yield {**os.environ, "PYCONTAINER_STATE_DIR": str(tmp / "state"), "REG": addr, "TMP": str(tmp)}


def pc(env: dict[str, str], *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([PYCONTAINER, *args], env=env, input=stdin.decode("latin-1") if stdin else None,
                       capture_output=True, text=True, timeout=300)
    return p


def test_pull_ls_tag_history_inspect(env: dict[str, str]) -> None:
    reg = env["REG"]
    p = pc(env, "image", "pull", f"{reg}/lab/busybox:1")
    assert p.returncode == 0, p.stderr
    assert "Digest: sha256:" in p.stdout and "Pull complete" in p.stderr  # progress on stderr, as docker's
    assert pc(env, "image", "tag", f"{reg}/lab/busybox:1", "lab/mine:2").returncode == 0
    ls = pc(env, "image", "ls").stdout.splitlines()
    assert ls[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    rows = {tuple(line.split()[:3]) for line in ls[1:]}
    image_id = pc(env, "image", "ls", "-q").stdout.split()[0]
    assert (f"{reg}/lab/busybox", "1", image_id) in rows and ("lab/mine", "2", image_id) in rows
    hist = pc(env, "image", "history", "lab/mine:2").stdout
    assert hist.splitlines()[0].split()[:3] == ["LAYER", "CREATED", "CREATED"] and "ADD busybox /" in hist
    docs = json.loads(pc(env, "image", "inspect", "lab/mine:2").stdout)
    assert isinstance(docs, list) and len(docs) == 1 and image_id in json.dumps(docs[0])


def test_save_rm_load_round_trip(env: dict[str, str]) -> None:
    reg = env["REG"]
    assert pc(env, "image", "pull", f"{reg}/lab/cat:1").returncode == 0
    tar = os.path.join(env["TMP"], "cat.tar")
    p = pc(env, "image", "save", "-o", tar, f"{reg}/lab/cat:1")
    assert p.returncode == 0 and os.path.getsize(tar) > 0, p.stderr
    p = pc(env, "image", "rm", f"{reg}/lab/cat:1")
    assert p.returncode == 0 and "Untagged/deleted" in p.stdout
    assert f"{reg}/lab/cat" not in pc(env, "image", "ls").stdout
    p = pc(env, "image", "load", "-i", tar)
    assert p.returncode == 0 and f"Loaded image: {reg}/lab/cat:1" in p.stdout, p.stderr
    assert pc(env, "image", "rm", f"{reg}/lab/cat:1").returncode == 0
    with open(tar, "rb") as f:  # `docker load < archive.tar`
        p = subprocess.run([PYCONTAINER, "image", "load"], env=env, stdin=f, capture_output=True, text=True)
    assert p.returncode == 0 and f"Loaded image: {reg}/lab/cat:1" in p.stdout, p.stderr


def test_errors_are_one_line(env: dict[str, str]) -> None:
    for args in (["image", "rm", "lab/nosuch:1"], ["image", "history", "lab/nosuch:1"],
                 ["image", "save", "-o", os.path.join(env["TMP"], "x.tar"), "lab/nosuch:1"],
                 ["image", "pull", f"{env['REG']}/lab/nosuch:1"]):
        p = pc(env, *args)
        assert p.returncode == 1 and p.stderr.startswith("pycontainer: error: "), (args, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not os.path.exists(os.path.join(env["TMP"], "x.tar"))
    p = pc(env, "run", "a", "b", "--", "true")
    assert p.returncode == 125 and "give one image before `--`" in p.stderr


@needs_root
def test_run_an_image_and_build_push_one(env: dict[str, str]) -> None:
    reg = env["REG"]
    p = pc(env, "run", "-q", f"{reg}/lab/cat:1", "--", "sh", "-c", "echo in; cat /etc/os-release")
    assert (p.returncode, p.stdout) == (0, "in\nNAME=lab-busybox\n"), p.stderr
    p = pc(env, "run", "-q", f"{reg}/lab/cat:1", "--")  # the image's own CMD
    assert (p.returncode, p.stdout) == (0, "NAME=lab-busybox\n"), p.stderr
    ctx = Path(env["TMP"]) / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(textwrap.dedent(f"""\
        FROM {reg}/lab/busybox:1
        RUN echo built > /stamp
        CMD ["cat", "/stamp"]
    """))
    p = pc(env, "image", "build", "-t", "lab/built:1", str(ctx))
    assert p.returncode == 0 and "Successfully tagged lab/built:1" in p.stdout, p.stderr[-2000:]
    p = pc(env, "run", "-q", "lab/built:1", "--")
    assert (p.returncode, p.stdout) == (0, "built\n"), p.stderr
    p = pc(env, "image", "push", "lab/built:1", f"{reg}/lab/built:1")
    assert p.returncode == 0 and "digest: sha256:" in p.stdout, p.stderr
    assert pc(env, "image", "rm", "lab/built:1").returncode == 0
    assert pc(env, "image", "pull", f"{reg}/lab/built:1").returncode == 0


def test_image_commands_load_no_notebook_stack(env: dict[str, str]) -> None:
    code = textwrap.dedent("""
        import sys
        from pycontainer_magics.cli import main
        for argv in (["image", "ls"], ["image", "history", "nosuch"], ["image", "--help"]):
            try:
                main(argv)
            except SystemExit:
                pass
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in
                       {"IPython", "pandas", "matplotlib", "ipywidgets", "ipykernel"})
        print("LOADED:" + ",".join(heavy))
    """)
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.rsplit("LOADED:", 1)[1].strip() == ""


def test_a_bad_archive_is_one_line_and_loads_nothing(tmp_path: Path) -> None:
    """`image load` of what is not a `docker save` tarball: a missing file, a text file, a manifest of the
    wrong shape (it comes from elsewhere) — one line, exit 1, an empty store."""
    import io
    import tarfile

    def archive(name: str, manifest: bytes) -> str:
        path = tmp_path / name
        with tarfile.open(path, "w") as tf:
            ti = tarfile.TarInfo("manifest.json")
            ti.size = len(manifest)
            tf.addfile(ti, io.BytesIO(manifest))
        return str(path)

    env = {**os.environ, "PYCONTAINER_STATE_DIR": str(tmp_path / "state")}
    for path, says in ((str(tmp_path / "missing.tar"), "No such file or directory"),
                       ("/etc/hostname", "not a tar archive"),
                       (archive("no-config.tar", b"[{}]"), "entry 0 has no Config"),
                       (archive("bad-layers.tar", b'[{"Config": "c.json", "Layers": "x"}]'), "Layers is not a list"),
                       (archive("not-a-list.tar", b'{"Config": "c.json"}'), "manifest.json is not a list")):
        p = pc(env, "image", "load", "-i", path)
        assert p.returncode == 1 and says in p.stderr and len(p.stderr.strip().splitlines()) == 1, (path, p.stderr)
    assert pc(env, "image", "ls", "-q").stdout.strip() == ""
