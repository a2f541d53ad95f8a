"""bench/policy_bounded_borrow.py: a tiny zero-latency run of both policies (no timing assertions)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import policy_bounded_borrow as bench  # noqa: E402


def test_quick_run_writes_both_policies_with_equal_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "result.json"
    argv = ["--quick", "--no-warmup", "--runs", "5", "--records", "20", "--latency-ms", "0", "--jitter-ms", "0"]
    result = bench.main([*argv, "--out", str(out)])
    document = json.loads(out.read_text())
    assert document["benchmark"] == "policy_bounded_borrow"
    assert document["scenario"] == "heavy_root"
    assert document["knobs"]["records"] == 20
    assert document["knobs"]["workers"] == bench.QUICK["workers"]
    assert set(document["medians"]) == {"strict", "bounded_borrow"}
    for policy in bench.POLICIES:
        assert len(document["samples"][policy]) == 5
        assert set(document["medians"][policy]) == set(bench.METRICS)
        for sample in document["samples"][policy]:
            assert sample["rows_written"] == 20
            assert sample["first_row_s"] >= 0
    assert set(result["ratios"]) == {"gap_p95_strict_over_borrow", "first_row_strict_over_borrow", "wall_borrow_over_strict"}
    checks = document["checks"]
    assert checks["same_output"] and checks["no_hidden_waiters"] and checks["no_leases_left"]
    assert "bounded_borrow" in capsys.readouterr().out


def test_knobs_and_arguments() -> None:
    knobs = bench.knobs_for(quick=False, overrides={"workers": 3, "limits": {"heavy/drafter": 5}})
    assert knobs.workers == 3
    assert dict(knobs.limits) == {"heavy/drafter": 5, "fast/tagger": 8}
    assert knobs.row_groups_in_flight == bench.DEFAULTS["row_groups_in_flight"]
    with pytest.raises(SystemExit):
        bench.main(["--runs", "2"])  # medians need at least 5 runs
    with pytest.raises(SystemExit):
        bench.parse_args(["--limit", "nonsense"])
