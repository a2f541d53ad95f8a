"""bench/floor.py (benchmark ``floor``): the floor implementation resolves every task once, never runs more than
W at a time and leaves no thread behind; a tiny run through the front door writes the headline (no timing
assertions)."""

from __future__ import annotations

import concurrent.futures as cf
import json
import math
import sys
import threading
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
PREFIX = "test-floor"


@pytest.fixture
def floor(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))
    sys.modules.pop("floor", None)
    import floor

    return floor


def _floor_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith(PREFIX)]


def test_every_task_is_resolved_exactly_once_including_one_that_raises(floor: ModuleType) -> None:
    executor = floor.FloorExecutor(3, thread_name_prefix=PREFIX)
    calls: list[int] = []
    resolved: dict[int, int] = {}
    lock = threading.Lock()

    def task(index: int) -> int:
        with lock:
            calls.append(index)
        if index == 7:
            raise ValueError("task 7 fails")
        return index * index

    def on_done(index: int, _future: cf.Future[int]) -> None:
        with lock:
            resolved[index] = resolved.get(index, 0) + 1

    futures = []
    for index in range(50):
        future = executor.submit(task, index)
        future.add_done_callback(lambda done, index=index: on_done(index, done))
        futures.append(future)
    done, pending = cf.wait(futures, timeout=30)
    executor.shutdown(wait=True)
    assert not pending and len(done) == 50
    assert sorted(calls) == list(range(50))  # each task ran once
    assert resolved == dict.fromkeys(range(50), 1)  # each future resolved once
    with pytest.raises(ValueError, match="task 7 fails"):
        futures[7].result()
    assert [future.result() for index, future in enumerate(futures) if index != 7] == [
        index * index for index in range(50) if index != 7
    ]


def test_never_more_than_w_tasks_run_at_once(floor: ModuleType) -> None:
    workers = 4
    executor = floor.FloorExecutor(workers, thread_name_prefix=PREFIX)
    barrier = threading.Barrier(workers)  # W at once must be reachable, or the barrier times out
    lock = threading.Lock()
    state = {"running": 0, "most": 0}

    def task() -> None:
        with lock:
            state["running"] += 1
            state["most"] = max(state["most"], state["running"])
        try:
            barrier.wait(timeout=10)
        finally:
            with lock:
                state["running"] -= 1

    futures = [executor.submit(task) for _ in range(workers * 6)]
    executor.shutdown(wait=True)  # the queued tasks are leased and run before shutdown returns
    assert all(future.done() and future.exception() is None for future in futures)
    assert state["most"] == workers and state["running"] == 0


def test_shutdown_leaves_no_thread_and_refuses_new_tasks(floor: ModuleType) -> None:
    executor = floor.FloorExecutor(2, thread_name_prefix=PREFIX)
    assert executor.submit(pow, 2, 5).result(timeout=10) == 32
    executor.shutdown(wait=True)
    assert not _floor_threads()
    with pytest.raises(RuntimeError):
        executor.submit(pow, 2, 5)
    with floor.FloorExecutor(2, thread_name_prefix=PREFIX) as pool:  # cf.Executor's context manager shuts down
        assert pool.submit(abs, -3).result(timeout=10) == 3
    assert not _floor_threads()


def test_per_slot_loss_is_the_extra_wall_per_task_per_slot(floor: ModuleType) -> None:
    assert floor.per_slot_loss_us(1.5, 1.0, 1_000, 8) == pytest.approx(4_000.0)
    assert floor.per_slot_loss_us(1.0, 1.0, 1_000, 8) == 0.0
    assert set(floor.TASKS) == set(floor.QUICK_TASKS) == set(floor.DURATIONS) == {0.0, 0.0001, 0.001, 0.01}


def test_a_tiny_run_through_the_front_door_writes_the_headline(floor: ModuleType, tmp_path: Path) -> None:
    import run as front_door

    assert "floor" in front_door.BENCHMARKS
    out = tmp_path / "floor.json"
    assert front_door.main(["floor", "--tasks", "20", "--workers", "2", "--runs", "5", "--out", str(out)]) == 0
    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["benchmark"] == "floor" and "machine" in document
    assert (document["workers"], document["runs"]) == (2, 5)
    assert set(document["results"]) == {"0ms", "0.1ms", "1ms", "10ms"}
    for entry in document["results"].values():
        assert entry["tasks"] == 20 and set(entry["impls"]) == {"pool", "floor", "scheduler", "leased"}
        for impl in entry["impls"].values():
            assert impl["phases"]["wall"]["runs"] == 5
            assert isinstance(impl["per_slot_loss_us"], float)
        assert entry["impls"]["pool"]["per_slot_loss_us"] == 0.0
    rows = document["headline"]
    assert [row["target"] for row in rows] == [1.25, 1.25, 1.3, 1.3]
    for row in rows:
        assert isinstance(row["value"], float) and not math.isnan(row["value"])
        assert row["meets_target"] == (row["value"] <= row["target"])
    assert document["meets_target"] == all(row["meets_target"] for row in rows)
    assert [row["metric"].split(" / ")[0] for row in document["information"]] == [
        "floor: floor",
        "floor: Scheduler",
        "floor: LeasedExecutor",
    ]
    assert all(row["value"] > 0 for row in document["information"])
    assert not [thread.name for thread in threading.enumerate() if thread.name.startswith("bench-floor")]
