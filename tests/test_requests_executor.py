"""ModelRequestExecutor: classification, one lease per attempt, retries/back-off, cancellation, events."""

from __future__ import annotations

import dataclasses
import email.utils
import itertools
import json
import math
import random
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import CancelledError
from dataclasses import dataclass, field
from typing import Any

import pytest
from support import FakeClock

from threadsched import RetryPolicy, Scheduler
from threadsched.core.events import MemoryEventSink, SchedulerEvent
from threadsched.core.futures import CancelToken
from threadsched.requests import (
    RequestAdmissionDenied,
    RequestAdmissionError,
    RequestAdmissionItem,
    RequestAdmissionLease,
    RequestOutcome,
    RequestReleaseResult,
    RequestResourceKey,
)
from threadsched.requests.executor import (
    REQUEST_RETRY,
    MalformedResponseError,
    ModelRequest,
    ModelRequestError,
    ModelRequestExecutor,
    RequestCancelledError,
    TransportConnectionError,
    TransportResponse,
    TransportTimeout,
    classify,
    is_retryable,
    parse_retry_after,
)

RO = RequestOutcome
RESOURCE = RequestResourceKey("mock", "fast")
SECRET_PROMPT = "the-secret-prompt-7f3a"
NO_JITTER = dataclasses.replace(REQUEST_RETRY, jitter=0.0)


def ok(body: Any = None) -> TransportResponse:
    return TransportResponse(200, {"content-type": "application/json"}, body if body is not None else {"ok": True})


def status(code: int, **headers: str) -> TransportResponse:
    return TransportResponse(code, headers, {"error": {"message": "nope"}})


def request(**changes: Any) -> ModelRequest:
    fields: dict[str, Any] = {"resource": RESOURCE, "payload": {"messages": [{"role": "user", "content": SECRET_PROMPT}]}}
    fields.update(changes)
    return ModelRequest(**fields)


@dataclass
class FakeAdmission:
    """Records every acquire and release; ``fail_with`` makes acquire raise; ``on_release`` runs after each."""

    fail_with: RequestAdmissionError | None = None
    on_release: Callable[[], None] | None = None
    acquired: list[tuple[RequestAdmissionLease, float | None, object | None]] = field(default_factory=list)
    released: list[tuple[RequestAdmissionLease, RequestOutcome, float | None]] = field(default_factory=list)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def acquire(
        self, item: RequestAdmissionItem, timeout: float | None = None, cancel: object | None = None
    ) -> RequestAdmissionLease:
        if self.fail_with is not None:
            raise self.fail_with
        lease = RequestAdmissionLease(next(self.ids), item, item.resource, 0.0, 0)
        self.acquired.append((lease, timeout, cancel))
        return lease

    def release(
        self, lease: RequestAdmissionLease, outcome: RequestOutcome, *, retry_after: float | None = None
    ) -> RequestReleaseResult:
        first = lease.claim_release()
        self.released.append((lease, outcome, retry_after))
        if self.on_release is not None:
            self.on_release()
        return RequestReleaseResult(first, None if first else "already_released")

    def outcomes(self) -> list[tuple[RequestOutcome, float | None]]:
        return [(outcome, retry_after) for _, outcome, retry_after in self.released]

    def assert_balanced(self) -> None:
        """Every acquired lease was released exactly once, in order, and nothing else was released."""
        assert [lease.lease_id for lease, _, _ in self.acquired] == [lease.lease_id for lease, _, _ in self.released]
        assert len({lease.lease_id for lease, _, _ in self.released}) == len(self.released)


class ScriptedTransport:
    """Returns (or raises) the scripted results in order; records the timeout of every send."""

    def __init__(self, results: Iterable[TransportResponse | BaseException], on_send: Callable[[], None] | None = None) -> None:
        self.results = list(results)
        self.timeouts: list[float | None] = []
        self.on_send = on_send

    def send(self, request: ModelRequest, timeout: float | None) -> TransportResponse:
        self.timeouts.append(timeout)
        if self.on_send is not None:
            self.on_send()
        result = self.results.pop(0)
        if isinstance(result, BaseException):
            raise result
        return result


