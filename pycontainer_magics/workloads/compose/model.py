"""A compose file as typed data: parse the YAML, interpolate `${VAR}`, validate (JSON schema, then the
checks a schema cannot make), and normalise every short and long syntax into frozen dataclasses.

    cf = load(text, project="demo")      # ComposeError: one line naming the service and the key
    cf.levels()                           # start order, level by level (depends_on)

Nothing here touches the kernel: a file is checked completely before anything is created.
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from ...errors import InvalidInput
from ...runtime.parse import parse_cpus, parse_duration, parse_size, parse_ulimit
from ...runtime.spec import ContainerSpec, SpecError
from . import schema


class ComposeError(InvalidInput):
    """The compose file is invalid, or the project cannot be brought up/down: one line."""


# -- the model ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Healthcheck:
    test: tuple[str, ...]  # argv to exec in the container (CMD-SHELL became /bin/sh -c)
    interval: float = 30.0
    timeout: float = 30.0
    retries: int = 3
    start_period: float = 0.0


@dataclass(frozen=True)
class Dependency:
    service: str
    condition: str = "service_started"  # service_healthy | service_completed_successfully
    required: bool = True


@dataclass(frozen=True)
class Restart:
    policy: str = "no"  # no | always | on-failure | unless-stopped
    max_retries: int | None = None  # on-failure:N

    def wants(self, exit_code: int | None, restarts: int) -> bool:
        """Restart after an exit with `exit_code`, having restarted `restarts` times already?"""
        if self.policy in ("always", "unless-stopped"):
            return True
        if self.policy == "on-failure" and exit_code != 0:
            return self.max_retries is None or restarts < self.max_retries
        return False


@dataclass(frozen=True)
class Build:
    context: str  # absolute
    dockerfile: str  # absolute
    args: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class VolumeMount:
    kind: str  # volume | bind | tmpfs
    source: str  # volume key (top-level `volumes:`), absolute host path, or "" for tmpfs
    target: str
    read_only: bool = False
    size: int | None = None  # tmpfs


@dataclass(frozen=True)
class Port:
    host_ip: str
    host_port: int  # 0: picked by the kernel
    container_port: int
    proto: str = "tcp"

    def __str__(self) -> str:
        return f"{self.host_ip}:{self.host_port}:{self.container_port}/{self.proto}"


@dataclass(frozen=True)
class Service:
    name: str
    image: str | None = None
    build: Build | None = None
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    environment: tuple[tuple[str, str], ...] = ()
    ports: tuple[Port, ...] = ()
    expose: tuple[str, ...] = ()
    volumes: tuple[VolumeMount, ...] = ()
    networks: tuple[str, ...] = ("default",)  # keys of the top-level `networks:`
    aliases: tuple[str, ...] = ()
    depends_on: tuple[Dependency, ...] = ()
    healthcheck: Healthcheck | None = None
    restart: Restart = Restart()
    memory: int | None = None
    memory_swap: int | None = None
    cpus: float | None = None
    cpu_shares: int | None = None
    cpuset: str | None = None
    pids_limit: int | None = None
    hostname: str | None = None
    working_dir: str | None = None
    user: str | None = None
    container_name: str | None = None
    read_only: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    stop_grace_period: float = 10.0
    labels: tuple[tuple[str, str], ...] = ()
    ulimits: tuple[str, ...] = ()  # as --ulimit takes them: "nofile=1024:2048"


@dataclass(frozen=True)
class NetworkDef:
    key: str
    name: str  # on the host: <project>_<key>, or `name:`
    external: bool = False
    internal: bool = False
    subnet: str | None = None
    gateway: str | None = None


@dataclass(frozen=True)
class VolumeDef:
    key: str
    name: str  # in the volume store: <project>_<key>, or `name:`
    external: bool = False


@dataclass(frozen=True)
class ComposeFile:
    project: str
    services: dict[str, Service]
    networks: dict[str, NetworkDef] = field(default_factory=dict)
    volumes: dict[str, VolumeDef] = field(default_factory=dict)
    workdir: str = "/"  # relative paths (bind sources, build contexts) are relative to this

    def levels(self) -> list[list[str]]:
        """Start order: services grouped in levels; each depends only on earlier levels."""
        return start_levels(self.services)

    def image_of(self, service: str) -> str:
        s = self.services[service]
        return s.image or f"{self.project}-{service.lower()}"  # an image reference has no capitals

    def container_name(self, service: str) -> str:
        return self.services[service].container_name or f"{self.project}-{service}-1"


# -- loading ------------------------------------------------------------------------------------------

PROJECT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def normalize_project_name(name: str) -> str:
    """Docker compose's rule: lowercase letters, digits, '-' and '_', starting with a letter or digit."""
    out = re.sub(r"[^a-z0-9_-]", "", name.lower()).lstrip("_-")
    return out or "default"


