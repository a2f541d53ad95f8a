"""Why nothing is being admitted: the dispatcher's account of blocked admission.

One ``admission_blocked`` event per blocked episode (an episode ends when a task is admitted), one
``admission_denied`` event per denial, ``group_capped`` for the groups a cap holds back, and the verdict
whether queued work can never run (a stall), which the dispatcher turns into failed futures.

Used by the dispatcher thread only, so it has no lock; it calls the controller and the emitter, each
of which takes its own.
"""

from __future__ import annotations

from threadsched.core.admission import TaskAdmissionController, TaskAdmissionDenied
from threadsched.core.admission_values import TaskAdmissionBlockSummary
from threadsched.core.emitter import EventEmitter
from threadsched.core.queue import FairTaskQueue

__all__ = ["BlockedAdmission"]


class BlockedAdmission:
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
