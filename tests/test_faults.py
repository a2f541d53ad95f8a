"""Regression tests for faults of the redesigned core, each named after the fault it pins.

Every test synchronises on events, barriers, futures or thread joins (never on sleeps or the clock), and
each would fail if the fix it names were reverted.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import math
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import CancelledError, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
from support import GENEROUS, PolicyStub, RaisingPolicy, SignalingSink, counting_semaphores, opened_on_exit, resolve_all

from threadsched import AdmissionStalledError, LeasedExecutor, RetryPolicy, Scheduler
from threadsched.core.admission import TaskAdmissionController
from threadsched.core.contracts import MAX_WEIGHT, MIN_WEIGHT, SchedulableTask, TaskGroupSpec
from threadsched.core.dispatcher import DispatcherCore
from threadsched.core.outcomes import classify_outcome
from threadsched.core.policy import NO_CHANGE, PolicyDecision, PolicyStateDelta
from threadsched.core.queue import FairTaskQueue
from threadsched.core.retry import NO_RETRY
from threadsched.core.values import QueueView, TaskAdmissionConfig, TaskAdmissionDenied, TaskAdmissionLease, TaskAdmissionView

# -- helpers -------------------------------------------------------------------------------------


class Payload:
    """A plain object a test can hold a weak reference to."""


def make_result(payload: Payload) -> Payload:
    return Payload()


RaisingForBadGroup = functools.partial(RaisingPolicy, evaluate_fails_for={"bad"}, label="RaisingForBadGroup")
"""A custom policy (so the controller always consults it): ``evaluate`` raises for group "bad"."""


class CountingPolicy(PolicyStub):
    """Allows everything; counts ``evaluate`` calls per task id and remembers what ``on_acquire`` received."""

    def __init__(self) -> None:
        self.evaluations: Counter[str] = Counter()
        self.returned: dict[str, list[PolicyDecision]] = {}
        self.acquired_with: dict[str, PolicyDecision] = {}

    def evaluate(self, item: SchedulableTask, queue_view: QueueView, admission_view: TaskAdmissionView) -> PolicyDecision:
        self.evaluations[item.task_id] += 1
        decision = PolicyDecision(allowed=True, diagnostics={"call": self.evaluations[item.task_id]})
        self.returned.setdefault(item.task_id, []).append(decision)
        return decision

    def on_acquire(self, lease: TaskAdmissionLease, decision: PolicyDecision) -> PolicyStateDelta:
        self.acquired_with[lease.item.task_id] = decision
        return NO_CHANGE


class DispatcherCrash(Exception):
    """Distinctive: nothing in threadsched raises it."""


class _WakeProbe:
    """Stands in for a dispatcher's wake lock to report when the dispatcher blocks on it.

    The dispatcher drops its pin on the executor (and its local reference to it) before it blocks on
    ``_wake``, so "blocked on the wake lock with no pin" means "idle, holding no reference to its executor".
    """

    def __init__(self, core: DispatcherCore) -> None:
        self._core = weakref.ref(core)  # the core holds this probe: no cycle back
        self._lock = core._wake
        self._changed = threading.Condition()
        self._sleeping = False

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        with self._changed:
            self._sleeping = True
            self._changed.notify_all()
        try:
            return self._lock.acquire(blocking, timeout)
        finally:
            with self._changed:
                self._sleeping = False

    def release(self) -> None:
        self._lock.release()

    def wait_until_idle_and_unpinned(self) -> None:
        with self._changed:
            idle = self._changed.wait_for(lambda: self._sleeping and getattr(self._core(), "_pin", None) is None, GENEROUS)
        assert idle, f"the dispatcher never went idle without its pin: {self._core()!r}"


def probe_dispatcher_sleep(core: DispatcherCore) -> _WakeProbe:
    """Install a ``_WakeProbe`` on a core whose dispatcher thread has not started yet (no submit so far)."""
    assert core._thread is None, "install the probe before the first submit"
    probe = _WakeProbe(core)
    core._wake = probe  # type: ignore[assignment]  # duck-typed: acquire/release only
    return probe


def threads_named(*prefixes: str) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith(prefixes)]


def join_threads_named(*prefixes: str) -> None:
    for thread in threads_named(*prefixes):
        thread.join(GENEROUS)
    alive = [thread.name for thread in threads_named(*prefixes)]
    assert not alive, f"threads still alive: {alive}"


@contextmanager
def collector_disabled() -> Iterator[None]:
    """Only reference counting frees anything inside the block."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# -- 1. a raising policy -------------------------------------------------------------------------


