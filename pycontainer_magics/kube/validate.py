"""Kubernetes YAML, checked offline: read the documents, validate each against the Kubernetes OpenAPI
schema of a stated version (`kubernetes-validate`, strict: unknown fields are errors), and make the
checks the schema cannot: quantities (`memory: 12QB` passes the schema, the API server refuses it),
one name per container of a pod, an image for every container.

    docs = load_documents(text)              # KubeError: not YAML, not a mapping, no kind/apiVersion
    checks = validate_documents(docs)        # one DocumentCheck per document and version
    lint(doc)                                # KubeError naming the field path of the first problem
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .errors import KubeError, field_path
from .quantity import QuantityError, parse_quantity

OLDEST = "1.30"  # the oldest Kubernetes this project's YAML is checked against (hostUsers: beta there)


def newest() -> str:
    """The newest Kubernetes version the installed kubernetes-validate knows (major.minor)."""
    from kubernetes_validate import utils

    return str(utils.major_minor(utils.latest_version()))


def versions() -> tuple[str, ...]:
    """The versions every document is checked against: 1.30 and the newest known."""
    n = newest()
    return (OLDEST,) if n == OLDEST else (OLDEST, n)


def describe(doc: dict[str, Any]) -> str:
    """`pod/web`, as kubectl names a resource."""
    kind = doc.get("kind") if isinstance(doc.get("kind"), str) else "?"
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    name = name if isinstance(name, str) else "?"
    return f"{str(kind).lower()}/{name}"


def load_documents(text: str, source: str = "the YAML") -> list[dict[str, Any]]:
    """Every non-empty document of a multi-document YAML text, each a mapping with apiVersion, kind and
    metadata.name. KubeError (one line) on anything else."""
    import yaml

    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise KubeError(f"{source} is not valid YAML{where}: {problem}") from None
    if not docs:
        raise KubeError(f"{source} has no document: expected a Pod, Deployment, Service, ConfigMap or "
                        "PersistentVolumeClaim")
    for i, d in enumerate(docs):
        where = f"document {i + 1}" if len(docs) > 1 else "the document"
        if not isinstance(d, dict):
            raise KubeError(f"{where} is a {type(d).__name__}, not a mapping with apiVersion, kind and metadata")
        for key in ("apiVersion", "kind"):
            if not isinstance(d.get(key), str) or not d[key]:
                raise KubeError(f"{where} ({describe(d)}): {key}: missing (every document needs apiVersion, kind "
                                "and metadata.name)")
        meta = d.get("metadata")
        if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
            raise KubeError(f"{where} ({describe(d)}): metadata.name: missing")
    return docs


# -- the checks the schema cannot make ---------------------------------------------------------------

QUANTITY_KEYS = {"limits", "requests", "podFixed", "capacity", "hard"}  # mappings of name -> quantity


def _walk(v: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield path, v
    if isinstance(v, dict):
        for k, x in v.items():
            yield from _walk(x, (*path, k))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from _walk(x, (*path, i))


def _quantities(doc: dict[str, Any]) -> Iterator[tuple[tuple[Any, ...], Any]]:
    for path, v in _walk(doc, ()):
        if path and path[-1] == "sizeLimit" and not isinstance(v, dict | list):
            yield path, v
        elif path and path[-1] in QUANTITY_KEYS and isinstance(v, dict):
            for k, q in v.items():
                yield (*path, k), q


def pod_spec_path(doc: dict[str, Any]) -> tuple[Any, ...] | None:
    """Where the pod spec of a workload document sits (Pod: spec; Deployment, Job...: spec.template.spec)."""
    kind = doc.get("kind")
    if kind == "Pod":
        return ("spec",)
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return ("spec", "template", "spec")
    if kind == "CronJob":
        return ("spec", "jobTemplate", "spec", "template", "spec")
    return None


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        if isinstance(doc, dict):
            doc = doc.get(p)
        elif isinstance(doc, list) and isinstance(p, int) and p < len(doc):
            doc = doc[p]
        else:
            return None
    return doc


def problems(doc: dict[str, Any]) -> Iterator[str]:
    """What the API server would refuse that the schema lets through: `path: message`, each."""
    for path, q in _quantities(doc):
        try:
            parse_quantity(q)
        except QuantityError as e:
            yield f"{field_path(path)}: {e}"
    where = pod_spec_path(doc)
    if where is None:
        return
    spec = _at(doc, where)
    if not isinstance(spec, dict):
        return
    seen: dict[str, str] = {}
    for group in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(group) or []):
            if not isinstance(c, dict):
                continue
            p = (*where, group, i)
            name = c.get("name")
            if isinstance(name, str):
                if name in seen:
                    yield (f"{field_path((*p, 'name'))}: {name!r} is also the name of {seen[name]}: each container "
                           "of a pod needs a name of its own")
                seen[name] = field_path(p)
            if not c.get("image"):
                yield f"{field_path((*p, 'image'))}: missing: every container needs an image (like busybox:1.36)"
    if not spec.get("containers"):
        yield f"{field_path((*where, 'containers'))}: missing: a pod needs at least one container"


def lint(doc: dict[str, Any]) -> None:
    """KubeError for the first problem `problems` finds."""
    for p in problems(doc):
        raise KubeError(f"{describe(doc)}: {p}")


# -- schema validation ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DocumentCheck:
    """One document checked against one Kubernetes version."""

    resource: str  # kind/name
    version: str  # Kubernetes major.minor
    ok: bool
    message: str = ""  # `path: what is wrong` when not ok

    def __str__(self) -> str:
        mark = "valid" if self.ok else f"INVALID: {self.message}"
        return f"{self.resource}: {mark} (Kubernetes {self.version})"


def available() -> bool:
    try:
        import kubernetes_validate  # noqa: F401
    except ImportError:
        return False
    return True


def check(doc: dict[str, Any], version: str) -> DocumentCheck:
    """`doc` against Kubernetes `version`'s OpenAPI schema (strict), then `problems`."""
    from kubernetes_validate import utils

    res = describe(doc)
    try:
        utils.validate(doc, version, strict=True)
    except utils.ValidationError as e:
        parts = list(e.absolute_path)
        msg = str(e.message)
        if e.validator == "additionalProperties" and isinstance(e.instance, dict):
            known = list(e.schema.get("properties") or {})
            extra = sorted(set(e.instance) - set(known))
            if extra:
                import difflib

                close = difflib.get_close_matches(str(extra[0]), known, n=1)
                parts.append(extra[0])
                msg = "unknown field" + (f" (did you mean {close[0]!r}?)" if close else "")
        return DocumentCheck(res, version, False, f"{field_path(parts) or '(the document)'}: {msg}")
    except utils.SchemaNotFoundError:
        return DocumentCheck(res, version, False, f"kind: {doc.get('kind')!r} with apiVersion "
                             f"{doc.get('apiVersion')!r} is not a Kubernetes resource (like Pod v1, Deployment "
                             "apps/v1, Service v1, ConfigMap v1)")
    except utils.VersionNotSupportedError:
        raise KubeError(f"kubernetes-validate {_kv_version()} does not know Kubernetes {version} "
                        f"(it knows {OLDEST} to {newest()})") from None
    for p in problems(doc):
        return DocumentCheck(res, version, False, p)
    return DocumentCheck(res, version, True)


def _kv_version() -> str:
    from kubernetes_validate.version import __version__

    return str(__version__)


def validate_documents(docs: list[dict[str, Any]], versions_: tuple[str, ...] | None = None) -> list[DocumentCheck]:
    """Each document against each version (1.30 and the newest by default)."""
    if not available():
        raise KubeError("validating Kubernetes YAML needs the kubernetes-validate package: "
                        "pip install 'pycontainer_magics[kube]'")
    vs = versions_ or versions()
    return [check(d, v) for d in docs for v in vs]


__all__ = ["OLDEST", "DocumentCheck", "available", "check", "describe", "lint", "load_documents", "newest",
           "pod_spec_path", "problems", "validate_documents", "versions"]
