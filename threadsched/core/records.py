"""The execution record: a task from submit to its future's outcome, and each attempt of it.

A ``TaskRecord`` lives from submit until its future resolves; an ``Execution`` is one attempt
holding one lease. References point one way only (execution → record → future → scheduler core),
so finished work is freed by reference counting alone.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Generator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

from threadsched.core.context import CURRENT_CANCEL_TOKEN, CURRENT_TASK
from threadsched.core.contracts import SchedulableTask, SchedulerResourceRequest, TaskGroupSpec
from threadsched.core.futures import TaskFuture
from threadsched.core.retry import RetryPolicy
from threadsched.core.values import TaskAdmissionLease


@dataclass(frozen=True, slots=True)
class GroupSettings:
    spec: TaskGroupSpec
    resource_request: SchedulerResourceRequest
    retry: RetryPolicy
    timeout: float | None


class TaskRecord:
    __slots__ = ("args", "attempt", "context", "correlation", "fn", "future", "kwargs", "settings", "task_id")

    def __init__(
        self,
        task_id: str,
        future: TaskFuture,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        context: contextvars.Context,
        settings: GroupSettings,
        correlation: Mapping[str, Any] | None = None,
    ) -> None:
        self.task_id = task_id
        self.correlation = correlation  # copied into every event of this task
        self.future = future
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.context = context
        self.settings = settings
        self.attempt = 1

    def schedulable(self) -> SchedulableTask:
        return SchedulableTask.trusted(self.task_id, self, self.settings.spec, self.settings.resource_request)

    def drop_call(self) -> None:
        """Forget the function and its arguments once the task is over (no attempt will need them)."""
        self.fn = _finished_call
        self.args = ()
        self.kwargs = {}

    def execution_id(self) -> str:
        """Id of the current attempt: ``<task id>#<attempt>``."""
        return f"{self.task_id}#{self.attempt}"


def _finished_call(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError("this task is over; its function was released")


def _invoke_in_context(record: TaskRecord, run_id: str | None) -> Any:
    CURRENT_CANCEL_TOKEN.set(record.future.cancel_token)
    current = CURRENT_TASK.set((record, run_id))
    fn, args, kwargs = record.fn, record.args, record.kwargs
    del record  # this frame stays in a failing task's traceback (see invoke_detached)
    try:
        return fn(*args, **kwargs)
    finally:
        CURRENT_TASK.reset(current)  # the record's own context must not keep the record alive (a cycle)


def invoke_detached(record: TaskRecord, run_id: str | None) -> tuple[Any, BaseException | None]:
    """Run ``record``'s function inside the context captured at submit, with its cancel token and identity
    (``current_task_correlation``) visible; return ``(value, error)`` instead of raising.

    A failing task's traceback keeps every frame it passed through, and each frame its caller (``f_back``).
    So the error is caught in a generator — a finished generator's frame has no caller — and no frame on
    the way holds the record (whose future holds the error). Then nothing in the traceback leads back to
    the record or to the pool's work item: failed work is freed by reference counting, as in the stdlib."""
    context, holder = record.context, [record]
    del record
    steps = _detached(context, holder, run_id)
    try:
        return next(steps)
    finally:
        steps.close()


def _detached(
    context: contextvars.Context, holder: list[TaskRecord], run_id: str | None
) -> Generator[tuple[Any, BaseException | None], None, None]:
    try:
        value = context.run(_invoke_from_holder, holder, run_id)
    except BaseException as error:
        yield None, error
    else:
        yield value, None


def _invoke_from_holder(holder: list[TaskRecord], run_id: str | None) -> Any:
    return _invoke_in_context(holder.pop(), run_id)


class ExecutionOwner(Protocol):
    """The dispatcher side an ``Execution`` reports to."""

    run_id: str | None
    running: set[Execution]

    def complete(self, execution: Execution) -> None: ...


class Execution:
    """One attempt of one task, holding one lease: the seam between the dispatcher and what runs it.

    Whatever runs it calls ``begin()`` (claims the task's future; False: it was cancelled), then the
    call, then ``finish(value, error)``; or ``finish_unstarted(error)`` if it never ran. ``run()`` does
    all of that in this thread (a local worker). Fields are written by the one thread running the
    attempt before ``complete``, or under the dispatcher's lock."""

    __slots__ = (
        "_owner",
        "attempt",
        "error",
        "finished",
        "lease",
        "lease_held_at_start",
        "record",
        "settled",
        "started",
        "timed_out",
        "timeout_entry",
        "value",
    )

    def __init__(self, owner: ExecutionOwner, record: TaskRecord, lease: TaskAdmissionLease) -> None:
        self._owner = owner
        self.record = record
        self.attempt = record.attempt
        self.lease = lease
        self.started = False
        self.lease_held_at_start = False
        self.value: Any = None
        self.error: BaseException | None = None
        self.finished = False  # under the dispatcher lock: the timeout no longer applies
        self.settled = False  # complete() ran
        self.timed_out = False
        self.timeout_entry: list[Any] | None = None

    @property
    def execution_id(self) -> str:
        """``<task id>#<attempt>``."""
        return f"{self.record.task_id}#{self.attempt}"

    def begin(self) -> bool:
        if not self.record.future._start_running():
            return False
        self.lease_held_at_start = not self.lease.released
        # set.add/discard are atomic under the GIL: the worker path takes no scheduler lock here.
        self._owner.running.add(self)
        self.started = True
        return True

    def call(self) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]:
        """The user's call, for a backend that runs it elsewhere (without this process's context)."""
        record = self.record
        return record.fn, record.args, record.kwargs

    def finish(self, value: Any, error: BaseException | None) -> None:
        self.value = value
        self.error = error
        self._owner.running.discard(self)
        self._owner.complete(self)

    def finish_unstarted(self, error: BaseException | None) -> None:
        """It never ran: cancelled before it began (``error`` None) or dropped by its executor with ``error``."""
        self.error = error
        self._owner.complete(self)

    def run(self) -> None:
        """A local worker's whole attempt: begin, the call in the submitter's context, finish."""
        if not self.begin():
            self.finish_unstarted(None)
            return
        value, error = invoke_detached(self.record, self._owner.run_id)
        self.finish(value, error)

    def settle_if_unrun(self, executor_future: Future[Any]) -> None:
        """Done-callback of a foreign executor's future: settles an attempt it cancelled or failed unrun."""
        if not self.settled and not self.started:
            self.finish_unstarted(None if executor_future.cancelled() else executor_future.exception())

    def __repr__(self) -> str:
        return f"<Execution {self.execution_id} started={self.started} settled={self.settled}>"


COUNTER_NAMES = (
    "submitted",
    "completed",
    "failed",
    "cancelled",
    "retried",
    "timed_out",
    "stale_selections",
    "spawn_failures",
    "sink_errors",
    "hidden_waiters",
)
