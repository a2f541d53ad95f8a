"""One test per terminal path of a task (success, retryable and non-retryable failure, cancel while queued or while
running, shutdown, stale selection, spawn failure, task timeout); each checks the lease is released exactly once."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from concurrent.futures import CancelledError, Executor, Future, ThreadPoolExecutor, wait
from typing import Any

import pytest
from support import (
    GENEROUS,
    ParkingSink,
    PolicyStub,
    SignalingSink,
    blocking,
    check_lease_evidence,
    join_scheduler_threads,
    opened_on_exit,
    park_workers,
    raises_when_cancelled,
    resolve_all,
)

from threadsched import (
    AdmissionStalledError,
    MemoryEventSink,
    RetryPolicy,
    Scheduler,
    StrictFairPolicy,
    TaskTimeoutError,
    current_cancel_token,
)
from threadsched.core.admission import TaskAdmissionController
from threadsched.core.contracts import SchedulableTask, TaskGroupSpec
from threadsched.core.dispatcher import BlockedAdmission
from threadsched.core.emitter import EventEmitter
from threadsched.core.policy import ALLOW, PolicyDecision
from threadsched.core.queue import FairTaskQueue
from threadsched.core.values import (
    QueueView,
    TaskAdmissionBlockSummary,
    TaskAdmissionConfig,
    TaskAdmissionDenied,
    TaskAdmissionLease,
    TaskAdmissionView,
)


def _leases_of(sink: MemoryEventSink, task_id: str, kind: str = "task_lease_acquired") -> list[int]:
    return [event.lease_id for event in sink.events if event.kind == kind and event.task_id == task_id]  # type: ignore[misc]


# -- success --------------------------------------------------------------------------------------


def test_success_sets_result_and_releases_lease() -> None:
    sink = MemoryEventSink()
    with Scheduler(max_workers=2, events=sink, name="ok") as sched:
        future = sched.submit(lambda: 42)
        assert future.result(timeout=GENEROUS) == 42
        # the lease is returned before the future resolves
        assert sched.snapshot().admission.active_lease_count == 0
    counters = sched.snapshot().counters
    assert counters["completed"] == 1
    assert counters["submitted"] == 1
    assert counters["failed"] == counters["cancelled"] == counters["retried"] == 0
    by_lease = check_lease_evidence(sink.events)
    assert len(by_lease) == 1
    completed = [event for event in sink.events if event.kind == "task_completed"]
    assert [event.reason for event in completed] == ["succeeded"]


# -- retryable failure ----------------------------------------------------------------------------


def test_retryable_failure_retries_with_a_new_lease_per_attempt() -> None:
    sink = MemoryEventSink()
    attempts: list[int] = []

    def fails_twice() -> str:
        attempts.append(len(attempts) + 1)
        if len(attempts) <= 2:
            raise ValueError(f"attempt {len(attempts)}")
        return "third time lucky"

    with Scheduler(max_workers=2, events=sink, name="retry") as sched:
        group = sched.group("g", retry=RetryPolicy(max_attempts=3, retry_on=(ValueError,), backoff_initial=0))
        future = group.submit(fails_twice)
        assert future.result(timeout=GENEROUS) == "third time lucky"
    assert attempts == [1, 2, 3]
    counters = sched.snapshot().counters
    assert counters["retried"] == 2
    assert counters["completed"] == 1
    assert counters["failed"] == 0
    assert counters["submitted"] == 1
    by_lease = check_lease_evidence(sink.events)
    leases = _leases_of(sink, future.task_id)
    assert len(leases) == 3 and len(set(leases)) == 3
    assert set(by_lease) == set(leases)
    spawned = [event for event in sink.events if event.kind == "worker_spawned"]
    assert len({event.execution_id for event in spawned}) == 3
    assert [event.lease_id for event in spawned] == leases
    # each retry's lease is released before the next attempt's lease is acquired
    for earlier, later in itertools.pairwise(leases):
        released = by_lease[earlier]["task_lease_released"][0].sequence
        acquired = by_lease[later]["task_lease_acquired"][0].sequence
        assert released < acquired
    assert len([event for event in sink.events if event.kind == "retry_deferred"]) == 2


def test_retry_exhaustion_fails_with_the_last_error() -> None:
    errors: list[ValueError] = []

    def always_fails() -> None:
        error = ValueError(f"attempt {len(errors) + 1}")
        errors.append(error)
        raise error

    sink = MemoryEventSink()
    with Scheduler(max_workers=1, events=sink, name="exhaust") as sched:
        group = sched.group("g", retry=RetryPolicy(max_attempts=3, retry_on=(ValueError,), backoff_initial=0))
        future = group.submit(always_fails)
        resolve_all([future])
    assert len(errors) == 3
    assert future.exception() is errors[-1]
    counters = sched.snapshot().counters
    assert counters["retried"] == 2
    assert counters["failed"] == 1
    assert counters["completed"] == 0
    assert len(check_lease_evidence(sink.events)) == 3
    assert sched.snapshot().admission.active_lease_count == 0


def test_non_retryable_failure_fails_at_once() -> None:
    calls: list[int] = []

    def fatal() -> None:
        calls.append(1)
        raise KeyError("not retryable")

    sink = MemoryEventSink()
    with Scheduler(max_workers=1, events=sink, name="fatal") as sched:
        group = sched.group("g", retry=RetryPolicy(max_attempts=3, retry_on=(ValueError,), backoff_initial=0))
        future = group.submit(fatal)
        with pytest.raises(KeyError, match="not retryable"):
            future.result(timeout=GENEROUS)
        assert sched.snapshot().admission.active_lease_count == 0
    assert calls == [1]
    counters = sched.snapshot().counters
    assert counters["failed"] == 1
    assert counters["retried"] == 0
    assert len(check_lease_evidence(sink.events)) == 1
    completed = [event for event in sink.events if event.kind == "task_completed"]
    assert [event.reason for event in completed] == ["failed"]


def test_base_exception_from_task_fails_the_future_not_the_scheduler() -> None:
    class Custom(BaseException):
        pass

    def raise_base() -> None:
        raise Custom("boom")

    with Scheduler(max_workers=1, name="baseexc") as sched:
        future = sched.submit(raise_base)
        resolve_all([future])
        assert isinstance(future.exception(), Custom)
        assert sched.submit(lambda: "still alive").result(timeout=GENEROUS) == "still alive"


# -- cancel while queued --------------------------------------------------------------------------


def test_cancel_while_queued_never_leased_and_notifies_waiters() -> None:
    sink = SignalingSink()
    gate = threading.Event()
    with Scheduler(max_workers=2, events=sink, name="cq") as sched, opened_on_exit(gate):
        parked = park_workers(sched, 2, gate)
        ran = threading.Event()
        victim = sched.submit(ran.set)
        assert sink.wait_for_count("ready_enqueued", 1, task_id=victim.task_id)
        assert victim.cancel() is True
        done, not_done = wait([victim], timeout=0)  # already notified: no waiting at all
        assert victim in done and not not_done
        assert victim.cancelled()
        with pytest.raises(CancelledError):
            victim.result(timeout=0)
        assert sched.snapshot().queue.queued_total == 0
        gate.set()
        resolve_all(parked)
    assert not ran.is_set()
    assert _leases_of(sink, victim.task_id) == []
    assert not any(event.kind == "worker_spawned" and event.task_id == victim.task_id for event in sink.events)
    counters = sched.snapshot().counters
    assert counters["cancelled"] == 1
    assert counters["completed"] == 2
    check_lease_evidence(sink.events)


# -- cancel while running -------------------------------------------------------------------------


def test_cancel_while_running_sets_token_and_releases_lease_on_return() -> None:
    started = threading.Event()
    saw_cancel = threading.Event()
    finish = threading.Event()

    def cooperative() -> str:
        token = current_cancel_token()
        assert token is not None
        started.set()
        if token.wait(GENEROUS) and token.cancelled:
            saw_cancel.set()
        finish.wait(GENEROUS)
        return "returned normally"

    sink = MemoryEventSink()
    with Scheduler(max_workers=1, events=sink, name="cr") as sched:
        future = sched.submit(cooperative)
        assert started.wait(GENEROUS)
        assert future.running()
        assert future.cancel() is False  # like the stdlib: a running future cannot be cancelled
        assert future.cancel_token.cancelled
        assert saw_cancel.wait(GENEROUS)
        assert not future.done()
        # still running: the lease is held until the function really returns
        assert sched.snapshot().admission.active_lease_count == 1
        finish.set()
        assert future.result(timeout=GENEROUS) == "returned normally"
        assert sched.snapshot().admission.active_lease_count == 0
    assert not future.cancelled()
    assert len(check_lease_evidence(sink.events)) == 1


def test_cancel_while_running_then_cancelled_error_ends_cancelled() -> None:
    started = threading.Event()

    sink = MemoryEventSink()
    with Scheduler(max_workers=1, events=sink, name="crx") as sched:
        future = sched.submit(raises_when_cancelled(started))
        assert started.wait(GENEROUS)
        assert future.cancel() is False
        resolve_all([future])
        with pytest.raises(CancelledError):
            future.result(timeout=0)
        assert isinstance(future.exception(timeout=0), CancelledError)
        assert sched.snapshot().admission.active_lease_count == 0
    counters = sched.snapshot().counters
    assert counters["cancelled"] == 1
    assert counters["failed"] == 0
    assert len(check_lease_evidence(sink.events)) == 1
    completed = [event for event in sink.events if event.kind == "task_completed"]
    assert [event.reason for event in completed] == ["cancelled"]


def test_cancel_during_retry_backoff_resolves_without_waiting_out_the_backoff() -> None:
    """A task waiting its retry back-off runs no function and holds no lease; cancelling it
    (``cancel()`` returns False: the future is RUNNING) must still resolve it promptly."""
    sink = SignalingSink()
    attempts: list[int] = []

    def fails() -> None:
        attempts.append(1)
        raise ValueError("retry later")

    sched = Scheduler(max_workers=1, events=sink, name="crb")
    try:
        group = sched.group(
            "g", retry=RetryPolicy(max_attempts=2, retry_on=(ValueError,), backoff_initial=45.0, backoff_max=45.0, jitter=0)
        )
        future = group.submit(fails)
        assert sink.wait_for_count("retry_deferred", 1)
        assert sched.snapshot().admission.active_lease_count == 0
        future.cancel()
        done, _ = wait([future], timeout=5.0)  # far less than the 45 s back-off
        assert future in done, "a cancelled task waiting its back-off stays unresolved until the back-off ends"
        with pytest.raises(CancelledError):
            future.result(timeout=0)
        assert attempts == [1]
    finally:
        sched.shutdown(wait=True, cancel_futures=True)


def test_cancel_of_retry_attempt_waiting_in_the_queue_never_starts_it() -> None:
    """After its back-off a retry re-enters the ready queue; if the pool is full it waits there.
    Cancelling it then must resolve the future without starting another attempt (no lease)."""
    sink = SignalingSink()
    attempts: list[int] = []
    first_attempt_started = threading.Event()
    may_fail = threading.Event()
    gate = threading.Event()
    blocker_started = threading.Event()

    def fails_first() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            first_attempt_started.set()
            may_fail.wait(GENEROUS)
            raise ValueError("retry me")
        return "second attempt ran"

    blocker = blocking(blocker_started, gate)
    sched = Scheduler(max_workers=1, events=sink, name="crq")
    try:
        group = sched.group("g", retry=RetryPolicy(max_attempts=2, retry_on=(ValueError,), backoff_initial=0.01, jitter=0))
        future = group.submit(fails_first)
        assert first_attempt_started.wait(GENEROUS)
        # queued before the first attempt fails; by virtual time it goes before the retry either way
        parked = sched.submit(blocker)
        assert sink.wait_for_count("ready_enqueued", 1, task_id=parked.task_id)
        may_fail.set()
        assert blocker_started.wait(GENEROUS)
        # the retry came due and waits in the queue behind the blocker
        assert sink.wait_for(
            lambda events: any(e.kind == "ready_enqueued" and e.task_id == future.task_id and e.reason == "retry" for e in events)
        )
        assert sched.snapshot().queue.queued_total == 1
        future.cancel()
        done, _ = wait([future], timeout=5.0)
        assert future in done, "a cancelled retry attempt waiting in the queue stays unresolved until it runs"
        with pytest.raises(CancelledError):
            future.result(timeout=0)
        assert sched.snapshot().queue.queued_total == 0
    finally:
        may_fail.set()
        gate.set()
        sched.shutdown(wait=True)
    assert parked.result(timeout=0) is None
    assert attempts == [1], "a cancelled task started another attempt"
    assert len(_leases_of(sink, future.task_id)) == 1
    check_lease_evidence(sink.events)


# -- shutdown -------------------------------------------------------------------------------------


def test_shutdown_without_cancel_runs_queued_work_to_completion() -> None:
    sched = Scheduler(max_workers=1, name="sd1")
    gate = threading.Event()
    try:
        parked = park_workers(sched, 1, gate)
        queued = [sched.submit(int, i) for i in range(5)]
        first = sched.shutdown(wait=False)
        assert first.cancelled == 0
        with pytest.raises(RuntimeError):
            sched.submit(int, 99)
        gate.set()
        report = sched.shutdown(wait=True)
        assert report.clean
        assert report.cancelled == 0
        assert report.overdue == ()
        assert report.active_leases == 0
        assert [future.result(timeout=0) for future in queued] == list(range(5))
        assert parked[0].result(timeout=0) == "parked"
        join_scheduler_threads("sd1")
    finally:
        gate.set()
        sched.shutdown(wait=True, cancel_futures=True)


def test_shutdown_wait_true_blocks_until_queued_work_ran() -> None:
    sched = Scheduler(max_workers=1, name="sd2")
    gate = threading.Event()
    try:
        parked = park_workers(sched, 1, gate)
        queued = [sched.submit(int, i) for i in range(5)]
        reports: list[Any] = []
        shutter = threading.Thread(target=lambda: reports.append(sched.shutdown(wait=True)), name="test-shutter")
        shutter.start()
        # wait (on a condition, not a duration) until shutdown has begun: new submissions are refused;
        # probes accepted before that are ordinary queued work and must run too
        probes: list[Future[Any]] = []
        pace = threading.Event()
        while True:
            try:
                probes.append(sched.submit(int, -1))
            except RuntimeError:
                break
            pace.wait(0.001)
        assert not any(future.done() for future in queued + probes)
        assert shutter.is_alive()  # waiting for the parked worker and the queued work
        gate.set()
        shutter.join(GENEROUS)
        assert not shutter.is_alive()
        (report,) = reports
        assert report.clean
        assert report.cancelled == 0
        assert [future.result(timeout=0) for future in queued] == list(range(5))
        assert all(future.result(timeout=0) == -1 for future in probes)
        assert parked[0].done()
        join_scheduler_threads("sd2")
    finally:
        gate.set()
        sched.shutdown(wait=True, cancel_futures=True)


def test_shutdown_twice_and_shutdown_without_wait_leave_no_threads() -> None:
    sched = Scheduler(max_workers=2, name="sd5")
    assert sched.submit(int, 7).result(timeout=GENEROUS) == 7
    first = sched.shutdown(wait=False)
    assert first.cancelled == 0 and first.active_leases == 0
    second = sched.shutdown(wait=True)
    assert second.clean and second.cancelled == 0
    third = sched.shutdown()
    assert third.clean
    join_scheduler_threads("sd5")

    idle = Scheduler(max_workers=2, name="sd6")
    assert idle.shutdown(wait=False).cancelled == 0
    join_scheduler_threads("sd6")  # nothing was pending: the dispatcher and the pool end on their own


def test_shutdown_cancel_futures_cancels_queued_work_and_notifies() -> None:
    sink = SignalingSink()
    sched = Scheduler(max_workers=2, events=sink, name="sd3")
    gate = threading.Event()
    try:
        parked = park_workers(sched, 2, gate)
        queued = [sched.group("q").submit(int, i) for i in range(6)]
        for future in queued:
            assert sink.wait_for_count("ready_enqueued", 1, task_id=future.task_id)
        report = sched.shutdown(wait=False, cancel_futures=True)
        assert report.cancelled == 6
        _done, not_done = wait(queued, timeout=0)  # notified at once
        assert not not_done
        assert all(future.cancelled() for future in queued)
        gate.set()
        final = sched.shutdown(wait=True)
        assert final.clean
        assert [future.result(timeout=0) for future in parked] == ["parked", "parked"]
        counters = sched.snapshot().counters
        assert counters["cancelled"] == 6
        assert counters["completed"] == 2
        assert counters["submitted"] == 8
        assert all(_leases_of(sink, future.task_id) == [] for future in queued)
        check_lease_evidence(sink.events)
        join_scheduler_threads("sd3")
    finally:
        gate.set()
        sched.shutdown(wait=True, cancel_futures=True)


def test_shutdown_wait_and_cancel_futures_from_another_thread() -> None:
    sched = Scheduler(max_workers=1, name="sd4")
    gate = threading.Event()
    try:
        parked = park_workers(sched, 1, gate)
        queued = [sched.submit(int, i) for i in range(4)]
        reports: list[Any] = []
        shutter = threading.Thread(
            target=lambda: reports.append(sched.shutdown(wait=True, cancel_futures=True)), name="test-shutter"
        )
        shutter.start()
        resolve_all(queued)  # cancelled while shutdown waits for the parked worker
        assert all(future.cancelled() for future in queued)
        gate.set()
        shutter.join(GENEROUS)
        assert not shutter.is_alive()
        (report,) = reports
        assert report.clean
        assert report.cancelled == 4
        assert parked[0].result(timeout=0) == "parked"
        join_scheduler_threads("sd4")
    finally:
        gate.set()
        sched.shutdown(wait=True, cancel_futures=True)


# -- stale selection ------------------------------------------------------------------------------


class ReenqueueOnFirstLook(StrictFairPolicy):
    """Test policy: the first time it sees the victim group's head, it takes the task out of the
    queue and puts it back (a readiness re-delivery), so the dispatcher's selection goes stale."""

    def __init__(self) -> None:
        self.queue: FairTaskQueue | None = None
        self.fired = False

    def evaluate(self, item: SchedulableTask, queue_view: QueueView, admission_view: TaskAdmissionView) -> PolicyDecision:
        if item.group.key == "victim" and not self.fired and self.queue is not None:
            self.fired = True
            assert self.queue.discard(item.task_id)
            assert self.queue.enqueue([item]) == (item.task_id,)
        return super().evaluate(item, queue_view, admission_view)


