"""Completion side of the dispatcher core: done-callbacks, terminal outcomes and events.

Runs on whatever thread completes an executor future. It releases the lease first, records the
outcome under the core lock, emits events after the lock, resolves the task's future last (so a
caller woken by the future already sees the lease returned), and signals the dispatcher.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
from collections.abc import Hashable, Mapping
from concurrent.futures import CancelledError, Future
from time import monotonic as _monotonic
from typing import Any

from .admission import ReleaseResult, TaskAdmissionController, TaskAdmissionLease
from .contracts import SchedulableTask
from .events import EventSink, SchedulerEvent
from .records import Execution, TaskRecord

LOGGER = logging.getLogger("threadsched")
EventSubject = TaskRecord | SchedulableTask | None


class CompletionMixin:
    _lock: threading.Lock
    _sink: EventSink | None
    _sequence: itertools.count[int]
    _run_id: str | None
    _rng: random.Random
    _counters: dict[str, int]
    _in_flight: int
    _overdue: dict[str, str]
    _cancel_pending: bool
    controller: TaskAdmissionController

    def signal(self) -> None:
        raise NotImplementedError

    def _schedule_retry_locked(self, record: TaskRecord, delay: float) -> None:
        raise NotImplementedError

    def _on_execution_done(self, execution: Execution, executor_future: Future[Any]) -> None:
        record = execution.record
        self._release(execution, None)
        started = execution.started
        error = execution.error
        executor_cancelled = not started and executor_future.cancelled()
        if not started and not executor_cancelled and executor_future.exception() is not None:
            error = executor_future.exception()
        token = record.future.cancel_token
        retry = record.settings.retry
        delay = 0.0
        with self._lock:
            execution.finished = True
            self._in_flight -= 1
            if started and not execution.lease_held_at_start:
                self._counters["hidden_waiters"] += 1
            if execution.timed_out:
                self._overdue.pop(execution.execution_id, None)
                outcome = "timed_out"
            elif executor_cancelled or (not started and error is None):
                outcome = "cancelled"
            elif error is None:
                outcome = "succeeded"
            elif isinstance(error, CancelledError) and token.cancelled:
                outcome = "cancelled"
            elif retry.should_retry(error, record.attempt) and not token.cancelled and not self._cancel_pending:
                outcome = "retry"
                delay = retry.backoff(record.attempt, self._rng)
                record.attempt += 1
                self._schedule_retry_locked(record, delay)
            else:
                outcome = "failed"
            counter = _COUNTER_OF_OUTCOME.get(outcome)
            if counter is not None:
                self._counters[counter] += 1
            # A timed-out task's completion was reported at its deadline; only the release remains.
            completed = (
                None
                if outcome == "timed_out"
                else self._build_event("task_completed", record, execution=execution, reason=outcome)
            )
            deferred = (
                self._build_event("retry_deferred", record, execution=execution, diagnostics={"delay": delay})
                if outcome == "retry"
                else None
            )
        for event in (completed, deferred):
            if event is not None:
                self._deliver(event)
        future = record.future
        if outcome == "succeeded":
            future._try_set_result(execution.value)
        elif outcome == "failed":
            assert error is not None
            future._try_set_exception(error)
        elif outcome == "cancelled":
            if not future.cancel():
                future._try_set_exception(error if isinstance(error, CancelledError) else CancelledError())
            future._notify_if_cancelled()
        self.signal()

    def _release(self, execution: Execution, reason: str | None) -> ReleaseResult:
        lease = execution.lease
        result = self.controller.release(lease)
        if self._sink is not None:
            self._emit("task_lease_released", execution.record, execution=execution, lease=lease, reason=reason)
            if not result.released:
                self._emit("release_diagnostic", execution.record, execution=execution, lease=lease, reason=result.reason)
        return result

    # -- terminal outcomes for work that never reached a worker ------------------------------

    def _cancel_record(self, record: TaskRecord) -> None:
        """Cancel a task this caller has taken out of the pipeline (so it alone notifies).

        Counted first, so a caller woken by the future already sees it in the snapshot."""
        self._finish_cancelled(record.task_id, "cancelled")
        future = record.future
        if future.cancel():
            future._notify_if_cancelled()
        else:
            future._try_set_exception(CancelledError("task cancelled before it could run again"))

    def _finish_cancelled(self, task_id: str, reason: str) -> None:
        with self._lock:
            self._counters["cancelled"] += 1
        self._emit("cancelled", None, task_id=task_id, reason=reason)

    def _finish_failed(self, record: TaskRecord, error: BaseException, reason: str) -> None:
        with self._lock:
            self._counters["failed"] += 1
        self._emit("task_completed", record, reason=reason)
        record.future._try_set_exception(error)

    # -- events --------------------------------------------------------------------------------

    def _build_event(
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
    ) -> SchedulerEvent | None:
        if self._sink is None:
            return None
        resources: Mapping[str, int] | None = None
        correlation: Mapping[str, Any] | None = None
        if isinstance(subject, TaskRecord):
            task_id, group, resources = subject.task_id, subject.settings.spec.key, subject.settings.request.amounts
            correlation = subject.correlation
        elif isinstance(subject, SchedulableTask):
            task_id, group, resources = subject.task_id, subject.group.key, subject.resource_request.amounts
            payload = subject.payload
            correlation = payload.correlation if isinstance(payload, TaskRecord) else None
        if lease is None and execution is not None:
            lease = execution.lease
        return SchedulerEvent(
            kind=kind,
            sequence=next(self._sequence),
            captured_at=_monotonic(),
            task_id=task_id,
            execution_id=execution.execution_id if execution is not None else execution_id,
            lease_id=lease.lease_id if lease is not None else None,
            group=group,
            resources=resources,
            reason=reason,
            diagnostics=diagnostics or {},
            run_id=self._run_id,
            correlation=correlation or {},
        )

    def _emit(self, kind: str, subject: EventSubject, **fields: Any) -> None:
        if self._sink is None:
            return
        event = self._build_event(kind, subject, **fields)
        if event is not None:
            self._deliver(event)

    def _deliver(self, event: SchedulerEvent) -> None:
        sink = self._sink
        if sink is None:
            return
        try:
            sink.emit(event)
        except Exception:
            with self._lock:
                self._counters["sink_errors"] += 1
            LOGGER.warning("threadsched: event sink %r raised; event %s dropped", sink, event.kind, exc_info=True)


_COUNTER_OF_OUTCOME = {
    "succeeded": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
    "retry": "retried",
}
