"""The scheduled run: ``run_recipe`` and its main loop, a recipe's column DAG over row groups on one ``Scheduler``.

Shape (one main thread, many workers):

* The ``CompletionTracker`` owns readiness. The main thread moves its ready frontier into the scheduler
  (one ``TaskGroup`` per column; llm columns request their ``llm:<provider>/<model>`` resource) and is the
  only thread that reports outcomes to the tracker, writes column values into the row store, runs
  processors and checkpoints. Workers only call ``mark_started``, copy their inputs from the ``RowStore``
  (which has its own lock) and compute outside it; a task run in another process gets its inputs from the
  main thread instead (``tasks``).
* Done-callbacks only push ``(key, future)`` onto a ``SimpleQueue``; the main thread blocks on it while
  work is in flight (no polling, no sleeps).
* Retries are salvage rounds of the tracker, never scheduler retries: a retryable failure is deferred and
  re-enqueued (a new task, a new lease) with ``attempt + 1`` once the frontier drains. Each task gets at
  most ``1 + run.max_salvage_rounds`` attempts (``reference.default_max_attempts``), the same budget as the
  reference, so a run drops exactly the rows the reference drops; a retryable failure on its last
  attempt drops its row at once with the reference's reason.
* Stopping early (error rate or ``cancel``): queued futures are cancelled, running ones finish and are
  recorded, complete row groups are checkpointed; ``--resume`` (``resume``) continues from them.
* A root cell column (template, llm or python without dependencies) runs as one batch task per row group
  that retries each row inline, as the reference does (``tasks.root_cells``).
* Events: the engine's stream (``events``) and the scheduler's share one sink and one run id; each
  engine task's scheduler events carry its correlation. ``OUT/capacity_plan.json`` is written at the end.
"""

from __future__ import annotations

import functools
import queue
import threading
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

from threadsched.core.event_log import JsonlEventSink
from threadsched.core.events import EventSink
from threadsched.core.futures import TaskFuture
from threadsched.core.scheduler import DEFAULT_GROUP, Scheduler, TaskGroup
from threadsched.engine.capacity import CapacityPlan, configured_capacity
from threadsched.engine.columns import ColumnExecutor, build_endpoints, close_endpoints, compile_columns
from threadsched.engine.http_endpoint import scheduler_policy
from threadsched.engine.progress import ProgressReporter, ProgressSnapshot
from threadsched.engine.recipe import Recipe
from threadsched.engine.reference import default_max_attempts, failure_reason
from threadsched.engine.runner.counts import RunCounts
from threadsched.engine.runner.events import (
    EVENT_LOG_FILES,
    EngineEvents,
    LateBoundSink,
    correlation_of,
    job_facts,
    new_run_id,
    open_event_log,
)
from threadsched.engine.runner.output import (
    OutputWriter,
    RunResult,
    ScheduledRunFacts,
    apply_stage,
    compile_stage,
    row_group_range,
    scheduled_result,
)
from threadsched.engine.runner.resume import prepare_output
from threadsched.engine.runner.rows import Rows, RowStore, ancestors
from threadsched.engine.runner.tasks import SKIPPED, EngineTasks, RootCells
from threadsched.engine.tracker import ColumnNode, CompletionTracker, DropResult, Outcome, TaskKey
from threadsched.policies import POLICY_NAMES

__all__ = ["run_recipe"]

_NAME = "threadsched-engine"