def test_stale_selection_releases_before_spawn_and_task_still_runs() -> None:
    policy = ReenqueueOnFirstLook()
    sink = MemoryEventSink()
    with Scheduler(max_workers=2, policy=policy, events=sink, name="stale1") as sched:
        policy.queue = sched._queue
        future = sched.group("victim").submit(lambda: "ran once")
        assert future.result(timeout=GENEROUS) == "ran once"
    assert policy.fired
    counters = sched.snapshot().counters
    assert counters["stale_selections"] == 1
    assert counters["completed"] == 1
    events = sink.events
    by_lease = check_lease_evidence(events)
    leases = _leases_of(sink, future.task_id)
    assert len(leases) == 2
    stale_lease, good_lease = leases
    assert "worker_spawned" not in by_lease[stale_lease]
    assert by_lease[stale_lease]["task_lease_released"][0].reason == "stale_selection"
    assert [event.lease_id for event in events if event.kind == "stale_selection"] == [stale_lease]
    assert len(by_lease[good_lease]["worker_spawned"]) == 1
    assert sched.snapshot().admission.active_lease_count == 0


class CancelOnFirstLook(StrictFairPolicy):
    """Test policy: cancels the victim's future while it is being selected (cancel races select)."""

    def __init__(self) -> None:
        self.victims: dict[str, Future[Any]] = {}
        self.fired = False

    def evaluate(self, item: SchedulableTask, queue_view: QueueView, admission_view: TaskAdmissionView) -> PolicyDecision:
        victim = self.victims.get(item.task_id)
        if victim is not None and not self.fired:
            self.fired = True
            assert victim.cancel()
        return super().evaluate(item, queue_view, admission_view)


