"""Event dicts → time intervals: queued attempts, held leases, row-group spans.

Every function here is pure and tolerant: a missing key reads as ``None`` / empty, an event without a
usable ``captured_at`` is ignored, unknown kinds are ignored. Times stay absolute (monotonic seconds);
callers subtract ``RunBounds.start`` for display.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Event = Mapping[str, Any]
SCHEDULER = "scheduler"
ENGINE = "engine"
SUBMISSION = "submission"
DEFAULT_RESOURCES: Mapping[str, int] = {SUBMISSION: 1}


def captured_at(event: Event) -> float | None:
    value = event.get("captured_at")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def stream_of(event: Event) -> str:
    stream = event.get("stream")
    return stream if isinstance(stream, str) and stream else SCHEDULER


def sequence_of(event: Event) -> int:
    value = event.get("sequence")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def group_of(event: Event) -> str:
    """The group as a display label (engine runs: the column name); ``"-"`` when absent."""
    group = event.get("group")
    return "-" if group is None else str(group)


def mapping_field(event: Event, key: str) -> Mapping[str, Any]:
    value = event.get(key)
    return value if isinstance(value, Mapping) else {}


def int_field(mapping: Mapping[str, Any], key: str) -> int | None:
    value = mapping.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def resources_of(event: Event) -> dict[str, int]:
    """The event's resource amounts; a lease without them holds one submission slot."""
    raw = mapping_field(event, "resources")
    amounts = {str(name): amount for name, amount in raw.items() if isinstance(amount, int) and not isinstance(amount, bool)}
    return amounts or dict(DEFAULT_RESOURCES)


def ordered(events: Iterable[Event]) -> list[Event]:
    """Events with a usable time, sorted by ``(captured_at, stream, sequence)``."""
    timed = [event for event in events if isinstance(event, Mapping) and captured_at(event) is not None]
    return sorted(timed, key=lambda event: (captured_at(event), stream_of(event), sequence_of(event)))


@dataclass(frozen=True, slots=True)
class RunBounds:
    start: float
    end: float

    @property
    def span(self) -> float:
        return self.end - self.start


def run_bounds(events: Sequence[Event]) -> RunBounds:
    """First and last event time of ``ordered`` events; ``(0, 0)`` when there are none."""
    if not events:
        return RunBounds(0.0, 0.0)
    return RunBounds(captured_at(events[0]) or 0.0, captured_at(events[-1]) or 0.0)


@dataclass(frozen=True, slots=True)
class QueuedInterval:
    """One attempt of a task in the ready queue: ``ready_enqueued`` until leased, cancelled or the end."""

    task_id: str
    group: str
    resources: Mapping[str, int]
    start: float
    selected_at: float | None
    end: float
    outcome: str  # "leased" | "cancelled" | "failed" | "open"
    retry: bool


@dataclass
class _OpenAttempt:
    group: str
    resources: dict[str, int]
    start: float
    retry: bool
    selected_at: float | None = None


def queued_intervals(events: Sequence[Event], end: float) -> list[QueuedInterval]:
    """Attempts of ``ordered`` scheduler events, paired by task id in order (a retry is a new attempt)."""
    open_attempts: dict[str, deque[_OpenAttempt]] = defaultdict(deque)
    done: list[QueuedInterval] = []

    def close(task_id: str, at: float, outcome: str) -> None:
        attempt = open_attempts[task_id].popleft()
        done.append(
            QueuedInterval(
                task_id, attempt.group, attempt.resources, attempt.start, attempt.selected_at, at, outcome, attempt.retry
            )
        )

    for event in events:
        task_id, kind = event.get("task_id"), event.get("kind")
        if stream_of(event) != SCHEDULER or not isinstance(task_id, str):
            continue
        at = captured_at(event) or 0.0
        if kind == "ready_enqueued":
            retry = event.get("reason") == "retry"
            open_attempts[task_id].append(_OpenAttempt(group_of(event), resources_of(event), at, retry))
        elif not open_attempts[task_id]:
            continue
        elif kind == "selected":
            head = open_attempts[task_id][0]
            if head.selected_at is None:
                head.selected_at = at
        elif kind == "task_lease_acquired":
            close(task_id, at, "leased")
        elif kind == "cancelled":
            close(task_id, at, "cancelled")
        elif kind == "task_completed" and event.get("execution_id") is None:
            # Work that never reached a worker (stall, crash) completes without an execution; a late
            # completion of an earlier, timed-out execution must not end the queued retry attempt.
            close(task_id, at, "cancelled" if event.get("reason") == "cancelled" else "failed")
    for task_id, attempts in open_attempts.items():
        while attempts:
            close(task_id, end, "open")
    return sorted(done, key=lambda interval: (interval.start, interval.task_id))


