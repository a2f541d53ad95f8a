"""Values of task admission: configuration, leases, denials, release results and views.

A lease carries its own release flag, an atomic test-and-set (``Lock.acquire(blocking=False)``),
so only the first release of a lease can return capacity however many threads race to release it.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal

from threadsched.core.contracts import SUBMISSION, SchedulableTask

DenialReason = Literal["no_capacity", "group_cap", "borrow_debt", "shutdown", "policy_denial"]
ReleaseReason = Literal["released", "duplicate", "stale_lease", "wrong_controller_generation", "unknown_lease"]
_EMPTY: Mapping[Any, Any] = MappingProxyType({})


def _positive_int(value: object, field_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{field_name} must be a positive int, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class TaskAdmissionConfig:
    submission_capacity: int = 64
    resource_limits: Mapping[str, int] = field(default_factory=lambda: _EMPTY)

    def __post_init__(self) -> None:
        _positive_int(self.submission_capacity, "TaskAdmissionConfig.submission_capacity")
        limits: dict[str, int] = {}
        for key, limit in self.resource_limits.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"TaskAdmissionConfig.resource_limits: key must be a non-empty str, got {key!r}")
            _positive_int(limit, f"TaskAdmissionConfig.resource_limits[{key!r}]")
            if key == SUBMISSION and limit != self.submission_capacity:
                raise ValueError(
                    "TaskAdmissionConfig.resource_limits['submission'] conflicts with submission_capacity: "
                    f"{limit!r} != {self.submission_capacity!r}"
                )
            limits[key] = limit
        object.__setattr__(self, "resource_limits", MappingProxyType(limits))

    @property
    def all_limits(self) -> Mapping[str, int]:
        return {**self.resource_limits, SUBMISSION: self.submission_capacity}


class TaskAdmissionLease:
    """Capacity held by one execution of one task; released exactly once."""

    __slots__ = ("_release_flag", "acquired_at", "controller_generation", "item", "lease_id", "resources")

    def __init__(
        self,
        lease_id: int,
        item: SchedulableTask,
        resources: Mapping[str, int],
        acquired_at: float,
        controller_generation: int,
    ) -> None:
        self.lease_id = lease_id
        self.item = item
        self.resources = resources
        self.acquired_at = acquired_at
        self.controller_generation = controller_generation
        self._release_flag = threading.Lock()

    @property
    def released(self) -> bool:
        return self._release_flag.locked()

    def _claim_release(self) -> bool:
        return self._release_flag.acquire(blocking=False)

    def __repr__(self) -> str:
        state = "released" if self.released else "held"
        return f"<TaskAdmissionLease {self.lease_id} task={self.item.task_id!r} {dict(self.resources)} {state}>"


@dataclass(frozen=True, slots=True)
class TaskAdmissionDenied:
    item: SchedulableTask
    reason: DenialReason
    available_after: float | None = None
    diagnostics: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class ReleaseResult:
    released: bool
    reason: ReleaseReason


@dataclass(frozen=True, slots=True)
class TaskAdmissionView:
    """Admission state. ``controller.view()`` returns a deep snapshot; policies get a live view
    that is only valid for the duration of the call (the controller lock is held meanwhile)."""

    resource_limits: Mapping[str, int]
    resources_available: Mapping[str, int]
    leased_resources: Mapping[str, int]
    leased_resources_by_group: Mapping[Hashable, Mapping[str, int]]
    running_counts_by_group: Mapping[Hashable, int]
    policy_debt_by_group_resource: Mapping[tuple[Hashable, str], int]
    active_lease_count: int
    release_diagnostics: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class TaskAdmissionBlockSummary:
    """Why queued work is not being admitted right now."""

    queued_total: int
    active_lease_count: int
    resources_available: Mapping[str, int]
    blocked_groups: Mapping[Hashable, str]
    eligible_groups: tuple[Hashable, ...]
    earliest_available_after: float | None

    @property
    def message(self) -> str:
        if not self.queued_total:
            return "nothing queued"
        parts = ", ".join(f"{key!r}: {reason}" for key, reason in self.blocked_groups.items())
        eligible = f"; eligible now: {list(self.eligible_groups)!r}" if self.eligible_groups else ""
        return (
            f"{self.queued_total} queued task(s) blocked ({parts}){eligible}; active leases={self.active_lease_count}; "
            f"available={dict(self.resources_available)}"
        )

    def __str__(self) -> str:
        return self.message


RELEASED: Final = ReleaseResult(True, "released")
