"""Readiness layer of the dataset engine: which tasks are dependency-ready, and the row-group lifecycle.

The tracker never touches the queue and knows nothing about leases: the engine moves ready tasks into the
queue and reports back. A task's life is::

    WAITING -> READY (in ready_frontier) -> QUEUED (mark_enqueued) -> RUNNING (mark_started)
            -> COMPLETE (mark_complete) | DEFERRED (mark_failed_retryable; salvage_round -> READY)
            | dropped with its row (mark_failed_permanent, drop_row, ...)

Decisions of the tracker:

* ``mark_started`` is required (like ``set_running_or_notify_cancel``): it returns False when the row was
  dropped while the task was queued, and the worker then skips it; a forgotten call fails on the first
  completion rather than in a rare race.
* A dropped row retires its tasks: unacknowledged ones leave the frontier, QUEUED ones come back in
  ``DropResult.stale`` (to discard from the queue), RUNNING ones report ``Outcome.DISCARDED`` later. A
  non-retryable batch (or root) failure drops its whole row group.
* A row group completes when nothing of it is pending (and, with pre-batch processors, after
  ``mark_pre_batch_done``), even with zero rows left; it keeps its slot until ``mark_checkpointed``.
* ``salvage_round`` is legal only when nothing is ready, queued or running; ``drop_deferred`` drops what
  the last round left. ``is_finished`` also waits for orphans, so the run ends with no task in flight.
* Work per call is proportional to the dependents touched, never to the run; memory is per open row
  group plus the record of dropped rows.

The state (``RowGroup`` per open row group, the ``TaskIndex`` across them) is only touched under
``CompletionTracker._lock``; the column plan is computed once and is immutable. Lock order:
``CompletionTracker._lock`` is a leaf; nothing is called out of it.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

__all__ = ["ColumnNode", "CompletionTracker", "DropResult", "Outcome", "TaskKey", "TrackerError"]

TaskType = Literal["batch", "cell"]

# -- values of the tracker's API -----------------------------------------------------------------------


class TrackerError(RuntimeError):
    """A call the tracker's state machine does not allow: always a bug in the caller, never ignored."""

    def __init__(self, message: str, key: TaskKey | None = None) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True, slots=True)
class ColumnNode:
    """One column of the DAG. A column without dependencies is a root: one batch task per row group,
    whatever its ``mode``. Otherwise ``mode="cell"`` means one task per row, ``"batch"`` one per row group."""

    name: str
    dependencies: tuple[str, ...] = ()
    mode: Literal["cell", "batch"] = "cell"

    @property
    def is_root(self) -> bool:
        return not self.dependencies


@dataclass(frozen=True, slots=True)
class TaskKey:
    """Stable identity of one unit of work; ``row`` is None for batch (and root) tasks."""

    column: str
    row_group: int
    row: int | None
    task_type: TaskType

    @property
    def task_id(self) -> str:
        row = "-" if self.row is None else str(self.row)
        return f"{self.column}/rg{self.row_group}/r{row}/{self.task_type}"


class Outcome(enum.Enum):
    """What the tracker did with a reported terminal outcome."""

    RECORDED = "recorded"
    #: The task was running when its row (or row group) was dropped: throw its result away.
    DISCARDED = "discarded"


@dataclass(frozen=True, slots=True)
class DropResult:
    """``rows`` newly dropped as (row_group, row); ``stale`` the acknowledged-but-not-started tasks of those
    rows, which the engine must ``discard`` from its queue (a worker that still picks one up gets False from
    ``mark_started``)."""

    rows: tuple[tuple[int, int], ...] = ()
    stale: tuple[TaskKey, ...] = ()


# -- the tracker's state: the column plan and each open row group (under CompletionTracker._lock) ------


class TaskState(enum.Enum):
    WAITING = "waiting for dependencies"
    READY = "ready but not acknowledged"
    QUEUED = "acknowledged but not started"
    RUNNING = "running"
    DEFERRED = "deferred for salvage"
    FAILED = "failed"  # transient: between a permanent failure and the drop it causes
    COMPLETE = "already complete"
    DROPPED = "dropped with its row"
    STALE = "stale (its row was dropped while it was queued)"
    ORPHANED = "orphaned (its row was dropped while it ran)"


RETIRED = frozenset({TaskState.DROPPED, TaskState.STALE, TaskState.ORPHANED})


