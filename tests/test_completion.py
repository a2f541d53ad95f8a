"""Done-callback outcomes that only an unusual executor can produce."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import CancelledError, Executor, Future, wait
from typing import Any

import pytest
from support import GENEROUS, check_lease_evidence

from threadsched import MemoryEventSink, Scheduler


class DroppingExecutor(Executor):
    """Cancels every work item instead of running it (like a pool shut down with cancel_futures)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.cancel()
        future.set_running_or_notify_cancel()
        return future


class RaisingWrapperExecutor(Executor):
    """Runs nothing and fails the work item with its own error."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_exception(OSError("executor broke"))
        return future


def test_work_item_cancelled_by_the_executor_cancels_the_task_and_releases_its_lease() -> None:
    sink = MemoryEventSink()
    scheduler = Scheduler(2, executor=DroppingExecutor(), events=sink, name="drop")
    future = scheduler.submit(lambda: "never runs")
    done, _ = wait([future], timeout=GENEROUS)
    assert future in done
    with pytest.raises(CancelledError):
        future.result()
    report = scheduler.shutdown()
    assert report.clean and report.active_leases == 0
    assert scheduler.snapshot().counters["cancelled"] == 1
    check_lease_evidence(sink.events)


def test_work_item_failed_by_the_executor_fails_the_task_with_that_error() -> None:
    scheduler = Scheduler(2, executor=RaisingWrapperExecutor(), name="broke")
    future = scheduler.submit(lambda: "never runs")
    with pytest.raises(OSError, match="executor broke"):
        future.result(timeout=GENEROUS)
    report = scheduler.shutdown()
    assert report.clean
    counters = scheduler.snapshot().counters
    assert (counters["failed"], counters["completed"]) == (1, 0)
