"""AdaptiveRequestAdmissionController: AIMD arithmetic, waves, cooldowns, waiters, caps, release, events.

No sleeps as synchronisation and no timing assertions: threads are sequenced with events (the sink sees
``request_wait_started`` once a waiter is queued), arithmetic uses an injected clock, and the one real
cooldown only has to *end* for the test to pass.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from support import FakeClock, numbers_inside, numbers_outside

from threadsched import CancelToken, Scheduler
from threadsched.core.events import MemoryEventSink, SchedulerEvent
from threadsched.requests import (
    AdaptiveRequestAdmissionController,
    ProviderModelKey,
    RequestAdmissionConfig,
    RequestAdmissionDenied,
    RequestAdmissionError,
    RequestAdmissionItem,
    RequestAdmissionLease,
    RequestDomain,
    RequestOutcome,
    RequestResourceKey,
)
from threadsched.requests.controller import MAX_CANCEL_POLL_S

RO = RequestOutcome
PM = ProviderModelKey("mock", "fast")
ALIAS = ProviderModelKey("alias", "fast-2")
CHAT = RequestResourceKey("mock", "fast", RequestDomain.CHAT)
EMBEDDING = RequestResourceKey("mock", "fast", RequestDomain.EMBEDDING)
ALIAS_CHAT = RequestResourceKey("alias", "fast-2", RequestDomain.CHAT)
JOIN = 10.0  # generous bound for joins/gets: never reached when the code is right


class SignalSink(MemoryEventSink):
    """Records events and releases ``wait_started`` once per queued waiter (emitted after it is queued)."""

    def __init__(self) -> None:
        super().__init__()
        self.wait_started = threading.Semaphore(0)

    def emit(self, event: SchedulerEvent) -> None:
        super().emit(event)
        if event.kind == "request_wait_started":
            self.wait_started.release()

    def await_waiters(self, count: int = 1) -> None:
        for _ in range(count):
            assert self.wait_started.acquire(timeout=JOIN), "a waiter never queued"


def make(
    cap: int = 8, *, clock: Callable[[], float] | None = None, sink: Any = None, **config: Any
) -> AdaptiveRequestAdmissionController:
    caps = config.pop("caps", {PM: cap})
    settings = RequestAdmissionConfig(caps=caps, **config)
    if clock is None:
        return AdaptiveRequestAdmissionController(settings, events=sink)
    return AdaptiveRequestAdmissionController(settings, events=sink, clock=clock)


def item(
    resource: RequestResourceKey = CHAT, group: Any = "default", weight: float = 1.0, **correlation: Any
) -> RequestAdmissionItem:
    return RequestAdmissionItem(resource, group, weight, correlation)


def lease_of(controller: AdaptiveRequestAdmissionController, resource: RequestResourceKey = CHAT) -> RequestAdmissionLease:
    outcome = controller.try_acquire(item(resource))
    assert isinstance(outcome, RequestAdmissionLease), outcome
    return outcome


def denial_of(controller: AdaptiveRequestAdmissionController, resource: RequestResourceKey = CHAT) -> RequestAdmissionDenied:
    outcome = controller.try_acquire(item(resource))
    assert isinstance(outcome, RequestAdmissionDenied), outcome
    return outcome


class Waiting:
    """``acquire`` in a thread; ``result()`` is its lease or the exception it raised."""

    def __init__(self, controller: AdaptiveRequestAdmissionController, request: RequestAdmissionItem, **kwargs: Any) -> None:
        self._results: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._run, args=(controller, request, kwargs), daemon=True)
        self._thread.start()

    def _run(self, controller: AdaptiveRequestAdmissionController, request: RequestAdmissionItem, kwargs: Any) -> None:
        try:
            self._results.put(controller.acquire(request, **kwargs))
        except BaseException as error:
            self._results.put(error)

    def result(self) -> Any:
        value = self._results.get(timeout=JOIN)
        self._thread.join(JOIN)
        return value


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(100.0)


# -- AIMD arithmetic ---------------------------------------------------------------------------------


def test_rate_limits_halve_the_limit_down_to_one(clock: FakeClock) -> None:
    controller = make(8, clock=clock)
    seen = []
    for _ in range(4):
        result = controller.release(lease_of(controller), RO.RATE_LIMITED)
        snapshot = controller.snapshot(CHAT)
        seen.append((result.limit_before, result.limit_after, snapshot.current_limit, snapshot.rate_limit_ceiling))
        clock.advance(1.0)  # exactly the default cooldown: over
    assert seen == [(8, 4, 4, 8), (4, 2, 2, 4), (2, 1, 1, 2), (None, None, 1, 1)]
    assert controller.snapshot(CHAT).consecutive_rate_limits == 4
    assert controller.statistics()["limit_decreases"] == 3
    assert controller.statistics()["rate_limit_waves"] == 4


def test_successes_raise_the_limit_by_the_step_up_to_the_cap(clock: FakeClock) -> None:
    controller = make(6, clock=clock, initial_limit=1, successes_until_increase=3, increase_step=2)
    limits = []
    for _ in range(9):
        result = controller.release(lease_of(controller), RO.SUCCESS)
        limits.append((controller.snapshot(CHAT).current_limit, result.limit_before, result.limit_after))
    assert [limit for limit, _, _ in limits] == [1, 1, 3, 3, 3, 5, 5, 5, 6]
    assert [(before, after) for _, before, after in limits if before is not None] == [(1, 3), (3, 5), (5, 6)]
    for _ in range(3):  # at the cap: nothing more
        assert controller.release(lease_of(controller), RO.SUCCESS).limit_after is None
    assert controller.snapshot(CHAT).current_limit == 6


def test_increases_stop_below_the_rate_limit_ceiling_while_it_is_held(clock: FakeClock) -> None:
    controller = make(8, clock=clock, initial_limit=6, successes_until_increase=1, ceiling_hold_s=10.0)
    assert controller.release(lease_of(controller), RO.RATE_LIMITED).limit_after == 3  # hit at 6: ceiling 6
    clock.advance(1.0)  # past the cooldown
    limits = []
    for _ in range(4):
        controller.release(lease_of(controller), RO.SUCCESS)
        limits.append(controller.snapshot(CHAT).current_limit)
    assert limits == [4, 5, 5, 5]  # one below the ceiling: the limit that drew 429s is not probed again
    assert controller.snapshot(CHAT).rate_limit_ceiling == 6
    clock.advance(10.0)  # the hold is over: probing resumes up to the cap
    controller.release(lease_of(controller), RO.SUCCESS)
    assert controller.snapshot(CHAT).current_limit == 6


def test_initial_limit_is_clamped_to_the_cap() -> None:
    assert make(3, initial_limit=10).snapshot(CHAT).current_limit == 3


def test_no_increase_during_a_cooldown_and_success_resets_consecutive_rate_limits(clock: FakeClock) -> None:
    controller = make(8, clock=clock, initial_limit=4, successes_until_increase=1)
    first, second = lease_of(controller), lease_of(controller)
    assert controller.release(first, RO.RATE_LIMITED).limit_after == 2
    result = controller.release(second, RO.SUCCESS)  # inside the cooldown
    snapshot = controller.snapshot(CHAT)
    assert (result.limit_after, snapshot.current_limit, snapshot.consecutive_rate_limits) == (None, 2, 0)
    clock.advance(1.0)
    assert controller.release(lease_of(controller), RO.SUCCESS).limit_after == 3


@pytest.mark.parametrize(
    "outcome", [RO.PROVIDER_FAILURE, RO.PROVIDER_TIMEOUT, RO.LOCAL_CANCELLED, RO.LOCAL_TIMEOUT, RO.UNEXPECTED_EXCEPTION]
)
def test_other_outcomes_change_no_limit(clock: FakeClock, outcome: RequestOutcome) -> None:
    controller = make(8, clock=clock, initial_limit=4, successes_until_increase=1)
    result = controller.release(lease_of(controller), outcome)
    snapshot = controller.snapshot(CHAT)
    assert (result.released, result.limit_after, snapshot.current_limit, snapshot.last_outcome) == (True, None, 4, outcome)
    assert snapshot.blocked_until is None


# -- waves and cooldowns -----------------------------------------------------------------------------


def test_one_decrease_per_rate_limit_wave(clock: FakeClock) -> None:
    sink = MemoryEventSink()
    controller = make(8, clock=clock, sink=sink)
    leases = [lease_of(controller) for _ in range(3)]
    results = [controller.release(lease, RO.RATE_LIMITED) for lease in leases]
    assert [(r.limit_before, r.limit_after) for r in results] == [(8, 4), (None, None), (None, None)]
    assert len(sink.of_kind("request_limit_decreased")) == 1
    assert len(sink.of_kind("request_rate_limited")) == 3
    assert [event.diagnostics["new_wave"] for event in sink.of_kind("request_rate_limited")] == [True, False, False]
    assert controller.snapshot(CHAT).consecutive_rate_limits == 3
    clock.advance(1.0)
    assert controller.release(lease_of(controller), RO.RATE_LIMITED).limit_after == 2  # a lease of the next wave
    assert len(sink.of_kind("request_limit_decreased")) == 2


def test_later_rate_limits_of_a_wave_only_extend_the_cooldown_by_their_retry_after(clock: FakeClock) -> None:
    controller = make(8, clock=clock, max_cooldown_s=60.0)
    a, b, c, d = (lease_of(controller) for _ in range(4))
    controller.release(a, RO.RATE_LIMITED, retry_after=1.0)
    assert controller.snapshot(CHAT).blocked_until == pytest.approx(101.0)
    controller.release(b, RO.RATE_LIMITED, retry_after=5.0)
    assert controller.snapshot(CHAT).blocked_until == pytest.approx(105.0)
    controller.release(c, RO.RATE_LIMITED)  # no Retry-After: no extension, no second decrease
    controller.release(d, RO.RATE_LIMITED, retry_after=2.0)  # shorter: never shortens
    snapshot = controller.snapshot(CHAT)
    assert (snapshot.blocked_until, snapshot.current_limit) == (pytest.approx(105.0), 4)


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        (None, 1.0),
        (1000.0, 60.0),
        (-3.0, 0.0),
        (float("nan"), 1.0),
        (2.5, 2.5),
        ("3", 3.0),
        ("soon", 1.0),
        (True, 1.0),
    ],
)
def test_cooldown_comes_from_retry_after_clamped_or_the_default(clock: FakeClock, retry_after: Any, expected: float) -> None:
    controller = make(8, clock=clock, default_cooldown_s=1.0, max_cooldown_s=60.0)
    controller.release(lease_of(controller), RO.RATE_LIMITED, retry_after=retry_after)
    assert controller.snapshot(CHAT).cooldown_remaining == pytest.approx(expected)


def test_try_acquire_in_a_cooldown_is_denied_with_the_time_remaining(clock: FakeClock) -> None:
    controller = make(8, clock=clock)
    controller.release(lease_of(controller), RO.RATE_LIMITED, retry_after=2.0)
    clock.advance(0.5)
    denial = denial_of(controller)
    assert (denial.reason, denial.retry_after) == ("cooldown", pytest.approx(1.5))
    snapshot = controller.snapshot(CHAT)
    assert (snapshot.blocked_until, snapshot.cooldown_remaining, snapshot.effective_max) == (
        pytest.approx(102.0),
        pytest.approx(1.5),
        0,
    )
    clock.advance(1.5)
    assert isinstance(controller.try_acquire(item()), RequestAdmissionLease)
    assert controller.snapshot(CHAT).blocked_until is None


def test_a_waiter_gets_its_lease_when_the_cooldown_ends_without_any_release() -> None:
    sink = SignalSink()
    controller = make(2, sink=sink, initial_limit=1)
    held = lease_of(controller)
    waiting = Waiting(controller, item(), timeout=JOIN)
    sink.await_waiters()
    before = time.monotonic()
    assert controller.release(held, RO.RATE_LIMITED, retry_after=0.05).released  # frees the slot, starts a cooldown
    lease = waiting.result()  # nothing else is ever released
    assert isinstance(lease, RequestAdmissionLease)
    assert lease.acquired_at >= before + 0.05  # granted no earlier than the end of the cooldown
    assert [event.reason for event in sink.of_kind("request_wait_completed")] == ["granted"]
    controller.release(lease, RO.SUCCESS)


# -- waiters: timeout, cancel, shutdown, no lease after a typed error ----------------------------------


def test_waiter_timeout_raises_removes_the_waiter_and_never_gets_a_lease_later() -> None:
    sink = MemoryEventSink()
    controller = make(1, sink=sink)
    held = lease_of(controller)
    with pytest.raises(RequestAdmissionError) as caught:
        controller.acquire(item(), timeout=0.02)
    denial = caught.value.denial
    assert (denial.reason, denial.diagnostics["blocked_by"]) == ("timeout", "at_limit")
    snapshot = controller.snapshot(CHAT)
    assert (snapshot.waiters, snapshot.in_flight) == (0, 1)
    assert controller.release(held, RO.SUCCESS).released
    snapshot = controller.snapshot(CHAT)
    assert (snapshot.in_flight, snapshot.acquired_total) == (0, 1)  # nothing was handed to the departed waiter
    assert isinstance(controller.try_acquire(item()), RequestAdmissionLease)
    stats = controller.statistics()
    assert (stats["waits"], stats["wait_timeouts"], stats["waiters"]) == (1, 1, 0)
    assert [event.reason for event in sink.of_kind("request_wait_completed")] == ["timeout"]


def test_acquire_with_zero_timeout_never_queues() -> None:
    controller = make(1)
    lease = controller.acquire(item(), timeout=0)
    with pytest.raises(RequestAdmissionError, match="timeout"):
        controller.acquire(item(), timeout=0)
    assert controller.statistics()["waits"] == 0
    controller.release(lease, RO.SUCCESS)


@pytest.mark.parametrize("kind", ["event", "token"])
def test_cancel_from_another_thread_raises_and_removes_the_waiter(kind: str) -> None:
    sink = SignalSink()
    controller = make(1, sink=sink)
    held = lease_of(controller)
    event, token = threading.Event(), CancelToken()
    waiting = Waiting(controller, item(), cancel=event if kind == "event" else token)
    sink.await_waiters()
    canceller = threading.Thread(target=event.set if kind == "event" else token.cancel)
    canceller.start()
    canceller.join(JOIN)
    error = waiting.result()
    assert isinstance(error, RequestAdmissionError) and error.denial.reason == "cancelled"
    assert controller.snapshot(CHAT).waiters == 0
    controller.release(held, RO.SUCCESS)
    snapshot = controller.snapshot(CHAT)
    assert (snapshot.in_flight, snapshot.acquired_total) == (0, 1)
    assert controller.statistics()["wait_cancellations"] == 1


def test_cancel_already_set_gets_no_lease_even_with_room() -> None:
    controller = make(4)
    token = CancelToken()
    token.cancel()
    with pytest.raises(RequestAdmissionError, match="cancelled"):
        controller.acquire(item(), cancel=token)
    assert controller.snapshot(CHAT).in_flight == 0


def test_shutdown_wakes_every_waiter_and_denies_later_acquisitions_but_releases_work() -> None:
    sink = SignalSink()
    controller = make(1, sink=sink)
    held = lease_of(controller)
    waiting = [Waiting(controller, item(group=n)) for n in range(3)]
    sink.await_waiters(3)
    controller.shutdown()
    errors = [w.result() for w in waiting]
    assert all(isinstance(e, RequestAdmissionError) and e.denial.reason == "shutdown" for e in errors)
    assert denial_of(controller).reason == "shutdown"
    with pytest.raises(RequestAdmissionError, match="shutdown"):
        controller.acquire(item(), timeout=1.0)
    assert controller.release(held, RO.SUCCESS).released
    snapshot = controller.snapshot(CHAT)
    assert (snapshot.in_flight, snapshot.waiters, snapshot.effective_max) == (0, 0, 0)
    assert controller.statistics()["wait_shutdowns"] == 3


def test_a_lease_granted_to_a_waiter_that_dies_is_given_back() -> None:
    """The hand-off assigned a lease, but the waiting thread leaves by an exception before picking it up."""
    controller = AdaptiveRequestAdmissionController(RequestAdmissionConfig(caps={PM: 1}), cancel_poll_s=JOIN)
    held = lease_of(controller)

    class Exploding:
        def is_set(self) -> bool:
            if controller.statistics()["acquired"] == 2:  # the hand-off happened
                raise KeyboardInterrupt
            return False

    waiting = Waiting(controller, item(), cancel=Exploding())
    # Release only once the waiter sleeps in its Condition (no poll wake-up for JOIN seconds): it wakes on the
    # hand-off's notify and reads its cancel object before it picks the lease up.
    state = controller._resources[CHAT]
    while True:
        with controller._lock:
            waiters = state.waiters_locked()
            if waiters and waiters[0].cond._waiters:  # type: ignore[attr-defined]
                break
        time.sleep(0)
    controller.release(held, RO.SUCCESS)
    assert isinstance(waiting.result(), KeyboardInterrupt)
    snapshot = controller.snapshot(CHAT)
    assert (snapshot.in_flight, snapshot.waiters, controller.statistics()["abandoned_grants"]) == (0, 0, 1)
    assert isinstance(controller.try_acquire(item()), RequestAdmissionLease)


def test_a_waiter_interrupted_while_queued_leaves_no_ghost_behind() -> None:
    class Interrupting:
        def emit(self, event: SchedulerEvent) -> None:
            if event.kind == "request_wait_started":
                raise KeyboardInterrupt  # not an Exception: the sink guard does not catch it

    controller = make(1, sink=Interrupting())
    held = lease_of(controller)
    with pytest.raises(KeyboardInterrupt):
        controller.acquire(item(), timeout=JOIN)
    assert controller.snapshot(CHAT).waiters == 0
    controller.release(held, RO.SUCCESS)
    snapshot = controller.snapshot(CHAT)
    assert (snapshot.in_flight, snapshot.acquired_total) == (0, 1)


# -- fairness and barging ----------------------------------------------------------------------------


def test_try_acquire_never_barges_past_a_queued_waiter() -> None:
    sink = SignalSink()
    controller = make(1, sink=sink)
    held = lease_of(controller)
    waiting = Waiting(controller, item(group="waiter"))
    sink.await_waiters()
    assert denial_of(controller).reason == "queued_waiters"
    controller.release(held, RO.SUCCESS)  # hands the slot over before anyone else can look
    assert denial_of(controller).reason == "at_limit"
    lease = waiting.result()
    assert isinstance(lease, RequestAdmissionLease) and lease.item.group == "waiter"
    controller.release(lease, RO.SUCCESS)


def test_after_a_cooldown_try_acquire_serves_the_queue_first(clock: FakeClock) -> None:
    sink = SignalSink()
    controller = make(2, clock=clock, sink=sink, initial_limit=1)
    held = lease_of(controller)
    waiting = Waiting(controller, item(group="waiter"))
    sink.await_waiters()
    controller.release(held, RO.RATE_LIMITED)  # limit stays 1, cooldown starts: nobody can be granted yet
    assert denial_of(controller).reason == "cooldown"
    clock.advance(5.0)
    assert denial_of(controller).reason == "at_limit"  # the waiter got the slot
    lease = waiting.result()
    assert isinstance(lease, RequestAdmissionLease) and lease.item.group == "waiter"


# (1.0, 0.5): a weight below 1 is honoured as-is, the same rule as the task queue's.
@pytest.mark.parametrize(("heavy_weight", "light_weight"), [(2.0, 1.0), (1.0, 0.5)])
def test_waiters_are_served_by_group_weight_oldest_first(heavy_weight: float, light_weight: float) -> None:
    sink = SignalSink()
    controller = make(1, sink=sink)
    held = lease_of(controller)
    granted: queue.Queue[RequestAdmissionLease] = queue.Queue()

    def wait_for(request: RequestAdmissionItem) -> None:
        granted.put(controller.acquire(request, timeout=JOIN))

    threads = []
    for n in range(8):  # queued in a known order: heavy0, light0, heavy1, light1, ...
        for group, weight in (("heavy", heavy_weight), ("light", light_weight)):
            threads.append(threading.Thread(target=wait_for, args=(item(group=group, weight=weight, n=n),)))
            threads[-1].start()
            sink.await_waiters()
    order = []
    current = held
    for _ in range(16):  # limit 1: each release hands the one slot to exactly one waiter
        controller.release(current, RO.SUCCESS)
        current = granted.get(timeout=JOIN)
        order.append((current.item.group, current.item.correlation["n"]))
    controller.release(current, RO.SUCCESS)
    for thread in threads:
        thread.join(JOIN)
    groups = [group for group, _ in order]
    assert groups[:9].count("heavy") == 6 and groups[:9].count("light") == 3
    for name in ("heavy", "light"):  # oldest first within a group
        assert [n for group, n in order if group == name] == list(range(8))
    assert controller.snapshot(CHAT).in_flight == 0


# -- aggregate caps: domains and aliases ---------------------------------------------------------------


def test_domains_of_one_endpoint_share_its_aggregate_cap() -> None:
    controller = make(2)
    chat = [lease_of(controller, CHAT), lease_of(controller, CHAT)]
    assert denial_of(controller, EMBEDDING).reason == "aggregate_cap"
    snapshot = controller.snapshot(EMBEDDING)
    assert (snapshot.aggregate_in_flight, snapshot.in_flight, snapshot.effective_max, snapshot.current_limit) == (2, 0, 0, 2)
    controller.release(chat[0], RO.SUCCESS)
    embedding = lease_of(controller, EMBEDDING)
    assert denial_of(controller, CHAT).reason == "aggregate_cap"
    assert controller.snapshot(CHAT).aggregate_in_flight == 2
    for lease in (chat[1], embedding):
        controller.release(lease, RO.SUCCESS)


def test_a_waiter_of_another_domain_gets_capacity_freed_by_this_one() -> None:
    sink = SignalSink()
    controller = make(1, sink=sink)
    chat = lease_of(controller, CHAT)
    waiting = Waiting(controller, item(EMBEDDING))
    sink.await_waiters()
    controller.release(chat, RO.SUCCESS)
    lease = waiting.result()
    assert isinstance(lease, RequestAdmissionLease) and lease.resource == EMBEDDING


def test_aliases_share_the_smallest_declared_cap() -> None:
    controller = make(caps={PM: 3, ALIAS: 2}, aliases={ALIAS: PM})
    first = lease_of(controller, ALIAS_CHAT)
    second = lease_of(controller, CHAT)
    assert first.resource == second.resource == CHAT  # canonical
    assert denial_of(controller, ALIAS_CHAT).reason == "at_limit"
    assert denial_of(controller, EMBEDDING).reason == "aggregate_cap"
    assert controller.snapshot(ALIAS_CHAT) == controller.snapshot(CHAT)
    assert (controller.snapshot(CHAT).static_cap, controller.snapshot(CHAT).in_flight) == (2, 2)
    assert list(controller.snapshots()) == [CHAT, EMBEDDING]  # one per canonical resource used


def test_unknown_provider_model_is_a_value_error_not_a_hang() -> None:
    controller = make(2)
    unknown = RequestResourceKey("nope", "model")
    for call in (lambda: controller.try_acquire(item(unknown)), lambda: controller.acquire(item(unknown), timeout=None)):
        with pytest.raises(ValueError, match="unknown provider/model nope/model"):
            call()
    with pytest.raises(ValueError, match="nope/model"):
        controller.snapshot(unknown)


# -- release -------------------------------------------------------------------------------------------


def test_release_is_exactly_once() -> None:
    sink = MemoryEventSink()
    controller = make(2, sink=sink)
    lease = lease_of(controller)
    first, second = controller.release(lease, RO.SUCCESS), controller.release(lease, RO.RATE_LIMITED)
    assert (first.released, first.reason) == (True, "released")
    assert (second.released, second.reason) == (False, "already_released")
    snapshot = controller.snapshot(CHAT)
    assert (snapshot.in_flight, snapshot.released_total, snapshot.double_releases, snapshot.current_limit) == (0, 1, 1, 2)
    assert controller.statistics()["release_diagnostics"] == {"already_released": 1}
    assert [event.reason for event in sink.of_kind("request_release_diagnostic")] == ["already_released"]


def test_racing_releases_of_one_lease_return_its_capacity_once() -> None:
    controller = make(4)
    leases = [lease_of(controller) for _ in range(4)]
    barrier = threading.Barrier(8)
    results: list[bool] = []

    def release_all() -> None:
        barrier.wait(JOIN)
        results.extend(controller.release(lease, RO.SUCCESS).released for lease in leases)

    threads = [threading.Thread(target=release_all) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN)
    assert sorted(results).count(True) == 4
    snapshot = controller.snapshot(CHAT)
    assert (snapshot.in_flight, snapshot.released_total, snapshot.double_releases) == (0, 4, 28)


def test_foreign_and_bogus_leases_are_unknown_and_a_foreign_lease_stays_releasable() -> None:
    ours, theirs = make(2), make(2)
    foreign = lease_of(theirs)
    result = ours.release(foreign, RO.SUCCESS)
    assert (result.released, result.reason) == (False, "unknown_lease")
    assert ours.release("not a lease", RO.SUCCESS).reason == "unknown_lease"  # type: ignore[arg-type]
    assert theirs.release(foreign, RO.SUCCESS).released  # its flag was left alone
    assert ours.statistics()["release_diagnostics"] == {"unknown_lease": 2}
    assert ours.snapshot(CHAT).unknown_releases == 0  # the resource was never used here: nothing registered


def test_an_unknown_outcome_still_releases_as_unexpected_exception() -> None:
    controller = make(2)
    result = controller.release(lease_of(controller), "exploded")
    assert (result.released, result.reason) == (True, "invalid_outcome")
    snapshot = controller.snapshot(CHAT)
    assert (snapshot.in_flight, snapshot.last_outcome) == (0, RO.UNEXPECTED_EXCEPTION)
    assert controller.release(lease_of(controller), "success").reason == "released"  # plain strings are fine


# -- events, views, validation -------------------------------------------------------------------------


def test_events_carry_the_running_tasks_correlation_captured_where_they_are_built() -> None:
    sink = SignalSink()
    controller = make(1, sink=sink)
    held = lease_of(controller)  # built outside any task
    scheduler = Scheduler(max_workers=2, run_id="run-7")
    try:
        group = scheduler.group("columns")

        def call() -> int:
            lease = controller.acquire(item(group="col-b", attempt="a1"), timeout=JOIN)
            controller.release(lease, RO.SUCCESS)
            return lease.lease_id

        future = group.submit_correlated({"column": "b", "row_group": 3}, call)
        sink.await_waiters()
        controller.release(held, RO.SUCCESS)  # the hand-off is made in this (task-less) thread
        lease_id = future.result(timeout=JOIN)
    finally:
        scheduler.shutdown()
    acquired = {event.lease_id: event for event in sink.of_kind("request_lease_acquired")}
    outside, inside = acquired[held.lease_id], acquired[lease_id]
    assert (outside.run_id, outside.task_id, dict(outside.correlation)) == (None, None, {})
    assert (inside.run_id, inside.task_id, inside.execution_id) == ("run-7", future.task_id, f"{future.task_id}#1")
    assert inside.correlation["column"] == "b" and inside.correlation["attempt"] == "a1"
    assert (inside.stream, inside.group, dict(inside.resources or {})) == ("requests", "col-b", {"mock/fast:chat": 1})
    released = {event.lease_id: event for event in sink.of_kind("request_lease_released")}
    assert released[held.lease_id].task_id is None and released[lease_id].task_id == future.task_id
    for kind in ("request_wait_started", "request_wait_completed"):
        assert sink.of_kind(kind)[0].task_id == future.task_id
    assert [event.sequence for event in sink.events] == list(range(len(sink.events)))


def test_a_raising_sink_is_counted_and_never_breaks_admission() -> None:
    class Broken:
        def emit(self, event: SchedulerEvent) -> None:
            raise RuntimeError("sink down")

    controller = make(2, sink=Broken())
    assert controller.release(lease_of(controller), RO.RATE_LIMITED).released
    assert controller.statistics()["sink_errors"] == 4  # acquired, rate_limited, decreased, released


def test_limit_events_show_before_and_after(clock: FakeClock) -> None:
    sink = MemoryEventSink()
    controller = make(4, clock=clock, sink=sink, successes_until_increase=1)
    controller.release(lease_of(controller), RO.RATE_LIMITED, retry_after=0.5)
    clock.advance(1.0)
    controller.release(lease_of(controller), RO.SUCCESS)
    changes = [
        (e.kind, e.diagnostics["before"], e.diagnostics["after"])
        for e in sink.of_kind("request_limit_decreased", "request_limit_increased")
    ]
    assert changes == [("request_limit_decreased", 4, 2), ("request_limit_increased", 2, 3)]
    assert sink.of_kind("request_rate_limited")[0].diagnostics["cooldown_s"] == 0.5


def test_snapshot_of_an_unused_resource_is_fresh_and_registers_nothing(clock: FakeClock) -> None:
    controller = make(5, clock=clock, initial_limit=3)
    snapshot = controller.snapshot(EMBEDDING)
    assert (snapshot.current_limit, snapshot.effective_max, snapshot.static_cap, snapshot.in_flight) == (3, 3, 5, 0)
    assert (snapshot.blocked_until, snapshot.last_outcome, snapshot.rate_limit_ceiling) == (None, None, None)
    assert controller.snapshots() == {} and controller.statistics()["resources"] == 0
    lease = lease_of(controller, CHAT)
    assert controller.snapshot(EMBEDDING).aggregate_in_flight == 1
    assert list(controller.snapshots()) == [CHAT]
    assert "leases=1" in repr(controller)
    controller.release(lease, RO.SUCCESS)


def test_validation_errors_are_typed() -> None:
    controller = make(2)
    with pytest.raises(ValueError, match="timeout must be"):
        controller.acquire(item(), timeout=-1)
    with pytest.raises(ValueError, match="timeout must be"):
        controller.acquire(item(), timeout=float("inf"))
    with pytest.raises(TypeError, match="cancel must have"):
        controller.acquire(item(), cancel=object())
    with pytest.raises(TypeError, match="item must be"):
        controller.try_acquire(CHAT)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="config must be"):
        AdaptiveRequestAdmissionController({PM: 2})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cancel_poll_s"):
        AdaptiveRequestAdmissionController(RequestAdmissionConfig(caps={PM: 1}), cancel_poll_s=0)
    assert controller.statistics()["resources"] == 0


@settings(max_examples=300, deadline=None)
@given(numbers_outside(0, MAX_CANCEL_POLL_S, exclusive_minimum=True))
def test_a_cancel_poll_outside_0_to_60_seconds_is_refused_naming_it(poll: object) -> None:
    """A poll of 1e300 s would be a cancel that is never seen (0 would spin); a bool or a string is no duration."""
    with pytest.raises((TypeError, ValueError), match=r"^cancel_poll_s must be "):
        AdaptiveRequestAdmissionController(RequestAdmissionConfig(caps={PM: 1}), cancel_poll_s=poll)  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None)
@given(numbers_inside(0, MAX_CANCEL_POLL_S, exclusive_minimum=True))
def test_a_cancel_poll_inside_0_to_60_seconds_is_taken(poll: float) -> None:
    assert AdaptiveRequestAdmissionController(RequestAdmissionConfig(caps={PM: 1}), cancel_poll_s=poll)._cancel_poll_s == poll


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"events": object()}, r"^events must have an emit\(event\) method"),
        ({"clock": 3.0}, r"^clock must be callable"),
        ({"sequence": iter}, r"^sequence must be an iterator of ints"),
    ],
)
def test_every_other_controller_argument_of_the_wrong_type_is_a_type_error_naming_it(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(TypeError, match=match):
        AdaptiveRequestAdmissionController(RequestAdmissionConfig(caps={PM: 1}), **kwargs)


def test_a_shared_sequence_numbers_the_requests_stream_across_producers() -> None:
    sink = MemoryEventSink()
    first = make(2, sink=sink)
    second = AdaptiveRequestAdmissionController(RequestAdmissionConfig(caps={PM: 2}), events=sink, sequence=first.sequence)
    first.release(lease_of(first), RO.SUCCESS)
    second.release(lease_of(second), RO.SUCCESS)
    assert [event.sequence for event in sink.events] == [0, 1, 2, 3]
    with pytest.raises(TypeError, match="sequence must be"):
        AdaptiveRequestAdmissionController(RequestAdmissionConfig(caps={PM: 2}), sequence=[1, 2])  # type: ignore[arg-type]


def test_waiter_order_keeps_weight_ratios_after_the_smallest_weight_group_ran_long() -> None:
    """The request layer's fair clock counts whole quanta: the smallest accepted weight, granted many times,
    moves the clock far ahead, and two groups weighted 1:3 that wait beside it still get 1:3."""
    import threading

    from threadsched.core.contracts import MIN_WEIGHT
    from threadsched.requests.contracts import ProviderModelKey, RequestAdmissionConfig, RequestAdmissionItem, RequestResourceKey
    from threadsched.requests.controller_state import Endpoint, ResourceState, Waiter

    key, endpoint = RequestResourceKey("p", "m"), ProviderModelKey("p", "m")
    resource = ResourceState(key, Endpoint(endpoint, 1), RequestAdmissionConfig(caps={endpoint: 1}))
    lock, seq = threading.Lock(), iter(range(1_000_000))

    def backlog(*groups: tuple[str, float]) -> None:
        for group, weight in groups:
            if group not in resource.queues:  # each group always has a waiter: all stay backlogged
                item = RequestAdmissionItem(key, group, weight)
                resource.add_waiter_locked(Waiter(item, resource, next(seq), lock, 0.0))

    def grant() -> str:
        head = resource.head_locked()
        assert head is not None
        resource.pop_head_locked(head)
        return str(head.item.group)

    tiny = RequestAdmissionItem(key, "tiny", MIN_WEIGHT)
    resource.add_waiter_locked(Waiter(tiny, resource, next(seq), lock, 0.0))  # a second one: never drained
    for _ in range(2_000):
        backlog(("tiny", MIN_WEIGHT))
        assert grant() == "tiny"
    grants = []
    for _ in range(400):
        backlog(("light", 1.0), ("heavy", 3.0))
        grants.append(grant())
    assert isinstance(resource.vtime, int) and all(isinstance(tag, int) for tag in resource.finish.values())
    assert resource.vtime >= 1_999 * round(1 / MIN_WEIGHT)  # the tiny group's grants moved the clock
    light, heavy = grants.count("light"), grants.count("heavy")
    assert light + heavy == 400 and abs(heavy - 3 * light) <= 4, (light, heavy)