class PreBatch(enum.Enum):
    NOT_REQUIRED = "not required"
    WAITING_FOR_ROOTS = "waiting for root tasks"
    READY = "ready for pre-batch processors"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class ColumnPlan:
    name: str
    index: int
    is_root: bool
    task_type: TaskType
    n_dependencies: int
    cell_dependents: tuple[str, ...]
    batch_dependents: tuple[str, ...]


def plan_columns(columns: Sequence[ColumnNode]) -> dict[str, ColumnPlan]:
    """Validate the column list (topological order, known and unique names) and index its dependents."""
    if not columns:
        raise ValueError("CompletionTracker needs at least one column")
    seen: dict[str, ColumnNode] = {}
    for column in columns:
        if not isinstance(column, ColumnNode):
            raise TypeError(f"columns must be ColumnNode instances, got {column!r}")
        if not isinstance(column.name, str) or not column.name:
            raise ValueError(f"column name must be a non-empty string, got {column.name!r}")
        if column.name in seen:
            raise ValueError(f"duplicate column {column.name!r}")
        if column.mode not in ("cell", "batch"):
            raise ValueError(f"column {column.name!r}: mode must be 'cell' or 'batch', got {column.mode!r}")
        if len(set(column.dependencies)) != len(column.dependencies):
            raise ValueError(f"column {column.name!r} lists a dependency twice: {column.dependencies!r}")
        for dependency in column.dependencies:
            if dependency == column.name:
                raise ValueError(f"column {column.name!r} depends on itself")
            if dependency not in seen:
                known = any(other.name == dependency for other in columns)
                problem = "comes after it (columns must be in topological order)" if known else "is unknown"
                raise ValueError(f"column {column.name!r} depends on {dependency!r}, which {problem}")
        seen[column.name] = column
    dependents: dict[str, list[str]] = {column.name: [] for column in columns}
    for column in columns:
        for dependency in column.dependencies:
            dependents[dependency].append(column.name)

    def task_type(node: ColumnNode) -> TaskType:
        return "batch" if node.is_root or node.mode == "batch" else "cell"

    return {
        column.name: ColumnPlan(
            name=column.name,
            index=index,
            is_root=column.is_root,
            task_type=task_type(column),
            n_dependencies=len(column.dependencies),
            cell_dependents=tuple(name for name in dependents[column.name] if task_type(seen[name]) == "cell"),
            batch_dependents=tuple(name for name in dependents[column.name] if task_type(seen[name]) == "batch"),
        )
        for index, column in enumerate(columns)
    }


@dataclass(slots=True)
class RowGroup:
    """Mutable state of one open row group; released as a whole when the row group is checkpointed."""

    index: int
    rows: range
    alive: set[int]
    pre_batch: PreBatch
    state: dict[TaskKey, TaskState] = field(default_factory=dict)
    #: Unmet dependencies (plus the pre-batch gate) of each WAITING task.
    pending: dict[TaskKey, int] = field(default_factory=dict)
    #: For cell columns with batch dependents: alive rows whose cell is not complete yet.
    incomplete_rows: dict[str, int] = field(default_factory=dict)
    remaining: int = 0  # tasks neither complete nor retired
    roots_remaining: int = 0
    complete: bool = False


def positive_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def new_row_group(index: int, rows: range, order: Sequence[ColumnPlan], has_pre_batch: bool) -> tuple[RowGroup, list[TaskKey]]:
    """Build the state of a newly opened row group; returns it with its root tasks (ready at once).

    Every non-root task starts WAITING on its dependency count, plus one for the pre-batch gate."""
    gate = 1 if has_pre_batch else 0
    group = RowGroup(index, rows, set(rows), PreBatch.WAITING_FOR_ROOTS if gate else PreBatch.NOT_REQUIRED)
    roots: list[TaskKey] = []
    for column in order:
        if column.is_root:
            roots.append(TaskKey(column.name, index, None, "batch"))
            group.roots_remaining += 1
            group.remaining += 1
            continue
        if column.task_type == "cell" and column.batch_dependents:
            group.incomplete_rows[column.name] = len(rows)
        cells: Sequence[int | None] = rows if column.task_type == "cell" else (None,)
        for row in cells:
            key = TaskKey(column.name, index, row, column.task_type)
            group.state[key] = TaskState.WAITING
            group.pending[key] = column.n_dependencies + gate
            group.remaining += 1
    return group, roots


