"""The capacity-plan section of report.md: the engine's plan as tables, any other plan as a list."""

from __future__ import annotations

from typing import Any

from threadsched.report import ReportContext, compute_metrics, render_markdown
from threadsched.report.capacity_section import MAX_PLAN_ENTRIES, capacity_plan_lines

ENGINE_PLAN: dict[str, Any] = {
    "schema_version": 1,
    "configured": {
        "buffer_size": {"value": 40, "source": "recipe"},
        "records": {"value": 200, "source": "cli"},
        "resource:llm:mock/fast": {"value": 4, "source": "recipe"},
    },
    "observed": {
        "max_row_groups_in_flight": 3,
        "max_queued_by_group": {"draft": 12, "judge": 5},
        "max_leased_by_resource": {"submission": 8, "llm:mock/fast": 4},
    },
    "final_admission": {
        "resource_limits": {"submission": 8, "llm:mock/fast": 4},
        "resources_available": {"submission": 8, "llm:mock/fast": 4},
        "leased_resources": {"submission": 0, "llm:mock/fast": 0},
        "active_lease_count": 0,
        "release_diagnostics": {},
    },
}


def test_configured_values_are_a_table_of_name_value_and_source() -> None:
    lines = capacity_plan_lines(ENGINE_PLAN)
    assert "| configured | value | source |" in lines
    assert "| buffer_size | 40 | recipe |" in lines
    assert "| records | 200 | cli |" in lines
    assert "| resource:llm:mock/fast | 4 | recipe |" in lines
    assert not any("dict of" in line for line in lines)


def test_observed_maxima_are_numbers_one_row_per_group_and_resource() -> None:
    lines = capacity_plan_lines(ENGINE_PLAN)
    assert "| max_row_groups_in_flight | 3 |" in lines
    assert "| max_queued_by_group[draft] | 12 |" in lines
    assert "| max_queued_by_group[judge] | 5 |" in lines
    assert "| max_leased_by_resource[llm:mock/fast] | 4 |" in lines


def test_final_admission_is_a_table_per_resource() -> None:
    lines = capacity_plan_lines(ENGINE_PLAN)
    assert "At the end: 0 active leases." in lines
    assert "| submission | 8 | 8 | 0 |" in lines
    assert not any(line.startswith("Release diagnostics") for line in lines)  # none to report


def test_the_written_plan_of_a_real_run_renders_without_containers(tmp_path: Any) -> None:
    from threadsched.core.scheduler import Scheduler
    from threadsched.engine.capacity import CapacityPlan, CapacityValue

    scheduler = Scheduler(2, resource_limits={"llm": 1}, name="capacity-section")
    try:
        scheduler.submit(int).result(timeout=30)
        plan = CapacityPlan.observe({"buffer_size": CapacityValue(10, "default")}, scheduler, 1)
    finally:
        scheduler.shutdown()
    text = render_markdown(compute_metrics([]), ReportContext(capacity_plan=plan.to_dict()))
    assert "| buffer_size | 10 | default |" in text
    assert "| max_leased_by_resource[submission] | 1 |" in text
    assert "| llm | 1 | 1 | 0 |" in text
    assert "dict of" not in text


def test_long_observed_lists_are_cut_with_a_pointer_to_the_file() -> None:
    many = {f"g{index}": index for index in range(MAX_PLAN_ENTRIES + 7)}
    lines = capacity_plan_lines({"observed": {"max_queued_by_group": many}})
    rows = [line for line in lines if line.startswith("| max_queued_by_group[")]
    assert len(rows) == MAX_PLAN_ENTRIES
    assert "| … 7 more in `capacity_plan.json` | |" in lines


def test_a_plan_of_another_shape_is_listed_key_by_key() -> None:
    lines = capacity_plan_lines({"workers": 8, "limits": {"llm:a": 4}, "notes": ["x"] * 500})
    assert lines == ["- workers: 8", "- limits: llm:a = 4", "- notes: (list of 500)"]
