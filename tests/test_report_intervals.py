"""report.intervals: ordering, queued attempts, leases and row-group spans from event dicts."""

from __future__ import annotations

from typing import Any

from threadsched.report.intervals import (
    job_started_diagnostics,
    lease_intervals,
    ordered,
    queued_intervals,
    resources_of,
    row_group_spans,
    run_bounds,
)


def ev(kind: str, at: float, sequence: int, **fields: Any) -> dict[str, Any]:
    return {"kind": kind, "captured_at": at, "sequence": sequence, **fields}


def test_ordered_sorts_by_time_stream_sequence_and_drops_untimed_events() -> None:
    events = [
        ev("b", 1.0, 1, stream="scheduler"),
        ev("a", 1.0, 0, stream="scheduler"),
        ev("e", 1.0, 7, stream="engine"),
        ev("z", 0.5, 9),
        {"kind": "untimed", "sequence": 0},
        {"kind": "nan", "captured_at": float("nan")},
    ]
    assert [event["kind"] for event in ordered(events)] == ["z", "e", "a", "b"]
    bounds = run_bounds(ordered(events))
    assert (bounds.start, bounds.end, bounds.span) == (0.5, 1.0, 0.5)
    assert run_bounds([]).span == 0.0


def test_queued_attempts_pair_by_task_in_order_and_keep_the_first_selection() -> None:
    events = ordered(
        [
            ev("ready_enqueued", 0.0, 0, task_id="t1", group="g"),
            ev("selected", 0.5, 1, task_id="t1", group="g"),
            ev("selected", 0.75, 2, task_id="t1", group="g"),  # re-selected after a denial
            ev("task_lease_acquired", 1.0, 3, task_id="t1", group="g", lease_id=1),
            ev("ready_enqueued", 2.0, 4, task_id="t1", group="g", reason="retry"),
            ev("ready_enqueued", 2.0, 5, task_id="t2", group=None),
        ]
    )
    first, retry, other = queued_intervals(events, end=5.0)
    assert (first.start, first.selected_at, first.end, first.outcome, first.retry) == (0.0, 0.5, 1.0, "leased", False)
    assert (retry.start, retry.selected_at, retry.end, retry.outcome, retry.retry) == (2.0, None, 5.0, "open", True)
    assert (other.task_id, other.group, other.outcome) == ("t2", "-", "open")


def test_queued_attempt_ends_on_cancel_or_queued_failure_but_not_on_a_late_completion() -> None:
    events = ordered(
        [
            ev("ready_enqueued", 0.0, 0, task_id="t1"),
            ev("cancelled", 1.0, 1, task_id="t1", reason="cancelled"),
            ev("ready_enqueued", 0.0, 2, task_id="t2"),
            ev("task_completed", 2.0, 3, task_id="t2", reason="admission_stalled"),
            ev("ready_enqueued", 0.0, 4, task_id="t3", reason="retry"),
            # the earlier, timed-out execution of t3 finally returns: its attempt is not the queued one
            ev("task_completed", 1.5, 5, task_id="t3", reason="failed", execution_id="t3.1"),
        ]
    )
    outcomes = {interval.task_id: (interval.end, interval.outcome) for interval in queued_intervals(events, end=3.0)}
    assert outcomes == {"t1": (1.0, "cancelled"), "t2": (2.0, "failed"), "t3": (3.0, "open")}


def test_engine_events_never_open_or_close_queued_attempts() -> None:
    events = ordered([ev("ready_enqueued", 0.0, 0, task_id="t1", stream="engine")])
    assert queued_intervals(events, end=1.0) == []


def test_leases_end_at_their_first_release_or_at_the_end() -> None:
    events = ordered(
        [
            ev("task_lease_acquired", 0.0, 0, task_id="t1", group="g", lease_id=1, resources={"submission": 1, "gpu": 2}),
            ev("task_lease_released", 1.0, 1, lease_id=1),
            ev("task_lease_released", 1.5, 2, lease_id=1),  # duplicate: diagnosed elsewhere, never extends
            ev("task_lease_acquired", 0.5, 3, task_id="t2", lease_id=2),
            ev("task_lease_released", 0.7, 4, lease_id=99),  # unknown lease
        ]
    )
    first, second = lease_intervals(events, end=4.0)
    assert (first.lease_id, first.seconds, first.released, dict(first.resources)) == (1, 1.0, True, {"submission": 1, "gpu": 2})
    assert (second.lease_id, second.seconds, second.released, second.group) == (2, 3.5, False, "-")


def test_resources_default_to_one_submission_slot_and_ignore_bad_amounts() -> None:
    assert resources_of({}) == {"submission": 1}
    assert resources_of({"resources": {"submission": 1, "x": "2", "y": True}}) == {"submission": 1}


def test_row_group_spans_from_admission_to_checkpoint() -> None:
    events = ordered(
        [
            ev("row_group_admitted", 0.0, 0, stream="engine", correlation={"row_group": 0}),
            ev("row_group_admitted", 1.0, 1, stream="engine", correlation={"row_group": 1}),
            ev("row_group_checkpointed", 2.0, 2, stream="engine", correlation={"row_group": 0}, diagnostics={"rows": 3}),
            ev("row_group_checkpointed", 2.5, 3, stream="engine", correlation={"row_group": 2}),  # resumed: no admission
            ev("row_group_admitted", 0.0, 4, stream="engine"),  # no correlation: ignored
        ]
    )
    spans = [(s.row_group, s.start, s.end, s.checkpointed, s.rows) for s in row_group_spans(events, end=3.0)]
    assert spans == [(0, 0.0, 2.0, True, 3), (1, 1.0, 3.0, False, None), (2, 2.5, 2.5, True, None)]


def test_job_started_diagnostics_are_those_of_the_first_start() -> None:
    events = [
        ev("scheduler_job_started", 0.0, 0, stream="engine", diagnostics={"workers": 3}),
        ev("scheduler_job_started", 1.0, 1),
    ]
    assert job_started_diagnostics(events) == {"workers": 3}
    assert job_started_diagnostics([]) == {}
