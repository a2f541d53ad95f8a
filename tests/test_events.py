from __future__ import annotations

import json
import threading

from threadsched import MemoryEventSink, SchedulerEvent
from threadsched.events import json_safe


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

    workers = [threading.Thread(target=emit_from, args=(offset,)) for offset in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    sequences = [event.sequence for event in sink.events]
    assert sequences == list(range(threads * per_thread))
    assert len(sink) == threads * per_thread
    assert len(sink.of_kind("selected")) == threads * per_thread
    assert sink.of_kind("task_completed") == []