def default_project_name(workdir: str | None = None) -> str:
    return normalize_project_name(os.path.basename(os.path.abspath(workdir or os.getcwd())))


def load(text: str, project: str | None = None, workdir: str | None = None,
         environ: dict[str, str] | None = None) -> ComposeFile:
    """Parse, interpolate, validate and normalise a compose file. ComposeError on any problem."""
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ComposeError(f"the compose file is not valid YAML{where}: {problem}") from None
    if doc is None:
        raise ComposeError("the compose file is empty: it needs at least `services:` with one service")
    if not isinstance(doc, dict):
        raise ComposeError(f"the compose file must be a mapping with `services:`, not a {_type(doc)}")
    doc = _interpolate(doc, os.environ if environ is None else environ, ())
    _check_schema(doc)
    workdir = os.path.abspath(workdir or os.getcwd())
    name = project or doc.get("name") or default_project_name(workdir)
    if not PROJECT_RE.match(name):
        raise ComposeError(f"invalid project name {name!r}: lowercase letters, digits, '-' and '_', starting "
                           "with a letter or digit")
    services = doc.get("services") or {}
    if not services:
        raise ComposeError("the compose file defines no service: add one under `services:`")
    networks = {k: _network(name, k, v) for k, v in (doc.get("networks") or {}).items()}
    volumes = {k: _volume(name, k, v) for k, v in (doc.get("volumes") or {}).items()}
    parsed = {k: _service(k, v or {}, workdir) for k, v in services.items()}
    if any("default" in s.networks for s in parsed.values()) and "default" not in networks:
        networks["default"] = NetworkDef("default", f"{name}_default")
    cf = ComposeFile(name, parsed, networks, volumes, workdir)
    _check_references(cf)
    cf.levels()  # a cycle is an error
    return cf


def _type(v: Any) -> str:
    return {dict: "mapping", list: "list", str: "string", int: "number", float: "number", bool: "boolean",
            type(None): "null"}.get(type(v), type(v).__name__)


# -- interpolation ------------------------------------------------------------------------------------

_VAR = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


def _interpolate(v: Any, env: Any, path: tuple[str, ...]) -> Any:
    """`${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`, `$VAR`; `$$` is a literal `$`."""
    if isinstance(v, dict):
        return {k: _interpolate(x, env, (*path, str(k))) for k, x in v.items()}
    if isinstance(v, list):
        return [_interpolate(x, env, path) for x in v]
    if not isinstance(v, str) or "$" not in v:
        return v

    def sub(m: re.Match[str]) -> str:
        if m.group(1):
            return "$"
        name = m.group(2) or m.group(5)
        op, arg = m.group(3), m.group(4) or ""
        val = env.get(name)
        if op in (":-", ":?") and not val or op in ("-", "?") and val is None:
            if op.endswith("?"):
                raise ComposeError(f"{_where(path)}: required variable {name} is missing a value: {arg}")
            return arg
        return val or ""

    try:
        return _VAR.sub(sub, v)
    except ComposeError:
        raise


