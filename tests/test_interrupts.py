"""An interrupt stops a container as `docker stop` does: the stop signal (SIGTERM unless --stop-signal) to PID
1 first, SIGKILL after --stop-timeout, at once on a second interrupt; nothing is left behind, and the result
says what happened."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from helpers import host_clean  # noqa: F401

from pycontainer_magics.runtime import ContainerInterrupted, ContainerSpec, run
from pycontainer_magics.runtime.parse import build_spec
from pycontainer_magics.runtime.spec import SpecError

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("host_clean"),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


class Interrupter:
    """Sends this process SIGINT (the notebook's stop button) at given moments after PID 1 runs — or, with `when`,
    after the container printed that text (its trap set, its loop entered: a moment after PID 1 starts is not
    enough for that on a loaded machine); an interrupt only while armed (one arriving after the run returned
    would end pytest)."""

    def __init__(self, *after: float, when: str | None = None) -> None:
        self.after = after
        self.armed = False
        self.sent: list[float] = []
        self._old = signal.getsignal(signal.SIGINT)
        self._when = when
        self._seen = ""
        self._ready = threading.Event()
        if when is None:
            self._ready.set()

    def _handler(self, signum: int, frame: object) -> None:
        if self.armed:
            raise KeyboardInterrupt

    def on_output(self, stream: str, text: str) -> None:
        if stream == "stdout" and self._when is not None and not self._ready.is_set():
            self._seen += text
            if self._when in self._seen:
                self._ready.set()

    def on_start(self, _running: object) -> None:
        def fire() -> None:
            self._ready.wait(60)  # (never seen: interrupted all the same, so the test fails rather than hangs)
            t0 = time.monotonic()
            for delay in self.after:
                time.sleep(max(0.0, t0 + delay - time.monotonic()))
                if self.armed:
                    self.sent.append(time.monotonic())
                    os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=fire, daemon=True).start()

    def __enter__(self) -> Interrupter:
        signal.signal(signal.SIGINT, self._handler)
        self.armed = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.armed = False
        signal.signal(signal.SIGINT, self._old)


def _interrupted(spec: ContainerSpec, *after: float, when: str | None = None) -> tuple[ContainerInterrupted, float]:
    t0 = time.monotonic()
    with Interrupter(*after, when=when) as it, pytest.raises(ContainerInterrupted) as info:
        run(spec, on_start=it.on_start, on_output=it.on_output)
    return info.value, time.monotonic() - t0


def test_a_python_cell_gets_sigterm_and_cleans_up():
    cell = "import time\ntry:\n    print('working', flush=True)\n    time.sleep(30)\nfinally:\n    print('cleaned up')"
    e, took = _interrupted(ContainerSpec(python_code=cell), 0.3, when="working\n")
    r = e.run
    assert r.interrupted and r.stop_signal == signal.SIGTERM and r.stop_killed is None
    assert r.stdout == "working\ncleaned up\n" and r.exit_code == 128 + signal.SIGTERM
    assert r.stop_story == "SIGTERM; exited by itself" and took < 10


def test_a_command_that_ignores_the_stop_signal_is_killed_after_the_grace_period():
    # PID 1 ignores signals it has no handler for: sh waits out the grace period, as under docker stop.
    spec = build_spec(command=["sh", "-c", "echo up; sleep 30"], stop_timeout="0.5s")
    e, took = _interrupted(spec, 0.2, when="up\n")
    r = e.run
    assert r.stop_signal == signal.SIGTERM and r.stop_killed == "timeout"
    assert r.signal == signal.SIGKILL and r.exit_code == 137
    assert "after the 0.5 s grace period" in (r.stop_story or "") and 0.5 < took < 10


def test_a_handler_of_the_stop_signal_runs_and_its_exit_code_is_kept():
    spec = build_spec(command=["sh", "-c", "trap 'echo bye; exit 7' QUIT; echo up; while :; do sleep 0.05; done"],
                      stop_signal="QUIT", stop_timeout=20)
    e, took = _interrupted(spec, 0.3, when="up\n")  # (a QUIT before its trap: ignored by PID 1)
    r = e.run
    assert r.stop_signal == signal.SIGQUIT and r.stop_killed is None
    assert r.exit_code == 7 and r.stdout == "up\nbye\n" and took < 10


def test_a_second_interrupt_kills_at_once():
    spec = build_spec(command=["sh", "-c", "echo up; sleep 60"], stop_timeout=60)
    e, took = _interrupted(spec, 0.2, 0.6, when="up\n")
    r = e.run
    assert r.stop_signal == signal.SIGTERM and r.stop_killed == "interrupt" and r.exit_code == 137
    assert took < 10  # not the 60 s grace period


def test_without_a_grace_period_an_interrupt_kills_at_once():
    e, took = _interrupted(build_spec(command=["sleep", "60"], stop_timeout=0), 0.2)
    assert e.run.stop_signal is None and e.run.stop_killed == "at once" and took < 10


def test_an_interrupt_before_the_relay_runs_is_a_stop_too(monkeypatch):
    """A Ctrl-C after the order to PID 1 but before the caller's relay loop (its payload may run by then: under
    load the caller can be that late — `pycontainer run` died of SIGINT, 4 runs in 12 on one loaded core) is held
    and becomes the loop's docker stop, not a KeyboardInterrupt escaping run() with the run's pipes open. Made
    certain here: the interrupt comes while the run's monitor starts."""
    import importlib

    run_mod = importlib.import_module("pycontainer_magics.runtime.run")  # (the package's `run` is the function)

    class InterruptedMonitor(run_mod.Monitor):  # type: ignore[misc,valid-type]
        def start(self) -> None:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # (the handler runs in this thread at its next bytecode: in the sleep, or after it)
            super().start()

    monkeypatch.setattr(run_mod, "Monitor", InterruptedMonitor)
    spec = build_spec(command=["sh", "-c", "echo up; sleep 30"], memory="64m")  # (a memory limit: a monitor)
    t0 = time.monotonic()
    with Interrupter(), pytest.raises(KeyboardInterrupt) as info:  # (armed: the interrupt is pytest's otherwise)
        run(spec)
    assert isinstance(info.value, ContainerInterrupted), repr(info.value)
    assert info.value.run.interrupted and info.value.run.exit_code == 137 and time.monotonic() - t0 < 20


