from __future__ import annotations

import json
import logging
import threading

import pytest
from support import run_threads, scheduler_event

from threadsched import MemoryEventSink, SchedulerEvent
from threadsched.core.events import ENGINE_STREAM, SCHEDULER_STREAM, FanOutEventSink, json_safe
from threadsched.report.evidence import hidden_waiters, ready_to_lease_waits


def test_to_dict_is_json_safe_for_any_hashable_group_and_diagnostics() -> None:
    event = SchedulerEvent(
        kind="admission_denied",
        sequence=3,
        captured_at=1.5,
        task_id="t1",
        group=("tenant", 7),
        resources={"submission": 1, "llm:mock/a": 2},
        reason="group_cap",
        diagnostics={"peer": frozenset({1}), "object": object, "nested": {1: (2, 3)}},
    )
    payload = json.loads(json.dumps(event.to_dict()))
    assert payload["group"] == ["tenant", 7]
    assert payload["resources"] == {"submission": 1, "llm:mock/a": 2}
    assert payload["diagnostics"]["nested"] == {"1": [2, 3]}
    assert payload["diagnostics"]["object"] == repr(object)


def test_json_safe_keeps_primitives() -> None:
    assert json_safe(None) is None
    assert json_safe(1.25) == 1.25
    assert json_safe("x") == "x"


def test_memory_sink_returns_events_in_sequence_order_from_many_threads() -> None:
    sink = MemoryEventSink()
    threads, per_thread = 4, 250
    start = threading.Barrier(threads)

    def emit_from(offset: int) -> None:
        start.wait()
        for index in range(per_thread):
            sink.emit(SchedulerEvent(kind="selected", sequence=index * threads + offset, captured_at=0.0))

    run_threads(threads, emit_from)
    sequences = [event.sequence for event in sink.events]
    assert sequences == list(range(threads * per_thread))
    assert len(sink) == threads * per_thread
    assert len(sink.of_kind("selected")) == threads * per_thread
    assert sink.of_kind("task_completed") == []


# -- streams, run ids, correlation, fan-out ------------------------------------------------------------


def test_event_defaults_are_the_scheduler_stream_without_run_id_or_correlation() -> None:
    event = SchedulerEvent(kind="selected", sequence=0, captured_at=0.0)
    assert (event.stream, event.run_id, dict(event.correlation)) == (SCHEDULER_STREAM, None, {})
    tagged = SchedulerEvent(
        kind="dependency_ready",
        sequence=4,
        captured_at=0.0,
        stream=ENGINE_STREAM,
        run_id="r1",
        correlation={"row_group": 2, "column": ("c", 1)},
    )
    payload = json.loads(json.dumps(tagged.to_dict()))
    assert (payload["stream"], payload["run_id"]) == ("engine", "r1")
    assert payload["correlation"] == {"row_group": 2, "column": ["c", 1]}


class _Raising:
    def emit(self, event: SchedulerEvent) -> None:
        raise RuntimeError("first sink is broken")


def test_fan_out_delivers_to_every_sink_even_if_the_first_raises(caplog: pytest.LogCaptureFixture) -> None:
    second, third = MemoryEventSink(), MemoryEventSink()
    fan_out = FanOutEventSink(_Raising(), second, _Raising(), third)
    with caplog.at_level(logging.WARNING, logger="threadsched"):
        for sequence in range(3):
            fan_out.emit(SchedulerEvent(kind="selected", sequence=sequence, captured_at=0.0))
    assert [e.sequence for e in second.events] == [e.sequence for e in third.events] == [0, 1, 2]
    assert len([r for r in caplog.records if "raised" in r.getMessage()]) == 6
    assert len(fan_out.sinks) == 4
    FanOutEventSink().emit(SchedulerEvent(kind="selected", sequence=0, captured_at=0.0))  # no sinks: nothing


def test_evidence_reads_only_the_scheduler_stream() -> None:
    scheduler = [
        scheduler_event("ready_enqueued", 0, 1.0),
        scheduler_event("task_lease_acquired", 1, 1.5, lease=1),
        scheduler_event("worker_spawned", 2, 1.6, lease=1),
    ]
    # Engine events reuse sequence numbers and, built by hand here, even scheduler kinds and ids: all ignored.
    engine = [
        scheduler_event("ready_enqueued", 0, 0.0, stream=ENGINE_STREAM),
        scheduler_event("worker_spawned", 1, 0.1, stream=ENGINE_STREAM, lease=99),
        scheduler_event("task_lease_acquired", 2, 5.0, stream=ENGINE_STREAM, lease=2),
        scheduler_event("worker_spawned", 3, 5.1, stream=ENGINE_STREAM, lease=7),
    ]
    mixed = engine[:2] + scheduler + engine[2:]
    assert hidden_waiters(mixed) == hidden_waiters(scheduler) == 0
    assert hidden_waiters(engine) == 0
    assert ready_to_lease_waits(mixed)["g"].waits == (0.5,)
    assert ready_to_lease_waits(engine) == {}
