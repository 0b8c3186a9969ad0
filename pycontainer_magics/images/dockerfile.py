"""A Dockerfile parser (the instructions builds will run): FROM, RUN, COPY, ADD, ENV, ARG, WORKDIR, USER,
LABEL, EXPOSE, CMD, ENTRYPOINT, VOLUME, STOPSIGNAL; JSON (exec) and shell forms; line continuations;
comments; the `# escape=` directive; ARG/ENV substitution (`$X`, `${X}`, `${X:-default}`, `${X:+alt}`) where
Docker does it. A syntax error names its line number.

parse_changes() reads `docker commit --change` lines: the metadata instructions Docker allows there, with
the container's environment for substitution."""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from dataclasses import dataclass, field, replace

from .errors import ImageError
from .image import ImageConfig


class DockerfileError(ImageError):
    def __init__(self, line: int, message: str, filename: str = "Dockerfile"):
        super().__init__(f"{filename} line {line}: {message}")
        self.line = line


@dataclass(frozen=True)
class Instruction:
    line: int  # first line of the instruction (1-based)
    original: str  # as written, continuations joined


@dataclass(frozen=True)
class From(Instruction):
    image: str
    name: str | None = None  # AS name
    platform: str | None = None


@dataclass(frozen=True)
class Run(Instruction):
    command: tuple[str, ...]  # exec form argv, or ("/bin/sh", "-c", script) for shell form
    shell_form: bool
    mounts: tuple[str, ...] = ()  # --mount=... options, kept as text


@dataclass(frozen=True)
class Copy(Instruction):
    sources: tuple[str, ...]
    dest: str
    from_stage: str | None = None
    chown: str | None = None
    chmod: str | None = None
    add: bool = False  # ADD (URLs, local tar auto-extraction)
    checksum: str | None = None  # ADD --checksum=sha256:... of a URL's content


@dataclass(frozen=True)
class Env(Instruction):
    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Arg(Instruction):
    name: str
    default: str | None = None


@dataclass(frozen=True)
class Workdir(Instruction):
    path: str


@dataclass(frozen=True)
class User(Instruction):
    user: str


@dataclass(frozen=True)
class Label(Instruction):
    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Expose(Instruction):
    ports: tuple[str, ...]  # "80/tcp"


@dataclass(frozen=True)
class Cmd(Instruction):
    command: tuple[str, ...]
    shell_form: bool


@dataclass(frozen=True)
class Entrypoint(Instruction):
    command: tuple[str, ...]
    shell_form: bool


@dataclass(frozen=True)
class Volume(Instruction):
    paths: tuple[str, ...]


@dataclass(frozen=True)
class StopSignal(Instruction):
    signal: str


@dataclass
class Stage:
    base: From
    instructions: list[Instruction] = field(default_factory=list)

    @property
    def name(self) -> str | None:
        return self.base.name


@dataclass
class Dockerfile:
    global_args: list[Arg] = field(default_factory=list)  # ARGs before the first FROM
    stages: list[Stage] = field(default_factory=list)

    def instructions(self) -> list[Instruction]:
        out: list[Instruction] = list(self.global_args)
        for s in self.stages:
            out += [s.base, *s.instructions]
        return out


SHELL = ("/bin/sh", "-c")
_VAR = re.compile(r"\$(?:\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def substitute(text: str, env: dict[str, str], line: int = 0, escape: str = "\\") -> str:
    """Docker's variable expansion: $X, ${X}, ${X:-default}, ${X:+alt}; `escape$` keeps a literal $."""
    out = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == escape and i + 1 < len(text) and text[i + 1] == "$":
            out.append("$")
            i += 2
            continue
        if c == "$":
            m = _VAR.match(text, i)
            if m is None:
                if text.startswith("${", i):
                    raise DockerfileError(line, f"unterminated variable in {text!r}")
                out.append(c)
                i += 1
                continue
            if m.group("plain"):
                out.append(env.get(m.group("plain"), ""))
            else:
                body = m.group("braced")
                vm = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)(?::([-+])(.*))?$", body, re.S)
                if vm is None:
                    raise DockerfileError(line, f"bad substitution ${{{body}}}")
                name, op, word = vm.group(1), vm.group(2), vm.group(3)
                val = env.get(name)
                if op == "-":
                    out.append(val if val else substitute(word, env, line, escape))
                elif op == "+":
                    out.append(substitute(word, env, line, escape) if val else "")
                else:
                    out.append(val or "")
            i = m.end()
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _logical_lines(text: str, escape: str) -> list[tuple[int, str]]:
    """(first line number, joined text) per instruction; comments and blank lines dropped."""
    out: list[tuple[int, str]] = []
    buf: list[str] = []
    start = 0
    for n, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not buf):
            continue  # comments (also inside a continuation) and blank lines
        if not buf:
            start = n
        if stripped.endswith(escape) and not stripped.endswith(escape * 2 if escape == "`" else "\0"):
            buf.append(raw.rstrip()[:-1])
            continue
        buf.append(raw)
        out.append((start, " ".join(s.strip() for s in buf if s.strip()) if len(buf) > 1 else raw.strip()))
        buf = []
    if buf:
        out.append((start, " ".join(s.strip() for s in buf if s.strip())))
    return out


