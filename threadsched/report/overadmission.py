"""Root over-admission: root-column leases granted while downstream work of the run was already waiting.

A row-group pipeline that keeps admitting root cells (new rows) while dependent cells sit in the ready
queue starts rows instead of finishing them; this counts those leases from the event dicts.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from threadsched.report.intervals import (
    Event,
    LeaseInterval,
    QueuedInterval,
    captured_at,
    group_of,
    job_started_diagnostics,
    row_group_of,
)


@dataclass(frozen=True, slots=True)
class RootOverAdmission:
    roots: tuple[str, ...]
    first_downstream_ready: float | None
    count: int
    lease_seconds: float


def root_columns(events: Sequence[Event]) -> tuple[str, ...]:
    """``scheduler_job_started.diagnostics.roots``; else the groups made ready in row group 0 before any
    lease was released (nothing downstream can be ready before some task has finished)."""
    roots = job_started_diagnostics(events).get("roots")
    if isinstance(roots, (list, tuple)):
        return tuple(str(root) for root in roots)
    first_release = next((captured_at(event) for event in events if event.get("kind") == "task_lease_released"), None)
    found: dict[str, None] = {}
    for event in events:
        at = captured_at(event) or 0.0
        if first_release is not None and at >= first_release:
            break
        if event.get("kind") == "dependency_ready" and row_group_of(event) == 0:
            found[group_of(event)] = None
    return tuple(found)


def root_over_admission(
    events: Sequence[Event], queued: Sequence[QueuedInterval], leases: Sequence[LeaseInterval], origin: float
) -> RootOverAdmission | None:
    """Root-column leases acquired, after the first downstream ``dependency_ready``, while a non-root task
    waited in the ready queue. ``None`` without engine dependency information."""
    if not any(event.get("kind") == "dependency_ready" for event in events):
        return None
    roots = root_columns(events)
    downstream = [
        captured_at(event) or 0.0 for event in events if event.get("kind") == "dependency_ready" and group_of(event) not in roots
    ]
    if not downstream:
        return RootOverAdmission(roots, None, 0, 0.0)
    first = min(downstream)
    starts, ends = _union((interval.start, interval.end) for interval in queued if interval.group not in roots)
    over = [lease for lease in leases if lease.group in roots and lease.start >= first and _covered(starts, ends, lease.start)]
    return RootOverAdmission(roots, first - origin, len(over), sum(lease.seconds for lease in over))


def _union(intervals: Iterable[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """Merged half-open intervals as parallel sorted (starts, ends) lists."""
    starts: list[float] = []
    ends: list[float] = []
    for start, end in sorted(interval for interval in intervals if interval[1] > interval[0]):
        if ends and start <= ends[-1]:
            ends[-1] = max(ends[-1], end)
        else:
            starts.append(start)
            ends.append(end)
    return starts, ends


def _covered(starts: Sequence[float], ends: Sequence[float], at: float) -> bool:
    index = bisect.bisect_right(starts, at) - 1
    return index >= 0 and at < ends[index]
