"""runtime.parse: Docker-style strings -> spec values. Pure: no root, no kernel."""

from __future__ import annotations

import os

import pytest

from pycontainer_magics.linux.namespaces import NAMESPACE_KINDS
from pycontainer_magics.runtime.parse import (
    build_spec,
    parse_caps,
    parse_cpus,
    parse_duration,
    parse_env,
    parse_int,
    parse_memory_swap,
    parse_share,
    parse_size,
    parse_time_offset,
    parse_tmpfs,
    parse_volume,
)
from pycontainer_magics.runtime.spec import Mount, SpecError, Tmpfs

MiB = 2**20


def one_line_error(excinfo: pytest.ExceptionInfo[SpecError], *needles: str) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, (n, msg)
    return msg


# --- sizes ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("50M", 50 * MiB), ("512m", 512 * MiB), ("1g", 2**30), ("1G", 2**30), ("1024", 1024), ("1.5g", 3 * 2**29),
    ("100b", 100), ("4k", 4096), ("4K", 4096), ("2t", 2 * 2**40), ("512mb", 512 * MiB), ("512MiB", 512 * MiB),
    (" 64m ", 64 * MiB), ("0", 0), (4096, 4096),
])
def test_parse_size_good(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "", "m", "-5m", "5x", "5 mm", "1e3", "0x10", "5m5"])
def test_parse_size_bad(text: str) -> None:
    with pytest.raises(SpecError) as e:
        parse_size(text)
    one_line_error(e, f"invalid size {text!r} for --memory", "b, k, m or g", "like 512m")


def test_parse_size_exact_message() -> None:
    with pytest.raises(SpecError, match=r"^invalid size 'lots' for --memory: expected a number with an "
                                        r"optional unit b, k, m or g, like 512m$"):
        parse_size("lots", "--memory")


def test_parse_size_names_the_flag() -> None:
    with pytest.raises(SpecError, match="--tmpfs size"):
        parse_size("big", "--tmpfs size")


def test_parse_memory_swap() -> None:
    assert parse_memory_swap("-1") == -1
    assert parse_memory_swap("1g") == 2**30
    with pytest.raises(SpecError) as e:
        parse_memory_swap("-2")
    one_line_error(e, "'-2'", "--memory-swap")


# --- numbers -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [("0.5", 0.5), ("1.5", 1.5), ("2", 2.0), (1, 1.0)])
def test_parse_cpus_good(text: str, expected: float) -> None:
    assert parse_cpus(text) == expected


@pytest.mark.parametrize("text", ["half", "", "0", "-1", "nan", "inf"])
def test_parse_cpus_bad(text: str) -> None:
    with pytest.raises(SpecError) as e:
        parse_cpus(text)
    one_line_error(e, repr(text), "--cpus", "like 0.5")


def test_parse_int() -> None:
    assert parse_int("20", "--pids-limit", unlimited=-1) == 20
    assert parse_int("-1", "--pids-limit", unlimited=-1) is None
    with pytest.raises(SpecError) as e:
        parse_int("many", "--pids-limit", unlimited=-1)
    one_line_error(e, "'many'", "--pids-limit", "whole number", "-1 for no limit")


# --- durations -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("20ms", 0.02), ("1.5s", 1.5), ("2m", 120.0), ("30", 30.0), ("0.25", 0.25), ("1h", 3600.0),
    ("1m30s", 90.0), ("500us", 0.0005), ("1MS", 0.001), (2, 2.0),
])
def test_parse_duration_good(text: str, expected: float) -> None:
    assert parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["soon", "", "10 minutes", "1d", "-1s", "-3", "s", "1m30", "nan"])
def test_parse_duration_bad(text: str) -> None:
    with pytest.raises(SpecError) as e:
        parse_duration(text, "--timeout")
    one_line_error(e, repr(text), "--timeout", "like 1.5s")


# --- volumes -------------------------------------------------------------------------------------

