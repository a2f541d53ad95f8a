"""``asyncio`` with a ``LeasedExecutor`` as the loop's default executor, against the stdlib pool it replaces.

Every test runs for both kinds and must pass unchanged for both: ``asyncio.to_thread``, ``run_in_executor``
(default and explicit executor), cancellation of a task awaiting thread work, and the default executor's
shutdown that ``asyncio.run`` performs on exit. Thread work blocks on ``threading`` primitives the test
releases itself (never a sleep); every blocking call has a bound, so a bug fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from support import EXECUTOR_KINDS as KINDS

WAIT = 30.0
WORKERS = 4
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("REQUEST_ID", default="unset")


class Pools:
    """Builds pools of one kind with worker threads named ``compat-asyncio-<kind>-<n>-worker_N``, so each
    pool's threads are recognisable (and the session-wide leaked-thread check in conftest covers them)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.created: list[ThreadPoolExecutor] = []

    def make(self, max_workers: int = WORKERS) -> ThreadPoolExecutor:
        prefix = f"compat-asyncio-{self.kind}-{len(self.created)}-worker"
        pool = KINDS[self.kind](max_workers, thread_name_prefix=prefix)
        self.created.append(pool)
        return pool


@pytest.fixture(params=list(KINDS), ids=list(KINDS))
def pools(request: pytest.FixtureRequest) -> Iterator[Pools]:
    factory = Pools(str(request.param))
    yield factory
    for pool in factory.created:  # a failed test must not leave its blocked workers behind
        pool.shutdown(wait=True, cancel_futures=True)


def run_with_default(pool: ThreadPoolExecutor, main: Callable[[], Any]) -> Any:
    """``asyncio.run(main())`` with ``pool`` installed as the loop's default executor before ``main`` runs."""

    async def wrapper() -> Any:
        asyncio.get_running_loop().set_default_executor(pool)
        return await main()

    return asyncio.run(wrapper())


def on_pool(pool: ThreadPoolExecutor) -> Callable[[str], bool]:
    prefix = f"{pool._thread_name_prefix}_"
    return lambda thread_name: thread_name.startswith(prefix)


def thread_name() -> str:
    return threading.current_thread().name


def new_live_threads(before: set[threading.Thread]) -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread not in before and thread.is_alive()]


# -- asyncio.to_thread -----------------------------------------------------------------------------------


def test_to_thread_runs_many_concurrent_calls_on_the_default_executor(pools: Pools) -> None:
    pool = pools.make()
    calls = 500

    def square(value: int) -> tuple[int, str]:
        return value * value, thread_name()

    async def main() -> list[tuple[int, str]]:
        return await asyncio.gather(*(asyncio.to_thread(square, value) for value in range(calls)))

    results = run_with_default(pool, main)
    assert [value for value, _ in results] == [value * value for value in range(calls)]
    names = {name for _, name in results}
    assert all(map(on_pool(pool), names)), names
    assert len(names) <= WORKERS


def test_to_thread_calls_run_in_parallel_up_to_the_worker_count(pools: Pools) -> None:
    pool = pools.make()
    # Each call returns only once WORKERS calls are inside it at the same time.
    barrier = threading.Barrier(WORKERS, timeout=WAIT)

    async def main() -> list[int]:
        return await asyncio.gather(*(asyncio.to_thread(barrier.wait) for _ in range(WORKERS)))

    assert sorted(run_with_default(pool, main)) == list(range(WORKERS))


def test_to_thread_propagates_exceptions_and_keyword_arguments(pools: Pools) -> None:
    pool = pools.make()
    error = LookupError("no such row")

    def fail() -> None:
        raise error

    def divide(numerator: int, *, by: int) -> float:
        return numerator / by

    async def main() -> list[Any]:
        with pytest.raises(LookupError) as raised:
            await asyncio.to_thread(fail)
        assert raised.value is error
        assert await asyncio.to_thread(divide, 9, by=3) == 3.0
        return await asyncio.gather(*(asyncio.to_thread(divide, 1, by=index % 3) for index in range(30)), return_exceptions=True)

    results = run_with_default(pool, main)
    for index, result in enumerate(results):
        if index % 3 == 0:
            assert isinstance(result, ZeroDivisionError)
        else:
            assert result == 1 / (index % 3)


def test_to_thread_propagates_the_callers_context(pools: Pools) -> None:
    pool = pools.make()
    barrier = threading.Barrier(WORKERS, timeout=WAIT)

    def read_then_overwrite() -> str:
        seen = REQUEST_ID.get()
        REQUEST_ID.set("set-in-thread")  # changes a copy of the caller's context only
        barrier.wait()  # the calls overlap, so each must see its own task's value, not a neighbour's
        return seen

    async def one_request(index: int) -> str:
        REQUEST_ID.set(f"request-{index}")
        seen = await asyncio.to_thread(read_then_overwrite)
        assert REQUEST_ID.get() == f"request-{index}"
        return seen

    async def main() -> list[str]:
        seen = await asyncio.gather(*(one_request(index) for index in range(WORKERS)))
        assert REQUEST_ID.get() == "unset"
        return seen

    assert run_with_default(pool, main) == [f"request-{index}" for index in range(WORKERS)]


# -- loop.run_in_executor ---------------------------------------------------------------------------------