def make(
    results: Iterable[TransportResponse | BaseException],
    *,
    admission: FakeAdmission | None = None,
    retry: RetryPolicy = NO_JITTER,
    clock: FakeClock | None = None,
    **kwargs: Any,
) -> tuple[ModelRequestExecutor, FakeAdmission, ScriptedTransport, FakeClock]:
    admission = admission or FakeAdmission()
    transport = ScriptedTransport(results)
    clock = clock or FakeClock(100.0)
    executor = ModelRequestExecutor(admission, transport, retry=retry, sleep=clock.sleep, clock=clock, **kwargs)
    return executor, admission, transport, clock


# -- classification ---------------------------------------------------------------------------

NOW = 1_700_000_000.0
HTTP_DATE_IN_30S = email.utils.formatdate(NOW + 30, usegmt=True)


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (ok(), (RO.SUCCESS, None)),
        (status(201), (RO.SUCCESS, None)),
        (status(429, **{"retry-after-ms": "1500"}), (RO.RATE_LIMITED, 1.5)),
        (status(429, **{"retry-after-ms": "250", "Retry-After": "1"}), (RO.RATE_LIMITED, 0.25)),
        (status(429, **{"Retry-After": "7"}), (RO.RATE_LIMITED, 7.0)),
        (status(429, **{"Retry-After": "2.5"}), (RO.RATE_LIMITED, 2.5)),
        (status(429, **{"Retry-After": HTTP_DATE_IN_30S}), (RO.RATE_LIMITED, 30.0)),
        (status(429, **{"Retry-After": "soon-ish"}), (RO.RATE_LIMITED, None)),
        (status(429, **{"Retry-After": "-5"}), (RO.RATE_LIMITED, None)),
        (status(429, **{"retry-after-ms": "garbage", "Retry-After": "3"}), (RO.RATE_LIMITED, 3.0)),
        (status(429), (RO.RATE_LIMITED, None)),
        (status(500), (RO.PROVIDER_FAILURE, None)),
        (status(503, **{"Retry-After": "4"}), (RO.PROVIDER_FAILURE, 4.0)),
        (status(502), (RO.PROVIDER_FAILURE, None)),
        (status(504), (RO.PROVIDER_TIMEOUT, None)),
        (status(408), (RO.PROVIDER_TIMEOUT, None)),
        (status(400), (RO.PROVIDER_FAILURE, None)),
        (status(401), (RO.PROVIDER_FAILURE, None)),
        (TransportTimeout("slow"), (RO.PROVIDER_TIMEOUT, None)),
        (TransportConnectionError("refused"), (RO.PROVIDER_FAILURE, None)),
        (MalformedResponseError("no choices"), (RO.PROVIDER_FAILURE, None)),
        (ValueError("bug"), (RO.UNEXPECTED_EXCEPTION, None)),
        (CancelledError(), (RO.LOCAL_CANCELLED, None)),
        (RequestCancelledError(), (RO.LOCAL_CANCELLED, None)),
        (KeyboardInterrupt(), (RO.LOCAL_CANCELLED, None)),
    ],
    ids=lambda value: repr(value)[:60],
)
def test_classify(result: TransportResponse | BaseException, expected: tuple[RequestOutcome, float | None]) -> None:
    assert classify(result, now=NOW) == expected


@pytest.mark.parametrize(
    ("outcome", "code", "retryable"),
    [
        (RO.SUCCESS, 200, False),
        (RO.RATE_LIMITED, 429, True),
        (RO.PROVIDER_TIMEOUT, 504, True),
        (RO.PROVIDER_TIMEOUT, None, True),
        (RO.PROVIDER_FAILURE, 500, True),
        (RO.PROVIDER_FAILURE, 503, True),
        (RO.PROVIDER_FAILURE, None, True),  # connection error
        (RO.PROVIDER_FAILURE, 400, False),
        (RO.PROVIDER_FAILURE, 401, False),
        (RO.PROVIDER_FAILURE, 404, False),
        (RO.PROVIDER_FAILURE, 302, False),
        (RO.PROVIDER_FAILURE, 200, True),  # malformed body
        (RO.UNEXPECTED_EXCEPTION, None, False),
        (RO.LOCAL_CANCELLED, None, False),
        (RO.LOCAL_TIMEOUT, None, False),
    ],
)
def test_is_retryable(outcome: RequestOutcome, code: int | None, retryable: bool) -> None:
    assert is_retryable(outcome, code) is retryable


