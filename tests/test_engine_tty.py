"""Terminals and standard input through `pycontainer serve`, driven by the real docker CLIs in a pseudo-terminal
(pexpect: the CLI sees a terminal, puts it in raw mode and sends keystrokes as a user's) and by docker-py:
`docker run -it`, `echo hi | docker run -i`, `docker run -t` (a raw stream), `docker exec -it`/`-i`, `docker
attach` with the detach keys, `docker start -ai`, window sizes, and a daemon restarted under a running shell.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time

import pytest
from engine_helpers import IMAGE, alive, daemon, docker_clis, our_links, prune_state, start_daemon, stop_daemon
from helpers import wait_for

pexpect = pytest.importorskip("pexpect")

pytestmark = [pytest.mark.root, pytest.mark.network]

PROMPT = "/ # "


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory):
    root = str(tmp_path_factory.mktemp("engine-tty"))
    with daemon(root) as dm:
        yield dm
        sups = dm.supervisors()
        socks = [os.path.join(root, "state", "engine", "containers", r["Id"], "attach.sock") for r in dm.records()]
    assert not [p for p in sups if alive(p)]  # every supervisor (and its stdio relay) is gone
    assert not [s for s in socks if os.path.exists(s)]
    prune_state(dm)
    assert our_links(dm) == []


def spawn(d, cli: str, *args: str, rows: int = 40, cols: int = 132):
    """The docker CLI in a pseudo-terminal of `rows` x `cols`, as a user's shell runs it."""
    child = pexpect.spawn(cli, list(args), env=d.env, timeout=30, dimensions=(rows, cols))
    return child


def finish(child) -> int:
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus if child.exitstatus is not None else 128 + child.signalstatus


def wait_size(sh, rows: int, cols: int, was: tuple[int, int]) -> None:
    """`stty size` in the shell (at its prompt) until it shows rows x cols (the CLI sends the size when it
    sees its own change); fails if it keeps the old one."""
    deadline = time.monotonic() + 30
    while True:
        sh.sendline("stty size")
        got = sh.expect([rf"{rows} {cols}\r\n", rf"{was[0]} {was[1]}\r\n"])
        sh.expect_exact(PROMPT)
        if got == 0:
            return
        assert time.monotonic() < deadline, f"the terminal kept {was}, not {rows} x {cols}"
        time.sleep(0.2)


def gone(d, name: str) -> bool:
    return d.docker("inspect", name).returncode != 0


@pytest.mark.parametrize("cli", docker_clis())
def test_run_it_gives_the_shell_a_terminal(d, cli):
    """A prompt; /dev/pts/0 of the container's own devpts as stdin and controlling terminal; the client's
    window size, and its change (SIGWINCH); ^C reaches the foreground job through the terminal; `exit 3` is
    the CLI's exit status; --rm removes it."""
    name = f"it{os.getpid()}"
    sh = spawn(d, cli, "run", "-it", "--rm", "--name", name, IMAGE, "sh")
    sh.expect_exact(PROMPT)
    sh.sendline("tty; echo $((6*7))")
    sh.expect(r"/dev/pts/0\r\n42\r\n")
    sh.expect_exact(PROMPT)
    wait_size(sh, 40, 132, was=(0, 0))  # the client's size, sent once it started the container
    sh.setwinsize(50, 100)  # the CLI sees SIGWINCH and sends POST /containers/ID/resize
    wait_size(sh, 50, 100, was=(40, 132))
    sh.sendline("echo sleeping; sleep 100")
    # Once the shell runs the line (its terminal back in cooked mode, with ISIG): a ^C typed before that is a
    # byte of input, not an interrupt (a fixed half second may not be enough on a loaded machine). From
    # here a ^C ends the line with status 130 whether `sleep` has started or not.
    sh.expect(r"sleeping\r\n")
    t0 = time.monotonic()
    sh.sendcontrol("c")  # a byte through the terminal; its line discipline sends the foreground job SIGINT
    sh.expect_exact(PROMPT)
    assert time.monotonic() - t0 < 20
    sh.sendline("echo status $?")
    sh.expect(r"status 130\r\n")
    sh.expect_exact(PROMPT)
    sh.sendline("exit 3")
    assert finish(sh) == 3
    assert gone(d, name)


