"""bench/policy_drf.py: a tiny run completes, its numbers are consistent, its JSON has the expected keys.

``bench/`` is not a package: its directory goes on ``sys.path`` (as ``python bench/policy_drf.py`` does) so
that the script's ``from common import ...`` works. No test asserts on timing or on the fairness target.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_policy_drf", BENCH / "policy_drf.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


bench_drf = _load()
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


def test_summary_document_has_targets_and_verdict(tiny_samples: list[dict[str, Any]]) -> None:
    payload = bench_drf.summarize_runs(TINY, tiny_samples, quick=True)
    for key in ("description", "quick", "runs", "params", "target", "policies", "meets_target", "samples"):
        assert key in payload, key
    assert payload["target"] == {"ratio": 2.0, "relative_error_max": 0.1, "policy": "drf"}
    assert set(payload["policies"]) == {"drf", "strict"}
    assert payload["meets_target"] == payload["policies"]["drf"]["within_target"]
    json.dumps(payload)


def test_main_writes_the_json_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "policy_drf.json"
    payload = bench_drf.main(["--warmup", "0.02", "--window", "0.05", "--out", str(out)])
    document = json.loads(out.read_text())
    assert document["benchmark"] == "policy_drf" and "machine" in document
    assert document["runs"] == 5 and len(document["samples"]) == 10
    assert document["meets_target"] == payload["meets_target"]
    assert "B/A (median)" in capsys.readouterr().out


def test_main_refuses_fewer_than_five_runs(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        bench_drf.main(["--runs", "1", "--out", str(tmp_path / "policy_drf.json")])
    assert not (tmp_path / "policy_drf.json").exists()
