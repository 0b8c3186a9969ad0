"""Containers from images of the store: layers as overlay lowers, the image's ENV, CMD/ENTRYPOINT, WORKDIR
and USER applied (the spec wins), the diff against the layers; and the %image magic."""

from __future__ import annotations

import os

import pytest
from helpers import host_clean, make_busybox_rootfs  # noqa: F401

from pycontainer_magics.images import ImageConfig, Store
from pycontainer_magics.runtime import ContainerSpec, LaunchError, run

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("image-run")
    old = os.environ.get("PYCONTAINER_STATE_DIR")
    os.environ["PYCONTAINER_STATE_DIR"] = str(d / "state")
    base = make_busybox_rootfs(str(d / "base"))
    top = d / "top"
    (top / "app").mkdir(parents=True)
    (top / "app" / "hello.txt").write_text("hi from layer 2\n")
    (top / "etc").mkdir()
    (top / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nlab:x:1000:1000:lab:/home/lab:/bin/sh\n")
    (top / "etc" / "group").write_text("root:x:0:\nlab:x:1000:\n")
    s = Store()
    s.create_image("lab/demo:1", [base, str(top)], ImageConfig(
        env=("GREETING=hello", "PATH=/bin"), cmd=("sh", "-c", "echo $GREETING; cat hello.txt; id -u"),
        workdir="/app", user="lab"), history=["busybox", "app"])
    yield s
    if old is None:
        del os.environ["PYCONTAINER_STATE_DIR"]
    else:
        os.environ["PYCONTAINER_STATE_DIR"] = old


@pytest.mark.usefixtures("host_clean")
def test_image_defaults_apply(store) -> None:
    r = run(ContainerSpec(image="lab/demo:1"))
    assert r.stdout == "hello\nhi from layer 2\n1000\n", r.stderr
    assert r.exit_code == 0


@pytest.mark.usefixtures("host_clean")
def test_spec_overrides_the_image_and_the_diff_is_against_its_layers(store) -> None:
    r = run(ContainerSpec(image="lab/demo:1", command=("sh", "-c", "echo $GREETING-$X; pwd; id -u; echo n > new; "
                                                                   "rm /bin/ls"),
                          env=(("X", "y"),), workdir="/tmp", user="0"))
    assert r.stdout == "hello-y\n/tmp\n0\n"
    got = {(d.kind, d.path) for d in r.diff}
    assert {("A", "/tmp/new"), ("D", "/bin/ls"), ("C", "/bin")} <= got
    assert os.path.exists(os.path.join(store.get("lab/demo:1").lower_dirs()[1], "bin", "ls"))  # layers untouched


@pytest.mark.usefixtures("host_clean")
def test_python_cell_in_an_image_as_its_user(store) -> None:
    code = "import os, json\nprint(os.getcwd(), os.getuid(), os.environ['GREETING'], json.dumps(os.listdir('.')))"
    r = run(ContainerSpec(image="lab/demo:1", python_code=code), python_globals={})
    assert r.stdout == '/app 1000 hello ["hello.txt"]\n', (r.stderr, r.error)


def test_unknown_image_or_user_is_one_clear_error(store) -> None:
    with pytest.raises(LaunchError, match="lab/nope") as e:
        run(ContainerSpec(image="127.0.0.1:1/lab/nope:1"))
    # a mistyped name must not read as a network problem only: the store did not have it, then the pull failed
    assert "not in the image store, and pulling it failed: 127.0.0.1:1: cannot reach" in str(e.value), e.value
    with pytest.raises(LaunchError, match="unable to find user nobody2"):
        run(ContainerSpec(image="lab/demo:1", user="nobody2"))


def test_image_magic(store, capsys: pytest.CaptureFixture[str]) -> None:
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "pycontainer_magics")
    ls = ip.run_line_magic("image", "ls")
    assert "docker.io/lab/demo:1" in list(ls["ref"]) or "lab/demo:1" in list(ls["ref"])
    hist = ip.run_line_magic("image", "history lab/demo:1")
    assert list(hist["created_by"]) == ["app", "busybox"]
    files = ip.run_line_magic("image", "files lab/demo:1")
    assert set(files[files["path"] == "/app/hello.txt"]["status"]) == {"visible"}
    ip.run_line_magic("image", "tag lab/demo:1 lab/demo:copy")
    ip.run_line_magic("image", "rm lab/demo:copy")
    with pytest.raises(UsageError, match="lab/missing"):
        ip.run_line_magic("image", "history lab/missing:1")
    with pytest.raises(UsageError):
        ip.run_line_magic("image", "frobnicate")
    ip.run_cell_magic("container", "--image lab/demo:1 --quiet", "import os\nprint('cell', os.getuid())")
    assert "cell 1000" in capsys.readouterr().out


