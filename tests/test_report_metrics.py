"""report.metrics: every metric on hand-built event dicts with chosen times (exact expected values)."""

from __future__ import annotations

from typing import Any

import pytest
from support import LLM, Log, scenario

from threadsched.report.intervals import lease_intervals, ordered, queued_intervals
from threadsched.report.metrics import compute_metrics, ready_idle_gap
from threadsched.report.stats import WaitStats


def test_scenario_run_facts() -> None:
    metrics = compute_metrics(scenario())
    assert (metrics.run_id, metrics.recipe_hash, metrics.span_seconds) == ("r1", "abc123", 4.0)
    assert (metrics.workers, metrics.workers_inferred, dict(metrics.resource_limits)) == (2, False, {"llm": 4})
    assert metrics.hidden_waiters == 0
    assert metrics.unreleased_leases == ()
    assert dict(metrics.task_outcomes) == {"succeeded": 5}


def test_scenario_group_waits() -> None:
    groups = {group.group: group for group in compute_metrics(scenario()).groups}
    assert set(groups) == {"a", "b"}
    a, b = groups["a"], groups["b"]
    assert (a.tasks, a.attempts, a.leases, a.lease_seconds) == (4, 4, 4, 6.5)
    assert a.ready_queue_wait == WaitStats(4, 0.0, 0.5)  # t4 waited 1.0 → 1.5
    assert a.admission_wait == WaitStats(4, 0.0, 0.0)
    assert a.ready_to_lease == WaitStats(4, 0.0, 0.5)
    assert (b.tasks, b.attempts, b.leases, b.lease_seconds) == (1, 1, 1, 1.0)
    assert b.ready_queue_wait == WaitStats(1, 0.25, 0.25)
    assert b.admission_wait == WaitStats(1, 1.75, 1.75)
    assert b.ready_to_lease == WaitStats(1, 2.0, 2.0)


def test_scenario_ready_idle_gap_and_capacity() -> None:
    metrics = compute_metrics(scenario())
    assert metrics.ready_idle_gap_seconds == pytest.approx(0.5)
    assert metrics.ready_idle_gap_fraction == pytest.approx(0.125)
    usage = {item.resource: item for item in metrics.resources}
    assert [item.resource for item in metrics.resources] == ["submission", "llm"]
    assert usage["submission"].lease_seconds == pytest.approx(7.5)
    assert (usage["submission"].peak, usage["submission"].limit) == (2, 2)
    assert usage["submission"].utilisation == pytest.approx(7.5 / 8)
    assert usage["llm"].lease_seconds == pytest.approx(2.0)
    assert usage["llm"].utilisation == pytest.approx(2.0 / 16)


def test_scenario_row_group_spans() -> None:
    spans = compute_metrics(scenario()).row_groups
    assert [(s.row_group, s.start, s.end, s.checkpointed, s.rows) for s in spans] == [
        (0, 0.0, 3.5, True, 2),
        (1, 1.0, 4.0, False, None),
    ]


def test_hidden_waiter_is_a_spawn_without_an_earlier_lease() -> None:
    log = Log()
    log.add("worker_spawned", 0.0, task_id="t1", lease_id=9)
    log.add("task_lease_acquired", 0.1, task_id="t1", lease_id=9)
    log.add("task_lease_released", 0.2, task_id="t1", lease_id=9)
    assert compute_metrics(log.events).hidden_waiters == 1


def test_unreleased_leases_flag_missing_and_double_releases() -> None:
    log = Log()
    log.add("task_lease_acquired", 0.0, task_id="t1", lease_id=1)
    log.add("task_lease_acquired", 0.0, task_id="t2", lease_id=2)
    log.add("task_lease_released", 1.0, task_id="t2", lease_id=2)
    log.add("task_lease_released", 1.0, task_id="t2", lease_id=2)
    log.add("task_lease_acquired", 0.0, task_id="t3", lease_id=3)
    log.add("task_lease_released", 1.0, task_id="t3", lease_id=3)
    metrics = compute_metrics(log.events)
    assert metrics.unreleased_leases == (1, 2)
    assert {item.resource: item.lease_seconds for item in metrics.resources}["submission"] == pytest.approx(3.0)


