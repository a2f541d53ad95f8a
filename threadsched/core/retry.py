"""Retry policy: which failures are retried and how long to back off before the next attempt."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


def _non_negative(value: object, field_name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"RetryPolicy.{field_name} must be a finite number >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``max_attempts`` counts the first attempt; a ``retry_on`` instance is retryable."""

    max_attempts: int = 3
    retry_on: tuple[type[BaseException], ...] = ()
    backoff_initial: float = 0.1
    backoff_max: float = 10.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        attempts = self.max_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be an int >= 1, got {attempts!r}")
        if not isinstance(self.retry_on, tuple) or not all(
            isinstance(kind, type) and issubclass(kind, BaseException) for kind in self.retry_on
        ):
            raise TypeError(f"RetryPolicy.retry_on must be a tuple of exception types, got {self.retry_on!r}")
        _non_negative(self.backoff_initial, "backoff_initial")
        _non_negative(self.backoff_max, "backoff_max")
        jitter = _non_negative(self.jitter, "jitter")
        if jitter > 1:
            raise ValueError(f"RetryPolicy.jitter must be <= 1 (a fraction of the delay), got {self.jitter!r}")

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        return attempt < self.max_attempts and isinstance(error, self.retry_on)

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Delay before attempt ``attempt + 1``: exponential, capped, with +/- ``jitter`` spread."""
        base = min(self.backoff_max, self.backoff_initial * (2 ** (attempt - 1)))
        if self.jitter:
            base *= 1.0 + rng.uniform(-self.jitter, self.jitter)
        return max(0.0, float(base))


NO_RETRY = RetryPolicy(max_attempts=1)
