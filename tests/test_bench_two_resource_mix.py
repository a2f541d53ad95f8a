"""bench/two_resource_mix.py: a tiny run completes, its numbers are consistent, its harness report has its target.

``bench/`` is not a package: its directory goes on ``sys.path`` (as running ``bench/run.py`` does). No test
asserts on timing or on the fairness target.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))


import two_resource_mix as bench_drf  # noqa: E402

TINY = bench_drf.Params(warmup_s=0.05, window_s=0.2, backlog=16)


@pytest.fixture(scope="module")
def tiny_samples() -> list[dict[str, Any]]:
    return [bench_drf.run_once(TINY, name, run=0) for name in bench_drf.POLICIES]


def test_tiny_runs_are_consistent(tiny_samples: list[dict[str, Any]]) -> None:
    limits = TINY.limits
    for sample in tiny_samples:
        assert sample["shutdown_clean"]
        assert sample["lease_events"] > 0
        assert sum(sample["completed"].values()) > 0
        assert 0.0 < sample["share_a"] <= 1.0 and 0.0 < sample["share_b"] <= 1.0
        assert sample["ratio"] == pytest.approx(sample["share_b"] / sample["share_a"])
        assert sample["relative_error"] == pytest.approx(abs(sample["ratio"] / TINY.target_ratio - 1))
        for leased in sample["leased"].values():  # time averages never exceed a hard limit
            for resource, average in leased.items():
                assert 0.0 <= average <= limits[resource] + 1e-9


def test_integrate_replays_leases_as_a_step_function() -> None:
    limits = {"cpu": 10, "mem": 10, "submission": 4}
    rows = [
        (1, 0.0, "task_lease_acquired", "A", {"cpu": 2, "mem": 5, "submission": 1}),
        (2, 1.0, "task_lease_acquired", "B", {"cpu": 4, "submission": 1}),
        (3, 2.0, "task_lease_released", "A", {"cpu": 2, "mem": 5, "submission": 1}),
        (4, 3.0, "task_lease_released", "B", {"cpu": 4, "submission": 1}),
    ]
    result = bench_drf.integrate(rows, limits, ("A", "B"), 1.0, 3.0)
    assert result["A"]["dominant_share"] == pytest.approx(0.5 * 1 / 2)  # 0.5 for one of the two seconds
    assert result["B"]["dominant_share"] == pytest.approx(0.4)
    assert result["A"]["leased"]["mem"] == pytest.approx(2.5)


def test_harness_samples_and_report_carry_the_shares_and_the_target() -> None:
    samples = [bench_drf.run_sample(impl, TINY, 0) for impl in bench_drf.IMPLS]
    assert [sample.implementation for sample in samples] == ["threadsched", "threadsched[drf]"]
    for sample in samples:
        assert sample.metrics["shutdown_clean"] == 1 and sample.metrics["lease_events"] > 0
        assert 0.0 < sample.metrics["dominant_share_A"] <= 1.0
    by_impl = {s.implementation: {m: {"p50": v} for m, v in s.metrics.items() if m != "output_hash"} for s in samples}
    section, targets = bench_drf.report(by_impl, TINY)
    assert section["target_share_ratio_B_over_A"] == 2.0 and set(section["per_implementation"]) == set(bench_drf.IMPLS)
    assert [entry["name"] for entry in targets] == ["drf_dominant_shares_within_10pct_of_weights"]
    assert targets[0]["value"] == samples[1].metrics["share_ratio_error"]
    with pytest.raises(ValueError, match="unknown implementation"):
        bench_drf.run_sample("fifo", TINY, 0)