def _json_or_shell(args: str) -> tuple[tuple[str, ...], bool] | None:
    s = args.strip()
    if s.startswith("["):
        try:
            v = json.loads(s)
        except ValueError:
            return None
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            return tuple(v), False
    return None


def _pairs(args: str, line: int, what: str, env: dict[str, str] | None, escape: str) -> tuple[tuple[str, str], ...]:
    try:
        words = shlex.split(args, posix=True)
    except ValueError as e:
        raise DockerfileError(line, f"{what}: {e}") from None
    if not words:
        raise DockerfileError(line, f"{what} needs KEY=value")
    if "=" not in words[0]:
        if what == "LABEL":
            raise DockerfileError(line, f"LABEL needs KEY=value, got {words[0]!r}")
        key, _, rest = args.strip().partition(" ")  # legacy `ENV KEY value with spaces`
        if not rest.strip():
            raise DockerfileError(line, f"ENV {key} needs a value (ENV KEY=value or ENV KEY value)")
        val = rest.strip()
        return ((key, substitute(val, env, line, escape) if env is not None else val),)
    out = []
    for w in words:
        key, eq, val = w.partition("=")
        if not eq or not key:
            raise DockerfileError(line, f"{what}: {w!r} is not KEY=value")
        # quotes were removed by shlex; substitute after (Docker substitutes inside double quotes too)
        out.append((key, substitute(val, env, line, escape) if env is not None else val))
    return tuple(out)


def parse_dockerfile(text: str, build_args: dict[str, str] | None = None, filename: str = "Dockerfile") -> Dockerfile:
    """Parse a Dockerfile. `build_args` (--build-arg) override ARG defaults."""
    parser = _Parser(build_args or {}, _escape_directive(text, filename))
    try:
        for line, content in _logical_lines(text, parser.escape):
            parser.instruction(line, content)
    except DockerfileError as e:
        if filename != "Dockerfile":
            raise DockerfileError(e.line, str(e).split(": ", 1)[1], filename) from None
        raise
    if not parser.df.stages:
        raise DockerfileError(max(1, len(text.splitlines())), "no FROM instruction", filename)
    return parser.df


def _escape_directive(text: str, filename: str) -> str:
    """The escape character: `\\`, or what a `# escape=` parser directive at the top says."""
    escape = "\\"
    for raw in text.splitlines():
        m = re.match(r"^#\s*(\w+)\s*=\s*(\S+)\s*$", raw)
        if not m:
            break
        if m.group(1).lower() == "escape":
            if m.group(2) not in ("\\", "`"):
                raise DockerfileError(1, f"invalid escape character {m.group(2)!r}", filename)
            escape = m.group(2)
    return escape


