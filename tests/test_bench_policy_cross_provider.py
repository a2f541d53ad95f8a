"""bench/policy_cross_provider.py: a tiny run of every mode completes, its JSON has the expected keys, nothing leaks.

``bench/`` is not a package: its directory goes on ``sys.path`` (as running the script does) so that its
``from common import ...`` works; the script is loaded under a private module name. No timing assertions.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_policy_cross_provider", BENCH / "policy_cross_provider.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


bench = _load()
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


def test_summary_has_the_expected_keys(tiny_samples: list[dict[str, Any]]) -> None:
    payload = bench.summarize_runs(TINY, tiny_samples, quick=True)
    assert payload["scenario"] == "cross_provider_cooldown" and payload["quick"] is True
    assert set(payload["b_throughput_ratio_vs_alone"]) == {"strict", "provider_aware"}
    assert set(payload["b_throughput_ratio_vs_alone_onset"]) == {"strict", "provider_aware"}
    assert set(payload["summary"]) == set(bench.MODES)
    assert isinstance(payload["met"], bool)
    json.dumps(payload, default=str)


def test_main_quick_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "xp.json"
    payload = bench.main(
        ["--quick", "--workers", "4", "--cap", "3", "--latency-ms", "2", "--warmup", "0.2", "--window", "0.2", "--out", str(out)]
    )
    document = json.loads(out.read_text())
    assert document["benchmark"] == "policy_cross_provider"
    assert len(document["runs"]) == len(bench.MODES) == len(payload["runs"])
    assert "provider_aware B / B alone" in capsys.readouterr().out
