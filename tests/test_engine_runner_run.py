"""The scheduled engine runner: run_recipe vs. the single-threaded run_reference oracle."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from support import PRE_FILTER, assert_healthy, no_sleep, small_recipe

from threadsched.core.events import MemoryEventSink
from threadsched.engine import Recipe, builtin_recipe_text, parse_recipe
from threadsched.engine.runner import RunResult, run_recipe, run_reference
from threadsched.engine.runner.checkpoint import read_checkpoint
from threadsched.report.evidence import hidden_waiters


def dataset_rows(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (out / "dataset.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def demo() -> Recipe:
    return parse_recipe(builtin_recipe_text("demo"))


@pytest.fixture(scope="module")
def demo_reference(demo: Recipe, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    return run_reference(demo, tmp_path_factory.mktemp("reference"), sleep=no_sleep)


@pytest.mark.parametrize("workers", [1, 2, 8])
def test_demo_hash_equals_reference(demo: Recipe, demo_reference: RunResult, tmp_path: Path, workers: int) -> None:
    sink = MemoryEventSink()
    result = run_recipe(demo, tmp_path, workers=workers, events=sink, sleep=no_sleep)
    assert_healthy(result)
    assert hidden_waiters(sink.events) == 0
    assert result.output_hash == demo_reference.output_hash
    assert dict(result.dropped) == dict(demo_reference.dropped)
    assert result.rows_written == demo_reference.rows_written == demo.run.records - len(result.dropped)
    assert result.row_groups_checkpointed == math.ceil(demo.run.records / demo.run.buffer_size)
    assert result.counters["retried"] == 0  # retries are salvage rounds, never scheduler retries
    assert result.counters["salvaged_tasks"] > 0  # the demo has retryable failures
    run = json.loads((tmp_path / "run.json").read_text(encoding="utf-8"))
    assert run["output_hash"] == result.output_hash
    assert run["recipe_hash"] == demo.recipe_hash
    assert run["capacity"]["workers"] == workers
    assert run["capacity"]["buffer_size"] == demo.run.buffer_size
    assert run["capacity"]["resource_limits"] == dict(demo.resource_limits)
    assert run["rows_written"] == result.rows_written


def test_pre_batch_filter_drops_off_topic_rows(demo: Recipe, tmp_path: Path) -> None:
    result = run_recipe(demo, tmp_path, workers=4, sleep=no_sleep)
    rows = dataset_rows(tmp_path)
    assert rows and all(row["topic"] != "off-topic" for row in rows)
    filtered = [row for row, reason in result.dropped.items() if reason.startswith("filter topic != ")]
    assert filtered
    indices = [int(str(row["_row"])) for row in rows]
    assert indices == sorted(indices)
    assert not set(filtered) & {row["_row"] for row in rows}
    # every row is either written or dropped with a reason
    assert {row["_row"] for row in rows} | set(result.dropped) == set(range(demo.run.records))
    assert set(rows[0]) == {"_row", *demo.topological_order}


@pytest.mark.parametrize("workers", [1, 3])
def test_fatal_failures_drop_rows_and_finish(tmp_path: Path, workers: int) -> None:
    recipe = small_recipe(fatal_rate=0.2)
    result = run_recipe(recipe, tmp_path / "run", workers=workers, sleep=no_sleep)
    reference = run_reference(recipe, tmp_path / "ref", sleep=no_sleep)
    assert_healthy(result)
    fatal = [reason for reason in result.dropped.values() if "non-retryable failure" in reason]
    assert fatal and all("MockFatalError" in reason for reason in fatal)
    assert result.counters["permanent_failures"] == len(fatal)
    assert result.output_hash == reference.output_hash
    assert set(result.dropped) == set(reference.dropped)
    assert result.row_groups_checkpointed == math.ceil(60 / 7)


def test_retryable_failures_use_salvage_and_finish(tmp_path: Path) -> None:
    recipe = small_recipe(failure_rate=0.4, salvage=2)
    result = run_recipe(recipe, tmp_path / "run", workers=4, sleep=no_sleep)
    reference = run_reference(recipe, tmp_path / "ref", sleep=no_sleep)
    assert_healthy(result)
    assert result.salvage_rounds > 0 and result.counters["salvaged_tasks"] > 0
    exhausted = [reason for reason in result.dropped.values() if "still failing after 3 attempts" in reason]
    assert exhausted  # with 40% failures some tasks fail all 1 + 2 attempts
    assert result.output_hash == reference.output_hash
    assert dict(result.dropped) == dict(reference.dropped)


def test_zero_failures_keep_every_row_but_the_filtered(tmp_path: Path) -> None:
    recipe = small_recipe()
    result = run_recipe(recipe, tmp_path / "run", workers=2, sleep=no_sleep)
    assert_healthy(result)
    assert result.salvage_rounds == 0 and not result.dropped
    assert result.rows_written == 60
    assert result.output_hash == run_reference(recipe, tmp_path / "ref", sleep=no_sleep).output_hash


def test_checkpoint_files_hold_their_row_groups(tmp_path: Path) -> None:
    recipe = small_recipe(fatal_rate=0.1, extra=PRE_FILTER)
    result = run_recipe(recipe, tmp_path, workers=3, sleep=no_sleep)
    assert_healthy(result)
    files = sorted((tmp_path / "row_groups").iterdir())
    assert [f.name for f in files] == [f"rg-{i:05d}.jsonl" for i in range(math.ceil(60 / 7))]
    seen: list[int] = []
    bodies: list[bytes] = []
    for index, path in enumerate(files):
        span = range(index * 7, min(index * 7 + 7, 60))
        checkpoint, body = read_checkpoint(path, recipe_hash=recipe.recipe_hash, row_group=index, rows=span)
        rows = [json.loads(line)["_row"] for line in body.split(b"\n")[:-1]]
        assert rows == list(checkpoint.rows) == [row for row in span if row not in result.dropped]
        assert dict(checkpoint.dropped) == {row: why for row, why in result.dropped.items() if row in span}
        seen.extend(rows)
        bodies.append(body)
    assert (tmp_path / "dataset.jsonl").read_bytes() == b"".join(bodies)
    assert seen == [row["_row"] for row in dataset_rows(tmp_path)]
    assert not [p for p in tmp_path.rglob("*.tmp")]
    assert any(reason.startswith("filter topic != ") for reason in result.dropped.values())


_POST_DEDUP = """
[[processors]]
stage = "post_batch"
kind = "drop_duplicates"
columns = ["topic"]
"""


def test_post_batch_processor_drops_rows_like_the_reference(tmp_path: Path) -> None:
    recipe = small_recipe(failure_rate=0.1, extra=PRE_FILTER + _POST_DEDUP)
    result = run_recipe(recipe, tmp_path / "run", workers=4, sleep=no_sleep)
    reference = run_reference(recipe, tmp_path / "ref", sleep=no_sleep)
    assert_healthy(result)
    assert any(reason.startswith("duplicate of row") for reason in result.dropped.values())
    assert result.output_hash == reference.output_hash
    assert dict(result.dropped) == dict(reference.dropped)
    for index in range(math.ceil(60 / 7)):
        topics = [row["topic"] for row in dataset_rows(tmp_path / "run") if int(str(row["_row"])) // 7 == index]
        assert len(topics) == len(set(topics))


def test_root_cell_column_and_single_row_group(tmp_path: Path) -> None:
    extra = '\n[[columns]]\nname = "constant"\nkind = "template"\ntemplate = "fixed text"\n'
    recipe = small_recipe(records=5, buffer_size=50, in_flight=1, extra=extra)
    result = run_recipe(recipe, tmp_path / "run", workers=8, sleep=no_sleep)
    assert_healthy(result)
    assert result.row_groups_checkpointed == 1
    assert all(row["constant"] == "fixed text" for row in dataset_rows(tmp_path / "run"))
    assert result.output_hash == run_reference(recipe, tmp_path / "ref", sleep=no_sleep).output_hash


def test_everything_dropped_still_finishes(tmp_path: Path) -> None:
    recipe = small_recipe(records=20, buffer_size=5, fatal_rate=1.0)
    result = run_recipe(recipe, tmp_path, workers=2, sleep=no_sleep)
    assert_healthy(result)
    assert result.rows_written == 0 and len(result.dropped) == 20
    assert result.row_groups_checkpointed == 4
    assert (tmp_path / "dataset.jsonl").read_bytes() == b""


def test_bad_workers_value(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="workers"):
        run_recipe(small_recipe(), tmp_path, workers=0)


_BRANCH = """
[[columns]]
name = "side"
kind = "llm"
model = "mock/writer"
prompt = "Side note on {topic}."

