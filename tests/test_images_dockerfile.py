"""The Dockerfile parser: instructions into dataclasses, forms, continuations, substitution, errors."""

from __future__ import annotations

import pytest

from pycontainer_magics.images import DockerfileError, parse_dockerfile
from pycontainer_magics.images.dockerfile import Arg, Cmd, Copy, Entrypoint, Env, Expose, Label, Run, User, Workdir

GOOD = """\
# syntax comment
ARG BASE=alpine
ARG TAG=3.20
FROM ${BASE}:${TAG} AS build
ARG VERSION=1.0
ENV APP=/opt/app \\
    MODE="prod mode"
ENV LEGACY value with spaces
WORKDIR $APP
RUN apk add --no-cache \\
    # a comment inside the continuation
    curl && \\
    echo done
RUN ["/bin/sh", "-c", "echo exec"]
COPY --chown=1000:1000 src/ lib/ ${APP}/
ADD https://example.com/x.tar.gz /tmp/
LABEL org.version=$VERSION other="a b"
EXPOSE 80 53/udp
USER app
CMD ["serve", "--port", "80"]
ENTRYPOINT /entry.sh $APP

FROM build
COPY --from=build /opt/app /srv
CMD echo ${MISSING:-fallback}
"""


def test_parse_good():
    df = parse_dockerfile(GOOD)
    assert [a.name for a in df.global_args] == ["BASE", "TAG"]
    s0, s1 = df.stages
    assert (s0.base.image, s0.name, s0.base.line) == ("alpine:3.20", "build", 4)
    ins = s0.instructions
    assert ins[0] == Arg(5, "ARG VERSION=1.0", "VERSION", "1.0")
    env = ins[1]
    assert isinstance(env, Env) and env.pairs == (("APP", "/opt/app"), ("MODE", "prod mode")) and env.line == 6
    assert isinstance(ins[2], Env) and ins[2].pairs == (("LEGACY", "value with spaces"),)
    assert isinstance(ins[3], Workdir) and ins[3].path == "/opt/app"
    run = ins[4]
    assert isinstance(run, Run) and run.shell_form and run.line == 10
    assert run.command == ("/bin/sh", "-c", "apk add --no-cache curl && echo done")
    assert isinstance(ins[5], Run) and ins[5].command == ("/bin/sh", "-c", "echo exec") and not ins[5].shell_form
    cp = ins[6]
    assert isinstance(cp, Copy) and cp.sources == ("src/", "lib/") and cp.dest == "/opt/app/"
    assert cp.chown == "1000:1000"
    assert isinstance(ins[7], Copy) and ins[7].add
    assert isinstance(ins[8], Label) and ins[8].pairs == (("org.version", "1.0"), ("other", "a b"))
    assert isinstance(ins[9], Expose) and ins[9].ports == ("80/tcp", "53/udp")
    assert isinstance(ins[10], User) and ins[10].user == "app"
    assert isinstance(ins[11], Cmd) and ins[11].command == ("serve", "--port", "80") and not ins[11].shell_form
    ep = ins[12]
    assert isinstance(ep, Entrypoint) and ep.shell_form and ep.command == ("/bin/sh", "-c", "/entry.sh $APP")
    assert s1.base.image == "build" and isinstance(s1.instructions[0], Copy)
    assert s1.instructions[0].from_stage == "build"


def test_build_args_override():
    df = parse_dockerfile("ARG TAG=1\nFROM busybox:$TAG\nARG N=x\nWORKDIR /$N\n", build_args={"TAG": "2", "N": "y"})
    assert df.stages[0].base.image == "busybox:2"
    assert df.stages[0].instructions[1] == Workdir(4, "WORKDIR /$N", "/y")


def test_invalid_json_is_shell_form():
    df = parse_dockerfile('FROM x\nCMD ["a", \n')
    cmd = df.stages[0].instructions[0]
    assert isinstance(cmd, Cmd) and cmd.shell_form


