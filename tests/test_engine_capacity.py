"""The capacity plan: configured values and their sources, observed high-water marks, the final
admission snapshot (OUT/capacity_plan.json), and ``RunSettings.given`` that the sources come from."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from support import GENEROUS, assert_healthy, no_sleep, small_recipe

from threadsched.engine import parse_recipe
from threadsched.engine.capacity import CAPACITY_SOURCES, CapacityValue, configured_capacity
from threadsched.engine.recipe import Recipe, RunSettings
from threadsched.engine.runner import run_recipe

LLM = "llm:mock/writer"


def recipe(run: str, *, latency_ms: int = 0, limit: int = 3) -> Recipe:
    return parse_recipe(
        f"""
[run]
{run}

[resources]
"{LLM}" = {limit}

[providers.mock]
kind = "mock"
models = ["writer"]
latency_ms = {latency_ms}

[[columns]]
name = "topic"
kind = "sampler"
values = ["space", "food", "sport", "art"]

[[columns]]
name = "question"
kind = "llm"
model = "mock/writer"
prompt = "Ask about {{topic}}."

[[columns]]
name = "answer"
kind = "llm"
model = "mock/writer"
prompt = "Answer: {{question}}"

[[columns]]
name = "label"
kind = "template"
template = "{{topic}} / {{answer}}"
"""
    )


def plan_of(out: Path) -> dict[str, Any]:
    plan: dict[str, Any] = json.loads((out / "capacity_plan.json").read_text(encoding="utf-8"))
    return plan


def configured(plan: dict[str, Any]) -> dict[str, tuple[int, str]]:
    return {name: (item["value"], item["source"]) for name, item in plan["configured"].items()}


# -- configured values and their sources --------------------------------------------------------------------


def test_values_the_recipe_wrote_are_recipe_the_others_default() -> None:
    plan = configured_capacity(recipe("records = 30\nbuffer_size = 10"))
    assert plan == {
        "records": CapacityValue(30, "recipe"),
        "buffer_size": CapacityValue(10, "recipe"),
        "max_row_groups_in_flight": CapacityValue(2, "default"),
        "submission_capacity": CapacityValue(8, "default"),
        f"resource:{LLM}": CapacityValue(3, "recipe"),
    }


def test_workers_override_is_the_cli_source() -> None:
    written = recipe("records = 30\nmax_workers = 6")
    assert configured_capacity(written)["submission_capacity"] == CapacityValue(6, "recipe")
    assert configured_capacity(written, workers=2)["submission_capacity"] == CapacityValue(2, "cli")


def test_sources_relabel_values_without_changing_them() -> None:
    plan = configured_capacity(
        recipe("records = 30\nbuffer_size = 10"),
        workers=3,
        sources={"buffer_size": "benchmark_override", f"resource:{LLM}": "default"},
    )
    assert plan["buffer_size"] == CapacityValue(10, "benchmark_override")
    assert plan[f"resource:{LLM}"] == CapacityValue(3, "default")
    assert plan["submission_capacity"] == CapacityValue(3, "cli")
    assert {item.source for item in plan.values()} <= set(CAPACITY_SOURCES)


def test_unknown_capacity_name_or_source_is_a_value_error_naming_it() -> None:
    written = recipe("records = 30")
    with pytest.raises(ValueError, match="'bogus_name'"):
        configured_capacity(written, sources={"bogus_name": "cli"})
    with pytest.raises(ValueError, match="'made_up'"):
        configured_capacity(written, sources={"buffer_size": "made_up"})


@pytest.mark.parametrize(("sources", "named"), [({"bogus_name": "cli"}, "bogus_name"), ({"records": "made_up"}, "made_up")])
def test_run_recipe_rejects_bad_capacity_sources(tmp_path: Path, sources: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        run_recipe(recipe("records = 10"), tmp_path / "out", workers=2, sleep=no_sleep, capacity_sources=sources)


# -- capacity_plan.json of real runs ---------------------------------------------------------------------------


def assert_plan_is_consistent(plan: dict[str, Any], written: Recipe, workers: int) -> None:
    limits = {"submission": workers, **written.resource_limits}
    observed = plan["observed"]
    assert plan["schema_version"] == 1
    assert 1 <= observed["max_row_groups_in_flight"] <= written.run.max_row_groups_in_flight
    assert set(observed["max_leased_by_resource"]) == set(limits)
    for resource, peak in observed["max_leased_by_resource"].items():
        assert 1 <= peak <= limits[resource], resource
    assert set(observed["max_queued_by_group"]) == set(written.topological_order)
    assert all(peak >= 1 for peak in observed["max_queued_by_group"].values())
    final = plan["final_admission"]
    assert final["active_lease_count"] == 0
    assert final["resource_limits"] == final["resources_available"] == limits
    assert set(final["leased_resources"].values()) == {0}


def test_a_run_writes_its_plan_with_recipe_and_default_sources(tmp_path: Path) -> None:
    written = recipe("records = 30")  # no buffer_size, max_row_groups_in_flight or max_workers
    result = run_recipe(written, tmp_path, sleep=no_sleep)
    assert_healthy(result)
    plan = plan_of(tmp_path)
    assert configured(plan) == {
        "records": (30, "recipe"),
        "buffer_size": (100, "default"),
        "max_row_groups_in_flight": (2, "default"),
        "submission_capacity": (8, "default"),
        f"resource:{LLM}": (3, "recipe"),
    }
    assert_plan_is_consistent(plan, written, workers=8)
    assert plan["observed"]["max_row_groups_in_flight"] == 1  # 30 rows are one row group of 100


def test_workers_and_capacity_sources_show_in_the_written_plan(tmp_path: Path) -> None:
    written = small_recipe(failure_rate=0.2, fatal_rate=0.05)
    result = run_recipe(written, tmp_path, workers=3, sleep=no_sleep, capacity_sources={"buffer_size": "benchmark_override"})
    assert_healthy(result)
    plan = plan_of(tmp_path)
    assert configured(plan) == {
        "records": (60, "recipe"),
        "buffer_size": (7, "benchmark_override"),
        "max_row_groups_in_flight": (2, "recipe"),
        "submission_capacity": (3, "cli"),
        f"resource:{LLM}": (3, "recipe"),
    }
    assert_plan_is_consistent(plan, written, workers=3)


class GateFirstCalls:
    """A mock-provider ``sleep`` whose first ``parties`` calls wait for each other: they can only all return
    if ``parties`` llm tasks held their leases at the same time. Later calls return at once."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self._barrier = threading.Barrier(parties, timeout=GENEROUS)
        self._lock = threading.Lock()
        self.calls = 0
        self.met = 0

    def __call__(self, _seconds: float) -> None:
        with self._lock:
            self.calls += 1
            gated = self.calls <= self.parties
        if gated:
            self._barrier.wait()
            with self._lock:
                self.met += 1


