"""The dispatcher thread: select → lease → commit → launch, and every terminal path.

The dispatcher thread is the one place where tasks are selected, leased, committed and handed to
the executor (through a launcher, ``launch.py``). Whatever thread finishes an attempt calls
``complete``: it releases the lease (the lease's own flag makes that exactly once), records the
outcome, wakes the dispatcher and resolves the future, in that order, so a caller woken by a
future already sees the lease returned.

Hand-off: producers append to an inbox without a lock and wake the dispatcher only when it is asleep
(``_idle``; see ``submit`` for why no wake-up and no task is lost).
It sleeps on ``_wake``, a lock that is held while it is awake and released by whoever wakes it, so a
burst of submits or completions costs one wake-up. The dispatcher moves the inbox into the queue in
batches and admits as many tasks as it can per wake-up. Under the default policy those are taken
from the queue with their leases in one lock section (``TaskAdmissionController.lease_fitting``); the
per-task select → lease → commit path takes over at the first head that does not fit.

An executor that holds the scheduler (a ``LeasedExecutor`` is its own pool) is pinned only while
there is work not yet finished, so an abandoned executor is freed by reference counting alone.

Lock order: ``DispatcherCore._lock`` is a leaf for everything that matters: it is never held while
calling the queue, the controller, a launcher, an event sink or user code. It guards the inbox
drains (producers append without it), the deadline heaps, counters and overdue bookkeeping.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import random
import threading
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import CancelledError
from time import monotonic
from typing import Any

from threadsched.core.admission import TaskAdmissionController
from threadsched.core.contracts import SchedulableTask
from threadsched.core.deadlines import DeadlineHeaps
from threadsched.core.emitter import EventEmitter
from threadsched.core.errors import AdmissionStalledError, TaskTimeoutError
from threadsched.core.futures import CancelToken, TaskFuture
from threadsched.core.launch import Launcher
from threadsched.core.outcomes import COUNTER_OF_OUTCOME, classify_outcome
from threadsched.core.queue import FairTaskQueue
from threadsched.core.records import COUNTER_NAMES, Execution, GroupSettings, TaskRecord
from threadsched.core.values import TaskAdmissionBlockSummary, TaskAdmissionDenied, TaskAdmissionLease

LOGGER = logging.getLogger("threadsched")

__all__ = ["BlockedAdmission", "DispatcherCore"]


class DispatcherCore:
    def __init__(
        self,
        queue: FairTaskQueue,
        controller: TaskAdmissionController,
        launcher: Launcher,
        *,
        owns_executor: bool,
        pin_executor: bool,
        emitter: EventEmitter,
        name: str,
    ) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Lock()
        self._wake.acquire()  # held while awake; released once to wake a sleeping dispatcher
        self.queue = queue
        self.controller = controller
        self._launcher = launcher
        self._owns_executor = owns_executor
        self._pin_executor = pin_executor
        self._pin: object = None
        self._emitter = emitter
        self.run_id = emitter.run_id
        self.running: set[Execution] = set()
        self._name = name
        self._task_ids = itertools.count(1)
        self._rng = random.Random()
        self._inbox: deque[TaskRecord] = deque()
        self._drained = 0  # records taken from the inbox, under _lock (+ the inbox's length = submitted)
        self._deadlines = DeadlineHeaps()
        self._counters = dict.fromkeys(COUNTER_NAMES, 0)  # "submitted" is derived in state()
        self._spawned = 0  # written by the dispatcher thread only
        self._finished = 0  # under _lock
        self._overdue: dict[str, str] = {}
        self._idle = False
        self._wake_pending = False
        self._shutdown = False
        self._cancel_pending = False
        self._admission_retry_at: float | None = None
        self._blocking = BlockedAdmission(queue, controller, emitter)
        self._thread: threading.Thread | None = None
        self.crash: BaseException | None = None

    # -- producer side (any thread) -------------------------------------------------------

    def submit(
        self,
        settings: GroupSettings,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        correlation: Mapping[str, Any] | None = None,
    ) -> TaskFuture:
        task_id = f"t{next(self._task_ids)}"
        future = TaskFuture(task_id, self, CancelToken())
        record = TaskRecord(task_id, future, fn, args, kwargs, contextvars.copy_context(), settings, correlation)
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        # No lock while the dispatcher is awake: append first, read the flags after. ``_sleep`` sets
        # ``_idle`` before it looks at the inbox, and every drain after shutdown starts once ``_shutdown``
        # is set, so of a producer and the dispatcher, one always sees what the other did.
        self._inbox.append(record)
        if self._shutdown:
            self._withdraw(record)
        if self._idle or self._thread is None or (self._pin_executor and self._pin is None):
            self._hand_off_slowly()
        return future

    def _withdraw(self, record: TaskRecord) -> None:
        """Shutdown began while ``record`` was being appended: take it back and refuse it, unless a
        drain already took it (then it runs, or is cancelled, with the rest)."""
        with self._lock:
            try:
                self._inbox.remove(record)
            except ValueError:
                return
        raise RuntimeError("cannot schedule new futures after shutdown")

    def _hand_off_slowly(self) -> None:
        with self._lock:
            if self._pin_executor and self._pin is None:
                self._pin = self._launcher.pool()
            if self._idle:
                self._wake_locked()
            elif self._thread is None:
                # Like the stdlib pool, an executor nobody submits to starts no thread.
                self._thread = threading.Thread(target=self._run, name=f"{self._name}-dispatcher", daemon=True)
                self._thread.start()

    def signal(self) -> None:
        """Wake the dispatcher if it may be asleep: capacity, queue or policy state changed."""
        self._wake_pending = True
        if self._idle:
            with self._lock:
                self._wake_locked()

    def _wake_locked(self) -> None:
        if self._idle:
            self._idle = False
            self._wake.release()

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
            record = self._deadlines.take_retry(future.task_id)
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
                self._wake_pending = False
                if self._inbox:
                    self._drain_inbox()
                if self._deadlines or self._admission_retry_at is not None:
                    self._fire_due_deadlines(monotonic())
                if len(self.queue):
                    self._admit_batch()
                if self.controller.has_unreported_policy_errors:
                    for denial in self.controller.take_policy_error_denials():
                        self._on_denied(denial)
                if not self._sleep():
                    return
        except BaseException as error:
            self.crash = error
            LOGGER.critical("threadsched: dispatcher %r crashed", self._name, exc_info=True)
            self._fail_everything_pending(RuntimeError(f"threadsched dispatcher crashed: {error!r}"))
        finally:
            if self._owns_executor:
                self._launcher.shutdown(False)

    def _sleep(self) -> bool:
        """Wait until woken or the next deadline; False once shut down with nothing left."""
        unpinned: object = None
        with self._lock:
            # Idle before looking: a producer or waker that acts after this line sees it and wakes us.
            self._idle = True
            if self._wake_pending or self._inbox:
                self._idle = False
                return True
            if self._nothing_left_locked():
                unpinned, self._pin = self._pin, None
                if self._shutdown:
                    self._idle = False
                    return False
            deadline = self._next_deadline_locked()
        # Outside the lock: dropping the last reference may finalize the executor, which shuts us down.
        del unpinned
        # A far deadline (a group timeout of 1e300 s) is slept towards in steps a lock can take: past
        # TIMEOUT_MAX, acquire raises OverflowError, which would crash the dispatcher.
        timeout = -1.0 if deadline is None else min(threading.TIMEOUT_MAX, max(0.0, deadline - monotonic()))
        if not self._wake.acquire(timeout=timeout):
            with self._lock:
                woken_meanwhile = not self._idle
                self._idle = False
            if woken_meanwhile:
                self._wake.acquire()  # take back the release that raced with the timeout
        return True

    def _nothing_left_locked(self) -> bool:
        return not self._inbox and not self._deadlines.retries_waiting and not len(self.queue) and self._spawned == self._finished

    def _next_deadline_locked(self) -> float | None:
        deadline = self._deadlines.next_deadline()
        retry_at = self._admission_retry_at
        if retry_at is not None and (deadline is None or retry_at < deadline):
            return retry_at
        return deadline

    def _take_inbox_locked(self) -> list[TaskRecord]:
        """Everything in the inbox, popped one by one (producers append without the lock), counted."""
        inbox, records = self._inbox, []
        try:
            while True:
                records.append(inbox.popleft())
        except IndexError:
            pass
        self._drained += len(records)
        return records

    def _drain_inbox(self) -> None:
        with self._lock:
            records = self._take_inbox_locked()
        cancel_all = self._cancel_pending
        items: list[SchedulableTask] = []
        cancelled: list[TaskRecord] = []
        for record in records:
            if cancel_all or record.future.cancel_token.cancelled:
                cancelled.append(record)
            else:
                items.append(record.schedulable())
        if items:
            self.queue.enqueue(items)
            if self._cancel_pending and not cancel_all:
                # shutdown(cancel_futures=True) drained the queue while these were in transit
                cancelled.extend(item.payload for item in self.queue.drain())
        for record in cancelled:
            self._cancel_record(record)
        if self._emitter.enabled:
            enqueued_at = monotonic()  # all became eligible together, however long emitting them takes
            for item in items:
                self._emitter.emit("ready_enqueued", item, at=enqueued_at)

    def _fire_due_deadlines(self, now: float) -> None:
        with self._lock:
            if self._admission_retry_at is not None and self._admission_retry_at <= now:
                self._admission_retry_at = None
            due_retries = self._deadlines.due_retries(now)
            due_timeouts = []
            for execution in self._deadlines.due_timeouts(now):
                if not execution.finished:
                    # Listed as overdue before its future fails, so a waiter never sees a gap.
                    execution.timed_out = True
                    self._overdue[execution.execution_id] = execution.record.task_id
                    self._counters["timed_out"] += 1
                    due_timeouts.append(execution)
            cancel_all = self._cancel_pending
        for execution in due_timeouts:
            record = execution.record
            record.future._try_set_exception(TaskTimeoutError(record.task_id, record.settings.timeout or 0.0))
            self._emitter.emit("task_completed", record, execution=execution, reason="timed_out")
        retry_items: list[SchedulableTask] = []
        for record in due_retries:
            if cancel_all or record.future.cancel_token.cancelled:
                self._cancel_record(record)
            else:
                retry_items.append(record.schedulable())
        if retry_items:
            self.queue.enqueue(retry_items)
            for item in retry_items:
                self._emitter.emit("ready_enqueued", item, reason="retry")

    def _admit_batch(self) -> None:
        queue, controller, emitter = self.queue, self.controller, self._emitter
        select_next, approve, try_acquire, commit = queue.select_next, controller.approve, controller.try_acquire, queue.commit
        available, exhausted, lease_fitting = controller.available, controller.exhausted_resources, controller.lease_fitting
        while len(queue):
            free_slots = available()
            if not free_slots:
                self._blocking.no_capacity()
                return
            leases = lease_fitting(queue, free_slots)
            if leases:
                self._blocking.admitted()
                for taken in leases:
                    self._launch_leased(taken)
                continue
            selection = select_next(approve, exhausted=exhausted())
            if selection is None:
                self._handle_nothing_eligible()
                return
            item = selection.item
            if emitter.enabled:
                emitter.emit("selected", item)
            lease = try_acquire(item, selection.view, selection.decision)
            if isinstance(lease, TaskAdmissionDenied):
                self._on_denied(lease)
                return
            self._blocking.admitted()
            if emitter.enabled:
                emitter.emit(
                    "task_lease_acquired", item, lease=lease, execution_id=item.payload.execution_id(), at=lease.acquired_at
                )
            if commit(selection) is None:
                self._release_unspawned(lease, "stale_selection")
                continue
            self._spawn_unless_cancelled(lease)

    def _launch_leased(self, lease: TaskAdmissionLease) -> None:
        """A task the fast path took from the queue together with its lease (already committed)."""
        if self._emitter.enabled:
            item = lease.item
            # Taken together with its lease, in one lock section with the rest of its batch: that is when.
            at = lease.acquired_at
            self._emitter.emit("selected", item, at=at)
            self._emitter.emit("task_lease_acquired", item, lease=lease, execution_id=item.payload.execution_id(), at=at)
        self._spawn_unless_cancelled(lease)

    def _spawn_unless_cancelled(self, lease: TaskAdmissionLease) -> None:
        record: TaskRecord = lease.item.payload
        # The token is set by every cancel() before the future changes state: a cheap check.
        if record.future.cancel_token.cancelled or self._cancel_pending:
            self._release_unspawned(lease, "cancelled_before_spawn")
            self._cancel_record(record)
            return
        self._spawn(record, lease)

    def _spawn(self, record: TaskRecord, lease: TaskAdmissionLease) -> None:
        execution = Execution(self, record, lease)
        timeout = record.settings.timeout
        if timeout is not None:
            with self._lock:
                self._deadlines.add_timeout(execution, timeout)
        self._spawned += 1
        # Sequenced before the launch so that, in sequence order, the spawn precedes the lease release.
        spawned = self._emitter.build("worker_spawned", record, execution=execution) if self._emitter.enabled else None
        try:
            self._launcher.launch(execution)
        except BaseException as error:
            self.running.discard(execution)  # a backend may have begun it before failing
            with self._lock:
                self._finished += 1
                execution.finished = execution.settled = True
                self._deadlines.drop_timeout(execution)
                self._counters["spawn_failures"] += 1
                self._counters["failed"] += 1
            self.controller.release(lease)
            self._emitter.emit("task_lease_released", record, execution=execution, reason="worker_spawn_failed")
            self._emitter.emit("worker_spawn_failed", record, execution=execution, reason=type(error).__name__)
            record.future._try_set_exception(error)
            return
        self._emitter.deliver(spawned)

    # -- completion (whatever thread finished the attempt) -------------------------------------

    def complete(self, execution: Execution) -> None:
        lease = execution.lease
        result = self.controller.release(lease)
        emitter = self._emitter
        record = execution.record
        if not result.released:  # the lease's flag says this attempt was completed already
            emitter.emit("release_diagnostic", record, execution=execution, reason=result.reason)
            return
        future = record.future
        error = execution.error
        retry = record.settings.retry
        cancel_requested = future.cancel_token.cancelled
        events: tuple[Any, ...] = ()
        with self._lock:
            execution.finished = execution.settled = True
            self._finished += 1
            self._deadlines.drop_timeout(execution)
            if execution.started and not execution.lease_held_at_start:
                self._counters["hidden_waiters"] += 1
            outcome = classify_outcome(
                started=execution.started,
                error=error,
                timed_out=execution.timed_out,
                cancel_requested=cancel_requested or self._cancel_pending,
                retry=retry,
                attempt=record.attempt,
            )
            delay = 0.0
            if outcome == "timed_out":
                self._overdue.pop(execution.execution_id, None)
            elif outcome == "retry":
                delay = retry.backoff(record.attempt, self._rng)
                record.attempt += 1
                self._deadlines.schedule_retry(record, delay)
            counter = COUNTER_OF_OUTCOME.get(outcome)
            if counter is not None:
                self._counters[counter] += 1
            self._wake_pending = True
            self._wake_locked()
            if emitter.enabled:
                build = emitter.build
                events = (
                    build("task_lease_released", record, execution=execution, lease=lease),
                    # A timed-out task's completion was reported at its deadline; only the release remains.
                    None if outcome == "timed_out" else build("task_completed", record, execution=execution, reason=outcome),
                    build("retry_deferred", record, execution=execution, diagnostics={"delay": delay})
                    if outcome == "retry"
                    else None,
                )
        for event in events:
            emitter.deliver(event)
        value = execution.value
        execution.value = execution.error = None
        if outcome != "retry":
            # The caller's arguments die before a waiter wakes, whatever frames still hold the record.
            record.drop_call()
        if outcome == "succeeded":
            future._try_set_result(value)
        elif outcome == "failed":
            assert error is not None
            future._try_set_exception(error)
        elif outcome == "cancelled":
            if not future.cancel():
                future._try_set_exception(error if isinstance(error, CancelledError) else CancelledError())
            future._notify_if_cancelled()

    # -- terminal outcomes for work that never reached a worker ------------------------------

    def _release_unspawned(self, lease: TaskAdmissionLease, reason: str) -> None:
        result = self.controller.release(lease)
        if reason == "stale_selection":
            with self._lock:
                self._counters["stale_selections"] += 1
        self._emitter.emit("task_lease_released", lease.item, lease=lease, reason=reason)
        if reason == "stale_selection":
            self._emitter.emit("stale_selection", lease.item, lease=lease)
        if not result.released:
            self._emitter.emit("release_diagnostic", lease.item, lease=lease, reason=result.reason)

    def _cancel_record(self, record: TaskRecord) -> None:
        """Cancel a task this caller took out of the pipeline (so it alone notifies); counted first."""
        self._finish_cancelled(record.task_id, "cancelled")
        future = record.future
        if future.cancel():
            future._notify_if_cancelled()
        else:
            future._try_set_exception(CancelledError("task cancelled before it could run again"))

    def _finish_cancelled(self, task_id: str, reason: str) -> None:
        with self._lock:
            self._counters["cancelled"] += 1
        self._emitter.emit("cancelled", None, task_id=task_id, reason=reason)

    def _finish_failed(self, record: TaskRecord, error: BaseException, reason: str) -> None:
        with self._lock:
            self._counters["failed"] += 1
        self._emitter.emit("task_completed", record, reason=reason)
        record.future._try_set_exception(error)

    # -- admission blocked -------------------------------------------------------------------

    def _on_denied(self, denial: TaskAdmissionDenied) -> None:
        retry_at = self._blocking.denied(denial)
        if retry_at is not None:
            self._retry_admission_at(retry_at)

    def _retry_admission_at(self, when: float) -> None:
        with self._lock:
            current = self._admission_retry_at
            if current is None or when < current:
                self._admission_retry_at = when

    def _handle_nothing_eligible(self) -> None:
        """Nothing queued is eligible now: explain it, and fail the work if it can never run."""
        with self._lock:
            work_elsewhere = bool(self._inbox) or bool(self._deadlines.retries_waiting) or self._spawned != self._finished
        summary, stalled = self._blocking.nothing_eligible(work_elsewhere)
        if summary.earliest_available_after is not None:
            self._retry_admission_at(summary.earliest_available_after)
        if stalled:
            LOGGER.error("threadsched: %s", summary.message)
            for item in self.queue.drain():
                self._finish_failed(item.payload, AdmissionStalledError(summary), "admission_stalled")

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
            records = self._take_inbox_locked()
            records.extend(self._deadlines.take_all_retries())
        records.extend(item.payload for item in self.queue.drain())
        for record in records:
            self._cancel_record(record)
        self.signal()

    def join(self, timeout: float | None) -> bool:
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    @property
    def launcher(self) -> Launcher:
        return self._launcher

    @property
    def owns_executor(self) -> bool:
        return self._owns_executor

    @property
    def emitter(self) -> EventEmitter:
        return self._emitter

    def state(self) -> tuple[int, tuple[str, ...], dict[str, int]]:
        """(running functions, overdue task ids, counters), read together."""
        with self._lock:
            counters = dict(self._counters)
            counters["submitted"] = self._drained + len(self._inbox)
            overdue = tuple(self._overdue.values())
        counters["sink_errors"] = self._emitter.sink_errors
        return len(self.running), overdue, counters

    def glance(self) -> tuple[int, int, int]:
        """(queued, running, overdue) read without any lock, for a ``__repr__`` that may be taken while one
        is held; each count is exact when read, the three together need not be one moment."""
        return len(self.queue) + len(self._inbox), len(self.running), len(self._overdue)

    def _fail_everything_pending(self, error: BaseException) -> None:
        with self._lock:
            self._shutdown = True  # before the inbox is taken: a producer appending later withdraws its task
            records = self._take_inbox_locked()
            records.extend(self._deadlines.take_all_retries())
        records.extend(item.payload for item in self.queue.drain())
        for record in records:
            self._finish_failed(record, error, "dispatcher_crashed")

    def __repr__(self) -> str:
        return f"<DispatcherCore {self._name!r} spawned={self._spawned} finished={self._finished} idle={self._idle}>"


class BlockedAdmission:
    """Why nothing is being admitted: the dispatcher's account of blocked admission.

    One ``admission_blocked`` event per blocked episode (an episode ends when a task is admitted), one
    ``admission_denied`` event per denial, ``group_capped`` for the groups a cap holds back, and the
    verdict whether queued work can never run (a stall), which the dispatcher turns into failed futures.
    Used by the dispatcher thread only, so it has no lock; the controller and the emitter it calls each
    take their own.
    """

    def __init__(self, queue: FairTaskQueue, controller: TaskAdmissionController, emitter: EventEmitter) -> None:
        self._queue = queue
        self._controller = controller
        self._emitter = emitter
        self._blocked = False

    def admitted(self) -> None:
        self._blocked = False

    def no_capacity(self) -> None:
        if not self._blocked:
            self._blocked = True
            self._emitter.emit("admission_blocked", None, reason="no_capacity")

    def denied(self, denial: TaskAdmissionDenied) -> float | None:
        """Report ``denial``; returns when admission is worth retrying (``None``: on the next wake-up)."""
        self._emitter.emit("admission_denied", denial.item, reason=denial.reason, diagnostics=denial.diagnostics)
        return denial.available_after

    def nothing_eligible(self, work_elsewhere: bool) -> tuple[TaskAdmissionBlockSummary, bool]:
        """Explain why no queued head is eligible; also whether that can never change (stalled).

        ``work_elsewhere``: tasks are in the inbox, waiting out a retry back-off or running, any of
        which may change what is eligible. The explanation is always asked for, so a policy's
        ``available_after`` becomes a wake-up deadline even while other work is in flight
        (O(groups), and only when ``select_next`` found nothing eligible)."""
        summary = self._controller.explain_blocked(self._queue.view())
        if not self._blocked:
            self._blocked = True
            self._emitter.emit("admission_blocked", None, reason="not_eligible", diagnostics={"summary": summary.message})
            for key, reason in summary.blocked_groups.items():
                if reason == "group_cap":
                    self._emitter.emit("group_capped", None, group=key, reason=reason)
        stalled = (
            not work_elsewhere
            and self._controller.active_lease_count == 0
            and summary.earliest_available_after is None
            and not summary.eligible_groups
        )
        return summary, stalled