def _where(path: tuple[str, ...] | list[Any]) -> str:
    p = [str(x) for x in path]
    if len(p) >= 2 and p[0] == "services":
        return f"service {p[1]!r}" + (f": {p[2]!r}" if len(p) > 2 else "")
    if len(p) >= 2 and p[0] in ("networks", "volumes"):
        return f"{p[0][:-1]} {p[1]!r}" + (f": {p[2]!r}" if len(p) > 2 else "")
    return f"{p[0]!r}" if p else "the compose file"


# -- schema -------------------------------------------------------------------------------------------

_HINTS = {
    "ports": "is not HOST:CONTAINER (like \"8080:80\", \"127.0.0.1:8080:80/tcp\" or a mapping with target "
             "and published)",
    "command": "must be a string or a list of strings",
    "entrypoint": "must be a string or a list of strings",
    "environment": "must be a list of NAME=VALUE strings or a mapping NAME: VALUE",
    "labels": "must be a list of NAME=VALUE strings or a mapping NAME: VALUE",
    "depends_on": "must be a list of service names or a mapping SERVICE: {condition: service_started|"
                  "service_healthy|service_completed_successfully}",
    "networks": "must be a list of network names or a mapping NETWORK: {aliases: [...]}",
    "volumes": "is not SOURCE:TARGET[:ro] (a volume name or a host path) or a mapping with type, source and "
               "target",
    "build": "must be a context directory or a mapping with context and dockerfile",
    "tmpfs": "must be a path or a list of paths, like /run:size=64m",
    "restart": "is not one of no, always, on-failure[:N], unless-stopped",
    "test": "must be a string (run by /bin/sh -c) or a list [\"CMD\", ...], [\"CMD-SHELL\", \"...\"] or "
            "[\"NONE\"]",
    "container_name": "is not a valid name (letters, digits, '_', '.', '-')",
}


def _check_schema(doc: dict[str, Any]) -> None:
    from ...linux.jsonschema_import import import_jsonschema

    js = import_jsonschema()
    # Keys first: "unknown key" is the clearest message, and what `docker compose config` says too.
    for k in doc:
        if k not in schema.COMPOSE["properties"] and not str(k).startswith("x-"):
            raise ComposeError(_unknown(f"top-level key {k!r}", str(k), schema.TOP_KEYS, schema.UNSUPPORTED_TOP))
    services = doc.get("services")
    if isinstance(services, dict):
        for name, svc in services.items():
            if not isinstance(svc, dict):
                if svc is None:
                    continue
                raise ComposeError(f"service {name!r} must be a mapping of keys (image, command, ...), "
                                   f"not a {_type(svc)}")
            for k in svc:
                if k not in schema.SERVICE["properties"] and not str(k).startswith("x-"):
                    raise ComposeError(f"service {name!r}: " + _unknown(f"key {k!r}", str(k), schema.SERVICE_KEYS,
                                                                        schema.UNSUPPORTED_SERVICE))
    validator = js.Draft202012Validator(schema.COMPOSE)
    err = js.exceptions.best_match(validator.iter_errors(doc))
    if err is None:
        return
    path = list(err.absolute_path)
    raise ComposeError(_describe(err, path))


def _unknown(what: str, key: str, known: list[str], unsupported: set[str]) -> str:
    if key in unsupported:
        return f"{what} is not supported by %%compose (supported: {', '.join(known)})"
    close = difflib.get_close_matches(key, known, n=1)
    return f"unknown {what}" + (f": did you mean {close[0]!r}?" if close else f" (known: {', '.join(known)})")


