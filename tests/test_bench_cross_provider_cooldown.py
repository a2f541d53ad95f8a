"""bench/cross_provider_cooldown.py: a tiny run of every mode completes, its harness report has its target, nothing leaks.

``bench/`` is not a package: its directory goes on ``sys.path`` (as running ``bench/run.py`` does). No timing
assertions.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))


import cross_provider_cooldown as bench  # noqa: E402

TINY = bench.Params(workers=4, cap=3, latency_ms=2.0, warmup_s=0.2, window_s=0.3)
MARKERS = (bench.FEEDER_THREAD_PREFIX, "threadsched-mock-provider", "bench-xp-")


def _bench_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.is_alive() and any(m in t.name for m in MARKERS)]


@pytest.fixture(scope="module")
def tiny_samples() -> list[dict[str, Any]]:
    return [bench.run_mode(TINY, mode) for mode in bench.MODES]


def test_every_mode_runs_and_reports_its_evidence(tiny_samples: list[dict[str, Any]]) -> None:
    assert [s["mode"] for s in tiny_samples] == list(bench.MODES)
    for sample in tiny_samples:
        assert sample["b_tasks_per_s"] > 0 and sample["shutdown_clean"], sample
        assert set(sample["request_waits_started"]) == {"A", "B"}
        assert sample["server_stats"]["B"]["rate_limited"] == 0
    alone = tiny_samples[bench.MODES.index("b_alone")]
    assert alone["a_tasks_per_s"] == 0 and alone["server_stats"]["A"]["requests"] == 0
    assert alone["workers_leased_to_a_mean"] == 0
    with pytest.raises(ValueError, match="mode must be one of"):
        bench.run_mode(TINY, "nope")


def test_no_bench_thread_outlives_a_run(tiny_samples: list[dict[str, Any]]) -> None:
    for thread in _bench_threads():
        thread.join(10.0)
    assert not _bench_threads()


def test_harness_report_compares_b_with_b_alone(tiny_samples: list[dict[str, Any]]) -> None:
    by_mode = {sample["mode"]: sample for sample in tiny_samples}
    by_impl = {
        impl: {metric: {"p50": by_mode[mode][metric]} for metric in ("b_tasks_per_s", "b_tasks_per_s_onset")}
        for impl, mode in bench.IMPL_MODES.items()
    }
    section, targets = bench.report(by_impl, TINY)
    alone = by_mode["b_alone"]["b_tasks_per_s"]
    assert section["b_throughput_ratio_vs_alone"] == {
        "threadsched": by_mode["strict"]["b_tasks_per_s"] / alone,
        "threadsched[provider_aware]": by_mode["provider_aware"]["b_tasks_per_s"] / alone,
    }
    assert [entry["name"] for entry in targets] == ["provider_aware_b_throughput_at_least_90pct_of_b_alone"]
    assert targets[0]["value"] == section["b_throughput_ratio_vs_alone"]["threadsched[provider_aware]"]
    with pytest.raises(ValueError, match="unknown implementation"):
        bench.run_sample("fifo", TINY, 0)
