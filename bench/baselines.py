"""The two baselines of ``bench/harness.py``; they live only in ``bench/`` (threadsched never uses them).

Both run a recipe over the engine's own pieces, so the *only* difference from ``run_recipe`` is how ready
work reaches a thread:

* readiness and the row-group lifecycle: the engine's ``CompletionTracker`` (at most
  ``run.max_row_groups_in_flight`` row groups open, a row group opens when an earlier one is checkpointed);
* work: the engine's compiled executors (``compile_columns`` over ``build_endpoints``), root cell columns
  as one task per row group (``runner.tasks.root_cells``), the engine's retry budget inline
  (``reference.with_retries`` with ``default_max_attempts``);
* output: pre/post-batch processors per row group (``apply_stage``) and ``OutputWriter``, so the output hash
  equals the engine's (and ``run_reference``'s).

How ready work reaches a thread:

* ``fifo``: every ready task goes into one FIFO deque. One dispatcher thread takes the HEAD, blocks on its
  model's ``BoundedSemaphore`` (when it names a model) and then on a worker-slot semaphore, and submits it
  to a ``ThreadPoolExecutor(workers)``; both are released when it finishes. A head waiting for a saturated
  model holds up everything behind it (head-of-line blocking), which is what a single FIFO queue does.
* ``spawn_then_wait``: every ready task is submitted to the ``ThreadPoolExecutor(workers)`` at once and the
  worker acquires the model semaphore inside. A worker that finds it taken (a non-blocking try first) is a
  *hidden waiter*: a thread spent on waiting, invisible to every queue metric.

Each task records when it became ready (the main thread took it from the tracker's frontier) and when it
got its lease (its semaphores acquired); ``BaselineResult.waits`` holds those gaps per column.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from threadsched.engine import BatchExecutor, CellExecutor, Recipe, build_endpoints, compile_columns
from threadsched.engine.reference import Failure, default_max_attempts, with_retries
from threadsched.engine.runner.output import OutputWriter, apply_stage, compile_stage, row_group_range
from threadsched.engine.runner.rows import Rows, RowStore, ancestors
from threadsched.engine.runner.tasks import RootCells, root_cells
from threadsched.engine.tracker import ColumnNode, CompletionTracker, DropResult, Outcome, TaskKey

__all__ = ["BASELINES", "BaselineResult", "run_baseline"]

BASELINES = ("fifo", "spawn_then_wait")
_SKIPPED = object()  # the task's row was dropped before it started


@dataclass(frozen=True, slots=True)
class BaselineResult:
    kind: str
    output_hash: str
    rows_written: int
    rows_dropped: int
    elapsed: float
    waits: Mapping[str, tuple[float, ...]]  # column -> ready-to-lease gaps (seconds)
    hidden_waiters: int
    active_leases_after: int  # semaphore units never returned (must be 0)
    tasks: int
    counters: Mapping[str, int] = field(default_factory=dict)


class _LeaseBook:
    """Semaphores by resource plus an exact count of units held (the baselines' 'active leases')."""

    def __init__(self, limits: Mapping[str, int]) -> None:
        self.semaphores = {name: threading.BoundedSemaphore(limit) for name, limit in limits.items()}
        self._lock = threading.Lock()
        self.held = 0
        self.hidden_waiters = 0

    def acquire(self, semaphore: threading.BoundedSemaphore, on_park: Callable[[], None] | None = None) -> None:
        """Block until a unit is free; ``on_park`` marks a worker thread that has to wait (a hidden waiter)."""
        if not semaphore.acquire(blocking=False):
            if on_park is not None:
                with self._lock:
                    self.hidden_waiters += 1
                on_park()
            semaphore.acquire()
        with self._lock:
            self.held += 1

    def release(self, semaphore: threading.BoundedSemaphore) -> None:
        with self._lock:
            self.held -= 1
        semaphore.release()


class _BaselineRun:
    def __init__(
        self,
        kind: str,
        recipe: Recipe,
        out_dir: Path,
        workers: int,
        sleep: Callable[[float], None],
        on_park: Callable[[], None] | None,
    ) -> None:
        if kind not in BASELINES:
            raise ValueError(f"unknown baseline {kind!r} (known: {', '.join(BASELINES)})")
        self.kind = kind
        self.recipe = recipe
        self.workers = workers
        self.on_park = on_park if on_park is not None else (lambda: None)
        self.executors = compile_columns(recipe, build_endpoints(recipe, sleep=sleep))
        self.pre, self.post = compile_stage(recipe, "pre_batch"), compile_stage(recipe, "post_batch")
        self.max_attempts = default_max_attempts(recipe)
        self.ancestors = ancestors(recipe)
        self.tracker = CompletionTracker(
            [ColumnNode(name, ex.dependencies, ex.mode) for name, ex in self.executors.items()],
            records=recipe.run.records,
            buffer_size=recipe.run.buffer_size,
            max_row_groups_in_flight=recipe.run.max_row_groups_in_flight,
            has_pre_batch=bool(self.pre),
        )
        self.writer = OutputWriter(out_dir, recipe)
        self.book = _LeaseBook({**recipe.resource_limits, "submission": workers})
        self._lock = threading.Lock()  # guards _stale and _waits
        self.rows = RowStore(self.ancestors)  # the engine's row store: its own lock
        self._stale: set[TaskKey] = set()
        self._waits: dict[str, list[float]] = collections.defaultdict(list)
        self._completions: queue.SimpleQueue[tuple[TaskKey, object]] = queue.SimpleQueue()
        self._inflight: set[TaskKey] = set()
        self._fifo: collections.deque[tuple[TaskKey, float]] = collections.deque()
        self._fifo_cond = threading.Condition()
        self._closing = False
        self.tasks = 0

    # -- workers ------------------------------------------------------------------------------------------

    def _semaphore(self, key: TaskKey) -> threading.BoundedSemaphore | None:
        resource = self.executors[key.column].resource
        return self.book.semaphores[resource] if resource is not None else None

    def _leased(self, key: TaskKey, ready_at: float) -> None:
        waited = time.perf_counter() - ready_at
        with self._lock:
            self._waits[key.column].append(waited)

    def _compute(self, key: TaskKey) -> object:
        if not self.tracker.mark_started(key):
            return _SKIPPED
        executor = self.executors[key.column]
        rows = self.rows.inputs(key.column, key.row_group, key.row)
        if key.row is not None:
            assert isinstance(executor, CellExecutor)
            row = rows[0][1]
            return with_retries(executor, lambda attempt: executor.run_cell(row, attempt=attempt), self.max_attempts)
        if isinstance(executor, BatchExecutor):
            return with_retries(executor, lambda _attempt: executor.run_batch_rows(rows), self.max_attempts)
        assert isinstance(executor, CellExecutor)
        return root_cells(executor, rows, self.max_attempts)

    def _run_task(self, key: TaskKey, held: tuple[threading.BoundedSemaphore, ...]) -> None:
        try:
            outcome: object = self._compute(key)
        except BaseException as exc:  # a bug, not a task failure (with_retries records those): re-raised by main
            outcome = exc
        finally:
            for semaphore in held:
                self.book.release(semaphore)
        self._completions.put((key, outcome))

    def _spawn_then_wait_task(self, key: TaskKey, ready_at: float) -> None:
        with self._lock:
            stale = key in self._stale
        if stale:  # dropped while it sat in the pool's queue: skip it without a lease
            self._completions.put((key, _SKIPPED))
            return
        semaphore = self._semaphore(key)
        if semaphore is not None:
            self.book.acquire(semaphore, self.on_park)  # the hidden wait: this thread is already spent
        self._leased(key, ready_at)
        self._run_task(key, (semaphore,) if semaphore is not None else ())

    def _fifo_dispatcher(self, pool: cf.ThreadPoolExecutor) -> None:
        slots = self.book.semaphores["submission"]
        while True:
            with self._fifo_cond:
                while not self._fifo and not self._closing:
                    self._fifo_cond.wait()
                if not self._fifo:
                    return
                key, ready_at = self._fifo.popleft()
            with self._lock:
                stale = key in self._stale
            if stale:  # dropped while queued: the engine cancels such tasks, never leases them
                self._completions.put((key, _SKIPPED))
                continue
            semaphore = self._semaphore(key)
            held = (semaphore, slots) if semaphore is not None else (slots,)
            for item in held:
                self.book.acquire(item)  # the head blocks everything behind it
            self._leased(key, ready_at)
            pool.submit(self._run_task, key, held)

    # -- main thread ----------------------------------------------------------------------------------------

    def _dispatch(self, keys: tuple[TaskKey, ...], pool: cf.ThreadPoolExecutor) -> None:
        now = time.perf_counter()
        for key in keys:
            self.rows.open(key.row_group, row_group_range(self.recipe, key.row_group))
            self._inflight.add(key)
        self.tasks += len(keys)
        if self.kind == "spawn_then_wait":
            for key in keys:
                pool.submit(self._spawn_then_wait_task, key, now)
            return
        with self._fifo_cond:
            self._fifo.extend((key, now) for key in keys)
            self._fifo_cond.notify()

    def _handle(self, key: TaskKey, outcome: object) -> None:
        self._inflight.discard(key)
        with self._lock:
            self._stale.discard(key)
        if isinstance(outcome, BaseException):
            raise outcome
        if outcome is _SKIPPED:
            return
        if isinstance(outcome, Failure):
            self._apply_drop(self.tracker.mark_failed_permanent(key, outcome.reason))
            return
        if isinstance(outcome, RootCells):
            alive = set(self.tracker.alive_rows(key.row_group))
            for row, reason in sorted(outcome.failures.items()):
                if row in alive:
                    self._apply_drop(self.tracker.drop_row(key.row_group, row, reason))
            outcome = outcome.values
        if self.tracker.mark_complete(key) is not Outcome.RECORDED:
            return
        self.rows.write(key.column, key.row_group, key.row, outcome)

    def _apply_drop(self, dropped: DropResult) -> None:
        self.rows.drop(dropped.rows)
        with self._lock:
            self._stale.update(dropped.stale)

    def _group_rows(self, row_group: int) -> Rows:
        return self.rows.copies(row_group, self.tracker.alive_rows(row_group))

    def _drop_rows(self, row_group: int, reasons: Mapping[int, str]) -> None:
        for row, reason in sorted(reasons.items()):
            self._apply_drop(self.tracker.drop_row(row_group, row, reason))

    def _process_row_groups(self) -> None:
        progressed = True
        while progressed:
            progressed = False
            for row_group in self.tracker.pop_pre_batch_ready():
                progressed = True
                self._drop_rows(row_group, apply_stage(self.pre, self._group_rows(row_group), "pre_batch"))
                self._apply_drop(self.tracker.mark_pre_batch_done(row_group))
            for row_group in self.tracker.pop_completed_row_groups():
                progressed = True
                self._drop_rows(row_group, apply_stage(self.post, self._group_rows(row_group), "post_batch"))
                self.writer.write_row_group(row_group, self._group_rows(row_group), self.tracker.dropped_in(row_group))
                self.tracker.mark_checkpointed(row_group)
                self.rows.close(row_group)

    def _loop(self, pool: cf.ThreadPoolExecutor) -> None:
        while True:
            self._process_row_groups()
            if self.tracker.is_finished():
                return
            frontier = self.tracker.ready_frontier()
            if frontier:
                self.tracker.mark_enqueued(frontier)
                self._dispatch(frontier, pool)
            if not self._inflight:
                if not frontier:
                    raise RuntimeError(f"{self.kind} baseline stalled: {self.tracker!r}")
                continue
            item: tuple[TaskKey, object] | None = self._completions.get()
            while item is not None:
                self._handle(*item)
                try:
                    item = self._completions.get_nowait()
                except queue.Empty:
                    item = None

    def run(self) -> BaselineResult:
        started = time.perf_counter()
        pool = cf.ThreadPoolExecutor(self.workers, thread_name_prefix=f"bench-{self.kind}-worker")
        dispatcher = None
        if self.kind == "fifo":
            dispatcher = threading.Thread(target=self._fifo_dispatcher, args=(pool,), name="bench-fifo-dispatch", daemon=True)
            dispatcher.start()
        try:
            self._loop(pool)
        except BaseException:
            with self._fifo_cond:
                self._fifo.clear()
            raise
        finally:
            with self._fifo_cond:
                self._closing = True
                self._fifo_cond.notify_all()
            if dispatcher is not None:
                dispatcher.join()
            pool.shutdown(wait=True)
        elapsed = time.perf_counter() - started
        dropped = {row: reason for (_group, row), reason in sorted(self.tracker.dropped_rows().items())}
        summary: dict[str, Any] = {"mode": f"baseline:{self.kind}", "elapsed": elapsed, "capacity": {"workers": self.workers}}
        output_hash = self.writer.finish(summary, dropped)
        with self._lock:
            waits = {column: tuple(values) for column, values in self._waits.items()}
        return BaselineResult(
            kind=self.kind,
            output_hash=output_hash,
            rows_written=self.writer.rows_written,
            rows_dropped=len(dropped),
            elapsed=elapsed,
            waits=waits,
            hidden_waiters=self.book.hidden_waiters,
            active_leases_after=self.book.held,
            tasks=self.tasks,
            counters={"tasks": self.tasks, "hidden_waiters": self.book.hidden_waiters, **self.tracker.statistics()},
        )


def run_baseline(
    kind: str,
    recipe: Recipe,
    out_dir: Path,
    *,
    workers: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_park: Callable[[], None] | None = None,
) -> BaselineResult:
    """Run ``recipe`` with the ``kind`` baseline into ``out_dir`` (the same files as ``run_recipe``).

    ``sleep`` is the mock providers' sleep; ``on_park`` is called (spawn_then_wait only) each time a worker
    finds its model semaphore taken, before it blocks: tests use it to gate the mocks deterministically."""
    return _BaselineRun(kind, recipe, Path(out_dir), workers or recipe.run.max_workers, sleep, on_park).run()
