"""Pull and push against a real registry (Debian's docker-registry) on loopback, images put there by
skopeo from OCI layouts we write."""

from __future__ import annotations

import io
import json
import os

import pytest
from images_helpers import busybox_layer, free_port, make_tar, registry_server, skopeo

from pycontainer_magics.images import (
    ImageConfig,
    ImageNotFound,
    PlatformNotFound,
    RegistryUnreachable,
    Store,
    export_layout,
    pull,
    push,
)
from pycontainer_magics.images.registry import parse_challenge

pytestmark = [pytest.mark.network, pytest.mark.slow]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):
    """A running registry holding lab/busybox:1, lab/app:1 (busybox + one layer) and lab/multi:1 (an
    index for linux/amd64 and linux/arm64)."""
    tmp = tmp_path_factory.mktemp("registry")
    with registry_server(str(tmp)) as addr:
        src = Store(str(tmp / "src-store"))
        base = busybox_layer()
        cfg = ImageConfig(env=("PATH=/bin",), cmd=("/bin/sh",), workdir="/", labels={"lab": "1"})
        src.create_image("lab/busybox:1", [base], cfg, history=["ADD busybox /"])
        src.create_image("lab/app:1", [base, make_tar([("app", None), ("app/run.sh", b"echo hi\n")], gzip=True)],
                         cfg, history=["ADD busybox /", "COPY run.sh /app/"])
        src.create_image("lab/multi:amd64", [base, make_tar([("arch", b"amd64\n")])], cfg, architecture="amd64",
                         variant="")
        src.create_image("lab/multi:arm64", [base, make_tar([("arch", b"arm64\n")])], cfg, architecture="arm64",
                         variant="v8")
        lay = str(tmp / "layout")
        export_layout(src, ["lab/busybox:1"], lay, tag="busybox")
        export_layout(src, ["lab/app:1"], lay, tag="app")
        export_layout(src, ["lab/multi:amd64", "lab/multi:arm64"], lay, tag="multi", as_index=True)
        skopeo("copy", "--dest-tls-verify=false", f"oci:{lay}:busybox", f"docker://{addr}/lab/busybox:1")
        skopeo("copy", "--dest-tls-verify=false", f"oci:{lay}:app", f"docker://{addr}/lab/app:1")
        skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{lay}:multi", f"docker://{addr}/lab/multi:1")
        yield addr


@pytest.fixture
def store(tmp_path, monkeypatch) -> Store:
    monkeypatch.setenv("PYCONTAINER_STATE_DIR", str(tmp_path / "state"))
    return Store()


def test_pull_verifies_and_records(registry, store):
    events = []
    img = pull(store, f"{registry}/lab/busybox:1", progress=events.append)
    assert img.refs == (f"{registry}/lab/busybox:1",)
    assert img.config.cmd == ("/bin/sh",) and img.config.env == ("PATH=/bin",)
    assert len(img.layers) == 1 and os.path.isfile(os.path.join(img.lower_dirs()[0], "bin/busybox"))
    assert img.repo_digests[0].startswith(f"{registry}/lab/busybox@sha256:")
    statuses = [e.status for e in events]
    assert "Downloading" in statuses and "Download complete" in statuses and "Pull complete" in statuses
    assert store.get(f"{registry}/lab/busybox:1").id == img.id
    assert store.inspect(img.id)["Config"]["Labels"] == {"lab": "1"}


def test_shared_layer_already_exists(registry, store):
    base = pull(store, f"{registry}/lab/busybox:1")
    events = []
    app = pull(store, f"{registry}/lab/app:1", progress=events.append)
    by_layer = {}
    for e in events:
        by_layer.setdefault(e.digest, []).append(e.status)
    assert by_layer[base.layers[0].digest][0] == "Already exists"
    assert "Downloading" in by_layer[app.layers[1].digest]
    assert app.layers[0].path == base.layers[0].path  # unpacked once, shared
    assert [h.created_by for h in store.history(f"{registry}/lab/app:1")] == ["COPY run.sh /app/", "ADD busybox /"]
    du = store.du()
    assert du.images == 2 and any(u.shared for u in du.per_image)