def test_retry_after_http_date_in_the_past_is_zero_and_naive_dates_are_utc() -> None:
    assert parse_retry_after({"Retry-After": email.utils.formatdate(NOW - 60, usegmt=True)}, now=NOW) == 0.0
    assert parse_retry_after({"retry-after": "Tue, 14 Nov 2023 22:13:50 -0000"}, now=NOW) == pytest.approx(30.0)
    assert parse_retry_after({"Retry-After": "Mon, 99 Foo 2023 99:99:99 GMT"}, now=NOW) is None
    assert parse_retry_after({"Retry-After": "inf"}) is None
    assert parse_retry_after({"Retry-After": "1e3"}) is None
    assert parse_retry_after({}) is None


# -- one lease per attempt; retries ----------------------------------------------------------------


def test_success_first_attempt_holds_one_lease_and_releases_it_as_success() -> None:
    executor, admission, _, clock = make([ok({"answer": 42})])
    response = executor.execute(request())
    assert (response.status, response.body, response.attempts, response.outcome) == (200, {"answer": 42}, 1, RO.SUCCESS)
    assert admission.outcomes() == [(RO.SUCCESS, None)]
    admission.assert_balanced()
    assert clock.slept == []
    assert executor.statistics()["succeeded"] == 1


def test_rate_limited_then_success_releases_each_lease_once_and_backs_off_at_least_retry_after() -> None:
    executor, admission, _, clock = make([status(429, **{"retry-after-ms": "2500"}), ok()])
    response = executor.execute(request())
    assert response.attempts == 2
    assert admission.outcomes() == [(RO.RATE_LIMITED, 2.5), (RO.SUCCESS, None)]
    admission.assert_balanced()
    assert [lease.item.correlation["attempt"] for lease, _, _ in admission.acquired] == [1, 2]
    assert len(clock.slept) == 1 and clock.slept[0] >= 2.5
    assert all(lease.claim_release() is False for lease, _, _ in admission.released)  # each flag already taken


def test_exhausted_attempts_raise_model_request_error_with_every_lease_released() -> None:
    executor, admission, _, clock = make([status(500)] * 4)
    with pytest.raises(ModelRequestError) as caught:
        executor.execute(request())
    error = caught.value
    assert (error.outcome, error.status, error.attempts) == (RO.PROVIDER_FAILURE, 500, 4)
    assert SECRET_PROMPT not in str(error) and SECRET_PROMPT not in repr(error)
    assert admission.outcomes() == [(RO.PROVIDER_FAILURE, None)] * 4
    admission.assert_balanced()
    assert clock.slept == [0.5, 1.0, 2.0]  # base * 2**(n-1), no jitter


def test_default_backoff_is_jittered_both_ways_and_never_below_retry_after() -> None:
    assert (REQUEST_RETRY.max_attempts, REQUEST_RETRY.backoff_initial, REQUEST_RETRY.backoff_max) == (4, 0.5, 30.0)
    assert (REQUEST_RETRY.jitter, REQUEST_RETRY.retry_on) == (0.1, ())
    rng = random.Random(7)
    for attempt in range(1, 8):  # 0.5, 1, 2, ... capped at 30 before the +/- 10 %
        base = min(30.0, 0.5 * 2.0 ** (attempt - 1))
        assert 0.9 * base <= REQUEST_RETRY.backoff(attempt, rng) <= 1.1 * base
    assert REQUEST_RETRY.backoff(1, rng, at_least=45.0) == 45.0  # Retry-After beyond the cap still wins


def test_every_back_off_waits_at_least_the_retry_after() -> None:
    hints = ["0.1", "2", "7"]
    executor, admission, _, clock = make([status(429, **{"Retry-After": hint}) for hint in hints] + [ok()])
    assert executor.execute(request()).attempts == 4
    assert clock.slept == [0.5, 2.0, 7.0]  # max(0.5 * 2**(n-1), Retry-After), no jitter
    assert [retry_after for _, retry_after in admission.outcomes()] == [0.1, 2.0, 7.0, None]


