"""The mock server's rate limit: a token bucket whose refusals carry staggered retry hints.

``rate`` tokens per second refill a bucket of ``burst`` tokens (starting full); a request takes one.
A refused caller is told when to come back: the earliest refill slot not already promised to a caller
refused before it. Slots are ``1/rate`` seconds apart, so refused callers return one by one and each
finds its token, instead of all returning at the next refill where all but one would be refused again.
A hint is advice, not a reservation: whoever comes first when a token is there takes it.

Not thread-safe on its own: ``MockOpenAIServer`` calls it under its lock; the clock is passed in.
"""

from __future__ import annotations

import math

__all__ = ["StaggeredTokenBucket"]

_EPSILON = 1e-9  # a caller back exactly at its slot finds the token, whatever the float rounding of the refill


class StaggeredTokenBucket:
    __slots__ = ("_next_unpromised_slot", "_refilled_at", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        if not 0 < rate < math.inf:
            raise ValueError(f"StaggeredTokenBucket.rate must be a finite number > 0, got {rate!r}")
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ValueError(f"StaggeredTokenBucket.burst must be an int >= 1, got {burst!r}")
        self.rate = float(rate)
        self.burst = burst
        self._tokens = float(burst)
        self._refilled_at = now
        self._next_unpromised_slot = -math.inf  # the first refill slot no refused caller was told

    def take(self, now: float) -> float | None:
        """Take a token (None), or refuse with the seconds until this caller's slot (> 0)."""
        self._tokens = min(float(self.burst), self._tokens + max(0.0, now - self._refilled_at) * self.rate)
        self._refilled_at = max(now, self._refilled_at)
        if self._tokens >= 1.0 - _EPSILON:
            self._tokens -= 1.0
            return None
        slot = max(now + (1.0 - self._tokens) / self.rate, self._next_unpromised_slot)
        self._next_unpromised_slot = slot + 1.0 / self.rate
        return slot - now

    def __repr__(self) -> str:
        return f"<StaggeredTokenBucket rate={self.rate:g}/s burst={self.burst} tokens={self._tokens:.3g}>"
