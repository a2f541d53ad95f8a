"""The mock server's token bucket: refill, burst, and retry hints staggered one refill slot apart."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from threadsched.mock.rate_limit import StaggeredTokenBucket


def test_burst_then_refusals_one_slot_apart() -> None:
    bucket = StaggeredTokenBucket(4.0, 2, now=0.0)
    assert [bucket.take(0.0) for _ in range(2)] == [None, None]
    assert [bucket.take(0.0) for _ in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert bucket.take(0.25) is None  # the first refused caller comes back at its slot
    assert bucket.take(0.3) == pytest.approx(1.25 - 0.3)  # a newcomer queues behind every promise
    assert bucket.take(0.5) is None


def test_refill_stops_at_burst_and_old_promises_expire() -> None:
    bucket = StaggeredTokenBucket(1.0, 3, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [None, None, None]
    assert bucket.take(0.0) == 1.0
    assert [bucket.take(100.0) for _ in range(4)] == [None, None, None, 1.0]


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (float("inf"), 1), (1.0, 0), (1.0, True)])
def test_invalid_parameters_are_named(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="StaggeredTokenBucket"):
        StaggeredTokenBucket(rate, burst, now=0.0)


@given(
    rate=st.floats(0.1, 100.0),
    burst=st.integers(1, 5),
    refused=st.integers(1, 30),
)
def test_callers_refused_together_each_find_a_token_at_their_slot(rate: float, burst: int, refused: int) -> None:
    """Everyone arrives at t=0; the refused come back exactly at their hints, in order: none is refused twice,
    and the hints are strictly increasing, one 1/rate apart."""
    bucket = StaggeredTokenBucket(rate, burst, now=0.0)
    assert all(bucket.take(0.0) is None for _ in range(burst))
    hints = [bucket.take(0.0) for _ in range(refused)]
    assert all(hint is not None and hint > 0 for hint in hints)
    slots = [float(hint) for hint in hints if hint is not None]
    gaps = [later - earlier for earlier, later in itertools.pairwise(slots)]
    assert all(gap == pytest.approx(1.0 / rate) for gap in gaps)
    for slot in slots:
        assert bucket.take(slot) is None


@given(st.lists(st.floats(0.0, 0.5), max_size=60))
def test_tokens_taken_never_exceed_what_the_rate_allows(advances: list[float]) -> None:
    """Whatever the arrival pattern, over [0, t] at most burst + rate * t requests get a token."""
    rate, burst = 3.0, 2
    bucket = StaggeredTokenBucket(rate, burst, now=0.0)
    now, granted = 0.0, 0
    for advance in advances:
        now += advance
        if bucket.take(now) is None:
            granted += 1
        assert granted <= burst + rate * now + 1e-9
