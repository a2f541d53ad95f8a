"""The package root is the public face: the names a user needs, nothing of the core's machinery."""

from __future__ import annotations

import pytest

import threadsched
import threadsched.policies

PUBLIC = {
    "POLICY_NAMES",
    "AdmissionStalledError",
    "BoundedBorrowConfig",
    "BoundedBorrowPolicy",
    "CancelToken",
    "DominantResourceFairPolicy",
    "EventSink",
    "FanOutEventSink",
    "JsonlEventSink",
    "LeasedExecutor",
    "MemoryEventSink",
    "RetryPolicy",
    "Scheduler",
    "SchedulerEvent",
    "SchedulerSnapshot",
    "SchedulerStatistics",
    "ShutdownReport",
    "StrictFairPolicy",
    "TaskFuture",
    "TaskGroup",
    "TaskTimeoutError",
    "__version__",
    "current_cancel_token",
    "current_task_correlation",
    "make_policy",
    "read_events",
}
MACHINERY = ("FairTaskQueue", "TaskAdmissionController", "QueueSelection", "TaskAdmissionLease", "Lane", "DispatcherCore")


def test_the_public_names_are_exactly_the_documented_ones() -> None:
    assert set(threadsched.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(threadsched, name) is not None


@pytest.mark.parametrize("name", MACHINERY)
def test_the_core_machinery_is_not_part_of_the_public_face(name: str) -> None:
    assert not hasattr(threadsched, name)


def test_a_scheduler_hands_out_no_mutable_internals() -> None:
    with threadsched.Scheduler(1) as sched:
        assert not hasattr(sched, "queue") and not hasattr(sched, "controller")
        assert isinstance(sched.statistics(), threadsched.SchedulerStatistics)
        assert isinstance(sched.snapshot(), threadsched.SchedulerSnapshot)


def test_policy_authors_find_the_vocabulary_in_the_policies_package() -> None:
    vocabulary = ("TaskAdmissionPolicy", "PolicyDecision", "PolicyStateDelta", "QueueView", "TaskAdmissionView")
    for name in vocabulary:
        assert name in threadsched.policies.__all__ and hasattr(threadsched.policies, name)
    assert isinstance(threadsched.StrictFairPolicy(), threadsched.policies.TaskAdmissionPolicy)


def test_an_executor_that_no_adapter_knows_is_a_typed_error_naming_what_is_accepted() -> None:
    with pytest.raises(TypeError, match=r"concurrent\.futures\.Executor or a distributed\.Client, got <object"):
        threadsched.Scheduler(1, executor=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"distributed\.Client"):
        threadsched.LeasedExecutor(1, executor=object())