def test_dockerfile_build_layers_cache_and_errors(store, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "pycontainer_magics")
    (tmp_path / "hello.txt").write_text("from the context\n")
    dockerfile = ("FROM lab/demo:1\nUSER 0\nARG WHO=lab\nENV GREETING=hi\nWORKDIR /srv\nCOPY hello.txt .\n"
                  'RUN echo "built by $WHO" > /srv/built.txt && rm /bin/wc\n'
                  'CMD ["sh", "-c", "cat /srv/hello.txt /srv/built.txt; echo $GREETING; '
                  '[ -e /bin/wc ] && echo wc || echo no-wc"]\n')
    steps = ip.run_cell_magic("dockerfile", f"--tag lab/built:1 --context {tmp_path} --build-arg WHO=test", dockerfile)
    assert "Successfully tagged lab/built:1" in capsys.readouterr().out
    assert list(steps["layer"]) == [False, False, False, False, True, True, False]
    r = run(ContainerSpec(image="lab/built:1"))
    assert r.stdout == "from the context\nbuilt by test\nhi\nno-wc\n", r.stderr
    again = ip.run_cell_magic("dockerfile", f"--tag lab/built:1 --context {tmp_path} --build-arg WHO=test",
                              dockerfile)
    work = again[~again["instruction"].str.startswith("ARG")]  # ARG makes no image: nothing to cache
    assert all(work["cached"]) and list(again["image"]) == list(steps["image"])
    hist = ip.run_line_magic("image", "history lab/built:1")
    assert hist["created_by"][0].startswith("CMD")
    assert any(c.startswith('RUN echo "built by $WHO"') for c in hist["created_by"])
    with pytest.raises(UsageError, match="line 2"):
        ip.run_cell_magic("dockerfile", "--tag lab/bad:1", "FROM lab/demo:1\nFROBNICATE x\n")
    with pytest.raises(UsageError, match="line 2: `RUN exit 3` exited with 3"):
        ip.run_cell_magic("dockerfile", "--tag lab/bad:1", "FROM lab/demo:1\nRUN exit 3\n")
    assert "lab/bad:1" not in str(list(ip.run_line_magic("image", "ls")["ref"]))
    with pytest.raises(UsageError, match="outside the build context"):
        ip.run_cell_magic("dockerfile", f"--context {tmp_path}", "FROM lab/demo:1\nCOPY ../x /x\n")


def test_copy_on_write_copies_up_only_what_changes(store, tmp_path) -> None:
    """A large file of a lower layer, appended to, is copied up whole into the writable layer; files left
    alone are not; the image's own layer is unchanged."""
    from pycontainer_magics.workloads.build import build

    (tmp_path / "large.bin").write_bytes(b"x" * (8 * 2**20))
    (tmp_path / "untouched.bin").write_bytes(b"y" * (4 * 2**20))
    build("FROM lab/demo:1\nCOPY large.bin untouched.bin /data/\n", tag="lab/cow:1", context=str(tmp_path))
    r = run(ContainerSpec(image="lab/cow:1", user="0", command=("sh", "-c", "echo more >> /data/large.bin")))
    diff = {d.path: (d.kind, d.size) for d in r.diff}
    assert diff["/data/large.bin"] == ("C", 8 * 2**20 + 5)  # copied up whole, then appended to
    assert "/data/untouched.bin" not in diff
    lower = Store().get("lab/cow:1").lower_dirs()[0]
    assert os.path.getsize(os.path.join(lower, "data", "large.bin")) == 8 * 2**20


def test_diff_of_a_background_container(store, capsys: pytest.CaptureFixture[str]) -> None:
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell

    from pycontainer_magics.workloads.containers import containers

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "pycontainer_magics")
    # (2 s: a sleep of 0.3 could end before the first diff on a loaded machine)
    ip.run_line_magic("container", "--detach --name differ --image lab/demo:1 -u 0 -- sh -c 'touch /new; sleep 2'")
    with pytest.raises(UsageError, match="is running"):
        ip.run_line_magic("container", "diff differ")
    containers.get("differ").wait(10)
    d = ip.run_line_magic("container", "diff differ")
    assert ("A", "/new") in set(zip(d["kind"], d["path"], strict=True))
    containers.remove("differ")