def test_stale_selection_when_cancel_races_the_selection() -> None:
    policy = CancelOnFirstLook()
    sink = MemoryEventSink()
    ran = threading.Event()
    gate = threading.Event()
    with Scheduler(max_workers=1, policy=policy, events=sink, name="stale2") as sched, opened_on_exit(gate):
        parked = park_workers(sched, 1, gate)  # no capacity: the victim cannot be looked at yet
        victim = sched.submit(ran.set)
        policy.victims[victim.task_id] = victim
        gate.set()
        resolve_all([victim, *parked])
        assert victim.cancelled()
        assert sched.submit(lambda: "after").result(timeout=GENEROUS) == "after"
    assert policy.fired
    assert not ran.is_set()
    counters = sched.snapshot().counters
    assert counters["stale_selections"] == 1
    assert counters["cancelled"] == 1
    by_lease = check_lease_evidence(sink.events)
    (lease,) = _leases_of(sink, victim.task_id)
    assert "worker_spawned" not in by_lease[lease]
    assert by_lease[lease]["task_lease_released"][0].reason == "stale_selection"
    assert sched.snapshot().admission.active_lease_count == 0


def test_stale_selection_at_queue_and_controller_level() -> None:
    queue = FairTaskQueue()
    controller = TaskAdmissionController()
    spec = TaskGroupSpec("g")
    item = SchedulableTask("t1", None, spec)
    queue.enqueue([item])
    selection = queue.select_next(controller.is_eligible)
    assert selection is not None and selection.item is item
    lease = controller.try_acquire(item, selection.view)
    assert isinstance(lease, TaskAdmissionLease)
    assert queue.discard("t1")
    assert queue.commit(selection) is None  # stale
    assert controller.release(lease).released
    assert controller.view().active_lease_count == 0
    assert controller.release(lease).reason == "duplicate"