def test_retry_on_is_not_consulted_by_the_executor() -> None:
    policy = RetryPolicy(max_attempts=3, retry_on=(ValueError,), backoff_initial=0.0, jitter=0.0)
    executor, _, _, _ = make([ValueError("transport bug"), ok()], retry=policy)
    with pytest.raises(ValueError, match="transport bug"):  # an unexpected exception is never retried
        executor.execute(request())
    executor, _, _, _ = make([status(503), status(503), ok()], retry=policy)
    assert executor.execute(request()).attempts == 3  # a 503 is retried though it is no ValueError


def test_non_retryable_bad_request_is_one_attempt() -> None:
    executor, admission, _, clock = make([status(400)])
    with pytest.raises(ModelRequestError) as caught:
        executor.execute(request())
    assert (caught.value.outcome, caught.value.status, caught.value.attempts) == (RO.PROVIDER_FAILURE, 400, 1)
    assert admission.outcomes() == [(RO.PROVIDER_FAILURE, None)]
    assert clock.slept == []


def test_timeouts_and_connection_errors_are_retried() -> None:
    executor, admission, _, _ = make([TransportTimeout("slow"), TransportConnectionError("reset"), status(504), ok()])
    assert executor.execute(request()).attempts == 4
    assert [outcome for outcome, _ in admission.outcomes()] == [
        RO.PROVIDER_TIMEOUT,
        RO.PROVIDER_FAILURE,
        RO.PROVIDER_TIMEOUT,
        RO.SUCCESS,
    ]
    admission.assert_balanced()


def test_unexpected_exception_is_released_as_such_and_re_raised_without_retry() -> None:
    executor, admission, _, _ = make([ValueError("transport bug"), ok()])
    with pytest.raises(ValueError, match="transport bug"):
        executor.execute(request())
    assert admission.outcomes() == [(RO.UNEXPECTED_EXCEPTION, None)]
    admission.assert_balanced()


def test_malformed_success_body_is_a_retryable_provider_failure() -> None:
    def parse(body: Any) -> str:
        if "text" not in body:
            raise MalformedResponseError("no text")
        return str(body["text"])

    executor, admission, _, _ = make([ok({"wrong": 1}), ok({"text": "hi"})])
    response = executor.execute(request(), parse=parse)
    assert (response.value, response.attempts) == ("hi", 2)
    assert [outcome for outcome, _ in admission.outcomes()] == [RO.PROVIDER_FAILURE, RO.SUCCESS]


def test_retry_after_beyond_the_policy_maximum_ends_the_call() -> None:
    executor, admission, _, clock = make([status(429, **{"Retry-After": "3600"})], max_retry_after_s=60)
    with pytest.raises(ModelRequestError, match="max_retry_after_s") as caught:
        executor.execute(request())
    assert (caught.value.outcome, caught.value.attempts) == (RO.RATE_LIMITED, 1)
    assert admission.outcomes() == [(RO.RATE_LIMITED, 3600.0)]
    assert clock.slept == []


# -- deadlines ------------------------------------------------------------------------------------


def test_deadline_bounds_admission_wait_and_send_timeout() -> None:
    executor, admission, transport, _ = make([ok()])
    executor.execute(request(timeout_s=30.0), deadline_s=10.0)
    assert admission.acquired[0][1] == pytest.approx(10.0)
    assert transport.timeouts == [pytest.approx(10.0)]
    executor2, _, transport2, _ = make([ok()])
    executor2.execute(request(timeout_s=3.0), deadline_s=10.0)
    assert transport2.timeouts == [3.0]
    executor3, admission3, transport3, _ = make([ok()])
    executor3.execute(request())
    assert admission3.acquired[0][1] is None and transport3.timeouts == [None]


def test_deadline_too_close_for_the_back_off_fails_without_sleeping() -> None:
    executor, admission, _, clock = make([status(429, **{"Retry-After": "10"})])
    with pytest.raises(ModelRequestError, match="no room") as caught:
        executor.execute(request(), deadline_s=5.0)
    assert (caught.value.outcome, caught.value.attempts) == (RO.RATE_LIMITED, 1)
    assert clock.slept == []
    admission.assert_balanced()


