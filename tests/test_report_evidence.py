from __future__ import annotations

from support import scheduler_event

from threadsched.report.evidence import hidden_waiters, percentile, ready_to_lease_waits, unreleased_leases


def test_percentile_nearest_rank() -> None:
    assert percentile([], 50) == 0.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile(range(1, 101), 95) == 95
    assert percentile([5.0], 95) == 5.0


def test_ready_to_lease_waits_pair_each_attempt_in_order() -> None:
    events = [
        scheduler_event("ready_enqueued", 0, 1.0),
        scheduler_event("task_lease_acquired", 1, 1.5, lease=1),
        scheduler_event("ready_enqueued", 2, 3.0),  # a retry attempt of the same task
        scheduler_event("task_lease_acquired", 3, 3.25, lease=2),
    ]
    assert ready_to_lease_waits(events)["g"].waits == (0.5, 0.25)


def test_hidden_waiter_is_a_worker_spawned_before_its_lease() -> None:
    good = [scheduler_event("task_lease_acquired", 0, 0.0, lease=1), scheduler_event("worker_spawned", 1, 0.1, lease=1)]
    bad = [scheduler_event("worker_spawned", 0, 0.0, lease=1), scheduler_event("task_lease_acquired", 1, 0.1, lease=1)]
    assert hidden_waiters(good) == 0
    assert hidden_waiters(bad) == 1


def test_unreleased_leases_flags_missing_and_double_releases() -> None:
    events = [
        scheduler_event("task_lease_acquired", 0, 0.0, lease=1),
        scheduler_event("task_lease_released", 1, 0.1, lease=1),
        scheduler_event("task_lease_acquired", 2, 0.0, lease=2),
        scheduler_event("task_lease_acquired", 3, 0.0, lease=3),
        scheduler_event("task_lease_released", 4, 0.1, lease=3),
        scheduler_event("task_lease_released", 5, 0.1, lease=3),
    ]
    assert unreleased_leases(events) == {2, 3}
