"""RunCounts (engine counters, per-column progress, error rate) and what the runner reports with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import assert_healthy, no_sleep, small_recipe

from threadsched.engine.progress import ProgressSnapshot
from threadsched.engine.runner import run_recipe
from threadsched.engine.runner.counts import COLUMN_COUNT_NAMES, ENGINE_COUNTER_NAMES, RunCounts


class RecordingProgress:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ProgressSnapshot]] = []

    def start(self, snapshot: ProgressSnapshot) -> None:
        self.calls.append(("start", snapshot))

    def update(self, snapshot: ProgressSnapshot) -> None:
        self.calls.append(("update", snapshot))

    def finish(self, snapshot: ProgressSnapshot) -> None:
        self.calls.append(("finish", snapshot))


def test_new_counts_start_at_zero_with_resumed_rows_done() -> None:
    counts = RunCounts(("a", "b"), records=10, resumed_rows=4, resumed_dropped=1)
    assert counts.engine == dict.fromkeys(ENGINE_COUNTER_NAMES, 0)
    assert counts.column_table() == {name: {"rows_done": 4, "retryable_failures": 0, "permanent_failures": 0} for name in "ab"}
    snapshot = counts.progress(checkpointed=1, row_groups=3, elapsed=0.5)
    assert (snapshot.rows_total, snapshot.rows_dropped, snapshot.columns) == (9, 1, ("a", "b"))


def test_a_dropped_row_stops_counting_for_the_columns_it_had() -> None:
    counts = RunCounts(("a", "b"), records=5, resumed_rows=0, resumed_dropped=0)
    counts.recorded("a", 3)
    counts.recorded("b", 2)
    counts.dropped([{"a": 1, "b": 2}, {"a": 1}, None])
    assert counts.progress(checkpointed=0, row_groups=1, elapsed=0.0).rows_done == {"a": 1, "b": 1}
    assert counts.rows_dropped == 3


def test_failures_count_per_column_and_in_the_engine_counters() -> None:
    counts = RunCounts(("a",), records=1, resumed_rows=0, resumed_dropped=0)
    counts.failed("a", deferred=True)
    counts.failed("a", deferred=False)
    counts.finished()
    counts.finished(skipped=True)
    assert counts.columns["a"] == {"rows_done": 0, "retryable_failures": 1, "permanent_failures": 1}
    engine = counts.engine
    assert (engine["retryable_failures"], engine["permanent_failures"], engine["tasks_finished"]) == (1, 1, 1)


@pytest.mark.parametrize(("failed", "finished", "stops"), [(1, 3, False), (2, 3, True), (3, 3, True)])
def test_error_rate_stop_needs_the_window_and_a_rate_over_the_limit(failed: int, finished: int, stops: bool) -> None:
    counts = RunCounts(("a",), records=1, resumed_rows=0, resumed_dropped=0)
    for _ in range(finished):
        counts.finished()
    for _ in range(failed):
        counts.failed("a", deferred=True)
    assert counts.error_rate_stop(None, 0) is None
    assert counts.error_rate_stop(0.5, finished + 1) is None  # window not reached yet
    info = counts.error_rate_stop(0.5, finished)
    assert (info is not None) == stops
    if info is not None:
        assert info["error_rate"] == pytest.approx(failed / finished)
        assert "error_rate_shutdown = 0.5" in info["reason"]


def test_runner_reports_start_updates_and_a_final_snapshot_matching_the_output(tmp_path: Path) -> None:
    recipe = small_recipe(failure_rate=0.2, fatal_rate=0.05, extra=_topic_filter())
    progress = RecordingProgress()
    result = run_recipe(recipe, tmp_path, workers=3, sleep=no_sleep, progress=progress)
    assert_healthy(result)
    kinds = [kind for kind, _ in progress.calls]
    assert kinds[0] == "start" and kinds[-1] == "finish" and kinds.count("start") == kinds.count("finish") == 1
    assert "update" in kinds
    first, final = progress.calls[0][1], progress.calls[-1][1]
    assert first.rows_done == dict.fromkeys(recipe.topological_order, 0) and first.row_groups_checkpointed == 0
    assert final.columns == recipe.topological_order
    assert final.rows_total == result.rows_written and final.rows_dropped == len(result.dropped) > 0
    assert final.rows_done == dict.fromkeys(recipe.topological_order, result.rows_written)
    assert final.row_groups_checkpointed == final.row_groups_total == result.row_groups_checkpointed
    checkpoints = [snapshot.row_groups_checkpointed for _, snapshot in progress.calls]
    assert checkpoints == sorted(checkpoints)  # progress never goes backwards
    assert all(snapshot.rows_done[c] <= snapshot.rows_total for _, snapshot in progress.calls for c in snapshot.columns)
    run_json = json.loads((tmp_path / "run.json").read_text(encoding="utf-8"))
    assert run_json["columns"] == {name: dict(counts) for name, counts in result.columns.items()}
    assert set(run_json["columns"]["question"]) == set(COLUMN_COUNT_NAMES)
    failures = sum(c["retryable_failures"] + c["permanent_failures"] for c in run_json["columns"].values())
    assert failures == result.counters["retryable_failures"] + result.counters["permanent_failures"] > 0


def test_progress_finish_is_reported_when_the_run_raises(tmp_path: Path) -> None:
    class Broken(RecordingProgress):
        def update(self, snapshot: ProgressSnapshot) -> None:
            raise RuntimeError("terminal went away")

    progress = Broken()
    with pytest.raises(RuntimeError, match="terminal went away"):
        run_recipe(small_recipe(), tmp_path, workers=2, sleep=no_sleep, progress=progress)
    assert [kind for kind, _ in progress.calls] == ["start", "finish"]


def _topic_filter() -> str:
    return '\n[[processors]]\nstage = "pre_batch"\nkind = "filter"\ncolumn = "topic"\nop = "!="\nvalue = "off-topic"\n'