@pytest.mark.parametrize("cli", docker_clis())
def test_run_i_feeds_piped_stdin_and_closes_it(d, cli):
    r = d.docker("run", "-i", "--rm", IMAGE, "cat", cli=cli, input=b"hi\n")
    assert (r.returncode, r.stdout) == (0, "hi\n")
    # StdinOnce: the input's end closes the container's stdin, so `cat` ends; its output comes after
    r = d.docker("run", "-i", "--rm", IMAGE, "sh", "-c", "cat; echo done; exit 4", cli=cli, input=b"a\nb\n")
    assert (r.returncode, r.stdout) == (4, "a\nb\ndone\n")
    r = subprocess.run([cli, "run", "-i", "--rm", IMAGE, "wc", "-c"], env=d.env, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout.strip()) == (0, "0")  # no input at all: EOF at once, not a hang
    data = os.urandom(3 * 2**20)  # more than a pipe holds: the relay waits for room
    r = subprocess.run([cli, "run", "-i", "--rm", IMAGE, "busybox", "md5sum"], env=d.env, input=data,
                       capture_output=True, timeout=120)
    assert r.returncode == 0 and r.stdout.split()[0].decode() == hashlib.md5(data).hexdigest()


@pytest.mark.parametrize("cli", docker_clis())
def test_run_t_output_is_a_raw_stream(d, cli):
    """With a terminal there is one stream, no multiplexing headers: exactly the bytes the terminal gives
    (ONLCR's \\r\\n), stderr through the same terminal."""
    r = subprocess.run([cli, "run", "-t", "--rm", IMAGE, "sh", "-c", "echo out; echo err >&2; tty; exit 2"],
                       env=d.env, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert (r.returncode, r.stdout) == (2, b"out\r\nerr\r\n/dev/pts/0\r\n")
    name = f"tl{os.getpid()}"
    d.docker("run", "-t", "--name", name, IMAGE, "sh", "-c", "echo logged", cli=cli, check=True)
    logs = subprocess.run([cli, "logs", name], env=d.env, capture_output=True, timeout=60)
    assert logs.stdout == b"logged\r\n"  # dockerd sends a terminal's log raw too
    d.docker("rm", name, cli=cli, check=True)


@pytest.mark.parametrize("cli", docker_clis())
def test_exec_it_and_exec_i(d, cli):
    name = f"ex{os.getpid()}"
    d.docker("run", "-d", "--name", name, IMAGE, "sleep", "300", cli=cli, check=True)
    try:
        sh = spawn(d, cli, "exec", "-it", name, "sh", rows=33, cols=99)
        sh.expect_exact(PROMPT)
        sh.sendline("tty; echo $$")
        sh.expect(r"/dev/pts/\d+\r\n(\d+)\r\n")
        assert int(sh.match.group(1)) > 1  # in the container's PID namespace, not its PID 1
        sh.expect_exact(PROMPT)
        wait_size(sh, 33, 99, was=(0, 0))
        sh.setwinsize(20, 70)  # POST /exec/ID/resize
        wait_size(sh, 20, 70, was=(33, 99))
        sh.sendline("exit 5")
        assert finish(sh) == 5
        r = d.docker("exec", "-i", name, "sh", "-c", "cat; echo end", cli=cli, input=b"piped\n")
        assert (r.returncode, r.stdout) == (0, "piped\nend\n")
        r = subprocess.run([cli, "exec", "-t", name, "sh", "-c", "tty"], env=d.env, capture_output=True,
                           timeout=60, stdin=subprocess.DEVNULL)
        assert r.returncode == 0 and r.stdout.startswith(b"/dev/pts/") and r.stdout.endswith(b"\r\n")
    finally:
        d.docker("rm", "-f", name, cli=cli)


@pytest.mark.parametrize("cli", docker_clis())
def test_attach_detach_keys_and_attach_again(d, cli):
    """`docker run -dit`, `docker attach`, ctrl-p ctrl-q: the CLI says "read escape sequence" (exit 1, as with
    dockerd) and the shell goes on; attach again and its `exit 7` ends it."""
    name = f"at{os.getpid()}"
    d.docker("run", "-dit", "--name", name, IMAGE, "sh", cli=cli, check=True)
    try:
        a = spawn(d, cli, "attach", name)
        time.sleep(0.5)
        a.sendline("echo $((6*7))")
        a.expect(r"42\r\n")
        a.sendcontrol("p")
        a.sendcontrol("q")
        a.expect("read escape sequence")
        assert finish(a) == 1
        assert d.docker("inspect", "-f", "{{.State.Status}}", name, cli=cli).stdout.strip() == "running"
        a = spawn(d, cli, "attach", name)
        time.sleep(0.5)
        a.sendline("echo again-$((1+1))")
        a.expect(r"again-2\r\n")
        a.sendline("exit 7")
        assert finish(a) == 7
        info = json.loads(d.docker("inspect", name, cli=cli, check=True).stdout)[0]["State"]
        assert (info["Status"], info["ExitCode"]) == ("exited", 7)
        logs = subprocess.run([cli, "logs", name], env=d.env, capture_output=True, timeout=60).stdout
        assert b"again-2\r\n" in logs and b"\x01\x00\x00\x00" not in logs
    finally:
        d.docker("rm", "-f", name, cli=cli)


def test_start_ai_attaches_before_it_starts(d):
    cli = docker_clis()[-1]
    name = f"sa{os.getpid()}"
    d.docker("create", "-it", "--name", name, IMAGE, "sh", cli=cli, check=True)
    try:
        for code in (4, 6):  # a created container, then an exited one: each start is attached from its beginning
            sh = spawn(d, cli, "start", "-ai", name)
            sh.expect_exact(PROMPT)
            sh.sendline(f"exit {code}")
            assert finish(sh) == code
    finally:
        d.docker("rm", "-f", name, cli=cli)


def test_docker_py_terminal_and_stdin(d):
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=d.env["DOCKER_HOST"])
    try:
        c = client.containers.run(IMAGE, "sh", stdin_open=True, tty=True, detach=True, name=f"py{os.getpid()}")
        try:
            sock = client.api.attach_socket(c.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            raw = sock._sock
            raw.settimeout(20)
            raw.sendall(b"echo $((6*7))\n")
            got = b""
            while b"42\r\n" not in got:
                chunk = raw.recv(4096)
                assert chunk, got
                got += chunk
            assert b"\x01\x00\x00\x00" not in got  # a terminal: raw bytes, no stream headers
            c.resize(height=21, width=77)
            r = c.exec_run(["sh", "-c", "tty"], tty=True)  # a terminal of its own, next to the shell's /dev/pts/0
            assert (r.exit_code, r.output) == (0, b"/dev/pts/1\r\n")
            raw.sendall(b"stty size; exit 9\n")
            got = b""
            while True:
                chunk = raw.recv(4096)
                if not chunk:
                    break
                got += chunk
            assert b"21 77\r\n" in got
            assert c.wait(timeout=30)["StatusCode"] == 9
            sock.close()
        finally:
            c.remove(force=True)
    finally:
        client.close()


def test_a_restarted_daemon_reaches_a_running_shell(tmp_path):
    """--live-restore, then the daemon is killed: the next one finds the shell's supervisor through its
    attach.sock, so `docker attach` types into it and its exit is seen."""
    cli = docker_clis()[-1]
    with daemon(str(tmp_path), "--live-restore") as first:
        first.docker("run", "-dit", "--name", "keep", IMAGE, "sh", cli=cli, check=True)
        stop_daemon(first, signal.SIGKILL)
        second = start_daemon(str(tmp_path), "--live-restore")
        try:
            a = spawn(second, cli, "attach", "keep")
            time.sleep(0.5)
            a.sendline("echo still-$((2+3))")
            a.expect(r"still-5\r\n")
            a.sendline("exit 2")
            assert finish(a) == 2
            state = json.loads(second.docker("inspect", "keep", cli=cli, check=True).stdout)[0]["State"]
            assert (state["Status"], state["ExitCode"]) == ("exited", 2)
            second.docker("rm", "keep", cli=cli, check=True)
        finally:
            stop_daemon(second)


def test_stdin_relay_takes_a_bounded_amount_from_its_client(tmp_path, monkeypatch):
    """A container that does not read its stdin: its supervisor stops taking the client's input once it holds
    MAX_PENDING (the daemon's send waits, as a full pipe's writer does) instead of piling up all that is sent;
    once the container reads, the input flows again."""
    import socket

    from pycontainer_magics.workloads import container_io, daemon_store

    monkeypatch.setattr(daemon_store, "container_dir", lambda cid: str(tmp_path))
    daemon_end, supervisor_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    relay = container_io.StdioRelay("x", None, tty=False, open_stdin=True,  # type: ignore[arg-type]
                                    channel=supervisor_end.detach())
    assert relay.stdin_r is not None
    container_stdin = os.dup(relay.stdin_r)  # the container's end: kept open, not read
    relay.start()
    daemon_end.setblocking(False)
    chunk = container_io.STDIN + bytes(container_io.MAX_MESSAGE)
    sent, stuck_since = 0, None
    try:
        while sent < 64 * 2**20:
            try:
                daemon_end.send(chunk)
                sent += container_io.MAX_MESSAGE
                stuck_since = None
            except BlockingIOError:
                stuck_since = stuck_since or time.monotonic()
                if time.monotonic() - stuck_since > 1:
                    break
                time.sleep(0.02)
        assert sent < container_io.MAX_PENDING + 4 * 2**20, sent  # held, pipe and socket buffers: not 64 MiB
        got = 0
        while got < container_io.MAX_PENDING:  # the container reads: what was held arrives, and there is room again
            got += len(os.read(container_stdin, 65536))
        daemon_end.setblocking(True)
        daemon_end.settimeout(10)
        daemon_end.send(chunk)
    finally:
        relay.finish()
        daemon_end.close()
        os.close(container_stdin)


def test_a_terminal_relay_survives_a_channel_it_dropped(tmp_path, monkeypatch):
    """A daemon that stops reading a terminal's channel loses it after SEND_TIMEOUT (the container goes on); a
    session attached after that (its channel may get the dropped one's fd number) receives the output: the
    dropped channel was taken out of the relay's selector, not left there to refuse the new one."""
    import gc
    import socket

    from pycontainer_magics.workloads import container_io, daemon_store

    class Log:
        def write(self, stream: str, data: bytes) -> None:
            pass

    monkeypatch.setattr(daemon_store, "container_dir", lambda cid: str(tmp_path))
    monkeypatch.setattr(container_io, "SEND_TIMEOUT", 0.2)
    stalled, supervisor_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    relay = container_io.StdioRelay("x", Log(), tty=True, open_stdin=False,  # type: ignore[arg-type]
                                    channel=supervisor_end.detach())
    master, slave = os.openpty()
    relay._got_master(master)
    relay.start()
    try:
        dropped_fd = relay.channels[0].fileno()
        # The new session's client end and its path's directory fd are made before the drop, so the lowest free
        # number after the drop (the one the relay's accept takes) is the dropped channel's own.
        d = os.open(str(tmp_path), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        fresh = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        # (Nor may a garbage collection meanwhile close an object's fd below it: the accept would take that one.)
        gc.disable()
        try:
            deadline = time.monotonic() + 30
            while relay.channels and time.monotonic() < deadline:  # the pty's output fills the stalled channel
                os.write(slave, b"y" * 4096)
                time.sleep(0.01)
            assert not relay.channels  # dropped
            fresh.connect(f"/proc/self/fd/{d}/{container_io.SOCKET}")
            os.close(d)
            fresh.settimeout(30)
            assert wait_for(lambda: bool(relay.channels), 30)
        finally:
            gc.enable()
        assert relay.channels[0].fileno() == dropped_fd  # the case that went wrong: the same number again
        os.write(slave, b"after\n")
        got = b""
        while b"after" not in got:
            msg = fresh.recv(container_io.MAX_MESSAGE + 1)
            assert msg[:1] == container_io.OUTPUT, msg[:20]
            got += msg[1:]
        fresh.close()
    finally:
        os.close(slave)
        relay.finish()
        stalled.close()


def test_an_attach_session_that_lags_holds_a_bounded_amount(monkeypatch):
    """Terminal output for an attach session whose client stopped reading: at most ATTACH_BUFFER messages, the
    newest kept (the log has everything); the end still reaches it; other sessions get everything."""
    import asyncio
    import socket

    from pycontainer_magics.engine import stdio
    from pycontainer_magics.workloads import container_io

    async def main() -> None:
        daemon_end, supervisor_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        lagging, reading = stdio.listener_queue(), stdio.listener_queue()
        io = stdio.ContainerIO(daemon_end, {lagging, reading})
        got: list[bytes] = []

        async def read_all() -> None:
            while (item := await reading.get()) is not None:
                got.append(item)

        reader = asyncio.ensure_future(read_all())
        n = stdio.ATTACH_BUFFER * 4
        for i in range(n):
            await asyncio.get_running_loop().sock_sendall(supervisor_end, container_io.OUTPUT + b"%d" % i)
            if i % 16 == 0:
                await asyncio.sleep(0)
        await asyncio.get_running_loop().sock_sendall(supervisor_end, container_io.END)
        await asyncio.wait_for(io.ended.wait(), 30)
        await asyncio.wait_for(reader, 30)
        assert got == [b"%d" % i for i in range(n)]
        held = []
        while not lagging.empty():
            held.append(lagging.get_nowait())
        assert len(held) <= stdio.ATTACH_BUFFER and held[-1] is None and held[-2] == b"%d" % (n - 1)
        supervisor_end.close()

    asyncio.run(main())


@pytest.mark.parametrize("keys", ["ctrl-", "ctrl-1", "ab", "é"])
def test_detach_keys_dockerd_refuses_are_a_400(keys):
    from pycontainer_magics.engine.http import ApiError
    from pycontainer_magics.engine.stdio import parse_detach_keys

    with pytest.raises(ApiError) as e:
        parse_detach_keys(keys)
    assert e.value.status == 400 and "Invalid detach keys" in str(e.value)
    assert parse_detach_keys("ctrl-x,a") == b"\x18a"
