"""OCI runtime bundles written from a ContainerSpec: valid against the runtime-spec schemas, and run by
runc and crun with what our own runtime gives the same spec (hostname, id maps, capabilities, limits)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from helpers import CrunRunner, make_busybox_rootfs

from pycontainer_magics.oci.bundle import BundleError, config_for, validate_config, write_bundle
from pycontainer_magics.runtime import ContainerSpec, Mount, Tmpfs, run

PROBE = ("hostname; cat /proc/self/uid_map; grep -E 'CapEff|NoNewPrivs' /proc/self/status; "
         "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; "
         "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max; "
         "cat /proc/keys | wc -c; grep -E 'open files|processes' /proc/self/limits | tr -s ' ' | cut -d' ' -f3-5")


def _spec(rootfs: str, **kw: object) -> ContainerSpec:
    return ContainerSpec(command=("sh", "-c", PROBE), hostname="oci", memory=64 * 2**20, pids_limit=32,
                         rootfs=rootfs, ulimits=(("nofile", 100, 200), ("nproc", 50, 60)), **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def busybox(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_busybox_rootfs(str(tmp_path_factory.mktemp("oci-busybox")))


def test_config_is_valid_and_says_what_the_spec_says(tmp_path) -> None:
    spec = ContainerSpec(command=("true",), hostname="h", memory=64 * 2**20, memory_swap=128 * 2**20, cpus=0.5,
                         cpu_shares=512, pids_limit=10, cap_drop=frozenset({"NET_RAW"}), read_only=True,
                         mounts=(Mount(str(tmp_path), "/data", read_only=True),), tmpfs=(Tmpfs("/run", 2**20),),
                         time_offsets=(("boottime", 60),), share=frozenset({"net"}), env=(("A", "1"),))
    c = config_for(spec, "rootfs")
    validate_config(c)
    assert c["process"]["args"] == ["true"] and "A=1" in c["process"]["env"]
    assert "CAP_NET_RAW" not in c["process"]["capabilities"]["effective"]
    assert "CAP_CHOWN" in c["process"]["capabilities"]["bounding"]
    assert c["process"]["noNewPrivileges"] is True and c["root"] == {"path": "rootfs", "readonly": True}
    assert {n["type"] for n in c["linux"]["namespaces"]} == {"mount", "uts", "ipc", "pid", "user", "cgroup", "time"}
    assert c["linux"]["resources"] == {"memory": {"limit": 64 * 2**20, "swap": 128 * 2**20},
                                       "cpu": {"quota": 50000, "period": 100000, "shares": 512},
                                       "pids": {"limit": 10}}
    assert c["linux"]["timeOffsets"] == {"boottime": {"secs": 60, "nanosecs": 0}}
    assert "/proc/kcore" in c["linux"]["maskedPaths"] and "/proc/sys" in c["linux"]["readonlyPaths"]
    dests = {m["destination"]: m for m in c["mounts"]}
    assert dests["/data"]["options"] == ["rbind", "ro"] and dests["/run"]["type"] == "tmpfs"
    assert dests["/sys"]["type"] == "none"  # the host's network namespace: its /sys is bound, not mounted


def test_python_cells_and_bad_configs_are_refused_with_the_field_named() -> None:
    with pytest.raises(BundleError, match="Python cell"):
        config_for(ContainerSpec(python_code="pass"))
    with pytest.raises(BundleError, match="root/path: 5 is not of type 'string'"):
        validate_config({"ociVersion": "1.2.0", "root": {"path": 5}})
    with pytest.raises(BundleError, match="linux/namespaces/0/type"):
        validate_config({"ociVersion": "1.2.0", "linux": {"namespaces": [{"type": "bogus"}]}})


def _observe(prefix: list[str], bundle: str, state: str, cid: str) -> list[str]:
    from pycontainer_magics.runtime.run import remove_empty_parents

    p = subprocess.run([*prefix[:-1], prefix[-1], "--root", state, "run", "--bundle", bundle, cid],
                       capture_output=True, text=True, timeout=60)
    remove_empty_parents()  # runc and crun make our parent in every hierarchy, those we never touch too
    assert p.returncode == 0, p.stderr
    return p.stdout.split()


def _hierarchies() -> list[str]:
    """Every mounted cgroup hierarchy root (v1 controllers, named ones, the v2 mount)."""
    roots = ["/sys/fs/cgroup"]
    for d in os.listdir("/sys/fs/cgroup"):
        path = os.path.join("/sys/fs/cgroup", d)
        if os.path.isdir(path) and not os.path.islink(path):
            roots.append(path)
    return roots


def _parents_of_ours() -> set[str]:
    return {h for h in _hierarchies() if os.path.isdir(os.path.join(h, "pycontainer_magics"))}


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_runc_and_crun_run_our_bundle_as_we_run_the_spec(busybox: str, tmp_path) -> None:
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed (apt-get install runc)")
    spec = _spec(busybox)
    ours = run(spec).stdout.split()
    # after our own run: what it prepared for a next run (a cgroup under our parent) may keep the parent
    parents_before = _parents_of_ours()
    write_bundle(spec, str(tmp_path / "bundle"))
    config = json.loads((tmp_path / "bundle" / "config.json").read_text())
    assert config["root"]["path"] == busybox
    runc = _observe(["runc"], str(tmp_path / "bundle"), str(tmp_path / "runc"), f"pcm-oci-{os.getpid()}")
    if shutil.which("crun") is None:
        pytest.skip("crun is not installed (apt-get install crun)")
    with CrunRunner() as crun:
        crun_out = _observe(crun.prefix, str(tmp_path / "bundle"), str(tmp_path / "crun"), f"pcm-oci-{os.getpid()}")
    # hostname, uid map, CapEff, NoNewPrivs, memory limit, pids limit, masked /proc/keys
    assert ours == runc == crun_out, (ours, runc, crun_out)
    group = config["linux"]["cgroupsPath"]
    assert group.startswith("/pycontainer_magics/bundle-")
    # The container's own cgroup is gone from every hierarchy, and no hierarchy gained a parent of ours that
    # was not there before (runc makes the parent in every hierarchy it knows; another process on the machine
    # may hold one of its own, so compare with the snapshot rather than with nothing).
    assert not [h for h in _hierarchies() if os.path.exists(h + group)]
    assert _parents_of_ours() <= parents_before, _parents_of_ours() - parents_before
    assert ours[:4] == ["oci", "0", "0", "4294967295"] and ours[-9:-6] == [str(64 * 2**20), "32", "0"]
    assert ours[-6:] == ["50", "60", "processes", "files", "100", "200"]  # --ulimit, applied by all three


def test_magic_writes_a_bundle(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "pycontainer_magics")
    capsys.readouterr()
    ip.run_line_magic("container", f"bundle --memory 32m --hostname mb {tmp_path}/b -- sh -c 'echo hi'")
    assert capsys.readouterr().out.strip() == f"{tmp_path}/b/config.json"
    c = json.loads((tmp_path / "b" / "config.json").read_text())
    assert c["process"]["args"] == ["sh", "-c", "echo hi"] and c["hostname"] == "mb"
    with pytest.raises(UsageError, match="usage: %container bundle"):
        ip.run_line_magic("container", "bundle")
    with pytest.raises(UsageError, match="invalid size 'lots'"):
        ip.run_line_magic("container", f"bundle --memory lots {tmp_path}/c -- true")
    assert not (tmp_path / "c").exists()


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_runc_spec_bundle_runs_here_and_ours_round_trips(busybox: str, tmp_path) -> None:
    """A bundle written by `runc spec` runs here with what it says (hostname, capabilities, namespaces);
    a bundle written here reads back as the spec it came from."""
    import sys

    from pycontainer_magics.oci.bundle import load_bundle

    if shutil.which("runc") is None:
        pytest.skip("runc is not installed (apt-get install runc)")
    b = tmp_path / "runc-bundle"
    b.mkdir()
    subprocess.run(["runc", "spec"], cwd=b, check=True)
    shutil.copytree(busybox, b / "rootfs", symlinks=True)
    c = json.loads((b / "config.json").read_text())
    c["process"]["args"] = ["sh", "-c", "hostname; grep CapEff /proc/self/status; ls /sys/class/net; tty"]
    (b / "config.json").write_text(json.dumps(c))
    p = subprocess.run([os.path.join(os.path.dirname(sys.executable), "pycontainer"), "run", "--bundle", str(b),
                        "rb1"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    caps = sum(1 << n for n in (5, 10, 29))  # runc spec's default: KILL, NET_BIND_SERVICE, AUDIT_WRITE
    # runc spec's "terminal": true: a terminal of its own, as `runc run` in the foreground gives it
    assert p.stdout.split() == ["runc", "CapEff:", f"{caps:016x}", "lo", "/dev/pts/0"]
    assert "process/terminal" not in p.stderr
    spec = _spec(busybox)
    write_bundle(spec, str(tmp_path / "ours"))
    back, _notes = load_bundle(str(tmp_path / "ours"))
    for field in ("command", "hostname", "memory", "pids_limit", "capabilities", "no_new_privileges", "rootfs"):
        assert getattr(back, field) == getattr(spec, field), field


def test_bad_bundles_name_the_field(tmp_path) -> None:
    from pycontainer_magics.oci.bundle import load_bundle

    with pytest.raises(BundleError, match="no such file"):
        load_bundle(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"ociVersion": "1.0.2", "root": {"path": "missing"},
                                                      "process": {"args": ["true"], "cwd": "/"}}))
    with pytest.raises(BundleError, match="root/path: .*missing is not a directory"):
        load_bundle(str(tmp_path))
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "config.json").write_text(json.dumps({
        "ociVersion": "1.0.2", "root": {"path": "rootfs"}, "process": {"args": ["true"], "cwd": "/"},
        "linux": {"namespaces": [{"type": "network", "path": "/proc/1/ns/net"}]}}))
    with pytest.raises(BundleError, match="linux/namespaces/0/path"):
        load_bundle(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({
        "ociVersion": "1.0.2", "root": {"path": "rootfs"}, "process": {"args": ["true"], "cwd": "/"},
        "mounts": [{"destination": "/x", "type": "nfs", "source": "h:/x"}]}))
    with pytest.raises(BundleError, match="mounts/0: a nfs mount"):
        load_bundle(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({
        "ociVersion": "1.0.2", "root": {"path": "rootfs"}, "process": {"args": ["true"], "cwd": "/", "rlimits": [
            {"type": "RLIMIT_NOFILE", "soft": 10, "hard": 10}, {"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]}}))
    with pytest.raises(BundleError, match="process/rlimits/1/type: unknown 'RLIMIT_BOGUS'"):
        load_bundle(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({
        "ociVersion": "1.0.2", "root": {"path": "rootfs"}, "process": {"args": ["true"], "cwd": "/"},
        "linux": {"seccomp": {"defaultAction": "SCMP_ACT_SOMETIMES"}}}))
    with pytest.raises(BundleError, match="linux/seccomp/defaultAction: .SCMP_ACT_SOMETIMES. is not one of"):
        load_bundle(str(tmp_path))


def test_bundles_carry_the_seccomp_profile(busybox: str, tmp_path) -> None:
    from pycontainer_magics.oci.bundle import load_bundle

    config = config_for(_spec(busybox))
    sc = config["linux"]["seccomp"]
    allowed = {n for r in sc["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" for n in r["names"]}
    assert sc["defaultAction"] == "SCMP_ACT_ERRNO" and "read" in allowed and "keyctl" not in allowed  # Docker's
    validate_config(config)
    assert "seccomp" not in config_for(_spec(busybox, seccomp="unconfined"))["linux"]
    write_bundle(_spec(busybox), str(tmp_path / "b"))
    spec, _ = load_bundle(str(tmp_path / "b"))
    assert json.loads(spec.seccomp) == sc  # read back as the same profile


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
@pytest.mark.parametrize("tool", ["crun", "runc"])
def test_crun_and_runc_spec_bundles_run_here(busybox: str, tmp_path, tool: str) -> None:
    """`crun spec` / `runc spec` as a user adjusts it (args, a rootfs, no terminal) runs under `pycontainer run
    --bundle` with what the config says, and without a note: every field is carried over or is ours to set."""
    import sys

    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (apt-get install {tool})")
    b = tmp_path / f"{tool}-bundle"
    b.mkdir()
    subprocess.run([tool, "spec"], cwd=b, check=True)
    shutil.copytree(busybox, b / "rootfs", symlinks=True)
    c = json.loads((b / "config.json").read_text())
    c["process"]["args"] = ["sh", "-c", "hostname; id -u; grep -E 'CapEff|NoNewPrivs' /proc/self/status; "
                            "ls /sys/class/net; touch /x 2>&1 | grep -c Read-only"]
    c["process"]["terminal"] = False
    (b / "config.json").write_text(json.dumps(c))
    p = subprocess.run([os.path.join(os.path.dirname(sys.executable), "pycontainer"), "run", "--quiet", "--bundle",
                        str(b), f"{tool}-spec"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    caps = sum(1 << n for n in (5, 10, 29))  # the default of both: KILL, NET_BIND_SERVICE, AUDIT_WRITE
    assert p.stdout.split() == [tool, "0", "CapEff:", f"{caps:016x}", "NoNewPrivs:", "1", "lo", "1"]
    assert "terminal" not in p.stderr