def test_parse_volume_bind() -> None:
    assert parse_volume("/tmp:/data") == Mount("/tmp", "/data", read_only=False, kind="bind")
    assert parse_volume("/tmp:/data:ro") == Mount("/tmp", "/data", read_only=True, kind="bind")
    assert parse_volume("/tmp/:/data/:rw") == Mount("/tmp", "/data", read_only=False, kind="bind")


def test_parse_volume_named() -> None:
    assert parse_volume("cache:/var/cache") == Mount("cache", "/var/cache", kind="volume")
    assert parse_volume("my_vol.1:/v:ro") == Mount("my_vol.1", "/v", read_only=True, kind="volume")


@pytest.mark.parametrize("text, needles", [
    ("./data:/data", ["'./data'", "relative", "absolute path", os.path.abspath("./data")]),
    ("data/sub:/data", ["'data/sub'", "absolute path"]),
    ("~/x:/x", ["'~/x'", "absolute path"]),
    ("/tmp:/data:rx", ["'rx'", "ro or rw"]),
    ("/tmp", ["'/tmp'", "/host/path:/container/path"]),
    ("/a:/b:ro:x", ["/host/path:/container/path"]),
    (":/data", ["/host/path:/container/path"]),
    ("/tmp:data", ["'data'", "must be absolute"]),
])
def test_parse_volume_bad(text: str, needles: list[str]) -> None:
    with pytest.raises(SpecError) as e:
        parse_volume(text)
    one_line_error(e, *needles)


# --- tmpfs ---------------------------------------------------------------------------------------

def test_parse_tmpfs() -> None:
    assert parse_tmpfs("/run") == Tmpfs("/run", None, 0o1777)
    assert parse_tmpfs("/run:size=64m,mode=1777") == Tmpfs("/run", 64 * MiB, 0o1777)
    assert parse_tmpfs("/scratch:mode=700") == Tmpfs("/scratch", None, 0o700)
    assert parse_tmpfs("/s:rw,size=1k") == Tmpfs("/s", 1024, 0o1777)


@pytest.mark.parametrize("text, needles", [
    ("run:size=64m", ["'run:size=64m'", "absolute path", "/run:size=64m"]),
    ("/run:size=lots", ["'lots'", "--tmpfs size"]),
    ("/run:mode=999", ["'999'", "octal"]),
    ("/run:noexec", ["'noexec'", "size=SIZE and mode=OCTAL"]),
    ("/run:size", ["'size'", "size=SIZE"]),
])
def test_parse_tmpfs_bad(text: str, needles: list[str]) -> None:
    with pytest.raises(SpecError) as e:
        parse_tmpfs(text)
    one_line_error(e, *needles)


# --- env -----------------------------------------------------------------------------------------

def test_parse_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_env("K=V") == ("K", "V")
    assert parse_env("K=") == ("K", "")
    assert parse_env("K=a=b") == ("K", "a=b")
    monkeypatch.setenv("PYCONTAINER_TEST_VAR", "from-here")
    assert parse_env("PYCONTAINER_TEST_VAR") == ("PYCONTAINER_TEST_VAR", "from-here")
    monkeypatch.delenv("PYCONTAINER_TEST_VAR")
    assert parse_env("PYCONTAINER_TEST_VAR") is None  # like docker: unset here -> not set there


@pytest.mark.parametrize("text", ["=V", "1K=V", "MY-VAR=1", ""])
def test_parse_env_bad(text: str) -> None:
    with pytest.raises(SpecError) as e:
        parse_env(text)
    one_line_error(e, repr(text), "NAME=VALUE")


# --- namespaces, clocks, caps --------------------------------------------------------------------

def test_parse_share() -> None:
    assert parse_share("net,ipc") == {"net", "ipc"}
    assert parse_share("mnt, network") == {"mount", "net"}
    assert parse_share("NET") == {"net"}
    assert parse_share("all") == set(NAMESPACE_KINDS) and len(NAMESPACE_KINDS) == 8
    assert parse_share("") == frozenset()
    assert parse_share("none") == frozenset()
    assert parse_share(["pid", "uts"]) == {"pid", "uts"}