def test_stop_options_are_checked():
    assert build_spec(command=["true"], stop_signal="sigint").stop_signal == signal.SIGINT
    assert build_spec(command=["true"], stop_signal="9").stop_signal == 9
    for bad in ({"stop_signal": "TERMINATE"}, {"stop_signal": "99"}, {"stop_timeout": "-1"}):
        with pytest.raises(SpecError):
            build_spec(command=["true"], **bad)  # type: ignore[arg-type]


def _exec_interrupted(c, script: str, after: float) -> tuple[str, float]:  # type: ignore[no-untyped-def]
    out: list[str] = []
    it = Interrupter(after, when="up\n")  # (a TERM before its trap would end the exec's sh at once)
    t0 = time.monotonic()

    def on_output(stream: str, text: str) -> None:
        out.append(text)
        it.on_output(stream, text)
    with it, pytest.raises(KeyboardInterrupt) as info:
        it.on_start(None)
        c.exec(["sh", "-c", script], on_output=on_output)
    return str(info.value) + "|" + "".join(out), time.monotonic() - t0


def test_an_interrupted_exec_is_stopped_as_docker_stop_stops_and_nothing_of_it_is_left():
    """An interrupted %container exec sent nothing to its process: it ran on in the container, its joiner
    waited on in the kernel. Now: the container's stop signal, SIGKILL after its grace period."""
    from pycontainer_magics.workloads.containers import containers, start

    c = start(build_spec(command=["sleep", "60"], stop_timeout="0.5s"))
    try:
        said, took = _exec_interrupted(c, "trap 'echo bye; exit 9' TERM; echo up; while :; do sleep 0.05; done", 0.5)
        assert said == "exec sh: stopped (SIGTERM, exit code 9)|up\nbye\n" and took < 20, said
        said, took = _exec_interrupted(c, "trap '' TERM; echo up; while :; do sleep 0.05; done", 0.5)
        assert said.startswith("exec sh: stopped (SIGTERM, exit code 137)") and 0.9 < took < 20, (said, took)
        left = c.exec(["ps", "-o", "args"]).stdout
        assert "while" not in left, left
    finally:
        containers.remove(c.id, force=True)