def test_policy_whose_evaluate_raises_is_a_counted_denial_and_the_scheduler_keeps_working(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="threadsched")
    sink = SignalingSink()
    scheduler = Scheduler(2, policy=RaisingForBadGroup(), events=sink, name="faults-raising-policy")
    good = scheduler.group("good", admitted_limit=1)
    bad = scheduler.group("bad", admitted_limit=1)
    gate, started = threading.Event(), threading.Event()

    def blocker() -> str:
        started.set()
        assert gate.wait(GENEROUS)
        return "blocker"

    with opened_on_exit(gate):
        blocker_future = good.submit(blocker)
        assert started.wait(GENEROUS)
        bad_futures = [bad.submit(lambda: "never admitted") for _ in range(3)]
        # The raising evaluate denied the bad head while the blocker runs: no stall yet, only "blocked".
        assert sink.wait_for_count("admission_blocked", 1)
        assert scheduler.statistics().admission.policy_counters["policy_errors"] >= 1
        assert not any(future.done() for future in bad_futures)
        # The scheduler keeps working: good work is admitted into the free slot past the bad group.
        later_good = [good.submit(lambda i=i: i) for i in range(5)]
        resolve_all(later_good)
        assert [future.result() for future in later_good] == list(range(5))
        assert not blocker_future.done()
    resolve_all([blocker_future, *bad_futures])
    assert blocker_future.result() == "blocker"
    # Once nothing else can run, the bad work can never be admitted: it fails instead of hanging.
    for future in bad_futures:
        error = future.exception()
        assert isinstance(error, AdmissionStalledError), error
        assert dict(error.summary.blocked_groups) == {"bad": "policy_denial"}
    assert scheduler.statistics().admission.policy_counters["policy_errors"] >= 2  # approve + explain_blocked
    report = scheduler.shutdown()
    assert report.clean is True
    assert report.dispatcher_error is None

    policy_logs = [
        record for record in caplog.records if record.name == "threadsched" and "RaisingForBadGroup" in record.getMessage()
    ]
    first = [record for record in policy_logs if record.levelno >= logging.WARNING]
    assert len(first) == 1, [record.getMessage() for record in first]
    assert first[0].levelno == logging.ERROR
    assert first[0].exc_info is not None and isinstance(first[0].exc_info[1], RuntimeError)
    later = [record for record in policy_logs if record.levelno == logging.DEBUG]
    assert later, "repeated policy errors are logged at DEBUG"
    stalled = [event for event in sink.of_kind("task_completed") if event.reason == "admission_stalled"]
    assert sorted(event.task_id for event in stalled) == sorted(future.task_id for future in bad_futures)


def test_policy_whose_evaluate_raises_shows_up_as_an_admission_denied_event_naming_the_error() -> None:
    sink = SignalingSink()
    scheduler = Scheduler(2, policy=RaisingForBadGroup(), events=sink, name="faults-raising-policy-event")
    bad = scheduler.group("bad", admitted_limit=1)
    good = scheduler.group("good", admitted_limit=1)
    futures = [bad.submit(lambda: None), good.submit(lambda: 1)]
    resolve_all(futures)
    assert scheduler.shutdown().clean
    denied = [event for event in sink.of_kind("admission_denied") if event.reason == "policy_denial"]
    assert any(dict(event.diagnostics) == {"policy_error": "RuntimeError"} for event in denied), sink.events


