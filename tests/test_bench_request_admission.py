"""bench/request_admission.py: a tiny run completes, its counts add up, its JSON has the expected keys, nothing leaks.

``bench/`` is not a package: its directory goes on ``sys.path`` (as ``python bench/run.py`` does), and the JSON
comes from the front door, ``run.main(["request_admission", ...])``. No test asserts on time: the server is
fast (R=200, 5 ms) and the run short, and only counts are checked.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))


import request_admission as bench_requests  # noqa: E402
import run as front_door  # noqa: E402

TINY = bench_requests.Params(rps=200.0, latency_ms=5.0, jitter_ms=1.0, warmup_s=0.3, window_s=0.5, snapshot_interval_s=0.05)
BENCH_THREAD_MARKERS = (bench_requests.CLIENT_THREAD_PREFIX, "threadsched-mock-provider")


def _bench_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.is_alive() and any(m in t.name for m in BENCH_THREAD_MARKERS)]


@pytest.fixture(scope="module")
def tiny_run() -> tuple[dict[str, Any], set[threading.Thread]]:
    before = set(threading.enumerate())
    sample = bench_requests.run_once(TINY, run=0)
    return sample, before


def test_params_resolve_the_documented_defaults() -> None:
    params = bench_requests.Params().resolved()
    assert (params.rps, params.latency_ms, params.jitter_ms) == (50.0, 200.0, 40.0)
    assert params.cap == 20  # 2 * R * L
    assert params.clients == params.cap + 4
    assert params.burst == 50  # = R, the server's default
    assert (params.warmup_s, params.window_s) == (3.0, 8.0)
    assert bench_requests.Params(rps=5.0, latency_ms=10.0).resolved().cap == 4  # at least 4
    config = params.admission_config()
    assert config.caps == {bench_requests.ProviderModelKey("mock", "bench-model"): 20}


def test_tiny_run_counts_add_up(tiny_run: tuple[dict[str, Any], set[threading.Thread]]) -> None:
    sample, _ = tiny_run
    server, events = sample["server_window"], sample["events_window"]
    in_flight_change = server["in_flight_end"] - server["in_flight_start"]
    assert server["attempts"] == server["ok"] + server["rate_limited"] + server["other"] + in_flight_change
    assert events["attempts"] == events["ok"] + events["rate_limited"] + events["other"]
    assert events["attempts"] == sum(events["by_outcome"].values())
    assert server["other"] == 0 and events["other"] == 0
    assert server["ok"] > 0 and events["ok"] > 0
    assert sample["throughput_rps"] >= 0
    assert sample["throughput_ratio"] == pytest.approx(sample["throughput_rps"] / TINY.rps)
    assert 0.0 <= sample["rate_limited_share"] <= 1.0
    assert sample["rate_limited_share"] == pytest.approx(server["rate_limited"] / server["attempts"])
    assert sample["client_window"]["calls_failed"] == 0
    # whole-run totals: every attempt the server saw was answered, and the controller got every lease back
    total = sample["server_total"]
    assert total["requests"] == total["ok"] + total["rate_limited"] + total["bad_requests"] + total["errors"]
    assert total["in_flight"] == 0
    final = sample["final_snapshot"]
    assert final["static_cap"] == TINY.resolved().cap
    assert 1 <= final["current_limit"] <= final["static_cap"]
    columns = sample["limit_timeline"]["columns"]
    assert columns == ["t_s", "limit", "in_flight", "waiters", "cooling"]
    assert sample["limit_timeline"]["rows"] and all(len(row) == len(columns) for row in sample["limit_timeline"]["rows"])


def test_tiny_run_leaves_no_thread_behind(tiny_run: tuple[dict[str, Any], set[threading.Thread]]) -> None:
    sample, before = tiny_run
    assert sample["threads_left"] == []
    assert _bench_threads() == []  # every client joined, the server's threads stopped
    assert not {t for t in threading.enumerate() if t.is_alive() and t.name.startswith("bench-")} - before


def test_summary_document_has_targets_and_verdict(tiny_run: tuple[dict[str, Any], set[threading.Thread]]) -> None:
    sample, _ = tiny_run
    payload = bench_requests.summarize_runs(TINY, [sample])
    for key in (
        "description",
        "quick",
        "runs",
        "params",
        "target",
        "throughput_rps",
        "throughput_ratio",
        "rate_limited_share",
        "final_limit",
        "median_throughput_ratio",
        "median_rate_limited_share",
        "meets_throughput_target",
        "meets_rate_limited_target",
        "meets_target",
        "samples",
    ):
        assert key in payload, key
    assert payload["target"] == {"throughput_ratio_min": 0.9, "rate_limited_share_max": 0.05}
    assert payload["median_throughput_ratio"] == sample["throughput_ratio"]
    assert payload["meets_target"] == (payload["meets_throughput_target"] and payload["meets_rate_limited_target"])
    assert payload["params"]["cap"] == TINY.resolved().cap
    json.dumps(payload)  # serialisable as is


def test_main_writes_the_json_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "requests.json"
    argv = ["--rps", "200", "--latency-ms", "5", "--jitter-ms", "1", "--warmup", "0.05", "--window", "0.1", "--out", str(out)]
    assert front_door.main(["request_admission", *argv]) == 0
    document = json.loads(out.read_text())
    assert document["benchmark"] == "request_admission" and "machine" in document
    assert document["runs"] == 5 and len(document["samples"]) == 5
    assert document["median_throughput_ratio"] == document["throughput_ratio"]["median"]
    assert [row["metric"].split(",")[0] for row in document["headline"]] == [
        "requests: throughput / R",
        "requests: 429s as % of attempts",
    ]
    assert "requests targets (medians)" in capsys.readouterr().out
    assert _bench_threads() == []


def test_main_refuses_fewer_than_five_runs(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        front_door.main(["request_admission", "--runs", "1", "--out", str(tmp_path / "requests.json")])
    assert not (tmp_path / "requests.json").exists()
