"""Task contracts shared by the queue, the admission controller and the scheduler.

Everything here is immutable and validated at construction, so a bad value is reported
where it was written, naming the field and the value, instead of surfacing as a hang later.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

SUBMISSION = "submission"
"""The resource every task holds exactly one unit of: one worker slot."""


def _frozen_mapping(values: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType(dict(values))


MIN_WEIGHT: Final = 1e-6
MAX_WEIGHT: Final = 1e6
"""The accepted weights: a group's share relative to the others, six orders of magnitude either side of the
default 1. Between them any ratio up to 10**12 can be expressed, far past one an observer could tell from a
priority (the light group would run once per 10**12 tasks), and every step is a whole number of
``VIRTUAL_TIME_QUANTA`` at least 10**9 quanta long, so rounding it to a whole quantum errs by under 1e-9."""

VIRTUAL_TIME_QUANTA: Final = 720720 * 2**31
"""Quanta of the queue's virtual time per unit of service at weight 1. Virtual time is an integer count of
quanta, so it is exact however long a run grows it (a float clock, pushed far by a tiny-weight group,
would round the steps of heavier groups away: weights 1:3 would share 1:1). 720720 is the least common
multiple of 1 to 16: the step of every integer weight up to 16, and of one divided by a power of two (0.5,
2.5, 7.5, 0.25, ...), is a whole number of quanta, so groups whose exact shares tie still tie (and go by
activation order); the smallest step, at ``MAX_WEIGHT``, is over 10**9 quanta."""

MAX_RESOURCE_UNITS: Final = 10**12
"""The largest accepted resource limit or amount (and submission capacity): 10**12 units cover bytes up to
a terabyte and tokens far past any quota, and stay exact in every JSON reader that holds numbers as doubles
(below 2**53), so event logs and reports never round an amount."""


def shown(value: object) -> str:
    """``repr(value)`` for an error message, but an int of more than 40 digits by its size: repr of an int
    past 4300 digits itself raises ``ValueError``, and a message of hundreds of digits names nothing."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**40:
        return f"an int of about {math.floor(math.log10(abs(value))) + 1} digits"
    return repr(value)


def real_number(field_name: str, value: object) -> int | float:
    """``value`` if it is an int or a float and not a bool (``True`` is an int to Python, but a bug here),
    else ``TypeError`` naming the field. Comparisons on the result are exact even for an int too large for a
    float, so callers compare instead of converting (``math.isfinite(10**400)`` raises ``OverflowError``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{field_name} must be a number, got {shown(value)}")
    return value


def whole_units(field_name: str, value: object, *, most: int | None = MAX_RESOURCE_UNITS) -> int:
    """``value`` as a count of units: an int (not a bool; ``TypeError``) from 1 to ``most`` (``ValueError``)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field_name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{field_name} must be a positive int, got {shown(value)}")
    if most is not None and value > most:
        raise ValueError(f"{field_name} must be at most {most:_}, got {shown(value)}")
    return value


def validate_weight(field_name: str, value: object) -> float:
    """``value`` as a fairness weight: a number from ``MIN_WEIGHT`` to ``MAX_WEIGHT``, returned as a float.

    One rule for the task queue and the request layer. A bool or a non-number is a ``TypeError``; NaN, an
    infinity, zero, a negative or anything outside the range is a ``ValueError`` naming the field.
    """
    number = real_number(field_name, value)
    # One chained comparison refuses NaN (every comparison is False), the infinities and any int, however
    # large, without converting it to a float first.
    if not MIN_WEIGHT <= number <= MAX_WEIGHT:
        raise ValueError(f"{field_name} must be a number from {MIN_WEIGHT:g} to {MAX_WEIGHT:g}, got {shown(value)}")
    return float(number)


def fair_share_step(weight: float) -> float:
    """How far one unit of service moves a group's finish tag in weighted virtual time: a group of
    weight ``w`` is served ``w`` times as often as one of weight 1 while both are backlogged. Both clocks,
    the task queue's and the request layer's, count it in whole quanta (``fair_share_quanta``)."""
    return 1.0 / weight


def fair_share_quanta(weight: float) -> int:
    """``fair_share_step(weight)`` in whole ``VIRTUAL_TIME_QUANTA``: the task queue's integer step, the exact
    reciprocal of the (float) weight rounded to the nearest quantum, computed in integers (a float quotient
    would round to 53 bits first)."""
    numerator, denominator = float(weight).as_integer_ratio()
    return (2 * VIRTUAL_TIME_QUANTA * denominator + numerator) // (2 * numerator)


