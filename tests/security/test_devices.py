"""MED 4 of issue 16: device confinement. A device node in an image layer, in the host's tree under the
overlay, or one made with mknod opens only if runc's allow-list names it (devices cgroup on v1, a BPF program
on v2); mknod of a block device is refused, even with --userns host."""

from __future__ import annotations

import io
import os
import tarfile

import pytest
from helpers import host_clean  # noqa: F401

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root (device nodes)")]

PROBE = r"""
for node in /dev/null /dev/zero /dev/urandom /opt/disk; do
  if busybox head -c 1 $node >/dev/null 2>&1; then echo "$node open"; else echo "$node refused"; fi
done
if echo "pycontainer_magics device probe" 2>/dev/null > /opt/kmsg; then echo "/opt/kmsg open"
else echo "/opt/kmsg refused"; fi
busybox mknod /blk b 254 0 2>/dev/null && echo "mknod b made" || echo "mknod b refused"
busybox mknod /chr c 1 11 2>/dev/null && echo "mknod c made" || echo "mknod c refused"
busybox head -c 1 /chr >/dev/null 2>&1 && echo "made c open" || echo "made c refused"
"""


@pytest.fixture
def kmsg_image(tmp_path, monkeypatch) -> str:
    """An image whose layer holds /opt/kmsg (1:11, the kernel log: writable without any capability) and
    /opt/disk (the block device under the host's root filesystem: readable by root)."""
    from helpers import make_busybox_rootfs

    from pycontainer_magics.images import ImageConfig, Store

    monkeypatch.setenv("PYCONTAINER_STATE_DIR", str(tmp_path / "state"))
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w") as tf:
        disk = os.stat("/").st_dev
        for name, kind, major, minor in (("opt/kmsg", tarfile.CHRTYPE, 1, 11),
                                         ("opt/disk", tarfile.BLKTYPE, os.major(disk), os.minor(disk))):
            ti = tarfile.TarInfo(name)
            ti.type, ti.devmajor, ti.devminor, ti.mode = kind, major, minor, 0o666
            tf.addfile(ti)
    store = Store()
    store.create_image("lab/devs:1", [make_busybox_rootfs(str(tmp_path / "base")), b.getvalue()],
                       ImageConfig(env=("PATH=/bin",)))
    return "lab/devs:1"


@pytest.mark.cgroup2  # also run in the cgroup v2 VM (tests/vm/): there the BPF program does it
@pytest.mark.usefixtures("host_clean")
@pytest.mark.parametrize("userns", ["private", "host"])
def test_device_nodes_from_an_image_do_not_open(kmsg_image, userns):
    from pycontainer_magics.runtime import run
    from pycontainer_magics.runtime.parse import build_spec

    r = run(build_spec(image=kmsg_image, command=["sh", "-c", PROBE], userns=userns))
    # in a user namespace of its own the kernel refuses every mknod but a whiteout; sharing the host's, the
    # devices cgroup lets a character device be made (as runc does) and opened only if listed
    made = "mknod c made" if userns == "host" else "mknod c refused"
    assert r.stdout.splitlines() == [
        "/dev/null open", "/dev/zero open", "/dev/urandom open", "/opt/disk refused", "/opt/kmsg refused",
        "mknod b refused", made, "made c refused"], r.stdout + r.stderr


def _cgroup2_root() -> str | None:
    for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):  # unified layout, or hybrid's cgroup2 mount
        if all(os.path.exists(os.path.join(root, f)) for f in ("cgroup.procs", "cgroup.controllers")):
            return root
    return None


@pytest.mark.cgroup2
def test_the_v2_device_program_allows_only_what_the_rules_name(tmp_path):
    """The BPF program on its own, attached to a test cgroup in a cgroup2 tree (on a hybrid host, the cgroup2
    mount at /sys/fs/cgroup/unified holds it too): a child moved there opens /dev/null, not /dev/kmsg."""
    from pycontainer_magics.linux.cgroups.devices import DEFAULT_DEVICES, DeviceRule, attach_v2

    root = _cgroup2_root()
    if root is None:
        pytest.skip("no cgroup2 mount")
    parent = os.path.join(root, "pycontainer_magics_test")
    cg = os.path.join(parent, f"devices-{os.getpid()}")
    mem = str(tmp_path / "mem")
    os.mknod(mem, 0o600 | 0o020000, os.makedev(1, 1))  # physical memory: root opens it, unless filtered
    os.makedirs(cg)
    try:
        attach_v2(cg, DEFAULT_DEVICES)
        attach_v2(cg, DEFAULT_DEVICES + (DeviceRule("c", 1, 11, "w"),))  # replaces: kmsg writable, not readable
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            with open(os.path.join(cg, "cgroup.procs"), "w") as f:
                f.write("0")
            out = []
            for path, flags in (("/dev/null", os.O_RDWR), ("/dev/kmsg", os.O_WRONLY), ("/dev/kmsg", os.O_RDONLY),
                                (mem, os.O_RDONLY)):
                try:
                    os.close(os.open(path, flags))
                    out.append("open")
                except OSError as e:
                    out.append(os.strerror(e.errno))
            os.write(w, ",".join(out).encode())
            os._exit(0)
        os.close(w)
        got = os.read(r, 4096).decode()
        os.close(r)
        os.waitpid(pid, 0)
        assert got.split(",") == ["open", "open", "Operation not permitted", "Operation not permitted"]
    finally:
        os.rmdir(cg)
        if not os.listdir(parent) or all(not os.path.isdir(os.path.join(parent, d)) for d in os.listdir(parent)):
            os.rmdir(parent)
