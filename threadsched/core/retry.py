"""Retry policy: how many attempts a piece of work gets and how long to back off between them.

One value type for both layers. The scheduler retries a task whose error is a ``retry_on`` instance;
the model request layer (``threadsched.requests``) classifies each attempt's outcome itself and uses
only ``max_attempts`` and the back-off, with the provider's ``Retry-After`` as the floor
(``backoff(..., at_least=retry_after)``).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Final

MAX_BACKOFF_S: Final = 7 * 24 * 3600.0
"""The longest accepted ``backoff_initial`` / ``backoff_max``: one week. A wait that long belongs to a job
queue, not to an attempt held in memory; and with ``jitter`` (at most doubling it) every delay stays a valid
timeout for ``time.sleep`` and lock waits on every platform (Windows stops at about 49 days), where a
larger one raised ``OverflowError`` in the thread that waited."""


def _check_number(value: object, field_name: str, most: float, too_large: str) -> None:
    """A number from 0 to ``most``: a bool or non-number is a ``TypeError``; NaN, a negative, an infinity or
    anything above ``most`` a ``ValueError``. Compared, never converted: ``float(10**400)`` would raise
    ``OverflowError`` instead."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"RetryPolicy.{field_name} must be a number, got {value!r}")
    if not 0 <= value < math.inf:  # NaN fails every comparison
        raise ValueError(f"RetryPolicy.{field_name} must be a finite number >= 0, got {value!r}")
    if value > most:
        raise ValueError(f"RetryPolicy.{field_name} {too_large}, got {value!r}")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``max_attempts`` counts the first attempt. The back-off before attempt ``n + 1`` is
    ``min(backoff_max, backoff_initial * 2**(n-1)) * (1 + U(-jitter, +jitter))``: ``backoff_max`` caps the
    exponential growth and ``jitter`` spreads the capped delay by up to that fraction either way (so a
    delay at the cap still varies, by up to ``backoff_max * jitter`` above it), and never less than the
    caller's floor ``at_least``. ``backoff_initial`` and ``backoff_max`` are seconds from 0 to
    ``MAX_BACKOFF_S`` (a week), ``jitter`` a fraction from 0 to 1.

    ``retry_on``: the exception types the scheduler retries (``should_retry``; subclasses included;
    empty retries nothing). The request layer does not consult it: its executor decides from the
    classified outcome of each attempt (429, 5xx, timeouts and connection errors are retried, a rejected
    request is not), so a policy passed to ``ModelRequestExecutor`` may leave it empty."""

    max_attempts: int = 3
    retry_on: tuple[type[BaseException], ...] = ()
    backoff_initial: float = 0.1
    backoff_max: float = 10.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        attempts = self.max_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int):
            raise TypeError(f"RetryPolicy.max_attempts must be an int >= 1, got {attempts!r}")
        if attempts < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be an int >= 1, got {attempts!r}")
        if not isinstance(self.retry_on, tuple) or not all(
            isinstance(kind, type) and issubclass(kind, BaseException) for kind in self.retry_on
        ):
            raise TypeError(f"RetryPolicy.retry_on must be a tuple of exception types, got {self.retry_on!r}")
        _check_number(self.backoff_initial, "backoff_initial", MAX_BACKOFF_S, f"must be at most {MAX_BACKOFF_S:g} (a week)")
        _check_number(self.backoff_max, "backoff_max", MAX_BACKOFF_S, f"must be at most {MAX_BACKOFF_S:g} (a week)")
        _check_number(self.jitter, "jitter", 1, "must be <= 1 (a fraction of the delay)")

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        return attempt < self.max_attempts and isinstance(error, self.retry_on)

    def backoff(self, attempt: int, rng: random.Random, *, at_least: float = 0.0) -> float:
        """Delay in seconds before attempt ``attempt + 1`` (``attempt`` >= 1 is the attempt that just
        failed): exponential, capped, spread by +/- ``jitter``, and never less than ``at_least`` (e.g. a
        provider's ``Retry-After``; a floor above ``backoff_max`` wins)."""
        if isinstance(at_least, bool) or not isinstance(at_least, (int, float)) or not 0 <= at_least < math.inf:
            raise ValueError(f"RetryPolicy.backoff at_least must be a finite number >= 0, got {at_least!r}")
        try:
            grown = math.ldexp(self.backoff_initial, max(attempt - 1, 0))  # exactly initial * 2**(attempt-1)
        except OverflowError:  # past the largest float: the cap applies
            grown = math.inf
        delay = min(self.backoff_max, grown)
        if self.jitter:
            delay *= 1.0 + rng.uniform(-self.jitter, self.jitter)
        return max(float(at_least), delay, 0.0)


NO_RETRY = RetryPolicy(max_attempts=1)
