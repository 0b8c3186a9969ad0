"""Helpers shared by the runtime tests: a tiny busybox root filesystem and a check that the host was
left exactly as it was (no cgroup, mount, scratch file, fd or process of ours)."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

BUSYBOX_APPLETS = ("sh", "ls", "cat", "echo", "id", "hostname", "mount", "true", "false", "mkdir", "rm",
                   "touch", "wc", "grep", "sleep", "head", "dd", "chown", "stat", "readlink", "tr", "cut", "sort",
                   "sed")


def make_busybox_rootfs(path: str) -> str:
    """A minimal image: busybox-static and its applets as symlinks."""
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox-static is not installed (apt-get install busybox-static)")
    os.makedirs(os.path.join(path, "bin"), exist_ok=True)
    os.makedirs(os.path.join(path, "etc"), exist_ok=True)
    with open(os.path.join(path, "etc", "motd"), "w") as f:
        f.write("busybox image\n")
    shutil.copy(busybox, os.path.join(path, "bin", "busybox"))
    for a in BUSYBOX_APPLETS:
        os.symlink("busybox", os.path.join(path, "bin", a))
    return path


def our_cgroups() -> list[str]:
    """This process's container cgroups under the project's parent, in every hierarchy (another process
    may be running containers of its own at the same time)."""
    out = []
    for root in ("/sys/fs/cgroup", *(f"/sys/fs/cgroup/{c}" for c in ("memory", "pids", "cpu", "cpuacct",
                                                                      "cpuset", "freezer"))):
        parent = os.path.join(root, "pycontainer_magics")
        if os.path.isdir(parent):
            out += [os.path.join(parent, d) for d in os.listdir(parent)
                    if d.startswith(f"{os.getpid()}-") and os.path.isdir(os.path.join(parent, d))]
    return out


def our_mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.strip() for line in f if "pycontainer" in line or " overlay " in line]


def _plot_helper() -> tuple[int | None, int | None]:
    """The cards' plot helper (display/plot_worker.py), if a test drew a card with a plot: (its pid, our fd to it). It
    lives as long as this process, as the launch helper does: not a leftover."""
    drawer = sys.modules.get("pycontainer_magics.display.plot_worker")
    return (drawer.worker().pid, drawer.worker().fd) if drawer is not None else (None, None)


def child_pids() -> list[int]:
    from pycontainer_magics.runtime.zygote import zygote
    me = os.getpid()
    helpers = (zygote().pid, _plot_helper()[0])
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    stat = f.read()
                if int(stat[stat.rindex(")") + 2:].split()[1]) == me and int(d) not in helpers:
                    out.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return out


def snapshot() -> dict[str, object]:
    # The launch helper lives as long as the caller, by design: start it first so it is in every
    # snapshot, and do not count it as a leftover process.
    # The prepared holder's socket and the fd of our own PID namespace are kept on purpose: drop the one,
    # open the other first, so neither counts as a leak.
    from pycontainer_magics.runtime.cell_fork import own_pidns_fd
    from pycontainer_magics.runtime.cleanup import settle
    from pycontainer_magics.runtime.pool import pool
    from pycontainer_magics.runtime.zygote import zygote
    zygote().start()
    settle()  # clean-up deferred to the background (reaping, cgroup removal) must have finished
    pool.drain()  # (waits for a preparation under way, which queues the removal of what it replaces)
    settle()
    own_pidns_fd()
    return {"cgroups": our_cgroups(), "mounts": our_mounts(), "fds": sorted(os.listdir("/proc/self/fd")),
            "children": child_pids()}


def assert_clean(before: dict[str, object]) -> None:
    after = snapshot()
    assert after["cgroups"] == [], f"cgroups left behind: {after['cgroups']}"
    # Any of ours, and overlays new since the test began: another process on this host (a podman run,
    # another checkout's tests) may hold overlay mounts of its own meanwhile; they are not our leftovers.
    new_mounts = [m for m in after["mounts"]  # type: ignore[attr-defined]
                  if "pycontainer" in m or m not in before["mounts"]]  # type: ignore[operator]
    assert new_mounts == [], f"mounts left behind: {new_mounts}"
    assert after["children"] == [], f"processes left behind: {after['children']}"
    # matplotlib's font cache keeps the font files of the first figure drawn open, for the process's life.
    # An fd a background step (the pool preparing the next holder, a relay thread ending) still holds is
    # given up to 15 s and a settle more (seen under the cgroup v2 VM's emulation); a leak stays open.
    deadline = time.monotonic() + 15
    while True:
        drawer_fd = _plot_helper()[1]
        new_fds = {f for f in set(after["fds"]) - set(before["fds"])  # type: ignore[arg-type]
                   if "/mpl-data/fonts/" not in _fd_target(f) and f != str(drawer_fd)}
        if not new_fds or time.monotonic() > deadline:
            break
        time.sleep(0.1)
        after = snapshot()
    assert not new_fds, f"fds left open: {[(f, _fd_target(f)) for f in sorted(new_fds)]} (before: {before['fds']})"


@pytest.fixture
def host_clean() -> Iterator[None]:
    """Asserts after the test that the host holds nothing of ours."""
    before = snapshot()
    yield
    assert_clean(before)


def on_fork(monkeypatch: pytest.MonkeyPatch, seen: Callable[[int], object]) -> None:
    """Call `seen(pid)` in this process each time it forks from now on (os.fork, the child's pid)."""
    real = os.fork

    def fork() -> int:
        pid = real()
        if pid:
            seen(pid)
        return pid

    monkeypatch.setattr(os, "fork", fork)


def wait_for(cond: Callable[[], object], timeout: float = 30.0) -> bool:
    """Poll cond() every 20 ms until it is true (True) or `timeout` seconds pass (False). The bound is for what
    must happen: generous, since a loaded CI machine or the cgroup v2 VM's emulation may take many times what a
    quiet machine does (it costs nothing when the condition comes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return False


@contextlib.contextmanager
def throwaway_user(name: str) -> Iterator[int]:
    """A fresh unprivileged user with a home (one left by a killed run is replaced); yields its uid. At the
    end its processes, home and run directory go with it."""
    with contextlib.suppress(KeyError):
        pwd.getpwnam(name)
        subprocess.run(["userdel", "-r", name], capture_output=True)
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True)
    uid = pwd.getpwnam(name).pw_uid
    try:
        yield uid
    finally:
        subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
        # userdel refuses while a killed process of the user is still exiting: wait for them to be gone
        wait_for(lambda: subprocess.run(["pgrep", "-u", name], capture_output=True).returncode != 0, 30)
        subprocess.run(["userdel", "-r", name], capture_output=True)
        shutil.rmtree(f"/tmp/pycontainer_magics-{uid}", ignore_errors=True)  # its run dir (no XDG_RUNTIME_DIR)
        for entry in os.scandir("/tmp"):  # and what its processes made there (tempfile's directories): it is gone
            with contextlib.suppress(OSError):
                if entry.stat(follow_symlinks=False).st_uid == uid:
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path, ignore_errors=True)
                    else:
                        os.unlink(entry.path)


TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)


def paths_for_users() -> list[str]:
    """What another user's process needs to reach: the checkout, the virtualenv and its interpreter."""
    return sorted({os.path.realpath(p) for p in (REPO, sys.prefix, sys.base_prefix,
                                                 os.path.dirname(os.path.realpath(sys.executable)))})


def as_user_argv(user: str | int, argv: list[str]) -> list[str]:
    """argv run as `user` (a name, or a bare uid with no passwd entry: its gid the same, no groups). When the
    checkout or the interpreter lies where others cannot enter (a 0700 home, pyenv under /root), the command
    runs in a mount namespace of its own where they are reachable (tests/expose_for_user.py; the host's modes
    are left alone)."""
    from expose_for_user import blocked_dirs

    groups = "--clear-groups" if isinstance(user, int) else "--init-groups"
    setpriv = ["setpriv", f"--reuid={user}", f"--regid={user}", groups, "--reset-env", *argv]
    paths = paths_for_users()
    if not blocked_dirs(paths):
        return setpriv
    return [sys.executable, os.path.join(TESTS, "expose_for_user.py"), *paths, "--", *setpriv]


def run_as(user: str, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(as_user_argv(user, argv), capture_output=True, text=True, timeout=timeout, cwd="/")


from pycontainer_magics.oci.conformance import CrunRunner  # noqa: E402,F401 - re-exported for tests

# A notebook cell's process as an unprivileged user: a run with limits fails with the delegation advice, it
# waits (the administrator follows the advice), runs again, then runs `pycontainer run` with limits from
# the same process (its child: in the same cgroup, which on v2 is what the advice moved).
DELEGATED_CELL = """
import json, os, subprocess, sys
from pycontainer_magics.runtime import ContainerSpec, LaunchError, run
spec = ContainerSpec(python_code="b = bytearray(200 * 2**20)", memory=48 * 2**20, pids_limit=32, cpus=1.0)
for attempt in (1, 2):
    try:
        r = run(spec, python_globals={})
    except LaunchError as e:
        print("ERROR=" + str(e), flush=True)
        sys.stdin.readline()
        continue
    cli = subprocess.run([os.path.join(os.path.dirname(sys.executable), "pycontainer"), "run", "-q", "--memory",
                          "64m", "--pids-limit", "16", "--", "sh", "-c", "echo ok"], capture_output=True, text=True)
    print("RESULT=" + json.dumps({"oom": r.oom_killed, "code": r.exit_code, "limit": r.memory_limit,
                                  "version": r.cgroup_version, "cli": [cli.returncode, cli.stdout, cli.stderr]}),
          flush=True)
    break
"""


def follow_delegation_advice(user: str | int, parent: str, env: list[str]) -> tuple[str, dict[str, object]]:
    """Run DELEGATED_CELL as `user` with PYCONTAINER_CGROUP_PARENT=parent (a path under the tests' own cgroup
    parent); run as root exactly the command its error prints; let it run again. Returns (the script root
    ran, the cell's result). Removes the delegated directories and the levels above it the advice made."""
    import json
    import re

    from pycontainer_magics.linux.cgroups import open_hierarchy

    # Every directory from each hierarchy's root down to the delegated parent: the ones missing now are
    # the advice's to make and ours to remove.
    levels = []
    for top in open_hierarchy(parent).parent_paths:
        root = top[:-len(parent)].rstrip("/")
        parts = parent.split("/")
        levels += [os.path.join(root, *parts[:i + 1]) for i in range(len(parts))]
    made = [d for d in levels if not os.path.isdir(d)]
    argv = as_user_argv(user, [*env, f"PYCONTAINER_CGROUP_PARENT={parent}", sys.executable, "-c", DELEGATED_CELL])
    proc = subprocess.Popen(argv, cwd="/", stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None and proc.stderr is not None
        line = proc.stdout.readline()
        assert line.startswith("ERROR="), line + proc.stderr.read()[-2000:]
        assert f"PYCONTAINER_CGROUP_PARENT={parent}" in line, line
        m = re.search(r"as root run: sh -c '([^']*)'", line)
        assert m, line
        done = subprocess.run(["sh", "-c", m.group(1)], capture_output=True, text=True)  # literally
        assert done.returncode == 0, (m.group(1), done.stderr)
        proc.stdin.write("\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=300)
        result = next((x for x in out.splitlines() if x.startswith("RESULT=")), None)
        assert result, out[-1000:] + err[-2000:]
        return m.group(1), json.loads(result[7:])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for d in sorted(made, key=lambda d: -d.count("/")):  # deepest first; a session-PID leaf too
            if os.path.isdir(d):
                for sub in os.listdir(d):
                    if os.path.isdir(os.path.join(d, sub)) and os.path.join(d, sub) not in made:
                        os.rmdir(os.path.join(d, sub))
                os.rmdir(d)


def _fd_target(fd: str) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "?"


def other_state_dirs_links() -> set[str]:
    """Bridges and host veths another state dir owns (a notebook, another test run with networks up while a
    test runs): not the test's, so host-wide leak checks leave them out."""
    from pycontainer_magics.network import networks
    from pycontainer_magics.network.netns import iproute

    tag = networks.link_tag()
    with iproute() as ipr:
        return {str(link.get("ifname")) for link in ipr.get_links()
                if (link.get("IFLA_IFALIAS") or "").startswith(networks.TAG_PREFIX)
                and not networks.is_ours(link.get("IFLA_IFALIAS"), tag)}
