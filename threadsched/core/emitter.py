"""``EventEmitter``: builds the scheduler's events and hands them to its sink.

Events are built where the state they describe is read (often under the dispatcher's lock) and
delivered after that lock is released. Nothing is built when no sink is attached: every
producer checks ``emitter.enabled`` first, so a run without evidence pays nothing per task.
A sink that raises is logged and counted; the run goes on.

Lock order: ``EventEmitter._lock`` is a leaf guarding the sink-error count only; the sink is
never called while it (or any other scheduler lock) is held.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Hashable, Mapping
from time import monotonic
from typing import Any

from threadsched.core.contracts import SchedulableTask
from threadsched.core.events import EventSink, SchedulerEvent
from threadsched.core.records import Execution, TaskRecord
from threadsched.core.values import TaskAdmissionLease

LOGGER = logging.getLogger("threadsched")
EventSubject = TaskRecord | SchedulableTask | None


class EventEmitter:
    """One scheduler's event stream: per-stream sequence numbers, run id, task correlation."""

    __slots__ = ("_lock", "_sequence", "_sink", "_sink_errors", "enabled", "run_id")

    def __init__(self, sink: EventSink | None, run_id: str | None) -> None:
        self._sink = sink
        self.enabled = sink is not None
        self.run_id = run_id
        self._sequence = itertools.count()
        self._lock = threading.Lock()
        self._sink_errors = 0

    @property
    def sink(self) -> EventSink | None:
        return self._sink

    @property
    def sink_errors(self) -> int:
        return self._sink_errors

    def build(
        self,
        kind: str,
        subject: EventSubject,
        *,
        execution: Execution | None = None,
        lease: TaskAdmissionLease | None = None,
        task_id: str | None = None,
        execution_id: str | None = None,
        group: Hashable | None = None,
        reason: str | None = None,
        diagnostics: Mapping[str, Any] | None = None,
        at: float | None = None,
    ) -> SchedulerEvent | None:
        """``at``: the monotonic time of what the event describes, when that was earlier than now (a lease
        taken in a batch, tasks enqueued together); the event's ``captured_at``. Default: now."""
        if self._sink is None:
            return None
        resources: Mapping[str, int] | None = None
        correlation: Mapping[str, Any] | None = None
        if isinstance(subject, TaskRecord):
            task_id, group, resources = subject.task_id, subject.settings.spec.key, subject.settings.resource_request.amounts
            correlation = subject.correlation
        elif isinstance(subject, SchedulableTask):
            task_id, group, resources = subject.task_id, subject.group.key, subject.resource_request.amounts
            payload = subject.payload
            correlation = payload.correlation if isinstance(payload, TaskRecord) else None
        if execution is not None:
            execution_id = execution.execution_id
            if lease is None:
                lease = execution.lease
        return SchedulerEvent(
            kind=kind,
            sequence=next(self._sequence),
            captured_at=monotonic() if at is None else at,
            task_id=task_id,
            execution_id=execution_id,
            lease_id=lease.lease_id if lease is not None else None,
            group=group,
            resources=resources,
            reason=reason,
            diagnostics=diagnostics or {},
            run_id=self.run_id,
            correlation=correlation or {},
        )

    def emit(self, kind: str, subject: EventSubject, **fields: Any) -> None:
        """Build and deliver at once (callers that hold no lock)."""
        if self._sink is not None:
            event = self.build(kind, subject, **fields)
            if event is not None:
                self.deliver(event)

    def deliver(self, event: SchedulerEvent | None) -> None:
        sink = self._sink
        if sink is None or event is None:
            return
        try:
            sink.emit(event)
        except Exception:
            with self._lock:
                self._sink_errors += 1
            LOGGER.warning("threadsched: event sink %r raised; event %s dropped", sink, event.kind, exc_info=True)

    def flush(self, timeout: float | None) -> None:
        """A buffering sink (``JsonlEventSink``) has every event on disk after this; closing it is its owner's call."""
        flush = getattr(self._sink, "flush", None)
        if callable(flush):
            try:
                flush(timeout=timeout)
            except Exception:
                LOGGER.warning("threadsched: flushing event sink %r failed", self._sink, exc_info=True)

    def __repr__(self) -> str:
        return f"<EventEmitter sink={self._sink!r} run_id={self.run_id!r} sink_errors={self._sink_errors}>"
