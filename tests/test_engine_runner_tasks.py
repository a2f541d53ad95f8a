"""One engine task (runner.tasks): run_task for each task shape, root cells retried per row, and the call the
runner submits for a task, local (skipped once its row is dropped) or remote (inputs copied at submission).

``flaky_note`` is loaded by a recipe as ``test_engine_runner_tasks:flaky_note`` (tests/ is on ``sys.path``)."""

from __future__ import annotations

import pytest
from support import no_sleep, small_recipe

from threadsched.engine import ColumnNode, CompletionTracker, Recipe, TrackerError, build_endpoints, compile_columns, parse_recipe
from threadsched.engine.columns import CellExecutor, ColumnExecutor
from threadsched.engine.reference import compute_columns
from threadsched.engine.runner.rows import RowStore, ancestors
from threadsched.engine.runner.tasks import SKIPPED, EngineTasks, RootCells, compiled_executors, run_remote_task, run_task

CALLS = {"flaky_note": 0}


def flaky_note(row: dict[str, object]) -> str:
    """A root python cell column whose every second call fails (a python error is never retried)."""
    call = CALLS["flaky_note"]
    CALLS["flaky_note"] += 1
    if call % 2:
        raise ValueError(f"call {call} failed")
    return f"note {call}"


def executors_of(recipe: Recipe) -> dict[str, ColumnExecutor]:
    return dict(compile_columns(recipe, build_endpoints(recipe, sleep=no_sleep)))


def test_run_task_runs_a_batch_a_cell_or_a_root_cell_column() -> None:
    executors = executors_of(small_recipe())
    topics = run_task(executors["topic"], [(0, {}), (1, {})], cell=False, attempt=1, max_attempts=3)
    assert isinstance(topics, dict) and sorted(topics) == [0, 1]
    label = run_task(executors["label"], [(4, {"topic": "sea", "answer": "blue"})], cell=True, attempt=1, max_attempts=3)
    assert label == "sea / blue"


def test_a_root_cell_column_runs_each_row_and_keeps_each_failure_with_its_row() -> None:
    recipe = parse_recipe(
        """
[run]
records = 4

[[columns]]
name = "note"
kind = "python"
function = "test_engine_runner_tasks:flaky_note"
"""
    )
    executor = executors_of(recipe)["note"]
    assert isinstance(executor, CellExecutor) and executor.dependencies == ()
    rows = [(index, {}) for index in range(4)]
    CALLS["flaky_note"] = 0
    result = run_task(executor, rows, cell=False, attempt=1, max_attempts=3)
    CALLS["flaky_note"] = 0
    reference = compute_columns({"note": executor}, ["note"], dict(rows), max_attempts=3)
    assert isinstance(result, RootCells)
    assert result.values == {0: "note 0", 2: "note 2"} == {index: row["note"] for index, row in reference.rows.items()}
    assert result.failures == reference.dropped and sorted(result.failures) == [1, 3]
    assert "non-retryable failure on attempt 1" in result.failures[1]


def test_a_remote_task_computes_what_a_local_one_does_with_executors_compiled_once_per_recipe() -> None:
    recipe = small_recipe()
    rows = [(3, {"topic": "law", "answer": "fair"})]
    local = run_task(executors_of(recipe)["label"], rows, cell=True, attempt=1, max_attempts=3)
    assert run_remote_task(recipe, "label", rows, True, 1, 3) == local == "law / fair"
    assert compiled_executors(recipe) is compiled_executors(recipe)
    assert compiled_executors(small_recipe(records=61)) is not compiled_executors(recipe)  # another recipe hash


@pytest.fixture
def started_run() -> tuple[Recipe, CompletionTracker, RowStore, dict[str, ColumnExecutor]]:
    """Row group 0 (rows 0-2) of ``small_recipe`` with ``topic`` complete and written: ``question`` cells are ready."""
    recipe = small_recipe(records=3, buffer_size=3)
    executors = executors_of(recipe)
    tracker = CompletionTracker(
        [ColumnNode(name, ex.dependencies, ex.mode) for name, ex in executors.items()],
        records=3,
        buffer_size=3,
        max_row_groups_in_flight=1,
    )
    rows = RowStore(ancestors(recipe))
    (root,) = tracker.ready_frontier()
    tracker.mark_enqueued([root])
    assert rows.open(0, range(3)) and tracker.mark_started(root)
    rows.write("topic", 0, None, run_task(executors["topic"], [(i, {}) for i in range(3)], cell=False, attempt=1, max_attempts=3))
    tracker.mark_complete(root)
    return recipe, tracker, rows, executors


def test_a_local_task_reads_its_inputs_when_it_starts_and_is_skipped_once_its_row_is_dropped(
    started_run: tuple[Recipe, CompletionTracker, RowStore, dict[str, ColumnExecutor]],
) -> None:
    recipe, tracker, rows, executors = started_run
    tasks = EngineTasks(recipe, tracker, rows, executors, 3, remote=False)
    frontier = tracker.ready_frontier()
    assert [(key.column, key.row) for key in frontier] == [("question", 0), ("question", 1), ("question", 2)]
    tracker.mark_enqueued(frontier)
    calls = [tasks.call(key, 1) for key in frontier]
    assert all(fn == tasks.work for fn, _args in calls)
    assert tracker.drop_row(0, 0, "dropped by the test").stale == (frontier[0],)
    fn, args = calls[0]
    assert fn(*args) is SKIPPED
    fn, args = calls[1]
    assert isinstance(fn(*args), str)


def test_a_remote_call_starts_its_task_and_carries_the_recipe_and_the_inputs(
    started_run: tuple[Recipe, CompletionTracker, RowStore, dict[str, ColumnExecutor]],
) -> None:
    recipe, tracker, rows, executors = started_run
    tasks = EngineTasks(recipe, tracker, rows, executors, 3, remote=True)
    frontier = tracker.ready_frontier()
    tracker.mark_enqueued(frontier)
    fn, args = tasks.call(frontier[1], 2)
    assert fn is run_remote_task
    assert args == (recipe, "question", rows.inputs("question", 0, 1), True, 2, 3)
    with pytest.raises(TrackerError):
        tracker.mark_started(frontier[1])  # the call started it: the remote process never reports a start