def test_policy_whose_evaluate_raises_is_a_policy_denial_naming_the_error_type() -> None:
    controller = TaskAdmissionController(TaskAdmissionConfig(submission_capacity=2), RaisingForBadGroup())
    queue = FairTaskQueue()
    item = SchedulableTask("b1", None, TaskGroupSpec("bad", admitted_limit=1))
    queue.enqueue([item])
    outcome = controller.try_acquire(item, queue.view())
    assert isinstance(outcome, TaskAdmissionDenied)
    assert outcome.reason == "policy_denial"
    assert dict(outcome.diagnostics) == {"policy_error": "RuntimeError"}
    assert controller.statistics().policy_counters["policy_errors"] == 1
    assert controller.active_lease_count == 0


# -- 2. a dispatcher crash -----------------------------------------------------------------------


def test_dispatcher_crash_makes_the_shutdown_report_unclean_with_its_cause(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, logger="threadsched")
    scheduler = Scheduler(2, name="faults-crash")
    crash = DispatcherCrash("dispatcher bug")
    gate, started = threading.Event(), threading.Event()

    def blocker() -> str:
        started.set()
        assert gate.wait(GENEROUS)
        return "ran before the crash"

    with opened_on_exit(gate):
        running = scheduler.submit(blocker)
        assert started.wait(GENEROUS)
        original = scheduler._controller.lease_fitting
        calls = 0

        def lease_fitting_raising_once(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise crash
            return original(*args, **kwargs)

        monkeypatch.setattr(scheduler._controller, "lease_fitting", lease_fitting_raising_once)
        pending = [scheduler.submit(lambda i=i: i) for i in range(5)]
        resolve_all(pending)  # every pending future resolves (none hangs)
        for future in pending:
            error = future.exception()
            assert isinstance(error, RuntimeError), error
            assert repr(crash) in str(error)
        with pytest.raises(RuntimeError):
            scheduler.submit(lambda: "after the crash")
    # The attempt that was running when the dispatcher died still completes on its worker.
    assert running.result(timeout=GENEROUS) == "ran before the crash"
    report = scheduler.shutdown()
    assert report.clean is False
    assert report.dispatcher_error is crash
    assert calls == 1
    assert any(record.levelno == logging.CRITICAL and record.exc_info is not None for record in caplog.records)


# -- 3. the timeout heap -------------------------------------------------------------------------


def test_task_that_finished_before_its_timeout_is_not_kept_alive_by_the_timeout_heap() -> None:
    with collector_disabled():
        scheduler = Scheduler(2, name="faults-timeout-heap")
        group = scheduler.group("g", timeout=3600)
        payload = Payload()
        payload_ref = weakref.ref(payload)
        future = group.submit(make_result, payload)
        del payload
        resolve_all([future])
        result_ref = weakref.ref(future.result())
        del future
        # complete() empties the execution's timeout entry before the future resolves.
        assert scheduler._core._deadlines.timeout_entries == 0
        scheduler.shutdown()
        assert payload_ref() is None, "the task's argument outlived it"
        assert result_ref() is None, "the task's result outlived its future"


# -- 4. lazy threads -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: Scheduler(4, name="faults-unused"), id="Scheduler"),
        pytest.param(lambda: LeasedExecutor(4, thread_name_prefix="faults-unused-worker"), id="LeasedExecutor"),
    ],
)
def test_unused_executor_starts_no_thread(make: Callable[[], Scheduler | LeasedExecutor]) -> None:
    before = set(threading.enumerate())
    executor = make()
    started = set(threading.enumerate()) - before
    assert not started, f"construction started threads: {sorted(thread.name for thread in started)}"
    executor.shutdown()
    started = set(threading.enumerate()) - before
    assert not started, f"shutdown left threads: {sorted(thread.name for thread in started)}"


# -- 5. abandoned executors ----------------------------------------------------------------------


def test_abandoned_leased_executor_is_freed_by_reference_counting() -> None:
    with collector_disabled():
        executor = LeasedExecutor(2, thread_name_prefix="faults-abandoned-worker")
        core = executor.scheduler._core
        probe = probe_dispatcher_sleep(core)
        dispatcher_name = f"{executor._name}-dispatcher"
        futures = [executor.submit(abs, -i) for i in range(5)]
        resolve_all(futures)
        assert [future.result() for future in futures] == list(range(5))
        probe.wait_until_idle_and_unpinned()  # its work is over: the dispatcher holds no reference to it
        executor_ref = weakref.ref(executor)
        del executor, core, probe
        assert executor_ref() is None, "an abandoned LeasedExecutor needs the cyclic collector to be freed"
        join_threads_named(dispatcher_name, "faults-abandoned-worker")


