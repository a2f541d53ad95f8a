"""report.write_report: files in OUT, optional inputs, missing inputs, no matplotlib, a real run end to end."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from support import scenario

from threadsched import MemoryEventSink, Scheduler
from threadsched.report import ReportResult, last_run, load_events, write_report
from threadsched.report.evidence import hidden_waiters

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def write_jsonl(path: Path, events: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(event) + "\n" for event in events), encoding="utf-8")


def test_write_report_from_given_events(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    result = write_report(tmp_path / "out", events=scenario())
    assert isinstance(result, ReportResult)
    assert result.markdown_path == tmp_path / "out" / "report.md"
    assert result.timeline_path == tmp_path / "out" / "timeline.png"
    assert result.timeline_path.read_bytes().startswith(PNG_SIGNATURE)
    assert (result.metrics.hidden_waiters, result.metrics.ready_idle_gap_seconds) == (0, 0.5)
    text = result.markdown_path.read_text(encoding="utf-8")
    assert "![timeline](timeline.png)" in text
    assert "| a | 4 | 4 | 4 |" in text


def test_write_report_reads_events_run_json_and_capacity_plan_from_out(tmp_path: Path) -> None:
    events = [event for event in scenario() if event["kind"] != "scheduler_job_started"]
    write_jsonl(tmp_path / "events.jsonl", events)
    run = {"capacity": {"workers": 3, "resource_limits": {"llm": 8}}, "rows_written": 4, "rows_dropped": 0}
    (tmp_path / "run.json").write_text(json.dumps(run), encoding="utf-8")
    (tmp_path / "capacity_plan.json").write_text(json.dumps({"workers": 3, "bottleneck": "llm"}), encoding="utf-8")
    result = write_report(tmp_path)
    assert (result.metrics.workers, result.metrics.workers_inferred, dict(result.metrics.resource_limits)) == (
        3,
        False,
        {"llm": 8},
    )
    assert result.metrics.events == len(events)
    text = result.markdown_path.read_text(encoding="utf-8")
    assert "- Rows: 4 written, 0 dropped" in text
    assert "- bottleneck: llm" in text


def test_unreadable_optional_files_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "capacity_plan.json").write_text("[1, 2]", encoding="utf-8")
    result = write_report(tmp_path, events=[])
    assert result.timeline_path is None
    text = result.markdown_path.read_text(encoding="utf-8")
    assert "_Timeline plot skipped: no events._" in text
    assert "## Capacity plan" not in text


def test_missing_events_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "events.jsonl"))):
        write_report(tmp_path)
    assert not (tmp_path / "report.md").exists()


def test_load_events_reads_rotated_backups_oldest_first(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write_jsonl(tmp_path / "events.jsonl.2", [{"kind": "oldest", "captured_at": 0.0}])
    write_jsonl(tmp_path / "events.jsonl.1", [{"kind": "older", "captured_at": 1.0}])
    write_jsonl(path, [{"kind": "newest", "captured_at": 2.0}])
    assert [event["kind"] for event in load_events(path)] == ["oldest", "older", "newest"]


def test_last_run_keeps_the_events_of_the_last_run_id() -> None:
    first = [{"kind": "a", "run_id": "r1"}, {"kind": "b", "run_id": "r1"}]
    second = [{"kind": "c", "run_id": "r2"}, {"kind": "d", "run_id": "r2"}]
    assert last_run(first + second) == second
    bare = [{"kind": "a"}, {"kind": "b", "run_id": None}]
    assert last_run(bare) == bare


def test_a_resumed_run_reports_only_its_own_events(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "events.jsonl", [{**event, "run_id": "old"} for event in scenario()])
    newer = [{**event, "run_id": "new"} for event in scenario()]
    with (tmp_path / "events.jsonl").open("a", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(event) + "\n" for event in newer))
    result = write_report(tmp_path)
    assert result.metrics.run_id == "new"
    assert result.metrics.events == len(newer)


def test_without_matplotlib_the_report_says_the_plot_was_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = write_report(tmp_path, events=scenario())
    assert result.timeline_path is None
    assert not (tmp_path / "timeline.png").exists()
    text = result.markdown_path.read_text(encoding="utf-8")
    assert "![timeline]" not in text
    assert "_Timeline plot skipped: matplotlib is not installed (install the plots extra" in text


def test_end_to_end_with_a_real_scheduler(tmp_path: Path) -> None:
    sink = MemoryEventSink()
    scheduler = Scheduler(max_workers=2, events=sink, name="report-e2e")
    try:
        futures = [scheduler.group(group).submit(pow, base, 2) for group in ("left", "right") for base in range(4)]
        assert [future.result(timeout=30) for future in futures] == [0, 1, 4, 9] * 2
    finally:
        report = scheduler.shutdown(wait=True)
    assert report.clean
    result = write_report(tmp_path, events=[event.to_dict() for event in sink.events])
    metrics = result.metrics
    assert metrics.hidden_waiters == hidden_waiters(sink.events) == 0
    assert metrics.unreleased_leases == ()
    assert {group.group: (group.tasks, group.leases) for group in metrics.groups} == {"left": (4, 4), "right": (4, 4)}
    assert metrics.task_outcomes == {"succeeded": 8}
    text = result.markdown_path.read_text(encoding="utf-8")
    assert "| group | tasks | attempts | leases |" in text
    assert "| left | 4 | 4 | 4 |" in text and "| right | 4 | 4 | 4 |" in text
    assert "| Hidden waiters | 0 (must be 0) |" in text
    if HAVE_MATPLOTLIB:
        assert result.timeline_path == tmp_path / "timeline.png"
        assert result.timeline_path.read_bytes().startswith(PNG_SIGNATURE)
    else:
        assert result.timeline_path is None
