"""How one finished attempt ends: a pure function of what happened to it.

Kept apart from the dispatcher so every terminal path is decided by one rule that can be tested
without threads.
"""

from __future__ import annotations

from concurrent.futures import CancelledError
from typing import Final, Literal

from threadsched.core.retry import RetryPolicy

AttemptOutcome = Literal["succeeded", "failed", "cancelled", "retry", "timed_out"]

# The scheduler counter each outcome adds to (a timed-out attempt was counted at its deadline).
COUNTER_OF_OUTCOME: Final[dict[str, str]] = {
    "succeeded": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
    "retry": "retried",
}


def classify_outcome(
    *,
    started: bool,
    error: BaseException | None,
    timed_out: bool,
    cancel_requested: bool,
    retry: RetryPolicy,
    attempt: int,
) -> AttemptOutcome:
    """``started``: the function was called; ``error``: what it (or, unstarted, the executor) raised;
    ``cancel_requested``: the task's token is set or the scheduler is cancelling pending work."""
    if timed_out:
        return "timed_out"
    if error is None:
        return "succeeded" if started else "cancelled"
    if isinstance(error, CancelledError) and cancel_requested:
        return "cancelled"
    if not cancel_requested and retry.should_retry(error, attempt):
        return "retry"
    return "failed"