def _describe(err: Any, path: list[Any]) -> str:
    value = err.instance
    entry = bool(path) and isinstance(path[-1], int)
    keys = [str(p) for p in path if not isinstance(p, int)]
    if keys[:1] == ["services"] and len(keys) >= 3:
        dotted = ".".join(keys[2:])
        where, key = f"service {keys[1]!r}: {dotted!r}", keys[-1]
    elif keys[:1] in (["networks"], ["volumes"]) and len(keys) >= 2:
        where = f"{keys[0][:-1]} {keys[1]!r}" + (f": {'.'.join(keys[2:])!r}" if len(keys) > 2 else "")
        key = keys[-1]
    elif keys:
        where, key = f"{'.'.join(keys)!r}", keys[-1]
    else:
        where, key = "the compose file", ""
    if entry:
        where += f" entry {_short(value)}"
    if err.validator == "additionalProperties":
        extra = sorted(set(value) - set(err.schema.get("properties", {})))
        known = sorted(err.schema.get("properties", {}))
        return f"{where}: unknown key {extra[0]!r}" + (f" (known: {', '.join(known)})" if known else "")
    if err.validator in ("pattern", "oneOf") and key in _HINTS:
        return f"{where} {_HINTS[key]}"
    if err.validator == "type":
        want = err.validator_value
        want = " or ".join(want) if isinstance(want, list) else want
        return f"{where} must be a {want}, not a {_type(value)} ({_short(value)})"
    if err.validator == "enum":
        return f"{where} is {_short(value)}: expected one of {', '.join(map(str, err.validator_value))}"
    if err.validator == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        return f"{where} has no {missing!r}" if path else f"the compose file has no {missing!r} section"
    if err.validator == "pattern":
        return f"{where} {_short(value)} is not valid (expected to match {err.validator_value})"
    if err.validator == "minimum":
        return f"{where} is {_short(value)}: must be at least {err.validator_value}"
    return f"{where}: {err.message}"


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


# -- normalising ----------------------------------------------------------------------------------------


def _network(project: str, key: str, v: dict[str, Any] | None) -> NetworkDef:
    v = v or {}
    cfg = ((v.get("ipam") or {}).get("config") or [{}])[0]
    name = v.get("name") or (key if v.get("external") else f"{project}_{key}")
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", name):
        raise ComposeError(f"network {key!r}: the name {name!r} is not a valid network name (letters, digits, '_', "
                           "'.', '-', at most 64 characters)")
    return NetworkDef(key, name, bool(v.get("external")), bool(v.get("internal")), cfg.get("subnet"),
                      cfg.get("gateway"))


def _volume(project: str, key: str, v: dict[str, Any] | None) -> VolumeDef:
    v = v or {}
    name = v.get("name") or (key if v.get("external") else f"{project}_{key}")
    return VolumeDef(key, name, bool(v.get("external")))


def _argv(v: Any) -> tuple[str, ...] | None:
    if v is None:
        return None
    if isinstance(v, str):
        return tuple(shlex.split(v))  # compose splits a string command like a shell would, without a shell
    return tuple(v)


def _pairs(v: Any, svc: str, key: str) -> tuple[tuple[str, str], ...]:
    out: dict[str, str] = {}
    if isinstance(v, dict):
        for k, x in v.items():
            if x is None:
                if k in os.environ:
                    out[k] = os.environ[k]
                continue
            out[str(k)] = ("true" if x else "false") if isinstance(x, bool) else str(x)
    else:
        for item in v or []:
            k, eq, x = item.partition("=")
            if not k:
                raise ComposeError(f"service {svc!r}: {key!r} entry {item!r} is not NAME=VALUE")
            if eq:
                out[k] = x
            elif k in os.environ:
                out[k] = os.environ[k]
    return tuple(out.items())


def _fail(svc: str, key: str, msg: str) -> ComposeError:
    return ComposeError(f"service {svc!r}: {key!r} {msg}")


def _size(v: Any, svc: str, key: str) -> int:
    try:
        return parse_size(v, key)
    except SpecError:
        raise _fail(svc, key, f"is {v!r}, not a size (like 64m, 1g or a number of bytes)") from None


def _duration(v: Any, svc: str, key: str) -> float:
    try:
        return parse_duration(v, key)
    except SpecError:
        raise _fail(svc, key, f"is {v!r}, not a duration (like 1s, 500ms or 1m30s)") from None


