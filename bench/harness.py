"""Benchmark harness: one scenario, threadsched against its baselines, with versioned artifacts and gates.

    python bench/run.py heavy_root                      # defaults: 1 warm-up, 5 iterations, 3 implementations
    python bench/run.py heavy_root --quick              # CI smoke: small knobs, 2 iterations, no warm-up
    python bench/run.py hidden_waiter --workers 16 --limit tight/model=2 --latency-ms 5
    python bench/run.py heavy_root --baseline main --candidate HEAD    # A/B of two git refs
    python bench/run.py heavy_root --policies strict,bounded_borrow,drf    # threadsched once per policy
    python bench/run.py saturated_root                  # strict vs bounded_borrow where the root work fills the pool
    python bench/run.py two_resource_mix --quick        # DRF vs strict on a two-resource mix
    python bench/run.py cross_provider_cooldown --quick # provider-aware vs strict vs B alone

Scenarios and knobs: ``bench/scenarios.py``. Implementations (``--impl``): ``threadsched`` (``run_recipe``),
``fifo`` and ``spawn_then_wait`` (``bench/baselines.py``: the same executors, processors, retries and
row-group admission, different ways of handing ready work to threads). Each iteration runs every
implementation once, the order alternating between iterations so that they share the machine's state;
warm-ups are not recorded. ``--policies strict,bounded_borrow`` (default ``strict``) runs threadsched once
per listed admission policy per iteration, as ``threadsched`` (strict), ``threadsched[bounded_borrow]``,
``threadsched[drf]``; a scenario may name its own default policies and implementations (``saturated_root``:
strict and bounded_borrow, threadsched only). The summary compares each non-strict policy with strict
(``policy_comparison``: wall, p95 downstream gap, time to the first complete row) and, with bounded_borrow,
states the targets (``targets``: reported, never gates; see ``harness_policies``). ``two_resource_mix`` and
``cross_provider_cooldown`` are policy workloads without a recipe (``bench/two_resource_mix.py``,
``bench/cross_provider_cooldown.py``: their implementations are fixed, ``--impl``/``--policies`` do not apply;
``--warmup-s``/``--window-s`` set their run lengths). Artifacts (``--out``, default ``RESULTS_DIR/harness/SCENARIO/``):
``summary.json``, ``iterations.csv``, ``summary.md`` (see ``harness_report``).

Gates stated in the summary: every threadsched implementation has no hidden waiters and spawn_then_wait has some; no lease is
left after any iteration; every implementation and iteration writes the same output hash; on heavy_root
the p95 downstream ready-to-lease gap of threadsched is at least 3x smaller than fifo's. Exit code 0 when
every gate passes, 1 otherwise (the failed gates are printed), 2 for bad arguments. The policy workloads
gate a clean scheduler shutdown in every iteration.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cross_provider_cooldown
import two_resource_mix
from common import BENCH_DIR, RESULTS_DIR, git_sha, machine_info
from harness_impls import IMPLEMENTATIONS, STRICT, Sample, impl_policy, run_sample
from harness_policies import (
    COMPARED_METRICS,
    Workload,
    bounded_borrow_targets,
    expand_implementations,
    parse_policies,
    policy_comparison,
)
from harness_report import evaluate_gates, numeric_metrics, ratios, stats, validate_summary, write_artifacts
from scenarios import SCENARIOS, Knobs, Scenario, get_scenario, recipe_text

from threadsched.engine import Recipe, parse_recipe
from threadsched.report.evidence import percentile

__all__ = ["HARNESS_VERSION", "run", "run_harness", "validate_summary"]

HARNESS_VERSION = "1.0"
DEFAULT_WARMUPS = 1
DEFAULT_ITERATIONS = 5
WORKLOADS: dict[str, Workload] = {
    "two_resource_mix": two_resource_mix.WORKLOAD,
    "cross_provider_cooldown": cross_provider_cooldown.WORKLOAD,
}
# knob -> name of the value in the engine's capacity plan
_CAPACITY_NAMES = {
    "records": "records",
    "buffer_size": "buffer_size",
    "row_groups_in_flight": "max_row_groups_in_flight",
    "workers": "submission_capacity",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=sorted(SCENARIOS), help="scenario id (bench/scenarios.py)")
    parser.add_argument("--records", type=int, default=None, help="rows")
    parser.add_argument("--buffer-size", type=int, default=None, help="rows per row group")
    parser.add_argument("--row-groups-in-flight", type=int, default=None, help="row groups open at once")
    parser.add_argument("--workers", type=int, default=None, help="worker threads")
    parser.add_argument("--limit", action="append", default=[], metavar="MODEL=N", help="model limit (provider/model or model)")
    parser.add_argument("--latency-ms", type=float, default=None, help="mock latency base (x each provider's factor)")
    parser.add_argument("--jitter-ms", type=float, default=None, help="mock jitter base (x each provider's factor)")
    parser.add_argument("--seed", type=int, default=None, help="recipe seed")
    parser.add_argument("--warmups", type=int, default=None, help=f"untimed rounds first (default {DEFAULT_WARMUPS}; quick 0)")
    parser.add_argument(
        "--iterations", "--runs", type=int, default=None, help=f"measured rounds (default {DEFAULT_ITERATIONS}; quick 2)"
    )
    parser.add_argument("--impl", default=None, help="comma-separated implementations (default: the scenario's, else all)")
    parser.add_argument(
        "--policies",
        default=None,
        help="comma-separated admission policies of threadsched (strict, bounded_borrow, drf; default: the scenario's)",
    )
    parser.add_argument("--warmup-s", type=float, default=None, help="policy workloads: each run's unmeasured warm-up")
    parser.add_argument("--window-s", type=float, default=None, help="policy workloads: each run's measured window")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="default artifact root (bench/results)")
    parser.add_argument("--out", type=Path, default=None, help="artifact directory (default RESULTS_DIR/harness/SCENARIO)")
    parser.add_argument("--quick", action="store_true", help="the scenario's small CI knobs")
    parser.add_argument("--baseline", default=None, metavar="REF", help="A/B: git ref of the baseline (needs --candidate)")
    parser.add_argument("--candidate", default=None, metavar="REF", help="A/B: git ref of the candidate (needs --baseline)")
    return parser


def knob_overrides(args: argparse.Namespace, scenario: Scenario) -> dict[str, Any]:
    """The knobs given on the command line (ValueError for a bad one)."""
    overrides: dict[str, Any] = {}
    for name in ("records", "buffer_size", "row_groups_in_flight", "workers", "seed"):
        value = getattr(args, name)
        if value is not None:
            if name != "seed" and value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
            overrides[name] = value
    for name in ("latency_ms", "jitter_ms"):
        value = getattr(args, name)
        if value is not None:
            if value < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {value}")
            overrides[name] = value
    limits: dict[str, int] = {}
    for item in args.limit:
        model, sep, count = item.partition("=")
        if not sep or not count.strip().isdigit() or int(count) < 1:
            raise ValueError(f"--limit expects MODEL=N with N >= 1, got {item!r}")
        limits[scenario.resource(model.strip())] = int(count)
    if limits:
        overrides["limits"] = limits
    return overrides


def capacity_sources(overrides: Mapping[str, Any]) -> dict[str, str]:
    sources = {_CAPACITY_NAMES[name]: "benchmark_override" for name in overrides if name in _CAPACITY_NAMES}
    for model in overrides.get("limits", {}):
        sources[f"resource:llm:{model}"] = "benchmark_override"
    return sources


def fallback_capacity_plan(recipe: Recipe, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The configured capacity with its source, when the engine wrote no ``capacity_plan.json``."""
    sources = capacity_sources(overrides)
    values = {
        "records": recipe.run.records,
        "buffer_size": recipe.run.buffer_size,
        "max_row_groups_in_flight": recipe.run.max_row_groups_in_flight,
        "submission_capacity": recipe.run.max_workers,
        **{f"resource:{name}": limit for name, limit in recipe.resource_limits.items()},
    }
    configured = {name: {"value": value, "source": sources.get(name, "recipe")} for name, value in values.items()}
    return {"configured": configured, "source_file": None}