def test_a_saturated_resource_peaks_exactly_at_its_limit(tmp_path: Path) -> None:
    written = recipe("records = 28\nbuffer_size = 7\nmax_row_groups_in_flight = 2", latency_ms=1, limit=3)
    gate = GateFirstCalls(3)
    result = run_recipe(written, tmp_path, workers=4, sleep=gate)
    assert_healthy(result)
    assert gate.met == 3 and result.rows_written == 28 and not result.dropped
    plan = plan_of(tmp_path)
    leased = plan["observed"]["max_leased_by_resource"]
    assert leased[LLM] == 3  # the gate proves 3 were leased at once; the controller never allows more
    assert 3 <= leased["submission"] <= 4  # every llm lease holds a submission unit too
    assert_plan_is_consistent(plan, written, workers=4)


def test_a_fresh_run_replaces_a_stale_capacity_plan(tmp_path: Path) -> None:
    run_recipe(recipe("records = 10"), tmp_path, workers=1, sleep=no_sleep)
    (tmp_path / "capacity_plan.json").write_text("stale", encoding="utf-8")  # an earlier run's, damaged
    result = run_recipe(recipe("records = 10"), tmp_path, workers=2, sleep=no_sleep)
    assert_healthy(result)
    assert plan_of(tmp_path)["configured"]["submission_capacity"] == {"value": 2, "source": "cli"}


# -- RunSettings.given ------------------------------------------------------------------------------------


def test_given_names_exactly_the_run_keys_the_recipe_wrote() -> None:
    assert recipe("records = 30").run.given == frozenset({"records"})
    written = recipe("records = 30\nbuffer_size = 100\nseed = 0\nerror_rate_shutdown = 0.5")
    assert written.run.given == frozenset({"records", "buffer_size", "seed", "error_rate_shutdown"})
    assert RunSettings(records=1).given == frozenset()


def test_writing_a_default_explicitly_keeps_the_recipe_hash_but_not_the_source() -> None:
    implicit = recipe("records = 30")
    explicit = recipe("records = 30\nbuffer_size = 100\nmax_workers = 8")
    # the hash is of the parsed values (defaults applied); ``given`` is not part of it nor of equality
    assert explicit.recipe_hash == implicit.recipe_hash
    assert explicit.canonical_json() == implicit.canonical_json()
    assert "given" not in json.loads(implicit.canonical_json())["run"]
    assert explicit.run == implicit.run and explicit.run.given != implicit.run.given
    assert configured_capacity(implicit)["buffer_size"] == CapacityValue(100, "default")
    assert configured_capacity(explicit)["buffer_size"] == CapacityValue(100, "recipe")
    assert configured_capacity(explicit)["submission_capacity"] == CapacityValue(8, "recipe")


def test_a_different_value_changes_the_recipe_hash() -> None:
    assert recipe("records = 30\nbuffer_size = 99").recipe_hash != recipe("records = 30").recipe_hash


def test_bad_capacity_sources_touch_nothing_and_leak_no_event_writer(tmp_path: Path) -> None:
    recipe = small_recipe(records=14)
    assert_healthy(run_recipe(recipe, tmp_path, workers=2, sleep=no_sleep, event_log=True))
    before = sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*"))
    with pytest.raises(ValueError, match="bogus"):
        run_recipe(recipe, tmp_path, workers=2, sleep=no_sleep, event_log=True, capacity_sources={"bogus": "cli"})
    assert sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*")) == before
    assert not [thread for thread in threading.enumerate() if thread.name == "threadsched-event-writer"]
