"""The model request executor: one request lease per outbound attempt, retries inside.

``ModelRequestExecutor.execute`` runs one logical model call as up to ``retry.max_attempts`` attempts
(``retry`` is a ``threadsched.core.retry.RetryPolicy``, default ``REQUEST_RETRY``). Each attempt acquires
its own lease from request admission, sends through a ``ModelTransport``, classifies the result into a
``RequestOutcome`` and releases that lease exactly once (in a ``finally``), so the admission layer sees
every attempt and AIMD reacts to each 429. Back-off happens with no lease held.
A cancel token found set when the send returns makes the attempt ``local_cancelled`` (even a 200): the
lease is released as such and ``RequestCancelledError`` raised.

Transports raise ``TransportTimeout`` / ``TransportConnectionError`` so this module does not depend on any
HTTP library (``http_provider`` maps httpx onto them). An attempt's lease is held until its send returns, so
a transport must end each send within the timeout it is given (``ModelTransport.send``): the smaller of
``ModelRequest.timeout_s`` and what is left of ``deadline_s``. ``OpenAIChatTransport`` bounds the whole
attempt that way, however slowly a provider trickles its answer.

Events (stream ``"requests"``): ``model_request_started`` and ``model_request_completed``; correlation is
``current_task_correlation()`` of the calling thread plus ``{"attempt": n}``, read when the event is built.
Events carry outcome, status, attempt and timings; never the payload, the response body, headers or keys.

Lock order: ``ModelRequestExecutor._lock`` guards counters only; nothing is called while holding it.
"""

from __future__ import annotations

import itertools
import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NoReturn

from threadsched.core.context import current_cancel_token, current_task_correlation
from threadsched.core.events import LOGGER, REQUEST_STREAM, EventSink, SchedulerEvent
from threadsched.core.retry import RetryPolicy
from threadsched.requests.contracts import (
    RequestAdmissionError,
    RequestAdmissionItem,
    RequestAdmissionLease,
    RequestOutcome,
)
from threadsched.requests.outcomes import (
    Cancel,
    MalformedResponseError,
    ModelRequest,
    ModelRequestError,
    ModelResponse,
    ModelTransport,
    RequestAdmission,
    RequestCancelledError,
    TransportConnectionError,
    TransportResponse,
    TransportTimeout,
    classify,
    is_retryable,
    parse_retry_after,
    positive_or_none,
)

__all__ = [
    "REQUEST_RETRY",
    "REQUEST_STREAM",
    "MalformedResponseError",
    "ModelRequest",
    "ModelRequestError",
    "ModelRequestExecutor",
    "ModelResponse",
    "ModelTransport",
    "RequestAdmission",
    "RequestCancelledError",
    "TransportConnectionError",
    "TransportResponse",
    "TransportTimeout",
    "classify",
    "is_retryable",
    "parse_retry_after",
]


REQUEST_RETRY = RetryPolicy(max_attempts=4, backoff_initial=0.5, backoff_max=30.0, jitter=0.1)
"""The executor's default: 4 attempts, back-offs of about 0.5, 1 and 2 s (+/- 10 %), each at least the
provider's ``Retry-After``. Its ``retry_on`` is empty: the executor does not consult it
(``ModelRequestExecutor``)."""


@dataclass(slots=True)
class _Attempt:
    outcome: RequestOutcome
    status: int | None
    retry_after: float | None
    body: Any = None
    value: Any = None


@dataclass(frozen=True, slots=True)
class _Call:
    request: ModelRequest
    token: Cancel | None
    deadline: float | None
    parse: Callable[[Any], Any] | None


