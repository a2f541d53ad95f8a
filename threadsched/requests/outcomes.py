"""Values of the model request layer: requests and responses, transport and admission protocols,
typed errors, and how a response or an exception is classified into a ``RequestOutcome``.

``classify``: 2xx success; 429 rate_limited (``retry-after-ms`` or ``Retry-After``: seconds or an HTTP
date); 408/504 provider_timeout; other 5xx provider_failure; other 4xx provider_failure, not retried;
``TransportTimeout`` provider_timeout; ``TransportConnectionError`` provider_failure; anything else
unexpected_exception. No state and no locks here.
"""

from __future__ import annotations

import email.utils
import math
import re
import threading
import time
from collections.abc import Hashable, Mapping
from concurrent.futures import CancelledError
from dataclasses import dataclass, field
from datetime import UTC
from types import MappingProxyType
from typing import Any, Protocol

from threadsched.core.contracts import validate_weight
from threadsched.core.futures import CancelToken
from threadsched.requests.contracts import (
    RequestAdmissionItem,
    RequestAdmissionLease,
    RequestOutcome,
    RequestReleaseResult,
    RequestResourceKey,
)

_NUMBER = re.compile(r"\s*\d+(?:\.\d+)?\s*")
Cancel = CancelToken | threading.Event


class TransportTimeout(Exception):
    """The provider did not answer within the attempt's timeout."""


class TransportConnectionError(Exception):
    """The request never got a complete answer: connect/read/protocol failure (retryable)."""


class MalformedResponseError(ValueError):
    """A 2xx body that does not have the expected shape: a provider failure (retryable), not a crash."""


class RequestCancelledError(CancelledError):
    """The call was cancelled (its cancel token was set). A ``concurrent.futures.CancelledError``, so a
    scheduler task that raises it while its token is set ends *cancelled*, not failed."""


class ModelRequestError(Exception):
    """The call failed for good: the last attempt's ``outcome`` and HTTP ``status`` (None without a
    response), after ``attempts`` sent attempts. The message never holds the payload, body or keys."""

    def __init__(self, outcome: RequestOutcome, status: int | None, attempts: int, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.status = status
        self.attempts = attempts

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.outcome, self.status, self.attempts, str(self)))


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """One logical model call. ``payload`` (e.g. chat messages and params) goes to the transport only:
    never into events, errors or this repr. ``timeout_s`` bounds each attempt as a whole (connect, request,
    headers, body or stream), not each read; the executor's ``deadline_s`` bounds all attempts."""

    resource: RequestResourceKey
    payload: Mapping[str, Any] = field(repr=False)
    group: Hashable = "default"
    weight: float = 1.0
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.resource, RequestResourceKey):
            raise ValueError(f"ModelRequest.resource must be a RequestResourceKey, got {self.resource!r}")
        if not isinstance(self.payload, Mapping):
            raise ValueError(f"ModelRequest.payload must be a mapping, got {type(self.payload).__name__}")
        validate_weight("ModelRequest.weight", self.weight)
        positive_or_none(self.timeout_s, "ModelRequest.timeout_s")


@dataclass(frozen=True, slots=True)
class TransportResponse:
    """What a transport got back. ``headers`` are stored with lower-case names; ``body`` is parsed JSON,
    or the text when the body is not JSON."""

    status: int
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), repr=False)
    body: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", MappingProxyType({str(k).lower(): str(v) for k, v in self.headers.items()}))


@dataclass(frozen=True, slots=True)
class ModelResponse:
    """A successful call: final ``status``, ``body``, ``value`` (``parse(body)`` when a parser was given),
    the number of ``attempts`` sent and the final ``outcome`` (always ``SUCCESS``)."""

    status: int
    body: Any = field(repr=False)
    attempts: int
    outcome: RequestOutcome
    value: Any = field(default=None, repr=False)


class ModelTransport(Protocol):
    def send(self, request: ModelRequest, timeout: float | None) -> TransportResponse:
        """Send one attempt. ``timeout`` (None: the transport's own) bounds the whole send: raise
        ``TransportTimeout`` once it has passed, however slowly the provider is still answering."""
        ...


class RequestAdmission(Protocol):
    """What the executor needs from request admission (``AdaptiveRequestAdmissionController``)."""

    def acquire(
        self, item: RequestAdmissionItem, timeout: float | None = None, cancel: object | None = None
    ) -> RequestAdmissionLease: ...

    def release(
        self, lease: RequestAdmissionLease, outcome: RequestOutcome, *, retry_after: float | None = None
    ) -> RequestReleaseResult: ...


def positive_or_none(value: object, name: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf):
        raise ValueError(f"{name} must be a finite number > 0 or None, got {value!r}")


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` (milliseconds) or ``Retry-After`` (seconds, integer or
    decimal, or an HTTP date relative to ``now``, default ``time.time()``). None when absent or unparsable;
    a date in the past gives 0."""
    lowered = {str(key).lower(): value for key, value in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis is not None and _NUMBER.fullmatch(millis):
        return float(millis) / 1000.0
    text = lowered.get("retry-after")
    if text is None:
        return None
    if _NUMBER.fullmatch(text):
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def classify(result: TransportResponse | BaseException, *, now: float | None = None) -> tuple[RequestOutcome, float | None]:
    """(outcome, retry_after) of one attempt. 2xx success; 429 rate_limited; 408/504 provider_timeout;
    other 5xx and 4xx provider_failure (see ``is_retryable``); ``TransportTimeout`` provider_timeout;
    ``TransportConnectionError``/``MalformedResponseError`` provider_failure; a cancellation
    local_cancelled; anything else unexpected_exception. ``retry_after`` is parsed for 429 and 503."""
    if isinstance(result, BaseException):
        if isinstance(result, TransportTimeout):
            return RequestOutcome.PROVIDER_TIMEOUT, None
        if isinstance(result, (TransportConnectionError, MalformedResponseError)):
            return RequestOutcome.PROVIDER_FAILURE, None
        if isinstance(result, CancelledError) or not isinstance(result, Exception):
            return RequestOutcome.LOCAL_CANCELLED, None  # KeyboardInterrupt, SystemExit: the process is stopping
        return RequestOutcome.UNEXPECTED_EXCEPTION, None
    status = result.status
    if 200 <= status < 300:
        return RequestOutcome.SUCCESS, None
    retry_after = parse_retry_after(result.headers, now=now) if status in (429, 503) else None
    if status == 429:
        return RequestOutcome.RATE_LIMITED, retry_after
    if status in (408, 504):
        return RequestOutcome.PROVIDER_TIMEOUT, None
    return RequestOutcome.PROVIDER_FAILURE, retry_after


def is_retryable(outcome: RequestOutcome, status: int | None) -> bool:
    """rate_limited and provider_timeout are; provider_failure is unless the provider rejected the request
    itself (a 4xx other than 408/429, or a 1xx/3xx): resending a bad request cannot help. A connection
    error (no status), a 5xx and a malformed 2xx body are retried."""
    if outcome in (RequestOutcome.RATE_LIMITED, RequestOutcome.PROVIDER_TIMEOUT):
        return True
    if outcome is RequestOutcome.PROVIDER_FAILURE:
        return status is None or 200 <= status < 300 or status >= 500
    return False
