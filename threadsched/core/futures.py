"""``TaskFuture``: a ``concurrent.futures.Future`` that knows its task and its scheduler.

Every transition goes through the stdlib's own atomic methods, so the races between a worker
starting, a timeout firing and a user cancelling are settled by the future's condition:
whoever loses gets ``InvalidStateError`` (or ``False``) and backs off. A future cancelled while
queued is moved to CANCELLED_AND_NOTIFIED exactly once, or ``wait``/``as_completed`` would hang.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, InvalidStateError
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED, PENDING, RUNNING
from typing import Any, Protocol


class _CancelHandler(Protocol):
    def _on_future_cancelled(self, future: TaskFuture) -> None: ...

    def _on_cancel_requested(self, future: TaskFuture) -> None: ...


_EVENT_CREATION_LOCK = threading.Lock()


class CancelToken:
    """Cooperative cancellation for a running task: check ``cancelled`` or call ``raise_if_cancelled``.

    A token per task sits on the submit hot path, so the ``threading.Event`` behind ``wait`` is
    only created when someone actually waits. ``cancel`` sets the flag before it looks for the
    event and ``wait`` publishes the event before it looks at the flag, so neither misses the other.
    """

    __slots__ = ("_cancelled", "_event")

    def __init__(self) -> None:
        self._cancelled = False
        self._event: threading.Event | None = None

    def cancel(self) -> None:
        self._cancelled = True
        event = self._event
        if event is not None:
            event.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def raise_if_cancelled(self) -> None:
        if self._cancelled:
            raise CancelledError("task cancelled while running")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until cancelled (True) or ``timeout`` passes (False)."""
        event = self._event
        if event is None:
            with _EVENT_CREATION_LOCK:
                event = self._event
                if event is None:
                    event = self._event = threading.Event()
        if self._cancelled:
            return True
        return event.wait(timeout)

    def __repr__(self) -> str:
        return f"<CancelToken cancelled={self._cancelled}>"


_QUIET_STATE_LOCKS = tuple(threading.Lock() for _ in range(64))
"""Each guards the state of the TaskFutures striped onto it while they have no condition yet, and the
creation of their conditions.

Nobody can wait on a future, add a callback to it or read its result without first creating its
condition (every such stdlib path starts with ``with self._condition``). So while a future has no
condition, a state change has nobody to notify and is made under its stripe alone; once a condition
exists, the stdlib's own methods take over. Striping keeps the worker threads, the submitter and the
dispatcher from queueing on one process-wide lock.
"""
_stripe_of = itertools.count()
_FUTURE_ATTRIBUTES = frozenset({"_condition", "_state", "_result", "_exception", "_waiters", "_done_callbacks"})
_TERMINAL = frozenset({CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED})
_CANCELLED_STATES = frozenset({CANCELLED, CANCELLED_AND_NOTIFIED})


