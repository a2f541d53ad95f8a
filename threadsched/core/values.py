"""The core's value types: what crosses between the queue, admission, policies and the scheduler.

Queue views and selections, admission configuration, leases, denials, release results and views, and
the scheduler's snapshots, statistics and shutdown report. Every one is immutable once built (a lease's
only mutable state is its release flag), so a value can be handed to a policy, an event or a user
without a lock. This module imports no stateful part of the core.

A lease carries its own release flag, an atomic test-and-set (``Lock.acquire(blocking=False)``),
so only the first release of a lease can return capacity however many threads race to release it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal

from threadsched.core.contracts import MAX_RESOURCE_UNITS, SUBMISSION, SchedulableTask, TaskGroupSpec, whole_units

DenialReason = Literal["no_capacity", "group_cap", "borrow_debt", "shutdown", "policy_denial"]
ReleaseReason = Literal["released", "duplicate", "stale_lease", "wrong_controller_generation", "unknown_lease"]
_EMPTY: Mapping[Any, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class TaskAdmissionConfig:
    """The controller's hard limits: ``submission_capacity`` worker slots and ``resource_limits`` units of
    each named resource, each an int from 1 to ``MAX_RESOURCE_UNITS`` (a bool or a non-int is a
    ``TypeError``, anything outside the range a ``ValueError``, naming the field)."""

    submission_capacity: int = 64
    resource_limits: Mapping[str, int] = field(default_factory=lambda: _EMPTY)

    def __post_init__(self) -> None:
        whole_units("TaskAdmissionConfig.submission_capacity", self.submission_capacity, most=MAX_RESOURCE_UNITS)
        if not isinstance(self.resource_limits, Mapping):
            raise TypeError(
                f"TaskAdmissionConfig.resource_limits must be a mapping of resource name to units, got {self.resource_limits!r}"
            )
        limits: dict[str, int] = {}
        for key, limit in self.resource_limits.items():
            if not isinstance(key, str):
                raise TypeError(f"TaskAdmissionConfig.resource_limits: key must be a non-empty str, got {key!r}")
            if not key:
                raise ValueError(f"TaskAdmissionConfig.resource_limits: key must be a non-empty str, got {key!r}")
            whole_units(f"TaskAdmissionConfig.resource_limits[{key!r}]", limit, most=MAX_RESOURCE_UNITS)
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


@dataclass(frozen=True, slots=True)
class QueueViewData:
    queued_total: int
    queued_by_group: Mapping[Hashable, int]
    queued_resource_demand_by_group: Mapping[Hashable, Mapping[str, int]]
    first_candidate_resources_by_group: Mapping[Hashable, Mapping[str, int]]
    first_candidate_tasks_by_group: Mapping[Hashable, SchedulableTask]
    first_candidate_group_specs_by_group: Mapping[Hashable, TaskGroupSpec]
    queued_peer_demand_by_resource: Mapping[str, Mapping[Hashable, int]]


class QueueView:
    """Immutable snapshot of the queue's membership, counts and per-group heads.

    ``FairTaskQueue.view()`` materializes it at once. The view handed to ``is_eligible`` during
    ``select_next`` is built by ``materialize`` on first field access (most eligibility checks never
    read it), and is immutable from then on.
    """

    __slots__ = ("_data", "_materialize")

    def __init__(self, data: QueueViewData | None = None, materialize: Callable[[], QueueViewData] | None = None) -> None:
        self._data = data
        self._materialize = materialize

    def _materialized(self) -> QueueViewData:
        data = self._data
        if data is None:
            assert self._materialize is not None
            data = self._data = self._materialize()
            self._materialize = None
        return data

    @property
    def queued_total(self) -> int:
        return self._materialized().queued_total

    @property
    def queued_by_group(self) -> Mapping[Hashable, int]:
        return self._materialized().queued_by_group

    @property
    def queued_resource_demand_by_group(self) -> Mapping[Hashable, Mapping[str, int]]:
        return self._materialized().queued_resource_demand_by_group

    @property
    def first_candidate_resources_by_group(self) -> Mapping[Hashable, Mapping[str, int]]:
        return self._materialized().first_candidate_resources_by_group

    @property
    def first_candidate_tasks_by_group(self) -> Mapping[Hashable, SchedulableTask]:
        return self._materialized().first_candidate_tasks_by_group

    @property
    def first_candidate_group_specs_by_group(self) -> Mapping[Hashable, TaskGroupSpec]:
        return self._materialized().first_candidate_group_specs_by_group

    @property
    def queued_peer_demand_by_resource(self) -> Mapping[str, Mapping[Hashable, int]]:
        return self._materialized().queued_peer_demand_by_resource

    def __repr__(self) -> str:
        data = self._materialized()
        return f"QueueView(queued_total={data.queued_total}, queued_by_group={dict(data.queued_by_group)!r})"


@dataclass(frozen=True, slots=True)
class QueueSelection:
    """A non-mutating pick: the head task of one group, valid until that head changes.

    ``decision`` is what ``is_eligible`` returned for ``item`` (truthy), so a predicate that has
    already done the admission work (an approval, say) can hand it on to whoever commits the pick
    instead of recomputing it; a plain boolean predicate leaves ``True`` here.
    """

    item: SchedulableTask
    view: QueueView
    activation_seq: int
    decision: Any = True


@dataclass(frozen=True, slots=True)
class QueueStatistics:
    """The fair queue's counters: tasks queued, groups active, the virtual clock (in tasks of weight 1; the
    queue counts it exactly, in whole quanta) and the heaps behind it."""

    queued_total: int
    active_groups: int
    virtual_time: float
    heap_entries: int
    signature_heaps: int
    peak_queued_by_group: Mapping[Hashable, int]


@dataclass(frozen=True, slots=True)
class AdmissionStatistics:
    """The admission controller's counters: leases held, capacity free and limits, and what it diagnosed."""

    active_leases: int
    resources_available: Mapping[str, int]
    resource_limits: Mapping[str, int]
    peak_leased_resources: Mapping[str, int]
    release_diagnostics: Mapping[str, int]
    policy_counters: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class SchedulerSnapshot:
    """Everything a scheduler knows at one moment: the queue's and admission's views and its counters."""

    queue: QueueView
    admission: TaskAdmissionView
    running: int
    overdue: tuple[str, ...]
    counters: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class SchedulerStatistics:
    """A scheduler's counts (cheap to take; ``snapshot()`` has the full views). ``counters``: submitted,
    completed, failed, cancelled, retried, timed_out, stale_selections, spawn_failures, sink_errors and
    hidden_waiters."""

    name: str
    capacity: int
    queued: int
    running: int
    active_leases: int
    overdue: int
    counters: Mapping[str, int]
    queue: QueueStatistics
    admission: AdmissionStatistics


@dataclass(frozen=True, slots=True)
class ShutdownReport:
    """What ``Scheduler.shutdown`` left behind when it returned.

    * ``still_running``: the ids of the tasks whose attempt still held its lease: running on a worker, or
      handed to the executor and about to run (in lease order). With ``wait=True`` and a ``timeout``, these
      are the workers still running at the deadline; they keep their leases until they return.
    * ``overdue``: the tasks past their own group's ``timeout`` whose thread had not returned (their futures
      already failed with ``TaskTimeoutError``; they are still running too). A task without a timeout is
      never overdue, however long shutdown waited.
    * ``active_leases``: leases held, ``len(still_running)`` (read in the same lock section).
    * ``cancelled``: tasks this shutdown cancelled before they ran.
    * ``clean``: everything finished, nothing still running, no lease held and the dispatcher never crashed
      (``dispatcher_error`` is what crashed it).
    """

    clean: bool
    cancelled: int
    overdue: tuple[str, ...]
    active_leases: int
    dispatcher_error: BaseException | None = None
    still_running: tuple[str, ...] = ()
