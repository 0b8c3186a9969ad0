"""LOW findings of issue 16: OCI container ids `.` and `..` (`delete --root R ..` emptied R's parent), hooks in a
bundle run without the OCI lifecycle (skipped in silence before), a registry redirect from https to http."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import urllib.request

import pytest

from pycontainer_magics.images.errors import RegistryError
from pycontainer_magics.images.registry import _NoRedirectAuth

PYCONTAINER = os.path.join(os.path.dirname(sys.executable), "pycontainer")


@pytest.mark.parametrize("cid", [".", "..", "a/b", ""])
@pytest.mark.parametrize("verb", ["delete", "state", "kill"])
def test_dot_and_dotdot_are_not_container_ids(tmp_path, cid, verb):
    root = tmp_path / "state-root"
    root.mkdir()
    (tmp_path / "precious").write_text("keep\n")
    (root / "other").mkdir()
    argv = [PYCONTAINER, "--root", str(root), verb, *(["--force"] if verb == "delete" else []), cid]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    if cid:
        assert "invalid container id" in p.stderr or "container id" in p.stderr, p.stderr
    assert (tmp_path / "precious").read_text() == "keep\n" and (root / "other").is_dir()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (runs a bundle)")
def test_a_bundle_with_hooks_is_refused_where_hooks_do_not_run(tmp_path):
    from pycontainer_magics.oci.bundle import BundleError, load_bundle

    rootfs = tmp_path / "b" / "rootfs"
    rootfs.mkdir(parents=True)
    config = {"ociVersion": "1.0.2", "root": {"path": "rootfs"}, "process": {"args": ["true"], "cwd": "/"},
              "hooks": {"prestart": [{"path": "/bin/true"}]}, "linux": {}}
    (tmp_path / "b" / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match="hooks/prestart: this path .* runs no hooks: run it with `pycontainer "
                                          "create` and `pycontainer start`"):
        load_bundle(str(tmp_path / "b"))


def _redirect(old: str, new: str) -> object:
    req = urllib.request.Request(old, headers={"Authorization": "Bearer secret"})
    return _NoRedirectAuth().redirect_request(req, io.BytesIO(), 302, "Found", {}, new)


def test_a_redirect_from_https_to_http_is_refused():
    with pytest.raises(RegistryError, match="registry.example: refused a redirect from https to "
                                            "http://cdn.example/blob: content fetched over https stays on https"):
        _redirect("https://registry.example/v2/a/blobs/sha256:1", "http://cdn.example/blob?sig=1")
    same = _redirect("https://registry.example/v2/a/blobs/sha256:1", "https://cdn.example/blob")
    assert same is not None and "Authorization" not in same.headers  # another host: no credentials
    assert _redirect("http://127.0.0.1:5000/v2/", "http://127.0.0.1:5000/v2/x") is not None  # loopback, plain
