"""The recipes in ``examples/`` parse, run on the scheduler and hash equal to the single-threaded reference.

``examples/python_columns.toml`` names its functions ``example_functions:NAME``; the examples directory is
put on ``sys.path`` here, as ``PYTHONPATH=examples`` does on the command line.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support import no_sleep

from threadsched.engine import Recipe, load_recipe, run_recipe, run_reference

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
EXAMPLES = ("support_tickets.toml", "python_columns.toml")
MAX_EXAMPLE_RECORDS = 60


@pytest.fixture(autouse=True)
def examples_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES_DIR))


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_parses_and_stays_small(name: str) -> None:
    recipe = load_recipe(EXAMPLES_DIR / name)
    assert isinstance(recipe, Recipe)
    assert 0 < recipe.run.records <= MAX_EXAMPLE_RECORDS


@pytest.mark.parametrize("name", EXAMPLES)
@pytest.mark.parametrize("workers", [1, 4])
def test_example_runs_clean_and_matches_the_reference(name: str, workers: int, tmp_path: Path) -> None:
    recipe = load_recipe(EXAMPLES_DIR / name)
    result = run_recipe(recipe, tmp_path / "scheduled", workers=workers, sleep=no_sleep)
    reference = run_reference(recipe, tmp_path / "reference", sleep=no_sleep)
    assert result.hidden_waiters == 0
    assert result.final_active_leases == 0
    assert result.shutdown_clean
    assert result.rows_written > 0
    assert result.rows_written + len(result.dropped) == recipe.run.records
    assert result.output_hash == reference.output_hash
    assert dict(result.dropped) == dict(reference.dropped)
    assert (tmp_path / "scheduled" / "dataset.jsonl").read_bytes() == (tmp_path / "reference" / "dataset.jsonl").read_bytes()


def test_support_tickets_uses_two_providers_dedup_and_a_template() -> None:
    recipe = load_recipe(EXAMPLES_DIR / "support_tickets.toml")
    assert len(recipe.providers) == 2
    assert {column.kind for column in recipe.columns} >= {"sampler", "llm", "template"}
    assert any(p.kind == "drop_duplicates" and p.stage == "post_batch" for p in recipe.processors)


def test_python_columns_uses_cell_and_batch_python_columns_and_a_python_processor(tmp_path: Path) -> None:
    recipe = load_recipe(EXAMPLES_DIR / "python_columns.toml")
    modes = {column.mode for column in recipe.columns if column.kind == "python"}
    assert modes == {"cell", "batch"}
    assert any(p.kind == "python" for p in recipe.processors)
    result = run_recipe(recipe, tmp_path, sleep=no_sleep)
    dropped = set(result.dropped.values())
    assert dropped == {"python example_functions:keep_detailed_plans: rejected"}