def describe(group: RowGroup | None, key: TaskKey) -> str:
    state = None if group is None else group.state.get(key)
    if state is None:
        return f"unknown task {key.task_id!r}"
    return f"task {key.task_id!r}: it is {state.value}"


INDEXED = (TaskState.READY, TaskState.QUEUED, TaskState.RUNNING, TaskState.DEFERRED, TaskState.STALE, TaskState.ORPHANED)


class TaskIndex:
    """The tracker's tasks by state, for the states that are looked up across row groups.

    STALE and ORPHANED entries outlive their row group's checkpoint: a worker may still pick up a stale task
    (``mark_started`` answers False) or report an orphan after its row group closed."""

    def __init__(self) -> None:
        self.by_state: dict[TaskState, dict[TaskKey, None]] = {state: {} for state in INDEXED}
        self.frontier_view: tuple[TaskKey, ...] | None = None

    def __getitem__(self, state: TaskState) -> dict[TaskKey, None]:
        return self.by_state[state]

    def move(self, group: RowGroup, key: TaskKey, new: TaskState) -> TaskState | None:
        old = group.state.get(key)
        if old in self.by_state:
            del self.by_state[old][key]
        if new in self.by_state:
            self.by_state[new][key] = None
        if TaskState.READY in (old, new):
            self.frontier_view = None
        group.state[key] = new
        return old


READY, QUEUED, RUNNING, DEFERRED = TaskState.READY, TaskState.QUEUED, TaskState.RUNNING, TaskState.DEFERRED
STALE, ORPHANED = TaskState.STALE, TaskState.ORPHANED


# -- the tracker ---------------------------------------------------------------------------------------