def _port(v: Any, svc: str) -> Port:
    if isinstance(v, dict):
        host_ip, published, target = v.get("host_ip", "127.0.0.1"), v.get("published", 0), v["target"]
        proto = v.get("protocol", "tcp")
        try:
            host = int(published)
        except ValueError:
            raise _fail(svc, "ports", f"entry {v!r}: published {published!r} is not a port number") from None
        ctr = int(target)
    else:
        text = str(v)
        rest, _, proto = text.partition("/")
        proto = proto or "tcp"
        parts = rest.rsplit(":", 2)
        if len(parts) == 1:
            host_ip, host, ctr = "127.0.0.1", 0, int(parts[0])
        elif len(parts) == 2:
            host_ip, host, ctr = "127.0.0.1", int(parts[0]), int(parts[1])
        else:
            host_ip, host, ctr = parts[0].strip("[]"), int(parts[1]), int(parts[2])
    if not (0 <= host <= 65535 and 0 < ctr <= 65535):
        raise _fail(svc, "ports", f"entry {str(v)!r} has a port out of range (1-65535)")
    if proto != "tcp":
        raise _fail(svc, "ports", f"entry {str(v)!r}: only tcp ports are published here (a userspace proxy)")
    return Port(host_ip, host, ctr, proto)


def _volume_mount(v: Any, svc: str, workdir: str) -> VolumeMount:
    if isinstance(v, dict):
        kind, source, target = v["type"], v.get("source", ""), v["target"]
        size = None
        if kind == "tmpfs":
            t = v.get("tmpfs") or {}
            size = _size(t["size"], svc, "volumes") if "size" in t else None
            source = ""
        elif not source:
            raise _fail(svc, "volumes", f"entry for {target!r} has no source: anonymous volumes are not supported, "
                        "name one in the top-level `volumes:`")
        ro = bool(v.get("read_only"))
    else:
        parts = str(v).split(":")
        if len(parts) == 1:
            raise _fail(svc, "volumes", f"entry {v!r} has no source: anonymous volumes are not supported, "
                        "use NAME:TARGET with NAME in the top-level `volumes:`")
        if len(parts) > 3 or not parts[0] or not parts[1]:
            raise _fail(svc, "volumes", f"entry {v!r} is not SOURCE:TARGET[:ro]")
        source, target = parts[0], parts[1]
        ro = False
        for opt in (parts[2].split(",") if len(parts) == 3 else []):
            if opt == "ro":
                ro = True
            elif opt not in ("rw", "z", "Z"):
                raise _fail(svc, "volumes", f"entry {v!r}: unknown option {opt!r} (ro or rw)")
        kind = "bind" if source.startswith(("/", ".", "~")) else "volume"
        size = None
    if kind == "bind":
        source = os.path.normpath(os.path.join(workdir, os.path.expanduser(source)))
        if not os.path.exists(source):
            raise _fail(svc, "volumes", f"entry {str(v)!r}: bind source {source} does not exist")
    if not str(target).startswith("/") or os.path.normpath(target) == "/":
        raise _fail(svc, "volumes", f"entry {str(v)!r}: the target {target!r} must be an absolute path other "
                    "than /")
    return VolumeMount(kind, source, os.path.normpath(target), ro, size)


