"""TaskFuture: stdlib Future semantics for queued/running cancellation and waiter notification."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, ThreadPoolExecutor, as_completed, wait
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import (
    GENEROUS,
    ParkingSink,
    SignalingSink,
    check_lease_evidence,
    opened_on_exit,
    park_workers,
    raises_when_cancelled,
    resolve_all,
)

from threadsched import CancelToken, Scheduler, TaskFuture, current_cancel_token


def _queued_victim(sched: Scheduler, sink: SignalingSink, fn: Any = int) -> TaskFuture:
    future = sched.submit(fn)
    assert sink.wait_for_count("ready_enqueued", 1, task_id=future.task_id)
    return future


def test_task_future_is_a_stdlib_future_with_task_id_and_token() -> None:
    with Scheduler(max_workers=1, name="fut0") as sched:
        future = sched.submit(lambda: 1)
        assert isinstance(future, Future)
        assert isinstance(future.cancel_token, CancelToken)
        assert future.result(timeout=GENEROUS) == 1
        assert future.done() and not future.running() and not future.cancelled()
        # cancelling a finished future is a no-op that returns False, like the stdlib
        assert future.cancel() is False
        assert future.result(timeout=0) == 1


def test_cancel_queued_notifies_concurrent_futures_wait() -> None:
    sink = SignalingSink()
    gate = threading.Event()
    with Scheduler(max_workers=1, events=sink, name="fut1") as sched, opened_on_exit(gate):
        parked = park_workers(sched, 1, gate)
        victim = _queued_victim(sched, sink)
        assert victim.cancel() is True
        assert victim.cancel() is True  # idempotent, like the stdlib
        done, not_done = wait([victim], timeout=0)
        assert done == {victim} and not not_done
        done, not_done = wait([victim, *parked], return_when=FIRST_COMPLETED, timeout=0)
        assert victim in done
        gate.set()
        resolve_all(parked)
    assert sched.snapshot().counters["cancelled"] == 1


def test_cancel_queued_notifies_as_completed() -> None:
    sink = SignalingSink()
    gate = threading.Event()
    with Scheduler(max_workers=1, events=sink, name="fut2") as sched, opened_on_exit(gate):
        parked = park_workers(sched, 1, gate)
        victims = [_queued_victim(sched, sink) for _ in range(3)]
        for victim in victims:
            assert victim.cancel()
        assert set(as_completed(victims, timeout=0)) == set(victims)
        gate.set()
        resolve_all(parked)


def test_cancel_queued_wakes_a_thread_already_waiting() -> None:
    sink = SignalingSink()
    gate = threading.Event()
    with Scheduler(max_workers=1, events=sink, name="fut3") as sched, opened_on_exit(gate):
        parked = park_workers(sched, 1, gate)
        victim = _queued_victim(sched, sink)
        results: list[Any] = []
        waiting = threading.Event()

        def waiter() -> None:
            waiting.set()
            results.append(wait([victim], timeout=GENEROUS))

        def completer() -> None:
            results.append(list(as_completed([victim], timeout=GENEROUS)))

        threads = [threading.Thread(target=waiter, name="test-waiter"), threading.Thread(target=completer, name="test-asc")]
        for thread in threads:
            thread.start()
        assert waiting.wait(GENEROUS)
        assert victim.cancel()
        for thread in threads:
            thread.join(GENEROUS)
            assert not thread.is_alive()
        assert len(results) == 2
        for result in results:
            if isinstance(result, list):
                assert result == [victim]
            else:
                done, not_done = result
                assert victim in done and not not_done
        gate.set()
        resolve_all(parked)


def test_cancel_queued_runs_done_callbacks_once() -> None:
    sink = SignalingSink()
    gate = threading.Event()
    with Scheduler(max_workers=1, events=sink, name="fut4") as sched, opened_on_exit(gate):
        parked = park_workers(sched, 1, gate)
        victim = _queued_victim(sched, sink)
        calls: list[Future[Any]] = []
        victim.add_done_callback(calls.append)
        assert victim.cancel()
        gate.set()
        resolve_all(parked)
    assert calls == [victim]


def test_cancel_right_after_submit_resolves() -> None:
    """Cancelled before the dispatcher even moved it into the queue (or just after): still notified."""
    sink = SignalingSink()
    gate = threading.Event()
    with Scheduler(max_workers=1, events=sink, name="fut5") as sched, opened_on_exit(gate):
        parked = park_workers(sched, 1, gate)
        ran = threading.Event()
        victims = [sched.submit(ran.set) for _ in range(20)]
        for victim in victims:
            assert victim.cancel() is True
        resolve_all(victims)
        assert all(victim.cancelled() for victim in victims)
        gate.set()
        resolve_all(parked)
    assert not ran.is_set()
    counters = sched.snapshot().counters
    assert counters["cancelled"] == 20
    assert counters["submitted"] == 21
    assert not any(e.kind == "task_lease_acquired" and e.task_id in {v.task_id for v in victims} for e in sink.events)


def test_cancel_running_returns_false_and_sets_the_cooperative_token() -> None:
    started = threading.Event()
    observed: dict[str, Any] = {}

    def work() -> str:
        token = current_cancel_token()
        observed["token"] = token
        started.set()
        assert token is not None
        observed["woke"] = token.wait(GENEROUS)
        observed["cancelled"] = token.cancelled
        return "finished"

    with Scheduler(max_workers=1, name="fut6") as sched:
        future = sched.submit(work)
        assert started.wait(GENEROUS)
        assert future.running()
        assert future.cancel() is False
        assert not future.cancelled()
        assert future.result(timeout=GENEROUS) == "finished"
    assert observed["token"] is future.cancel_token
    assert observed["woke"] is True
    assert observed["cancelled"] is True


def test_cancel_running_cancelled_error_resolves_waiters() -> None:
    started = threading.Event()

    with Scheduler(max_workers=1, name="fut7") as sched:
        future = sched.submit(raises_when_cancelled(started))
        assert started.wait(GENEROUS)
        assert future.cancel() is False
        assert list(as_completed([future], timeout=GENEROUS)) == [future]
        with pytest.raises(CancelledError):
            future.result(timeout=0)
    assert sched.snapshot().counters["cancelled"] == 1


def test_cancel_token_unit() -> None:
    token = CancelToken()
    assert not token.cancelled
    token.raise_if_cancelled()
    assert token.wait(0) is False
    waiter_result: list[bool] = []
    waiting = threading.Thread(target=lambda: waiter_result.append(token.wait(GENEROUS)), name="test-token")
    waiting.start()
    token.cancel()
    waiting.join(GENEROUS)
    assert waiter_result == [True]
    assert token.cancelled
    assert token.wait(0) is True
    with pytest.raises(CancelledError):
        token.raise_if_cancelled()


def test_current_cancel_token_is_none_outside_tasks() -> None:
    assert current_cancel_token() is None


class CounterProbe:
    """A ``concurrent.futures`` waiter (the object ``wait``/``as_completed`` register on a future):
    records the scheduler's counters at the moment the future notifies its waiters."""

    def __init__(self, sched: Scheduler) -> None:
        self.sched = sched
        self.seen: list[dict[str, int]] = []
        self.active_leases: list[int] = []

    def _record(self, future: Future[Any]) -> None:
        snapshot = self.sched.snapshot()
        self.seen.append(dict(snapshot.counters))
        self.active_leases.append(snapshot.admission.active_lease_count)

    add_result = add_exception = add_cancelled = _record


