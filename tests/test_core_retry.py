from __future__ import annotations

import math
import random

import pytest

from threadsched import RetryPolicy


class Transient(Exception):
    pass


class Special(Transient):
    pass


def test_max_attempts_counts_the_first_attempt() -> None:
    policy = RetryPolicy(max_attempts=3, retry_on=(Transient,))
    assert policy.should_retry(Transient(), attempt=1)
    assert policy.should_retry(Special(), attempt=2)  # subclasses are retryable too
    assert not policy.should_retry(Transient(), attempt=3)
    assert not policy.should_retry(ValueError(), attempt=1)


def test_default_policy_retries_nothing() -> None:
    assert not RetryPolicy().should_retry(Exception(), attempt=1)


def test_backoff_is_exponential_and_capped_without_jitter() -> None:
    policy = RetryPolicy(backoff_initial=0.5, backoff_max=3.0, jitter=0)
    rng = random.Random(0)
    assert [policy.backoff(attempt, rng) for attempt in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_jitter_stays_within_its_fraction() -> None:
    policy = RetryPolicy(backoff_initial=1.0, backoff_max=1.0, jitter=0.25)
    rng = random.Random(1)
    delays = [policy.backoff(1, rng) for _ in range(200)]
    assert all(0.75 <= delay <= 1.25 for delay in delays)
    assert len(set(delays)) > 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_attempts": 0}, r"max_attempts must be an int >= 1, got 0"),
        ({"max_attempts": True}, r"max_attempts must be an int >= 1, got True"),
        ({"backoff_initial": -1}, r"backoff_initial must be a finite number >= 0, got -1"),
        ({"backoff_max": math.inf}, r"backoff_max must be a finite number >= 0, got inf"),
        ({"jitter": 1.5}, r"jitter must be <= 1 \(a fraction of the delay\), got 1.5"),
    ],
)
def test_bad_values_name_the_field_and_value(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_retry_on_must_be_a_tuple_of_exception_types() -> None:
    with pytest.raises(TypeError, match=r"retry_on must be a tuple of exception types, got \[<class 'ValueError'>\]"):
        RetryPolicy(retry_on=[ValueError])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="retry_on must be a tuple of exception types"):
        RetryPolicy(retry_on=(int,))  # type: ignore[arg-type]