def test_run_in_executor_none_uses_the_installed_default(pools: Pools) -> None:
    pool = pools.make()

    def describe(first: int, second: int, *, sep: str) -> tuple[str, str]:
        return f"{first}{sep}{second}", thread_name()

    async def main() -> list[tuple[str, str]]:
        loop = asyncio.get_running_loop()
        return await asyncio.gather(
            *(loop.run_in_executor(None, functools.partial(describe, index, index + 1, sep="-")) for index in range(50))
        )

    results = run_with_default(pool, main)
    assert [text for text, _ in results] == [f"{index}-{index + 1}" for index in range(50)]
    assert all(on_pool(pool)(name) for _, name in results)


def test_run_in_executor_with_an_explicit_executor_uses_that_one(pools: Pools) -> None:
    default, explicit = pools.make(), pools.make(2)

    async def main() -> tuple[str, str]:
        loop = asyncio.get_running_loop()
        here = await loop.run_in_executor(explicit, thread_name)
        there = await loop.run_in_executor(None, thread_name)
        with pytest.raises(ValueError, match="invalid literal"):
            await loop.run_in_executor(explicit, int, "not a number")
        return here, there

    here, there = run_with_default(default, main)
    assert on_pool(explicit)(here) and on_pool(default)(there)
    explicit.shutdown(wait=True)  # asyncio.run shuts down only the default executor


# -- cancellation -----------------------------------------------------------------------------------------


def test_cancelling_a_task_awaiting_running_work_lets_the_work_finish(pools: Pools) -> None:
    pool = pools.make()
    started, release = threading.Event(), threading.Event()
    finished: list[str] = []

    def blocking() -> str:
        started.set()
        if not release.wait(WAIT):
            raise TimeoutError("the test never released the work")
        finished.append("done")
        return "done"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(asyncio.to_thread(blocking))
        assert await loop.run_in_executor(None, started.wait, WAIT)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()
        release.set()  # a thread cannot be interrupted: the call runs on, its result is dropped

    run_with_default(pool, main)
    # asyncio.run waits for the default executor's work when it shuts it down on exit.
    assert finished == ["done"]


def test_cancelling_a_task_awaiting_queued_work_cancels_the_work(pools: Pools) -> None:
    pool = pools.make()
    running = threading.Semaphore(0)
    release = threading.Event()
    queued_ran = threading.Event()

    def occupy_a_worker() -> None:
        running.release()
        if not release.wait(WAIT):
            raise TimeoutError("the test never released the workers")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        blockers = [loop.run_in_executor(None, occupy_a_worker) for _ in range(WORKERS)]
        for _ in range(WORKERS):  # blocks the loop thread, which no worker needs
            assert running.acquire(timeout=WAIT)
        submitted = asyncio.Event()

        async def awaiting() -> None:
            future = loop.run_in_executor(None, queued_ran.set)  # no worker is free: it waits in the queue
            submitted.set()
            await future

        task = asyncio.create_task(awaiting())
        await submitted.wait()  # resumes only after the task is suspended on its future
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        await asyncio.gather(*blockers)

    run_with_default(pool, main)
    # The cancelled asyncio future cancelled the executor's future before a worker could start it.
    assert not queued_ran.is_set()


# -- shutdown ---------------------------------------------------------------------------------------------


def test_asyncio_run_shuts_the_default_executor_down_and_joins_its_threads(pools: Pools) -> None:
    before = set(threading.enumerate())
    pool = pools.make()

    async def main() -> int:
        return sum(await asyncio.gather(*(asyncio.to_thread(abs, -index) for index in range(100))))

    assert run_with_default(pool, main) == sum(range(100))
    assert new_live_threads(before) == []
    with pytest.raises(RuntimeError, match="shutdown"):
        pool.submit(abs, -1)


def test_shutdown_default_executor_runs_queued_work_then_returns(pools: Pools) -> None:
    before = set(threading.enumerate())
    pool = pools.make()
    release = threading.Event()
    running = threading.Semaphore(0)

    def wait_for_release(index: int) -> int:
        running.release()
        if not release.wait(WAIT):
            raise TimeoutError("the test never released the work")
        return index

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        # Twice the worker count: half runs and blocks, half waits in the queue when the shutdown begins.
        work = [loop.run_in_executor(None, wait_for_release, index) for index in range(2 * WORKERS)]
        for _ in range(WORKERS):
            assert running.acquire(timeout=WAIT)
        shutdown = asyncio.create_task(loop.shutdown_default_executor())
        # Scheduled after the shutdown task's first step; whichever of the two the pool sees first, the
        # shutdown must wait for every submitted call.
        loop.call_soon(release.set)
        await shutdown
        assert all(future.done() for future in work)
        with pytest.raises(RuntimeError):  # asyncio refuses the default executor once its shutdown was called
            loop.run_in_executor(None, abs, -1)
        return [future.result() for future in work]

    assert run_with_default(pool, main) == list(range(2 * WORKERS))
    assert new_live_threads(before) == []


def test_shutdown_default_executor_of_an_idle_pool_starts_no_worker(pools: Pools) -> None:
    before = set(threading.enumerate())
    pool = pools.make()

    async def main() -> None:
        await asyncio.get_running_loop().shutdown_default_executor()

    run_with_default(pool, main)
    assert new_live_threads(before) == []
    assert pool._threads == set()
