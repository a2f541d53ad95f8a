from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from threadsched import RetryPolicy
from threadsched.core.retry import MAX_BACKOFF_S


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
    assert min(delays) < 1.0 < max(delays)  # both ways, also at the cap: a capped delay still spreads


DELAYS = st.floats(min_value=0.0, max_value=MAX_BACKOFF_S, allow_nan=False, allow_infinity=False)
FLOORS = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False)  # a floor has no cap
JITTERS = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
ATTEMPTS = st.integers(min_value=1, max_value=5000)  # far past where initial * 2**(n-1) overflows a float


@given(initial=DELAYS, cap=DELAYS, jitter=JITTERS, attempt=ATTEMPTS, seed=st.integers(0, 2**32))
def test_jitter_spreads_the_capped_exponential_by_at_most_its_fraction_either_way(
    initial: float, cap: float, jitter: float, attempt: int, seed: int
) -> None:
    policy = RetryPolicy(backoff_initial=initial, backoff_max=cap, jitter=jitter)
    base = float(min(Fraction(cap), Fraction(initial) * 2 ** (attempt - 1)))  # exact: no float overflow
    delay = policy.backoff(attempt, random.Random(seed))
    assert math.isfinite(delay)
    assert base * (1 - jitter) * (1 - 1e-12) <= delay <= base * (1 + jitter) * (1 + 1e-12)


@given(initial=DELAYS, cap=DELAYS, jitter=JITTERS, attempt=ATTEMPTS, floor=FLOORS, seed=st.integers(0, 2**32))
def test_at_least_is_a_floor_and_changes_nothing_below_it(
    initial: float, cap: float, jitter: float, attempt: int, floor: float, seed: int
) -> None:
    policy = RetryPolicy(backoff_initial=initial, backoff_max=cap, jitter=jitter)
    unfloored = policy.backoff(attempt, random.Random(seed))
    floored = policy.backoff(attempt, random.Random(seed), at_least=floor)
    assert floored == max(floor, unfloored)  # the same draw: the floor only ever raises the delay


def test_a_floor_above_the_cap_wins_and_zero_is_no_floor() -> None:
    policy = RetryPolicy(backoff_initial=1.0, backoff_max=5.0, jitter=0)
    rng = random.Random(0)
    assert policy.backoff(1, rng, at_least=12.0) == 12.0  # a Retry-After longer than the cap is honoured
    assert policy.backoff(2, rng, at_least=0.5) == 2.0
    assert policy.backoff(2, rng, at_least=0) == policy.backoff(2, rng) == 2.0


@pytest.mark.parametrize("floor", [-0.1, math.inf, math.nan, True, "1"])
def test_bad_floor_names_the_argument_and_value(floor: object) -> None:
    with pytest.raises(ValueError, match=r"RetryPolicy\.backoff at_least must be a finite number >= 0, got "):
        RetryPolicy().backoff(1, random.Random(0), at_least=floor)  # type: ignore[arg-type]


def test_the_same_seed_gives_the_same_delay() -> None:
    policy = RetryPolicy(jitter=0.5)
    assert policy.backoff(2, random.Random(3)) == policy.backoff(2, random.Random(3))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_attempts": 0}, r"max_attempts must be an int >= 1, got 0"),
        ({"backoff_initial": -1}, r"backoff_initial must be a finite number >= 0, got -1"),
        ({"backoff_max": math.inf}, r"backoff_max must be a finite number >= 0, got inf"),
        ({"backoff_max": math.nan}, r"backoff_max must be a finite number >= 0, got nan"),
        ({"backoff_max": 1e300}, r"backoff_max must be at most 604800 \(a week\), got 1e\+300"),
        ({"backoff_initial": MAX_BACKOFF_S + 1}, r"backoff_initial must be at most 604800 \(a week\), got 604801.0"),
        ({"backoff_initial": 10**400}, r"backoff_initial must be at most 604800 \(a week\), got 1000"),
        ({"jitter": 1.5}, r"jitter must be <= 1 \(a fraction of the delay\), got 1.5"),
        ({"jitter": -0.1}, r"jitter must be a finite number >= 0, got -0.1"),
        ({"jitter": math.nan}, r"jitter must be a finite number >= 0, got nan"),
        ({"jitter": 10**400}, r"jitter must be <= 1 \(a fraction of the delay\), got 1000"),
    ],
)
def test_bad_values_name_the_field_and_value(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=r"^RetryPolicy\." + match):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_attempts": True}, r"max_attempts must be an int >= 1, got True"),
        ({"max_attempts": 2.0}, r"max_attempts must be an int >= 1, got 2.0"),
        ({"backoff_initial": True}, r"backoff_initial must be a number, got True"),
        ({"backoff_max": "10"}, r"backoff_max must be a number, got '10'"),
        ({"jitter": None}, r"jitter must be a number, got None"),
    ],
)
def test_bad_types_are_type_errors_naming_the_field_and_value(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(TypeError, match=r"^RetryPolicy\." + match):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_backoffs_up_to_a_week_are_accepted() -> None:
    policy = RetryPolicy(backoff_initial=MAX_BACKOFF_S, backoff_max=MAX_BACKOFF_S, jitter=1)
    assert policy.backoff(1, random.Random(0)) <= 2 * MAX_BACKOFF_S


def test_retry_on_must_be_a_tuple_of_exception_types() -> None:
    with pytest.raises(TypeError, match=r"retry_on must be a tuple of exception types, got \[<class 'ValueError'>\]"):
        RetryPolicy(retry_on=[ValueError])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="retry_on must be a tuple of exception types"):
        RetryPolicy(retry_on=(int,))  # type: ignore[arg-type]