def test_parse_share_bad() -> None:
    with pytest.raises(SpecError) as e:
        parse_share("net,pidd")
    msg = one_line_error(e, "'pidd'", "--share")
    for kind in NAMESPACE_KINDS:
        assert kind in msg


def test_parse_time_offset() -> None:
    assert parse_time_offset("boottime=3600") == ("boottime", 3600)
    assert parse_time_offset("monotonic=-10") == ("monotonic", -10)
    assert parse_time_offset("BOOTTIME=1h") == ("boottime", 3600)


@pytest.mark.parametrize("text", ["boottime", "realtime=5", "boottime=soon", "=5"])
def test_parse_time_offset_bad(text: str) -> None:
    with pytest.raises(SpecError) as e:
        parse_time_offset(text)
    one_line_error(e, repr(text), "CLOCK=SECONDS", "monotonic", "boottime=3600")


def test_parse_caps() -> None:
    assert parse_caps("NET_ADMIN,cap_sys_time") == {"NET_ADMIN", "SYS_TIME"}
    assert parse_caps("all") == {"ALL"}
    assert parse_caps(["chown", " CAP_KILL "]) == {"CHOWN", "KILL"}


def test_parse_caps_bad() -> None:
    with pytest.raises(SpecError) as e:
        parse_caps("NET_ADMIN,cap_fly", "--cap-drop")
    one_line_error(e, "'cap_fly'", "--cap-drop", "NET_ADMIN")


# --- build_spec ----------------------------------------------------------------------------------

def test_build_spec_python_defaults() -> None:
    s = build_spec(python_code="x = 1")
    assert s.python_code == "x = 1" and s.command == ()
    assert s.share == frozenset() and s.new_namespaces == NAMESPACE_KINDS
    assert s.interval == 0.01 and s.diff is True and s.outputs == ()


def test_build_spec_all_options(tmp_path: os.PathLike[str]) -> None:
    s = build_spec(
        command=["sh", "-c", "echo hi"], stdin_data="echo $$\n",
        memory="50M", memory_swap="100m", cpus="0.5", cpu_shares="512", cpuset_cpus="0", pids_limit="20",
        hostname="lab", share=["ipc,mnt"], userns="remap", time_offset=["boottime=3600"],
        read_only=True, volume=[f"{tmp_path}:/data:ro", "cache:/cache"], tmpfs=["/run:size=64m"],
        workdir="/tmp", env=["A=1", "B=2", "A=3"], cap_add=["net_admin", "SYS_TIME"], cap_drop="NET_RAW",
        timeout="10s", interval="20ms", name="c1", no_diff=True,
    )
    assert s.command == ("sh", "-c", "echo hi") and s.stdin_data == b"echo $$\n"
    assert (s.memory, s.memory_swap, s.cpus, s.cpu_shares, s.cpuset_cpus, s.pids_limit) == (
        50 * MiB, 100 * MiB, 0.5, 512, "0", 20)
    assert s.hostname == "lab" and s.share == {"ipc", "mount"} and s.userns == "remap"
    assert s.time_offsets == (("boottime", 3600),)
    assert s.read_only and s.mounts[0] == Mount(str(tmp_path), "/data", True) and s.mounts[1].kind == "volume"
    assert s.tmpfs == (Tmpfs("/run", 64 * MiB),)
    assert s.workdir == "/tmp" and s.env == (("B", "2"), ("A", "3"))
    assert s.cap_add == {"NET_ADMIN", "SYS_TIME"} and s.cap_drop == {"NET_RAW"}
    assert "NET_ADMIN" in s.capabilities and "NET_RAW" not in s.capabilities
    assert s.timeout == 10 and s.interval == pytest.approx(0.02) and s.name == "c1" and s.diff is False


def test_build_spec_outputs() -> None:
    assert build_spec(python_code="x=1", output=["x,y", "z", "x"]).outputs == ("x", "y", "z")


def test_build_spec_pids_unlimited() -> None:
    assert build_spec(python_code="", pids_limit="-1").pids_limit is None