def test_send_cut_short_by_the_deadline_is_a_local_timeout() -> None:
    clock = FakeClock(100.0)

    def slow_send() -> None:
        clock.now += 6.0

    admission = FakeAdmission()
    transport = ScriptedTransport([TransportTimeout("read timed out")], on_send=slow_send)
    executor = ModelRequestExecutor(admission, transport, retry=NO_JITTER, sleep=clock.sleep, clock=clock)
    with pytest.raises(ModelRequestError) as caught:
        executor.execute(request(), deadline_s=5.0)
    assert (caught.value.outcome, caught.value.attempts) == (RO.LOCAL_TIMEOUT, 1)
    assert admission.outcomes() == [(RO.LOCAL_TIMEOUT, None)]
    admission.assert_balanced()


# -- admission errors and cancellation ----------------------------------------------------------------


def test_admission_error_propagates_as_is_and_nothing_is_released() -> None:
    item = RequestAdmissionItem(RESOURCE)
    error = RequestAdmissionError(RequestAdmissionDenied(item, "timeout"))
    executor, admission, transport, _ = make([ok()], admission=FakeAdmission(fail_with=error))
    with pytest.raises(RequestAdmissionError) as caught:
        executor.execute(request())
    assert caught.value is error
    assert admission.released == [] and transport.timeouts == []


def test_admission_error_after_cancel_becomes_request_cancelled_error() -> None:
    token = CancelToken()
    error = RequestAdmissionError(RequestAdmissionDenied(RequestAdmissionItem(RESOURCE), "cancelled"))

    class CancellingAdmission(FakeAdmission):
        def acquire(self, item: RequestAdmissionItem, timeout: float | None = None, cancel: object | None = None) -> Any:
            assert cancel is token
            token.cancel()
            raise error

    executor, admission, _, _ = make([ok()], admission=CancellingAdmission())
    with pytest.raises(RequestCancelledError) as caught:
        executor.execute(request(), cancel=token)
    assert caught.value.__cause__ is error
    assert admission.released == []


def test_cancelled_before_start_acquires_nothing() -> None:
    token = CancelToken()
    token.cancel()
    executor, admission, _, _ = make([ok()])
    with pytest.raises(RequestCancelledError):
        executor.execute(request(), cancel=token)
    assert admission.acquired == []


def test_cancel_during_send_releases_local_cancelled_and_raises() -> None:
    token = CancelToken()
    entered, gate = threading.Event(), threading.Event()

    class BlockingTransport:
        def send(self, request: ModelRequest, timeout: float | None) -> TransportResponse:
            entered.set()
            assert gate.wait(30)
            return ok()

    def canceller() -> None:
        assert entered.wait(30)
        token.cancel()
        gate.set()

    admission = FakeAdmission()
    executor = ModelRequestExecutor(admission, BlockingTransport(), retry=NO_JITTER)
    thread = threading.Thread(target=canceller)
    thread.start()
    try:
        with pytest.raises(RequestCancelledError) as caught:
            executor.execute(request(), cancel=token)
    finally:
        gate.set()
        thread.join()
    assert isinstance(caught.value, CancelledError)
    assert admission.outcomes() == [(RO.LOCAL_CANCELLED, None)]
    admission.assert_balanced()
    assert executor.statistics()["cancelled"] == 1


@pytest.mark.parametrize("raised", [KeyboardInterrupt(), CancelledError("stop")])
def test_cancellation_raised_by_the_transport_is_released_as_local_cancelled_and_re_raised_as_is(raised: BaseException) -> None:
    executor, admission, _, _ = make([raised, ok()])
    with pytest.raises(type(raised)) as caught:
        executor.execute(request())
    assert caught.value is raised
    assert admission.outcomes() == [(RO.LOCAL_CANCELLED, None)]
    admission.assert_balanced()


def test_cancel_during_real_back_off_wakes_immediately() -> None:
    token = CancelToken()
    # The cancel lands once the 429's lease is released; the 30 s back-off must end at once (a bug shows up
    # as the pytest timeout, not as a flaky assertion).
    admission = FakeAdmission(on_release=token.cancel)
    executor = ModelRequestExecutor(admission, ScriptedTransport([status(429, **{"Retry-After": "30"}), ok()]), retry=NO_JITTER)
    with pytest.raises(RequestCancelledError, match="back-off"):
        executor.execute(request(), cancel=token)
    assert admission.outcomes() == [(RO.RATE_LIMITED, 30.0)]


