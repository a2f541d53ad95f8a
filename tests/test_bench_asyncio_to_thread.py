"""bench/asyncio_to_thread.py: a tiny run completes, leaves no pool thread behind and writes its document.

No timing assertions: only the document's shape and the run's bookkeeping are checked."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(autouse=True)
def bench_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))


def _bench_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.is_alive() and t.name.startswith("bench-")]


def test_a_tiny_run_writes_both_implementations_and_the_ratio(tmp_path: Path) -> None:
    import run as front_door

    out = tmp_path / "att.json"
    argv = ["--calls", "250", "--batch", "100", "--workers", "2", "--runs", "5", "--out", str(out)]
    assert front_door.main(["asyncio_to_thread", *argv]) == 0
    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["benchmark"] == "asyncio_to_thread" and "machine" in document
    assert set(document["results"]) == {"leased", "threadpool"}
    for name in ("leased", "threadpool"):
        assert set(document["results"][name]) == {"wall", "cpu", "construct", "shutdown"}
        assert document["results"][name]["wall"]["runs"] == 5
    assert document["ratio_leased_over_threadpool"] > 0 and document["cpu_ratio_leased_over_threadpool"] > 0
    assert document["target"] == {"ratio_max": 1.5}
    assert (document["calls"], document["batch"], document["workers"], document["runs"]) == (250, 100, 2, 5)
    assert document["meets_target"] == (document["ratio_leased_over_threadpool"] <= 1.5)
    assert [row["value"] for row in document["headline"]] == [document["ratio_leased_over_threadpool"]]
    assert _bench_threads() == []  # asyncio.run shut each default executor down and joined its threads


def test_quick_defaults_and_argument_checks(tmp_path: Path) -> None:
    import asyncio_to_thread
    import run as front_door

    assert (asyncio_to_thread.DEFAULT_CALLS, asyncio_to_thread.DEFAULT_BATCH) == (20_000, 1_000)
    assert asyncio_to_thread.QUICK_CALLS < asyncio_to_thread.DEFAULT_CALLS
    with pytest.raises(SystemExit):
        front_door.main(["asyncio_to_thread", "--runs", "2", "--out", str(tmp_path / "x.json")])  # medians need >= 5 runs
    with pytest.raises(SystemExit):
        front_door.main(["asyncio_to_thread", "--batch", "0", "--out", str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()