def test_a_progress_bar_per_layer(registry, store):
    from pycontainer_magics.display.progress import LayerProgress

    base = pull(store, f"{registry}/lab/busybox:1")
    bars = LayerProgress(widgets=True, min_interval=0)
    app = pull(store, f"{registry}/lab/app:1", progress=bars)
    rows = {k: bars.rows[k] for k in (base.layers[0].digest, app.layers[1].digest)}
    assert [r["status"] for r in rows.values()] == ["Already exists", "Pull complete"]
    for r in rows.values():  # every bar full, its style saying how it ended
        assert r["bar"].value == r["bar"].max
    assert [r["bar"].bar_style for r in rows.values()] == ["info", "success"]
    assert len(bars.box.children) == len(bars.rows)  # one row of widgets per layer (and the manifest/config)
    lines = io.StringIO()
    pull(store, f"{registry}/lab/app:1", progress=LayerProgress(widgets=False, stream=lines))
    assert f"{app.layers[1].digest[7:19]}: Already exists" in lines.getvalue()


def test_multi_arch_index_resolves_platform(registry, store):
    img = pull(store, f"{registry}/lab/multi:1")
    assert img.architecture == "amd64"
    with open(os.path.join(img.lower_dirs()[0], "arch")) as f:
        assert f.read() == "amd64\n"
    arm = pull(store, f"{registry}/lab/multi:1", platform=("linux", "arm64", "v8"))
    assert arm.architecture == "arm64" and arm.id != img.id
    with pytest.raises(PlatformNotFound, match="s390x"):
        pull(store, f"{registry}/lab/multi:1", platform=("linux", "s390x", ""))


def test_unknown_tag_leaves_nothing(registry, store):
    with pytest.raises(ImageNotFound, match="lab/busybox:nope"):
        pull(store, f"{registry}/lab/busybox:nope")
    with pytest.raises(ImageNotFound, match="lab/nothing"):
        pull(store, f"{registry}/lab/nothing:1")
    assert store.images() == [] and os.listdir(os.path.join(store.root, "blobs/sha256")) == []


def test_unreachable_registry(store):
    port = free_port()  # nothing listens there
    with pytest.raises(RegistryUnreachable, match=f"127.0.0.1:{port}"):
        pull(store, f"127.0.0.1:{port}/lab/busybox:1", timeout=2)
    assert store.images() == []


def test_push_then_pull_back(registry, store, tmp_path):
    pull(store, f"{registry}/lab/busybox:1")
    store.tag(f"{registry}/lab/busybox:1", f"{registry}/lab/pushed:2")
    events = []
    digest = push(store, f"{registry}/lab/pushed:2", progress=events.append)
    assert any(e.status in ("Layer already exists", "Pushed") for e in events)
    out = skopeo("inspect", "--tls-verify=false", f"docker://{registry}/lab/pushed:2").stdout
    assert json.loads(out)["Digest"] == digest
    other = Store(str(tmp_path / "other"))
    assert pull(other, f"{registry}/lab/pushed:2").manifest_digest == digest


def test_bearer_challenge_parsing():
    scheme, p = parse_challenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                                'scope="repository:library/alpine:pull"')
    assert scheme == "bearer" and p["realm"] == "https://auth.docker.io/token"
    assert p["scope"] == "repository:library/alpine:pull"


def test_token_auth_against_fake_registry(store, tmp_path):
    """A registry that answers 401 + Bearer challenge unless the token from its realm is presented."""
    import http.server
    import threading

    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            if self.path.startswith("/token"):
                body = json.dumps({"token": "T0K"}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            if self.headers.get("Authorization") != "Bearer T0K":
                self.send_response(401)
                port = self.server.server_address[1]
                self.send_header("WWW-Authenticate", f'Bearer realm="http://127.0.0.1:{port}/token",service="fake"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}'
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        with pytest.raises(ImageNotFound, match="MANIFEST_UNKNOWN"):  # got past auth, then a clear 404
            pull(store, f"127.0.0.1:{srv.server_address[1]}/lab/x:1", timeout=5)
    finally:
        srv.shutdown()
        srv.server_close()