@pytest.mark.parametrize("text, line, match", [
    ("FROM x\nBOGUS y\n", 2, "unknown instruction 'BOGUS'"),
    ("RUN echo\nFROM x\n", 1, "before FROM"),
    ("FROM x\nRUN\n", 2, "RUN needs arguments"),
    ("FROM x\nCOPY onlyone\n", 2, "COPY needs at least one source"),
    ("FROM x\n\n\nENV KEY\n", 4, "ENV KEY needs a value"),
    ("FROM x\nLABEL a='unterminated\n", 2, "LABEL"),
    ("FROM x\nEXPOSE http\n", 2, "bad port"),
    ("FROM x\nRUN a \\\n  b\nWORKDIR ${oops\n", 4, "unterminated variable"),
    ("FROM x\nCOPY --bogus=1 a b\n", 2, "unknown option --bogus"),
    ("# just a comment\n", 1, "no FROM"),
    ("FROM\n", 1, "FROM needs arguments|FROM needs an image"),
])
def test_errors_name_the_line(text, line, match):
    with pytest.raises(DockerfileError, match=match) as ei:
        parse_dockerfile(text)
    assert ei.value.line == line and f"line {line}:" in str(ei.value)


def test_dockerignore_rules_as_docker_has_them() -> None:
    from pycontainer_magics.images.dockerignore import DockerIgnore

    ig = DockerIgnore.parse("# comment\n*.log\n!keep.log\n/build\n**/*.tmp\nsecrets/**\n!secrets/public\n\n")
    cases = {"a.txt": False, "x.log": True, "keep.log": False, "sub/x.log": False,  # `*` stays in its directory
             "build": True, "build/out/bin": True, "src/build": False, "t.tmp": True, "a/b/c.tmp": True,
             "secrets/key": True, "secrets/public": False, "secrets/public/x": False}
    assert {p: ig.excluded(p) for p in cases} == cases
    assert not DockerIgnore.parse("").excluded("anything")


def test_volume_stopsignal_and_expose_ranges() -> None:
    from pycontainer_magics.images.dockerfile import StopSignal, Volume

    ins = parse_dockerfile('FROM x\nARG D=/data\nVOLUME $D /b\nVOLUME ["/c d"]\nSTOPSIGNAL SIGINT\n'
                           "EXPOSE 90-92/udp 80\n").stages[0].instructions
    assert isinstance(ins[1], Volume) and ins[1].paths == ("/data", "/b")
    assert isinstance(ins[2], Volume) and ins[2].paths == ("/c d",)
    assert isinstance(ins[3], StopSignal) and ins[3].signal == "SIGINT"
    assert isinstance(ins[4], Expose) and ins[4].ports == ("90/udp", "91/udp", "92/udp", "80/tcp")
    with pytest.raises(DockerfileError, match="bad port range"):
        parse_dockerfile("FROM x\nEXPOSE 9-1\n")


def test_commit_changes_apply_as_dockers() -> None:
    """`docker commit --change`: dockerd 20.10's list and order rules (compared against it by hand)."""
    from pycontainer_magics.images import ImageConfig
    from pycontainer_magics.images.dockerfile import InvalidChange, apply_changes, parse_changes

    base = ImageConfig(env=("PATH=/bin", "A=1"), cmd=("sh",), workdir="/srv")
    changes = ["ENV B=$A$A", "WORKDIR app", "ENTRYPOINT [\"cat\"]", "VOLUME /v", "EXPOSE 80"]
    cfg = apply_changes(base, parse_changes(changes, base.env_dict()))
    assert cfg.env_dict() == {"PATH": "/bin", "A": "1", "B": "11"} and cfg.workdir == "/srv/app"
    assert cfg.entrypoint == ("cat",) and cfg.cmd is None  # an ENTRYPOINT drops the CMD it did not set
    assert cfg.volumes == ("/v",) and cfg.exposed_ports == ("80/tcp",)
    cfg = apply_changes(base, parse_changes(['CMD ["x"]', "ENTRYPOINT cat"], {}))
    assert cfg.cmd == ("x",) and cfg.entrypoint == ("/bin/sh", "-c", "cat")
    with pytest.raises(InvalidChange, match="^run is not a valid change command$"):
        parse_changes(["RUN true"], {})
    with pytest.raises(DockerfileError, match="--change line 2: USER needs arguments"):
        parse_changes(["CMD x", "USER"], {})
    with pytest.raises(DockerfileError, match="no instructions"):
        parse_changes([" "], {})
