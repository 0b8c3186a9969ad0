"""The image store, layer unpacking (whiteouts, escapes), OCI layout and docker-archive round trips."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile

import pytest
from images_helpers import busybox_layer, make_tar, skopeo

from pycontainer_magics.images import (
    DigestMismatch,
    ImageConfig,
    ImageNotFound,
    LayoutError,
    SchemaError,
    Store,
    UnsafeLayer,
    export_layout,
    flatten,
    import_docker_archive,
    import_layout,
    parse_reference,
    schemas,
    unpack_layer,
)
from pycontainer_magics.images.store import sha256_bytes

root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (whiteout device nodes, trusted xattrs)")
LOWER = [("etc", None), ("etc/keep", b"keep"), ("etc/gone", b"gone"), ("etc/changed", b"v1"), ("opq", None),
         ("opq/old", b"old"), ("opq/sub", None), ("opq/sub/deep", b"deep")]
UPPER = [("etc/.wh.gone", b""), ("etc/changed", b"v2"), ("opq", None), ("opq/.wh..wh..opq", b""), ("opq/new", b"new"),
         ("added", b"a")]


@pytest.fixture
def store(tmp_path, monkeypatch) -> Store:
    monkeypatch.setenv("PYCONTAINER_STATE_DIR", str(tmp_path / "state"))
    s = Store()
    assert s.root == str(tmp_path / "state" / "images")
    return s


def store_empty(s: Store) -> bool:
    return (s.images() == [] and not os.listdir(os.path.join(s.root, "blobs/sha256"))
            and not os.listdir(os.path.join(s.root, "layers/sha256")) and not os.listdir(os.path.join(s.root, "tmp")))


def test_reference_normalisation():
    assert str(parse_reference("alpine:3.20")) == "docker.io/library/alpine:3.20"
    assert str(parse_reference("docker.io/library/alpine")) == "docker.io/library/alpine:latest"
    r = parse_reference("127.0.0.1:5000/lab/busybox:1")
    assert (r.registry, r.repository, r.tag, r.endpoint) == ("127.0.0.1:5000", "lab/busybox", "1", "127.0.0.1:5000")
    assert parse_reference("alpine").endpoint == "registry-1.docker.io"


def test_blob_verified_on_write_and_read(store):
    data = b"hello"
    with pytest.raises(DigestMismatch, match="expected sha256:" + "0" * 64):
        store.put_blob(data, digest="sha256:" + "0" * 64)
    with pytest.raises(DigestMismatch, match="got 5 bytes, expected 9"):
        store.put_blob(data, digest=sha256_bytes(data), size=9)
    assert store_empty(store)
    d = store.put_blob(data, digest=sha256_bytes(data), size=5)
    with open(store.blob_file(d), "wb") as f:
        f.write(b"HELLO")  # bit rot
    with pytest.raises(DigestMismatch, match="corrupt in the store"):
        store.read_blob(d)
    assert not store.has_blob(d)



@root
@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_a_layer_blob_rotten_in_the_store_is_caught_when_unpacked(store, compressed):
    """A plain layer's blob digest is its diff_id (hashed once while unpacking); a gzip layer's is hashed as
    it is read. Either way a blob changed on disk is refused, removed, and no layer directory is left."""
    layer = make_tar(LOWER, gzip=compressed)
    image = store.create_image("lab/rot:1", [layer])
    blob, diff_id = image.layers[0].digest, image.layers[0].diff_id
    assert (blob == diff_id) is not compressed
    shutil.rmtree(store.layer_dir(diff_id))
    data = bytearray(open(store.blob_file(blob), "rb").read())
    data[len(data) // 2 if compressed else -2000] ^= 0x01  # plain: in the end-of-archive padding, only a hash sees it
    with open(store.blob_file(blob), "wb") as f:
        f.write(bytes(data))
    with pytest.raises((DigestMismatch, LayoutError)):
        store.ensure_layer(blob, diff_id)
    assert not store.has_layer(diff_id)
    if not compressed:
        assert not store.has_blob(blob)

@root
def test_image_lifecycle_views_and_prune(store):
    img = store.create_image("lab/x:1", [make_tar(LOWER), make_tar(UPPER, gzip=True)],
                             ImageConfig(env=("A=1",), cmd=("sh",)), history=["base", "change"])
    assert img.refs == ("docker.io/lab/x:1",) and len(img.lower_dirs()) == 2
    assert img.lower_dirs()[0] == img.layers[1].path  # topmost first
    table = {(e.path, e.layer): e.status for e in store.file_table("lab/x:1")}
    assert table[("/etc/gone", 0)] == "deleted" and table[("/etc/gone", 1)] == "whiteout"
    assert table[("/etc/keep", 0)] == "visible" and table[("/opq/old", 0)] == "deleted"
    assert table[("/etc/changed", 0)] == "shadowed" and table[("/etc/changed", 1)] == "visible"
    assert table[("/opq/sub/deep", 0)] == "deleted" and table[("/opq/new", 1)] == "visible"
    assert [h.created_by for h in store.history("lab/x:1")] == ["change", "base"]
    assert store.inspect("lab/x:1")["Config"]["Env"] == ["A=1"]
    store.tag("lab/x:1", "lab/y:2")
    assert store.get(img.short_id).refs == ("docker.io/lab/x:1", "docker.io/lab/y:2")
    with pytest.raises(Exception, match="tagged as"):
        store.rm(img.id)
    store.rm("lab/x:1")
    assert store.get("lab/y:2").id == img.id  # still there under its other tag
    report = store.rm("lab/y:2")
    assert report.images == [img.manifest_digest] and report.freed > 0
    assert store_empty(store)
    with pytest.raises(ImageNotFound, match="lab/y:2"):
        store.get("lab/y:2")


@root
def test_prune_dangling_keeps_shared_layers(store):
    base = make_tar(LOWER)
    a = store.create_image("lab/a:1", [base])
    b = store.create_image("lab/b:1", [base, make_tar([("b", b"b")])])
    assert a.layers[0].path == b.layers[0].path
    store.create_image("lab/a:1", [base, make_tar([("v2", b"2")])])  # retag: the old one is dangling
    assert 0 < store.du().reclaimable < 2000  # only its manifest and config: its layer is shared
    rep = store.prune()
    assert rep.images == [a.manifest_digest]
    assert os.path.isdir(b.layers[0].path)
    assert {i.refs for i in store.images()} == {("docker.io/lab/a:1",), ("docker.io/lab/b:1",)}


@root
def test_whiteouts_as_overlay_lowers(store, tmp_path):
    """The unpacked layers, mounted as overlay lowers in a private mount namespace, show the right view;
    the same layers flattened (whiteouts applied) give the same tree."""
    img = store.create_image("lab/wh:1", [make_tar(LOWER), make_tar(UPPER)])
    top = img.lower_dirs()[0]
    assert os.stat(os.path.join(top, "etc/gone")).st_rdev == 0
    assert os.getxattr(os.path.join(top, "opq"), "trusted.overlay.opaque") == b"y"
    merged, upper, work = (tmp_path / n for n in ("merged", "upper", "work"))
    for d in (merged, upper, work):
        d.mkdir()
    script = ("mount -t overlay overlay -o lowerdir={l},upperdir={u},workdir={w} {m} && cd {m} && "
              "find . | sort").format(l=":".join(img.lower_dirs()), u=upper, w=work, m=merged)
    out = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    view = out.stdout.split()
    assert view == [".", "./added", "./etc", "./etc/changed", "./etc/keep", "./opq", "./opq/new"]
    flat = tmp_path / "flat"
    flatten([store.blob_path(x.digest) for x in img.layers], str(flat))
    found = sorted("./" + os.path.relpath(os.path.join(d, n), flat) for d, ds, fs in os.walk(flat) for n in ds + fs)
    assert ["."] + found == view


@pytest.mark.parametrize("entries, match", [
    ([("../evil", b"x")], "climbs out"),
    ([("a/../../evil", b"x")], "climbs out"),
    ([("link", "->", "/etc"), ("link/passwd", b"x")], "through the symlink"),
    ([("rel", "->", "../../.."), ("rel/x", b"x")], "through the symlink"),
    ([("h", "=>", "/etc/passwd")], "hard link"),
    ([("h", "=>", "../outside")], "climbs out"),
])
def test_path_escapes_refused(tmp_path, entries, match):
    dest = tmp_path / "layer"
    with pytest.raises(UnsafeLayer, match=match):
        unpack_layer(io.BytesIO(make_tar(entries)), str(dest))
    assert not (tmp_path / "evil").exists() and not (tmp_path / "outside").exists()


def test_absolute_names_and_devices(tmp_path):
    res = unpack_layer(io.BytesIO(make_tar([("/abs/file", b"x"), ("dev", None), ("dev/null", "chr", 1, 3),
                                            ("sym", "->", "/bin/busybox")])), str(tmp_path / "l"))
    assert (tmp_path / "l/abs/file").read_bytes() == b"x"
    assert os.readlink(tmp_path / "l/sym") == "/bin/busybox"  # absolute link kept (resolved in the container)
    if os.geteuid() == 0:
        assert os.major(os.lstat(tmp_path / "l/dev/null").st_rdev) == 1 and not res.skipped
    else:
        assert res.skipped


@root
def test_ownership_kept(tmp_path):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w") as tf:
        ti = tarfile.TarInfo("owned")
        ti.uid, ti.gid, ti.mode, ti.size = 1234, 4321, 0o4755, 1
        tf.addfile(ti, io.BytesIO(b"x"))
    unpack_layer(io.BytesIO(b.getvalue()), str(tmp_path / "l"))
    st = os.lstat(tmp_path / "l/owned")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1234, 4321, 0o4755)


@root
def test_corrupt_and_truncated_layers_leave_nothing(store, tmp_path):
    good = make_tar(LOWER, gzip=True)
    with pytest.raises(LayoutError, match="corrupt or truncated"):
        store.create_image("lab/bad:1", [good[: len(good) // 2]])
    assert store_empty(store)
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    with pytest.raises(LayoutError):
        store.create_image("lab/bad:1", [bytes(bad)])
    assert store_empty(store)


def test_a_failed_unpack_leaves_no_hashing_thread(tmp_path):
    import threading

    from pycontainer_magics.images.unpack import unpack_layer

    big = make_tar([("d", None), ("d/big", os.urandom(3 << 20))])  # large reads: hashed on a thread
    assert unpack_layer(io.BytesIO(big), str(tmp_path / "ok"), mode="apply").size == len(big)
    with pytest.raises(LayoutError, match="corrupt or truncated"):
        unpack_layer(io.BytesIO(big[: 2 << 20]), str(tmp_path / "cut"), mode="apply")
    assert not [t for t in threading.enumerate() if t.name == "pcm-layer-sha256"]


@root
def test_layout_roundtrip_with_skopeo_and_umoci(store, tmp_path):
    img = store.create_image("lab/bb:1", [busybox_layer()], ImageConfig(cmd=("/bin/sh",)))
    lay = tmp_path / "layout"
    index = export_layout(store, ["lab/bb:1"], str(lay))
    schemas.validate("index", index)
    schemas.validate("manifest", json.loads((lay / "blobs/sha256" / img.manifest_digest[7:]).read_bytes()))
    schemas.validate("config", json.loads((lay / "blobs/sha256" / img.id[7:]).read_bytes()))
    out = json.loads(skopeo("inspect", f"oci:{lay}:1").stdout)
    assert out["Digest"] == img.manifest_digest and out["Layers"] == [img.layers[0].digest]
    if shutil.which("umoci"):
        bundle = tmp_path / "bundle"
        subprocess.run(["umoci", "unpack", "--image", f"{lay}:1", str(bundle)], check=True, capture_output=True,
                       timeout=60)
        assert (bundle / "rootfs/bin/busybox").is_file()
    # a layout written by skopeo (its own manifest/config serialisation) imports back
    lay2 = tmp_path / "layout2"
    skopeo("copy", f"oci:{lay}:1", f"oci:{lay2}:copied")
    other = Store(str(tmp_path / "other"))
    (got,) = import_layout(other, str(lay2), ref="lab/copied")
    assert got.refs == ("docker.io/lab/copied:copied",) and got.id == img.id
    assert got.config.cmd == ("/bin/sh",)


@root
def test_layout_import_rejects_bad_input(store, tmp_path):
    src = Store(str(tmp_path / "src"))
    img = src.create_image("lab/bb:1", [make_tar(LOWER)])
    lay = tmp_path / "layout"
    export_layout(src, ["lab/bb:1"], str(lay))
    with pytest.raises(ImageNotFound, match="no manifest tagged 'nope'"):
        import_layout(store, str(lay), tag="nope")
    blob = lay / "blobs/sha256" / img.layers[0].digest[7:]
    data = blob.read_bytes()
    blob.write_bytes(data[:-100])  # truncated
    with pytest.raises(DigestMismatch, match="expected"):
        import_layout(store, str(lay))
    assert store_empty(store)
    blob.write_bytes(data)
    idx = json.loads((lay / "index.json").read_text())
    idx["manifests"][0]["digest"] = "md5:abc"
    (lay / "index.json").write_text(json.dumps(idx))
    with pytest.raises(LayoutError, match="unsupported digest 'md5:abc'"):
        import_layout(store, str(lay))
    idx["manifests"][0]["size"] = "big"
    (lay / "index.json").write_text(json.dumps(idx))
    with pytest.raises(SchemaError, match="index.json.*size"):
        import_layout(store, str(lay))
    assert store_empty(store)


@root
def test_docker_archive_import(store, tmp_path):
    layer = make_tar(LOWER)
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                      "rootfs": {"type": "layers", "diff_ids": [sha256_bytes(layer)]},
                      "history": [{"created_by": "ADD . /"}]}).encode()
    cid = sha256_bytes(cfg)[7:]
    path = tmp_path / "saved.tar"
    with tarfile.open(path, "w") as tf:
        for name, data in ((f"{cid}.json", cfg), ("abc123/layer.tar", layer),
                           ("manifest.json", json.dumps([{"Config": f"{cid}.json", "RepoTags": ["lab/saved:1"],
                                                          "Layers": ["abc123/layer.tar"]}]).encode())):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    (img,) = import_docker_archive(store, str(path))
    assert img.refs == ("docker.io/lab/saved:1",) and img.id == "sha256:" + cid
    assert img.history[0].created_by == "ADD . /"
    # the config names the wrong diff_id: refused, nothing kept
    store.rm("lab/saved:1")
    bad_cfg = cfg.replace(sha256_bytes(layer)[7:].encode(), b"0" * 64)
    bid = sha256_bytes(bad_cfg)[7:]
    with tarfile.open(path, "w") as tf:
        for name, data in ((f"{bid}.json", bad_cfg), ("abc123/layer.tar", layer),
                           ("manifest.json", json.dumps([{"Config": f"{bid}.json", "RepoTags": ["lab/saved:1"],
                                                          "Layers": ["abc123/layer.tar"]}]).encode())):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    with pytest.raises(DigestMismatch, match="expected diff_id sha256:0000"):
        import_docker_archive(store, str(path))
    assert store_empty(store)


def test_zstd_layer(tmp_path):
    zstandard = pytest.importorskip("zstandard")
    raw = make_tar([("z", b"zstd!")])
    res = unpack_layer(io.BytesIO(zstandard.ZstdCompressor().compress(raw)), str(tmp_path / "l"))
    assert res.diff_id == sha256_bytes(raw) and (tmp_path / "l/z").read_bytes() == b"zstd!"


def test_shipped_schemas_match_tests_copy():
    here = os.path.join(os.path.dirname(__file__), "data/oci-schemas/image-spec")
    pkg = str(schemas.SCHEMA_DIR)
    for name in os.listdir(here):
        with open(os.path.join(here, name), "rb") as a, open(os.path.join(pkg, name), "rb") as b:
            assert a.read() == b.read(), name
