"""Run metrics from event dicts: waits per group, ready-idle gap, capacity, over-admission.

Pure functions over the JSON-lines event dicts. All durations are seconds; times in the result are
seconds since the run's first event.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from threadsched.report.intervals import (
    ENGINE,
    SCHEDULER,
    SUBMISSION,
    Event,
    LeaseInterval,
    QueuedInterval,
    RowGroupSpan,
    int_field,
    job_started_diagnostics,
    lease_intervals,
    ordered,
    queued_intervals,
    row_group_spans,
    run_bounds,
    sequence_of,
    stream_of,
)
from threadsched.report.overadmission import RootOverAdmission, root_over_admission
from threadsched.report.requests import RequestMetrics, request_metrics
from threadsched.report.stats import WaitStats

Signature = tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class GroupMetrics:
    group: str
    tasks: int
    attempts: int
    leases: int
    lease_seconds: float
    ready_queue_wait: WaitStats  # selected - ready_enqueued (first selection of the attempt)
    admission_wait: WaitStats  # task_lease_acquired - first selected
    ready_to_lease: WaitStats  # task_lease_acquired - ready_enqueued
    ready_to_lease_seconds: float = 0.0  # their sum


@dataclass(frozen=True, slots=True)
class ResourceUsage:
    resource: str
    lease_seconds: float  # ∫ leased amount dt
    peak: int
    limit: int | None
    utilisation: float | None  # lease_seconds / (limit * span)


@dataclass(frozen=True, slots=True)
class ReportMetrics:
    run_id: str | None
    recipe_hash: str | None
    events: int
    span_seconds: float
    workers: int | None
    workers_inferred: bool
    resource_limits: Mapping[str, int]
    groups: tuple[GroupMetrics, ...]
    ready_idle_gap_seconds: float
    ready_idle_gap_fraction: float
    resources: tuple[ResourceUsage, ...]
    root_over_admission: RootOverAdmission | None
    hidden_waiters: int
    unreleased_leases: tuple[int, ...]
    task_outcomes: Mapping[str, int]
    scheduler_retries: int
    engine_retries: int
    drops: int
    salvage_redispatches: int
    row_groups: tuple[RowGroupSpan, ...]
    requests: RequestMetrics | None = None  # None: no request events in the run


def compute_metrics(
    events: Iterable[Event], *, workers: int | None = None, resource_limits: Mapping[str, int] | None = None
) -> ReportMetrics:
    """Metrics of one run. ``workers`` / ``resource_limits`` are used only when ``scheduler_job_started``
    does not carry them (e.g. taken from ``run.json``); without either, workers = peak concurrent leases."""
    timeline = ordered(events)
    bounds = run_bounds(timeline)
    queued = queued_intervals(timeline, bounds.end)
    leases = lease_intervals(timeline, bounds.end)
    started = job_started_diagnostics(timeline)
    limits = _limits(started.get("resource_limits")) or dict(resource_limits or {})
    known_workers = int_field(started, "workers") or workers
    peaks = _peaks(leases)
    effective_workers = known_workers or peaks.get(SUBMISSION) or None
    capacity = {**limits, **({SUBMISSION: effective_workers} if effective_workers else {})}
    gap = ready_idle_gap(queued, leases, capacity)
    span = bounds.span
    groups = group_metrics(queued, leases)
    return ReportMetrics(
        run_id=_run_id(timeline),
        recipe_hash=_str_or_none(started.get("recipe_hash")),
        events=len(timeline),
        span_seconds=span,
        workers=effective_workers,
        workers_inferred=known_workers is None and effective_workers is not None,
        resource_limits=limits,
        groups=groups,
        ready_idle_gap_seconds=gap,
        ready_idle_gap_fraction=gap / span if span > 0 else 0.0,
        resources=resource_usage(leases, capacity, span),
        root_over_admission=root_over_admission(timeline, queued, leases, bounds.start),
        hidden_waiters=hidden_waiters(timeline),
        unreleased_leases=unreleased_leases(timeline),
        task_outcomes=dict(sorted(Counter(_reasons(timeline, "task_completed", SCHEDULER)).items())),
        scheduler_retries=sum(1 for reason in _reasons(timeline, "task_completed", SCHEDULER) if reason == "retry"),
        engine_retries=_count(timeline, "retry_deferred", ENGINE),
        drops=_count(timeline, "non_retryable_dropped", None),
        salvage_redispatches=_count(timeline, "salvage_redispatched", None),
        row_groups=tuple(
            dataclasses.replace(row_group, start=row_group.start - bounds.start, end=row_group.end - bounds.start)
            for row_group in row_group_spans(timeline, bounds.end)
        ),
        requests=request_metrics(timeline, groups),
    )


def group_metrics(queued: Sequence[QueuedInterval], leases: Sequence[LeaseInterval]) -> tuple[GroupMetrics, ...]:
    tasks: dict[str, set[str]] = defaultdict(set)
    attempts: Counter[str] = Counter()
    queue_waits: dict[str, list[float]] = defaultdict(list)
    admission_waits: dict[str, list[float]] = defaultdict(list)
    lease_waits: dict[str, list[float]] = defaultdict(list)
    for interval in queued:
        tasks[interval.group].add(interval.task_id)
        attempts[interval.group] += 1
        if interval.selected_at is not None:
            queue_waits[interval.group].append(interval.selected_at - interval.start)
        if interval.outcome == "leased":
            lease_waits[interval.group].append(interval.end - interval.start)
            if interval.selected_at is not None:
                admission_waits[interval.group].append(interval.end - interval.selected_at)
    lease_counts: Counter[str] = Counter()
    lease_seconds: dict[str, float] = defaultdict(float)
    for lease in leases:
        lease_counts[lease.group] += 1
        lease_seconds[lease.group] += lease.seconds
        if lease.task_id is not None:
            tasks[lease.group].add(lease.task_id)
    return tuple(
        GroupMetrics(
            group=group,
            tasks=len(tasks[group]),
            attempts=attempts[group],
            leases=lease_counts[group],
            lease_seconds=lease_seconds[group],
            ready_queue_wait=WaitStats.of(queue_waits[group]),
            admission_wait=WaitStats.of(admission_waits[group]),
            ready_to_lease=WaitStats.of(lease_waits[group]),
            ready_to_lease_seconds=sum(lease_waits[group]),
        )
        for group in sorted(tasks.keys() | lease_counts.keys())
    )


def ready_idle_gap(queued: Sequence[QueuedInterval], leases: Sequence[LeaseInterval], capacity: Mapping[str, int]) -> float:
    """Seconds during which some queued task's every limited resource had room, yet it held no lease.

    ``capacity`` maps resource → limit (``submission`` → workers); unlimited resources never block."""
    changes: list[tuple[float, Signature | None, Mapping[str, int], int]] = []
    for interval in queued:
        signature = _signature(interval.resources)
        changes += [(interval.start, signature, {}, 1), (interval.end, signature, {}, -1)]
    for lease in leases:
        changes += [(lease.start, None, lease.resources, 1), (lease.end, None, lease.resources, -1)]
    changes.sort(key=lambda change: change[0])
    waiting: Counter[Signature] = Counter()
    active: Counter[str] = Counter()

    def fits(signature: Signature) -> bool:
        return all(name not in capacity or active[name] + amount <= capacity[name] for name, amount in signature)

    gap = 0.0
    # All changes at one instant are applied before the state up to the next instant is judged.
    for index, (at, changed, amounts, sign) in enumerate(changes):
        if changed is not None:
            waiting[changed] += sign
        for name, amount in amounts.items():
            active[name] += sign * amount
        following = changes[index + 1][0] if index + 1 < len(changes) else at
        if following > at and any(count > 0 and fits(queued_signature) for queued_signature, count in waiting.items()):
            gap += following - at
    return gap


def resource_usage(leases: Sequence[LeaseInterval], capacity: Mapping[str, int], span: float) -> tuple[ResourceUsage, ...]:
    seconds: dict[str, float] = defaultdict(float)
    for lease in leases:
        for name, amount in lease.resources.items():
            seconds[name] += amount * lease.seconds
    peaks = _peaks(leases)
    usage = []
    for name in sorted(seconds.keys() | capacity.keys(), key=lambda name: (name != SUBMISSION, name)):
        limit = capacity.get(name)
        utilisation = seconds[name] / (limit * span) if limit and span > 0 else None
        usage.append(ResourceUsage(name, seconds[name], peaks.get(name, 0), limit, utilisation))
    return tuple(usage)


def hidden_waiters(events: Iterable[Event]) -> int:
    """``evidence.hidden_waiters`` on dicts: ``worker_spawned`` whose lease had no earlier acquisition."""
    acquired: set[object] = set()
    hidden = 0
    for event in _scheduler_in_sequence(events):
        if event.get("kind") == "task_lease_acquired" and event.get("lease_id") is not None:
            acquired.add(event.get("lease_id"))
        elif event.get("kind") == "worker_spawned" and event.get("lease_id") not in acquired:
            hidden += 1
    return hidden


def unreleased_leases(events: Iterable[Event]) -> tuple[int, ...]:
    """``evidence.unreleased_leases`` on dicts: lease ids acquired without exactly one release."""
    balance: Counter[int] = Counter()
    for event in _scheduler_in_sequence(events):
        lease_id = event.get("lease_id")
        if not isinstance(lease_id, int) or isinstance(lease_id, bool):
            continue
        if event.get("kind") == "task_lease_acquired":
            balance[lease_id] += 1
        elif event.get("kind") == "task_lease_released":
            balance[lease_id] -= 1
    return tuple(sorted(lease_id for lease_id, count in balance.items() if count != 0))


def _scheduler_in_sequence(events: Iterable[Event]) -> list[Event]:
    return sorted((event for event in events if stream_of(event) == SCHEDULER), key=sequence_of)


def _peaks(leases: Sequence[LeaseInterval]) -> dict[str, int]:
    changes = sorted(
        [(lease.start, 1, lease.resources) for lease in leases] + [(lease.end, -1, lease.resources) for lease in leases],
        key=lambda change: (change[0], change[1]),  # releases first at equal times
    )
    active: Counter[str] = Counter()
    peaks: dict[str, int] = {}
    for _, sign, amounts in changes:
        for name, amount in amounts.items():
            active[name] += sign * amount
            peaks[name] = max(peaks.get(name, 0), active[name])
    return peaks


def _signature(resources: Mapping[str, int]) -> Signature:
    return tuple(sorted(resources.items()))


def _limits(raw: object) -> dict[str, int]:
    if not isinstance(raw, Mapping):
        return {}
    return {
        str(name): value for name, value in raw.items() if isinstance(value, int) and not isinstance(value, bool) and value > 0
    }


def _run_id(events: Iterable[Event]) -> str | None:
    for event in events:
        run_id = event.get("run_id")
        if isinstance(run_id, str):
            return run_id
    return None


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _reasons(events: Iterable[Event], kind: str, stream: str) -> list[str]:
    return [str(event.get("reason")) for event in events if event.get("kind") == kind and stream_of(event) == stream]


def _count(events: Iterable[Event], kind: str, stream: str | None) -> int:
    return sum(1 for event in events if event.get("kind") == kind and (stream is None or stream_of(event) == stream))
