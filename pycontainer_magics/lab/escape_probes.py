"""Escape probes: what an attacker who is root inside a container tries first, each reported as blocked or
allowed — in this project's default container, and in runc's with `runc spec`'s default configuration, side by
side (notebook 10, tests/security/test_escape_probes.py).

Each probe is a few lines of Python run by the host's python3 as container root (in a child of its own, so one
probe's side effects do not change the next). It prints one JSON line: {"probe", "blocked", "detail"}. No probe
does harm when it succeeds: it opens /proc/sysrq-trigger for writing but writes nothing, connects to a socket
the runner made and sends nothing, loads no BPF program that could run.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

# The probes, as the body of a function `probe()` returning (blocked, detail). `call(nr, *args)` makes a raw
# system call and returns "ok" or the errno's name; HOST_SOCKET is a listening unix socket on the host.
PRELUDE = r'''
import ctypes, errno, json, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
def call(nr, *args):
    r = libc.syscall(nr, *[ctypes.c_long(a) for a in args])
    return "ok" if r >= 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
def refused(what):
    return what != "ok"
'''


@dataclass(frozen=True)
class Probe:
    name: str
    what: str  # what the attacker tries, in one line
    body: str  # Python returning (blocked, detail)


PROBES: tuple[Probe, ...] = (
    Probe("cgroup release_agent", "mount a cgroup v1 hierarchy and set its release_agent (runs as host root)", r'''
os.makedirs("/tmp/pcm-cg", exist_ok=True)
r = libc.mount(b"cgroup", b"/tmp/pcm-cg", b"cgroup", 0, b"rdma")
if r != 0:
    return True, "mount: " + errno.errorcode[ctypes.get_errno()]
try:
    open("/tmp/pcm-cg/release_agent", "w").close()
    return False, "release_agent writable"
except OSError as e:
    return True, "release_agent: " + errno.errorcode[e.errno]
'''),
    Probe("/proc/sysrq-trigger", "open the host's magic SysRq key for writing (reboot, crash)", r'''
try:
    os.close(os.open("/proc/sysrq-trigger", os.O_WRONLY))
    return False, "open for writing"
except OSError as e:
    return True, errno.errorcode[e.errno] + (" (this kernel has none)" if e.errno == errno.ENOENT else "")
'''),
    Probe("open_by_handle_at", "open a host file by handle, past the container's root (the 'shocker' escape)", r'''
handle = ctypes.create_string_buffer(b"\x08\x00\x00\x00\x01\x00\x00\x00" + bytes(8))  # 8 bytes, type 1
fd = os.open("/", os.O_RDONLY)
r = call(304, fd, ctypes.addressof(handle), 0)
return r == "EPERM", r
'''),
    Probe("mount", "mount a filesystem", r'''
os.makedirs("/tmp/pcm-mnt", exist_ok=True)
r = libc.mount(b"t", b"/tmp/pcm-mnt", b"tmpfs", 0, None)
return r != 0, "ok" if r == 0 else errno.errorcode[ctypes.get_errno()]
'''),
    Probe("unshare -U", "make a user namespace (kernel attack surface root never needs in a container)",
          "r = call(272, 0x10000000)\nreturn refused(r), r"),
    Probe("keyctl", "reach the kernel keyring (not namespaced)",
          "r = call(250, 0, -3, 1)  # KEYCTL_GET_KEYRING_ID of the session keyring, made if missing\n"
          "return refused(r), r"),
    Probe("bpf", "load BPF programs (kernel attack surface)",
          "r = call(321, 5, 0, 0)\nreturn r == 'EPERM', r"),
    Probe("io_uring", "set up io_uring (its requests bypass seccomp)", "r = call(425, 1, 0)\nreturn r == 'EPERM', r"),
    Probe("AF_VSOCK socket", "open a vsock socket (reaches the hypervisor's host, whatever the network namespace)",
          "r = call(41, 40, 1, 0)\nreturn r != 'ok', r"),
    Probe("host processes", "see (and so ptrace or signal) the host's processes", r'''
names = set()
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            names.add(open(f"/proc/{p}/comm").read().strip())
        except OSError:
            pass
return "kthreadd" not in names, f"{len(names)} process names visible"
'''),
    Probe("host unix socket", "connect to a socket of the host's (an ssh-agent, tmux, a docker daemon under /tmp)", r'''
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(HOST_SOCKET)
    return False, "connected"
except OSError as e:
    return True, errno.errorcode[e.errno]
'''),
    Probe("device node", "make and open a device node (here the kernel log, 1:11)", r'''
try:
    os.mknod("/tmp/pcm-kmsg", 0o20600, os.makedev(1, 11))
except OSError as e:
    return True, "mknod: " + errno.errorcode[e.errno]
try:
    os.close(os.open("/tmp/pcm-kmsg", os.O_WRONLY))
    return False, "opened"
except OSError as e:
    return True, "open: " + errno.errorcode[e.errno]
'''),
    Probe("block device", "make a block device node (the host's disk)", r'''
dev = os.stat("/").st_dev
try:
    os.mknod("/tmp/pcm-disk", 0o60600, dev)
    return False, "made"
except OSError as e:
    return True, errno.errorcode[e.errno]
'''),
    Probe("/proc/kcore", "read the host's physical memory image", r'''
try:
    with open("/proc/kcore", "rb") as f:
        data = f.read(16)
    return not data, f"{len(data)} bytes"
except OSError as e:
    return True, errno.errorcode[e.errno] + (" (this kernel has none)" if e.errno == errno.ENOENT else "")
'''),
    Probe("host password hashes", "read /etc/shadow's hashes", r'''
try:
    lines = open("/etc/shadow").read().splitlines()
except OSError as e:
    return True, errno.errorcode[e.errno]
hashed = [l for l in lines if l.split(":")[1:2] and l.split(":")[1].startswith("$")]
return not hashed, f"{len(hashed)} hashes"
'''),
    Probe("fork bomb", "start processes without end (is there a pids limit?)", r'''
for path in ("/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max"):
    try:
        value = open(path).read().strip()
    except OSError:
        continue
    return value != "max", "pids.max " + value
return False, "no pids limit visible"
'''),
    Probe("filling the disk", "write until the disk is full (is the writable layer bounded?)", r'''
st = os.statvfs("/")
if st.f_flag & os.ST_RDONLY:
    return True, "read-only root"
size = st.f_blocks * st.f_frsize
return size <= 4 << 30, f"{size >> 20} MiB writable"
'''),
)


def script(probes: tuple[Probe, ...] = PROBES, host_socket: str = "/nonexistent") -> str:
    """The Python program that runs `probes`, each in a child process."""
    parts = [PRELUDE, f"HOST_SOCKET = {host_socket!r}", "results = []"]
    for i, p in enumerate(probes):
        body = "\n".join("    " + line for line in p.body.strip().splitlines())
        parts.append(f"def probe_{i}():\n{body}\n")
    names = [p.name for p in probes]
    parts.append(f"""