def column_gaps(samples: Sequence[Sample]) -> dict[str, dict[str, dict[str, float]]]:
    pooled: dict[str, dict[str, list[float]]] = {}
    for sample in samples:
        for column, waits in sample.waits.items():
            pooled.setdefault(sample.implementation, {}).setdefault(column, []).extend(waits)
    return {
        impl: {c: {"count": len(w), "p50": percentile(w, 50), "p95": percentile(w, 95)} for c, w in per.items()}
        for impl, per in pooled.items()
    }


def run_harness(
    scenario: Scenario,
    knobs: Knobs,
    *,
    implementations: Sequence[str],
    warmups: int,
    iterations: int,
    out_dir: Path,
    quick: bool = False,
    overrides: Mapping[str, Any] | None = None,
    policies: Sequence[str] = (STRICT,),
    workload_overrides: Mapping[str, Any] | None = None,
    command_line: Sequence[str] = (),
    sleep: Callable[[float], None] = time.sleep,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run ``scenario`` and write its artifacts into ``out_dir``; returns the summary document.

    ``policies``: threadsched's admission policies (recipe scenarios); ``workload_overrides``: ``warmup_s`` /
    ``window_s`` of a policy workload (``Workload``)."""
    overrides = dict(overrides or {})
    recipe: Recipe | None = None
    workload = WORKLOADS.get(scenario.id)
    params: Any = None
    if workload is not None:
        params = workload.make_params(knobs, quick, dict(workload_overrides or {}))
        implementations = list(workload.implementations)  # fixed: the policies (and modes) it compares
    else:
        recipe = parse_recipe(recipe_text(scenario, knobs), source=f"<bench scenario {scenario.id}>")
        implementations = expand_implementations(implementations, policies)

    def once(impl: str, index: int) -> Sample:
        if workload is not None:
            return workload.run(impl, params, index)
        assert recipe is not None
        return run_sample(impl, recipe, sleep=sleep, capacity_sources=capacity_sources(overrides))

    for warmup in range(warmups):
        for impl in implementations if warmup % 2 == 0 else implementations[::-1]:
            once(impl, -1 - warmup)
    samples: list[Sample] = []
    rows: list[dict[str, Any]] = []
    for iteration in range(iterations):
        order = implementations if iteration % 2 == 0 else implementations[::-1]
        for position, impl in enumerate(order):
            sample = once(impl, iteration)
            samples.append(sample)
            rows.append({"implementation": impl, "iteration": iteration + 1, "order": position + 1, **sample.metrics})
            gap = sample.metrics.get("downstream_gap_p95_s")
            extra = f" downstream gap p95 {gap * 1e3:8.2f} ms" if gap is not None else ""
            echo(
                f"  {scenario.id} iteration {iteration + 1}/{iterations} {impl:28s} wall {sample.metrics['wall_s']:.3f} s{extra}"
            )
    by_impl: dict[str, dict[str, dict[str, float]]] = {}
    for impl in implementations:
        impl_rows = [row for row in rows if row["implementation"] == impl]
        by_impl[impl] = {
            metric: stats([row[metric] for row in impl_rows if metric in row]) for metric in numeric_metrics(impl_rows)
        }
    # the capacity plan and final snapshot: the last strict run (else the last run of any policy)
    threadsched_samples = [sample for sample in samples if impl_policy(sample.implementation) is not None]
    strict_samples = [sample for sample in threadsched_samples if sample.implementation == "threadsched"]
    last = (strict_samples or threadsched_samples or [None])[-1]
    if last is not None and last.capacity_plan is not None:
        plan = {**last.capacity_plan, "source_file": "capacity_plan.json"}
    elif recipe is not None:
        plan = fallback_capacity_plan(recipe, overrides)
    else:
        plan = {"configured": {name: {"value": value, "source": "workload"} for name, value in asdict(params).items()}}
    gates = evaluate_gates(scenario.id, rows, by_impl)
    workload_section: dict[str, Any] = {}
    targets: list[dict[str, Any]] = []
    if workload is not None:
        comparison = policy_comparison(by_impl, workload.compared_metrics)
        workload_section, targets = workload.report(by_impl, params)
    else:
        comparison = policy_comparison(by_impl, COMPARED_METRICS)
        targets = bounded_borrow_targets(by_impl)
    machine = machine_info()
    import threadsched

    machine["threadsched_source"] = str(Path(threadsched.__file__).resolve().parent)
    document: dict[str, Any] = {
        "schema_version": "1",
        "harness_version": HARNESS_VERSION,
        "scenario": {
            "id": scenario.id,
            "description": scenario.description,
            "knobs": knobs.as_dict(),
            "knobs_overridden": sorted(overrides),
            "quick": quick,
            "recipe_hash": recipe.recipe_hash if recipe is not None else None,
            **({"params": asdict(params)} if params is not None else {}),
        },
        "git_sha": git_sha() or "unknown",
        "machine": machine,
        "command_line": list(command_line),
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "implementations": list(implementations),
        "warmups": warmups,
        "iterations": iterations,
        "capacity_plan": plan,
        "policies": [impl_policy(impl) for impl in implementations if impl_policy(impl) is not None],
        "final_snapshots": {last.implementation: dict(last.counters)} if last is not None else {},
        "output_hashes": {impl: _last_hash(rows, impl) for impl in implementations},
        "stats": by_impl,
        "per_column_gaps": column_gaps(samples),
        "ratios": ratios(by_impl),
        "policy_comparison": comparison,
        "workload": workload_section,
        "gates": gates,
        "all_gates_passed": all(gate["passed"] for gate in gates),
        "targets": targets,
    }
    errors = validate_summary(document)
    if errors:
        raise RuntimeError(f"bench/harness.py built an invalid summary: {errors}")
    write_artifacts(out_dir, document, rows)
    return document


def _last_hash(rows: Sequence[Mapping[str, Any]], impl: str) -> str | None:
    hashes = [str(row["output_hash"]) for row in rows if row["implementation"] == impl and row.get("output_hash")]
    return hashes[-1] if hashes else None


def print_summary(document: Mapping[str, Any], out_dir: Path) -> None:
    for impl, per in document["stats"].items():
        wall = per["wall_s"]
        gap = per.get("downstream_gap_p95_s")
        text = f"  {impl:28s} wall p50 {wall['p50']:.3f} s (min {wall['min']:.3f}, max {wall['max']:.3f})"
        if gap is not None:
            text += f"  downstream gap p95 (p50 over iterations) {gap['p50'] * 1e3:.2f} ms"
        print(text)
    for policy, per in document.get("policy_comparison", {}).items():
        cells = [f"{metric} {row['policy_over_strict']:.3f}" for metric, row in per.items() if row["policy_over_strict"]]
        print(f"  {policy} / strict (p50): " + ", ".join(cells))
    for gate in document["gates"]:
        print(f"  [{'PASS' if gate['passed'] else 'FAIL'}] {gate['name']}: {gate['detail']}")
    for entry in document.get("targets", []):
        print(f"  [target {'met' if entry['passed'] else 'MISSED'}] {entry['name']}: {entry['detail']}")
    print(f"wrote {out_dir / 'summary.json'}, iterations.csv, summary.md")


def run(argv: Sequence[str]) -> int:
    """``bench/run.py SCENARIO [options]``: parse, run, print; 0 when every gate passed, 1 otherwise."""
    argv = list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    scenario = get_scenario(args.scenario)
    if (args.baseline is None) != (args.candidate is None):
        parser.error("--baseline and --candidate go together")
    try:
        overrides = knob_overrides(args, scenario)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        policies = parse_policies(args.policies or scenario.policies or STRICT)
    except ValueError as exc:
        parser.error(str(exc))
    workload_overrides = {name: getattr(args, name) for name in ("warmup_s", "window_s") if getattr(args, name) is not None}
    if workload_overrides and scenario.id not in WORKLOADS:
        parser.error(f"--warmup-s/--window-s apply to the policy workloads ({', '.join(WORKLOADS)}) only")
    if any(value <= 0 for value in workload_overrides.values()):
        parser.error("--warmup-s and --window-s must be > 0")
    implementations = [
        name.strip() for name in (args.impl or scenario.impl or ",".join(IMPLEMENTATIONS)).split(",") if name.strip()
    ]
    unknown = [name for name in implementations if name not in IMPLEMENTATIONS]
    if unknown or not implementations:
        parser.error(f"--impl: unknown implementation(s) {unknown} (known: {', '.join(IMPLEMENTATIONS)})")
    default_warmups = DEFAULT_WARMUPS if scenario.default_warmups is None else scenario.default_warmups
    warmups = args.warmups if args.warmups is not None else (0 if args.quick else default_warmups)
    iterations = (
        args.iterations if args.iterations is not None else (scenario.quick_iterations if args.quick else DEFAULT_ITERATIONS)
    )
    if warmups < 0 or iterations < 1:
        parser.error("--warmups must be >= 0 and --iterations >= 1")
    out_dir = args.out if args.out is not None else args.results_dir / "harness" / scenario.id
    if args.baseline is not None:
        from harness_ab import run_ab

        return run_ab(args, argv, out_dir)
    knobs = scenario.knobs(quick=args.quick, overrides=overrides)
    print(f"== harness {scenario.id}: {json.dumps(knobs.as_dict(), sort_keys=True)}", flush=True)
    document = run_harness(
        scenario,
        knobs,
        implementations=implementations,
        warmups=warmups,
        iterations=iterations,
        out_dir=out_dir,
        quick=args.quick,
        overrides=overrides,
        policies=policies,
        workload_overrides=workload_overrides,
        command_line=[sys.executable, str(BENCH_DIR / "run.py"), *argv],
    )
    print_summary(document, out_dir)
    failed = [gate["name"] for gate in document["gates"] if not gate["passed"]]
    if failed:
        print(f"FAILED gates: {', '.join(failed)}")
        return 1
    return 0
