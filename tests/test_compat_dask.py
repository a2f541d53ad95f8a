"""Dask's local threaded scheduler with a ``LeasedExecutor`` as its pool, against the stdlib pool it replaces.

``dask.threaded.get`` takes the pool from ``pool=`` (a keyword of ``compute``), else from ``dask.config``'s
``pool``; ``scheduler=<Executor>`` goes through ``dask.local.get_async`` directly. Either way Dask uses
exactly two things of it: ``submit`` (plus ``add_done_callback`` on the futures) and ``_max_workers``, the
number of tasks it keeps in flight. Every test runs for both kinds and must pass unchanged for both;
thread work blocks only on a ``threading.Barrier`` with a bound, never on a sleep.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from support import EXECUTOR_KINDS as KINDS

dask = pytest.importorskip("dask")
dask_threaded = pytest.importorskip("dask.threaded")
np = pytest.importorskip("numpy")  # dask.array needs it
da = pytest.importorskip("dask.array")
db = pytest.importorskip("dask.bag")

WAIT = 30.0
WORKERS = 4


@pytest.fixture(params=list(KINDS), ids=list(KINDS))
def pool(request: pytest.FixtureRequest) -> Iterator[ThreadPoolExecutor]:
    # "-worker" in the thread names: conftest's leaked-thread check covers this pool's threads too.
    executor = KINDS[str(request.param)](WORKERS, thread_name_prefix=f"compat-dask-{request.param}-worker")
    yield executor
    executor.shutdown(wait=True)


def on_pool(pool: ThreadPoolExecutor, names: set[str]) -> bool:
    return bool(names) and all(name.startswith(f"{pool._thread_name_prefix}_") for name in names)


def record_thread(names: set[str]) -> Callable[[Any], Any]:
    def identity(value: Any) -> Any:
        names.add(threading.current_thread().name)  # set.add is atomic under the GIL
        return value

    return identity


def compute_with(how: str, pool: ThreadPoolExecutor, *collections: Any) -> tuple[Any, ...]:
    """``dask.compute(*collections)`` on ``pool``, handed to Dask in the way ``how`` names."""
    if how == "compute_kwarg":
        return tuple(dask.compute(*collections, scheduler="threads", pool=pool))
    if how == "config_pool":
        with dask.config.set(pool=pool):
            return tuple(dask.compute(*collections, scheduler="threads"))
    if how == "scheduler_executor":
        return tuple(dask.compute(*collections, scheduler=pool))
    raise AssertionError(how)


HOWS = ("compute_kwarg", "config_pool", "scheduler_executor")


@pytest.mark.parametrize("how", HOWS)
def test_array_reduction(pool: ThreadPoolExecutor, how: str) -> None:
    ones = da.ones((1000, 1000), chunks=100)  # 100 chunks: many more tasks than workers
    names: set[str] = set()
    # With meta given, Dask does not call the function on the main thread to infer the result's type.
    traced = ones.map_blocks(record_thread(names), meta=np.empty((0, 0), dtype=ones.dtype))
    total, column_sums = compute_with(how, pool, traced.sum(), traced.sum(axis=0))
    assert total == 1_000_000
    assert column_sums.shape == (1000,) and (column_sums == 1000).all()
    assert on_pool(pool, names), names


def test_array_compute_method_with_pool_keyword(pool: ThreadPoolExecutor) -> None:
    assert da.ones((1000, 1000), chunks=100).sum().compute(scheduler="threads", pool=pool) == 1_000_000
    assert (da.arange(10_000, chunks=1_000) * 2).sum().compute(scheduler="threads", pool=pool) == 2 * sum(range(10_000))


def test_threaded_get_on_a_raw_graph(pool: ThreadPoolExecutor) -> None:
    graph = {"x": 1, "y": 2, "z": (operator.add, "x", 10), "w": (operator.mul, "z", "y")}
    assert dask_threaded.get(graph, "w", pool=pool) == 22
    assert dask_threaded.get(graph, ["w", "y"], pool=pool) == (22, 2)
    with dask.config.set(pool=pool):
        assert dask_threaded.get(graph, "z") == 11


@pytest.mark.parametrize("how", HOWS)
def test_bag_map_filter_fold(pool: ThreadPoolExecutor, how: str) -> None:
    names: set[str] = set()
    bag = db.from_sequence(range(1_000), npartitions=16).map(record_thread(names))
    evens_squared = bag.filter(lambda value: value % 2 == 0).map(lambda value: value * value)
    total = evens_squared.fold(operator.add, initial=0)
    count = bag.map(lambda _: 1).fold(operator.add, initial=0)
    assert compute_with(how, pool, total, count) == (sum(v * v for v in range(0, 1_000, 2)), 1_000)
    assert sorted(evens_squared.compute(scheduler="threads", pool=pool)) == [v * v for v in range(0, 1_000, 2)]
    assert on_pool(pool, names), names


@pytest.mark.parametrize("how", HOWS)
def test_delayed_graph(pool: ThreadPoolExecutor, how: str) -> None:
    names: set[str] = set()
    trace = dask.delayed(record_thread(names), pure=False)
    # A diamond per layer: every layer's tasks depend on the whole previous layer.
    layer = [trace(index) for index in range(8)]
    for _ in range(3):
        total = dask.delayed(sum)(layer)
        layer = [dask.delayed(operator.add)(trace(value), total) for value in layer]
    (result,) = compute_with(how, pool, dask.delayed(sum)(layer))
    expected = list(range(8))
    for _ in range(3):
        expected = [value + sum(expected) for value in expected]
    assert result == sum(expected)
    assert on_pool(pool, names), names


@pytest.mark.parametrize("how", HOWS)
def test_dask_keeps_max_workers_tasks_in_flight(pool: ThreadPoolExecutor, how: str) -> None:
    # Returns only once WORKERS tasks are inside it at once: Dask must read _max_workers (it submits no more
    # than that many tasks at a time) and the pool must run them all in parallel.
    barrier = threading.Barrier(WORKERS, timeout=WAIT)
    tasks = [dask.delayed(barrier.wait, pure=False)() for _ in range(WORKERS)]
    assert sorted(compute_with(how, pool, *tasks)) == list(range(WORKERS))


class GraphError(Exception):
    pass


def fail(value: int) -> int:
    if value == 3:
        raise GraphError(f"bad value {value}")
    return value


@pytest.mark.parametrize("how", HOWS)
def test_exception_in_a_task_propagates_and_the_pool_stays_usable(pool: ThreadPoolExecutor, how: str) -> None:
    results = [dask.delayed(fail)(value) for value in range(8)]
    with pytest.raises(GraphError, match="bad value 3"):
        compute_with(how, pool, dask.delayed(sum)(results))
    bag = db.from_sequence(range(8), npartitions=4).map(fail)
    with pytest.raises(GraphError, match="bad value 3"):
        compute_with(how, pool, bag)
    # Dask neither shuts the pool down nor leaves it broken after a failed graph.
    assert compute_with(how, pool, da.ones(100, chunks=10).sum()) == (100,)