def test_abandoned_scheduler_is_freed_by_reference_counting_its_task_group_does_not_hold_it() -> None:
    with collector_disabled():
        scheduler = Scheduler(2, name="faults-abandoned-scheduler")
        group = scheduler.group("g")
        assert group.submit(abs, -3).result(timeout=GENEROUS) == 3
        scheduler_ref = weakref.ref(scheduler)
        del scheduler
        assert scheduler_ref() is None, "the scheduler is held by a cycle (its TaskGroup?)"
        with pytest.raises(RuntimeError):
            group.submit(abs, -1)  # the freed scheduler's finalizer shut its core down
        join_threads_named("faults-abandoned-scheduler-")


def test_leased_executor_dropped_with_queued_work_still_runs_it_and_is_then_freed() -> None:
    with collector_disabled():
        gate = threading.Event()
        ran: list[int] = []
        executor = LeasedExecutor(1, thread_name_prefix="faults-dropped-worker")
        dispatcher_name = f"{executor._name}-dispatcher"

        def gated(i: int) -> int:
            assert gate.wait(GENEROUS)
            ran.append(i)
            return i

        with opened_on_exit(gate):
            futures = [executor.submit(gated, i) for i in range(4)]  # one runs, three wait in the queue
            executor_ref = weakref.ref(executor)
            del executor
            # Work is unfinished (the first task is parked on the gate): the dispatcher pins the executor.
            assert executor_ref() is not None, "the executor was freed while its work was unfinished"
            assert not any(future.done() for future in futures)
            gate.set()
            resolve_all(futures)
        assert [future.result() for future in futures] == [0, 1, 2, 3]
        assert ran == [0, 1, 2, 3]
        # With its work done the dispatcher drops the pin, the executor is freed, and its finalizer
        # ends the dispatcher; once that thread has exited nothing can hold the executor any more.
        join_threads_named(dispatcher_name, "faults-dropped-worker")
        assert executor_ref() is None


# -- 6. LeasedExecutor is a ThreadPoolExecutor -----------------------------------------------------


def test_leased_executor_is_a_thread_pool_executor_with_max_workers() -> None:
    executor = LeasedExecutor(4)
    try:
        assert isinstance(executor, ThreadPoolExecutor)
        assert executor._max_workers == 4
    finally:
        executor.shutdown()

    default = LeasedExecutor(2, thread_name_prefix="faults-asyncio-worker")
    loop = asyncio.new_event_loop()
    try:
        loop.set_default_executor(default)  # TypeError unless it is a ThreadPoolExecutor
        assert loop.run_until_complete(loop.run_in_executor(None, sum, [1, 2])) == 3
    finally:
        loop.close()  # shuts the default executor down without waiting
        default.shutdown()


# -- 7. the policy decision travels in the selection ---------------------------------------------


def _controller_and_queue(policy: CountingPolicy) -> tuple[TaskAdmissionController, FairTaskQueue]:
    return TaskAdmissionController(TaskAdmissionConfig(submission_capacity=4), policy), FairTaskQueue()


def _task(task_id: str, group: Hashable = "g") -> SchedulableTask:
    return SchedulableTask(task_id, None, TaskGroupSpec(group, admitted_limit=4))


def test_policy_decision_travels_in_the_selection() -> None:
    policy = CountingPolicy()
    controller, queue = _controller_and_queue(policy)
    item = _task("t1")
    queue.enqueue([item])
    selection = queue.select_next(controller.approve)
    assert selection is not None and selection.item is item
    assert policy.evaluations["t1"] == 1
    lease = controller.try_acquire(selection.item, selection.view, selection.decision)
    assert isinstance(lease, TaskAdmissionLease)
    assert policy.evaluations["t1"] == 1, "try_acquire evaluated the policy again despite a current approval"
    assert policy.acquired_with["t1"] is policy.returned["t1"][0]
    assert queue.commit(selection) is item
    assert controller.release(lease).released


