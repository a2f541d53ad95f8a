"""Request admission metrics from the ``requests`` event stream: per request resource and per task group.

A model call inside a running task takes a request lease per attempt (``request_lease_acquired``, whose
``diagnostics.waited_s`` is the time it queued for the permit, 0 when granted at once) and returns it with
the attempt's outcome (``request_lease_released``: ``reason`` = outcome, ``diagnostics.held_s``). The
adaptive limit moves on ``request_limit_decreased`` / ``request_limit_increased``. Pure and tolerant like
``intervals``: events of other streams, missing keys and unknown kinds are ignored.
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from threadsched.core.events import REQUEST_STREAM
from threadsched.report.intervals import SCHEDULER, Event, captured_at, int_field, mapping_field, stream_of
from threadsched.report.stats import WaitStats


class TaskGroupWaits(Protocol):
    """The task side of one group's waits (``metrics.GroupMetrics``), joined with its request waits."""

    @property
    def group(self) -> str: ...

    @property
    def leases(self) -> int: ...

    @property
    def ready_to_lease(self) -> WaitStats: ...

    @property
    def ready_to_lease_seconds(self) -> float: ...


LIMIT_CHANGES = ("request_limit_decreased", "request_limit_increased")
AttemptKey = tuple[str, object, object]


def is_request_event(event: Event) -> bool:
    return stream_of(event) == REQUEST_STREAM


def request_resource(event: Event) -> str:
    """``provider/model:domain``: the key of ``resources``, else ``diagnostics.resource``; ``"-"`` when absent."""
    for name in mapping_field(event, "resources"):
        return str(name)
    resource = mapping_field(event, "diagnostics").get("resource")
    return resource if isinstance(resource, str) else "-"


def number_field(mapping: Mapping[str, object], key: str) -> float | None:
    value = mapping.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def limit_points(event: Event) -> list[int]:
    """The adaptive limit(s) an event reports, oldest first: ``before``, ``after`` of a change; else ``limit``."""
    diagnostics = mapping_field(event, "diagnostics")
    keys = ("before", "after") if event.get("kind") in LIMIT_CHANGES else ("limit",)
    return [value for value in (int_field(diagnostics, key) for key in keys) if value is not None]


def lease_delta(event: Event, held: set[tuple[str, object]]) -> int:
    """+1 for a request lease taken, -1 for the first release of a taken one, else 0; ``held`` tracks them."""
    lease = (request_resource(event), event.get("lease_id"))
    if event.get("kind") == "request_lease_acquired" and lease not in held:
        held.add(lease)
        return 1
    if event.get("kind") == "request_lease_released" and lease in held:
        held.discard(lease)
        return -1
    return 0


@dataclass(frozen=True, slots=True)
class RequestResourceMetrics:
    resource: str
    attempts: int  # leases taken: every outbound attempt takes one
    outcomes: Mapping[str, int]  # request_lease_released reasons
    queued: int  # request_wait_started: attempts that had to wait for a permit
    gave_up: Mapping[str, int]  # waits that ended without a lease, by reason (timeout, cancelled, shutdown)
    wait: WaitStats  # every lease's wait (0 when granted at once) and every wait that gave up
    wait_seconds: float
    hold: WaitStats  # held_s of released leases
    first_limit: int | None
    min_limit: int | None
    final_limit: int | None
    decreases: int
    increases: int
    max_in_flight: int


@dataclass(frozen=True, slots=True)
class GroupRequestWaits:
    """One task group: how long its tasks waited for a task lease, and its model calls for request permits."""

    group: str
    task_leases: int
    task_wait: WaitStats  # ready→lease of the group's task attempts (``GroupMetrics.ready_to_lease``)
    task_wait_seconds: float
    attempts: int
    queued: int
    request_wait: WaitStats
    request_wait_seconds: float


@dataclass(frozen=True, slots=True)
class RequestMetrics:
    resources: tuple[RequestResourceMetrics, ...]
    groups: tuple[GroupRequestWaits, ...]

    @property
    def attempts(self) -> int:
        return sum(resource.attempts for resource in self.resources)


@dataclass
class _Tally:
    attempts: int = 0
    queued: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    gave_up: Counter[str] = field(default_factory=Counter)
    waits: list[float] = field(default_factory=list)
    holds: list[float] = field(default_factory=list)
    limits: list[int] = field(default_factory=list)
    decreases: int = 0
    increases: int = 0
    in_flight: int = 0
    max_in_flight: int = 0


