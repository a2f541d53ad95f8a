"""bench/run.py, the benchmarks' front door: names, the suite (one interpreter per benchmark), the headline.

No test asserts on time: only that the documents are written, with medians, and that the headline says
whether each target was met.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import run as front_door  # noqa: E402


def test_every_name_is_a_benchmark_or_a_scenario_and_the_suite_is_known() -> None:
    from scenarios import SCENARIOS

    assert not set(front_door.BENCHMARKS) & set(SCENARIOS)
    assert set(front_door.SUITE) <= set(front_door.NAMES)
    assert {"throughput", "leased_executor", "asyncio_to_thread", "ready_idle", "profile_throughput"} <= set(
        front_door.BENCHMARKS
    )


def test_a_suite_runs_each_benchmark_in_its_own_interpreter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "all.json"
    assert front_door.main(["cycle", "memory", "--quick", "--results-dir", str(tmp_path), "--out", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["benchmark"] == "summary" and summary["quick"] is True and summary["runs"] == 5
    assert set(summary["results"]) == {"cycle", "memory"} == set(summary["durations_seconds"])
    assert summary["failures"] == {}
    cycle, memory = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("cycle", "memory"))
    assert summary["results"]["cycle"] == cycle and cycle["sizes"] == [2_000]
    assert all(entry["seconds_per_cycle"]["runs"] == 5 for entry in cycle["results"])
    assert memory["tasks"] == 20_000 and memory["results_bytes"]["shutdown_peak"]["runs"] == 5
    assert memory["clean_shutdowns"] == 5
    rows = summary["headline"]
    assert [row["metric"] for row in rows] == [row["metric"] for row in (*cycle["headline"], *memory["headline"])]
    for row in rows:
        assert row["meets_target"] == (row["value"] <= row["target"])  # both are lower-is-better
    assert summary["all_targets_met"] == all(row["meets_target"] for row in rows)
    assert "benchmark summary" in capsys.readouterr().out


def test_a_benchmark_that_crashes_is_a_failure_not_a_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(front_door, "suite_command", lambda *_args: [sys.executable, "-c", "raise SystemExit(3)"])
    assert front_door.main(["cycle", "memory", "--results-dir", str(tmp_path)]) == 2
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["failures"] == {"cycle": 3, "memory": 3} and summary["results"] == {}
    assert summary["all_targets_met"] is False


def test_the_headline_of_a_scenario_comes_from_its_ratios_targets_and_gates() -> None:
    summary = {
        "ratios": {"fifo": {"downstream_gap_p95_s": {"baseline_over_threadsched": 4.0}}},
        "targets": [
            {"name": "wall", "value": 1.2, "threshold": 1.05, "comparison": "<="},
            {"name": "unknown", "value": None, "threshold": 2.0, "comparison": ">="},
        ],
        "gates": [{"passed": True}, {"passed": False}],
    }
    rows = front_door.headline_rows({"heavy_root": summary})
    assert [(row["metric"], row["value"], row["meets_target"]) for row in rows] == [
        ("heavy_root: fifo / threadsched p95 downstream ready-to-lease gap", 4.0, True),
        ("heavy_root: wall", 1.2, False),
        ("heavy_root: gates passed (of 2)", 1.0, False),
    ]


def test_unknown_names_and_too_few_runs_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        front_door.main(["nonsense", "--quick"])
    assert raised.value.code == 2 and "nonsense" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        front_door.main(["--runs", "2"])