@pytest.mark.parametrize("change", ["another_lease_acquired", "another_lease_released"])
def test_policy_decision_in_the_selection_is_reevaluated_when_the_controller_state_changed_meanwhile(change: str) -> None:
    policy = CountingPolicy()
    controller, queue = _controller_and_queue(policy)
    other = _task("other", "h")
    other_lease = None
    if change == "another_lease_released":
        other_lease = controller.try_acquire(other, queue.view())
        assert isinstance(other_lease, TaskAdmissionLease)
    item = _task("t1")
    queue.enqueue([item])
    selection = queue.select_next(controller.approve)
    assert selection is not None and selection.item is item
    assert policy.evaluations["t1"] == 1
    if other_lease is None:
        assert isinstance(controller.try_acquire(other, queue.view()), TaskAdmissionLease)
    else:
        assert controller.release(other_lease).released
    lease = controller.try_acquire(selection.item, selection.view, selection.decision)
    assert isinstance(lease, TaskAdmissionLease)
    assert policy.evaluations["t1"] == 2, "a stale approval was trusted after the controller state changed"
    assert policy.acquired_with["t1"] is policy.returned["t1"][1]


# -- 8. outcome classification -------------------------------------------------------------------

RETRY_VALUE_ERRORS = RetryPolicy(max_attempts=3, retry_on=(ValueError,), backoff_initial=0.0, jitter=0.0)


@pytest.mark.parametrize(
    ("started", "error", "timed_out", "cancel_requested", "retry", "attempt", "expected"),
    [
        pytest.param(True, None, False, False, NO_RETRY, 1, "succeeded", id="succeeded"),
        pytest.param(False, None, False, False, NO_RETRY, 1, "cancelled", id="cancelled-unstarted"),
        pytest.param(False, RuntimeError("pool broken"), False, False, NO_RETRY, 1, "failed", id="executor-failure-unstarted"),
        pytest.param(True, CancelledError(), False, True, NO_RETRY, 1, "cancelled", id="cancelled-error-with-cancel-requested"),
        pytest.param(True, CancelledError(), False, False, NO_RETRY, 1, "failed", id="cancelled-error-without-cancel-request"),
        pytest.param(True, ValueError("flaky"), False, False, RETRY_VALUE_ERRORS, 1, "retry", id="retryable-before-last-attempt"),
        pytest.param(True, ValueError("flaky"), False, False, RETRY_VALUE_ERRORS, 2, "retry", id="retryable-second-attempt"),
        pytest.param(True, ValueError("flaky"), False, False, RETRY_VALUE_ERRORS, 3, "failed", id="retryable-at-last-attempt"),
        pytest.param(True, KeyError("other"), False, False, RETRY_VALUE_ERRORS, 1, "failed", id="not-retryable-type"),
        pytest.param(True, ValueError("flaky"), False, True, RETRY_VALUE_ERRORS, 1, "failed", id="retry-suppressed-by-cancel"),
        pytest.param(True, ValueError("flaky"), True, True, RETRY_VALUE_ERRORS, 1, "timed_out", id="timed-out-wins-over-retry"),
        pytest.param(True, None, True, False, NO_RETRY, 1, "timed_out", id="timed-out-wins-over-success"),
        pytest.param(True, CancelledError(), True, True, NO_RETRY, 1, "timed_out", id="timed-out-wins-over-cancel"),
    ],
)
def test_outcome_classification(
    started: bool,
    error: BaseException | None,
    timed_out: bool,
    cancel_requested: bool,
    retry: RetryPolicy,
    attempt: int,
    expected: str,
) -> None:
    outcome = classify_outcome(
        started=started, error=error, timed_out=timed_out, cancel_requested=cancel_requested, retry=retry, attempt=attempt
    )
    assert outcome == expected


# -- numbers and arguments the core used to take (one issue, five faults) ---------------------------


