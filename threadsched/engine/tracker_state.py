"""Value types and per-row-group state for the completion tracker (see ``tracker.py``).

Nothing here locks: every ``_RowGroup`` is owned by one ``CompletionTracker`` and only touched under its
``_lock``. The column plan is computed once and is immutable.

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
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

TaskType = Literal["batch", "cell"]


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
