"""The one exit clean-up registry (runtime/cleanup.py): phases in a fixed order whatever the order of
registration, last registered first within a phase, each step once, a failing step not stopping the rest."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from pycontainer_magics.runtime import cleanup


def test_phases_run_in_order_whatever_the_registration_order():
    reg = cleanup.ExitRegistry()
    ran: list[str] = []

    def step(name: str):
        return lambda: ran.append(name)

    pool, net = step("pool"), step("networks")
    reg.add(pool, cleanup.POOL)
    reg.add(net, cleanup.NETWORKS)
    reg.add(step("container a"), cleanup.WORKLOADS)
    reg.add(step("container b"), cleanup.WORKLOADS)
    reg.add(lambda: 1 / 0, cleanup.GROUPS)  # a failing step
    reg.add(net, cleanup.NETWORKS)  # twice: once
    reg.run()
    assert ran == ["container b", "container a", "networks", "pool"]
    reg.run()  # nothing is run twice
    assert len(ran) == 4


def test_the_registry_runs_once_at_interpreter_exit():
    code = textwrap.dedent("""
        from pycontainer_magics.runtime import cleanup
        import sys
        say = lambda text: sys.stdout.write(text + "\\n")  # one write: print()'s two can interleave across threads
        cleanup.at_exit(lambda: say("parent"), cleanup.PARENT)
        cleanup.at_exit(lambda: say("compose down"), cleanup.WORKLOADS)
        cleanup.defer(lambda: say("deferred"))
        cleanup.at_exit(lambda: say("networks"), cleanup.NETWORKS)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    lines = out.split("\n")
    # The phases in their order, each once; the deferred step (run by the clean-up thread: any time before
    # the SETTLE phase waits for it) before PARENT.
    assert [x for x in lines if x != "deferred"] == ["compose down", "networks", "parent", ""], out
    assert lines.count("deferred") == 1 and lines.index("deferred") < lines.index("parent"), out
