"""The dispatcher's two deadline heaps: retry back-offs and task timeouts.

Not thread-safe on purpose: the dispatcher core guards both with its own lock (every method here
is called with it held). A finished task's timeout entry is emptied at once (``drop_timeout``), so
the heap never keeps a finished task's payload or result alive until its deadline; emptied entries
are skipped when they come due and compacted away when they are the majority.
"""

from __future__ import annotations

import heapq
import itertools
from time import monotonic

from threadsched.core.records import Execution, TaskRecord

_COMPACT_MIN = 64


class DeadlineHeaps:
    __slots__ = ("_dead_timeouts", "_retry", "_retry_waiting", "_seq", "_timeouts")

    def __init__(self) -> None:
        self._seq = itertools.count()
        # Tasks waiting out a back-off, by id; a heap entry whose task left this dict (cancelled) is skipped.
        self._retry_waiting: dict[str, TaskRecord] = {}
        self._retry: list[tuple[float, int, TaskRecord]] = []
        # [deadline, seq, execution or None once it finished]
        self._timeouts: list[list[object]] = []
        self._dead_timeouts = 0

    # -- retries ----------------------------------------------------------------------------

    def schedule_retry(self, record: TaskRecord, delay: float) -> None:
        self._retry_waiting[record.task_id] = record
        heapq.heappush(self._retry, (monotonic() + delay, next(self._seq), record))

    def take_retry(self, task_id: str) -> TaskRecord | None:
        """Remove a task waiting out its back-off (it was cancelled)."""
        return self._retry_waiting.pop(task_id, None)

    def take_all_retries(self) -> list[TaskRecord]:
        records = list(self._retry_waiting.values())
        self._retry_waiting.clear()
        self._retry.clear()
        return records

    def due_retries(self, now: float) -> list[TaskRecord]:
        due: list[TaskRecord] = []
        heap = self._retry
        while heap and heap[0][0] <= now:
            record = heapq.heappop(heap)[2]
            if self._retry_waiting.pop(record.task_id, None) is record:
                due.append(record)
        return due

    @property
    def retries_waiting(self) -> int:
        return len(self._retry_waiting)

    # -- timeouts ---------------------------------------------------------------------------

    def add_timeout(self, execution: Execution, timeout: float) -> None:
        entry: list[object] = [monotonic() + timeout, next(self._seq), execution]
        execution.timeout_entry = entry
        heapq.heappush(self._timeouts, entry)

    def drop_timeout(self, execution: Execution) -> None:
        entry = execution.timeout_entry
        if entry is None:
            return
        execution.timeout_entry = None
        entry[2] = None
        self._dead_timeouts += 1
        heap = self._timeouts
        while heap and heap[0][2] is None:
            heapq.heappop(heap)
            self._dead_timeouts -= 1
        if self._dead_timeouts > _COMPACT_MIN and 2 * self._dead_timeouts > len(heap):
            heap[:] = [live for live in heap if live[2] is not None]
            heapq.heapify(heap)
            self._dead_timeouts = 0

    def due_timeouts(self, now: float) -> list[Execution]:
        due: list[Execution] = []
        heap = self._timeouts
        while heap and heap[0][0] <= now:  # type: ignore[operator]
            entry = heapq.heappop(heap)
            execution = entry[2]
            if execution is None:
                self._dead_timeouts -= 1
                continue
            assert isinstance(execution, Execution)
            execution.timeout_entry = None
            due.append(execution)
        return due

    @property
    def timeout_entries(self) -> int:
        """Entries still referencing a running execution."""
        return len(self._timeouts) - self._dead_timeouts

    # -- both -------------------------------------------------------------------------------

    def __bool__(self) -> bool:
        return bool(self._retry or self._timeouts)

    def next_deadline(self) -> float | None:
        candidates: list[float] = []
        if self._retry:
            candidates.append(self._retry[0][0])
        if self._timeouts:
            deadline = self._timeouts[0][0]
            assert isinstance(deadline, float)
            candidates.append(deadline)
        return min(candidates) if candidates else None
