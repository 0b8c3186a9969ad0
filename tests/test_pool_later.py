"""The next run's recipe made by the pool's thread (Pool.prefetch_later): a run's end hands over what makes it, not the
recipe, so the 0.1-0.2 ms of working it out are off the cell's path. What waits for the pool's work waits for that too
(drain, a run taking what is ready); a recipe that cannot be made leaves the pool as it was."""

from __future__ import annotations

import os
import threading
import time

import pytest
from helpers import host_clean, wait_for  # noqa: F401

from pycontainer_magics.runtime import ContainerSpec, run
from pycontainer_magics.runtime.pool import COMMAND, Recipe, pool

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("host_clean"),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (pooled holders)")]


@pytest.mark.parametrize("wait", ["drain", "wait_idle"])  # (wait_idle: bench/work.py counts a run's background
def test_waiting_for_the_pool_waits_for_a_recipe_still_to_be_made(wait: str) -> None:  # work within its round by it)
    pool.drain()
    made = threading.Event()

    def make() -> Recipe:
        time.sleep(0.2)
        made.set()
        return Recipe(None, None, None, None, None)  # (nothing to make: no holder, no cgroup)

    pool.prefetch_later((None, COMMAND), make)
    getattr(pool, wait)()
    assert made.is_set(), f"{wait}() returned before the recipe was made"
    assert not pool._wanted and not pool._busy
    pool.wait_idle()  # (and at once when there is nothing to wait for)
    pool.drain()


def test_a_recipe_that_cannot_be_made_leaves_the_pool_working() -> None:
    pool.drain()

    def make() -> Recipe:
        raise RuntimeError("no recipe")

    pool._recipe_failed = False
    with pytest.warns(RuntimeWarning, match="could not be prepared ahead: RuntimeError"):  # (said, once)
        pool.prefetch_later((None, COMMAND), make)
        assert wait_for(lambda: not pool._wanted and not pool._busy)
    assert run(ContainerSpec(command=("true",))).exit_code == 0  # (and its end prepares the next as usual)
    assert wait_for(lambda: pool.ready_holder() is not None and not pool._busy)
    pool.drain()


def test_a_runs_end_hands_over_what_makes_the_next_recipe() -> None:
    """run() returns before the recipe is made: its end only queues the making (one held until the run has
    returned shows it; had run() made it, run() would have waited for it)."""
    import importlib

    run_mod = importlib.import_module("pycontainer_magics.runtime.run")
    pool.drain()
    real = run_mod._next_recipe
    released, made = threading.Event(), threading.Event()

    def held(*a, **k):  # type: ignore[no-untyped-def]
        released.wait(10)
        made.set()
        return real(*a, **k)

    run_mod._next_recipe = held
    try:
        assert run(ContainerSpec(command=("true",))).exit_code == 0
        assert not made.is_set(), "run() waited for the next run's recipe"
        released.set()
        assert wait_for(lambda: pool.ready_holder() is not None and not pool._busy)
        assert made.is_set()
    finally:
        released.set()
        run_mod._next_recipe = real
    pool.drain()
