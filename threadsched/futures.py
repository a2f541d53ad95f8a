"""``TaskFuture``: a ``concurrent.futures.Future`` that knows its task and its scheduler.

Every transition goes through the stdlib's own atomic methods, so the races between a worker
starting, a timeout firing and a user cancelling are settled by the future's condition:
whoever loses gets ``InvalidStateError`` (or ``False``) and backs off. A future cancelled while
queued is moved to CANCELLED_AND_NOTIFIED exactly once, or ``wait``/``as_completed`` would hang.
"""

from __future__ import annotations

import threading
from concurrent.futures import CancelledError, Future, InvalidStateError
from concurrent.futures._base import CANCELLED, PENDING, RUNNING
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


class TaskFuture(Future[Any]):
    """Future of one submitted task. ``cancel()`` while running sets the cooperative token."""

    def __init__(self, task_id: str, scheduler: _CancelHandler, cancel_token: CancelToken) -> None:
        super().__init__()
        self.task_id = task_id
        self.cancel_token = cancel_token
        # The future references the scheduler, never its own task record: no per-task cycle.
        self._scheduler: _CancelHandler | None = scheduler

    def cancel(self) -> bool:
        self.cancel_token.cancel()
        cancelled = super().cancel()
        scheduler = self._scheduler
        if scheduler is not None:
            if cancelled:
                scheduler._on_future_cancelled(self)
            elif self.running():
                scheduler._on_cancel_requested(self)
        return cancelled

    # -- scheduler side ---------------------------------------------------------------------

    def _start_running(self) -> bool:
        """Move PENDING → RUNNING (True); a retry finds it RUNNING already (True); otherwise False.

        A cancelled future is left for the done-callback to notify, after the lease is released
        and the cancellation counted, so a woken waiter never sees a stale snapshot."""
        with self._condition:
            if self._state == PENDING:
                return self.set_running_or_notify_cancel()
            return self._state == RUNNING

    def _notify_if_cancelled(self) -> bool:
        """True if cancelled; moves CANCELLED → CANCELLED_AND_NOTIFIED at most once."""
        with self._condition:
            if self._state == CANCELLED:
                self.set_running_or_notify_cancel()
        return self.cancelled()

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