class TaskFuture(Future[Any]):
    """Future of one submitted task. ``cancel()`` while running sets the cooperative token.

    The stdlib ``Future`` builds a ``threading.Condition`` (~1.4 KB with its RLock and deque) in
    ``__init__``. Most task futures are never waited on individually before they finish, so here
    the condition is created on first use (see ``_QUIET_STATE_LOCKS``): 100k queued or finished
    tasks cost a fraction of the memory, and the worker path skips building and notifying it.
    ``__init__`` sets the stdlib's attributes itself (``_FUTURE_ATTRIBUTES``; a test pins them
    against ``vars(Future())``), with ``_condition`` served by the property below.
    """

    def __init__(self, task_id: str, scheduler: _CancelHandler, cancel_token: CancelToken) -> None:
        self._lazy_condition: threading.Condition | None = None
        self._quiet = _QUIET_STATE_LOCKS[next(_stripe_of) & 63]
        self._state = PENDING
        self._result = None
        self._exception = None
        self._waiters: list[Any] = []
        self._done_callbacks: list[Callable[[Future[Any]], object]] = []
        self.task_id = task_id
        self.cancel_token = cancel_token
        # The future references the scheduler, never its own task record: no per-task cycle.
        self._scheduler: _CancelHandler | None = scheduler

    @property
    def _condition(self) -> threading.Condition:  # type: ignore[override]
        condition = self._lazy_condition
        if condition is None:
            with self._quiet:
                condition = self._lazy_condition
                if condition is None:
                    condition = self._lazy_condition = threading.Condition()
        return condition

    # -- stdlib API, with quiet transitions while no condition exists ------------------------

    def cancelled(self) -> bool:
        return self._state in _CANCELLED_STATES

    def running(self) -> bool:
        return self._state == RUNNING

    def done(self) -> bool:
        return self._state in _TERMINAL

    def cancel(self) -> bool:
        self.cancel_token.cancel()
        with self._quiet:
            quiet = self._lazy_condition is None
            if quiet:
                if self._state == PENDING:
                    self._state = CANCELLED
                cancelled = self._state in _CANCELLED_STATES
        if not quiet:
            cancelled = super().cancel()
        scheduler = self._scheduler
        if scheduler is not None:
            if cancelled:
                scheduler._on_future_cancelled(self)
            elif self._state == RUNNING:
                scheduler._on_cancel_requested(self)
        return cancelled

    def set_running_or_notify_cancel(self) -> bool:
        with self._quiet:
            if self._lazy_condition is None:
                if self._state == CANCELLED:
                    self._state = CANCELLED_AND_NOTIFIED
                    return False
                if self._state == PENDING:
                    self._state = RUNNING
                    return True
                raise RuntimeError(f"Future in unexpected state: {self._state}")
        return super().set_running_or_notify_cancel()

    def set_result(self, result: Any) -> None:
        if not self._finish_quietly(result, None):
            super().set_result(result)

    def set_exception(self, exception: BaseException | None) -> None:
        if not self._finish_quietly(None, exception):
            super().set_exception(exception)

    def _finish_quietly(self, result: Any, exception: BaseException | None) -> bool:
        """Finish without a condition when none exists (True); False: use the stdlib path."""
        with self._quiet:
            if self._lazy_condition is not None:
                return False
            if self._state in _TERMINAL:
                raise InvalidStateError(f"{self._state}: {self!r}")
            self._result = result
            self._exception = exception
            self._state = FINISHED
            return True

    # -- scheduler side ---------------------------------------------------------------------

    def _start_running(self) -> bool:
        """Move PENDING → RUNNING (True); a retry finds it RUNNING already (True); otherwise False.

        A cancelled future is left for the completion path (``DispatcherCore.complete``) to notify, after the lease is released
        and the cancellation counted, so a woken waiter never sees a stale snapshot."""
        with self._quiet:
            if self._lazy_condition is None:
                if self._state == PENDING:
                    self._state = RUNNING
                    return True
                return self._state == RUNNING
        with self._condition:
            if self._state == PENDING:
                return super().set_running_or_notify_cancel()
            return self._state == RUNNING

    def _notify_if_cancelled(self) -> bool:
        """True if cancelled; moves CANCELLED → CANCELLED_AND_NOTIFIED at most once."""
        with self._quiet:
            if self._lazy_condition is None:
                if self._state == CANCELLED:
                    self._state = CANCELLED_AND_NOTIFIED
                return self._state in _CANCELLED_STATES
        with self._condition:
            if self._state == CANCELLED:
                super().set_running_or_notify_cancel()
        return self._state in _CANCELLED_STATES

    def _try_set_result(self, value: Any) -> bool:
        try:
            self.set_result(value)
        except InvalidStateError:
            self._notify_if_cancelled()
            return False
        self._scheduler = None
        return True

    def _try_set_exception(self, error: BaseException) -> bool:
        try:
            self.set_exception(error)
        except InvalidStateError:
            self._notify_if_cancelled()
            return False
        self._scheduler = None
        return True

    def __repr__(self) -> str:
        return f"<TaskFuture {self.task_id} state={self._state}>"
