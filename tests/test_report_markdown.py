"""report.markdown: facts, the group table, evidence rows, plot link or skip note."""

from __future__ import annotations

from support import Log, request_scenario, scenario

from threadsched.report.markdown import MAX_ROW_GROUP_ROWS, ReportContext, render_markdown
from threadsched.report.metrics import compute_metrics

RUN_JSON = {
    "records": 10,
    "rows_written": 8,
    "rows_dropped": 2,
    "dropped": {"3": "secret-ish reason text", "7": "another reason"},
    "mode": "scheduled",
    "elapsed": 4.25,
    "output_hash": "f00d",
}


def test_scenario_report_has_facts_table_evidence_and_image() -> None:
    text = render_markdown(compute_metrics(scenario()), ReportContext(run=RUN_JSON, timeline_image="timeline.png"))
    assert text.startswith("# threadsched run report — r1\n")
    for fact in (
        "- Run id: `r1`",
        "- Recipe hash: `abc123`",
        "- Workers: 2\n",
        "- Resource limits: `llm` = 4",
        "- Rows: 8 written, 2 dropped of 10 requested",
        "- Mode: scheduled",
        "- Elapsed (s): 4.250",
    ):
        assert fact in text
    assert "secret-ish reason text" not in text  # drop reasons stay in run.json
    assert "| group | tasks | attempts | leases | queue wait p50 ms | queue wait p95 ms |" in text
    assert "| a | 4 | 4 | 4 | 0.0 | 500.0 | 0.0 | 0.0 | 0.0 | 500.0 |" in text
    assert "| b | 1 | 1 | 1 | 250.0 | 250.0 | 1750.0 | 1750.0 | 2000.0 | 2000.0 |" in text
    assert "| Ready-idle gap | 0.500 s (12.5% of the 4.000 s span) |" in text
    assert "| Capacity `submission` | 7.500 lease-s, peak 2, limit 2, utilisation 93.8% |" in text
    assert "| Capacity `llm` | 2.000 lease-s, peak 2, limit 4, utilisation 12.5% |" in text
    assert "| Root over-admission | 2 root leases (3.500 lease-s) while downstream work waited" in text
    assert "| Hidden waiters | 0 (must be 0) |" in text
    assert "| Unreleased leases | 0 |" in text
    assert "| Task outcomes | succeeded 5 |" in text
    assert "| Retries | 0 scheduler, 0 engine |" in text
    assert "| 0 | 0.000 | 3.500 | 3.500 | 2 |" in text
    assert "| 1 | 1.000 | (open) | 3.000 | - |" in text
    assert "![timeline](timeline.png)" in text
    assert "## How to read this" in text
    assert "## Model requests" not in text  # no request events


def test_model_requests_section_follows_the_groups_table() -> None:
    text = render_markdown(compute_metrics(request_scenario()), ReportContext(timeline_image="timeline.png"))
    assert text.index("## Groups") < text.index("## Model requests") < text.index("## Evidence")
    assert "4 model request attempts on 2 request resources; 3 queued for a request permit." in text
    assert (
        "| `p/judge:chat` | 1 | provider_failure 1 | 2 | 250.0 | 500.0 | 0.750 | 500.0 | 500.0 | 4 → 4 → 4 | 0 | 0 | 1 |" in text
    )
    assert (
        "| `p/writer:chat` | 3 | rate_limited 1, success 2 | 1 | 0.0 | 200.0 | 0.200 | 500.0 | 600.0 | 2 → 1 → 2 | 1 | 1 | 2 |"
        in text
    )
    assert "Waits that ended without a permit: `p/judge:chat` timeout 1." in text
    assert "### Task lease wait vs request wait" in text
    assert "| q | 2 | 0.0 | 500.0 | 0.500 | 3 | 1 | 0.0 | 200.0 | 0.200 |" in text
    assert "| s | 1 | 0.0 | 0.0 | 0.000 | 1 | 2 | 250.0 | 500.0 | 0.750 |" in text
    assert "which must be 0 (here 0)" in text
    assert "the fourth panel shows per request resource the adaptive limit" in text
    without_image = render_markdown(compute_metrics(request_scenario()))
    assert "## Model requests" in without_image and "the fourth panel" not in without_image


def test_violations_are_called_out() -> None:
    log = Log()
    log.add("worker_spawned", 0.0, task_id="t1", lease_id=1)
    log.add("task_lease_acquired", 0.5, task_id="t1", lease_id=1)
    log.add("queue_empty", 1.0)
    text = render_markdown(compute_metrics(log.events))
    assert "- Recipe hash: unknown" in text
    assert "| Hidden waiters | 1 — **violation: must be 0** |" in text
    assert "| Unreleased leases | 1 — **lease ids 1** |" in text
    assert "- Workers: 1 (inferred: peak concurrent leases)" in text
    assert "| Root over-admission | n/a (no `dependency_ready` events) |" in text


def test_no_image_says_why_and_no_events_is_still_a_report() -> None:
    text = render_markdown(compute_metrics([]), ReportContext(plot_note="matplotlib is not installed"))
    assert "![timeline]" not in text
    assert "_Timeline plot skipped: matplotlib is not installed._" in text
    assert "No scheduler tasks in the events." in text
    assert "- Run id: unknown" in text
    assert "## Row groups" not in text


def test_capacity_plan_is_summarised_not_dumped() -> None:
    plan = {"workers": 8, "limits": {"llm:a": 4, "llm:b": 2}, "notes": ["x"] * 500, "why": "a|b"}
    text = render_markdown(compute_metrics([]), ReportContext(capacity_plan=plan))
    assert "## Capacity plan" in text
    assert "- workers: 8" in text
    assert "- limits: llm:a = 4, llm:b = 2" in text
    assert "- notes: (list of 500)" in text
    assert "- why: a\\|b" in text


def test_long_row_group_lists_are_truncated() -> None:
    log = Log()
    for row_group in range(MAX_ROW_GROUP_ROWS + 5):
        log.engine("row_group_admitted", float(row_group), correlation={"row_group": row_group})
        log.engine("row_group_checkpointed", row_group + 0.5, correlation={"row_group": row_group})
    text = render_markdown(compute_metrics(log.events))
    assert f"{MAX_ROW_GROUP_ROWS + 5} row groups, {MAX_ROW_GROUP_ROWS + 5} checkpointed" in text
    assert "| … 5 more | | | | |" in text
