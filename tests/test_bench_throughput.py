"""bench/throughput.py: a tiny run completes and writes its document (no timing assertions)."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(autouse=True)
def bench_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))


def test_a_tiny_run_writes_both_implementations_and_the_ratios(tmp_path: Path) -> None:
    sys.modules.pop("throughput", None)
    import throughput

    out = tmp_path / "throughput.json"
    payload = throughput.main(["--tasks", "300", "--workers", "2", "--runs", "5", "--out", str(out)])
    document = json.loads(out.read_text(encoding="utf-8"))
    assert set(payload["results"]) == {"scheduler", "baseline"} == set(document["results"])
    for name in ("scheduler", "baseline"):
        assert set(document["results"][name]) == {"wall", "cpu", "submit", "construct", "shutdown"}
        assert document["results"][name]["wall"]["runs"] == 5
    assert payload["ratio_scheduler_over_baseline"] > 0 and payload["cpu_ratio_scheduler_over_baseline"] > 0
    assert payload["target"] == {"ratio_max": 2.0}
    assert document["tasks"] == 300 and document["workers"] == 2 and document["runs"] == 5
    assert not [t.name for t in threading.enumerate() if t.name.startswith("bench-baseline")]


def test_the_baseline_is_the_plain_pool_without_a_gate() -> None:
    sys.modules.pop("throughput", None)
    import throughput

    assert throughput.DEFAULT_TASKS == 50_000
    sample = throughput.run_baseline(50, 2)
    assert set(sample) == {"wall", "cpu", "submit", "construct", "shutdown"}
    with pytest.raises(SystemExit):
        throughput.main(["--runs", "2"])  # medians need at least 5 runs
