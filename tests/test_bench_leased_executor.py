"""bench/leased_executor.py: a tiny run completes and writes its document (no timing assertions)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(autouse=True)
def bench_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))


def test_a_tiny_run_writes_both_implementations_and_the_ratio(tmp_path: Path) -> None:
    sys.modules.pop("leased_executor", None)
    import leased_executor

    out = tmp_path / "le.json"
    payload = leased_executor.main(["--tasks", "300", "--workers", "2", "--runs", "5", "--out", str(out)])
    document = json.loads(out.read_text(encoding="utf-8"))
    assert set(payload["results"]) == {"leased", "threadpool"} == set(document["results"])
    assert payload["ratio_leased_over_threadpool"] > 0 and payload["target"]["ratio_max"] == 2.0
    assert document["tasks"] == 300 and document["runs"] == 5
