"""report.requests: request metrics per resource and per task group, request series, the report end to end."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from support import JUDGE, WRITER, Log, RequestLog, request_scenario

from threadsched.report import write_report
from threadsched.report.intervals import ordered
from threadsched.report.metrics import compute_metrics
from threadsched.report.requests import (
    RequestResourceMetrics,
    limit_points,
    request_metrics,
    request_resource,
    request_waits,
    task_group_of,
)
from threadsched.report.series import StepSeries, level_series
from threadsched.report.stats import WaitStats
from threadsched.report.timeline import RequestSeries, build_timeline


def resources_by_name() -> dict[str, RequestResourceMetrics]:
    requests = compute_metrics(request_scenario()).requests
    assert requests is not None
    return {resource.resource: resource for resource in requests.resources}


def test_writer_attempts_outcomes_waits_holds_and_limit_changes() -> None:
    writer = resources_by_name()[WRITER]
    assert (writer.attempts, dict(writer.outcomes), writer.queued, dict(writer.gave_up)) == (
        3,
        {"rate_limited": 1, "success": 2},
        1,
        {},
    )
    assert (writer.wait, writer.wait_seconds) == (WaitStats(3, 0.0, 0.2), 0.2)
    assert writer.hold == WaitStats(3, 0.5, 0.6)
    limits = (writer.first_limit, writer.min_limit, writer.final_limit, writer.decreases, writer.increases)
    assert limits == (2, 1, 2, 1, 1)
    assert writer.max_in_flight == 2


def test_judge_wait_paired_with_its_start_and_a_wait_that_gave_up() -> None:
    judge = resources_by_name()[JUDGE]
    assert (judge.attempts, dict(judge.outcomes), judge.queued, dict(judge.gave_up)) == (
        1,
        {"provider_failure": 1},
        2,
        {"timeout": 1},
    )
    assert (judge.wait, judge.wait_seconds) == (WaitStats(2, 0.25, 0.5), 0.75)  # 1.0 → 1.25, then the timeout's 0.5
    assert judge.hold == WaitStats(1, 0.5, 0.5)
    assert (judge.first_limit, judge.min_limit, judge.final_limit, judge.decreases, judge.increases) == (4, 4, 4, 0, 0)
    assert judge.max_in_flight == 1


def test_groups_join_task_lease_waits_with_request_waits() -> None:
    requests = compute_metrics(request_scenario()).requests
    assert requests is not None and requests.attempts == 4
    rows = {group.group: group for group in requests.groups}
    assert list(rows) == ["q", "s"]
    q, s = rows["q"], rows["s"]
    assert (q.task_leases, q.task_wait, q.task_wait_seconds) == (2, WaitStats(2, 0.0, 0.5), 0.5)
    assert (q.attempts, q.queued, q.request_wait, q.request_wait_seconds) == (3, 1, WaitStats(3, 0.0, 0.2), 0.2)
    assert (s.task_leases, s.task_wait, s.task_wait_seconds) == (1, WaitStats(1, 0.0, 0.0), 0.0)
    assert (s.attempts, s.queued, s.request_wait, s.request_wait_seconds) == (1, 2, WaitStats(2, 0.25, 0.5), 0.75)


def test_task_group_is_the_tasks_scheduler_group_then_the_column_then_the_request_group() -> None:
    task_groups = {"t1": "q"}
    assert task_group_of({"task_id": "t1", "group": "default", "correlation": {"column": "x"}}, task_groups) == "q"
    assert task_group_of({"group": "default", "correlation": {"task_id": "t9", "column": "x"}}, task_groups) == "x"
    assert task_group_of({"group": "default"}, task_groups) == "default"
    assert task_group_of({}, task_groups) == "-"


def test_a_request_group_without_scheduler_tasks_has_no_task_wait() -> None:
    log = RequestLog()
    log.add("request_lease_acquired", 0.0, stream="requests", resources={WRITER: 1}, group="solo", lease_id=1)
    requests = request_metrics(ordered(log.events))
    assert requests is not None
    (group,) = requests.groups
    assert (group.group, group.task_leases, group.task_wait, group.attempts, group.request_wait) == (
        "solo",
        0,
        WaitStats(0, 0.0, 0.0),
        1,
        WaitStats(1, 0.0, 0.0),
    )


def test_no_request_events_means_no_request_metrics() -> None:
    log = Log()
    log.ready("t1", "a", 0.0)
    log.lease("t1", "a", 1, 0.0)
    log.add("request_lease_acquired", 0.5, lease_id=7, resources={WRITER: 1})  # scheduler stream: not a request
    assert compute_metrics(log.events).requests is None
    assert request_metrics([]) is None


def test_tolerates_missing_keys() -> None:
    events: list[dict[str, Any]] = [
        {"kind": "request_lease_acquired", "stream": "requests", "captured_at": 0.0},
        {"kind": "request_lease_released", "stream": "requests", "captured_at": 1.0, "diagnostics": {"held_s": "x"}},
        {"kind": "request_limit_decreased", "stream": "requests", "captured_at": 1.0, "diagnostics": {"after": 1}},
        {"kind": "request_wait_completed", "stream": "requests", "captured_at": 2.0, "reason": "shutdown"},
        {"kind": "model_request_completed", "stream": "requests", "captured_at": 2.0, "diagnostics": {"resource": JUDGE}},
    ]
    requests = request_metrics(ordered(events))
    assert requests is not None
    unnamed, judge = requests.resources
    assert (unnamed.resource, unnamed.attempts, dict(unnamed.outcomes), dict(unnamed.gave_up)) == (
        "-",
        1,
        {"unknown": 1},
        {"shutdown": 1},
    )
    assert (unnamed.wait, unnamed.hold, unnamed.min_limit, unnamed.decreases) == (
        WaitStats(2, 0.0, 0.0),
        WaitStats(0, 0.0, 0.0),
        1,
        1,
    )
    assert (judge.resource, judge.attempts, judge.first_limit) == (JUDGE, 0, None)


def test_helpers_read_resources_limits_and_pair_waits() -> None:
    assert request_resource({"resources": {WRITER: 1}}) == WRITER
    assert request_resource({"diagnostics": {"resource": JUDGE}}) == JUDGE
    assert limit_points({"kind": "request_limit_increased", "diagnostics": {"before": 1, "after": 2, "limit": 9}}) == [1, 2]
    assert limit_points({"kind": "request_lease_released", "diagnostics": {"limit": 3, "before": 9}}) == [3]
    started = {
        "kind": "request_wait_started",
        "captured_at": 1.0,
        "resources": {WRITER: 1},
        "execution_id": "e",
        "correlation": {},
    }
    other = {**started, "execution_id": "f", "captured_at": 1.5}
    lease = {**started, "kind": "request_lease_acquired", "captured_at": 3.0}
    assert [waited for _, waited in request_waits([started, other, lease])] == [None, None, 2.0]


def test_level_series_keeps_changes_only() -> None:
    points = [(0.5, 2.0), (0.5, 3.0), (1.0, 3.0), (2.0, 1.0), (2.0, 3.0), (2.5, 4.0)]
    assert level_series("r", points, span=3.0) == StepSeries("r", (0.5, 2.5, 3.0), (3.0, 4.0, 4.0))
    assert level_series("r", [], span=3.0) == StepSeries("r", (), ())


def test_timeline_request_series_per_resource() -> None:
    timeline = build_timeline(request_scenario())
    judge, writer = timeline.requests
    assert writer == RequestSeries(
        WRITER,
        limit=StepSeries(WRITER, (0.1, 0.7, 1.5, 2.5), (2.0, 1.0, 2.0, 2.0)),
        in_flight=StepSeries(WRITER, (0.0, 0.1, 0.6, 0.7, 1.0, 1.5, 2.5), (0.0, 1.0, 2.0, 1.0, 1.0, 0.0, 0.0)),
        rate_limited=(0.7,),
    )
    assert (judge.resource, judge.limit.values, judge.rate_limited) == (JUDGE, (4.0, 4.0), ())
    assert [judge.in_flight.at(at) for at in (1.0, 1.25, 1.75)] == [0.0, 1.0, 0.0]
    assert build_timeline(Log().events).requests == ()


def test_end_to_end_http_run_reports_model_requests(tmp_path: Path) -> None:
    pytest.importorskip("httpx")
    from threadsched.engine import parse_recipe
    from threadsched.engine.runner import run_recipe
    from threadsched.mock.server import MockOpenAIServer

    example = Path(__file__).resolve().parent.parent / "examples" / "http_mock.toml"
    with MockOpenAIServer(port=0, rps=50, burst=4, latency_ms=40, seed=3) as server:
        text = example.read_text(encoding="utf-8").replace("http://127.0.0.1:8765", server.url)
        text = re.sub(
            r"(?m)^records = .*$", "records = 12", text.replace("max_parallel_requests = 4", "max_parallel_requests = 8")
        )
        run_recipe(parse_recipe(text), tmp_path, event_log=True)
    result = write_report(tmp_path)
    requests = result.metrics.requests
    assert requests is not None
    assert [resource.resource for resource in requests.resources] == ["local/judge:chat", "local/writer:chat"]
    for resource in requests.resources:
        assert resource.attempts > 0 and sum(resource.outcomes.values()) == resource.attempts  # every lease released
        assert resource.wait.count >= resource.attempts
    assert [group.group for group in requests.groups] == ["answer", "question", "score"]
    assert all(group.task_leases > 0 and group.attempts > 0 for group in requests.groups)
    assert result.metrics.hidden_waiters == 0
    text = result.markdown_path.read_text(encoding="utf-8")
    assert text.index("## Groups") < text.index("## Model requests") < text.index("## Evidence")
    assert "| `local/judge:chat` |" in text and "| `local/writer:chat` |" in text
    assert "### Task lease wait vs request wait" in text
    assert re.search(r"(?m)^\| question \| \d+ \| ", text)
