"""Contract validation: bad values fail at construction, naming the field and the value."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import pytest

from threadsched.core.contracts import (
    MAX_RESOURCE_UNITS,
    MAX_WEIGHT,
    MIN_WEIGHT,
    SUBMISSION,
    VIRTUAL_TIME_QUANTA,
    SchedulableTask,
    SchedulerResourceRequest,
    TaskGroupSpec,
    fair_share_quanta,
    fair_share_step,
    shown,
    validate_weight,
)
from threadsched.requests import ModelRequest, RequestAdmissionItem, RequestDomain, RequestResourceKey


def field_and_value(field: str, value: object) -> str:
    """A regex requiring the message to name the field, then show the offending value."""
    return rf"{re.escape(field)}.*{re.escape(repr(value))}"


# --------------------------------------------------------------------------------------------
# TaskGroupSpec
# --------------------------------------------------------------------------------------------


def test_group_spec_defaults_and_valid_values() -> None:
    spec = TaskGroupSpec("g")
    assert (spec.key, spec.weight, spec.admitted_limit) == ("g", 1.0, None)
    assert TaskGroupSpec(("tenant", 3), weight=2, admitted_limit=1).weight == 2
    assert TaskGroupSpec(7, weight=0.5).weight == 0.5  # below 1 is valid, and honoured as half the share
    assert TaskGroupSpec(None).key is None
    assert TaskGroupSpec(frozenset({1}), weight=8.0, admitted_limit=100).admitted_limit == 100


@pytest.mark.parametrize("weight", [math.nan, math.inf, -math.inf, 0, 0.0, -0.0, -1, -2.5])
def test_group_spec_rejects_non_finite_or_non_positive_weight(weight: float) -> None:
    with pytest.raises(ValueError, match=field_and_value("TaskGroupSpec.weight", weight)):
        TaskGroupSpec("g", weight=weight)


@pytest.mark.parametrize("weight", [True, False, "2", None, [1]])
def test_group_spec_rejects_bool_or_non_number_weight(weight: object) -> None:
    # A bool is an int to Python, but weight=True is a bug, not a weight of 1.
    with pytest.raises(TypeError, match=field_and_value("TaskGroupSpec.weight", weight)):
        TaskGroupSpec("g", weight=weight)  # type: ignore[arg-type]


@pytest.mark.parametrize("limit", [0, -1, -100])
def test_group_spec_rejects_admitted_limit_below_one(limit: int) -> None:
    with pytest.raises(ValueError, match=field_and_value("TaskGroupSpec.admitted_limit", limit)):
        TaskGroupSpec("g", admitted_limit=limit)


@pytest.mark.parametrize("limit", [True, 1.5, "2"])
def test_group_spec_rejects_non_int_admitted_limit(limit: object) -> None:
    with pytest.raises(TypeError, match=field_and_value("TaskGroupSpec.admitted_limit", limit)):
        TaskGroupSpec("g", admitted_limit=limit)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", [["a"], {"a": 1}, {"a"}, ("ok", ["nested"])])
def test_group_spec_rejects_unhashable_key(key: object) -> None:
    with pytest.raises(TypeError, match=field_and_value("TaskGroupSpec.key", key)):
        TaskGroupSpec(key)


def test_group_spec_is_frozen_and_hashable() -> None:
    spec = TaskGroupSpec(("t", 1), weight=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.weight = 3  # type: ignore[misc]
    assert spec == TaskGroupSpec(("t", 1), weight=2)
    assert hash(spec) == hash(TaskGroupSpec(("t", 1), weight=2))
    assert spec != TaskGroupSpec(("t", 1), weight=3)


# --------------------------------------------------------------------------------------------
# One weight rule for the task queue and the request layer
# --------------------------------------------------------------------------------------------

RESOURCE = RequestResourceKey("mock", "m", RequestDomain.CHAT)
WEIGHTED: dict[str, Callable[[object], Any]] = {
    "TaskGroupSpec.weight": lambda weight: TaskGroupSpec("g", weight=weight),  # type: ignore[arg-type]
    "RequestAdmissionItem.weight": lambda weight: RequestAdmissionItem(RESOURCE, "g", weight),  # type: ignore[arg-type]
    "ModelRequest.weight": lambda weight: ModelRequest(RESOURCE, {}, "g", weight),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("weight", [MIN_WEIGHT, 1e-5, 0.25, 0.5, 1, 3, 7.5, 10**6, MAX_WEIGHT])
def test_validate_weight_accepts_every_number_of_the_documented_range(weight: float) -> None:
    assert validate_weight("w", weight) == weight
    assert type(validate_weight("w", weight)) is float
    assert fair_share_step(weight) == 1 / weight


@pytest.mark.parametrize("weight", [MIN_WEIGHT, 1e-3, 1 / 3, 1, 3, 1e6 / 3, MAX_WEIGHT])
def test_a_weight_steps_virtual_time_by_its_reciprocal_in_whole_quanta(weight: float) -> None:
    quanta = fair_share_quanta(weight)
    assert type(quanta) is int
    assert TaskGroupSpec("g", weight=weight).quanta == quanta
    # Rounding to a whole quantum errs by at most half a quantum, under 1e-9 of the smallest step.
    assert abs(quanta - Fraction(VIRTUAL_TIME_QUANTA) / Fraction(weight)) <= Fraction(1, 2)
    assert quanta >= 10**9


@pytest.mark.parametrize(("light", "heavy"), [(1, 3), (3, 6), (2.5, 7.5), (1, 16), (0.25, 13), (1 / 64, 15 / 4)])
def test_weights_whose_shares_tie_exactly_have_steps_that_tie_exactly(light: float, heavy: float) -> None:
    ratio = Fraction(heavy) / Fraction(light)
    assert ratio.denominator == 1
    assert fair_share_quanta(light) == ratio.numerator * fair_share_quanta(heavy)


def test_the_quanta_of_a_group_are_derived_not_part_of_its_value() -> None:
    spec = TaskGroupSpec("g", weight=2)
    assert "quanta" not in repr(spec)
    assert spec == TaskGroupSpec("g", weight=2.0)
    assert dataclasses.replace(spec, weight=4).quanta == fair_share_quanta(4)


@pytest.mark.parametrize("field", list(WEIGHTED))
@pytest.mark.parametrize("weight", [0.5, 0.01, 2])
def test_weight_below_or_above_one_is_valid_in_both_layers(field: str, weight: float) -> None:
    assert WEIGHTED[field](weight).weight == weight


@pytest.mark.parametrize("field", list(WEIGHTED))
@pytest.mark.parametrize("weight", [math.nan, math.inf, -math.inf, 0, 0.0, -0.0, -1, -0.5])
def test_non_finite_or_non_positive_weight_is_a_value_error_naming_the_field(field: str, weight: float) -> None:
    with pytest.raises(ValueError, match=field_and_value(field, weight)):
        WEIGHTED[field](weight)


@pytest.mark.parametrize("field", list(WEIGHTED))
@pytest.mark.parametrize("weight", [True, False, "2", None, [1]])
def test_bool_or_non_number_weight_is_a_type_error_naming_the_field(field: str, weight: object) -> None:
    with pytest.raises(TypeError, match=field_and_value(field, weight)):
        WEIGHTED[field](weight)


@pytest.mark.parametrize("field", list(WEIGHTED))
@pytest.mark.parametrize("weight", [1e-309, 1e-16, 9.99e-7, 1.000001e6, 1e300, pytest.param(10**400, id="10**400"), 10**7])
def test_weight_outside_the_documented_range_is_refused_in_both_layers(field: str, weight: float) -> None:
    # 1e-16 was accepted: such a group pushed the float clock so far that later steps rounded away.
    shown = "an int of about 401 digits" if weight == 10**400 else repr(weight)
    with pytest.raises(ValueError, match=rf"{re.escape(field)} must be a number from 1e-06 to 1e\+06, got {re.escape(shown)}$"):
        WEIGHTED[field](weight)


# --------------------------------------------------------------------------------------------
# SchedulerResourceRequest
# --------------------------------------------------------------------------------------------


def test_request_normalization_adds_one_submission() -> None:
    assert dict(SchedulerResourceRequest().amounts) == {SUBMISSION: 1}
    assert dict(SchedulerResourceRequest(None).amounts) == {SUBMISSION: 1}
    assert dict(SchedulerResourceRequest({}).amounts) == {SUBMISSION: 1}
    assert dict(SchedulerResourceRequest({"llm:a": 1}).amounts) == {SUBMISSION: 1, "llm:a": 1}
    assert dict(SchedulerResourceRequest({"submission": 1, "gpu": 2}).amounts) == {SUBMISSION: 1, "gpu": 2}
    assert dict(SchedulerResourceRequest({"llm:a": 2, "gpu": 1})) == {SUBMISSION: 1, "llm:a": 2, "gpu": 1}


def test_request_contended_resources() -> None:
    assert SchedulerResourceRequest().contended == frozenset({SUBMISSION})
    assert SchedulerResourceRequest({"llm:a": 1, "gpu": 2}).contended == frozenset({"llm:a", "gpu"})


def test_request_signature_is_the_keys_other_than_submission() -> None:
    assert SchedulerResourceRequest().signature == frozenset()
    assert SchedulerResourceRequest({SUBMISSION: 1}).signature == frozenset()
    assert SchedulerResourceRequest({"llm:a": 2, "gpu": 1}).signature == frozenset({"llm:a", "gpu"})
    # Derived, not part of the value: equal requests are equal whatever their signature object.
    assert "signature" not in repr(SchedulerResourceRequest({"llm:a": 1}))


def test_request_copies_and_freezes_its_input() -> None:
    source = {"llm:a": 1}
    request = SchedulerResourceRequest(source)
    source["llm:a"] = 5
    source["gpu"] = 1
    assert dict(request.amounts) == {SUBMISSION: 1, "llm:a": 1}
    with pytest.raises(TypeError):
        request.amounts["llm:a"] = 2  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.amounts = {}  # type: ignore[misc]


def test_request_equality_and_hash_ignore_explicit_submission_and_order() -> None:
    a = SchedulerResourceRequest({"llm:a": 1, "gpu": 2})
    b = SchedulerResourceRequest({"gpu": 2, SUBMISSION: 1, "llm:a": 1})
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    assert SchedulerResourceRequest() == SchedulerResourceRequest({SUBMISSION: 1})
    assert hash(SchedulerResourceRequest()) == hash(SchedulerResourceRequest({SUBMISSION: 1}))
    assert a != SchedulerResourceRequest({"llm:a": 1, "gpu": 1})
    assert a != SchedulerResourceRequest({"llm:a": 1})
    assert a != {SUBMISSION: 1, "llm:a": 1, "gpu": 2}  # not equal to a plain mapping


@pytest.mark.parametrize(("key", "error"), [("", ValueError), (3, TypeError), (None, TypeError), (("llm", "a"), TypeError)])
def test_request_rejects_empty_or_non_str_key(key: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=field_and_value("SchedulerResourceRequest.amounts", key)):
        SchedulerResourceRequest({key: 1})  # type: ignore[dict-item]


@pytest.mark.parametrize("amount", [0, -1, MAX_RESOURCE_UNITS + 1])
def test_request_rejects_an_amount_outside_one_to_the_maximum(amount: int) -> None:
    with pytest.raises(ValueError, match=field_and_value("SchedulerResourceRequest.amounts['llm:a']", amount)):
        SchedulerResourceRequest({"llm:a": amount})


@pytest.mark.parametrize("amount", [1.0, 2.5, "1", None, True, False])
def test_request_rejects_a_non_int_or_bool_amount(amount: object) -> None:
    with pytest.raises(TypeError, match=field_and_value("SchedulerResourceRequest.amounts['llm:a']", amount)):
        SchedulerResourceRequest({"llm:a": amount})  # type: ignore[dict-item]


def test_request_takes_amounts_up_to_the_maximum() -> None:
    request = SchedulerResourceRequest({"bytes": MAX_RESOURCE_UNITS, "llm:a": 1})
    assert request.counted == (("bytes", MAX_RESOURCE_UNITS), ("llm:a", 1))
    assert request.pairs == ((SUBMISSION, 1), *request.counted)


@pytest.mark.parametrize("amount", [2, 3, 100])
def test_request_rejects_submission_other_than_one(amount: int) -> None:
    with pytest.raises(ValueError, match=field_and_value("SchedulerResourceRequest.amounts['submission']", amount)):
        SchedulerResourceRequest({SUBMISSION: amount})


@pytest.mark.parametrize(("amount", "error"), [(0, ValueError), (-1, ValueError), (True, TypeError), (1.0, TypeError)])
def test_request_rejects_bad_submission_amount(amount: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=field_and_value("SchedulerResourceRequest.amounts['submission']", amount)):
        SchedulerResourceRequest({SUBMISSION: amount})  # type: ignore[dict-item]


# --------------------------------------------------------------------------------------------
# SchedulableTask
# --------------------------------------------------------------------------------------------


def test_task_defaults() -> None:
    task = SchedulableTask("t1", {"row": 1}, TaskGroupSpec("g"))
    assert task.resource_request == SchedulerResourceRequest()
    assert dict(task.resource_request.amounts) == {SUBMISSION: 1}
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.task_id = "t2"  # type: ignore[misc]


@pytest.mark.parametrize("task_id", ["", None, 5, b"t1"])
def test_task_rejects_empty_or_non_str_id(task_id: object) -> None:
    with pytest.raises(ValueError, match=field_and_value("SchedulableTask.task_id", task_id)):
        SchedulableTask(task_id, None, TaskGroupSpec("g"))  # type: ignore[arg-type]


@pytest.mark.parametrize("group", ["g", None, ("g", 1.0), {"key": "g"}])
def test_task_rejects_wrong_group_type(group: object) -> None:
    with pytest.raises(TypeError, match=field_and_value("SchedulableTask.group", group)):
        SchedulableTask("t1", None, group)  # type: ignore[arg-type]


@pytest.mark.parametrize("request_", [{"llm:a": 1}, None, "submission"])
def test_task_rejects_wrong_resource_request_type(request_: object) -> None:
    with pytest.raises(TypeError, match=field_and_value("SchedulableTask.resource_request", request_)):
        SchedulableTask("t1", None, TaskGroupSpec("g"), request_)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# How a bad number is shown
# --------------------------------------------------------------------------------------------


def test_an_int_too_long_to_print_is_shown_by_its_size() -> None:
    assert shown(10**39) == repr(10**39)
    assert shown(-(10**5000)) == "an int of about 5001 digits"  # repr would raise: past 4300 digits
    with pytest.raises(
        ValueError, match=r"TaskGroupSpec\.weight must be a number from 1e-06 to 1e\+06, got an int of about 5001"
    ):
        TaskGroupSpec("g", weight=10**5000)
