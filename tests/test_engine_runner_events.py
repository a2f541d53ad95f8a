"""The engine's event stream: engine events of real runs, their correlation with the scheduler's
events, the run id, OUT/events.jsonl (fresh vs resumed runs) and failing sinks."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import PRE_FILTER, RaisingSink, assert_healthy, no_sleep, small_recipe

from threadsched.core.event_log import read_events
from threadsched.core.events import ENGINE_STREAM, SCHEDULER_STREAM, MemoryEventSink, SchedulerEvent
from threadsched.engine.recipe import Recipe
from threadsched.engine.runner import RunResult, run_recipe
from threadsched.engine.runner.events import EngineEvents, correlation_of, job_facts, new_run_id
from threadsched.engine.tracker import TaskKey
from threadsched.report.evidence import hidden_waiters

TASK_KINDS = ("ready_enqueued", "selected", "task_lease_acquired", "worker_spawned", "task_completed", "task_lease_released")
CORRELATION_KEYS = {"row_group", "column", "task_type", "row", "engine_task"}


@dataclass(frozen=True)
class ObservedRun:
    recipe: Recipe
    result: RunResult
    events: list[SchedulerEvent]
    out: Path

    def stream(self, name: str) -> list[SchedulerEvent]:
        return sorted((e for e in self.events if e.stream == name), key=lambda e: e.sequence)

    def engine(self, kind: str) -> list[SchedulerEvent]:
        return [e for e in self.stream(ENGINE_STREAM) if e.kind == kind]


@pytest.fixture(scope="module")
def failing_run(tmp_path_factory: pytest.TempPathFactory) -> ObservedRun:
    """Retryable and fatal failures, salvage rounds and a pre_batch filter that drops off-topic rows."""
    recipe = small_recipe(failure_rate=0.3, fatal_rate=0.05, salvage=2, extra=PRE_FILTER)
    out = tmp_path_factory.mktemp("events")
    sink = MemoryEventSink()
    result = run_recipe(recipe, out, workers=4, events=sink, sleep=no_sleep)
    return ObservedRun(recipe, result, sink.events, out)


def test_the_failing_run_is_healthy_and_exercises_every_engine_kind(failing_run: ObservedRun) -> None:
    result = failing_run.result
    assert_healthy(result)
    assert hidden_waiters(failing_run.events) == 0
    counters = result.counters
    assert counters["retryable_failures"] > 0 and counters["permanent_failures"] > 0 and result.salvage_rounds > 0
    assert any(reason.startswith("filter topic != ") for reason in result.dropped.values())
    kinds = {e.kind for e in failing_run.stream(ENGINE_STREAM)}
    assert kinds == {
        "scheduler_job_started",
        "scheduler_job_completed",
        "dependency_ready",
        "row_group_admitted",
        "row_group_checkpointed",
        "retry_deferred",
        "non_retryable_dropped",
        "salvage_redispatched",
        "queue_drained",
    }


def test_engine_stream_starts_with_job_started_ends_with_job_completed_without_gaps(failing_run: ObservedRun) -> None:
    engine = failing_run.stream(ENGINE_STREAM)
    assert [e.sequence for e in engine] == list(range(len(engine)))
    assert engine[0].kind == "scheduler_job_started" and engine[-1].kind == "scheduler_job_completed"
    assert len(failing_run.engine("scheduler_job_started")) == len(failing_run.engine("scheduler_job_completed")) == 1
    done = engine[-1].diagnostics
    assert done["rows_written"] == failing_run.result.rows_written
    assert done["rows_dropped"] == len(failing_run.result.dropped)
    assert done["counters"] == dict(failing_run.result.counters)
    scheduler = failing_run.stream(SCHEDULER_STREAM)
    assert [e.sequence for e in scheduler] == list(range(len(scheduler)))


def test_every_event_of_both_streams_carries_the_run_id(failing_run: ObservedRun) -> None:
    run_id = failing_run.result.run_id
    assert isinstance(run_id, str) and run_id
    assert {e.run_id for e in failing_run.events} == {run_id}
    assert {e.stream for e in failing_run.events} == {ENGINE_STREAM, SCHEDULER_STREAM}


def test_row_groups_are_admitted_and_checkpointed_once_each(failing_run: ObservedRun) -> None:
    row_groups = list(range(math.ceil(failing_run.recipe.run.records / failing_run.recipe.run.buffer_size)))
    admitted = [e.correlation["row_group"] for e in failing_run.engine("row_group_admitted")]
    checkpointed = failing_run.engine("row_group_checkpointed")
    assert sorted(admitted) == row_groups
    assert sorted(e.correlation["row_group"] for e in checkpointed) == row_groups
    assert sum(e.diagnostics["rows"] for e in checkpointed) == failing_run.result.rows_written
    assert len(checkpointed) == failing_run.result.row_groups_checkpointed
    for event in checkpointed:  # written rows per group agree with the checkpoint file
        path = failing_run.out / "row_groups" / f"rg-{event.correlation['row_group']:05d}.jsonl"
        assert path.read_bytes().count(b"\n") == 1 + event.diagnostics["rows"]  # the header, then one line a row


def _key(event: SchedulerEvent) -> tuple[Any, ...]:
    c = event.correlation
    return (c["column"], c["row_group"], c["row"], c["task_type"])


def test_dependency_ready_once_per_task_and_each_enqueue_is_a_first_attempt_or_a_salvage(failing_run: ObservedRun) -> None:
    ready = failing_run.engine("dependency_ready")
    per_key = Counter(_key(e) for e in ready)
    assert ready and set(per_key.values()) == {1}
    enqueued = [e for e in failing_run.stream(SCHEDULER_STREAM) if e.kind == "ready_enqueued"]
    enqueued_tasks = {e.correlation["engine_task"] for e in enqueued}
    assert {e.correlation["engine_task"] for e in ready} == enqueued_tasks
    counters = failing_run.result.counters
    assert counters["stale_cancelled"] == 0  # a linear column chain: no task is cancelled before it is enqueued
    assert len(enqueued) == counters["tasks_submitted"] == len(ready) + counters["salvaged_tasks"]
    for event in ready:
        assert event.correlation["engine_task"] == TaskKey(*_key(event)).task_id
        assert event.group == event.correlation["column"]


def test_failure_events_match_the_counters(failing_run: ObservedRun) -> None:
    counters = failing_run.result.counters
    max_attempts = 1 + failing_run.recipe.run.max_salvage_rounds
    deferred = failing_run.engine("retry_deferred")
    dropped = failing_run.engine("non_retryable_dropped")
    assert len(deferred) == counters["retryable_failures"]
    assert len(dropped) == counters["permanent_failures"]
    assert all(e.reason == "MockTransientError" and 1 <= e.diagnostics["attempt"] < max_attempts for e in deferred)
    for event in dropped:
        assert event.reason in {"MockTransientError", "MockFatalError"}
        assert event.diagnostics["retryable"] == (event.reason == "MockTransientError")
        if event.diagnostics["retryable"]:
            assert event.diagnostics["attempt"] == max_attempts
    assert all(set(e.correlation) == CORRELATION_KEYS for e in deferred + dropped)


def test_salvage_events_match_the_salvage_rounds(failing_run: ObservedRun) -> None:
    result = failing_run.result
    drained = failing_run.engine("queue_drained")
    redispatched = failing_run.engine("salvage_redispatched")
    assert len(redispatched) == result.counters["salvaged_tasks"]
    assert len(drained) == result.salvage_rounds == result.counters["salvage_rounds"]
    assert [e.diagnostics["salvage_round"] for e in drained] == list(range(1, len(drained) + 1))
    assert sum(e.diagnostics["deferred"] for e in drained) == len(redispatched)
    assert all(2 <= e.diagnostics["attempt"] <= 1 + failing_run.recipe.run.max_salvage_rounds for e in redispatched)
    # each redispatch follows a deferral of the same engine task
    deferred = Counter(e.correlation["engine_task"] for e in failing_run.engine("retry_deferred"))
    assert Counter(e.correlation["engine_task"] for e in redispatched) == deferred


def test_scheduler_events_of_engine_tasks_carry_their_correlation(failing_run: ObservedRun) -> None:
    task_events = [e for e in failing_run.stream(SCHEDULER_STREAM) if e.task_id is not None]
    assert {e.kind for e in task_events} >= set(TASK_KINDS)
    engine_task_of: dict[str, str] = {}
    for event in task_events:
        assert set(event.correlation) == CORRELATION_KEYS, event
        assert event.group == event.correlation["column"] and event.task_id is not None
        # one scheduler task is one engine task attempt: its correlation never changes
        assert engine_task_of.setdefault(event.task_id, event.correlation["engine_task"]) == event.correlation["engine_task"]
    for event in failing_run.stream(SCHEDULER_STREAM):
        if event.task_id is None:
            assert event.correlation == {}


def _long_strings(out: Path) -> set[str]:
    values: set[str] = set()
    for line in (out / "dataset.jsonl").read_text(encoding="utf-8").splitlines():
        values.update(v for v in json.loads(line).values() if isinstance(v, str) and len(v) >= 12)
    return values


def test_no_event_carries_row_values_prompts_or_completions(failing_run: ObservedRun) -> None:
    values = _long_strings(failing_run.out)
    assert len(values) > 10  # distinct questions, answers and labels of the written rows (replies repeat per prompt)
    topics = ("space", "food", "off-topic", "sport", "art", "war", "law", "sea")
    prompts = {f"Ask about {topic} please." for topic in topics} | {"Answer: "}
    dumped = [json.dumps(e.to_dict()) for e in failing_run.events]
    for needle in values | prompts | {"writer:"}:
        assert not [line for line in dumped if needle in line], needle


# -- job_facts and EngineEvents on their own ---------------------------------------------------------------


def test_job_facts_name_roots_columns_workers_and_limits() -> None:
    recipe = small_recipe()
    facts = job_facts(recipe, 5, {3: [21, 22], 1: [7]})
    assert facts["roots"] == ["topic"]
    assert facts["columns"] == ["topic", "question", "answer", "label"]
    assert facts["workers"] == 5
    assert facts["resource_limits"] == {"llm:mock/writer": 3}
    assert facts["recipe_hash"] == recipe.recipe_hash
    assert (facts["records"], facts["buffer_size"], facts["max_row_groups_in_flight"]) == (60, 7, 2)
    assert facts["resumed_row_groups"] == [1, 3]
    json.dumps(facts)


def _key_of(column: str = "question", row: int | None = 4) -> TaskKey:
    return TaskKey(column, 0, row, "cell" if row is not None else "batch")


def _emit_one_of_each(events: EngineEvents) -> None:
    key = _key_of()
    events.job_started({"a": 1})
    events.row_group_admitted(0)
    events.dependency_ready([key, _key_of(row=5)])
    events.retry_deferred(key, ValueError("secret prompt text"), 1)
    events.queue_drained(1, 1)
    events.salvage_redispatched([key], {key: 2})
    events.non_retryable_dropped(key, KeyError("secret prompt text"), 2, retryable=False)
    events.row_group_checkpointed(0, 3)
    events.job_completed({"b": 2})


def test_engine_events_without_a_sink_do_nothing() -> None:
    events = EngineEvents(None, "rid", {"question": "question"})
    assert events.enabled is False
    _emit_one_of_each(events)
    assert events.sink_errors == 0


def test_engine_events_build_correlated_engine_stream_events() -> None:
    sink = MemoryEventSink()
    events = EngineEvents(sink, "run-1", {"question": ("group", "question")})
    assert events.enabled
    _emit_one_of_each(events)
    emitted = sink.events
    assert [e.kind for e in emitted] == [
        "scheduler_job_started",
        "row_group_admitted",
        "dependency_ready",
        "dependency_ready",
        "retry_deferred",
        "queue_drained",
        "salvage_redispatched",
        "non_retryable_dropped",
        "row_group_checkpointed",
        "scheduler_job_completed",
    ]
    assert [e.sequence for e in emitted] == list(range(10))
    assert {(e.stream, e.run_id) for e in emitted} == {(ENGINE_STREAM, "run-1")}
    keyed = [e for e in emitted if "engine_task" in e.correlation]
    assert len(keyed) == 5
    assert all(e.group == ("group", "question") for e in keyed)
    assert (
        keyed[0].correlation
        == correlation_of(_key_of())
        == {
            "row_group": 0,
            "column": "question",
            "task_type": "cell",
            "row": 4,
            "engine_task": "question/rg0/r4/cell",
        }
    )
    by_kind = {e.kind: e for e in emitted}
    assert (by_kind["retry_deferred"].reason, by_kind["non_retryable_dropped"].reason) == ("ValueError", "KeyError")
    assert by_kind["salvage_redispatched"].diagnostics == {"attempt": 2}
    assert by_kind["row_group_checkpointed"].correlation == {"row_group": 0}
    assert by_kind["row_group_checkpointed"].diagnostics == {"rows": 3}
    assert by_kind["row_group_admitted"].group is None
    assert "secret" not in json.dumps([e.to_dict() for e in emitted])


def test_a_raising_sink_is_counted_and_never_raised() -> None:
    sink = RaisingSink()
    events = EngineEvents(sink, "rid", {"question": "question"})
    _emit_one_of_each(events)
    assert events.sink_errors == sink.calls == 10


def test_a_run_with_a_raising_sink_completes_like_a_run_without_events(tmp_path: Path) -> None:
    recipe = small_recipe(records=21, failure_rate=0.2)
    sink = RaisingSink()
    result = run_recipe(recipe, tmp_path / "raising", workers=3, events=sink, sleep=no_sleep)
    plain = run_recipe(recipe, tmp_path / "plain", workers=3, sleep=no_sleep)
    assert_healthy(result)
    assert_healthy(plain)
    assert result.output_hash == plain.output_hash and dict(result.dropped) == dict(plain.dropped)
    assert sink.calls > 0
    assert result.counters["sink_errors"] > 0  # the scheduler's share; the engine's is counted by EngineEvents


def test_new_run_ids_are_distinct_hex() -> None:
    ids = {new_run_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(len(run_id) == 16 and int(run_id, 16) >= 0 for run_id in ids)


# -- OUT/events.jsonl ------------------------------------------------------------------------------------


def _normalised(events: list[SchedulerEvent]) -> list[dict[str, Any]]:
    return [json.loads(json.dumps(e.to_dict())) for e in events]


def _order(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(events, key=lambda e: (e["stream"], e["sequence"]))


def _run_ids(events: list[dict[str, Any]]) -> Iterator[str]:
    seen: dict[str, None] = {}
    for event in events:
        seen.setdefault(event["run_id"], None)
    return iter(seen)


def test_event_log_holds_both_streams_and_the_same_events_as_the_memory_sink(tmp_path: Path) -> None:
    recipe = small_recipe(records=21, failure_rate=0.2)
    sink = MemoryEventSink()
    result = run_recipe(recipe, tmp_path, workers=3, events=sink, sleep=no_sleep, event_log=True)
    assert_healthy(result)
    logged = read_events(tmp_path / "events.jsonl")
    assert {e["stream"] for e in logged} == {ENGINE_STREAM, SCHEDULER_STREAM}
    assert list(_run_ids(logged)) == [result.run_id]
    assert _order(logged) == _order(_normalised(sink.events))
    kinds = Counter(e["kind"] for e in logged)
    assert kinds["scheduler_job_started"] == kinds["scheduler_job_completed"] == 1


def test_event_log_alone_is_written_without_an_events_sink(tmp_path: Path) -> None:
    result = run_recipe(small_recipe(records=14), tmp_path, workers=2, sleep=no_sleep, event_log=True)
    assert_healthy(result)
    logged = read_events(tmp_path / "events.jsonl")
    assert list(_run_ids(logged)) == [result.run_id]
    engine = sorted(e["sequence"] for e in logged if e["stream"] == ENGINE_STREAM)
    assert engine == list(range(len(engine)))


def test_a_fresh_run_replaces_the_old_event_log(tmp_path: Path) -> None:
    recipe = small_recipe(records=14)
    first = run_recipe(recipe, tmp_path, workers=2, sleep=no_sleep, event_log=True)
    sink = MemoryEventSink()
    second = run_recipe(recipe, tmp_path, workers=2, events=sink, sleep=no_sleep, event_log=True, resume=False)
    assert_healthy(first)
    assert_healthy(second)
    assert first.run_id != second.run_id
    logged = read_events(tmp_path / "events.jsonl")
    assert list(_run_ids(logged)) == [second.run_id]
    assert _order(logged) == _order(_normalised(sink.events))


def test_a_resumed_run_appends_to_the_event_log(tmp_path: Path) -> None:
    recipe = small_recipe(records=14)
    first = run_recipe(recipe, tmp_path, workers=2, sleep=no_sleep, event_log=True)
    first_events = read_events(tmp_path / "events.jsonl")
    resumed = run_recipe(recipe, tmp_path, workers=2, sleep=no_sleep, event_log=True, resume=True)
    assert_healthy(first)
    assert_healthy(resumed)
    assert resumed.resumed_row_groups == 2 and resumed.output_hash == first.output_hash
    logged = read_events(tmp_path / "events.jsonl")
    assert list(_run_ids(logged)) == [first.run_id, resumed.run_id]
    assert logged[: len(first_events)] == first_events
    started = [e for e in logged if e["kind"] == "scheduler_job_started"]
    assert [e["diagnostics"]["resumed_row_groups"] for e in started] == [[], [0, 1]]
