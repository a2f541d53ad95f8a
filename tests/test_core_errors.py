from __future__ import annotations

from types import MappingProxyType

from threadsched import AdmissionStalledError, TaskTimeoutError
from threadsched.core.values import TaskAdmissionBlockSummary


def test_task_timeout_error_is_a_timeout_error_naming_task_and_limit() -> None:
    error = TaskTimeoutError("t7", 0.25)
    assert isinstance(error, TimeoutError)
    assert (error.task_id, error.timeout) == ("t7", 0.25)
    assert str(error) == "task 't7' exceeded its timeout of 0.25s"


def test_admission_stalled_error_carries_the_block_summary() -> None:
    summary = TaskAdmissionBlockSummary(
        queued_total=2,
        active_lease_count=0,
        resources_available=MappingProxyType({"submission": 4}),
        blocked_groups=MappingProxyType({"g": "policy_denial"}),
        eligible_groups=(),
        earliest_available_after=None,
    )
    error = AdmissionStalledError(summary)
    assert isinstance(error, RuntimeError)
    assert error.summary is summary
    assert "2 queued task(s) blocked ('g': policy_denial)" in str(error)
