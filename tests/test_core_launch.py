"""The executor seam's one private adapter: ``PoolLauncher`` is chosen only when every
``ThreadPoolExecutor`` internal and ``concurrent.futures.thread`` global it touches is there, with the
shape it uses; otherwise the scheduler drives the pool through its public ``submit``.

One test per name it touches: remove or reshape it (on a pool whose public methods still work, or in the
module while the launcher is chosen) and the scheduler falls back to the public path and still runs every
task — each future resolved, each lease released once and only after its worker was spawned, no thread
left behind.
"""

from __future__ import annotations

import concurrent.futures.thread as cf_thread
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
from support import GENEROUS, check_lease_evidence, join_scheduler_threads

from threadsched import MemoryEventSink
from threadsched.core.launch import (
    MODULE_GLOBALS,
    POOL_ATTRIBUTES,
    HolderSubmitLauncher,
    PoolLauncher,
    SubmitLauncher,
    launcher_for,
    pool_access_problem,
    pool_launchable,
)
from threadsched.core.leased_executor import LeasedExecutor
from threadsched.core.scheduler import Scheduler

TASKS = 40
_names = itertools.count()


class PublicOnlyPool(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` whose public methods run on an inner pool, so its own internals can be
    removed or reshaped the way a Python that renamed them would look to the adapter."""

    def __init__(self, workers: int, prefix: str) -> None:
        super().__init__(workers)  # starts no thread
        self.inner = ThreadPoolExecutor(workers, thread_name_prefix=prefix)
        self.submits = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submits += 1
        return self.inner.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.inner.shutdown(wait, cancel_futures=cancel_futures)


# Per attribute, a wrong shape; every instance attribute is also deleted (a method can only be reshaped).
WRONG_SHAPES: dict[str, object] = {
    "_shutdown_lock": object(),
    "_broken": None,
    "_shutdown": 0,
    "_work_queue": [],
    "_threads": object(),
    "_max_workers": "4",
    "_adjust_thread_count": None,
}
DELETABLE = ("_shutdown_lock", "_broken", "_shutdown", "_work_queue", "_threads", "_max_workers")
MODULE_WRONG_SHAPES: dict[str, object] = {"_global_shutdown_lock": object(), "_shutdown": None}


def _name() -> str:
    return f"seam{next(_names)}"


def _thread_names(prefix: str) -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name.startswith(prefix)]


def _runs_every_task(sched: Scheduler, sink: MemoryEventSink, name: str) -> None:
    futures = [sched.submit(pow, i, 2) for i in range(TASKS)]
    assert [future.result(GENEROUS) for future in futures] == [i * i for i in range(TASKS)]
    report = sched.shutdown(wait=True)
    assert not report.still_running
    by_lease = check_lease_evidence(sink.events)
    assert len(by_lease) == TASKS
    assert sched.snapshot().admission.active_lease_count == 0
    join_scheduler_threads(name)


def test_the_adapter_names_the_same_internals_the_stdlib_pool_has_on_this_python() -> None:
    # A Python that renames one fails here, loudly, as well as falling back.
    pool = ThreadPoolExecutor(2)
    try:
        for name, fits in POOL_ATTRIBUTES.items():
            assert fits(getattr(pool, name)), name
        for name, fits in MODULE_GLOBALS.items():
            assert fits(getattr(cf_thread, name)), name
        assert pool_access_problem(pool) is None
        assert set(WRONG_SHAPES) == set(POOL_ATTRIBUTES)
        assert set(MODULE_WRONG_SHAPES) == set(MODULE_GLOBALS)
    finally:
        pool.shutdown()


def test_a_pool_threadsched_owns_takes_the_private_path_and_one_it_does_not_own_the_public_one() -> None:
    sched = Scheduler(max_workers=2, name=_name())
    assert isinstance(sched._core.launcher, PoolLauncher)
    sched.shutdown()
    with LeasedExecutor(2) as executor:
        assert isinstance(executor.scheduler._core.launcher, PoolLauncher)
    pool = ThreadPoolExecutor(2)
    assert isinstance(launcher_for(pool, owned=True), PoolLauncher)
    assert isinstance(launcher_for(pool, owned=False), SubmitLauncher)
    pool.shutdown()


POOL_CASES = [(name, "reshaped") for name in sorted(POOL_ATTRIBUTES)] + [(name, "deleted") for name in DELETABLE]


@pytest.mark.parametrize(("attribute", "how"), POOL_CASES)
def test_a_pool_missing_an_internal_is_driven_through_its_public_submit(attribute: str, how: str) -> None:
    name = _name()
    pool = PublicOnlyPool(4, f"{name}-inner")
    if how == "deleted":
        delattr(pool, attribute)
    else:
        setattr(pool, attribute, WRONG_SHAPES[attribute])
    assert not pool_launchable(pool)
    assert attribute in (pool_access_problem(pool) or "")
    sink = MemoryEventSink()
    sched = Scheduler(max_workers=4, executor=pool, owns_executor=True, events=sink, name=name)
    assert isinstance(sched._core.launcher, SubmitLauncher)
    _runs_every_task(sched, sink, name)
    assert pool.submits == TASKS
    assert not _thread_names(f"{name}-inner"), "the pool's threads outlived its shutdown"


@pytest.mark.parametrize("how", ["deleted", "reshaped"])
@pytest.mark.parametrize("attribute", sorted(MODULE_GLOBALS))
def test_a_module_missing_a_global_makes_every_owned_pool_use_the_public_submit(
    attribute: str, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only while the launcher is chosen: the stdlib's own submit needs the real global to run the tasks.
    sink, held_sink = MemoryEventSink(), MemoryEventSink()
    name = _name()
    with monkeypatch.context() as patch:
        if how == "deleted":
            patch.delattr(cf_thread, attribute)
        else:
            patch.setattr(cf_thread, attribute, MODULE_WRONG_SHAPES[attribute])
        given = ThreadPoolExecutor(4)
        assert attribute in (pool_access_problem(given) or "")
        assert isinstance(launcher_for(given, owned=True), SubmitLauncher)
        given.shutdown()
        sched = Scheduler(max_workers=4, events=sink, name=name)
        executor = LeasedExecutor(4, events=held_sink)
    assert isinstance(sched._core.launcher, SubmitLauncher)
    _runs_every_task(sched, sink, name)
    # A LeasedExecutor's own pool: its submit is the user's, so the base class's public submit runs the tasks.
    assert isinstance(executor.scheduler._core.launcher, HolderSubmitLauncher)
    futures = [executor.submit(pow, i, 2) for i in range(TASKS)]
    assert [future.result(GENEROUS) for future in futures] == [i * i for i in range(TASKS)]
    executor.shutdown(wait=True)
    assert len(check_lease_evidence(held_sink.events)) == TASKS
    assert executor.scheduler.snapshot().admission.active_lease_count == 0
    assert not _thread_names(executor._thread_name_prefix)


def test_the_public_fallback_settles_tasks_the_pool_cancels_unrun() -> None:
    name = _name()
    pool = PublicOnlyPool(1, f"{name}-inner")
    del pool._work_queue
    sink = MemoryEventSink()
    sched = Scheduler(max_workers=1, executor=pool, owns_executor=True, events=sink, name=name)
    assert isinstance(sched._core.launcher, SubmitLauncher)
    started, gate = threading.Event(), threading.Event()

    def blocker() -> str:
        started.set()
        gate.wait(GENEROUS)
        return "ran"

    first = sched.submit(blocker)
    assert started.wait(GENEROUS)
    queued = [sched.submit(pow, i, 2) for i in range(5)]
    threading.Timer(0.05, gate.set).start()
    sched.shutdown(wait=True, cancel_futures=True)
    assert first.result(GENEROUS) == "ran"
    assert all(future.done() for future in queued)
    assert all(future.cancelled() for future in queued)
    check_lease_evidence(sink.events)
    assert sched.snapshot().admission.active_lease_count == 0
    join_scheduler_threads(name)
    assert not _thread_names(f"{name}-inner")