def test_no_stale_selections_in_a_normal_run() -> None:
    with Scheduler(max_workers=4, name="stale3") as sched:
        groups = [sched.group(f"g{i}", weight=1 + i % 3) for i in range(5)]
        futures = [groups[i % 5].submit(int, i) for i in range(200)]
        resolve_all(futures)
    assert sched.snapshot().counters["stale_selections"] == 0


# -- spawn failure --------------------------------------------------------------------------------


class FlakyExecutor(ThreadPoolExecutor):
    """A pool whose ``submit`` refuses the first ``failures`` calls, then recovers."""

    def __init__(self, failures: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.failures = failures

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("executor refused the job")
        return super().submit(fn, *args, **kwargs)


def test_spawn_failure_fails_the_future_and_releases_the_lease() -> None:
    executor = FlakyExecutor(1, max_workers=2, thread_name_prefix="flaky-worker")
    sink = MemoryEventSink()
    ran = threading.Event()
    try:
        with Scheduler(executor=executor, events=sink, name="spawn") as sched:
            assert sched.submit_capacity == 2
            failed = sched.submit(ran.set)
            with pytest.raises(RuntimeError, match="executor refused the job"):
                failed.result(timeout=GENEROUS)
            assert sched.snapshot().admission.active_lease_count == 0
            later = sched.submit(lambda: "recovered")
            assert later.result(timeout=GENEROUS) == "recovered"
    finally:
        executor.shutdown(wait=True)
    assert not ran.is_set()
    counters = sched.snapshot().counters
    assert counters["spawn_failures"] == 1
    assert counters["failed"] == 1
    assert counters["completed"] == 1
    events = sink.events
    spawn_failed = [event for event in events if event.kind == "worker_spawn_failed"]
    assert [event.task_id for event in spawn_failed] == [failed.task_id]
    assert spawn_failed[0].reason == "RuntimeError"
    by_lease = check_lease_evidence(events)
    (lease,) = _leases_of(sink, failed.task_id)
    assert "worker_spawned" not in by_lease[lease]
    assert len(by_lease[lease]["task_lease_released"]) == 1


class InlineExecutor(Executor):
    """Runs each job synchronously inside ``submit``: its done-callbacks then run inline on the
    dispatcher thread (allowed by the contract)."""

    def __init__(self) -> None:
        self._max_workers = 2

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:
            future.set_exception(error)
        return future


def test_executor_whose_done_callbacks_run_inline_in_the_dispatcher() -> None:
    sink = MemoryEventSink()
    threads: set[str] = set()

    def work(i: int) -> int:
        threads.add(threading.current_thread().name)
        if i % 4 == 0:
            raise KeyError(i)
        return i

    with Scheduler(executor=InlineExecutor(), events=sink, name="inline") as sched:
        group = sched.group("g", retry=RetryPolicy(max_attempts=2, retry_on=(ValueError,), backoff_initial=0))
        futures = [group.submit(work, i) for i in range(12)]
        resolve_all(futures)
        for i, future in enumerate(futures):
            if i % 4 == 0:
                assert isinstance(future.exception(timeout=0), KeyError)
            else:
                assert future.result(timeout=0) == i
    assert threads == {"inline-dispatcher"}
    assert len(check_lease_evidence(sink.events)) == 12
    snapshot = sched.snapshot()
    assert snapshot.admission.active_lease_count == 0
    assert snapshot.counters["hidden_waiters"] == 0


# -- task timeout ---------------------------------------------------------------------------------


def test_task_timeout_fails_future_keeps_lease_until_thread_returns() -> None:
    gate = threading.Event()
    started = threading.Event()

    stuck = blocking(started, gate, "too late")
    sink = SignalingSink()
    with Scheduler(max_workers=2, events=sink, name="tmo") as sched:
        group = sched.group("slow", timeout=0.05)
        future = group.submit(stuck)
        try:
            with pytest.raises(TaskTimeoutError) as caught:
                future.result(timeout=GENEROUS)
            assert isinstance(caught.value, TimeoutError)
            assert caught.value.task_id == future.task_id
            snapshot = sched.snapshot()
            assert snapshot.overdue == (future.task_id,)
            assert snapshot.admission.active_lease_count == 1
            assert snapshot.running == 1
            assert snapshot.counters["timed_out"] == 1
            assert started.is_set()
        finally:
            gate.set()
        assert sink.wait_for_count("task_lease_released", 1, task_id=future.task_id)
        after = sched.snapshot()
        assert after.overdue == ()
        assert after.admission.active_lease_count == 0
        assert after.running == 0
        # the late return does not change the outcome, nor report a second completion
        assert isinstance(future.exception(timeout=0), TaskTimeoutError)
        completed = [event for event in sink.events if event.kind == "task_completed" and event.task_id == future.task_id]
        assert [event.reason for event in completed] == ["timed_out"]
    counters = sched.snapshot().counters
    assert counters["timed_out"] == 1
    assert counters["completed"] == 0
    assert counters["submitted"] == 1
    assert len(check_lease_evidence(sink.events)) == 1


def test_task_timeout_capacity_not_over_admitted_while_overdue() -> None:
    gate = threading.Event()
    second_ran = threading.Event()
    sink = SignalingSink()
    with Scheduler(max_workers=1, events=sink, name="tmo2") as sched:
        stuck = sched.group("slow", timeout=0.05).submit(gate.wait, GENEROUS)
        try:
            with pytest.raises(TaskTimeoutError):
                stuck.result(timeout=GENEROUS)
            waiting = sched.submit(second_ran.set)
            assert sink.wait_for_count("ready_enqueued", 1, task_id=waiting.task_id)
            # the overdue thread still holds the only slot
            assert not second_ran.is_set()
            assert sched.snapshot().queue.queued_total == 1
        finally:
            gate.set()
        resolve_all([waiting])
        assert second_ran.is_set()


def test_shutdown_timeout_reports_overdue_worker_instead_of_hanging() -> None:
    gate = threading.Event()
    sched = Scheduler(max_workers=1, name="tmo3")
    try:
        future = sched.group("slow", timeout=0.05).submit(gate.wait, GENEROUS)
        with pytest.raises(TaskTimeoutError):
            future.result(timeout=GENEROUS)
        behind = sched.submit(int, 1)  # queued behind the overdue worker: cancelled by the timed-out shutdown
        report = sched.shutdown(timeout=0.2)
        assert report.clean is False
        assert report.overdue == (future.task_id,)
        assert report.still_running == (future.task_id,)  # overdue, and still running: it holds its lease
        assert report.active_leases == 1
        assert report.cancelled == 1
        resolve_all([behind])
        assert behind.cancelled()
    finally:
        gate.set()
    # once the overdue function returns, every scheduler thread ends (also checked by conftest)
    join_scheduler_threads("tmo3")
    assert sched.snapshot().admission.active_lease_count == 0
    assert sched.snapshot().overdue == ()


# -- admission stalled ----------------------------------------------------------------------------


class DenyEverything(PolicyStub):
    def evaluate(self, item: SchedulableTask, queue_view: QueueView, admission_view: TaskAdmissionView) -> PolicyDecision:
        return PolicyDecision(allowed=False, reason="policy_denial", diagnostics={"why": "test"})


def test_never_admissible_work_fails_with_admission_stalled_error() -> None:
    ran = threading.Event()
    sink = MemoryEventSink()
    with Scheduler(max_workers=2, policy=DenyEverything(), events=sink, name="stall") as sched:
        future = sched.group("g").submit(ran.set)
        resolve_all([future])
        error = future.exception(timeout=0)
        assert isinstance(error, AdmissionStalledError)
        assert isinstance(error, RuntimeError)
        assert isinstance(error.summary, TaskAdmissionBlockSummary)
        assert error.summary.blocked_groups == {"g": "policy_denial"}
        assert error.summary.queued_total == 1
        assert error.summary.active_lease_count == 0
        assert "policy_denial" in str(error)
        snapshot = sched.snapshot()
        assert snapshot.queue.queued_total == 0
        assert snapshot.admission.active_lease_count == 0
        assert snapshot.counters["failed"] == 1
        # later work is diagnosed the same way: the scheduler never hangs
        again = sched.submit(ran.set)
        resolve_all([again])
        assert isinstance(again.exception(timeout=0), AdmissionStalledError)
    assert not ran.is_set()
    assert not any(event.kind == "task_lease_acquired" for event in sink.events)
    assert sched.snapshot().counters["submitted"] == 2


class _OpensLaterPolicy(StrictFairPolicy):
    """Denies group "later" until a moment shortly after the policy was built, naming that moment."""

    def __init__(self, delay: float) -> None:
        import time

        self._clock = time.monotonic
        self.opens_at = time.monotonic() + delay

    def evaluate(self, item: Any, queue_view: Any, admission_view: Any) -> PolicyDecision:
        if item.group.key == "later" and self._clock() < self.opens_at:
            return PolicyDecision(allowed=False, reason="rate", available_after=self.opens_at)
        return super().evaluate(item, queue_view, admission_view)


def test_policy_available_after_wakes_the_dispatcher_while_other_work_runs() -> None:
    """No lost wake-up: the only thing that can unblock "later" is the clock. The blocker keeps a
    lease until "later" has run, so without a deadline wake-up both would wait forever."""
    later_ran = threading.Event()
    with Scheduler(max_workers=2, policy=_OpensLaterPolicy(delay=0.05), name="late") as sched:
        blocker = sched.submit(lambda: later_ran.wait(GENEROUS))
        later = sched.group("later").submit(later_ran.set)
        assert later.result(timeout=GENEROUS) is None
        assert blocker.result(timeout=GENEROUS) is True


# -- the lock-free submit hand-off ----------------------------------------------------------------


class _ShutdownDuringAppend(list[Callable[[], None]]):
    """Runs each hook once, right after an inbox append: the window between a producer's append and its
    second look at the shutdown flag, opened deterministically."""

    def wrap(self, core: Any) -> None:
        inbox, hooks = core._inbox, self

        class Inbox(type(inbox)):  # type: ignore[misc]
            def append(self, record: Any) -> None:
                super().append(record)
                if hooks:
                    hooks.pop(0)()

        core._inbox = Inbox(inbox)


def test_submit_racing_shutdown_is_refused_and_leaves_nothing_behind() -> None:
    scheduler = Scheduler(max_workers=2)
    first = scheduler.submit(lambda: 1)
    assert first.result(timeout=GENEROUS) == 1
    core = scheduler._core
    hooks = _ShutdownDuringAppend([lambda: core.begin_shutdown(False)])
    hooks.wrap(core)
    with pytest.raises(RuntimeError, match="after shutdown"):
        scheduler.submit(lambda: 2)
    report = scheduler.shutdown(wait=True)
    assert report.clean and not core._inbox
    assert scheduler.snapshot().counters["submitted"] == 1


def test_submit_racing_shutdown_after_a_drain_took_the_task_runs_it() -> None:
    scheduler = Scheduler(max_workers=2)
    assert scheduler.submit(lambda: 1).result(timeout=GENEROUS) == 1
    core = scheduler._core

    def drain_then_shut_down() -> None:
        core._drain_inbox()  # the task is in the queue now, as if the dispatcher had been quicker
        core.begin_shutdown(False)

    _ShutdownDuringAppend([drain_then_shut_down]).wrap(core)
    late = scheduler.submit(lambda: 2)  # nothing to withdraw: it is accepted and runs before shutdown ends
    report = scheduler.shutdown(wait=True)
    assert late.result(timeout=GENEROUS) == 2
    assert report.clean and scheduler.snapshot().counters["submitted"] == 2


def _producers_racing_shutdown() -> None:
    scheduler = Scheduler(max_workers=4)
    accepted: list[Future[Any]] = []
    lock = threading.Lock()
    go = threading.Barrier(5, timeout=GENEROUS)

    def produce() -> None:
        go.wait()
        for index in range(200):
            try:
                future = scheduler.submit(int, index)
            except RuntimeError:
                return
            with lock:
                accepted.append(future)

    producers = [threading.Thread(target=produce) for _ in range(4)]
    for producer in producers:
        producer.start()
    go.wait()
    report = scheduler.shutdown(wait=True)
    for producer in producers:
        producer.join(GENEROUS)
    resolve_all(accepted)
    assert [future.exception() for future in accepted] == [None] * len(accepted)
    assert report.clean
    assert scheduler.snapshot().counters["submitted"] == len(accepted)


def test_many_producers_racing_shutdown_lose_no_future() -> None:
    """Every submit either raises or returns a future that resolves; submitted counts exactly the accepted."""
    for _ in range(20):
        _producers_racing_shutdown()


def test_batch_leases_are_timed_when_taken_and_enqueued_tasks_when_they_became_ready() -> None:
    sink = ParkingSink()  # holds the dispatcher at the first spawn, so the next 20 tasks reach it in one batch
    with Scheduler(max_workers=4, events=sink) as scheduler:
        futures = [scheduler.submit(int, 0)]
        assert sink.parked.wait(GENEROUS)
        futures += [scheduler.submit(int, index) for index in range(1, 21)]
        sink.unpark.set()
        resolve_all(futures)
    by_task: dict[str, dict[str, float]] = {}
    for event in sink.events:
        if event.task_id is not None:
            by_task.setdefault(event.task_id, {})[event.kind] = event.captured_at
    for times in by_task.values():
        assert times["ready_enqueued"] <= times["selected"] <= times["task_lease_acquired"] <= times["worker_spawned"]
    # a lease taken in a batch carries the time it was taken: before the spawn of an earlier task of its
    # batch, although its event was emitted after that spawn's
    spawned_before = [
        later.captured_at < earlier.captured_at
        for earlier, later in itertools.pairwise(e for e in sink.events if e.kind in ("worker_spawned", "task_lease_acquired"))
        if earlier.kind == "worker_spawned" and later.kind == "task_lease_acquired"
    ]
    assert any(spawned_before)


# -- BlockedAdmission: one admission_blocked event per blocked episode, denials reported with their retry
# time, group caps named, and a stall only when nothing anywhere can change what is eligible.

LATER = 1_000_000.0


class DenyByGroup(PolicyStub):
    """Denies group "capped" with ``group_cap`` and group "later" until ``LATER``; allows the rest."""

    def evaluate(self, item: SchedulableTask, queue_view: QueueView, admission_view: TaskAdmissionView) -> PolicyDecision:
        if item.group.key == "capped":
            return PolicyDecision(False, "group_cap")
        if item.group.key == "later":
            return PolicyDecision(False, "policy_denial", available_after=LATER)
        return ALLOW


def build(*groups: str) -> tuple[BlockedAdmission, MemoryEventSink, TaskAdmissionController, FairTaskQueue]:
    sink = MemoryEventSink()
    queue = FairTaskQueue()
    controller = TaskAdmissionController(TaskAdmissionConfig(submission_capacity=2), DenyByGroup())
    queue.enqueue([SchedulableTask(f"{key}-1", None, TaskGroupSpec(key)) for key in groups])
    return BlockedAdmission(queue, controller, EventEmitter(sink, "run-1")), sink, controller, queue


def kinds(sink: MemoryEventSink) -> list[str]:
    return [event.kind for event in sink.events]


def test_one_admission_blocked_event_per_episode_until_a_task_is_admitted() -> None:
    blocking, sink, _, _ = build("capped")
    blocking.no_capacity()
    blocking.no_capacity()
    blocking.nothing_eligible(work_elsewhere=True)
    assert kinds(sink) == ["admission_blocked"]
    blocking.admitted()
    blocking.no_capacity()
    assert kinds(sink) == ["admission_blocked", "admission_blocked"]
    assert [event.reason for event in sink.events] == ["no_capacity", "no_capacity"]


def test_nothing_eligible_names_the_capped_groups_and_is_a_stall_only_with_no_work_elsewhere() -> None:
    blocking, sink, _, _ = build("capped")
    summary, stalled = blocking.nothing_eligible(work_elsewhere=True)
    assert dict(summary.blocked_groups) == {"capped": "group_cap"}
    assert stalled is False
    assert kinds(sink) == ["admission_blocked", "group_capped"]
    assert sink.of_kind("group_capped")[0].group == "capped"
    _, stalled = blocking.nothing_eligible(work_elsewhere=False)
    assert stalled is True
    assert kinds(sink) == ["admission_blocked", "group_capped"], "a second explanation in one episode emits nothing"


def test_a_denial_with_a_retry_time_is_not_a_stall_and_reports_that_time() -> None:
    blocking, _, _, _ = build("later")
    summary, stalled = blocking.nothing_eligible(work_elsewhere=False)
    assert summary.earliest_available_after == LATER
    assert stalled is False


def test_an_eligible_group_is_never_a_stall() -> None:
    blocking, _, _, _ = build("capped", "free")
    summary, stalled = blocking.nothing_eligible(work_elsewhere=False)
    assert "free" in summary.eligible_groups
    assert stalled is False


def test_a_held_lease_is_never_a_stall() -> None:
    blocking, _, controller, queue = build("free", "capped")
    free_head = queue.view().first_candidate_tasks_by_group["free"]
    lease = controller.try_acquire(free_head, queue.view())
    assert isinstance(lease, TaskAdmissionLease)
    queue.discard(free_head.task_id)
    _, stalled = blocking.nothing_eligible(work_elsewhere=False)
    assert stalled is False
    controller.release(lease)
    _, stalled = blocking.nothing_eligible(work_elsewhere=False)
    assert stalled is True


def test_denied_emits_admission_denied_with_its_diagnostics_and_returns_the_retry_time() -> None:
    blocking, sink, _, queue = build("free")
    item = queue.view().first_candidate_tasks_by_group["free"]
    denial = TaskAdmissionDenied(item, "policy_denial", available_after=LATER, diagnostics={"policy_error": "RuntimeError"})
    assert blocking.denied(denial) == LATER
    (event,) = sink.of_kind("admission_denied")
    assert event.reason == "policy_denial"
    assert dict(event.diagnostics) == {"policy_error": "RuntimeError"}
    assert blocking.denied(TaskAdmissionDenied(item, "no_capacity")) is None
