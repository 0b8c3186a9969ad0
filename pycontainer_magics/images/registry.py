"""A client of the distribution API (https://distribution.github.io/distribution/spec/api/): pull and
push with anonymous bearer-token auth, multi-platform indexes resolved to the host, digests verified,
blobs already present skipped. Plain HTTP only for loopback registries (as Docker allows by default),
TLS otherwise."""

from __future__ import annotations

import ipaddress
import json
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import IO, Any

from . import schemas
from .errors import DigestMismatch, ImageNotFound, RegistryError, RegistryUnreachable
from .image import INDEX_TYPES, MANIFEST_TYPES, MT_DOCKER_LIST, MT_DOCKER_MANIFEST, MT_OCI_INDEX, MT_OCI_MANIFEST, Image
from .layout import select_platform
from .reference import Reference, parse_reference
from .store import ProgressCallback, ProgressEvent, Store, sha256_bytes

ACCEPT = ", ".join([MT_OCI_INDEX, MT_OCI_MANIFEST, MT_DOCKER_LIST, MT_DOCKER_MANIFEST])
TIMEOUT = 30.0


def is_loopback(host: str) -> bool:
    h = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    h = h.strip("[]")
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="..."`."""
    scheme, _, rest = header.strip().partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


class _NoRedirectAuth(urllib.request.HTTPRedirectHandler):
    """Follow redirects (blob downloads go to storage URLs) but drop our Authorization header when the
    host changes, and refuse one from https to plain http (a downgrade anyone on the path could then answer)."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        if urllib.parse.urlsplit(req.full_url).scheme == "https" and urllib.parse.urlsplit(newurl).scheme != "https":
            raise RegistryError(f"{urllib.parse.urlsplit(req.full_url).netloc}: refused a redirect from https to "
                                f"{newurl.split('?')[0]}: content fetched over https stays on https")
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            new.headers.pop("Authorization", None)
            new.unredirected_hdrs.pop("Authorization", None)
        return new


class RegistryClient:
    def __init__(self, registry: str, *, insecure: bool | None = None, timeout: float = TIMEOUT,
                 ssl_context: ssl.SSLContext | None = None):
        """registry: host[:port] as in a reference ("docker.io" talks to registry-1.docker.io).
        insecure: plain HTTP (default: only for loopback hosts)."""
        ref = Reference(registry, "x")
        self.registry = registry
        self.host = ref.endpoint
        self.scheme = "http" if (is_loopback(self.host) if insecure is None else insecure) else "https"
        self.base = f"{self.scheme}://{self.host}"
        self.timeout = timeout
        self.tokens: dict[str, str] = {}
        handlers: list[Any] = [_NoRedirectAuth()]
        if self.scheme == "https":
            handlers.append(urllib.request.HTTPSHandler(context=ssl_context or ssl.create_default_context()))
        self.opener = urllib.request.build_opener(*handlers)

    # -- HTTP -----------------------------------------------------------------------------------------------
    def _token(self, challenge: str, scope: str) -> str:
        scheme, params = parse_challenge(challenge)
        if scheme != "bearer" or "realm" not in params:
            raise RegistryError(f"{self.registry}: unsupported auth challenge {challenge!r} (anonymous bearer only)")
        q = {"service": params.get("service", "")}
        q["scope"] = scope or params.get("scope", "")
        url = params["realm"] + "?" + urllib.parse.urlencode({k: v for k, v in q.items() if v})
        try:
            with self.opener.open(urllib.request.Request(url), timeout=self.timeout) as r:
                doc = json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise RegistryError(f"{self.registry}: token request for {scope} refused: HTTP {e.code}") from None
        except (urllib.error.URLError, OSError) as e:
            raise RegistryUnreachable(f"{self.registry}: token server {params['realm']} unreachable: {e}") from None
        tok = doc.get("token") or doc.get("access_token")
        if not tok:
            raise RegistryError(f"{self.registry}: token server gave no token for {scope}")
        return str(tok)

    def request(self, method: str, path: str, *, scope: str, headers: dict[str, str] | None = None,
                data: bytes | IO[bytes] | None = None, ok: tuple[int, ...] = (200,), what: str = "") -> Any:
        """One request with auth retry; returns the open response (caller closes)."""
        url = path if path.startswith("http") else self.base + path
        for attempt in range(2):
            h = dict(headers or {})
            if scope in self.tokens:
                h["Authorization"] = f"Bearer {self.tokens[scope]}"
            req = urllib.request.Request(url, data=data, method=method, headers=h)  # type: ignore[arg-type,unused-ignore]
            try:
                resp = self.opener.open(req, timeout=self.timeout)
            except urllib.error.HTTPError as e:
                if e.code == 401 and attempt == 0 and e.headers.get("WWW-Authenticate"):
                    self.tokens[scope] = self._token(e.headers["WWW-Authenticate"], scope)
                    e.close()
                    continue
                if e.code in ok:
                    return e
                body = e.read(2000).decode("utf-8", "replace")
                e.close()
                raise self._error(e.code, body, what or f"{method} {url}") from None
            except (TimeoutError, urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", e)
                raise RegistryUnreachable(f"{self.registry}: cannot reach {self.base} ({reason})") from None
            if resp.status not in ok:
                resp.close()
                raise RegistryError(f"{what or method + ' ' + url}: unexpected HTTP {resp.status}")
            return resp
        raise RegistryError(f"{what}: not authorized (HTTP 401) even with a token")

    def _error(self, code: int, body: str, what: str) -> Exception:
        msg = ""
        errcode = ""
        try:
            errs = json.loads(body).get("errors") or []
            if errs:
                errcode = errs[0].get("code", "")
                msg = errs[0].get("message", "")
        except ValueError:
            msg = body.strip()[:200]
        detail = f"{errcode}: {msg}" if errcode else msg
        if code == 404 or errcode in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN"):
            return ImageNotFound(f"{what}: not found ({detail or 'HTTP 404'})")
        if code in (401, 403):
            return RegistryError(f"{what}: access denied (HTTP {code}{', ' + detail if detail else ''}); "
                                 "only anonymous access is supported")
        return RegistryError(f"{what}: HTTP {code}{', ' + detail if detail else ''}")

    # -- manifests and blobs --------------------------------------------------------------------------------
    def get_manifest(self, repo: str, reference: str) -> tuple[bytes, str, str]:
        """(raw manifest, media type, digest), verified when `reference` is a digest."""
        what = f"{self.registry}/{repo}:{reference}" if not reference.startswith("sha256:") \
            else f"{self.registry}/{repo}@{reference}"
        with self.request("GET", f"/v2/{repo}/manifests/{reference}", scope=f"repository:{repo}:pull",
                          headers={"Accept": ACCEPT}, what=what) as r:
            raw = r.read()
            mtype = (r.headers.get("Content-Type") or "").split(";")[0].strip()
        digest = sha256_bytes(raw)
        if reference.startswith("sha256:") and digest != reference:
            raise DigestMismatch(f"{what}: manifest hashes to {digest}, expected {reference}")
        try:
            doc = json.loads(raw)
        except ValueError:
            raise RegistryError(f"{what}: manifest is not JSON") from None
        mtype = doc.get("mediaType") or mtype
        return raw, mtype, digest

    def blob_exists(self, repo: str, digest: str) -> bool:
        resp = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", scope=f"repository:{repo}:pull", ok=(200, 404),
                            what=f"{self.registry}/{repo} blob {digest}")
        resp.close()
        return bool(resp.status == 200)

    def fetch_blob(self, store: Store, repo: str, desc: dict[str, Any], progress: ProgressCallback | None,
                   ref: str) -> None:
        digest, size = desc["digest"], desc["size"]
        with self.request("GET", f"/v2/{repo}/blobs/{digest}", scope=f"repository:{repo}:pull",
                          what=f"{self.registry}/{repo} blob {digest}") as r:
            def tick(n: int) -> None:
                if progress:
                    progress(ProgressEvent(ref, digest, "Downloading", n, size))
            try:
                store.put_blob(r, digest=digest, size=size, what=f"{ref}: blob", progress=tick)
            except (TimeoutError, OSError) as e:
                raise RegistryUnreachable(f"{ref}: download of {digest} failed ({e})") from None
        if progress:
            progress(ProgressEvent(ref, digest, "Verifying Checksum", size, size))
            progress(ProgressEvent(ref, digest, "Download complete", size, size))

    def upload_blob(self, store: Store, repo: str, digest: str, size: int, ref: str,
                    progress: ProgressCallback | None, mount_from: str | None = None) -> bool:
        """Monolithic upload (POST then PUT). Returns False when the registry already had it."""
        scope = f"repository:{repo}:pull,push"
        if self.blob_exists_scoped(repo, digest, scope):
            if progress:
                progress(ProgressEvent(ref, digest, "Layer already exists", size, size))
            return False
        with self.request("POST", f"/v2/{repo}/blobs/uploads/", scope=scope, ok=(202,), data=b"",
                          what=f"{ref}: start upload of {digest}") as r:
            location = r.headers["Location"]
        url = urllib.parse.urljoin(self.base + "/", location)
        url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"digest": digest})
        if progress:
            progress(ProgressEvent(ref, digest, "Pushing", 0, size))
        with open(store.blob_path(digest, verify=True), "rb") as f:
            self.request("PUT", url, scope=scope, data=f, ok=(201,), what=f"{ref}: upload of {digest}",
                         headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)}).close()
        if progress:
            progress(ProgressEvent(ref, digest, "Pushed", size, size))
        return True

    def blob_exists_scoped(self, repo: str, digest: str, scope: str) -> bool:
        resp = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", scope=scope, ok=(200, 404),
                            what=f"{self.registry}/{repo} blob {digest}")
        resp.close()
        return bool(resp.status == 200)

    def put_manifest(self, repo: str, reference: str, raw: bytes, media_type: str) -> str:
        scope = f"repository:{repo}:pull,push"
        self.request("PUT", f"/v2/{repo}/manifests/{reference}", scope=scope, data=raw, ok=(201,),
                     headers={"Content-Type": media_type}, what=f"{self.registry}/{repo}:{reference}").close()
        return sha256_bytes(raw)

    def tags(self, repo: str) -> list[str]:
        with self.request("GET", f"/v2/{repo}/tags/list", scope=f"repository:{repo}:pull",
                          what=f"{self.registry}/{repo} tags") as r:
            return list(json.loads(r.read()).get("tags") or [])


def pull(store: Store, ref: str, *, platform: tuple[str, str, str] | None = None,
         progress: ProgressCallback | None = None, insecure: bool | None = None, timeout: float = TIMEOUT) -> Image:
    """Pull `ref` into the store; layers already present are skipped ("Already exists"). On any error
    (unknown tag, digest mismatch, unreachable registry) nothing it added stays in the store."""
    r = parse_reference(ref)
    client = RegistryClient(r.registry, insecure=insecure, timeout=timeout)
    name = str(r)
    reference = r.digest or r.tag or "latest"
    raw, mtype, digest = client.get_manifest(r.repository, reference)
    if mtype in INDEX_TYPES:
        index = json.loads(raw)
        schemas.validate("index", index, f"{name}: index {digest}")
        desc = select_platform(index, name, platform)
        raw, mtype, digest = client.get_manifest(r.repository, desc["digest"])
    if mtype not in MANIFEST_TYPES:
        raise RegistryError(f"{name}: unsupported manifest media type {mtype!r}")
    manifest = json.loads(raw)
    schemas.validate("manifest", manifest, f"{name}: manifest {digest}")
    with store.transaction():
        cfg = manifest["config"]
        if not store.has_blob(cfg["digest"]):
            client.fetch_blob(store, r.repository, cfg, None, name)
        for layer in manifest["layers"]:
            if store.has_blob(layer["digest"]):
                if progress:
                    progress(ProgressEvent(name, layer["digest"], "Already exists", layer["size"], layer["size"]))
                continue
            client.fetch_blob(store, r.repository, layer, progress, name)
        refs = (name,) if r.tag else ()
        return store.add_image(raw, refs=refs, repo_digest=f"{r.name}@{digest}", progress=progress)


def push(store: Store, source: str, dest: str | None = None, *, progress: ProgressCallback | None = None,
         insecure: bool | None = None, timeout: float = TIMEOUT) -> str:
    """Push an image of the store (by ref or id) to `dest` (default: its ref). Returns the manifest
    digest. Blobs the registry has are skipped ("Layer already exists")."""
    img = store.get(source)
    img.require_portable("push")
    r = parse_reference(dest or source)
    client = RegistryClient(r.registry, insecure=insecure, timeout=timeout)
    name = str(r)
    raw = store.read_blob(img.manifest_digest)
    for layer in img.layers:
        client.upload_blob(store, r.repository, layer.digest, layer.size, name, progress)
    client.upload_blob(store, r.repository, img.id, len(store.read_blob(img.id)), name, None)
    return client.put_manifest(r.repository, r.tag or img.manifest_digest, raw, img.manifest_media_type)
