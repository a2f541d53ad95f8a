"""Typed errors raised into task futures."""

from __future__ import annotations

from threadsched.core.values import TaskAdmissionBlockSummary


class TaskTimeoutError(TimeoutError):
    """A task ran past its group's timeout; its thread may still be running (it is overdue)."""

    def __init__(self, task_id: str, timeout: float) -> None:
        super().__init__(f"task {task_id!r} exceeded its timeout of {timeout:g}s")
        self.task_id = task_id
        self.timeout = timeout


class AdmissionStalledError(RuntimeError):
    """Queued work can never be admitted: nothing runs, nothing is eligible, no deadline is pending."""

    def __init__(self, summary: TaskAdmissionBlockSummary) -> None:
        super().__init__(f"admission stalled: {summary.message}")
        self.summary = summary