def request_metrics(events: Sequence[Event], groups: Sequence[TaskGroupWaits] = ()) -> RequestMetrics | None:
    """Metrics of the ``requests`` stream of ``ordered`` events; ``None`` when there is none. ``groups``
    (``metrics.group_metrics``) gives each task group's ready→lease wait for the per-group join."""
    requests = [event for event in events if is_request_event(event)]
    if not requests:
        return None
    by_resource: dict[str, _Tally] = defaultdict(_Tally)
    by_group: dict[str, _Tally] = defaultdict(_Tally)
    task_groups = scheduler_task_groups(events)
    held: set[tuple[str, object]] = set()
    for event, waited in request_waits(requests):
        kind, resource = event.get("kind"), request_resource(event)
        tally, group = by_resource[resource], by_group[task_group_of(event, task_groups)]
        tally.limits += limit_points(event)
        delta = lease_delta(event, held)
        tally.in_flight += delta
        tally.max_in_flight = max(tally.max_in_flight, tally.in_flight)
        if kind == "request_wait_started":
            tally.queued += 1
            group.queued += 1
        elif kind == "request_lease_acquired":
            tally.attempts += 1
            group.attempts += 1
        elif kind == "request_lease_released" and delta:
            tally.outcomes[str(event.get("reason") or "unknown")] += 1
            hold = number_field(mapping_field(event, "diagnostics"), "held_s")
            if hold is not None:
                tally.holds.append(hold)
        elif kind == "request_wait_completed" and event.get("reason") != "granted":
            tally.gave_up[str(event.get("reason") or "unknown")] += 1
        elif kind == "request_limit_decreased":
            tally.decreases += 1
        elif kind == "request_limit_increased":
            tally.increases += 1
        if waited is not None:
            tally.waits.append(waited)
            group.waits.append(waited)
    return RequestMetrics(
        tuple(_resource_metrics(name, tally) for name, tally in sorted(by_resource.items())),
        _group_waits(by_group, groups),
    )


def request_waits(events: Iterable[Event]) -> list[tuple[Event, float | None]]:
    """Each request event with the wait it ends: a lease's ``waited_s`` (else the time since its attempt's
    ``request_wait_started``, else 0), a wait that gave up (``request_wait_completed`` not ``granted``);
    ``None`` for every other event. Attempts are paired by resource, execution (or task) and attempt."""
    started: dict[AttemptKey, deque[float]] = defaultdict(deque)
    paired: list[tuple[Event, float | None]] = []
    for event in events:
        kind, key, at = event.get("kind"), _attempt_key(event), captured_at(event) or 0.0
        waited: float | None = None
        if kind == "request_wait_started":
            started[key].append(at)
        elif kind == "request_lease_acquired" or (kind == "request_wait_completed" and event.get("reason") != "granted"):
            start = started[key].popleft() if started[key] else None
            waited = number_field(mapping_field(event, "diagnostics"), "waited_s")
            if waited is None:
                waited = 0.0 if start is None else max(0.0, at - start)
        paired.append((event, waited))
    return paired


def scheduler_task_groups(events: Iterable[Event]) -> dict[str, str]:
    """Scheduler task id → its group, from the scheduler stream."""
    groups: dict[str, str] = {}
    for event in events:
        task_id, group = event.get("task_id"), event.get("group")
        if stream_of(event) == SCHEDULER and isinstance(task_id, str) and group is not None:
            groups.setdefault(task_id, str(group))
    return groups


def task_group_of(event: Event, task_groups: Mapping[str, str]) -> str:
    """The task group a request event belongs to: the scheduler group of its task, else the engine column of
    its correlation, else its own (request) group; ``"-"`` when none is known."""
    correlation = mapping_field(event, "correlation")
    task_id = event.get("task_id") or correlation.get("task_id")
    if isinstance(task_id, str) and task_id in task_groups:
        return task_groups[task_id]
    column = correlation.get("column")
    if isinstance(column, str):
        return column
    group = event.get("group")
    return "-" if group is None else str(group)


def _attempt_key(event: Event) -> AttemptKey:
    correlation = mapping_field(event, "correlation")
    execution = event.get("execution_id") or correlation.get("execution_id") or event.get("task_id") or correlation.get("task_id")
    return request_resource(event), execution, correlation.get("attempt")


def _resource_metrics(resource: str, tally: _Tally) -> RequestResourceMetrics:
    limits = tally.limits
    return RequestResourceMetrics(
        resource=resource,
        attempts=tally.attempts,
        outcomes=dict(sorted(tally.outcomes.items())),
        queued=tally.queued,
        gave_up=dict(sorted(tally.gave_up.items())),
        wait=WaitStats.of(tally.waits),
        wait_seconds=sum(tally.waits),
        hold=WaitStats.of(tally.holds),
        first_limit=limits[0] if limits else None,
        min_limit=min(limits) if limits else None,
        final_limit=limits[-1] if limits else None,
        decreases=tally.decreases,
        increases=tally.increases,
        max_in_flight=tally.max_in_flight,
    )


def _group_waits(by_group: Mapping[str, _Tally], groups: Sequence[TaskGroupWaits]) -> tuple[GroupRequestWaits, ...]:
    """Groups whose tasks made model calls, joined with their task metrics."""
    tasks = {group.group: group for group in groups}
    joined = []
    for name, tally in sorted(by_group.items()):
        if not (tally.attempts or tally.queued or tally.waits):
            continue  # only limit or release events: no model call of its own
        task = tasks.get(name)
        joined.append(
            GroupRequestWaits(
                group=name,
                task_leases=task.leases if task else 0,
                task_wait=task.ready_to_lease if task else WaitStats.of(()),
                task_wait_seconds=task.ready_to_lease_seconds if task else 0.0,
                attempts=tally.attempts,
                queued=tally.queued,
                request_wait=WaitStats.of(tally.waits),
                request_wait_seconds=sum(tally.waits),
            )
        )
    return tuple(joined)