names = {names!r}
for i, name in enumerate(names):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            blocked, detail = globals()[f"probe_{{i}}"]()
        except Exception as e:
            blocked, detail = True, f"{{type(e).__name__}}: {{e}}"
        os.write(w, json.dumps({{"probe": name, "blocked": bool(blocked), "detail": str(detail)}}).encode())
        os._exit(0)
    os.close(w)
    out = b""
    while chunk := os.read(r, 4096):
        out += chunk
    os.close(r)
    os.waitpid(pid, 0)
    print(out.decode() or json.dumps({{"probe": name, "blocked": True, "detail": "the probe died"}}), flush=True)
""")
    return "\n".join(parts)


@dataclass(frozen=True)
class Result:
    probe: str
    blocked: bool
    detail: str


def parse(output: str) -> list[Result]:
    out = []
    for line in output.splitlines():
        if line.startswith("{"):
            d = json.loads(line)
            out.append(Result(d["probe"], d["blocked"], d["detail"]))
    return out


@contextmanager
def host_socket() -> Iterator[str]:
    """A listening unix socket on the host's root filesystem (what a container reaches through the host image
    if it is not hidden), removed afterwards."""
    d = tempfile.mkdtemp(prefix="pcm-probe-", dir="/var/tmp")
    os.chmod(d, 0o755)
    path = os.path.join(d, "host.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.listen(1)
    try:
        yield path
    finally:
        s.close()
        shutil.rmtree(d, ignore_errors=True)


def run_ours(probes: tuple[Probe, ...] = PROBES, python: str = "/usr/bin/python3", **options: object
             ) -> list[Result]:
    """The probes in this project's default container (the host image), as `%%container` makes it; `options`
    are build_spec's (security_opt=..., userns=...)."""
    from ..runtime import run
    from ..runtime.parse import build_spec

    with host_socket() as sock:
        r = run(build_spec(command=[python, "-c", script(probes, sock)], **options))  # type: ignore[arg-type]
    results = parse(r.stdout)
    if len(results) != len(probes):
        raise RuntimeError(f"escape probes: {len(results)} results of {len(probes)}: {r.stderr.strip()[-300:]}")
    return results