class CompletionTracker:
    """Thread-safe readiness and row-group bookkeeping for one run (see the module docstring)."""

    def __init__(
        self,
        columns: Sequence[ColumnNode],
        *,
        records: int,
        buffer_size: int,
        max_row_groups_in_flight: int,
        has_pre_batch: bool = False,
        skip_row_groups: Iterable[int] = (),
    ) -> None:
        self._plan: dict[str, ColumnPlan] = plan_columns(columns)
        self._order = tuple(self._plan.values())
        self._records = positive_int(records, "records", 0)
        self._buffer_size = positive_int(buffer_size, "buffer_size", 1)
        self._max_open = positive_int(max_row_groups_in_flight, "max_row_groups_in_flight", 1)
        self._has_pre_batch = bool(has_pre_batch)
        self._skip = frozenset(skip_row_groups)  # checkpointed by an earlier run (resume): never opened
        self._total_groups = -(-self._records // self._buffer_size)
        self._lock = threading.Lock()
        self._groups: dict[int, RowGroup] = {}
        self._next_group = 0
        self._checkpointed = 0
        self._tasks = TaskIndex()
        self._dropped: dict[tuple[int, int], str] = {}
        self._pre_batch_ready: list[int] = []
        self._completed: list[int] = []
        self._salvage_rounds = 0
        self._tasks_completed = 0
        with self._lock:
            self._open_row_groups_locked()

    def ready_frontier(self) -> tuple[TaskKey, ...]:
        """Ready, unacknowledged tasks ordered by (row group, column order, row); opens row groups first."""
        with self._lock:
            self._open_row_groups_locked()
            if self._tasks.frontier_view is None:
                self._tasks.frontier_view = tuple(sorted(self._tasks[READY], key=self._order_key))
            return self._tasks.frontier_view

    def mark_enqueued(self, task_ids: Iterable[TaskKey]) -> None:
        """Acknowledge exactly ``task_ids`` (the ones the queue accepted); all must be in the frontier."""
        keys = list(task_ids)
        with self._lock:
            for key in keys:
                if key not in self._tasks[READY]:
                    raise TrackerError(f"cannot acknowledge {describe(self._groups.get(key.row_group), key)}", key)
            if len(set(keys)) != len(keys):
                raise TrackerError("mark_enqueued got the same task twice")
            for key in keys:
                self._tasks.move(self._groups[key.row_group], key, QUEUED)

    def mark_started(self, key: TaskKey) -> bool:
        """A worker is about to run ``key``. False: the task went stale, skip it and report nothing."""
        with self._lock:
            if key in self._tasks[STALE]:  # dropped while queued: the worker skips it
                del self._tasks[STALE][key]
                return False
            self._tasks.move(self._expect_locked(key, QUEUED, "start"), key, RUNNING)
            return True

    def mark_complete(self, key: TaskKey) -> Outcome:
        """Record the success of a running task and make its dependents ready where they can be."""
        with self._lock:
            if self._settle_orphan_locked(key):
                return Outcome.DISCARDED
            self._complete_locked(self._expect_locked(key, RUNNING, "complete"), key)
            return Outcome.RECORDED

    def mark_failed_retryable(self, key: TaskKey) -> Outcome:
        """Defer a running task for the next salvage round."""
        with self._lock:
            if self._settle_orphan_locked(key):
                return Outcome.DISCARDED
            self._tasks.move(self._expect_locked(key, RUNNING, "defer"), key, DEFERRED)
            return Outcome.RECORDED

    def mark_failed_permanent(self, key: TaskKey, reason: str) -> DropResult:
        """A non-retryable failure: drop the task's row, or every row of its row group for a batch task."""
        with self._lock:
            if self._settle_orphan_locked(key):
                return DropResult()
            group = self._expect_locked(key, RUNNING, "fail")
            self._tasks.move(group, key, TaskState.FAILED)
            rows = sorted(group.alive) if key.row is None else [key.row]
            return self._drop_rows_locked(group, rows, reason)

    # -- drops and salvage --------------------------------------------------------------------------------

    def drop_row(self, row_group: int, row: int, reason: str) -> DropResult:
        """Drop one alive row of an open (possibly complete, not yet checkpointed) row group."""
        with self._lock:
            group = self._group_locked(row_group)
            if row not in group.alive:
                raise TrackerError(f"row {row} of row group {row_group} is not alive (dropped or out of range)")
            return self._drop_rows_locked(group, [row], reason)

    def drop_row_group(self, row_group: int, reason: str) -> DropResult:
        """Drop every alive row of an open row group."""
        with self._lock:
            group = self._group_locked(row_group)
            return self._drop_rows_locked(group, sorted(group.alive), reason)

    def salvage_round(self) -> tuple[TaskKey, ...]:
        """Put every deferred task back into the frontier (unacknowledged); counts the round.

        Only once the frontier is drained and nothing is queued or running (orphans may still run)."""
        with self._lock:
            ready, queued, running = (len(self._tasks[state]) for state in (READY, QUEUED, RUNNING))
            if ready or queued or running:
                raise TrackerError(f"salvage_round needs a drained tracker: {ready} ready, {queued} queued, {running} running")
            self._salvage_rounds += 1
            keys = tuple(sorted(self._tasks[DEFERRED], key=self._order_key))
            for key in keys:
                self._tasks.move(self._groups[key.row_group], key, READY)
            return keys

    def drop_deferred(self, reason: str) -> DropResult:
        """Leftovers after the last salvage round: drop the row (or row group) of every deferred task."""
        with self._lock:
            rows: list[tuple[int, int]] = []
            stale: list[TaskKey] = []
            for key in sorted(self._tasks[DEFERRED], key=self._order_key):
                if key not in self._tasks[DEFERRED]:  # dropped along with an earlier key's row group
                    continue
                group = self._groups[key.row_group]
                result = self._drop_rows_locked(group, sorted(group.alive) if key.row is None else [key.row], reason)
                rows.extend(result.rows)
                stale.extend(result.stale)
            return DropResult(tuple(rows), tuple(stale))

    def deferred(self) -> tuple[TaskKey, ...]:
        with self._lock:
            return tuple(sorted(self._tasks[DEFERRED], key=self._order_key))

    @property
    def salvage_rounds(self) -> int:
        with self._lock:
            return self._salvage_rounds

    def dropped_rows(self) -> Mapping[tuple[int, int], str]:
        """Every dropped (row_group, row) with its reason, for the whole run (a read-only snapshot)."""
        with self._lock:
            return MappingProxyType(dict(self._dropped))

    def dropped_in(self, row_group: int) -> dict[int, str]:
        """Row -> reason for the dropped rows of one row group (what its checkpoint records)."""
        start = row_group * self._buffer_size
        rows = range(start, min(start + self._buffer_size, self._records))
        with self._lock:
            return {row: self._dropped[(row_group, row)] for row in rows if (row_group, row) in self._dropped}

    # -- row-group lifecycle ------------------------------------------------------------------------------

    def pop_pre_batch_ready(self) -> tuple[int, ...]:
        """Row groups whose root tasks all completed and that wait for ``mark_pre_batch_done``; each once."""
        with self._lock:
            ready, self._pre_batch_ready = tuple(self._pre_batch_ready), []
            return ready

    def mark_pre_batch_done(
        self, row_group: int, dropped_rows: Iterable[int] = (), reason: str = "dropped by a pre-batch processor"
    ) -> DropResult:
        """Pre-batch processors ran on ``row_group``: drop ``dropped_rows``, then open its downstream tasks."""
        rows = sorted(set(dropped_rows))
        with self._lock:
            group = self._group_locked(row_group)
            if group.pre_batch is not PreBatch.READY:
                raise TrackerError(f"row group {row_group}: pre-batch is {group.pre_batch.value}, cannot mark it done")
            for row in rows:
                if row not in group.alive:
                    raise TrackerError(f"pre-batch of row group {row_group} dropped row {row}, which is not alive")
            result = self._drop_rows_locked(group, rows, reason)
            group.pre_batch = PreBatch.DONE
            for key in list(group.pending):
                self._satisfy_locked(group, key)
            self._check_complete_locked(group)
            return result

    def completed_row_groups(self) -> tuple[int, ...]:
        """Complete row groups not yet checkpointed."""
        with self._lock:
            return tuple(sorted(index for index, group in self._groups.items() if group.complete))

    def pop_completed_row_groups(self) -> tuple[int, ...]:
        """Row groups that completed since the last call, ascending; each is returned once."""
        with self._lock:
            done, self._completed = tuple(sorted(self._completed)), []
            return done

    def alive_rows(self, row_group: int) -> tuple[int, ...]:
        with self._lock:
            return tuple(sorted(self._group_locked(row_group).alive))

    def mark_checkpointed(self, row_group: int) -> None:
        """Close a complete row group: release its state and free its slot for the next row group."""
        with self._lock:
            group = self._group_locked(row_group)
            if not group.complete:
                raise TrackerError(f"row group {row_group} is not complete ({group.remaining} tasks pending)")
            del self._groups[row_group]
            if row_group in self._completed:
                self._completed.remove(row_group)
            self._checkpointed += 1
            self._open_row_groups_locked()

    def open_row_groups(self) -> tuple[int, ...]:
        with self._lock:
            return tuple(sorted(self._groups))

    def is_finished(self) -> bool:
        """Every row group is checkpointed and no task (orphans included) is still in flight."""
        with self._lock:
            in_flight = self._tasks[QUEUED] or self._tasks[RUNNING] or self._tasks[ORPHANED]
            return self._checkpointed == self._total_groups and not in_flight

    def statistics(self) -> dict[str, int]:
        names = {READY: "ready", QUEUED: "queued", RUNNING: "running", ORPHANED: "orphaned", DEFERRED: "deferred"}
        with self._lock:
            counts = {name: len(self._tasks[state]) for state, name in names.items()}
            return {
                "row_groups_total": self._total_groups,
                "row_groups_open": len(self._groups),
                "row_groups_checkpointed": self._checkpointed,
                **counts,
                "in_flight": counts["queued"] + counts["running"] + counts["orphaned"],
                "dropped_rows": len(self._dropped),
                "stale_unclaimed": len(self._tasks[STALE]),
                "salvage_rounds": self._salvage_rounds,
                "tasks_completed": self._tasks_completed,
                "tracked_tasks": sum(len(group.state) for group in self._groups.values()),
            }

    def __repr__(self) -> str:
        s = self.statistics()
        return (
            f"<CompletionTracker open={s['row_groups_open']}/{self._max_open} "
            f"checkpointed={s['row_groups_checkpointed']}/{s['row_groups_total']} ready={s['ready']} "
            f"in_flight={s['in_flight']} deferred={s['deferred']} dropped_rows={s['dropped_rows']}>"
        )

    # -- helpers (call with the lock held) ----------------------------------------------------------------

    def _order_key(self, key: TaskKey) -> tuple[int, int, int]:
        return (key.row_group, self._plan[key.column].index, -1 if key.row is None else key.row)

    def _open_row_groups_locked(self) -> None:
        while len(self._groups) < self._max_open and self._next_group < self._total_groups:
            index = self._next_group
            self._next_group += 1
            if index in self._skip:
                self._checkpointed += 1
                continue
            rows = range(index * self._buffer_size, min((index + 1) * self._buffer_size, self._records))
            group, roots = new_row_group(index, rows, self._order, self._has_pre_batch)
            self._groups[index] = group
            for key in roots:
                self._tasks.move(group, key, READY)

    def _satisfy_locked(self, group: RowGroup, key: TaskKey) -> None:
        if group.state.get(key) is not TaskState.WAITING:
            return  # retired with its row
        left = group.pending[key] - 1
        if left:
            group.pending[key] = left
        else:
            del group.pending[key]
            self._tasks.move(group, key, READY)

    def _complete_locked(self, group: RowGroup, key: TaskKey) -> None:
        column = self._plan[key.column]
        self._tasks.move(group, key, TaskState.COMPLETE)
        group.remaining -= 1
        self._tasks_completed += 1
        if column.is_root:
            group.roots_remaining -= 1
            if not group.roots_remaining and group.pre_batch is PreBatch.WAITING_FOR_ROOTS:
                group.pre_batch = PreBatch.READY
                self._pre_batch_ready.append(group.index)
        index = group.index
        if key.row is not None:
            for name in column.cell_dependents:
                self._satisfy_locked(group, TaskKey(name, index, key.row, "cell"))
            self._cell_row_done_locked(group, column)
        else:
            for name in column.cell_dependents:
                for row in group.alive:
                    self._satisfy_locked(group, TaskKey(name, index, row, "cell"))
            for name in column.batch_dependents:
                self._satisfy_locked(group, TaskKey(name, index, None, "batch"))
        self._check_complete_locked(group)

    def _cell_row_done_locked(self, group: RowGroup, column: ColumnPlan) -> None:
        """One more alive row of a cell column is done (complete or dropped): batch dependents may open."""
        if not column.batch_dependents:
            return
        left = group.incomplete_rows[column.name] - 1
        group.incomplete_rows[column.name] = left
        if not left:
            for name in column.batch_dependents:
                self._satisfy_locked(group, TaskKey(name, group.index, None, "batch"))

    def _drop_rows_locked(self, group: RowGroup, rows: Sequence[int], reason: str) -> DropResult:
        stale: list[TaskKey] = []
        unfinished: list[tuple[ColumnPlan, int]] = []
        for row in rows:
            self._dropped[(group.index, row)] = reason
            group.alive.discard(row)
            for column in self._order:
                if column.task_type == "cell" and not column.is_root:
                    key = TaskKey(column.name, group.index, row, "cell")
                    if group.state[key] is not TaskState.COMPLETE:
                        unfinished.append((column, row))
                    self._retire_locked(group, key, stale)
        if not group.alive:
            for column in self._order:
                if column.task_type == "batch":
                    self._retire_locked(group, TaskKey(column.name, group.index, None, "batch"), stale)
        for column, _row in unfinished:
            self._cell_row_done_locked(group, column)
        self._check_complete_locked(group)
        return DropResult(tuple((group.index, row) for row in rows), tuple(stale))

    def _retire_locked(self, group: RowGroup, key: TaskKey, stale: list[TaskKey]) -> None:
        state = group.state[key]
        if state is TaskState.COMPLETE or state in RETIRED:
            return
        group.pending.pop(key, None)
        if state is QUEUED:
            stale.append(key)  # the engine must discard it from the queue
        self._tasks.move(group, key, STALE if state is QUEUED else ORPHANED if state is RUNNING else TaskState.DROPPED)
        group.remaining -= 1

    def _check_complete_locked(self, group: RowGroup) -> None:
        if group.complete or group.remaining:
            return
        if group.alive and group.pre_batch not in (PreBatch.NOT_REQUIRED, PreBatch.DONE):
            return
        group.complete = True
        self._completed.append(group.index)

    def _settle_orphan_locked(self, key: TaskKey) -> bool:
        if key not in self._tasks[ORPHANED]:
            return False
        del self._tasks[ORPHANED][key]
        group = self._groups.get(key.row_group)
        if group is not None:
            group.state[key] = TaskState.DROPPED
        return True

    def _group_locked(self, row_group: int) -> RowGroup:
        group = self._groups.get(row_group)
        if group is None:
            status = "checkpointed" if row_group < self._next_group else "not open"
            raise TrackerError(f"row group {row_group} is {status}")
        return group

    def _expect_locked(self, key: TaskKey, expected: TaskState, action: str) -> RowGroup:
        group = self._groups.get(key.row_group)
        if group is None or group.state.get(key) is not expected:
            raise TrackerError(f"cannot {action} {describe(self._groups.get(key.row_group), key)}", key)
        return group