[[columns]]
name = "both"
kind = "template"
template = "{side} | {label}"
"""


@pytest.mark.parametrize("workers", [1, 2, 6])
def test_parallel_branches_with_fatal_failures_match_reference(tmp_path: Path, workers: int) -> None:
    recipe = small_recipe(records=80, buffer_size=9, in_flight=3, fatal_rate=0.15, failure_rate=0.1, extra=_BRANCH)
    result = run_recipe(recipe, tmp_path / "run", workers=workers, sleep=no_sleep)
    reference = run_reference(recipe, tmp_path / "ref", sleep=no_sleep)
    assert_healthy(result)
    assert result.output_hash == reference.output_hash
    assert set(result.dropped) == set(reference.dropped)


@pytest.mark.parametrize("policy", ["strict", "bounded_borrow", "drf"])
def test_every_policy_writes_the_reference_output(tmp_path: Path, policy: str) -> None:
    recipe = small_recipe(failure_rate=0.2, salvage=3)
    reference = run_reference(recipe, tmp_path / "reference", sleep=no_sleep)
    sink = MemoryEventSink()
    result = run_recipe(recipe, tmp_path / policy, workers=3, sleep=no_sleep, events=sink, policy=policy)
    assert_healthy(result)
    assert result.output_hash == reference.output_hash
    started = next(event for event in sink.events if event.kind == "scheduler_job_started")
    assert started.diagnostics["policy"] == policy


def test_an_unknown_policy_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="policy must be one of strict, bounded_borrow, drf or None, got 'fifo'"):
        run_recipe(small_recipe(), tmp_path, policy="fifo")
    assert not any(tmp_path.iterdir())