@dataclass(frozen=True, slots=True)
class TaskGroupSpec:
    """A stream of work sharing one fairness weight and an optional cap on running tasks."""

    key: Hashable
    weight: float = 1.0
    admitted_limit: int | None = None
    # The weight's step in whole quanta of virtual time, computed once here: the queue's commit reads it.
    quanta: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            hash(self.key)
        except TypeError:
            raise TypeError(f"TaskGroupSpec.key must be hashable, got {self.key!r}") from None
        object.__setattr__(self, "quanta", fair_share_quanta(validate_weight("TaskGroupSpec.weight", self.weight)))
        limit = self.admitted_limit
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int):
                raise TypeError(f"TaskGroupSpec.admitted_limit must be an int or None, got {limit!r}")
            if limit < 1:
                raise ValueError(f"TaskGroupSpec.admitted_limit must be >= 1, got {limit!r}")


@dataclass(frozen=True, slots=True, init=False)
class SchedulerResourceRequest:
    """Scheduler-level resources one task needs; always exactly one ``submission`` unit."""

    amounts: Mapping[str, int] = field(default_factory=lambda: _frozen_mapping({SUBMISSION: 1}))
    # The same amounts as a tuple: iterating it is the admission hot path.
    pairs: tuple[tuple[str, int], ...] = field(default=(), repr=False, compare=False)
    # The resource keys other than submission. The queue files a group under its head's signature so
    # that a select can pass over every group waiting on an exhausted resource at once.
    signature: frozenset[str] = field(default=frozenset(), repr=False, compare=False)
    # The pairs other than submission: the counted resources the controller checks before it takes the slot.
    counted: tuple[tuple[str, int], ...] = field(default=(), repr=False, compare=False)

    def __init__(self, amounts: Mapping[str, int] | None = None) -> None:
        normalized: dict[str, int] = {SUBMISSION: 1}
        for key, amount in (amounts or {}).items():
            if not isinstance(key, str):
                raise TypeError(f"SchedulerResourceRequest.amounts: resource key must be a non-empty str, got {key!r}")
            if not key:
                raise ValueError(f"SchedulerResourceRequest.amounts: resource key must be a non-empty str, got {key!r}")
            whole_units(f"SchedulerResourceRequest.amounts[{key!r}]", amount)
            if key == SUBMISSION and amount != 1:
                raise ValueError(f"SchedulerResourceRequest.amounts['submission'] must be 1, got {amount!r}")
            normalized[key] = amount
        object.__setattr__(self, "amounts", _frozen_mapping(normalized))
        object.__setattr__(self, "pairs", tuple(normalized.items()))
        object.__setattr__(self, "signature", frozenset(key for key in normalized if key != SUBMISSION))
        object.__setattr__(self, "counted", tuple(pair for pair in normalized.items() if pair[0] != SUBMISSION))

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return iter(self.amounts.items())

    def __hash__(self) -> int:
        return hash(frozenset(self.amounts.items()))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SchedulerResourceRequest):
            return NotImplemented
        return dict(self.amounts) == dict(other.amounts)

    def __repr__(self) -> str:
        return f"SchedulerResourceRequest({dict(self.amounts)!r})"

    @property
    def contended(self) -> frozenset[str]:
        """Resources that decide contention with peers: those other than submission, else submission."""
        return self.signature or _SUBMISSION_ONLY


_SUBMISSION_ONLY = frozenset((SUBMISSION,))
DEFAULT_REQUEST = SchedulerResourceRequest()


@dataclass(frozen=True, slots=True)
class SchedulableTask:
    """One ready unit of work as the queue and the controller see it."""

    task_id: str
    payload: Any
    group: TaskGroupSpec
    resource_request: SchedulerResourceRequest = DEFAULT_REQUEST

    @classmethod
    def trusted(
        cls, task_id: str, payload: Any, group: TaskGroupSpec, resource_request: SchedulerResourceRequest
    ) -> SchedulableTask:
        """Build without re-validating parts that were validated already (the scheduler's hot path)."""
        item = object.__new__(cls)
        object.__setattr__(item, "task_id", task_id)
        object.__setattr__(item, "payload", payload)
        object.__setattr__(item, "group", group)
        object.__setattr__(item, "resource_request", resource_request)
        return item

    def __post_init__(self) -> None:
        if not isinstance(self.task_id, str) or not self.task_id:
            raise ValueError(f"SchedulableTask.task_id must be a non-empty str, got {self.task_id!r}")
        if not isinstance(self.group, TaskGroupSpec):
            raise TypeError(f"SchedulableTask.group must be a TaskGroupSpec, got {self.group!r}")
        if not isinstance(self.resource_request, SchedulerResourceRequest):
            raise TypeError(f"SchedulableTask.resource_request must be a SchedulerResourceRequest, got {self.resource_request!r}")
