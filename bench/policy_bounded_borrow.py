"""Benchmark: ``bounded_borrow`` against ``strict`` on ``heavy_root``, in the same run.

    python bench/policy_bounded_borrow.py                  # 5 interleaved runs per policy, medians
    python bench/policy_bounded_borrow.py --quick          # CI smoke: small knobs, still 5 runs
    python bench/policy_bounded_borrow.py --workers 16 --row-groups-in-flight 12 --limit heavy/drafter=32

The recipe is ``bench/scenarios.py``'s ``heavy_root`` (a slow root llm column, one task per row group that
calls its model once per row, then fast downstream ``summary`` cells and a ``label`` template), run through
``run_recipe(recipe, out, events=MemoryEventSink(), policy=...)``. The default knobs here put it in the
situation the policy is for: the *root* work can saturate the worker pool (8 workers, all 24 row groups
in flight, drafter limit 16, tagger limit 8; latency 10 ms x factor: root 200 ms per row group, downstream
cells 5 ms), so downstream cells that become ready compete with queued root tasks
for worker slots (``submission``). With ``strict`` (no ``admitted_limit`` in the engine, so plain weighted
fair queueing) every freed slot alternates between the root and downstream groups, and a root task then
holds its slot for a whole row group; with ``bounded_borrow`` a lone root group borrows only up to
``workers - 1`` slots, and once downstream cells wait it is held to its share while it owes debt.

Metrics per run, from the run's own events:

* ``downstream_gap_p95_s``: p95 of ``ready_enqueued -> task_lease_acquired`` over the tasks of non-root
  columns (``evidence.ready_to_lease_waits``);
* ``first_row_s``: time to the first complete row, taken as the first ``row_group_checkpointed`` event
  minus ``scheduler_job_started`` (a row is only complete and visible once its row group is written);
* ``wall_s``: ``run_recipe`` wall time.

Targets (ratios of medians): p95 gap strict/borrow >= 2, first row strict/borrow >= 2, wall borrow/strict
<= 1.05. Policies are interleaved (the order alternates between runs); one warm-up pair is not recorded.
The two policies must write the same output hash. Numbers are reported, never asserted.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

from common import check_runs, print_table, summarize, write_json
from scenarios import Knobs, get_scenario, recipe_text

from threadsched.engine import Recipe, parse_recipe, run_recipe
from threadsched.events import MemoryEventSink
from threadsched.evidence import hidden_waiters, percentile, ready_to_lease_waits
from threadsched.scheduler import DEFAULT_GROUP

NAME = "policy_bounded_borrow"
POLICIES = ("strict", "bounded_borrow")
SCENARIO = "heavy_root"
# Root work saturates the pool: every row group in flight (24), a drafter limit above the 8 workers.
DEFAULTS: Mapping[str, Any] = {
    "records": 240,
    "buffer_size": 10,
    "row_groups_in_flight": 24,
    "workers": 8,
    "limits": {"heavy/drafter": 16, "fast/tagger": 8},
    "latency_ms": 10.0,
    "jitter_ms": 2.0,
}
QUICK: Mapping[str, Any] = {"records": 60, "buffer_size": 5, "row_groups_in_flight": 6, "workers": 4, "latency_ms": 2.0}
TARGETS = {"gap_ratio_min": 2.0, "first_row_ratio_min": 2.0, "wall_ratio_max": 1.05}


def build_recipe(knobs: Knobs) -> Recipe:
    return parse_recipe(recipe_text(get_scenario(SCENARIO), knobs), source=f"<{NAME} {SCENARIO}>")


def knobs_for(*, quick: bool, overrides: Mapping[str, Any]) -> Knobs:
    scenario = get_scenario(SCENARIO)
    base = {**DEFAULTS, **(QUICK if quick else {})}
    limits = {**base.pop("limits"), **overrides.get("limits", {})}
    chosen = {**base, **{k: v for k, v in overrides.items() if k != "limits"}}
    return scenario.knobs(quick=False, overrides={**chosen, "limits": limits})


def _column_of(recipe: Recipe) -> dict[Hashable, str]:
    """Scheduler group key -> column name (the runner renames a column called like the default group)."""
    return {(f"column:{name}" if name == DEFAULT_GROUP else name): name for name in recipe.topological_order}


def run_once(recipe: Recipe, policy: str) -> dict[str, Any]:
    """One ``run_recipe`` of ``recipe`` under ``policy``: its metrics."""
    sink = MemoryEventSink()
    gc.collect()
    with tempfile.TemporaryDirectory(prefix=f"bench-{NAME}-") as out:
        started = time.perf_counter()
        result = run_recipe(recipe, Path(out), events=sink, policy=policy)
        wall = time.perf_counter() - started
    events = sink.events
    columns = _column_of(recipe)
    downstream = [
        wait
        for group, found in ready_to_lease_waits(events).items()
        if not recipe.column(columns.get(group, str(group))).is_root
        for wait in found.waits
    ]
    job_started = next((e.captured_at for e in events if e.kind == "scheduler_job_started"), None)
    first_checkpoint = next((e.captured_at for e in events if e.kind == "row_group_checkpointed"), None)
    first_row = first_checkpoint - job_started if job_started is not None and first_checkpoint is not None else float("nan")
    return {
        "wall_s": wall,
        "downstream_gap_p95_s": percentile(downstream, 95),
        "downstream_gap_p50_s": percentile(downstream, 50),
        "first_row_s": first_row,
        "hidden_waiters": hidden_waiters(events),
        "active_leases_after": result.final_active_leases,
        "rows_written": result.rows_written,
        "output_hash": result.output_hash,
    }


METRICS = ("wall_s", "downstream_gap_p95_s", "downstream_gap_p50_s", "first_row_s")


def run_benchmark(knobs: Knobs, runs: int, *, warmup: bool = True) -> dict[str, Any]:
    """``runs`` interleaved runs of each policy (the order alternating); medians and target ratios."""
    recipe = build_recipe(knobs)
    if warmup:
        for policy in POLICIES:
            run_once(recipe, policy)
    samples: dict[str, list[dict[str, Any]]] = {policy: [] for policy in POLICIES}
    for index in range(runs):
        order = POLICIES if index % 2 == 0 else tuple(reversed(POLICIES))
        for policy in order:
            samples[policy].append(run_once(recipe, policy))
    medians = {policy: {metric: summarize([s[metric] for s in found]) for metric in METRICS} for policy, found in samples.items()}
    strict, borrow = medians["strict"], medians["bounded_borrow"]

    def ratio(numerator: float, denominator: float) -> float:
        return numerator / denominator if denominator > 0 else float("inf")

    ratios = {
        "gap_p95_strict_over_borrow": ratio(strict["downstream_gap_p95_s"]["median"], borrow["downstream_gap_p95_s"]["median"]),
        "first_row_strict_over_borrow": ratio(strict["first_row_s"]["median"], borrow["first_row_s"]["median"]),
        "wall_borrow_over_strict": ratio(borrow["wall_s"]["median"], strict["wall_s"]["median"]),
    }
    hashes = {s["output_hash"] for found in samples.values() for s in found}
    checks = {
        "gap_ratio": ratios["gap_p95_strict_over_borrow"] >= TARGETS["gap_ratio_min"],
        "first_row_ratio": ratios["first_row_strict_over_borrow"] >= TARGETS["first_row_ratio_min"],
        "wall_ratio": ratios["wall_borrow_over_strict"] <= TARGETS["wall_ratio_max"],
        "same_output": len(hashes) == 1,
        "no_hidden_waiters": all(s["hidden_waiters"] == 0 for found in samples.values() for s in found),
        "no_leases_left": all(s["active_leases_after"] == 0 for found in samples.values() for s in found),
    }
    return {
        "scenario": SCENARIO,
        "knobs": knobs.as_dict(),
        "runs": runs,
        "medians": medians,
        "ratios": ratios,
        "targets": dict(TARGETS),
        "checks": checks,
        "samples": samples,
    }


def _limit(text: str) -> tuple[str, int]:
    model, sep, value = text.partition("=")
    if not sep or not model:
        raise argparse.ArgumentTypeError(f"--limit expects MODEL=N, got {text!r}")
    return model, int(value)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"bench/{NAME}.py", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="runs per policy (>= 5)")
    parser.add_argument("--out", type=Path, default=None, help=f"JSON output path (default: bench/results/{NAME}.json)")
    parser.add_argument("--quick", action="store_true", help="small knobs for CI")
    parser.add_argument("--no-warmup", action="store_true")
    for knob in ("records", "buffer_size", "row_groups_in_flight", "workers"):
        parser.add_argument(f"--{knob.replace('_', '-')}", type=int, default=None)
    for knob in ("latency_ms", "jitter_ms"):
        parser.add_argument(f"--{knob.replace('_', '-')}", type=float, default=None)
    parser.add_argument("--limit", type=_limit, action="append", default=[], help="provider/model=N")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    runs = check_runs(args.runs)
    overrides: dict[str, Any] = {
        knob: getattr(args, knob)
        for knob in ("records", "buffer_size", "row_groups_in_flight", "workers", "latency_ms", "jitter_ms")
        if getattr(args, knob) is not None
    }
    if args.limit:
        overrides["limits"] = dict(args.limit)
    knobs = knobs_for(quick=args.quick, overrides=overrides)
    result = run_benchmark(knobs, runs, warmup=not args.no_warmup)
    rows = [(policy, *(result["medians"][policy][metric]["median"] for metric in METRICS)) for policy in POLICIES]
    print_table(f"{SCENARIO} {knobs.as_dict()} (medians of {runs})", ("policy", *METRICS), rows)
    ratios, checks = result["ratios"], result["checks"]
    for name, value in ratios.items():
        print(f"  {name}: {value:.3f}")
    print("  checks: " + ", ".join(f"{name}={'ok' if ok else 'MISS'}" for name, ok in checks.items()))
    path = write_json(NAME, {key: value for key, value in result.items()}, args.out)
    print(f"  wrote {path}")
    return result


if __name__ == "__main__":
    main()
