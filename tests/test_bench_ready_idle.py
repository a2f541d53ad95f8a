"""bench/ready_idle.py: a small demo run's metric matches ``threadsched report``'s, and a run writes its document.

No assertion on the gap itself (it depends on the machine): only that it is a fraction of the span, that it
is the report's own number, and that the document has the expected keys."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
SMALL_RECORDS = 40  # two row groups of the demo's 20 rows


@pytest.fixture
def ready_idle(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))
    sys.modules.pop("ready_idle", None)
    import ready_idle

    return ready_idle


def test_the_metric_is_the_one_threadsched_report_computes(ready_idle: ModuleType, tmp_path: Path) -> None:
    from threadsched.engine import run_recipe
    from threadsched.report import write_report

    recipe = ready_idle.demo_recipe(SMALL_RECORDS)
    assert recipe.run.records == SMALL_RECORDS
    run_recipe(recipe, tmp_path, event_log=True)
    ours, reports = ready_idle.run_metrics(tmp_path), write_report(tmp_path).metrics
    assert ours.ready_idle_gap_fraction == reports.ready_idle_gap_fraction
    assert ours.span_seconds == reports.span_seconds and ours.span_seconds > 0
    assert 0.0 <= ours.ready_idle_gap_fraction <= 1.0


def test_the_default_recipe_is_the_built_in_demo(ready_idle: ModuleType) -> None:
    from threadsched.engine import builtin_recipe_text, parse_recipe

    assert ready_idle.demo_recipe(None) == parse_recipe(builtin_recipe_text("demo"), source="demo")


def test_a_run_writes_per_run_values_and_the_median(ready_idle: ModuleType, tmp_path: Path) -> None:
    import run as front_door

    out = tmp_path / "ready_idle.json"
    assert front_door.main(["ready_idle", "--records", str(SMALL_RECORDS), "--runs", "5", "--out", str(out)]) == 0
    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["benchmark"] == "ready_idle" and "machine" in document
    assert (document["records"], document["runs"], document["workers"]) == (SMALL_RECORDS, 5, 8)
    per_run = document["per_run_ready_idle_gap_fraction"]
    assert len(per_run) == 5 and all(0.0 <= value <= 1.0 for value in per_run)
    assert document["median_ready_idle_gap_fraction"] == document["results"]["ready_idle_gap_fraction"]["median"]
    assert document["results"]["ready_idle_gap_fraction"]["samples"] == per_run
    assert document["target"] == {"ready_idle_gap_fraction_max": 0.05}
    assert document["meets_target"] == (document["median_ready_idle_gap_fraction"] <= 0.05)
    assert [row["value"] for row in document["headline"]] == [100 * document["median_ready_idle_gap_fraction"]]


def test_fewer_than_five_runs_is_refused(ready_idle: ModuleType, tmp_path: Path) -> None:
    import run as front_door

    with pytest.raises(SystemExit):
        front_door.main(["ready_idle", "--runs", "3", "--out", str(tmp_path / "ready_idle.json")])
    assert not (tmp_path / "ready_idle.json").exists()
