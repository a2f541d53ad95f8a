"""``TaskFuture``: a ``concurrent.futures.Future`` that knows its task and its scheduler.

Every transition goes through the stdlib's own atomic methods, so the races between a worker
starting, a timeout firing and a user cancelling are settled by the future's condition:
whoever loses gets ``InvalidStateError`` (or ``False``) and backs off. A future cancelled while
queued is moved to CANCELLED_AND_NOTIFIED exactly once, or ``wait``/``as_completed`` would hang.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, InvalidStateError
from concurrent.futures._base import CANCELLED, PENDING, RUNNING
from typing import Any, Protocol


class _CancelHandler(Protocol):
    def _on_future_cancelled(self, future: TaskFuture) -> None: ...


class CancelToken:
    """Cooperative cancellation for a running task: check ``cancelled`` or call ``raise_if_cancelled``."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            from concurrent.futures import CancelledError

            raise CancelledError("task cancelled while running")

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)


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
        if cancelled and scheduler is not None:
            scheduler._on_future_cancelled(self)
        return cancelled

    # -- scheduler side ---------------------------------------------------------------------

    def _start_running(self) -> bool:
        """Move PENDING → RUNNING (True); a retry finds it RUNNING already (True); otherwise False,
        notifying waiters once if it was cancelled."""
        with self._condition:
            if self._state == PENDING or self._state == CANCELLED:
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