def test_cancel_noticed_after_an_injected_sleep() -> None:
    token = CancelToken()
    executor, admission, _, _ = make([status(503), ok()], admission=FakeAdmission(on_release=token.cancel))
    with pytest.raises(RequestCancelledError):
        executor.execute(request(), cancel=token)
    assert len(admission.acquired) == 1


def test_a_threading_event_works_as_cancel() -> None:
    event = threading.Event()
    event.set()
    executor, admission, _, _ = make([ok()])
    with pytest.raises(RequestCancelledError):
        executor.execute(request(), cancel=event)
    assert admission.acquired == []


# -- events ---------------------------------------------------------------------------------------


def _event_text(events: list[SchedulerEvent]) -> str:
    return json.dumps([event.to_dict() for event in events])


def test_events_carry_the_task_correlation_and_never_the_payload() -> None:
    sink = MemoryEventSink()
    admission = FakeAdmission()
    executor = ModelRequestExecutor(
        admission,
        ScriptedTransport([status(429, **{"retry-after-ms": "1"}), ok()]),
        retry=NO_JITTER,
        events=sink,
        sleep=lambda _: None,
    )
    scheduler = Scheduler(2, run_id="r")
    try:
        future = scheduler.group("g").submit_correlated({"column": "c"}, executor.execute, request())
        assert future.result(timeout=30).attempts == 2
    finally:
        scheduler.shutdown()
    events = sink.events
    assert [event.kind for event in events] == ["model_request_started", "model_request_completed"] * 2
    assert [event.sequence for event in events] == [0, 1, 2, 3]
    for event in events:
        assert event.stream == "requests" and event.run_id == "r"
        assert event.correlation["column"] == "c" and event.correlation["run_id"] == "r"
        assert event.task_id == event.correlation["task_id"] and event.execution_id == event.correlation["execution_id"]
        assert event.group == "default" and event.diagnostics["resource"] == str(RESOURCE)
    assert [event.correlation["attempt"] for event in events] == [1, 1, 2, 2]
    completed = sink.of_kind("model_request_completed")
    assert [(e.reason, e.diagnostics["status"]) for e in completed] == [("rate_limited", 429), ("success", 200)]
    assert [e.lease_id for e in events] == [1, 1, 2, 2]
    # the admission items carried the same correlation
    assert admission.acquired[0][0].item.correlation["column"] == "c"
    assert SECRET_PROMPT not in _event_text(events)


def test_a_raising_sink_is_counted_and_never_breaks_the_call() -> None:
    class Broken:
        def emit(self, event: SchedulerEvent) -> None:
            raise RuntimeError("disk full")

    executor, admission, _, _ = make([ok()], events=Broken())
    assert executor.execute(request()).outcome is RO.SUCCESS
    assert executor.statistics()["sink_errors"] == 2
    admission.assert_balanced()


def test_shared_sequence_counter() -> None:
    sink = MemoryEventSink()
    shared = itertools.count(10)
    executor, _, _, _ = make([ok()], events=sink, sequence=shared)
    executor.execute(request())
    assert [event.sequence for event in sink.events] == [10, 11]
    assert next(shared) == 12


# -- values ---------------------------------------------------------------------------------------


def test_model_request_repr_hides_the_payload_and_validates() -> None:
    assert SECRET_PROMPT not in repr(request())
    with pytest.raises(ValueError, match="weight"):
        request(weight=0)
    with pytest.raises(ValueError, match="timeout_s"):
        request(timeout_s=float("inf"))
    with pytest.raises(ValueError, match="payload"):
        request(payload=["not", "a", "mapping"])