def _healthcheck(v: dict[str, Any] | None, svc: str) -> Healthcheck | None:
    if not v or v.get("disable"):
        return None
    test = v.get("test")
    if test is None:
        raise _fail(svc, "healthcheck", "has no test (like test: [\"CMD\", \"true\"])")
    if isinstance(test, str):
        argv: tuple[str, ...] = ("/bin/sh", "-c", test)
    elif not test:
        raise _fail(svc, "healthcheck.test", "is an empty list")
    elif test[0] == "NONE":
        return None
    elif test[0] == "CMD-SHELL":
        if len(test) != 2:
            raise _fail(svc, "healthcheck.test", "[\"CMD-SHELL\", COMMAND] takes one command string")
        argv = ("/bin/sh", "-c", test[1])
    elif test[0] == "CMD":
        if len(test) < 2:
            raise _fail(svc, "healthcheck.test", "[\"CMD\", ARGS...] needs a command")
        argv = tuple(test[1:])
    else:
        raise _fail(svc, "healthcheck.test", f"starts with {test[0]!r}: expected CMD, CMD-SHELL or NONE")
    hc = Healthcheck(argv)
    d = {k: _duration(v[k], svc, f"healthcheck.{k}") for k in ("interval", "timeout", "start_period") if k in v}
    for k, x in d.items():
        if k != "start_period" and x <= 0:
            raise _fail(svc, f"healthcheck.{k}", "must be longer than 0s")
    return Healthcheck(argv, d.get("interval", hc.interval), d.get("timeout", hc.timeout),
                       int(v.get("retries", hc.retries)), d.get("start_period", hc.start_period))