class _Run:
    def __init__(
        self,
        recipe: Recipe,
        out_dir: Path,
        workers: int | None,
        events: EventSink | None,
        sleep: Callable[[float], None],
        resume: bool,
        cancel: threading.Event | None,
        progress: ProgressReporter | None,
        capacity_sources: Mapping[str, str] | None,
        event_log: bool,
        policy: str | None,
        executor: Executor | None = None,
        force: bool = False,
        extra_files: Collection[str] = (),
    ) -> None:
        self.recipe = recipe
        self.progress = progress
        self.started = time.perf_counter()
        self.cancel = cancel if cancel is not None else threading.Event()
        self.stop_info: dict[str, Any] | None = None  # why the run stopped early (error rate or cancel)
        self.request_events = LateBoundSink()  # request events of http providers: bound once the log is open
        self.endpoints = build_endpoints(recipe, sleep=sleep, events=self.request_events)
        self.executors: Mapping[str, ColumnExecutor] = compile_columns(recipe, self.endpoints)
        self.pre = compile_stage(recipe, "pre_batch")
        self.post = compile_stage(recipe, "post_batch")
        self.workers = workers or recipe.run.max_workers
        self.configured = configured_capacity(recipe, workers=workers, sources=capacity_sources)
        # after validating: bad input touches nothing
        files = ("capacity_plan.json", *(EVENT_LOG_FILES if event_log else ()), *extra_files)
        self.resume_state = prepare_output(recipe, out_dir, resume=resume, force=force, files=files)
        self.skipped = self.resume_state.skipped
        self.max_attempts = default_max_attempts(recipe)
        self.ancestors = ancestors(recipe)
        self.tracker = CompletionTracker(
            [ColumnNode(name, ex.dependencies, ex.mode) for name, ex in self.executors.items()],
            records=recipe.run.records,
            buffer_size=recipe.run.buffer_size,
            max_row_groups_in_flight=recipe.run.max_row_groups_in_flight,
            has_pre_batch=bool(self.pre),
            skip_row_groups=self.skipped,
        )
        self.writer = OutputWriter(out_dir, recipe)
        self.writer.adopt(self.resume_state.adopted)
        self.max_row_groups_open = 0
        self.rows = RowStore(self.ancestors)
        remote = executor is not None  # tasks run elsewhere: picklable calls with their inputs (tasks)
        self.tasks = EngineTasks(recipe, self.tracker, self.rows, self.executors, self.max_attempts, remote=remote)
        self._completions: queue.SimpleQueue[tuple[TaskKey, Future[Any]]] = queue.SimpleQueue()
        self._inflight: dict[TaskKey, TaskFuture] = {}
        self._cancelled: set[TaskKey] = set()
        self._attempts: dict[TaskKey, int] = {}
        self.counts = RunCounts.for_run(recipe, self.skipped)
        self.engine_counters = self.counts.engine
        self.row_groups_total = -(-recipe.run.records // recipe.run.buffer_size)
        run_id = new_run_id()
        self.event_log: JsonlEventSink | None = None
        if event_log:  # after prepare_output, which removes a fresh run's stale events.jsonl
            events, self.event_log = open_event_log(out_dir, [events])
        self.request_events.target = events
        try:
            self.policy = policy or recipe.run.policy
            chosen = scheduler_policy(self.policy, self.endpoints)  # provider-aware when it calls HTTP providers
            limits = recipe.resource_limits
            self.scheduler = Scheduler(
                self.workers, resource_limits=limits, policy=chosen, executor=executor, events=events, name=_NAME, run_id=run_id
            )
            self.groups: dict[str, TaskGroup] = {}
            for name, ex in self.executors.items():
                key = f"column:{name}" if name == DEFAULT_GROUP else name
                resources = {ex.resource: 1} if ex.resource else None
                self.groups[name] = self.scheduler.group(key, weight=ex.weight, resources=resources)
        except BaseException:
            if self.event_log is not None:
                self.event_log.close()
            raise
        self.events = EngineEvents(events, run_id, {name: group.key for name, group in self.groups.items()})

    # -- main thread ----------------------------------------------------------------------------------------

    def _submit_frontier(self) -> bool:
        frontier = self.tracker.ready_frontier()
        if not frontier:
            return False
        # Acknowledge before submitting: a worker may call mark_started as soon as its task is submitted.
        self.tracker.mark_enqueued(frontier)
        events = self.events if self.events.enabled else None
        for key in frontier:
            if self.rows.open(key.row_group, row_group_range(self.recipe, key.row_group)):
                self.max_row_groups_open = max(self.max_row_groups_open, len(self.tracker.open_row_groups()))
                if events is not None:
                    events.row_group_admitted(key.row_group)
            attempt = self._attempts.get(key, 1)
            group = self.groups[key.column]
            fn, args = self.tasks.call(key, attempt)
            if events is None:
                future = group.submit(fn, *args)
            else:
                if attempt == 1:
                    events.dependency_ready((key,))
                future = group.submit_correlated(correlation_of(key), fn, *args)
            self._inflight[key] = future
            future.add_done_callback(functools.partial(self._on_done, key))
        self.engine_counters["tasks_submitted"] += len(frontier)
        return True

    def _on_done(self, key: TaskKey, future: Future[Any]) -> None:
        self._completions.put((key, future))  # runs in a worker or the dispatcher: record only

    def _wait_for_completions(self) -> None:
        item: tuple[TaskKey, Future[Any]] | None = self._completions.get()
        while item is not None:
            self._handle(*item)
            try:
                item = self._completions.get_nowait()
            except queue.Empty:
                item = None

    def _handle(self, key: TaskKey, future: Future[Any]) -> None:
        if self._inflight.get(key) is not future:
            return  # a cancelled stale task, already settled
        del self._inflight[key]
        if key in self._cancelled:
            self._cancelled.discard(key)
            return
        if future.cancelled():
            raise RuntimeError(f"engine task {key.task_id} was cancelled by someone else")
        error = future.exception()
        if error is None:
            result = future.result()
            self.counts.finished(skipped=result is SKIPPED)
            self._record_success(key, result)
            return
        self.counts.finished()
        attempt = self._attempts.get(key, 1)
        executor = self.executors[key.column]
        retryable = isinstance(error, executor.retryable_errors)
        if retryable and attempt < self.max_attempts:
            self.counts.failed(key.column, deferred=True)
            self.events.retry_deferred(key, error, attempt)
            self.tracker.mark_failed_retryable(key)
            return
        self.counts.failed(key.column, deferred=False)
        self.events.non_retryable_dropped(key, error, attempt, retryable=retryable)
        self._attempts.pop(key, None)
        reason = failure_reason(key.column, error, attempts=attempt, retryable=retryable)
        self._apply_drop(self.tracker.mark_failed_permanent(key, reason))

    def _record_success(self, key: TaskKey, result: object) -> None:
        if result is SKIPPED:
            return
        self._attempts.pop(key, None)
        if isinstance(result, RootCells):
            alive = set(self.tracker.alive_rows(key.row_group))
            for row, reason in sorted(result.failures.items()):
                if row in alive:
                    self._apply_drop(self.tracker.drop_row(key.row_group, row, reason))
            result = result.values
        if self.tracker.mark_complete(key) is not Outcome.RECORDED:
            return
        # Dependents became ready in the tracker but only this thread submits them: write before that.
        self.counts.recorded(key.column, self.rows.write(key.column, key.row_group, key.row, result))

    def _apply_drop(self, dropped: DropResult) -> None:
        self.counts.dropped(self.rows.drop(dropped.rows))
        for key in dropped.stale:
            future = self._inflight.get(key)
            if future is None:
                continue
            self.engine_counters["stale_cancelled"] += 1
            if future.cancel():  # still queued: discarded from the scheduler's queue, never leased
                del self._inflight[key]
            else:  # already handed to a worker: mark_started answers False, its result is ignored
                self._cancelled.add(key)

    def _drop_rows(self, row_group: int, reasons: Mapping[int, str]) -> None:
        for row, reason in sorted(reasons.items()):
            self._apply_drop(self.tracker.drop_row(row_group, row, reason))

    def _group_rows(self, row_group: int) -> Rows:
        return self.rows.copies(row_group, self.tracker.alive_rows(row_group))

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
                rows = self._group_rows(row_group)
                self.writer.write_row_group(row_group, rows, self.tracker.dropped_in(row_group))
                self.tracker.mark_checkpointed(row_group)
                self.events.row_group_checkpointed(row_group, len(rows))
                self.rows.close(row_group)

    def _salvage(self) -> None:
        keys = self.tracker.salvage_round()
        if not keys:
            raise RuntimeError(f"engine stalled with nothing ready, in flight or deferred: {self.tracker!r}")
        for key in keys:
            self._attempts[key] = self._attempts.get(key, 1) + 1
        self.engine_counters["salvaged_tasks"] += len(keys)
        self.events.queue_drained(len(keys), self.tracker.salvage_rounds)
        self.events.salvage_redispatched(keys, self._attempts)

    def _should_stop(self) -> dict[str, Any] | None:
        if self.cancel.is_set():
            return {"reason": "cancelled"}
        return self.counts.error_rate_stop(self.recipe.run.error_rate_shutdown, self.recipe.run.error_rate_min_window)

    def _stop(self, info: dict[str, Any]) -> None:
        """Graceful stop: cancel queued work, let running work finish, checkpoint the complete row groups."""
        self.stop_info = info
        for key, future in list(self._inflight.items()):
            if future.cancel():  # never leased; its done-callback is ignored by _handle
                del self._inflight[key]
        while self._inflight:
            self._wait_for_completions()
        self._process_row_groups()

    def _progress_snapshot(self) -> ProgressSnapshot:
        return self.counts.progress(
            checkpointed=self.writer.row_groups_checkpointed,
            row_groups=self.row_groups_total,
            elapsed=time.perf_counter() - self.started,
        )

    def run(self) -> RunResult:
        try:
            return self._execute()
        finally:
            close_endpoints(self.endpoints)
            if self.event_log is not None:
                self.event_log.close()

    def _execute(self) -> RunResult:
        started = self.started = time.perf_counter()
        self.events.job_started({**job_facts(self.recipe, self.workers, self.skipped), "policy": self.policy})
        if self.progress is not None:
            self.progress.start(self._progress_snapshot())
        try:
            while True:
                self._process_row_groups()
                if self.progress is not None:
                    self.progress.update(self._progress_snapshot())
                if self.tracker.is_finished():
                    break
                info = self._should_stop()
                if info is not None:
                    self._stop(info)
                    break
                submitted = self._submit_frontier()
                if self._inflight:
                    self._wait_for_completions()
                elif not submitted:
                    self._salvage()
        except BaseException:
            self.scheduler.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            if self.progress is not None:
                self.progress.finish(self._progress_snapshot())
        report = self.scheduler.shutdown(wait=True)
        snapshot = self.scheduler.snapshot()
        elapsed = time.perf_counter() - started
        CapacityPlan.observe(self.configured, self.scheduler, self.max_row_groups_open).write(self.writer.out_dir)
        counters: dict[str, int] = {
            **snapshot.counters,
            **self.engine_counters,
            "salvage_rounds": self.tracker.salvage_rounds,
            "engine_sink_errors": self.events.sink_errors,
        }
        result = scheduled_result(
            self.recipe,
            self.writer,
            ScheduledRunFacts(
                run_id=self.events.run_id,
                elapsed=elapsed,
                workers=self.workers,
                counters=counters,
                columns=self.counts.column_table(),
                dropped={row: reason for (_group, row), reason in self.tracker.dropped_rows().items()},
                resumed=self.skipped,
                hidden_waiters=snapshot.counters.get("hidden_waiters", 0),
                final_active_leases=report.active_leases,
                shutdown_clean=report.clean,
                salvage_rounds=self.tracker.salvage_rounds,
                stop_info=self.stop_info,
                recomputed=self.resume_state.recomputed,
            ),
        )
        self.events.job_completed(
            {"rows_written": result.rows_written, "rows_dropped": len(result.dropped), "elapsed": elapsed, "counters": counters}
        )
        return result


def run_recipe(
    recipe: Recipe,
    out_dir: Path,
    *,
    workers: int | None = None,
    events: EventSink | None = None,
    sleep: Callable[[float], None] = time.sleep,
    resume: bool = False,
    cancel: threading.Event | None = None,
    progress: ProgressReporter | None = None,
    capacity_sources: Mapping[str, str] | None = None,
    event_log: bool = False,
    policy: str | None = None,
    executor: Executor | None = None,
    force: bool = False,
    extra_files: Collection[str] = (),
) -> RunResult:
    """Run ``recipe`` on a ``Scheduler`` with ``workers`` threads (default ``run.max_workers``) into ``out_dir``:
    ``row_groups/rg-NNNNN.jsonl`` (atomic, as each row group completes), ``dataset.jsonl``, ``run.json`` and
    ``capacity_plan.json`` (``capacity_sources`` relabels sources); with ``event_log`` also ``events.jsonl``
    (the scheduler's, the engine's and the requests' events, besides ``events``). ``policy`` overrides
    ``run.policy``. The scheduler is always shut down. ``resume=True`` skips the row groups an earlier run of
    the same recipe checkpointed (``runner.resume``; another recipe raises ``ResumeError``). ``cancel`` (set
    from a signal handler, say) or an error rate over ``run.error_rate_shutdown`` stops gracefully: queued
    work is cancelled, running work finishes, complete row groups are checkpointed, and the result is flagged
    ``cancelled`` / ``early_shutdown`` (``run.json`` says why). ``progress`` (``engine.progress``) gets a
    snapshot at the start, after every batch of completions, and at the end. ``executor`` (say a
    ``threadsched.backends.dask.DaskExecutor``; the caller owns it) runs the tasks in other processes
    (``runner.tasks``): the same output, ``workers`` (default ``run.max_workers``) tasks at a time.

    ``out_dir`` must be empty, new, or a run's (``runner.output_dir``: it has a manifest); ``force`` writes into
    any directory. Either way only files a run wrote are deleted. ``extra_files`` are names the caller writes
    into ``out_dir`` after the run (the demo's report), owned like the run's own. A checkpoint that fails
    verification on ``resume`` is recomputed (``RunResult.recomputed_row_groups`` says why)."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive int or None, got {workers!r}")
    if policy is not None and policy not in POLICY_NAMES:
        raise ValueError(f"policy must be one of {', '.join(POLICY_NAMES)} or None, got {policy!r}")
    run = _Run(
        recipe,
        Path(out_dir),
        workers,
        events,
        sleep,
        resume,
        cancel,
        progress,
        capacity_sources,
        event_log,
        policy,
        executor,
        force,
        extra_files,
    )
    return run.run()
