"""Task contracts shared by the queue, the admission controller and the scheduler.

Everything here is immutable and validated at construction, so a bad value is reported
where it was written, naming the field and the value, instead of surfacing as a hang later.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

SUBMISSION = "submission"
"""The resource every task holds exactly one unit of: one worker slot."""


def _frozen_mapping(values: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType(dict(values))


def validate_weight(field_name: str, value: object) -> float:
    """``value`` as a fairness weight: any finite number > 0, returned as a float.

    The queue and the request layer both advance a group's finish tag by ``fair_share_step(weight)``,
    so a weight whose reciprocal overflows (below about 5.6e-309) could not be honoured and is refused
    here rather than turning every later tag into infinity.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{field_name} must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{field_name} must be finite and > 0, got {value!r}")
    if not math.isfinite(1.0 / value):
        raise ValueError(f"{field_name} is too small to be a weight (1 / weight overflows), got {value!r}")
    return float(value)


def fair_share_step(weight: float) -> float:
    """How far one unit of service moves a group's finish tag in weighted virtual time: a group of
    weight ``w`` is served ``w`` times as often as one of weight 1 while both are backlogged."""
    return 1.0 / weight


@dataclass(frozen=True, slots=True)
class TaskGroupSpec:
    """A stream of work sharing one fairness weight and an optional cap on running tasks."""

    key: Hashable
    weight: float = 1.0
    admitted_limit: int | None = None

    def __post_init__(self) -> None:
        try:
            hash(self.key)
        except TypeError:
            raise TypeError(f"TaskGroupSpec.key must be hashable, got {self.key!r}") from None
        validate_weight("TaskGroupSpec.weight", self.weight)
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

    def __init__(self, amounts: Mapping[str, int] | None = None) -> None:
        normalized: dict[str, int] = {SUBMISSION: 1}
        for key, amount in (amounts or {}).items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"SchedulerResourceRequest.amounts: resource key must be a non-empty str, got {key!r}")
            if isinstance(amount, bool) or not isinstance(amount, int) or amount < 1:
                raise ValueError(f"SchedulerResourceRequest.amounts[{key!r}] must be a positive int, got {amount!r}")
            if key == SUBMISSION and amount != 1:
                raise ValueError(f"SchedulerResourceRequest.amounts['submission'] must be 1, got {amount!r}")
            normalized[key] = amount
        object.__setattr__(self, "amounts", _frozen_mapping(normalized))
        object.__setattr__(self, "pairs", tuple(normalized.items()))
        object.__setattr__(self, "signature", frozenset(key for key in normalized if key != SUBMISSION))

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