def test_cancel_queued_counts_before_waiters_are_notified() -> None:
    """A caller woken by ``wait``/``as_completed`` must already see the cancellation in the counters
    (and a ``shutdown`` that follows must not count it as its own)."""
    sink = SignalingSink()
    gate = threading.Event()
    with Scheduler(max_workers=1, events=sink, name="fut8") as sched, opened_on_exit(gate):
        parked = park_workers(sched, 1, gate)
        victim = _queued_victim(sched, sink)
        probe = CounterProbe(sched)
        with victim._condition:
            victim._waiters.append(probe)  # exactly what concurrent.futures.wait() does
        assert victim.cancel()
        assert len(probe.seen) == 1
        assert probe.seen[0]["cancelled"] == 1, probe.seen
        gate.set()
        resolve_all(parked)


def test_cancel_from_inbox_counts_before_waiters_are_notified() -> None:
    sink = ParkingSink()
    dispatcher_parked, unpark = sink.parked, sink.unpark
    sched = Scheduler(max_workers=2, events=sink, name="fut9")
    try:
        first = sched.submit(int, 1)
        assert dispatcher_parked.wait(GENEROUS)
        victim = sched.submit(int, 2)  # stays in the inbox: the dispatcher is parked
        probe = CounterProbe(sched)
        with victim._condition:
            victim._waiters.append(probe)
        assert victim.cancel()
        unpark.set()
        resolve_all([victim, first])
        report = sched.shutdown(wait=True)
    finally:
        unpark.set()
        sched.shutdown(wait=True)
    assert len(probe.seen) == 1
    assert probe.seen[0]["cancelled"] == 1, probe.seen
    assert report.cancelled == 0, report


