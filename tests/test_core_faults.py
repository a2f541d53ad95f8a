"""Regression tests named after the faults of the first per-task path."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import pytest
from scheduler_support import GENEROUS

from threadsched import (
    LeasedExecutor,
    PolicyDecision,
    PolicyStateDelta,
    Scheduler,
)
from threadsched.policy import ALLOW, NO_CHANGE


class Payload:
    pass


class RaisingForBadGroup:
    def evaluate(self, item: Any, queue_view: Any, admission_view: Any) -> PolicyDecision:
        if item.group.key == "bad":
            raise RuntimeError("policy bug")
        return ALLOW

    def on_acquire(self, lease: Any, decision: PolicyDecision) -> PolicyStateDelta:
        return NO_CHANGE

    def on_release(self, lease: Any) -> PolicyStateDelta:
        return NO_CHANGE


def test_policy_whose_evaluate_raises_is_a_counted_denial_and_the_scheduler_keeps_working() -> None:
    scheduler = Scheduler(2, policy=RaisingForBadGroup(), name="faults-policy")
    good = scheduler.group("good", admitted_limit=2)
    bad = scheduler.group("bad", admitted_limit=2)
    good_futures = [good.submit(lambda i=i: i) for i in range(10)]
    bad_future = bad.submit(lambda: "never admitted")
    done, _ = wait([*good_futures, bad_future], timeout=GENEROUS)
    assert len(done) == 11  # every future resolves; none hangs
    assert [future.result() for future in good_futures] == list(range(10))
    assert bad_future.exception() is not None
    assert scheduler.controller.statistics()["policy_counters"]["policy_errors"] >= 1
    report = scheduler.shutdown()
    assert report.clean and report.dispatcher_error is None


def test_dispatcher_crash_makes_the_shutdown_report_unclean_with_its_cause(monkeypatch: pytest.MonkeyPatch) -> None:
    scheduler = Scheduler(2, name="faults-crash")
    crash = LookupError("dispatcher bug")

    def broken_select(*_args: Any, **_kwargs: Any) -> Any:
        raise crash

    monkeypatch.setattr(scheduler.queue, "select_next", broken_select)
    future = scheduler.submit(lambda: 1)
    done, _ = wait([future], timeout=GENEROUS)
    assert future in done and isinstance(future.exception(), RuntimeError)
    with pytest.raises(RuntimeError):
        scheduler.submit(lambda: 2)
    report = scheduler.shutdown()
    assert not report.clean
    assert report.dispatcher_error is crash


def test_task_that_finished_before_its_timeout_is_not_kept_alive_by_the_timeout_heap() -> None:
    gc.disable()
    try:
        scheduler = Scheduler(2, name="faults-timeout")
        group = scheduler.group("g", timeout=3600)
        payload = Payload()
        payload_ref = weakref.ref(payload)
        future = group.submit(lambda p: Payload(), payload)
        wait([future], timeout=GENEROUS)
        result_ref = weakref.ref(future.result())
        del payload, future
        assert scheduler._core._deadlines.timeout_entries == 0
        scheduler.shutdown()
        assert payload_ref() is None
        assert result_ref() is None
    finally:
        gc.enable()


@pytest.mark.parametrize("make", [lambda: Scheduler(4, name="faults-idle"), lambda: LeasedExecutor(4)])
def test_unused_executor_starts_no_thread(make: Any) -> None:
    before = set(threading.enumerate())
    executor = make()
    assert set(threading.enumerate()) == before
    executor.shutdown()
    assert set(threading.enumerate()) == before


def test_leased_executor_is_a_thread_pool_executor_with_max_workers() -> None:
    with LeasedExecutor(4) as pool:
        assert isinstance(pool, ThreadPoolExecutor)
        assert pool._max_workers == 4
        assert pool.submit(sum, [1, 2]).result(timeout=GENEROUS) == 3


def test_abandoned_leased_executor_and_scheduler_are_freed_by_reference_counting() -> None:
    gc.disable()
    try:
        pool = LeasedExecutor(2)
        assert [future.result(timeout=GENEROUS) for future in [pool.submit(abs, -i) for i in range(5)]] == list(range(5))
        pool_ref = weakref.ref(pool)
        core = pool.scheduler._core
        dispatcher = core._thread
        _wait_until_unpinned(core)  # the dispatcher drops its pin once it goes idle with nothing left
        del pool, core
        assert pool_ref() is None
        assert dispatcher is not None
        dispatcher.join(GENEROUS)
        assert not dispatcher.is_alive()

        scheduler = Scheduler(2, name="faults-drop")
        scheduler.group("g").submit(abs, -1).result(timeout=GENEROUS)
        scheduler_ref = weakref.ref(scheduler)
        del scheduler
        assert scheduler_ref() is None
    finally:
        gc.enable()


def _wait_until_unpinned(core: Any) -> None:
    """Waits for a state, not a duration: the dispatcher is asleep with nothing left to run."""
    for _ in range(100_000):
        if core._pin is None and core._idle:
            return
        time.sleep(0.0005)
    raise AssertionError(f"the dispatcher never went idle: {core!r}")


def test_leased_executor_dropped_with_queued_work_still_runs_it() -> None:
    gate = threading.Event()
    ran: list[int] = []
    pool = LeasedExecutor(1)
    futures = [pool.submit(lambda i=i: (gate.wait(GENEROUS), ran.append(i))) for i in range(3)]
    pool_ref = weakref.ref(pool)
    del pool
    gate.set()
    done, _ = wait(futures, timeout=GENEROUS)
    assert len(done) == 3 and sorted(ran) == [0, 1, 2]
    del futures, done
    gc.collect()
    assert pool_ref() is None
