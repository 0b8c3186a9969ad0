"""PID 1 puts its pipes on 0-3 and what it keeps right after, and closes every other fd it inherited
(launch.setup_fds): both when every pipe is above where they go (placed straight) and when some sit where another
goes (moved out of the way first)."""

from __future__ import annotations

import fcntl
import os

import pytest

from pycontainer_magics.runtime.launch import setup_fds


def _in_child(low: bool) -> list[str]:  # [kept, placed, open fds]
    """Five pipes' ends given to setup_fds in a fork, reported as (fd -> pipe inode) once placed, and what stayed."""
    report_r, report_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            ends = [fcntl.fcntl(os.pipe()[1], fcntl.F_DUPFD, 20) for _ in range(5)]  # (none where another goes)
            if low:  # (the status pipe on fd 0, stdin on fd 3: each on the other's place)
                os.dup2(ends[3], 0)
                os.dup2(ends[0], 3)
                ends[0], ends[3] = 3, 0
            else:  # (placed straight: the move out of the way is not taken)
                fcntl.fcntl = None  # type: ignore[assignment]
            inodes = [os.fstat(fd).st_ino for fd in ends]
            report = os.dup(report_w)
            kept = setup_fds(*ends[:4], keep=(ends[4], report))
            out = os.fdopen(kept[1], "w")
            placed = [os.fstat(i).st_ino == inodes[i] for i in range(5)]
            open_fds = sorted(int(n) for n in os.listdir("/proc/self/fd"))
            out.write(f"{kept}|{placed}|{open_fds}")
            out.close()
        finally:
            os._exit(0)
    os.close(report_w)
    data = os.read(report_r, 4096).decode()
    os.close(report_r)
    os.waitpid(pid, 0)
    return data.split("|")


@pytest.mark.parametrize("low", [False, True], ids=["straight", "moved first"])
def test_pipes_on_0_to_3_then_what_is_kept_and_nothing_else(low: bool) -> None:
    kept, placed, open_fds = _in_child(low)
    assert kept == "[4, 5]"
    assert placed == "[True, True, True, True, True]"
    assert open_fds in ("[0, 1, 2, 3, 4, 5, 6]", "[0, 1, 2, 3, 4, 5]"), open_fds  # (6: listdir's own fd, if still open)
