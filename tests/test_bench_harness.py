"""bench/harness.py and its baselines: equal output hashes, the artifact schema, hidden waiters, A/B.

``bench/`` is not a package: its directory goes on ``sys.path`` (as ``python bench/run.py`` does); the
command-line tests go through the front door (``run.main``).
No test asserts on time; every run uses zero mock latency except the hidden-waiter one, whose mock ``sleep``
is gated on an event instead of sleeping (see there).
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from baselines import BASELINES, run_baseline  # noqa: E402
from harness import run_harness, validate_summary  # noqa: E402
from harness_impls import IMPLEMENTATIONS, run_sample  # noqa: E402
from run import main as front_door  # noqa: E402
from scenarios import SCENARIOS, Scenario, recipe_text  # noqa: E402

from threadsched.engine import Recipe, parse_recipe, run_reference  # noqa: E402

ZERO_LATENCY = {"latency_ms": 0.0, "jitter_ms": 0.0}


def quick_recipe(scenario: Scenario, **overrides: Any) -> Recipe:
    knobs = scenario.knobs(quick=True, overrides={**ZERO_LATENCY, **overrides})
    return parse_recipe(recipe_text(scenario, knobs))


def reference_hash(recipe: Recipe, out: Path) -> str:
    return run_reference(recipe, out, sleep=lambda _seconds: None).output_hash


@pytest.fixture(scope="module")
def heavy_root_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, str]:
    """A tiny zero-latency heavy_root run of all three implementations, 2 iterations, no warm-up."""
    scenario = SCENARIOS["heavy_root"]
    knobs = scenario.knobs(quick=True, overrides=ZERO_LATENCY)
    out = tmp_path_factory.mktemp("harness") / "heavy_root"
    document = run_harness(
        scenario,
        knobs,
        implementations=IMPLEMENTATIONS,
        warmups=0,
        iterations=2,
        out_dir=out,
        quick=True,
        overrides=ZERO_LATENCY,
        command_line=["test"],
        echo=lambda _line: None,
    )
    expected = reference_hash(parse_recipe(recipe_text(scenario, knobs)), out.parent / "reference")
    return document, out, expected


def test_heavy_root_every_implementation_writes_the_reference_output(heavy_root_run: tuple[dict[str, Any], Path, str]) -> None:
    document, _out, expected = heavy_root_run
    assert document["output_hashes"] == dict.fromkeys(IMPLEMENTATIONS, expected)
    gates = {gate["name"]: gate for gate in document["gates"]}
    for name in ("equal_output_hashes", "zero_active_leases_after_every_iteration", "threadsched_hidden_waiters_zero"):
        assert gates[name]["passed"], gates[name]
    # the timing-dependent gates are stated (their values are not asserted here)
    assert "heavy_root_downstream_p95_gap_3x_smaller_than_fifo" in gates
    assert "spawn_then_wait_hidden_waiters_positive" in gates
    assert document["all_gates_passed"] == all(gate["passed"] for gate in document["gates"])


def test_heavy_root_artifacts_are_written_and_valid(heavy_root_run: tuple[dict[str, Any], Path, str]) -> None:
    _document, out, _expected = heavy_root_run
    summary = json.loads((out / "summary.json").read_text())
    assert validate_summary(summary) == []
    assert summary["schema_version"] == "1"
    assert summary["scenario"]["id"] == "heavy_root"
    assert summary["iterations"] == 2 and summary["implementations"] == list(IMPLEMENTATIONS)
    assert summary["final_snapshots"]["threadsched"]["tasks_submitted"] > 0
    assert "configured" in summary["capacity_plan"]
    for impl in IMPLEMENTATIONS:
        assert set(summary["stats"][impl]["wall_s"]) == {"mean", "p50", "p95", "min", "max", "stdev"}
        assert {"draft", "summary", "label"} <= set(summary["per_column_gaps"][impl])
    assert set(summary["ratios"]) == set(BASELINES)
    with (out / "iterations.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * len(IMPLEMENTATIONS)
    assert {row["implementation"] for row in rows} == set(IMPLEMENTATIONS)
    assert [row["implementation"] for row in rows[:3]] == [row["implementation"] for row in rows[3:]][::-1]  # interleaved
    assert {row["output_hash"] for row in rows} == {summary["output_hashes"]["threadsched"]}
    markdown = (out / "summary.md").read_text()
    assert "## Gates" in markdown and "heavy_root" in markdown


@pytest.mark.parametrize(
    ("corrupt", "field"),
    [
        (lambda d: d["stats"]["threadsched"]["wall_s"].pop("p95"), "stats.threadsched.wall_s.p95"),
        (lambda d: d.__setitem__("schema_version", "2"), "schema_version"),
        (lambda d: d["gates"][0].__setitem__("passed", "yes"), "gates[0].passed"),
        (lambda d: d.pop("git_sha"), "git_sha"),
        (lambda d: d["output_hashes"].pop("fifo"), "output_hashes.fifo"),
        (lambda d: d["scenario"].__setitem__("knobs", []), "scenario.knobs"),
        (lambda d: d.__setitem__("all_gates_passed", not d["all_gates_passed"]), "all_gates_passed"),
    ],
)
def test_validate_summary_names_the_corrupted_field(
    heavy_root_run: tuple[dict[str, Any], Path, str], corrupt: Any, field: str
) -> None:
    document = copy.deepcopy(heavy_root_run[0])
    corrupt(document)
    errors = validate_summary(document)
    assert errors and any(error.startswith(field) for error in errors), errors


def test_validate_summary_rejects_a_non_object() -> None:
    assert validate_summary([]) == ["summary: expected an object, got list"]


@pytest.mark.parametrize("kind", BASELINES)
def test_baselines_match_the_reference_with_retries_filters_and_drops(tmp_path: Path, kind: str) -> None:
    scenario = SCENARIOS["generate_judge"]
    failing = tuple(dataclasses.replace(provider, failure_rate=0.35) for provider in scenario.providers)
    recipe = quick_recipe(dataclasses.replace(scenario, providers=failing))
    reference = run_reference(recipe, tmp_path / "reference")
    result = run_baseline(kind, recipe, tmp_path / kind)
    assert reference.dropped  # the pre-batch filter and exhausted retries both drop rows
    assert result.output_hash == reference.output_hash
    assert result.rows_dropped == len(reference.dropped)
    assert result.active_leases_after == 0


@pytest.mark.parametrize("scenario_id", [name for name, s in SCENARIOS.items() if s.has_recipe and name != "heavy_root"])
def test_every_recipe_scenario_hashes_equal_across_implementations(tmp_path: Path, scenario_id: str) -> None:
    recipe = quick_recipe(SCENARIOS[scenario_id], records=20)
    hashes = {impl: run_sample(impl, recipe).metrics["output_hash"] for impl in IMPLEMENTATIONS}
    assert set(hashes.values()) == {reference_hash(recipe, tmp_path / "reference")}, hashes


def test_spawn_then_wait_parks_workers_while_threadsched_and_fifo_do_not(tmp_path: Path) -> None:
    """Deterministic hidden waiters: the mock's ``sleep`` blocks until a worker has parked.

    hidden_waiter's model allows 2 calls at once and a row group makes 5 of its cells ready together.
    Every model call blocks in the gated sleep until ``on_park`` opens the gate, so the first two workers
    hold both semaphore units and a third worker, spawned at once, must find the semaphore taken and park:
    the gate opens only through a hidden waiter, so the run finishing proves at least one."""
    recipe = quick_recipe(SCENARIOS["hidden_waiter"], latency_ms=1.0)  # non-zero: the mock calls sleep
    gate = threading.Event()

    def gated_sleep(_seconds: float) -> None:
        assert gate.wait(30), "no worker parked on the model semaphore"

    parked = run_baseline("spawn_then_wait", recipe, tmp_path / "spawn", sleep=gated_sleep, on_park=gate.set)
    assert parked.hidden_waiters > 0
    assert parked.active_leases_after == 0
    no_sleep = {"sleep": lambda _seconds: None}
    fifo = run_baseline("fifo", recipe, tmp_path / "fifo", **no_sleep)
    ours = run_sample("threadsched", recipe, **no_sleep)
    assert fifo.hidden_waiters == 0 and ours.metrics["hidden_waiters"] == 0
    assert parked.output_hash == fifo.output_hash == ours.metrics["output_hash"] == reference_hash(recipe, tmp_path / "ref")


def test_saturated_root_runs_strict_and_bounded_borrow_by_default(tmp_path: Path) -> None:
    argv = ["saturated_root", "--quick", "--records", "10", "--latency-ms", "0", "--jitter-ms", "0", "--iterations", "1"]
    front_door([*argv, "--out", str(tmp_path)])  # the exit code follows the timing-dependent gates too
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert validate_summary(summary) == []
    assert summary["implementations"] == ["threadsched", "threadsched[bounded_borrow]"]
    assert summary["scenario"]["knobs"]["row_groups_in_flight"] == 6 and summary["scenario"]["knobs"]["workers"] == 4
    assert [entry["name"] for entry in summary["targets"]] == [
        "bounded_borrow_downstream_gap_p95_2x_smaller_than_strict",
        "bounded_borrow_first_row_2x_sooner_than_strict",
        "bounded_borrow_wall_at_most_5pct_worse_than_strict",
    ]
    assert len(set(summary["output_hashes"].values())) == 1


def _git_repository() -> bool:
    if shutil.which("git") is None:
        return False
    done = subprocess.run(["git", "rev-parse", "--verify", "HEAD"], cwd=REPO, capture_output=True, check=False)
    return done.returncode == 0


def test_ab_mode_runs_both_refs_in_worktrees_and_removes_them(tmp_path: Path) -> None:
    if not _git_repository():
        pytest.skip(f"A/B needs git and a git repository with a commit at {REPO}")
    out = tmp_path / "ab"
    command = [
        sys.executable,
        str(BENCH / "run.py"),
        "harness",
        "heavy_root",
        "--quick",
        "--latency-ms",
        "0",
        "--iterations",
        "1",
    ]
    command += ["--baseline", "HEAD", "--candidate", "HEAD", "--out", str(out)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads((out / "ab_summary.json").read_text())
    assert document["baseline"]["sha"] == document["candidate"]["sha"]
    assert set(document["ratios"]["wall_s"]) == {"mean", "p50", "p95", "min", "max"}
    assert (out / "ab_summary.md").exists()
    for role in ("baseline", "candidate"):
        summary = json.loads((out / role / "summary.json").read_text())
        assert validate_summary(summary) == []
        assert summary["implementations"] == ["threadsched"]
        assert "threadsched-ab-" in summary["machine"]["threadsched_source"]  # PYTHONPATH=<worktree> was used
    worktrees = subprocess.run(["git", "worktree", "list"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "threadsched-ab-" not in worktrees


# -- admission policies: --policies, policy comparison, targets, the policy workloads ------------------------

ALL_POLICIES = ("strict", "bounded_borrow", "drf")
POLICY_IMPLS = ("threadsched", "threadsched[bounded_borrow]", "threadsched[drf]")


@pytest.fixture(scope="module")
def heavy_root_policies_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, str]:
    """heavy_root, tiny and at zero latency, with threadsched under every policy next to the baselines."""
    scenario = SCENARIOS["heavy_root"]
    overrides = {**ZERO_LATENCY, "records": 30}
    knobs = scenario.knobs(quick=True, overrides=overrides)
    out = tmp_path_factory.mktemp("harness-policies") / "heavy_root"
    document = run_harness(
        scenario,
        knobs,
        implementations=IMPLEMENTATIONS,
        warmups=0,
        iterations=2,
        out_dir=out,
        quick=True,
        overrides=overrides,
        policies=ALL_POLICIES,
        command_line=["test"],
        echo=lambda _line: None,
    )
    expected = reference_hash(parse_recipe(recipe_text(scenario, knobs)), out.parent / "reference")
    return document, out, expected


def test_every_policy_writes_the_reference_output_and_passes_the_threadsched_gates(
    heavy_root_policies_run: tuple[dict[str, Any], Path, str],
) -> None:
    document, out, expected = heavy_root_policies_run
    implementations = [*POLICY_IMPLS, "fifo", "spawn_then_wait"]
    assert document["implementations"] == implementations
    assert document["policies"] == list(ALL_POLICIES)
    assert document["output_hashes"] == dict.fromkeys(implementations, expected)
    gates = {gate["name"]: gate for gate in document["gates"]}
    for name in ("equal_output_hashes", "zero_active_leases_after_every_iteration", "threadsched_hidden_waiters_zero"):
        assert gates[name]["passed"], gates[name]
    for impl in POLICY_IMPLS:  # the hidden-waiter gate covers every threadsched implementation
        assert impl in gates["threadsched_hidden_waiters_zero"]["detail"]
        assert "first_row_s" in document["stats"][impl]
    assert "first_row_s" not in document["stats"]["fifo"]
    assert set(document["ratios"]) == set(BASELINES)  # policies are compared with strict, not as baselines
    summary = json.loads((out / "summary.json").read_text())
    assert validate_summary(summary) == [] and summary["schema_version"] == "1"
    with (out / "iterations.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * len(implementations)
    assert [row["implementation"] for row in rows[:5]] == [row["implementation"] for row in rows[5:]][::-1]


def test_policy_comparison_rows_and_heavy_root_targets(heavy_root_policies_run: tuple[dict[str, Any], Path, str]) -> None:
    document, out, _expected = heavy_root_policies_run
    comparison = document["policy_comparison"]
    assert set(comparison) == {"bounded_borrow", "drf"}
    for rows in comparison.values():
        assert set(rows) == {"wall_s", "downstream_gap_p95_s", "first_row_s"}
        for row in rows.values():
            assert set(row) == {"policy_p50", "strict_p50", "policy_over_strict", "strict_over_policy"}
    targets = {entry["name"]: entry for entry in document["targets"]}
    assert set(targets) == {
        "bounded_borrow_downstream_gap_p95_2x_smaller_than_strict",
        "bounded_borrow_first_row_2x_sooner_than_strict",
        "bounded_borrow_wall_at_most_5pct_worse_than_strict",
    }
    assert all(entry["kind"] == "target" and isinstance(entry["passed"], bool) for entry in targets.values())
    # targets are reported, never gates: all_gates_passed follows the gates alone
    assert document["all_gates_passed"] == all(gate["passed"] for gate in document["gates"])
    assert not set(targets) & {gate["name"] for gate in document["gates"]}
    markdown = (out / "summary.md").read_text()
    assert "## Targets (reported, not gates)" in markdown and "## Policies against strict" in markdown


def test_strict_only_summaries_have_no_policy_rows(heavy_root_run: tuple[dict[str, Any], Path, str]) -> None:
    document = heavy_root_run[0]
    assert document["policies"] == ["strict"]
    assert document["policy_comparison"] == {} and document["targets"] == []


@pytest.mark.parametrize(
    ("corrupt", "field"),
    [
        (lambda d: d["targets"][0].__setitem__("passed", "no"), "targets[0].passed"),
        (lambda d: d["targets"][0].__setitem__("comparison", "=="), "targets[0].comparison"),
        (lambda d: d["targets"][1].__setitem__("passed", not d["targets"][1]["passed"]), "targets[1].passed"),
        (lambda d: d["policy_comparison"]["drf"]["wall_s"].pop("strict_p50"), "policy_comparison.drf.wall_s.strict_p50"),
        (lambda d: d["policy_comparison"]["drf"]["wall_s"].__setitem__("policy_p50", "x"), "policy_comparison.drf.wall_s"),
        (lambda d: d.__setitem__("workload", []), "workload"),
    ],
)
def test_validate_summary_names_a_corrupted_policy_field(
    heavy_root_policies_run: tuple[dict[str, Any], Path, str], corrupt: Any, field: str
) -> None:
    document = copy.deepcopy(heavy_root_policies_run[0])
    corrupt(document)
    errors = validate_summary(document)
    assert errors and any(error.startswith(field) for error in errors), errors


@pytest.mark.parametrize(
    ("scenario_id", "lengths", "implementations", "target_name"),
    [
        (
            "two_resource_mix",
            {"warmup_s": 0.05, "window_s": 0.2},
            ["threadsched", "threadsched[drf]"],
            "drf_dominant_shares_within_10pct_of_weights",
        ),
        (
            "cross_provider_cooldown",
            {"warmup_s": 0.2, "window_s": 0.3},
            ["threadsched", "threadsched[provider_aware]", "b_alone"],
            "provider_aware_b_throughput_at_least_90pct_of_b_alone",
        ),
    ],
)
def test_policy_workloads_write_valid_summaries_with_their_targets(
    tmp_path: Path, scenario_id: str, lengths: dict[str, float], implementations: list[str], target_name: str
) -> None:
    scenario = SCENARIOS[scenario_id]
    overrides = {"latency_ms": 5.0} if scenario_id == "cross_provider_cooldown" else {}
    document = run_harness(
        scenario,
        scenario.knobs(quick=True, overrides=overrides),
        implementations=IMPLEMENTATIONS,  # ignored: a workload's implementations are fixed
        warmups=0,
        iterations=1,
        out_dir=tmp_path,
        quick=True,
        overrides=overrides,
        workload_overrides=lengths,
        echo=lambda _line: None,
    )
    assert document["implementations"] == implementations
    assert document["scenario"]["params"]["window_s"] == lengths["window_s"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert validate_summary(summary) == []
    assert [entry["name"] for entry in summary["targets"]] == [target_name]
    assert summary["targets"][0]["value"] is not None
    gates = {gate["name"]: gate for gate in summary["gates"]}
    assert gates["clean_shutdown_every_iteration"]["passed"], gates
    policy = implementations[1].removeprefix("threadsched[").removesuffix("]")
    assert list(summary["policy_comparison"]) == [policy] and summary["policy_comparison"][policy]
    assert summary["workload"] and "## Targets (reported, not gates)" in (tmp_path / "summary.md").read_text()


def test_policies_option_rejects_an_unknown_policy(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        front_door(["heavy_root", "--policies", "strict,nope"])
    assert raised.value.code == 2 and "nope" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        front_door(["heavy_root", "--window-s", "1"])  # workload lengths on a recipe scenario