def test_build_spec_network() -> None:
    assert build_spec(python_code="", network="host").share == {"net"}
    assert build_spec(python_code="", network="host", share="ipc").share == {"net", "ipc"}
    assert "net" in build_spec(python_code="", network="none").new_namespaces
    assert build_spec(python_code="", network="host", share="net").share == {"net"}
    # a container on the default bridge may join user networks too (docker network connect), as Docker's
    bridge = build_spec(command=["true"], network="bridge")
    assert bridge.with_(extra_networks=("n1",)).extra_networks == ("n1",)
    with pytest.raises(SpecError, match="network aliases need a user network"):
        bridge.with_(network_aliases=("a",))
    with pytest.raises(SpecError, match="more networks need"):
        build_spec(command=["true"], network="none").with_(extra_networks=("n1",))


@pytest.mark.parametrize("options, needles", [
    (dict(network="none", share="net"), ["--network none", "--share net"]),
    (dict(network="no good!"), ["'no good!'", "none", "host", "bridge"]),
    (dict(network="mynet", share="net"), ["--network mynet", "net"]),
    (dict(userns="keep-id"), ["'keep-id'", "host", "remap"]),
    (dict(userns="remap", share="user"), ["remap", "'user'"]),
    (dict(hostname="lab", share="uts"), ["--hostname", "uts"]),
    (dict(hostname="bad_name!"), ["'bad_name!'"]),
    (dict(memory="1k"), ["--memory", "6m"]),
    (dict(memory="lots"), ["'lots'", "--memory", "like 512m"]),
    (dict(memory_swap="1g"), ["--memory-swap needs --memory"]),
    (dict(memory="100m", memory_swap="50m"), ["--memory-swap", "at least"]),
    (dict(cpus="1000"), ["--cpus 1000"]),
    (dict(cpuset_cpus="zero"), ["'zero'", "0-1"]),
    (dict(pids_limit="0"), ["--pids-limit 0"]),
    (dict(time_offset=["boottime=1", "boottime=2"]), ["boottime", "twice"]),
    (dict(time_offset="boottime=1", share="time"), ["--time-offset", "'time'"]),
    (dict(image="Bad Ref!"), ["Bad Ref!"]),
    (dict(image="alpine", rootfs="/"), ["--image 'alpine'", "--rootfs"]),
    (dict(rootfs="relative/dir"), ["'relative/dir'", "absolute"]),
    (dict(rootfs="/nonexistent-rootfs"), ["'/nonexistent-rootfs'", "not a directory"]),
    (dict(workdir="tmp"), ["--workdir 'tmp'", "absolute"]),
    (dict(volume="/nonexistent-src:/x"), ["'/nonexistent-src'", "does not exist"]),
    (dict(volume=["/tmp:/x", "/tmp:/x"]), ["two mounts", "'/x'"]),
    (dict(tmpfs="/"), ["--tmpfs"]),
    (dict(cap_add="NET_ADMIN", cap_drop="net_admin"), ["NET_ADMIN", "--cap-add", "--cap-drop"]),
    (dict(timeout="0"), ["--timeout"]),
    (dict(interval="0.1ms"), ["--interval"]),
    (dict(interval="often"), ["'often'", "--interval"]),
    (dict(name="my name"), ["'my name'"]),
    (dict(output="not-a-name"), ["'not-a-name'"]),
])
def test_build_spec_bad(options: dict[str, object], needles: list[str]) -> None:
    with pytest.raises(SpecError) as e:
        build_spec(python_code="pass", **options)  # type: ignore[arg-type]
    one_line_error(e, *needles)


def test_build_spec_nothing_to_run() -> None:
    with pytest.raises(SpecError, match="nothing to run"):
        build_spec()


def test_build_spec_output_needs_python() -> None:
    with pytest.raises(SpecError, match="-o/--output"):
        build_spec(command=["true"], output="x")


def test_build_spec_rejects_unknown_option() -> None:
    with pytest.raises(TypeError):
        build_spec(python_code="", memroy="5m")  # type: ignore[call-arg]
