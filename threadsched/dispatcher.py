"""The dispatcher thread: select → lease → commit → spawn, and the terminal paths.

The dispatcher thread is the one place where tasks are selected, leased, committed and handed
to the executor. Executor done-callbacks (any thread, possibly inline in the dispatcher) only
release the lease, record the outcome and signal. Producers append to an inbox and notify only
when the dispatcher may be asleep (``_idle``); the dispatcher moves the inbox into the queue in
batches and admits as many tasks as it can per wake-up.

Lock order: ``DispatcherCore._lock`` is never held while calling the queue, the controller,
the executor, an event sink or user code; it guards the inbox hand-off, deadlines, counters,
in-flight and overdue bookkeeping. Queue and controller locks are their own (see those modules).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
import time
from collections import deque
from concurrent.futures import Executor
from functools import partial

from .admission import TaskAdmissionController, TaskAdmissionDenied, TaskAdmissionLease
from .completion import CompletionMixin
from .contracts import SchedulableTask
from .errors import AdmissionStalledError, TaskTimeoutError
from .events import EventSink
from .futures import TaskFuture
from .queue import FairTaskQueue
from .records import COUNTER_NAMES, Execution, TaskRecord, invoke_detached

LOGGER = logging.getLogger("threadsched")


class DispatcherCore(CompletionMixin):
    def __init__(
        self,
        queue: FairTaskQueue,
        controller: TaskAdmissionController,
        executor: Executor,
        owns_executor: bool,
        events: EventSink | None,
        name: str,
        run_id: str | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self.queue = queue
        self.controller = controller
        self._executor = executor
        self._owns_executor = owns_executor
        self._sink = events
        self._run_id = run_id
        self._sequence = itertools.count()
        self._rng = random.Random()
        self._inbox: deque[TaskRecord] = deque()
        # Tasks waiting out a retry back-off, by id; a heap entry whose task left this dict
        # (cancelled meanwhile) is skipped when it comes due.
        self._retry_waiting: dict[str, TaskRecord] = {}
        self._retry_heap: list[tuple[float, int, TaskRecord]] = []
        self._timeout_heap: list[tuple[float, int, Execution]] = []
        self._deadline_seq = itertools.count()
        self._counters = dict.fromkeys(COUNTER_NAMES, 0)
        self._in_flight = 0
        self._running_executions: set[Execution] = set()
        self._overdue: dict[str, str] = {}
        self._idle = False
        self._wake_pending = False
        self._shutdown = False
        self._cancel_pending = False
        self._admission_retry_at: float | None = None
        self._blocked = False
        self._thread = threading.Thread(target=self._run, name=f"{name}-dispatcher", daemon=True)
        self._thread.start()

    # -- producer side (any thread) -------------------------------------------------------

    def submit_record(self, record: TaskRecord) -> None:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._inbox.append(record)
            self._counters["submitted"] += 1
            if self._idle:
                # Cleared by whoever wakes it, so a burst of submits notifies once, not per task.
                self._idle = False
                self._wakeup.notify()

    def signal(self) -> None:
        """Wake the dispatcher if it may be asleep: capacity, queue or policy state changed."""
        self._wake_pending = True
        if self._idle:
            with self._lock:
                if self._idle:
                    self._idle = False
                    self._wakeup.notify()

    def _on_future_cancelled(self, future: TaskFuture) -> None:
        # Whoever removes the task from the pipeline notifies its waiters; here that is the queue.
        if self.queue.discard(future.task_id):
            # Counted before waiters wake, so a caller woken by wait() sees it in the snapshot.
            self._finish_cancelled(future.task_id, "cancelled_while_queued")
            future._notify_if_cancelled()
            self.signal()

    def _on_cancel_requested(self, future: TaskFuture) -> None:
        """``cancel()`` of a RUNNING future: a retry attempt waiting out its back-off or queued is
        cancelled now; a running function only gets its cooperative token (already set)."""
        with self._lock:
            record = self._retry_waiting.pop(future.task_id, None)
        if record is None:
            removed = self.queue.remove(future.task_id)
            record = removed.payload if removed is not None else None
        if record is not None:
            self._cancel_record(record)
            self.signal()

    # -- dispatcher thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                self._drain_inbox()
                self._fire_due_deadlines(time.monotonic())
                self._admit_batch()
                with self._lock:
                    if self._shutdown and self._nothing_left_locked():
                        return
                    self._idle = True
                    if self._wake_pending or self._inbox:
                        self._idle = self._wake_pending = False
                        continue
                    deadline = self._next_deadline_locked()
                    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                    self._wakeup.wait(timeout)
                    self._idle = self._wake_pending = False
        except BaseException:  # pragma: no cover - a bug here must not hang every future
            LOGGER.critical("threadsched dispatcher crashed", exc_info=True)
            self._fail_everything_pending(RuntimeError("threadsched dispatcher crashed"))
            raise
        finally:
            if self._owns_executor:
                self._executor.shutdown(wait=False)

    def _nothing_left_locked(self) -> bool:
        return not self._inbox and not self._retry_waiting and not len(self.queue) and self._in_flight == 0

    def _next_deadline_locked(self) -> float | None:
        candidates = [heap[0][0] for heap in (self._retry_heap, self._timeout_heap) if heap]
        if self._admission_retry_at is not None:
            candidates.append(self._admission_retry_at)
        return min(candidates) if candidates else None

    def _drain_inbox(self) -> None:
        inbox = self._inbox
        if not inbox:
            return
        items: list[SchedulableTask] = []
        cancelled: list[TaskRecord] = []
        with self._lock:
            cancel_all = self._cancel_pending
            while inbox:
                record = inbox.popleft()
                if cancel_all or record.future.cancel_token.cancelled:
                    cancelled.append(record)
                else:
                    items.append(record.schedulable())
        self.queue.enqueue(items)
        if items:
            with self._lock:
                late = self._cancel_pending
            if late:  # shutdown(cancel_futures=True) drained the queue while these were in transit
                cancelled.extend(item.payload for item in self.queue.drain())
        for record in cancelled:
            self._cancel_record(record)
        if self._sink is not None:
            for item in items:
                self._emit("ready_enqueued", item)

    def _fire_due_deadlines(self, now: float) -> None:
        due_retries: list[TaskRecord] = []
        due_timeouts: list[Execution] = []
        with self._lock:
            if self._admission_retry_at is not None and self._admission_retry_at <= now:
                self._admission_retry_at = None
            while self._retry_heap and self._retry_heap[0][0] <= now:
                record = heapq.heappop(self._retry_heap)[2]
                if self._retry_waiting.pop(record.task_id, None) is record:
                    due_retries.append(record)
            while self._timeout_heap and self._timeout_heap[0][0] <= now:
                execution = heapq.heappop(self._timeout_heap)[2]
                if not execution.finished:
                    # Listed as overdue before its future fails, so a waiter never sees a gap.
                    execution.timed_out = True
                    self._overdue[execution.execution_id] = execution.record.task_id
                    self._counters["timed_out"] += 1
                    due_timeouts.append(execution)
            cancel_all = self._cancel_pending
        for execution in due_timeouts:
            record = execution.record
            timeout = record.settings.timeout or 0.0
            record.future._try_set_exception(TaskTimeoutError(record.task_id, timeout))
            self._emit("task_completed", record, execution=execution, reason="timed_out")
        retry_items: list[SchedulableTask] = []
        for record in due_retries:
            if cancel_all or record.future.cancel_token.cancelled:
                self._cancel_record(record)
            else:
                retry_items.append(record.schedulable())
        if retry_items:
            self.queue.enqueue(retry_items)
            for item in retry_items:
                self._emit("ready_enqueued", item, reason="retry")

    def _admit_batch(self) -> None:
        queue, controller = self.queue, self.controller
        while len(queue):
            if controller.available() == 0:
                self._note_blocked("no_capacity")
                return
            selection = queue.select_next(controller.is_eligible)
            if selection is None:
                self._handle_nothing_eligible()
                return
            item = selection.item
            if self._sink is not None:
                self._emit("selected", item)
            outcome = controller.try_acquire(item, selection.view)
            if isinstance(outcome, TaskAdmissionDenied):
                self._on_denied(outcome)
                return
            self._blocked = False
            if self._sink is not None:
                self._emit("task_lease_acquired", item, lease=outcome, execution_id=item.payload.execution_id())
            if queue.commit(selection) is None:
                self._release_unspawned(outcome, "stale_selection")
                continue
            record: TaskRecord = item.payload
            # The token is set by every cancel() before the future changes state: a cheap check.
            if record.future.cancel_token.cancelled or self._cancel_pending:
                self._release_unspawned(outcome, "cancelled_before_spawn")
                self._cancel_record(record)
                continue
            self._spawn(record, outcome)

    def _spawn(self, record: TaskRecord, lease: TaskAdmissionLease) -> None:
        execution = Execution(record, lease)
        timeout = record.settings.timeout
        with self._lock:
            self._in_flight += 1
            if timeout is not None:
                heapq.heappush(self._timeout_heap, (time.monotonic() + timeout, next(self._deadline_seq), execution))
        # Sequenced before submit so that, in sequence order, spawn precedes the lease release.
        spawned = self._build_event("worker_spawned", record, execution=execution)
        try:
            executor_future = self._executor.submit(self._run_execution, execution)
        except BaseException as error:
            with self._lock:
                self._in_flight -= 1
                execution.finished = True
                self._counters["spawn_failures"] += 1
                self._counters["failed"] += 1
            self._release(execution, "worker_spawn_failed")
            self._emit("worker_spawn_failed", record, execution=execution, reason=type(error).__name__)
            record.future._try_set_exception(error)
            return
        if spawned is not None:
            self._deliver(spawned)
        executor_future.add_done_callback(partial(self._on_execution_done, execution))

    def _run_execution(self, execution: Execution) -> None:
        """Worker body: claims the future, runs the function; the done-callback does the rest."""
        record = execution.record
        if not record.future._start_running():
            return
        execution.lease_held_at_start = not execution.lease.released
        # set.add/discard are atomic under the GIL: the worker path takes no scheduler lock.
        running = self._running_executions
        running.add(execution)
        execution.started = True
        try:
            execution.value, execution.error = invoke_detached(record, self._run_id)
        finally:
            running.discard(execution)

    def _release_unspawned(self, lease: TaskAdmissionLease, reason: str) -> None:
        result = self.controller.release(lease)
        if reason == "stale_selection":
            with self._lock:
                self._counters["stale_selections"] += 1
        self._emit("task_lease_released", lease.item, lease=lease, reason=reason)
        if reason == "stale_selection":
            self._emit("stale_selection", lease.item, lease=lease)
        if not result.released:
            self._emit("release_diagnostic", lease.item, lease=lease, reason=result.reason)

    def _on_denied(self, denial: TaskAdmissionDenied) -> None:
        if denial.available_after is not None:
            with self._lock:
                current = self._admission_retry_at
                if current is None or denial.available_after < current:
                    self._admission_retry_at = denial.available_after
        self._emit("admission_denied", denial.item, reason=denial.reason, diagnostics=denial.diagnostics)

    def _note_blocked(self, reason: str) -> None:
        if not self._blocked:
            self._blocked = True
            self._emit("admission_blocked", None, reason=reason)

    def _handle_nothing_eligible(self) -> None:
        """Nothing queued is eligible now: explain it, and fail the work if it can never run."""
        with self._lock:
            maybe_stalled = not self._inbox and not self._retry_waiting and self._in_flight == 0
        # Always asked, so a policy's available_after becomes a wake-up deadline even while other
        # work is in flight (O(groups), and only when select_next found nothing eligible).
        summary = self.controller.explain_blocked(self.queue.view())
        if summary.earliest_available_after is not None:
            with self._lock:
                current = self._admission_retry_at
                if current is None or summary.earliest_available_after < current:
                    self._admission_retry_at = summary.earliest_available_after
        if not self._blocked:
            self._blocked = True
            self._emit("admission_blocked", None, reason="not_eligible", diagnostics={"summary": summary.message})
            for key, reason in summary.blocked_groups.items():
                if reason == "group_cap":
                    self._emit("group_capped", None, group=key, reason=reason)
        if (
            maybe_stalled
            and self.controller.active_lease_count == 0
            and summary.earliest_available_after is None
            and not summary.eligible_groups
        ):
            stalled = self.queue.drain()
            LOGGER.error("threadsched: %s", summary.message)
            for item in stalled:
                record: TaskRecord = item.payload
                self._finish_failed(record, AdmissionStalledError(summary), "admission_stalled")

    # -- shutdown -------------------------------------------------------------------------

    def begin_shutdown(self, cancel_futures: bool) -> None:
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                self._cancel_pending = True
        if cancel_futures:
            self.cancel_pending_work()
        self.signal()

    def cancel_pending_work(self) -> None:
        """Cancel everything not yet spawned: inbox, queue and retries waiting their back-off."""
        with self._lock:
            self._cancel_pending = True
            records = list(self._inbox)
            self._inbox.clear()
            records.extend(self._retry_waiting.values())
            self._retry_waiting.clear()
            self._retry_heap.clear()
        records.extend(item.payload for item in self.queue.drain())
        for record in records:
            self._cancel_record(record)
        self.signal()

    def join(self, timeout: float | None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def executor(self) -> Executor:
        return self._executor

    @property
    def owns_executor(self) -> bool:
        return self._owns_executor

    def state(self) -> tuple[int, tuple[str, ...], dict[str, int]]:
        """(running functions, overdue task ids, counters), read together."""
        with self._lock:
            return len(self._running_executions), tuple(self._overdue.values()), dict(self._counters)

    def _fail_everything_pending(self, error: BaseException) -> None:
        with self._lock:
            records = list(self._inbox) + list(self._retry_waiting.values())
            self._inbox.clear()
            self._retry_waiting.clear()
            self._retry_heap.clear()
            self._shutdown = True
        records.extend(item.payload for item in self.queue.drain())
        for record in records:
            self._finish_failed(record, error, "dispatcher_crashed")

    # -- hooks used by CompletionMixin ---------------------------------------------------------

    def _schedule_retry_locked(self, record: TaskRecord, delay: float) -> None:
        self._retry_waiting[record.task_id] = record
        heapq.heappush(self._retry_heap, (time.monotonic() + delay, next(self._deadline_seq), record))
