"""Derived metrics computed from a run's own event stream alone: ready→lease waits, hidden waiters, unreleased leases."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

from threadsched.core.events import SCHEDULER_STREAM, SchedulerEvent


@dataclass(frozen=True, slots=True)
class GroupWaits:
    """Ready → lease waits (seconds) of one group, one entry per execution."""

    group: Hashable
    waits: tuple[float, ...]

    @property
    def p50(self) -> float:
        return percentile(self.waits, 50)

    @property
    def p95(self) -> float:
        return percentile(self.waits, 95)


def percentile(values: Iterable[float], pct: float) -> float:
    """Nearest-rank percentile; 0.0 for no values."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(1, round(pct / 100 * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def ready_to_lease_waits(events: Iterable[SchedulerEvent]) -> dict[Hashable, GroupWaits]:
    """Per group: for each attempt, time from ``ready_enqueued`` to its ``task_lease_acquired``."""
    pending: dict[str, list[float]] = defaultdict(list)
    waits: dict[Hashable, list[float]] = defaultdict(list)
    for event in _scheduler_stream(events):
        if event.task_id is None:
            continue
        if event.kind == "ready_enqueued":
            pending[event.task_id].append(event.captured_at)
        elif event.kind == "task_lease_acquired" and pending[event.task_id]:
            waits[event.group].append(event.captured_at - pending[event.task_id].pop(0))
    return {group: GroupWaits(group, tuple(values)) for group, values in waits.items()}


def hidden_waiters(events: Iterable[SchedulerEvent]) -> int:
    """Workers spawned without an earlier ``task_lease_acquired`` for their lease (must be 0)."""
    acquired: set[int] = set()
    hidden = 0
    for event in _scheduler_stream(events):
        if event.kind == "task_lease_acquired" and event.lease_id is not None:
            acquired.add(event.lease_id)
        elif event.kind == "worker_spawned" and event.lease_id not in acquired:
            hidden += 1
    return hidden


def unreleased_leases(events: Iterable[SchedulerEvent]) -> set[int]:
    """Lease ids acquired without exactly one matching ``task_lease_released``."""
    balance: dict[int, int] = defaultdict(int)
    for event in _scheduler_stream(events):
        if event.lease_id is None:
            continue
        if event.kind == "task_lease_acquired":
            balance[event.lease_id] += 1
        elif event.kind == "task_lease_released":
            balance[event.lease_id] -= 1
    return {lease_id for lease_id, count in balance.items() if count != 0}


def _scheduler_stream(events: Iterable[SchedulerEvent]) -> list[SchedulerEvent]:
    """The scheduler's own events in sequence order (other streams, e.g. the engine's, number their own)."""
    return sorted((event for event in events if event.stream == SCHEDULER_STREAM), key=lambda item: item.sequence)


def median(values: Iterable[float]) -> float:
    data = list(values)
    return statistics.median(data) if data else 0.0