class _Parser:
    """One pass over the logical lines: ARG and FROM shape the stages, the rest become a stage's
    instructions (one method per instruction that needs more than a line)."""

    def __init__(self, build_args: dict[str, str], escape: str) -> None:
        self.build_args = build_args
        self.escape = escape
        self.df = Dockerfile()
        self.global_env: dict[str, str] = {}
        self.stage: Stage | None = None
        self.env: dict[str, str] = {}

    def sub(self, value: str, line: int, env: dict[str, str] | None = None) -> str:
        return substitute(value, self.env if env is None else env, line, self.escape)

    def instruction(self, line: int, content: str) -> None:
        word, _, args = content.partition(" ")
        if "\t" in word:
            word, _, more = word.partition("\t")
            args = more + " " + args
        kw = word.upper()
        args = args.strip()
        if kw == "ARG":
            return self.arg(line, content, args)
        if kw == "FROM":
            return self.from_(line, content, args)
        if self.stage is None:
            raise DockerfileError(line, f"{kw or word} before FROM (only ARG may come first)")
        if not args:
            raise DockerfileError(line, f"{kw} needs arguments")
        self.stage.instructions.append(self.step(kw, word, line, content, args))

    def arg(self, line: int, content: str, args: str) -> None:
        if not args:
            raise DockerfileError(line, "ARG needs a name")
        name, eq, default = args.partition("=")
        name = name.strip()
        if not _NAME.match(name):
            raise DockerfileError(line, f"ARG: bad name {name!r}")
        dflt = None
        if eq:
            dflt = default.strip().strip('"') if default.strip()[:1] == '"' else default.strip()
            dflt = self.sub(dflt, line, self.env if self.stage else self.global_env)
        a = Arg(line, content, name, dflt)
        if self.stage is None:
            self.df.global_args.append(a)
            value = self.build_args.get(name, dflt)
            if value is not None:
                self.global_env[name] = value
        else:
            self.stage.instructions.append(a)
            value = self.build_args.get(name, dflt if dflt is not None else self.global_env.get(name))
            if value is not None:
                self.env[name] = value

    def from_(self, line: int, content: str, args: str) -> None:
        words = args.split()
        platform = None
        name_as: str | None = None
        while words and words[0].startswith("--"):
            opt = words.pop(0)
            if opt.startswith("--platform="):
                platform = self.sub(opt.split("=", 1)[1], line, self.global_env)
            else:
                raise DockerfileError(line, f"FROM: unknown option {opt}")
        if len(words) == 3 and words[1].upper() == "AS":
            image, name_as = words[0], words[2]
        elif len(words) == 1:
            image = words[0]
        else:
            raise DockerfileError(line, "FROM needs an image (FROM image [AS name])")
        image = self.sub(image, line, self.global_env)
        if not image:
            raise DockerfileError(line, "FROM: the image is empty after substitution")
        self.stage = Stage(From(line, content, image, name_as, platform))
        self.df.stages.append(self.stage)
        self.env = {}

    def step(self, kw: str, word: str, line: int, content: str, args: str) -> Instruction:
        if kw == "RUN":
            return self.run(line, content, args)
        if kw in ("CMD", "ENTRYPOINT"):
            j = _json_or_shell(args)
            cmd, shell = (j[0], False) if j else ((*SHELL, args), True)
            return Cmd(line, content, cmd, shell) if kw == "CMD" else Entrypoint(line, content, cmd, shell)
        if kw in ("COPY", "ADD"):
            return self.copy(kw, line, content, args)
        if kw == "ENV":
            pairs = _pairs(args, line, "ENV", self.env, self.escape)
            self.env.update(pairs)
            return Env(line, content, pairs)
        if kw == "LABEL":
            return Label(line, content, _pairs(args, line, "LABEL", self.env, self.escape))
        if kw == "WORKDIR":
            return Workdir(line, content, self.sub(args, line))
        if kw == "USER":
            return User(line, content, self.sub(args, line))
        if kw == "EXPOSE":
            return self.expose(line, content, args)
        if kw == "VOLUME":
            j = _json_or_shell(args)
            paths = j[0] if j else tuple(self.sub(args, line).split())
            if not all(paths):
                raise DockerfileError(line, "VOLUME specified can not be an empty string")
            return Volume(line, content, paths)
        if kw == "STOPSIGNAL":
            return StopSignal(line, content, self.sub(args, line))
        raise DockerfileError(line, f"unknown instruction {word!r}")

    def run(self, line: int, content: str, args: str) -> Run:
        mounts = []
        while args.startswith("--"):
            opt, _, args = args.partition(" ")
            mounts.append(opt)
            args = args.strip()
        j = _json_or_shell(args)
        return Run(line, content, j[0], False, tuple(mounts)) if j else \
            Run(line, content, (*SHELL, args), True, tuple(mounts))

    def copy(self, kw: str, line: int, content: str, args: str) -> Copy:
        opts: dict[str, str] = {}
        while args.startswith("--"):
            opt, _, args = args.partition(" ")
            k, _eq, v = opt[2:].partition("=")
            if k not in ("from", "chown", "chmod", "link", "checksum", "keep-git-dir", "parents", "exclude"):
                raise DockerfileError(line, f"{kw}: unknown option --{k}")
            opts[k] = v
            args = args.strip()
        j = _json_or_shell(args)
        if j:
            parts = list(j[0])
        else:
            try:
                parts = shlex.split(args)
            except ValueError as e:
                raise DockerfileError(line, f"{kw}: {e}") from None
        parts = [self.sub(p, line) for p in parts]
        if len(parts) < 2:
            raise DockerfileError(line, f"{kw} needs at least one source and a destination")
        return Copy(line, content, tuple(parts[:-1]), parts[-1], opts.get("from"), opts.get("chown"),
                    opts.get("chmod"), add=kw == "ADD", checksum=opts.get("checksum"))

    def expose(self, line: int, content: str, args: str) -> Expose:
        ports = []
        for p in self.sub(args, line).split():
            num, _, proto = p.partition("/")
            m = re.match(r"^(\d+)(?:-(\d+))?$", num)
            if m is None or proto not in ("", "tcp", "udp", "sctp"):
                raise DockerfileError(line, f"EXPOSE: bad port {p!r}")
            first, last = int(m.group(1)), int(m.group(2) or m.group(1))
            if not 0 < first <= last < 65536:
                raise DockerfileError(line, f"EXPOSE: bad port range {p!r}")
            ports += [f"{n}/{proto or 'tcp'}" for n in range(first, last + 1)]  # a range is each port, as Docker's
        return Expose(line, content, tuple(ports))


