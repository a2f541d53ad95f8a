from __future__ import annotations

from threadsched.events import SchedulerEvent
from threadsched.evidence import hidden_waiters, percentile, ready_to_lease_waits, unreleased_leases


def event(kind: str, sequence: int, at: float, task: str = "t1", lease: int | None = None) -> SchedulerEvent:
    return SchedulerEvent(kind=kind, sequence=sequence, captured_at=at, task_id=task, lease_id=lease, group="g")


def test_percentile_nearest_rank() -> None:
    assert percentile([], 50) == 0.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile(range(1, 101), 95) == 95
    assert percentile([5.0], 95) == 5.0


def test_ready_to_lease_waits_pair_each_attempt_in_order() -> None:
    events = [
        event("ready_enqueued", 0, 1.0),
        event("task_lease_acquired", 1, 1.5, lease=1),
        event("ready_enqueued", 2, 3.0),  # a retry attempt of the same task
        event("task_lease_acquired", 3, 3.25, lease=2),
    ]
    assert ready_to_lease_waits(events)["g"].waits == (0.5, 0.25)


def test_hidden_waiter_is_a_worker_spawned_before_its_lease() -> None:
    good = [event("task_lease_acquired", 0, 0.0, lease=1), event("worker_spawned", 1, 0.1, lease=1)]
    bad = [event("worker_spawned", 0, 0.0, lease=1), event("task_lease_acquired", 1, 0.1, lease=1)]
    assert hidden_waiters(good) == 0
    assert hidden_waiters(bad) == 1


def test_unreleased_leases_flags_missing_and_double_releases() -> None:
    events = [
        event("task_lease_acquired", 0, 0.0, lease=1),
        event("task_lease_released", 1, 0.1, lease=1),
        event("task_lease_acquired", 2, 0.0, lease=2),
        event("task_lease_acquired", 3, 0.0, lease=3),
        event("task_lease_released", 4, 0.1, lease=3),
        event("task_lease_released", 5, 0.1, lease=3),
    ]
    assert unreleased_leases(events) == {2, 3}
