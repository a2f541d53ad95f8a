"""One engine task: what it computes, and the call the scheduled runner submits for it.

``run_task`` is a task's work: one cell (a cell column's row), one batch (a batch column's row group), or a
root cell column over its row group, each row retried inline as the reference does (``RootCells``). The
call that runs it is local or remote:

* Local (the runner's own thread pool): ``EngineTasks.work`` runs in a worker thread; it calls
  ``mark_started`` and copies its inputs from the ``RowStore`` when it starts (a task whose row was dropped
  while it was queued is skipped: ``SKIPPED``).
* Remote (``run_recipe(executor=...)``, e.g. ``threadsched.backends.dask.DaskExecutor``): the task runs in
  a process that can reach neither the tracker nor the row store. The main thread starts the task and
  copies its inputs when it submits it, which is exact: a task is ready only once its dependencies are
  complete and written (``_record_success`` writes before it submits dependents). A row dropped while the
  task waits makes it ORPHANED instead of STALE: it runs and its result is discarded (``mark_complete``
  answers ``DISCARDED``), where the thread path would skip it; the output is the same. The call is
  ``run_remote_task(recipe, column, rows, cell, attempt, max_attempts)``: the recipe travels with it
  (cloudpickle; about 2 KB) and each process compiles the column executors once per recipe hash (the
  compiled mock endpoints hold locks and cannot be pickled). Mock latencies there use ``time.sleep``
  (``run_recipe(sleep=...)`` is local only), and each process has its own endpoints (an openai provider's
  request admission limits per process, not across the cluster).

Lock order: ``_COMPILED_LOCK`` is a leaf; compilation (which imports user code) runs outside it.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from threadsched.engine.columns import BatchExecutor, CellExecutor, ColumnExecutor, build_endpoints, compile_columns
from threadsched.engine.recipe import Recipe
from threadsched.engine.reference import Failure, with_retries
from threadsched.engine.runner.rows import Rows, RowStore
from threadsched.engine.tracker import CompletionTracker, TaskKey

__all__ = ["SKIPPED", "EngineTasks", "RootCells", "root_cells", "run_remote_task", "run_task"]

SKIPPED = object()  # a worker found its task stale (its row was dropped while it was queued)
TaskCall = tuple[Callable[..., object], tuple[Any, ...]]

_COMPILED_KEEP = 8  # recipes whose executors a process keeps compiled
_COMPILED: dict[str, Mapping[str, ColumnExecutor]] = {}
_COMPILED_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class RootCells:
    """The result of a root column with a cell executor: values and per-row failure reasons."""

    values: dict[int, object]
    failures: dict[int, str]


def run_task(executor: ColumnExecutor, rows: Rows, *, cell: bool, attempt: int, max_attempts: int) -> object:
    """A worker's task: one cell (``rows`` holds its row), a batch, or a root cell column over a row group."""
    if cell:
        assert isinstance(executor, CellExecutor)
        return executor.run_cell(rows[0][1], attempt=attempt)
    if isinstance(executor, BatchExecutor):
        return executor.run_batch_rows(rows)
    assert isinstance(executor, CellExecutor)
    return root_cells(executor, rows, max_attempts)


def root_cells(executor: CellExecutor, rows: Rows, max_attempts: int) -> RootCells:
    """Run a root column's cell executor over a row group, retrying each row inline like the reference."""
    values: dict[int, object] = {}
    failures: dict[int, str] = {}
    for index, row in rows:
        outcome = with_retries(executor, functools.partial(_run_cell, executor, row), max_attempts)
        if isinstance(outcome, Failure):
            failures[index] = outcome.reason
        else:
            values[index] = outcome
    return RootCells(values, failures)


def _run_cell(executor: CellExecutor, row: Mapping[str, object], attempt: int) -> object:
    return executor.run_cell(row, attempt=attempt)


class EngineTasks:
    """Builds the call the runner submits for a task (see the module docstring)."""

    def __init__(
        self,
        recipe: Recipe,
        tracker: CompletionTracker,
        rows: RowStore,
        executors: Mapping[str, ColumnExecutor],
        max_attempts: int,
        *,
        remote: bool,
    ) -> None:
        self.recipe = recipe
        self.tracker = tracker
        self.rows = rows
        self.executors = executors
        self.max_attempts = max_attempts
        self.remote = remote

    def call(self, key: TaskKey, attempt: int) -> TaskCall:
        """``(fn, args)`` to submit for ``key``; main thread only, right after ``mark_enqueued``."""
        if not self.remote:
            return self.work, (key, attempt)
        if not self.tracker.mark_started(key):  # pragma: no cover - only the main thread drops rows
            raise RuntimeError(f"engine task {key.task_id} went stale before it was submitted")
        rows = self.rows.inputs(key.column, key.row_group, key.row)
        return run_remote_task, (self.recipe, key.column, rows, key.row is not None, attempt, self.max_attempts)

    def work(self, key: TaskKey, attempt: int) -> object:
        """A worker thread's task."""
        if not self.tracker.mark_started(key):
            return SKIPPED
        rows = self.rows.inputs(key.column, key.row_group, key.row)
        return run_task(
            self.executors[key.column], rows, cell=key.row is not None, attempt=attempt, max_attempts=self.max_attempts
        )


def run_remote_task(recipe: Recipe, column: str, rows: Rows, cell: bool, attempt: int, max_attempts: int) -> object:
    """A task in another process: ``run_task`` with this process's compiled executor of ``column``."""
    return run_task(compiled_executors(recipe)[column], rows, cell=cell, attempt=attempt, max_attempts=max_attempts)


def compiled_executors(recipe: Recipe) -> Mapping[str, ColumnExecutor]:
    """``recipe``'s column executors, compiled once per process and recipe hash."""
    with _COMPILED_LOCK:
        executors = _COMPILED.get(recipe.recipe_hash)
    if executors is not None:
        return executors
    compiled = compile_columns(recipe, build_endpoints(recipe))
    with _COMPILED_LOCK:
        executors = _COMPILED.setdefault(recipe.recipe_hash, compiled)
        while len(_COMPILED) > _COMPILED_KEEP:
            del _COMPILED[next(iter(_COMPILED))]
    return executors