def run_runc(probes: tuple[Probe, ...] = PROBES, python: str = "/usr/bin/python3", runc: str = "runc"
             ) -> list[Result]:
    """The probes under runc with `runc spec`'s default configuration, changed only so that the same probe
    program runs: the command, the host's /usr and /lib bound read-only into an empty root, a tmpfs on /tmp."""
    exe = shutil.which(runc)
    if exe is None:
        raise FileNotFoundError(f"{runc} is not installed")
    work = tempfile.mkdtemp(prefix="pcm-runc-probe-")
    try:
        rootfs = os.path.join(work, "rootfs")
        for d in ("usr", "lib", "lib64", "bin", "sbin", "etc", "tmp", "proc", "sys", "dev"):
            if d in ("lib64", "bin", "sbin", "lib") and os.path.islink("/" + d):
                os.makedirs(rootfs, exist_ok=True)
                os.symlink(os.readlink("/" + d), os.path.join(rootfs, d))
            else:
                os.makedirs(os.path.join(rootfs, d), exist_ok=True)
        subprocess.run([exe, "spec"], cwd=work, check=True, capture_output=True)
        with open(os.path.join(work, "config.json")) as f:
            config = json.load(f)
        config["process"]["terminal"] = False
        config["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                                 "options": ["nosuid", "mode=1777"]})
        with host_socket() as sock:
            config["process"]["args"] = [python, "-c", script(probes, sock)]
            for d in ("usr", "lib", "lib64"):
                if os.path.isdir("/" + d) and not os.path.islink("/" + d):
                    config["mounts"].append({"destination": "/" + d, "type": "bind", "source": "/" + d,
                                             "options": ["rbind", "ro"]})
            with open(os.path.join(work, "config.json"), "w") as f:
                json.dump(config, f)
            state = os.path.join(work, "state")
            p = subprocess.run([exe, "--root", state, "run", "--bundle", work, f"pcm-probe-{os.getpid()}"],
                               capture_output=True, text=True, timeout=120)
        results = parse(p.stdout)
        if len(results) != len(probes):
            raise RuntimeError(f"escape probes under runc: {len(results)} results: {p.stderr.strip()[-300:]}")
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _cell(r: Result) -> str:
    return ("blocked" if r.blocked else "ALLOWED") + f" ({r.detail})"


def side_by_side(ours: list[Result], runc: list[Result] | None) -> list[dict[str, str]]:
    """Rows of the comparison table: probe, what it tries, this project, runc (default spec)."""
    what = {p.name: p.what for p in PROBES}
    theirs = {r.probe: r for r in runc or []}
    rows = []
    for r in ours:
        t = theirs.get(r.probe)
        rows.append({"probe": r.probe, "attempt": what.get(r.probe, ""), "pycontainer_magics": _cell(r),
                     "runc (runc spec)": "-" if t is None else _cell(t)})
    return rows


__all__ = ["PROBES", "Probe", "Result", "host_socket", "parse", "run_ours", "run_runc", "script", "side_by_side"]
