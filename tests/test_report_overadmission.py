"""report.overadmission: root columns and root leases granted while downstream work waited."""

from __future__ import annotations

import pytest
from support import Log, scenario

from threadsched.report.intervals import ordered
from threadsched.report.metrics import compute_metrics
from threadsched.report.overadmission import _covered, _union, root_columns


def test_scenario_root_over_admission() -> None:
    over = compute_metrics(scenario()).root_over_admission
    assert over is not None
    assert over.roots == ("a",)
    assert over.first_downstream_ready == 1.0
    assert over.count == 2  # t4 at 1.5 and t5 at 2.0, while t3 waited
    assert over.lease_seconds == pytest.approx(3.5)


def test_roots_fall_back_to_row_group_zero_before_the_first_release() -> None:
    events = [event for event in scenario() if event["kind"] != "scheduler_job_started"]
    for event in events:
        if event["kind"] == "dependency_ready" and event["group"] == "b":
            event["captured_at"] = 1.1  # strictly after the first release at 1.0
    assert root_columns(ordered(events)) == ("a",)
    over = compute_metrics(events).root_over_admission
    assert over is not None and over.count == 2


def test_no_dependency_events_means_no_over_admission_figure() -> None:
    log = Log()
    log.ready("t1", "a", 0.0)
    log.lease("t1", "a", 1, 0.0)
    log.done("t1", "a", 1, 1.0)
    assert compute_metrics(log.events).root_over_admission is None


def test_roots_without_any_dependency_before_the_first_release_are_empty() -> None:
    log = Log()
    log.add("task_lease_released", 0.0, lease_id=1)
    log.engine("dependency_ready", 1.0, group="a", correlation={"row_group": 0})
    assert root_columns(ordered(log.events)) == ()
    over = compute_metrics(log.events).root_over_admission
    assert over is not None and (over.roots, over.first_downstream_ready, over.count) == ((), 1.0, 0)


def test_no_downstream_ready_means_zero_over_admission() -> None:
    events = [event for event in scenario() if not (event["kind"] == "dependency_ready" and event["group"] == "b")]
    over = compute_metrics(events).root_over_admission
    assert over is not None and (over.first_downstream_ready, over.count, over.lease_seconds) == (None, 0, 0.0)


def test_union_merges_overlapping_and_touching_half_open_intervals() -> None:
    starts, ends = _union([(3.0, 4.0), (0.0, 1.0), (1.0, 2.0), (5.0, 5.0), (0.5, 1.5)])
    assert (starts, ends) == ([0.0, 3.0], [2.0, 4.0])
    assert [_covered(starts, ends, at) for at in (-1.0, 0.0, 1.99, 2.0, 3.5, 4.0)] == [False, True, True, False, True, False]
