"""BlockedAdmission: one admission_blocked event per blocked episode, denials reported with their retry
time, group caps named, and a stall only when nothing anywhere can change what is eligible."""

from __future__ import annotations

from support import PolicyStub

from threadsched import (
    FairTaskQueue,
    MemoryEventSink,
    PolicyDecision,
    QueueView,
    SchedulableTask,
    TaskAdmissionConfig,
    TaskAdmissionController,
    TaskAdmissionDenied,
    TaskAdmissionLease,
    TaskAdmissionView,
    TaskGroupSpec,
)
from threadsched.core.blocked_admission import BlockedAdmission
from threadsched.core.emitter import EventEmitter
from threadsched.core.policy import ALLOW

LATER = 1_000_000.0


class DenyByGroup(PolicyStub):
    """Denies group "capped" with ``group_cap`` and group "later" until ``LATER``; allows the rest."""

    def evaluate(self, item: SchedulableTask, queue_view: QueueView, admission_view: TaskAdmissionView) -> PolicyDecision:
        if item.group.key == "capped":
            return PolicyDecision(False, "group_cap")
        if item.group.key == "later":
            return PolicyDecision(False, "policy_denial", available_after=LATER)
        return ALLOW


def build(*groups: str) -> tuple[BlockedAdmission, MemoryEventSink, TaskAdmissionController, FairTaskQueue]:
    sink = MemoryEventSink()
    queue = FairTaskQueue()
    controller = TaskAdmissionController(TaskAdmissionConfig(submission_capacity=2), DenyByGroup())
    queue.enqueue([SchedulableTask(f"{key}-1", None, TaskGroupSpec(key)) for key in groups])
    return BlockedAdmission(queue, controller, EventEmitter(sink, "run-1")), sink, controller, queue


def kinds(sink: MemoryEventSink) -> list[str]:
    return [event.kind for event in sink.events]


def test_one_admission_blocked_event_per_episode_until_a_task_is_admitted() -> None:
    blocking, sink, _, _ = build("capped")
    blocking.no_capacity()
    blocking.no_capacity()
    blocking.nothing_eligible(work_elsewhere=True)
    assert kinds(sink) == ["admission_blocked"]
    blocking.admitted()
    blocking.no_capacity()
    assert kinds(sink) == ["admission_blocked", "admission_blocked"]
    assert [event.reason for event in sink.events] == ["no_capacity", "no_capacity"]


def test_nothing_eligible_names_the_capped_groups_and_is_a_stall_only_with_no_work_elsewhere() -> None:
    blocking, sink, _, _ = build("capped")
    summary, stalled = blocking.nothing_eligible(work_elsewhere=True)
    assert dict(summary.blocked_groups) == {"capped": "group_cap"}
    assert stalled is False
    assert kinds(sink) == ["admission_blocked", "group_capped"]
    assert sink.of_kind("group_capped")[0].group == "capped"
    _, stalled = blocking.nothing_eligible(work_elsewhere=False)
    assert stalled is True
    assert kinds(sink) == ["admission_blocked", "group_capped"], "a second explanation in one episode emits nothing"


def test_a_denial_with_a_retry_time_is_not_a_stall_and_reports_that_time() -> None:
    blocking, _, _, _ = build("later")
    summary, stalled = blocking.nothing_eligible(work_elsewhere=False)
    assert summary.earliest_available_after == LATER
    assert stalled is False


def test_an_eligible_group_is_never_a_stall() -> None:
    blocking, _, _, _ = build("capped", "free")
    summary, stalled = blocking.nothing_eligible(work_elsewhere=False)
    assert "free" in summary.eligible_groups
    assert stalled is False


def test_a_held_lease_is_never_a_stall() -> None:
    blocking, _, controller, queue = build("free", "capped")
    free_head = queue.view().first_candidate_tasks_by_group["free"]
    lease = controller.try_acquire(free_head, queue.view())
    assert isinstance(lease, TaskAdmissionLease)
    queue.discard(free_head.task_id)
    _, stalled = blocking.nothing_eligible(work_elsewhere=False)
    assert stalled is False
    controller.release(lease)
    _, stalled = blocking.nothing_eligible(work_elsewhere=False)
    assert stalled is True


def test_denied_emits_admission_denied_with_its_diagnostics_and_returns_the_retry_time() -> None:
    blocking, sink, _, queue = build("free")
    item = queue.view().first_candidate_tasks_by_group["free"]
    denial = TaskAdmissionDenied(item, "policy_denial", available_after=LATER, diagnostics={"policy_error": "RuntimeError"})
    assert blocking.denied(denial) == LATER
    (event,) = sink.of_kind("admission_denied")
    assert event.reason == "policy_denial"
    assert dict(event.diagnostics) == {"policy_error": "RuntimeError"}
    assert blocking.denied(TaskAdmissionDenied(item, "no_capacity")) is None