# `docker commit --change`: the instructions dockerd takes there (builder.BuildFromConfig's list); the others are
# refused with its words. ONBUILD and HEALTHCHECK have no place in this project's image config yet.
COMMIT_CHANGES = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "USER", "VOLUME", "WORKDIR")
_COMMIT_UNSUPPORTED = ("ONBUILD", "HEALTHCHECK")


def parse_changes(changes: list[str] | tuple[str, ...], env: dict[str, str]) -> list[Instruction]:
    """`docker commit --change` lines as instructions, in order; `env` (the container's) for substitution, as
    later ENV changes extend it. DockerfileError (line = the change's number) for what dockerd refuses."""
    parser = _Parser({}, "\\")
    parser.stage = Stage(From(0, "", "scratch"))
    parser.env = dict(env)
    out: list[Instruction] = []
    for n, change in enumerate(changes, 1):
        lines = _logical_lines(change, parser.escape)
        if not lines:
            raise DockerfileError(n, "file with no instructions", "--change")
        for _line, content in lines:
            kw = content.split(None, 1)[0].upper()
            if kw in _COMMIT_UNSUPPORTED:
                raise DockerfileError(n, f"{kw} is not supported by this engine's images", "--change")
            if kw not in COMMIT_CHANGES:
                raise InvalidChange(f"{kw.lower()} is not a valid change command")
            try:
                parser.instruction(n, content)
            except DockerfileError as e:
                raise DockerfileError(n, str(e).split(": ", 1)[1], "--change") from None
    out.extend(parser.stage.instructions)
    return out


def apply_metadata(config: ImageConfig, ins: Instruction, cmd_set: bool = False) -> ImageConfig:
    """The image config after a metadata instruction (ENV, WORKDIR, USER, LABEL, EXPOSE, VOLUME, STOPSIGNAL, CMD,
    ENTRYPOINT), as Docker applies it in a build and in `commit --change`. An ENTRYPOINT drops the CMD it
    inherited unless `cmd_set` (a CMD came earlier in the same stage, or the same commit)."""
    if isinstance(ins, Env):
        env = config.env_dict()
        env.update(dict(ins.pairs))
        return replace(config, env=tuple(f"{k}={v}" for k, v in env.items()))
    if isinstance(ins, Workdir):
        return replace(config, workdir=posixpath.join(config.workdir or "/", ins.path))
    if isinstance(ins, User):
        return replace(config, user=ins.user)
    if isinstance(ins, Label):
        return replace(config, labels={**config.labels, **dict(ins.pairs)})
    if isinstance(ins, Expose):
        return replace(config, exposed_ports=tuple(dict.fromkeys((*config.exposed_ports, *ins.ports))))
    if isinstance(ins, Volume):
        return replace(config, volumes=tuple(sorted({*config.volumes, *ins.paths})))
    if isinstance(ins, StopSignal):
        return replace(config, stop_signal=ins.signal)
    if isinstance(ins, Cmd):
        return replace(config, cmd=ins.command)
    if isinstance(ins, Entrypoint):
        return replace(config, entrypoint=ins.command, cmd=config.cmd if cmd_set else None)
    raise TypeError(f"{type(ins).__name__} is not a metadata instruction")


def apply_changes(config: ImageConfig, instructions: list[Instruction]) -> ImageConfig:
    """`docker commit --change`: each instruction in order over the container's config."""
    cmd_set = False
    for ins in instructions:
        config = apply_metadata(config, ins, cmd_set)
        cmd_set = cmd_set or isinstance(ins, Cmd)
    return config


class InvalidChange(ImageError):
    """A `--change` instruction that commit does not take (dockerd's "x is not a valid change command")."""
