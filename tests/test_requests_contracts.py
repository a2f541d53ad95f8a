"""Request admission contracts (threadsched.requests.contracts): every argument of the keys, the config and the
item is checked at construction, the error naming the argument (TypeError for a wrong type, ValueError for a
value out of range, NaN and +-inf included)."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import numbers_inside, numbers_outside

from threadsched.requests import (
    ProviderModelKey,
    RequestAdmissionConfig,
    RequestAdmissionItem,
    RequestDomain,
    RequestResourceKey,
)
from threadsched.requests.contracts import MAX_CEILING_HOLD_S, MAX_COOLDOWN_S, MAX_REQUEST_LIMIT

PM = ProviderModelKey("mock", "fast")
CHAT = RequestResourceKey("mock", "fast")


def config_with(name: str, value: object) -> RequestAdmissionConfig:
    """A config whose argument ``name`` is ``value`` (``caps`` means the one cap's value)."""
    if name == "caps":
        return RequestAdmissionConfig(caps={PM: value})  # type: ignore[dict-item]
    return RequestAdmissionConfig(caps={PM: 4}, **{name: value})


# argument -> (how its errors name it, minimum, maximum, integer, exclusive minimum)
NUMERIC: dict[str, tuple[str, float, float, bool, bool]] = {
    "caps": (r"RequestAdmissionConfig\.caps\[mock/fast\]", 1, MAX_REQUEST_LIMIT, True, False),
    "initial_limit": (r"RequestAdmissionConfig\.initial_limit", 1, MAX_REQUEST_LIMIT, True, False),
    "increase_step": (r"RequestAdmissionConfig\.increase_step", 1, MAX_REQUEST_LIMIT, True, False),
    "successes_until_increase": (r"RequestAdmissionConfig\.successes_until_increase", 1, MAX_REQUEST_LIMIT, True, False),
    "decrease_factor": (r"RequestAdmissionConfig\.decrease_factor", 0, math.nextafter(1.0, 0.0), False, True),
    "default_cooldown_s": (r"RequestAdmissionConfig\.default_cooldown_s", 0, MAX_COOLDOWN_S, False, False),
    "max_cooldown_s": (r"RequestAdmissionConfig\.max_cooldown_s", 0, MAX_COOLDOWN_S, False, False),
    "ceiling_hold_s": (r"RequestAdmissionConfig\.ceiling_hold_s", 0, MAX_CEILING_HOLD_S, False, False),
}


def drawn(strategy: Callable[..., st.SearchStrategy[Any]]) -> st.SearchStrategy[tuple[str, Any]]:
    def values(name: str) -> st.SearchStrategy[tuple[str, Any]]:
        _, low, high, integer, exclusive = NUMERIC[name]
        return st.tuples(st.just(name), strategy(low, high, integer=integer, exclusive_minimum=exclusive))

    return st.sampled_from(sorted(NUMERIC)).flatmap(values)


@settings(max_examples=600, deadline=None)
@given(drawn(numbers_outside) | st.tuples(st.just("decrease_factor"), st.sampled_from([1, 1.0])))
def test_a_numeric_config_argument_outside_its_range_is_refused_naming_it(case: tuple[str, object]) -> None:
    name, value = case
    with pytest.raises((TypeError, ValueError), match=NUMERIC[name][0] + " must be "):
        config_with(name, value)


@settings(max_examples=300, deadline=None)
@given(drawn(numbers_inside))
def test_a_numeric_config_argument_inside_its_range_is_kept(case: tuple[str, object]) -> None:
    name, value = case
    config = config_with(name, value)
    assert (config.caps[PM] if name == "caps" else getattr(config, name)) == value


def test_the_bounds_themselves_are_accepted() -> None:
    config = RequestAdmissionConfig(
        caps={PM: MAX_REQUEST_LIMIT},
        initial_limit=MAX_REQUEST_LIMIT,
        increase_step=MAX_REQUEST_LIMIT,
        successes_until_increase=1,
        default_cooldown_s=MAX_COOLDOWN_S,
        max_cooldown_s=0,
        ceiling_hold_s=MAX_CEILING_HOLD_S,
    )
    assert config.aggregate_cap(PM) == MAX_REQUEST_LIMIT


def test_a_huge_int_is_named_by_its_size() -> None:
    """repr of an int over 4300 digits raises: the message shows its size instead."""
    with pytest.raises(ValueError, match=r"caps\[mock/fast\] must be an int in \[1, 1_000_000\], got an int of 16610 bits"):
        RequestAdmissionConfig(caps={PM: 10**5000})
    with pytest.raises(ValueError, match=r"max_cooldown_s must be a finite number in \[0, 3_600\], got 1e\+300"):
        RequestAdmissionConfig(caps={PM: 1}, max_cooldown_s=1e300)


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: ProviderModelKey(3, "m"), TypeError, r"ProviderModelKey\.provider must be a non-empty str, got 3"),
        (lambda: ProviderModelKey("p", " "), ValueError, r"ProviderModelKey\.model must be a non-empty str"),
        (lambda: ProviderModelKey.parse(None), TypeError, r"provider/model must be a non-empty str, got None"),
        (lambda: ProviderModelKey.parse("nomodel"), ValueError, r"expected 'provider/model', got 'nomodel'"),
        (lambda: RequestResourceKey(b"p", "m"), TypeError, r"RequestResourceKey\.provider must be a non-empty str"),
        (lambda: RequestResourceKey("p", ""), ValueError, r"RequestResourceKey\.model must be a non-empty str"),
        (lambda: RequestResourceKey("p", "m", "chat"), TypeError, r"RequestResourceKey\.domain must be a RequestDomain"),
        (lambda: RequestAdmissionConfig(caps=[(PM, 1)]), TypeError, r"RequestAdmissionConfig\.caps must be a non-empty mapping"),
        (lambda: RequestAdmissionConfig(caps={}), ValueError, r"RequestAdmissionConfig\.caps must be a non-empty mapping"),
        (lambda: RequestAdmissionConfig(caps={"mock/fast": 1}), TypeError, r"RequestAdmissionConfig\.caps keys must be"),
        (lambda: RequestAdmissionConfig(caps={PM: 1}, aliases=[PM]), TypeError, r"RequestAdmissionConfig\.aliases must be"),
        (lambda: RequestAdmissionConfig(caps={PM: 1}, aliases={"a/b": PM}), TypeError, r"aliases must map ProviderModelKey"),
        (lambda: RequestAdmissionConfig(caps={PM: 1}, aliases={ProviderModelKey("a", "b"): ProviderModelKey("x", "y")}),
         ValueError, r"RequestAdmissionConfig\.aliases\[a/b\] must name a provider/model in caps"),
        (lambda: RequestAdmissionItem("mock/fast"), TypeError, r"RequestAdmissionItem\.resource must be a RequestResourceKey"),
        (lambda: RequestAdmissionItem(CHAT, group=["g"]), TypeError, r"RequestAdmissionItem\.group must be hashable"),
        (lambda: RequestAdmissionItem(CHAT, correlation=[("run_id", "r")]), TypeError,
         r"RequestAdmissionItem\.correlation must be a mapping"),
    ],
)  # fmt: skip
def test_a_wrong_argument_is_refused_naming_it(build: Callable[[], object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        build()


@settings(max_examples=200, deadline=None)
@given(numbers_outside(0, sys.float_info.max, exclusive_minimum=True).filter(lambda v: not _rounds_to_a_float(v)))
def test_an_item_weight_that_is_no_finite_positive_number_is_refused_naming_it(weight: object) -> None:
    with pytest.raises((TypeError, ValueError), match=r"RequestAdmissionItem\.weight "):
        RequestAdmissionItem(CHAT, weight=weight)  # type: ignore[arg-type]


def _rounds_to_a_float(value: object) -> bool:
    """An int just past the largest float that still converts to it: a finite weight, not outside."""
    return isinstance(value, int) and not isinstance(value, bool) and sys.float_info.max < value < 2**1024 - 2**970


def test_good_keys_and_items_are_built() -> None:
    item = RequestAdmissionItem(RequestResourceKey("p", "m", RequestDomain.EMBEDDING), ("tenant", 1), 2, MappingProxyType({}))
    assert (item.group, item.weight, str(item.resource)) == (("tenant", 1), 2, "p/m:embedding")
    assert ProviderModelKey.parse("p/a/b") == ProviderModelKey("p", "a/b")
