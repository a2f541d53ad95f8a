from __future__ import annotations

from threadsched.cli.demo import demo_groups, run_demo


def test_small_demo_run_has_no_hidden_waiters_and_returns_every_lease() -> None:
    result = run_demo(seed=3, scale=0.25, max_workers=4)
    assert result.hidden_waiters == 0
    assert result.final_active_leases == 0
    assert result.unreleased_leases == 0
    expected = {spec.key: spec.tasks for spec in demo_groups(0.25)}
    assert {row.group: row.submitted for row in result.rows} == expected
    for row in result.rows:
        assert row.completed + row.failed == row.submitted
        assert 0 <= row.wait_p50_ms <= row.wait_p95_ms
    counters = result.counters
    assert counters["submitted"] == sum(expected.values())
    assert counters["completed"] == sum(row.completed for row in result.rows)
    assert counters["failed"] == sum(row.failed for row in result.rows)


def test_demo_outcomes_are_deterministic_for_a_seed() -> None:
    first = run_demo(seed=11, scale=0.25, max_workers=2)
    second = run_demo(seed=11, scale=0.25, max_workers=2)
    assert [(row.group, row.completed, row.failed) for row in first.rows] == [
        (row.group, row.completed, row.failed) for row in second.rows
    ]