class GatedExecutor(ThreadPoolExecutor):
    """A pool whose jobs wait on ``gate`` before they start: lets a test cancel a task after the
    dispatcher handed it to the executor but before the worker claimed its future."""

    def __init__(self, gate: threading.Event, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = gate

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        gate = self.gate

        def gated() -> Any:
            gate.wait(GENEROUS)
            return fn(*args, **kwargs)

        return super().submit(gated)


def test_cancel_after_spawn_before_start_notifies_after_release_and_count() -> None:
    """The future is still PENDING when the worker has not claimed it yet, so ``cancel()`` returns
    True; the worker then skips the function. A caller woken by ``wait`` must already see the
    lease returned and the cancellation counted (as for every other terminal path)."""
    gate = threading.Event()
    executor = GatedExecutor(gate, max_workers=2, thread_name_prefix="gated-worker")
    sink = SignalingSink()
    ran = threading.Event()
    sched = Scheduler(executor=executor, events=sink, name="fut10")
    try:
        victim = sched.submit(ran.set)
        assert sink.wait_for_count("worker_spawned", 1, task_id=victim.task_id)
        probe = CounterProbe(sched)
        with victim._condition:
            victim._waiters.append(probe)
        assert victim.cancel() is True
        gate.set()
        resolve_all([victim])
        report = sched.shutdown(wait=True)
    finally:
        gate.set()
        sched.shutdown(wait=True)
        executor.shutdown(wait=True)
    assert not ran.is_set()
    assert victim.cancelled()
    assert len(probe.seen) == 1
    assert probe.seen[0]["cancelled"] == 1, probe.seen
    assert probe.active_leases == [0], probe.active_leases
    assert report.cancelled == 0, report
    check_lease_evidence(sink.events)


def test_task_future_sets_every_attribute_the_stdlib_future_sets() -> None:
    """TaskFuture builds the stdlib Future's state itself (with a lazy condition); if CPython adds
    an attribute to Future.__init__, this fails instead of TaskFuture silently missing it."""
    from concurrent.futures import Future

    from threadsched.core.futures import _FUTURE_ATTRIBUTES, CancelToken, TaskFuture

    assert set(vars(Future())) == _FUTURE_ATTRIBUTES
    future = TaskFuture("t1", None, CancelToken())  # type: ignore[arg-type]
    assert _FUTURE_ATTRIBUTES - {"_condition"} <= set(vars(future))
    assert future._lazy_condition is None
    assert future._condition is future._condition  # created once, on first use
    future.set_result(3)
    assert future.result() == 3


_OPERATIONS = (
    "cancel",
    "set_running_or_notify_cancel",
    "set_result",
    "set_exception",
    "result",
    "add_done_callback",
    "done",
    "cancelled",
    "running",
    "wait",
)


class _NoScheduler:
    def _on_future_cancelled(self, future: Any) -> None:
        return None

    def _on_cancel_requested(self, future: Any) -> None:
        return None


def _apply(future: Any, operation: str, calls: list[str]) -> object:
    """Run one operation; return its observable outcome (value or exception type)."""
    from concurrent.futures import TimeoutError as FuturesTimeout
    from concurrent.futures import wait as futures_wait

    try:
        if operation == "set_result":
            return future.set_result("value")
        if operation == "set_exception":
            return future.set_exception(KeyError("boom"))
        if operation == "result":
            return future.result(timeout=0)
        if operation == "add_done_callback":
            return future.add_done_callback(lambda f: calls.append(f"callback:{f.cancelled()}"))
        if operation == "wait":
            done, not_done = futures_wait([future], timeout=0)
            return (len(done), len(not_done))
        return getattr(future, operation)()
    except FuturesTimeout:
        return "timeout"
    except BaseException as error:  # the exception type is the observable outcome
        return type(error).__name__


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_OPERATIONS), max_size=8))
def test_task_future_behaves_like_the_stdlib_future(operations: list[str]) -> None:
    """TaskFuture's quiet, condition-free transitions are observably identical to Future's."""
    from concurrent.futures import Future

    from threadsched.core.futures import CancelToken, TaskFuture

    reference: Future[Any] = Future()
    ours = TaskFuture("t1", _NoScheduler(), CancelToken())
    reference_calls: list[str] = []
    our_calls: list[str] = []
    for operation in operations:
        expected = _apply(reference, operation, reference_calls)
        actual = _apply(ours, operation, our_calls)
        assert actual == expected, (operation, operations)
        assert ours._state == reference._state, (operation, operations)
    assert our_calls == reference_calls
