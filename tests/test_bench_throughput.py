"""bench/throughput.py (benchmarks ``throughput`` and ``leased_executor``): tiny runs through the front door
write both implementations' medians and the ratio (no timing assertions)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(autouse=True)
def bench_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))


@pytest.mark.parametrize(
    ("name", "implementations", "phases"),
    [
        ("throughput", ("scheduler", "baseline"), {"wall", "cpu", "submit", "construct", "shutdown"}),
        ("leased_executor", ("leased", "threadpool"), {"wall", "cpu", "submit", "construct", "shutdown"}),
    ],
)
def test_a_tiny_run_writes_both_implementations_and_the_ratios(
    tmp_path: Path, name: str, implementations: tuple[str, str], phases: set[str]
) -> None:
    import run as front_door

    out = tmp_path / f"{name}.json"
    assert front_door.main([name, "--tasks", "300", "--workers", "2", "--runs", "5", "--out", str(out)]) == 0
    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["benchmark"] == name and "machine" in document
    assert set(document["results"]) == set(implementations)
    for impl in implementations:
        assert set(document["results"][impl]) == phases
        assert document["results"][impl]["wall"]["runs"] == 5
    candidate, baseline = implementations
    ratio = document[f"ratio_{candidate}_over_{baseline}"]
    assert ratio > 0 and document[f"cpu_ratio_{candidate}_over_{baseline}"] > 0
    assert ratio == document["results"][candidate]["wall"]["median"] / document["results"][baseline]["wall"]["median"]
    assert document["target"] == {"ratio_max": 2.0} and document["meets_target"] == (ratio <= 2.0)
    assert [row["value"] for row in document["headline"]] == [ratio]
    assert (document["tasks"], document["workers"], document["runs"]) == (300, 2, 5)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("bench-baseline")]


def test_quick_sizes_and_the_plain_pool_baseline(tmp_path: Path) -> None:
    import run as front_door
    import throughput

    assert throughput.DEFAULT_TASKS == 50_000
    assert throughput.QUICK_TASKS == {"throughput": 20_000, "leased_executor": 10_000}
    sample = throughput.run_baseline(50, 2)
    assert set(sample) == {"wall", "cpu", "submit", "construct", "shutdown"}
    with pytest.raises(SystemExit):
        front_door.main(["throughput", "--runs", "2", "--out", str(tmp_path / "t.json")])  # medians need >= 5 runs
    assert not (tmp_path / "t.json").exists()


def test_the_profiler_splits_the_cpu_by_thread_role(tmp_path: Path) -> None:
    import run as front_door

    assert front_door.main(["profile_throughput", "--tasks", "300", "--workers", "2", "--results-dir", str(tmp_path)]) == 0
    document = json.loads((tmp_path / "profile_throughput.json").read_text(encoding="utf-8"))
    assert document["implementation"] == "scheduler" and document["tasks"] == 300
    assert {"main", "dispatcher", "worker"} <= set(document["cpu_seconds_by_role"])
    assert document["timings_seconds"]["wall"] > 0