class ModelRequestExecutor:
    """Runs ``ModelRequest``s through request admission and a transport, with retries (module docstring).

    ``retry``: attempts and back-off (``RetryPolicy``, default ``REQUEST_RETRY``). Which attempts are
    retried is decided here from their classified outcome (``is_retryable``), never from
    ``retry.retry_on``; each back-off is ``retry.backoff(attempt, rng, at_least=Retry-After)``.
    ``max_retry_after_s`` (>= 0, default 120): a ``Retry-After`` above it ends the call with
    ``ModelRequestError`` instead of waiting that long.
    ``sleep``: None waits for real (``cancel.wait(delay)`` when a token is given, so a cancel ends the
    back-off at once; ``time.sleep`` otherwise); an injected ``sleep`` replaces both (tests) and the token
    is checked after it. ``clock`` times deadlines and events. ``sequence``: share one counter with the
    other producers of the ``"requests"`` stream."""

    def __init__(
        self,
        admission: RequestAdmission,
        transport: ModelTransport,
        *,
        retry: RetryPolicy | None = None,
        max_retry_after_s: float = 120.0,
        events: EventSink | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        sequence: Iterator[int] | None = None,
    ) -> None:
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy or None, got {retry!r}")
        if (
            isinstance(max_retry_after_s, bool)
            or not isinstance(max_retry_after_s, (int, float))
            or not 0 <= max_retry_after_s < math.inf
        ):
            raise ValueError(f"max_retry_after_s must be a finite number >= 0, got {max_retry_after_s!r}")
        if events is not None and not callable(getattr(events, "emit", None)):
            raise TypeError(f"events must have an emit(event) method, got {events!r}")
        self._admission = admission
        self._transport = transport
        self.retry = retry if retry is not None else REQUEST_RETRY
        self.max_retry_after_s = float(max_retry_after_s)
        self._sink = events
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._sequence = sequence if sequence is not None else itertools.count()
        self._lock = threading.Lock()
        self._counters = dict.fromkeys(("calls", "attempts", "retries", "succeeded", "failed", "cancelled", "sink_errors"), 0)

    def execute(
        self,
        request: ModelRequest,
        *,
        cancel: Cancel | None = None,
        deadline_s: float | None = None,
        parse: Callable[[Any], Any] | None = None,
    ) -> ModelResponse:
        """Run ``request`` to success or a final failure.

        ``cancel`` defaults to the running task's token; ``deadline_s`` bounds the whole call (admission
        waits, sends and back-offs); ``parse(body)`` runs inside the attempt, and a
        ``MalformedResponseError`` from it counts as a (retryable) provider failure.

        Raises ``ModelRequestError`` (final failure, or no time left), ``RequestCancelledError`` (cancelled;
        a cancellation exception raised by the transport is re-raised as is), ``RequestAdmissionError`` as
        is when admission gives up without a lease (``RequestCancelledError`` from it when the token is
        set), and any other exception of the transport or ``parse`` as is (never retried)."""
        if not isinstance(request, ModelRequest):
            raise TypeError(f"request must be a ModelRequest, got {type(request).__name__}")
        positive_or_none(deadline_s, "deadline_s")
        token = cancel if cancel is not None else current_cancel_token()
        call = _Call(request, token, None if deadline_s is None else self._clock() + deadline_s, parse)
        self._count("calls")
        last: _Attempt | None = None
        attempt = 0
        while True:
            if _is_cancelled(token):
                self._cancelled(request, f"before attempt {attempt + 1}")
            if call.deadline is not None and self._clock() >= call.deadline:
                self._fail(RequestOutcome.LOCAL_TIMEOUT, last, attempt, f"deadline of {deadline_s}s passed")
            attempt += 1
            last = self._attempt(call, attempt)
            if last.outcome is RequestOutcome.SUCCESS:
                self._count("succeeded")
                return ModelResponse(last.status or 0, last.body, attempt, last.outcome, last.value)
            if not is_retryable(last.outcome, last.status):
                self._fail(last.outcome, last, attempt, "not retryable")
            if attempt >= self.retry.max_attempts:
                self._fail(last.outcome, last, attempt, f"gave up after {attempt} attempts")
            if last.retry_after is not None and last.retry_after > self.max_retry_after_s:
                self._fail(last.outcome, last, attempt, f"Retry-After {last.retry_after:.3g}s exceeds max_retry_after_s")
            delay = self.retry.backoff(attempt, self._rng, at_least=last.retry_after or 0.0)
            if call.deadline is not None and self._clock() + delay >= call.deadline:
                self._fail(last.outcome, last, attempt, f"deadline of {deadline_s}s leaves no room for a {delay:.3g}s back-off")
            self._count("retries")
            self._back_off(call, delay, attempt)

    def _attempt(self, call: _Call, attempt: int) -> _Attempt:
        request = call.request
        correlation = MappingProxyType({**current_task_correlation(), "attempt": attempt})
        item = RequestAdmissionItem(request.resource, request.group, request.weight, correlation)
        try:
            lease = self._admission.acquire(item, timeout=self._remaining(call.deadline), cancel=call.token)
        except RequestAdmissionError as error:
            if _is_cancelled(call.token):
                self._cancelled(request, "while waiting for admission", error)
            raise
        self._count("attempts")
        result: _Attempt | None = None
        started = self._clock()
        try:
            self._emit("model_request_started", call, lease, attempt)
            remaining = self._remaining(call.deadline)
            if remaining is not None and remaining <= 0:
                result = _Attempt(RequestOutcome.LOCAL_TIMEOUT, None, None)
            else:
                result = self._send(call, _min_timeout(request.timeout_s, remaining))
            if _is_cancelled(call.token):
                result = _Attempt(RequestOutcome.LOCAL_CANCELLED, result.status, None)
            self._emit("model_request_completed", call, lease, attempt, result, self._clock() - started)
        except BaseException as error:
            if result is None:  # the transport or parse raised: released with its outcome, then re-raised as is
                result = _Attempt(classify(error)[0], None, None)
                self._emit("model_request_completed", call, lease, attempt, result, self._clock() - started, error)
                if result.outcome is RequestOutcome.LOCAL_CANCELLED:
                    self._count("cancelled")
            raise
        finally:
            if result is None:  # cannot happen short of a bug: still release exactly once
                self._admission.release(lease, RequestOutcome.UNEXPECTED_EXCEPTION)
            else:
                self._admission.release(lease, result.outcome, retry_after=result.retry_after)
        if result.outcome is RequestOutcome.LOCAL_CANCELLED:
            self._cancelled(request, f"during attempt {attempt}")
        if result.outcome is RequestOutcome.LOCAL_TIMEOUT:
            self._fail(RequestOutcome.LOCAL_TIMEOUT, result, attempt, "deadline passed during the attempt")
        return result

    def _send(self, call: _Call, timeout: float | None) -> _Attempt:
        try:
            response = self._transport.send(call.request, timeout)
        except (TransportTimeout, TransportConnectionError) as error:
            outcome, retry_after = classify(error)
            if outcome is RequestOutcome.PROVIDER_TIMEOUT and call.deadline is not None and self._clock() >= call.deadline - 0.01:
                outcome = RequestOutcome.LOCAL_TIMEOUT  # our deadline cut it short, not the provider
            return _Attempt(outcome, None, retry_after)
        outcome, retry_after = classify(response)
        value = None
        if outcome is RequestOutcome.SUCCESS and call.parse is not None:
            try:
                value = call.parse(response.body)
            except MalformedResponseError:
                outcome = RequestOutcome.PROVIDER_FAILURE
        return _Attempt(outcome, response.status, retry_after, response.body, value)

    def _back_off(self, call: _Call, delay: float, attempt: int) -> None:
        if self._sleep is not None:
            self._sleep(delay)
            cancelled = _is_cancelled(call.token)
        elif call.token is not None:
            cancelled = call.token.wait(delay)
        else:
            time.sleep(delay)
            cancelled = False
        if cancelled:
            self._cancelled(call.request, f"during back-off after attempt {attempt}")

    def _remaining(self, deadline: float | None) -> float | None:
        return None if deadline is None else max(0.0, deadline - self._clock())

    def _cancelled(self, request: ModelRequest, when: str, cause: BaseException | None = None) -> NoReturn:
        self._count("cancelled")
        raise RequestCancelledError(f"model request to {request.resource} cancelled {when}") from cause

    def _fail(self, outcome: RequestOutcome, last: _Attempt | None, attempts: int, why: str) -> NoReturn:
        self._count("failed")
        status = last.status if last else None
        raise ModelRequestError(outcome, status, attempts, f"model request failed: {outcome.value} (status {status}); {why}")

    def _emit(
        self,
        kind: str,
        call: _Call,
        lease: RequestAdmissionLease,
        attempt: int,
        result: _Attempt | None = None,
        elapsed: float | None = None,
        error: BaseException | None = None,
    ) -> None:
        sink = self._sink
        if sink is None:
            return
        correlation = {**current_task_correlation(), "attempt": attempt}  # read now, in the calling thread
        diagnostics: dict[str, Any] = {"resource": str(call.request.resource), "attempt": attempt}
        if result is not None:
            diagnostics.update(
                outcome=result.outcome.value, status=result.status, elapsed_s=elapsed, retry_after_s=result.retry_after
            )
        if error is not None:
            diagnostics["error"] = type(error).__name__
        event = SchedulerEvent(
            kind=kind,
            sequence=next(self._sequence),
            captured_at=self._clock(),
            task_id=_str_or_none(correlation.get("task_id")),
            execution_id=_str_or_none(correlation.get("execution_id")),
            lease_id=lease.lease_id,
            group=call.request.group,
            resources=MappingProxyType({str(lease.resource): 1}),
            reason=result.outcome.value if result is not None else None,
            diagnostics=MappingProxyType(diagnostics),
            stream=REQUEST_STREAM,
            run_id=_str_or_none(correlation.get("run_id")),
            correlation=MappingProxyType(correlation),
        )
        try:
            sink.emit(event)
        except Exception:
            self._count("sink_errors")
            LOGGER.warning("threadsched: request event sink %r raised; event %s dropped", sink, kind, exc_info=True)

    def _count(self, name: str) -> None:
        with self._lock:
            self._counters[name] += 1

    def statistics(self) -> Mapping[str, int]:
        """Counters: calls, attempts, retries, succeeded, failed, cancelled, sink_errors."""
        with self._lock:
            return MappingProxyType(dict(self._counters))

    def __repr__(self) -> str:
        stats = self.statistics()
        return (
            f"<ModelRequestExecutor calls={stats['calls']} attempts={stats['attempts']} retries={stats['retries']}"
            f" failed={stats['failed']} max_attempts={self.retry.max_attempts}>"
        )


def _is_cancelled(cancel: Cancel | None) -> bool:
    if cancel is None:
        return False
    return cancel.is_set() if isinstance(cancel, threading.Event) else cancel.cancelled


def _min_timeout(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
