"""The run summary table: per-column rows from a RunResult, plain and rich rendering."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from types import MappingProxyType

import pytest
from support import no_sleep, small_recipe

from threadsched.engine.runner import RunResult, run_recipe, run_reference
from threadsched.engine.summary import column_rows, render_summary, summary_lines


def fake_result(**changes: object) -> RunResult:
    values: dict[str, object] = {
        "rows_written": 5,
        "dropped": MappingProxyType({1: "filter topic != 'off-topic'", 3: "filter topic != 'off-topic'", 4: "question failed"}),
        "output_hash": "abc",
        "counters": MappingProxyType({}),
        "hidden_waiters": 0,
        "final_active_leases": 0,
        "row_groups_checkpointed": 2,
        "elapsed": 1.5,
        "out_dir": Path("out"),
    }
    values.update(changes)
    return RunResult(**values)  # type: ignore[arg-type]


def test_totals_name_the_output_the_drop_reasons_and_the_evidence() -> None:
    lines = summary_lines(fake_result(resumed_row_groups=1, recomputed_row_groups=MappingProxyType({2: "rg-00002.jsonl: ..."})))
    assert lines[0] == f"scheduled run: 5 rows written, 3 dropped, 2 row groups in 1.50s -> {Path('out') / 'dataset.jsonl'}"
    assert lines[1] == "  dropped 2: filter topic != 'off-topic'" and lines[2] == "  dropped 1: question failed"
    assert "  resumed 1 row groups from earlier checkpoints" in lines
    assert "  recomputed 1 row groups whose checkpoints failed verification" in lines
    assert lines[-1] == "output hash abc; hidden waiters 0; final active leases 0"


def test_column_rows_follow_the_recipe_with_counts_from_a_scheduled_run(tmp_path: Path) -> None:
    recipe = small_recipe(failure_rate=0.3)
    result = run_recipe(recipe, tmp_path, workers=2, sleep=no_sleep)
    rows = column_rows(recipe, result)
    assert [row[0] for row in rows] == list(recipe.topological_order)
    question = rows[recipe.topological_order.index("question")]
    counts = result.columns["question"]
    assert question == (
        "question",
        "llm",
        "llm:mock/writer",
        str(counts["rows_done"]),
        str(counts["retryable_failures"]),
        str(counts["permanent_failures"]),
    )
    assert rows[recipe.topological_order.index("label")][2] == "-"


def test_a_reference_run_has_no_per_column_counts(tmp_path: Path) -> None:
    recipe = small_recipe()
    rows = column_rows(recipe, run_reference(recipe, tmp_path, sleep=no_sleep))
    assert all(row[3:] == ("-", "-", "-") for row in rows)


def test_plain_rendering_is_an_aligned_table_then_the_totals(tmp_path: Path) -> None:
    recipe = small_recipe()
    result = run_recipe(recipe, tmp_path, workers=2, sleep=no_sleep)
    stream = io.StringIO()
    render_summary(recipe, result, stream=stream, plain=True)
    lines = stream.getvalue().splitlines()
    header, body = lines[0], lines[1 : 1 + len(recipe.columns)]
    assert header.split() == ["column", "kind", "resource", "rows", "done", "retried", "failed"]
    assert all(len(line) <= len(header) for line in body)
    assert {line.rstrip()[-1] for line in body} <= set("0123456789")  # counts are right-aligned under "failed"
    assert lines[len(recipe.columns) + 1 :] == summary_lines(result)


def test_rich_rendering_when_available(tmp_path: Path) -> None:
    pytest.importorskip("rich")
    recipe = small_recipe()
    result = run_recipe(recipe, tmp_path, workers=2, sleep=no_sleep)
    stream = io.StringIO()
    render_summary(recipe, result, stream=stream)
    text = stream.getvalue()
    assert "threadsched scheduled run" in text and "question" in text and "llm:mock/writer" in text
    assert summary_lines(result)[-1] in text


def test_without_rich_the_summary_falls_back_to_plain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("rich", "rich.console", "rich.table"):
        monkeypatch.setitem(sys.modules, name, None)
    recipe = small_recipe()
    result = run_recipe(recipe, tmp_path, workers=2, sleep=no_sleep)
    stream = io.StringIO()
    render_summary(recipe, result, stream=stream)
    assert stream.getvalue().splitlines()[0].split()[:3] == ["column", "kind", "resource"]