def test_retry_policy_and_max_retry_after_validation() -> None:
    with pytest.raises(ValueError, match=r"RetryPolicy\.max_attempts must be an int >= 1, got 0"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match=r"RetryPolicy\.jitter must be <= 1 \(a fraction of the delay\), got 2"):
        RetryPolicy(jitter=2)
    with pytest.raises(ValueError, match=r"RetryPolicy\.backoff_initial must be a finite number >= 0, got -1"):
        RetryPolicy(backoff_initial=-1)
    with pytest.raises(TypeError, match="retry must be a RetryPolicy or None"):
        ModelRequestExecutor(FakeAdmission(), ScriptedTransport([]), retry={"max_attempts": 2})  # type: ignore[arg-type]
    for bad in (-1, math.inf, math.nan, True, "60"):
        with pytest.raises(ValueError, match=r"max_retry_after_s must be a finite number >= 0, got "):
            ModelRequestExecutor(FakeAdmission(), ScriptedTransport([]), max_retry_after_s=bad)  # type: ignore[arg-type]
    assert ModelRequestExecutor(FakeAdmission(), ScriptedTransport([]), max_retry_after_s=0).max_retry_after_s == 0.0


def test_execute_validates_arguments_and_repr_shows_counters() -> None:
    executor, _, _, _ = make([ok()])
    with pytest.raises(ValueError, match="deadline_s"):
        executor.execute(request(), deadline_s=0)
    with pytest.raises(TypeError, match="ModelRequest"):
        executor.execute({"resource": RESOURCE})  # type: ignore[arg-type]
    executor.execute(request())
    assert "calls=1 attempts=1" in repr(executor)


def test_model_request_error_pickles() -> None:
    import pickle

    error = pickle.loads(pickle.dumps(ModelRequestError(RO.RATE_LIMITED, 429, 4, "gave up")))
    assert (error.outcome, error.status, error.attempts, str(error)) == (RO.RATE_LIMITED, 429, 4, "gave up")


# -- with the real AdaptiveRequestAdmissionController ------------------------------------------------


def _controller(cap: int, clock: Callable[[], float], sink: Any = None) -> Any:
    module = pytest.importorskip("threadsched.requests.controller")
    from threadsched.requests import ProviderModelKey, RequestAdmissionConfig

    config = RequestAdmissionConfig(caps={ProviderModelKey(RESOURCE.provider, RESOURCE.model): cap})
    return module.AdaptiveRequestAdmissionController(config, events=sink, clock=clock)


def test_real_controller_sees_one_lease_per_attempt_and_the_rate_limit() -> None:
    clock = FakeClock(100.0)
    sink = MemoryEventSink()
    controller = _controller(4, clock, sink)
    transport = ScriptedTransport([status(429, **{"Retry-After": "2"}), ok()])
    executor = ModelRequestExecutor(
        controller, transport, retry=NO_JITTER, events=sink, sleep=clock.sleep, clock=clock, sequence=controller.sequence
    )
    assert executor.execute(request()).attempts == 2
    stats = controller.statistics()
    assert (stats["acquired"], stats["released"], stats["active_leases"]) == (2, 2, 0)
    assert stats["release_diagnostics"] == {}
    snapshot = controller.snapshot(RESOURCE)
    assert snapshot.current_limit < 4 and snapshot.last_outcome is RO.SUCCESS
    assert clock.slept[0] >= 2.0
    kinds = [event.kind for event in sink.events]
    assert kinds.count("request_lease_acquired") == kinds.count("model_request_started") == 2
    assert "request_rate_limited" in kinds
    sequences = [event.sequence for event in sink.events]
    assert sequences == list(range(len(sequences)))  # one counter for the whole "requests" stream


def test_real_controller_cancel_while_waiting_for_admission_leaves_nothing_behind() -> None:
    token = CancelToken()

    class CancelOnWait:
        def emit(self, event: SchedulerEvent) -> None:
            if event.kind == "request_wait_started":
                token.cancel()  # the executor's call is now queued behind the held lease

    controller = _controller(1, FakeClock(100.0), CancelOnWait())
    held = controller.try_acquire(RequestAdmissionItem(RESOURCE))
    assert isinstance(held, RequestAdmissionLease)
    executor = ModelRequestExecutor(controller, ScriptedTransport([ok()]), retry=NO_JITTER)
    with pytest.raises(RequestCancelledError, match="waiting for admission") as caught:
        executor.execute(request(), cancel=token)
    assert isinstance(caught.value.__cause__, RequestAdmissionError)
    assert caught.value.__cause__.denial.reason == "cancelled"
    controller.release(held, RO.SUCCESS)
    stats = controller.statistics()
    assert (stats["active_leases"], stats["waiters"], stats["released"]) == (0, 0, 1)
