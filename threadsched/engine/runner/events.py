"""The engine's own event stream (job, readiness, row-group, retry, drop, salvage and drain events), correlated with
the scheduler's events.

Every event is built and delivered on the runner's main thread, outside every lock, into the same sink
as the scheduler's events, as stream ``"engine"`` with its own sequence numbers. Scheduler events of an
engine task carry the same ``correlation`` (``TaskGroup.submit_correlated``): row group, column, task type,
row and the engine task id. Events never carry row values, prompts, completions or secrets: only names,
indices, counts and error *types*. A sink that raises is counted (``sink_errors``) and logged, never raised.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from threadsched.core.event_log import JsonlEventSink
from threadsched.core.events import ENGINE_STREAM, LOGGER, EventSink, FanOutEventSink, SchedulerEvent
from threadsched.engine.recipe import Recipe
from threadsched.engine.tracker import TaskKey

__all__ = [
    "EVENT_LOG",
    "EVENT_LOG_FILES",
    "EngineEvents",
    "LateBoundSink",
    "correlation_of",
    "job_facts",
    "new_run_id",
    "open_event_log",
]

EVENT_LOG = "events.jsonl"
_EVENT_LOG_BACKUPS = 5
#: What the event log may create in the output directory: the log, its rotated backups, the handler's lock file.
EVENT_LOG_FILES = (EVENT_LOG, *(f"{EVENT_LOG}.{index}" for index in range(1, _EVENT_LOG_BACKUPS + 1)), f".__{EVENT_LOG}.lock")


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


def correlation_of(key: TaskKey) -> dict[str, Any]:
    return {
        "row_group": key.row_group,
        "column": key.column,
        "task_type": key.task_type,
        "row": key.row,
        "engine_task": key.task_id,
    }


class LateBoundSink:
    """Forwards to ``target`` once it is set (events before that are dropped): lets endpoints be built,
    and a bad recipe rejected, before the run's event log exists."""

    def __init__(self) -> None:
        self.target: EventSink | None = None

    def emit(self, event: SchedulerEvent) -> None:
        target = self.target
        if target is not None:
            target.emit(event)


def open_event_log(out_dir: Path, sinks: Sequence[EventSink | None]) -> tuple[EventSink | None, JsonlEventSink]:
    """``OUT/events.jsonl`` (appended to) plus the caller's sinks as one sink; close the log at the end."""
    log = JsonlEventSink(out_dir / EVENT_LOG, backups=_EVENT_LOG_BACKUPS)
    others = [sink for sink in sinks if sink is not None]
    return (FanOutEventSink(*others, log) if others else log), log


def job_facts(recipe: Recipe, workers: int, resumed: Mapping[int, object]) -> dict[str, Any]:
    """The diagnostics of ``scheduler_job_started``: what a report needs to read the run's events."""
    return {
        "recipe_hash": recipe.recipe_hash,
        "workers": workers,
        "resource_limits": dict(recipe.resource_limits),
        "roots": [spec.name for spec in recipe.roots],
        "columns": list(recipe.topological_order),
        "records": recipe.run.records,
        "buffer_size": recipe.run.buffer_size,
        "max_row_groups_in_flight": recipe.run.max_row_groups_in_flight,
        "resumed_row_groups": sorted(resumed),
    }


class EngineEvents:
    """Builds and delivers engine events; a no-op without a sink (``enabled`` is False)."""

    def __init__(self, sink: EventSink | None, run_id: str, group_of: Mapping[str, Hashable]) -> None:
        self._sink = sink
        self.run_id = run_id
        self._group_of = group_of
        self._sequence = itertools.count()
        self.sink_errors = 0

    @property
    def enabled(self) -> bool:
        return self._sink is not None

    def job_started(self, diagnostics: Mapping[str, Any]) -> None:
        self._emit("scheduler_job_started", diagnostics=diagnostics)

    def job_completed(self, diagnostics: Mapping[str, Any]) -> None:
        self._emit("scheduler_job_completed", diagnostics=diagnostics)

    def dependency_ready(self, keys: Iterable[TaskKey]) -> None:
        for key in keys:
            self._emit("dependency_ready", key)

    def row_group_admitted(self, row_group: int) -> None:
        self._emit("row_group_admitted", correlation={"row_group": row_group})

    def row_group_checkpointed(self, row_group: int, rows: int) -> None:
        self._emit("row_group_checkpointed", correlation={"row_group": row_group}, diagnostics={"rows": rows})

    def retry_deferred(self, key: TaskKey, error: BaseException, attempt: int) -> None:
        self._emit("retry_deferred", key, reason=type(error).__name__, diagnostics={"attempt": attempt})

    def non_retryable_dropped(self, key: TaskKey, error: BaseException, attempt: int, *, retryable: bool) -> None:
        diagnostics = {"attempt": attempt, "retryable": retryable}
        self._emit("non_retryable_dropped", key, reason=type(error).__name__, diagnostics=diagnostics)

    def salvage_redispatched(self, keys: Iterable[TaskKey], attempts: Mapping[TaskKey, int]) -> None:
        for key in keys:
            self._emit("salvage_redispatched", key, diagnostics={"attempt": attempts.get(key, 1)})

    def queue_drained(self, deferred: int, salvage_round: int) -> None:
        self._emit("queue_drained", diagnostics={"deferred": deferred, "salvage_round": salvage_round})

    def _emit(
        self,
        kind: str,
        key: TaskKey | None = None,
        *,
        reason: str | None = None,
        correlation: Mapping[str, Any] | None = None,
        diagnostics: Mapping[str, Any] | None = None,
    ) -> None:
        sink = self._sink
        if sink is None:
            return
        event = SchedulerEvent(
            kind=kind,
            sequence=next(self._sequence),
            captured_at=time.monotonic(),
            group=self._group_of.get(key.column) if key is not None else None,
            reason=reason,
            diagnostics=diagnostics or {},
            stream=ENGINE_STREAM,
            run_id=self.run_id,
            correlation=correlation_of(key) if key is not None else (correlation or {}),
        )
        try:
            sink.emit(event)
        except Exception:
            self.sink_errors += 1
            LOGGER.warning("threadsched: event sink %r raised; engine event %s dropped", sink, kind, exc_info=True)