def test_shutdown_with_a_nan_timeout_is_refused_instead_of_silently_cancelling_the_queued_work() -> None:
    started, gate = threading.Event(), threading.Event()
    with Scheduler(max_workers=1, name="fault-nan") as sched, opened_on_exit(gate):
        sched.submit(gate.wait, GENEROUS)
        queued = sched.submit(started.set)
        with pytest.raises(ValueError, match=r"^timeout must be a number >= 0, math.inf or None, got nan$"):
            sched.shutdown(timeout=math.nan)  # NaN passed `timeout < 0`: no deadline ever came, queued work was cancelled
        gate.set()
        assert queued.result(timeout=GENEROUS) is None and started.is_set()


def test_shutdown_with_an_infinite_timeout_waits_for_the_work_instead_of_raising_overflow_error_midway() -> None:
    with Scheduler(max_workers=1, name="fault-inf") as sched:
        futures = [sched.submit(pow, 2, n) for n in range(5)]
        report = sched.shutdown(timeout=math.inf)  # raised OverflowError after shutdown had begun
    assert report.clean and report.cancelled == 0, report
    assert [future.result(timeout=0) for future in futures] == [1, 2, 4, 8, 16]


def test_a_weight_of_1e_16_is_refused_and_no_accepted_weight_can_round_the_shares_of_others_away() -> None:
    """A weight of 1e-16 was accepted; once such a group had run, weights 1:3 got 1:1 for the rest of the run.
    Weights are now bounded, and virtual time is exact: after the smallest weight ran 10,000 tasks (virtual
    time 10**10, where a float's steps are 2e-6 apart), groups of the largest weights still split 1:3."""
    with pytest.raises(ValueError, match=r"^TaskGroupSpec\.weight must be a number from 1e-06 to 1e\+06, got 1e-16$"):
        TaskGroupSpec("tiny", weight=1e-16)
    order: list[Hashable] = []
    started, gate = threading.Event(), threading.Event()
    with Scheduler(max_workers=1, name="fault-weight") as sched, opened_on_exit(gate):
        tiny = sched.group("tiny", weight=MIN_WEIGHT)
        resolve_all([tiny.submit(int) for _ in range(10_000)])
        sched.submit(lambda: (started.set(), gate.wait(GENEROUS)))  # holds the one worker while both queue up
        assert started.wait(GENEROUS)
        light, heavy = sched.group("light", weight=MAX_WEIGHT / 3), sched.group("heavy", weight=MAX_WEIGHT)
        futures = [group.submit(order.append, group.key) for _ in range(40) for group in (light, heavy)]
        gate.set()
        resolve_all(futures)
    # One worker: the order they ran in is the order they were admitted in.
    assert Counter(order[:40]) == {"light": 10, "heavy": 30}, order[:40]


def test_a_lease_of_five_million_units_is_one_step_not_one_semaphore_acquire_per_unit() -> None:
    """resource_limits={"x": 5_000_000} with one task asking for all of it took one semaphore unit per loop pass
    under the controller lock: seconds during which snapshot() and every other task waited."""
    with counting_semaphores() as semaphores:
        sched = Scheduler(max_workers=2, resource_limits={"x": 5_000_000}, name="fault-units")
    with sched:
        big = sched.group("big", resources={"x": 5_000_000})
        assert [big.submit(pow, 2, n).result(timeout=GENEROUS) for n in range(3)] == [1, 2, 4]
        assert sched.snapshot().admission.resources_available["x"] == 5_000_000
    assert sum(semaphore.acquires for semaphore in semaphores) == 3  # one worker slot per lease


def test_a_policy_without_the_policy_methods_is_refused_at_construction_instead_of_stalling_every_task() -> None:
    """Scheduler(policy=object()) was accepted, and then every task stalled as policy_denial with a traceback."""
    with pytest.raises(TypeError, match=r"^policy must implement TaskAdmissionPolicy \(evaluate, on_acquire, on_release\); "):
        Scheduler(policy=object(), name="fault-policy")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^policy must implement TaskAdmissionPolicy .* lacks evaluate, on_acquire, on_release$"):
        LeasedExecutor(1, policy="drf")  # type: ignore[arg-type]
