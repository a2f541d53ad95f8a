"""bench/engine.py: a tiny run of both measurements through the front door writes medians, ratios and the
headline; the column-by-column baseline writes the engine's output (no timing assertions)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import engine  # noqa: E402
import run as front_door  # noqa: E402


def test_a_tiny_run_writes_both_measurements(tmp_path: Path) -> None:
    argv = ["engine", "--records", "40", "--noop-tasks", "200", "--pipeline-records", "20", "--results-dir", str(tmp_path)]
    assert front_door.main(argv) == 0
    document = json.loads((tmp_path / "engine.json").read_text())
    overhead, pipeline = document["overhead"], document["pipeline"]
    assert overhead["records"] == 40 and overhead["noop_tasks"] == 200 and 0 < overhead["rows_written"] <= 40
    assert overhead["engine"]["per_cell"]["runs"] == 5 and overhead["bare_scheduler"]["per_task"]["runs"] == 5
    ratio = overhead["engine"]["per_cell"]["median"] / overhead["bare_scheduler"]["per_task"]["median"]
    assert overhead["ratio_engine_per_cell_over_bare_per_task"] == ratio
    assert set(pipeline["results"]) == {"engine", "column_baseline", "column_baseline_nolim"}
    speedup = pipeline["results"]["column_baseline"]["wall"]["median"] / pipeline["results"]["engine"]["wall"]["median"]
    assert pipeline["speedup_engine_vs_column_baseline"] == speedup
    assert [row["value"] for row in document["headline"]] == [ratio, speedup]
    assert [row["higher_is_better"] for row in document["headline"]] == [False, True]
    assert document["meets_target"] == all(row["meets_target"] for row in document["headline"])


def test_the_demo_recipe_variants() -> None:
    zero = engine.demo_recipe(30, zero_latency=True)
    assert zero.run.records == 30
    assert not any(provider.latency_ms or provider.failure_rate for provider in zero.providers.values())
    shipped = engine.demo_recipe()
    assert shipped.run.records == 200 and any(provider.latency_ms for provider in shipped.providers.values())