def _service(name: str, v: dict[str, Any], workdir: str) -> Service:
    if not re.match(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$", name):
        raise ComposeError(f"invalid service name {name!r}: letters, digits, '_', '.', '-'")
    if "image" not in v and "build" not in v:
        raise ComposeError(f"service {name!r} has neither 'image' nor 'build': give one (image: host runs the "
                           "host's / as the image)")
    build = _build(name, v, workdir)
    image = v.get("image")
    command, entrypoint = _argv(v.get("command")), _argv(v.get("entrypoint"))
    if image == "host" and not command and not entrypoint:
        raise _fail(name, "command", "is needed with image host (the host's / has no CMD)")
    networks, aliases = _networks(name, v)
    deps = _depends_on(v)
    restart = _restart(v)
    memory, cpus, pids = _limits(name, v)
    vols = _mounts(name, v, workdir)
    user = v.get("user")
    return Service(
        name=name, image=image, build=build, command=command, entrypoint=entrypoint,
        environment=_pairs(v.get("environment"), name, "environment"),
        ports=tuple(_port(p, name) for p in v.get("ports") or []),
        expose=tuple(str(e) if "/" in str(e) else f"{e}/tcp" for e in v.get("expose") or []),
        volumes=tuple(vols), networks=networks, aliases=tuple(dict.fromkeys(aliases)), depends_on=tuple(deps),
        healthcheck=_healthcheck(v.get("healthcheck"), name), restart=restart, memory=memory,
        memory_swap=_size(v["memswap_limit"], name, "memswap_limit") if "memswap_limit" in v else None,
        cpus=cpus, cpu_shares=v.get("cpu_shares"), cpuset=v.get("cpuset"), pids_limit=pids,
        hostname=v.get("hostname"), working_dir=v.get("working_dir"),
        user=None if user is None else str(user), container_name=v.get("container_name"),
        read_only=bool(v.get("read_only")), cap_add=tuple(v.get("cap_add") or ()),
        cap_drop=tuple(v.get("cap_drop") or ()),
        stop_grace_period=_duration(v["stop_grace_period"], name, "stop_grace_period")
        if "stop_grace_period" in v else 10.0,
        labels=_pairs(v.get("labels"), name, "labels"),
        ulimits=_ulimits(v.get("ulimits") or {}, name),
    )




def _build(name: str, v: dict[str, Any], workdir: str) -> Build | None:
    """`build:` (a context, or context, dockerfile and args)."""
    build = None
    if "build" in v:
        b = v["build"] if isinstance(v["build"], dict) else {"context": v["build"]}
        ctx = os.path.normpath(os.path.join(workdir, b.get("context", ".")))
        if not os.path.isdir(ctx):
            raise _fail(name, "build", f"context {ctx} is not a directory")
        df = os.path.join(ctx, b.get("dockerfile", "Dockerfile"))
        if not os.path.isfile(df):
            raise _fail(name, "build", f"dockerfile {df} does not exist")
        build = Build(ctx, df, _pairs(b.get("args"), name, "build.args"))
    return build


def _networks(name: str, v: dict[str, Any]) -> tuple[tuple[str, ...], list[str]]:
    """`networks:` (a list, or a map with aliases); none given: the project's default."""
    nets = v.get("networks")
    aliases: list[str] = []
    if nets is None:
        networks: tuple[str, ...] = ("default",)
    elif isinstance(nets, list):
        networks = tuple(nets)
    else:
        networks = tuple(nets)
        for cfg in nets.values():
            aliases += (cfg or {}).get("aliases", [])
    if not networks:
        raise _fail(name, "networks", "is empty: leave it out for the project's default network")
    return networks, aliases


def _depends_on(v: dict[str, Any]) -> list[Dependency]:
    """`depends_on:` (a list, or a map with conditions)."""
    deps: list[Dependency] = []
    d = v.get("depends_on") or []
    if isinstance(d, list):
        deps = [Dependency(x) for x in d]
    else:
        deps = [Dependency(k, (c or {}).get("condition", "service_started"), (c or {}).get("required", True))
                for k, c in d.items()]
    return deps


def _restart(v: dict[str, Any]) -> Restart:
    """`restart:`, or `deploy.restart_policy` (which wins)."""
    restart = Restart()
    if "restart" in v:
        policy, _, n = v["restart"].partition(":")
        restart = Restart(policy, int(n) if n else None)
    rp = (v.get("deploy") or {}).get("restart_policy")
    if rp:
        cond = {"none": "no", "any": "always"}.get(rp.get("condition", "any"), rp.get("condition", "any"))
        restart = Restart(cond, rp.get("max_attempts"))
    return restart


def _limits(name: str, v: dict[str, Any]) -> tuple[int | None, float | None, Any]:
    """Memory, CPUs and pids from the service's keys and `deploy.resources.limits` (both given: they must agree)."""
    limits = ((v.get("deploy") or {}).get("resources") or {}).get("limits") or {}
    memory = _size(v["mem_limit"], name, "mem_limit") if "mem_limit" in v else None
    if "memory" in limits:
        lm = _size(limits["memory"], name, "deploy.resources.limits.memory")
        if memory is not None and memory != lm:
            raise _fail(name, "mem_limit", f"and deploy.resources.limits.memory disagree ({v['mem_limit']} vs "
                        f"{limits['memory']}): give one")
        memory = lm
    cpus = None
    for key, val in (("cpus", v.get("cpus")), ("deploy.resources.limits.cpus", limits.get("cpus"))):
        if val is None:
            continue
        try:
            c = parse_cpus(val)
        except SpecError:
            raise _fail(name, key, f"is {val!r}, not a number of CPUs (like 0.5)") from None
        if cpus is not None and c != cpus:
            raise _fail(name, "cpus", "and deploy.resources.limits.cpus disagree: give one")
        cpus = c
    pids = v.get("pids_limit")
    if "pids" in limits:
        if pids is not None and pids != limits["pids"]:
            raise _fail(name, "pids_limit", "and deploy.resources.limits.pids disagree: give one")
        pids = limits["pids"]
    return memory, cpus, pids


def _mounts(name: str, v: dict[str, Any], workdir: str) -> list[VolumeMount]:
    """`volumes:` and `tmpfs:`, one mount per target."""
    tmpfs = v.get("tmpfs") or []
    vols = [_volume_mount(x, name, workdir) for x in v.get("volumes") or []]
    for t in [tmpfs] if isinstance(tmpfs, str) else tmpfs:
        target, _, opts = t.partition(":")
        size = None
        for opt in filter(None, opts.split(",")):
            k, _, val = opt.partition("=")
            if k == "size":
                size = _size(val, name, "tmpfs")
        if not target.startswith("/"):
            raise _fail(name, "tmpfs", f"entry {t!r}: the target must be an absolute path")
        vols.append(VolumeMount("tmpfs", "", os.path.normpath(target), False, size))
    seen: set[str] = set()
    for m in vols:
        if m.target in seen:
            raise _fail(name, "volumes", f"mounts two things on {m.target}")
        seen.add(m.target)
    return vols


def _ulimits(v: dict[str, Any], svc: str) -> tuple[str, ...]:
    """`ulimits: {nproc: 65535, nofile: {soft: 20000, hard: 40000}}` as --ulimit values, checked here by the
    spec's own rules (known names, soft <= hard), so `up` creates nothing for a bad one."""
    out = []
    for k, u in v.items():
        text = f"{k}={u['soft']}:{u['hard']}" if isinstance(u, dict) else f"{k}={u}"
        try:
            ContainerSpec(command=("true",), ulimits=(parse_ulimit(text),))
        except SpecError as e:
            raise _fail(svc, "ulimits", str(e).replace("--ulimit ", "")) from None
        out.append(text)
    return tuple(out)


def _check_references(cf: ComposeFile) -> None:
    names: dict[str, str] = {}
    for s in cf.services.values():
        for n in s.networks:
            if n not in cf.networks:
                raise _fail(s.name, "networks", f"refers to network {n!r}, which is not defined in the top-level "
                            "`networks:`")
        for m in s.volumes:
            if m.kind == "volume" and m.source not in cf.volumes:
                raise _fail(s.name, "volumes", f"refers to volume {m.source!r}, which is not defined in the "
                            "top-level `volumes:`")
        for d in s.depends_on:
            if d.service == s.name:
                raise _fail(s.name, "depends_on", "names the service itself")
            if d.service not in cf.services:
                raise _fail(s.name, "depends_on", f"refers to undefined service {d.service!r}")
            if d.condition == "service_healthy" and cf.services[d.service].healthcheck is None:
                raise _fail(s.name, "depends_on", f"waits for {d.service!r} to be healthy, but {d.service!r} "
                            "has no healthcheck")
        cname = cf.container_name(s.name)
        if len(cname) > 64:  # the name is also the container's name on its networks (at most 64 characters)
            raise _fail(s.name, "container_name", f"{cname!r} is longer than 64 characters: choose a shorter "
                        "project or service name, or a container_name")
        if cname in names:
            raise _fail(s.name, "container_name", f"{cname!r} is also the container name of service "
                        f"{names[cname]!r}")
        names[cname] = s.name
        if s.ports and any(cf.networks[n].internal for n in s.networks) and \
                all(cf.networks[n].internal for n in s.networks):
            raise _fail(s.name, "ports", "are published, but the service is only on internal networks")


def start_levels(services: dict[str, Service]) -> list[list[str]]:
    """Kahn's algorithm, level by level, in file order within a level; a cycle is a ComposeError naming
    the services in it."""
    deps = {n: {d.service for d in s.depends_on if d.service in services} for n, s in services.items()}
    done: set[str] = set()
    levels: list[list[str]] = []
    while len(done) < len(services):
        level = [n for n in services if n not in done and deps[n] <= done]
        if not level:
            raise ComposeError(f"depends_on has a cycle: {' -> '.join(_cycle(deps, done))}")
        levels.append(level)
        done.update(level)
    return levels


def _cycle(deps: dict[str, set[str]], done: set[str]) -> list[str]:
    """One cycle among the services not yet started, as a path a -> b -> ... -> a."""
    start = next(n for n in deps if n not in done)
    path: list[str] = []
    n = start
    while n not in path:
        path.append(n)
        n = sorted(d for d in deps[n] if d not in done)[0]
    return [*path[path.index(n):], n]


__all__ = ["Build", "ComposeError", "ComposeFile", "Dependency", "Healthcheck", "NetworkDef", "Port", "Restart",
           "Service", "VolumeDef", "VolumeMount", "default_project_name", "load", "normalize_project_name",
           "start_levels"]