def test_retries_drops_and_salvage_are_counted_per_source() -> None:
    log = Log()
    log.ready("t1", "a", 0.0)
    log.lease("t1", "a", 1, 0.0)
    log.done("t1", "a", 1, 1.0, reason="retry")
    log.add("retry_deferred", 1.0, task_id="t1", group="a", diagnostics={"delay": 0.5})
    log.ready("t1", "a", 1.5, reason="retry")
    log.lease("t1", "a", 2, 2.0)
    log.done("t1", "a", 2, 3.0)
    log.engine("retry_deferred", 1.0, group="a", reason="ValueError", correlation={"row_group": 0})
    log.engine("non_retryable_dropped", 2.0, group="a", reason="TypeError", correlation={"row_group": 0})
    log.engine("salvage_redispatched", 2.5, group="a", diagnostics={"attempt": 2}, correlation={"row_group": 0})
    metrics = compute_metrics(log.events)
    assert (metrics.scheduler_retries, metrics.engine_retries, metrics.drops, metrics.salvage_redispatches) == (1, 1, 1, 1)
    assert dict(metrics.task_outcomes) == {"retry": 1, "succeeded": 1}
    (group,) = metrics.groups
    assert (group.tasks, group.attempts, group.leases) == (1, 2, 2)
    assert group.ready_to_lease == WaitStats(2, 0.0, 0.5)  # each attempt paired with its own lease


def test_workers_fall_back_to_the_argument_then_to_the_peak() -> None:
    log = Log()
    log.ready("t1", "a", 0.0)
    log.ready("t2", "a", 0.0)
    log.lease("t1", "a", 1, 0.0)
    log.done("t1", "a", 1, 1.0)
    log.lease("t2", "a", 2, 1.0)
    log.done("t2", "a", 2, 2.0)
    inferred = compute_metrics(log.events)
    assert (inferred.workers, inferred.workers_inferred, inferred.ready_idle_gap_seconds) == (1, True, 0.0)
    given = compute_metrics(log.events, workers=2)
    assert (given.workers, given.workers_inferred) == (2, False)
    assert given.ready_idle_gap_seconds == pytest.approx(1.0)  # t2 queued 0 → 1 beside a free second slot


def test_ready_idle_gap_ignores_tasks_blocked_by_another_full_resource() -> None:
    log = Log()
    log.ready("t1", "b", 0.0, LLM)
    log.lease("t1", "b", 1, 0.0, LLM)
    log.ready("t2", "b", 0.0, LLM)  # needs llm 2, but t1 holds both units until 1.0
    log.done("t1", "b", 1, 1.0)
    log.lease("t2", "b", 2, 1.5, LLM)
    log.done("t2", "b", 2, 2.0)
    log.engine("scheduler_job_started", 0.0, diagnostics={"workers": 4, "resource_limits": {"llm": 2}})
    timeline = ordered(log.events)
    queued, leases = queued_intervals(timeline, 2.0), lease_intervals(timeline, 2.0)
    assert ready_idle_gap(queued, leases, {"submission": 4, "llm": 2}) == pytest.approx(0.5)  # only 1.0 → 1.5
    assert compute_metrics(log.events).ready_idle_gap_seconds == pytest.approx(0.5)


def test_cancelled_while_queued_ends_the_wait_without_a_lease() -> None:
    log = Log()
    log.ready("t1", "a", 0.0)
    log.add("cancelled", 0.75, task_id="t1", reason="cancelled")
    log.add("queue_empty", 2.0)
    metrics = compute_metrics(log.events, workers=1)
    assert metrics.ready_idle_gap_seconds == pytest.approx(0.75)
    (group,) = metrics.groups
    assert (group.tasks, group.leases, group.ready_to_lease.count) == (1, 0, 0)


def test_tolerates_missing_keys_unknown_kinds_and_no_events() -> None:
    events: list[dict[str, Any]] = [
        {"kind": "mystery", "captured_at": 1.0},
        {"kind": "ready_enqueued", "captured_at": 2.0},  # no task id, no stream, no sequence
        {"captured_at": "later"},
        {"kind": "task_lease_acquired", "captured_at": 3.0, "lease_id": 1},
    ]
    metrics = compute_metrics(events)
    assert (metrics.events, metrics.span_seconds, metrics.unreleased_leases) == (3, 2.0, (1,))
    empty = compute_metrics([])
    assert (empty.events, empty.span_seconds, empty.groups, empty.ready_idle_gap_fraction) == (0, 0.0, (), 0.0)
