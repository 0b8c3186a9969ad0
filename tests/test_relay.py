"""The one output relay (runtime/relay.py): UTF-8 decoded incrementally (a character split across reads
arrives whole), whole lines delivered, a partial line shown once the pipes go quiet; the same relay
behind run, exec and a process run in a cgroup."""

from __future__ import annotations

import os

import pytest
from helpers import host_clean  # noqa: F401

from pycontainer_magics.runtime import ContainerSpec, run
from pycontainer_magics.runtime.relay import OutputRelay

E_ACUTE = "é".encode()  # two bytes: c3 a9
# Writes the first byte of é, waits, writes the second: two reads on our side of the pipe. The wait is
# longer than the relay's quiet time, so "caf" is shown on its own first; é must still come whole.
SPLIT = r"printf 'caf\303'; sleep 0.3; printf '\251\n'; printf 'tail'"


def _collector() -> tuple[list[tuple[str, str]], OutputRelay]:
    got: list[tuple[str, str]] = []
    return got, OutputRelay(lambda stream, text: got.append((stream, text)))


def test_a_character_split_across_reads_is_decoded_whole():
    got, relay = _collector()
    relay.feed("stdout", b"caf" + E_ACUTE[:1])
    relay.feed("stdout", E_ACUTE[1:] + b"\n")
    relay.feed("stdout", b"")
    assert got == [("stdout", "café\n")]
    assert "\ufffd" not in relay.text("stdout")


def test_whole_lines_are_delivered_and_a_partial_line_on_flush_or_end():
    got, relay = _collector()
    relay.feed("stdout", b"one\ntw")
    relay.feed("stderr", b"err")
    assert got == [("stdout", "one\n")] and relay.holding
    relay.feed("stdout", b"o\nthree")
    assert got[-1] == ("stdout", "two\n")
    relay.flush()  # the pipes went quiet: a prompt without a newline still shows
    assert got[-2:] == [("stdout", "three"), ("stderr", "err")] and not relay.holding
    relay.feed("stdout", b"")
    relay.feed("stderr", b"\xff")
    relay.feed("stderr", b"")  # an invalid byte at the end: one replacement character
    assert got[-1] == ("stderr", "\ufffd")
    assert relay.text("stdout") == "one\ntwo\nthree" and relay.text("stderr") == "err\ufffd"


def test_capture_is_bounded_but_everything_is_delivered():
    got, relay = _collector()
    relay.max_capture = 10
    for _ in range(5):
        relay.feed("stdout", b"123456789\n")
    assert len(got) == 5 and relay.text("stdout") == "123456789\n"


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.mark.root
@needs_root
def test_run_relays_a_split_character_whole(host_clean):  # noqa: F811
    got: list[tuple[str, str]] = []
    r = run(ContainerSpec(command=("sh", "-c", SPLIT)), on_output=lambda s, t: got.append((s, t)))
    assert r.exit_code == 0
    assert got == [("stdout", "caf"), ("stdout", "é\n"), ("stdout", "tail")]
    assert r.stdout == "café\ntail"


@pytest.mark.root
@needs_root
def test_exec_relays_a_split_character_whole(host_clean):  # noqa: F811
    from pycontainer_magics.workloads.containers import containers, start

    c = start(ContainerSpec(command=("sleep", "30"), name="relay"))
    try:
        got: list[tuple[str, str]] = []
        res = c.exec(["sh", "-c", SPLIT], on_output=lambda s, t: got.append((s, t)))
        assert res.stdout == "café\ntail" and got == [("stdout", "caf"), ("stdout", "é\n"), ("stdout", "tail")]
    finally:
        containers.remove(c.id, force=True)


@pytest.mark.root
@pytest.mark.cgroup1
@needs_root
def test_a_process_in_a_cgroup_relays_a_split_character_whole():
    from conftest import cgroup_test_hierarchy

    from pycontainer_magics.lab.group_run import run_in_group

    with cgroup_test_hierarchy("v1" if os.path.isdir("/sys/fs/cgroup/memory") else "v2", "relay") as (h, prefix):
        cg = h.create(prefix + "g")
        try:
            got: list[tuple[str, str]] = []
            r = run_in_group(cg, command=["sh", "-c", SPLIT], on_output=lambda s, t: got.append((s, t)))
            assert r.stdout == "café\ntail" and got == [("stdout", "caf"), ("stdout", "é\n"), ("stdout", "tail")]
        finally:
            cg.remove()


def test_a_line_without_end_is_delivered_in_pieces():
    """Output without newlines (binary, `head -c 256M /dev/zero`, a progress bar) is not held whole until the
    stream ends: at MAX_LINE characters it goes out, so the held text and each read's copy stay bounded (held
    whole, 256 MiB took minutes of quadratic copying and as much memory)."""
    from pycontainer_magics.runtime.relay import MAX_LINE

    got: list[str] = []
    r = OutputRelay(lambda stream, text: got.append(text))
    chunk = b"y" * 65536
    for _ in range(160):  # 10 MiB
        r.feed("stdout", chunk)
        assert len(r._streams["stdout"].held) < MAX_LINE + len(chunk)
    r.feed("stdout", b"")
    assert "".join(got) == "y" * (160 * 65536)
    assert len(got) >= 160 * 65536 // (MAX_LINE + len(chunk))
    # whole lines are still delivered whole
    got.clear()
    r = OutputRelay(lambda stream, text: got.append(text))
    r.feed("stdout", b"one\ntw")
    r.feed("stdout", b"o\n")
    assert got == ["one\n", "two\n"]
