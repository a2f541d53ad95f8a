"""Scheduler events and sinks.

Events are built by their producer (under its lock when they describe locked state) and emitted
after the lock is released. A sink that raises is counted and logged, never propagated.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

LOGGER = logging.getLogger("threadsched")
_EMPTY: Mapping[str, Any] = MappingProxyType({})


def json_safe(value: Any) -> Any:
    """A JSON-encodable rendering of ``value`` (group keys may be any hashable)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(item) for item in value]
    return repr(value)


SCHEDULER_STREAM = "scheduler"
ENGINE_STREAM = "engine"
REQUEST_STREAM = "requests"  # request admission and the model request executor share one sequence


@dataclass(frozen=True, slots=True)
class SchedulerEvent:
    """One event. ``sequence`` is per ``stream`` (the scheduler's, the engine's, ...); ``captured_at`` is
    ``time.monotonic()``. ``correlation`` joins a scheduler task to its producer's identity (for the engine:
    row group, column, task type, row, engine task id); it never holds row values, prompts or secrets."""

    kind: str
    sequence: int
    captured_at: float
    task_id: str | None = None
    execution_id: str | None = None
    lease_id: int | None = None
    group: Hashable | None = None
    resources: Mapping[str, int] | None = None
    reason: str | None = None
    diagnostics: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    stream: str = SCHEDULER_STREAM
    run_id: str | None = None
    correlation: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "stream": self.stream,
            "run_id": self.run_id,
            "sequence": self.sequence,
            "captured_at": self.captured_at,
            "task_id": self.task_id,
            "execution_id": self.execution_id,
            "lease_id": self.lease_id,
            "group": json_safe(self.group),
            "resources": json_safe(self.resources),
            "reason": self.reason,
            "diagnostics": json_safe(self.diagnostics),
            "correlation": json_safe(self.correlation),
        }


@runtime_checkable
class EventSink(Protocol):
    def emit(self, event: SchedulerEvent) -> None: ...


class FanOutEventSink:
    """Delivers each event to every sink in order; one that raises does not stop the others (it is
    logged), so a failing log file never costs an in-memory observer its events."""

    def __init__(self, *sinks: EventSink) -> None:
        self.sinks = tuple(sinks)

    def emit(self, event: SchedulerEvent) -> None:
        for sink in self.sinks:
            try:
                sink.emit(event)
            except Exception:
                LOGGER.warning("threadsched: event sink %r raised; event %s dropped", sink, event.kind, exc_info=True)


class MemoryEventSink:
    """Keeps every event in memory; thread-safe. ``events`` is a copy in sequence order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[SchedulerEvent] = []

    def emit(self, event: SchedulerEvent) -> None:
        with self._lock:
            self._events.append(event)

    @property
    def events(self) -> list[SchedulerEvent]:
        with self._lock:
            return sorted(self._events, key=lambda event: event.sequence)

    def of_kind(self, *kinds: str) -> list[SchedulerEvent]:
        return [event for event in self.events if event.kind in kinds]

    def __len__(self) -> int:
        return len(self._events)

    def __repr__(self) -> str:
        return f"<MemoryEventSink events={len(self._events)}>"