@dataclass(frozen=True, slots=True)
class LeaseInterval:
    """A lease from ``task_lease_acquired`` to its first ``task_lease_released`` (or the end: ``released=False``)."""

    lease_id: int
    task_id: str | None
    group: str
    resources: Mapping[str, int]
    start: float
    end: float
    released: bool

    @property
    def seconds(self) -> float:
        return self.end - self.start


def lease_intervals(events: Sequence[Event], end: float) -> list[LeaseInterval]:
    """Leases of ``ordered`` scheduler events; an unreleased lease is held until ``end``."""
    acquired: dict[int, Event] = {}
    released_at: dict[int, float] = {}
    for event in events:
        lease_id = event.get("lease_id")
        if stream_of(event) != SCHEDULER or not isinstance(lease_id, int) or isinstance(lease_id, bool):
            continue
        if event.get("kind") == "task_lease_acquired":
            acquired.setdefault(lease_id, event)
        elif event.get("kind") == "task_lease_released" and lease_id in acquired:
            released_at.setdefault(lease_id, captured_at(event) or 0.0)
    intervals = []
    for lease_id, event in acquired.items():
        task_id = event.get("task_id")
        start = captured_at(event) or 0.0
        stop = released_at.get(lease_id)
        intervals.append(
            LeaseInterval(
                lease_id,
                task_id if isinstance(task_id, str) else None,
                group_of(event),
                resources_of(event),
                start,
                end if stop is None else stop,
                stop is not None,
            )
        )
    return sorted(intervals, key=lambda interval: (interval.start, interval.lease_id))


@dataclass(frozen=True, slots=True)
class RowGroupSpan:
    """A row group from ``row_group_admitted`` to ``row_group_checkpointed`` (or the end: ``checkpointed=False``)."""

    row_group: int
    start: float
    end: float
    checkpointed: bool
    rows: int | None


def row_group_of(event: Event) -> int | None:
    return int_field(mapping_field(event, "correlation"), "row_group")


def row_group_spans(events: Sequence[Event], end: float) -> list[RowGroupSpan]:
    admitted: dict[int, float] = {}
    checkpointed: dict[int, tuple[float, int | None]] = {}
    for event in events:
        row_group = row_group_of(event)
        if row_group is None:
            continue
        at = captured_at(event) or 0.0
        if event.get("kind") == "row_group_admitted":
            admitted.setdefault(row_group, at)
        elif event.get("kind") == "row_group_checkpointed":
            checkpointed.setdefault(row_group, (at, int_field(mapping_field(event, "diagnostics"), "rows")))
    spans = []
    for row_group in sorted(admitted.keys() | checkpointed.keys()):
        stop = checkpointed.get(row_group)
        start = admitted.get(row_group, stop[0] if stop else end)
        spans.append(
            RowGroupSpan(row_group, start, end if stop is None else stop[0], stop is not None, stop[1] if stop else None)
        )
    return spans


def job_started_diagnostics(events: Iterable[Event]) -> Mapping[str, Any]:
    """``diagnostics`` of the first ``scheduler_job_started`` (any stream); empty when there is none."""
    for event in events:
        if event.get("kind") == "scheduler_job_started":
            return mapping_field(event, "diagnostics")
    return {}
