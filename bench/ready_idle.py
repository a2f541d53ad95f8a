"""Ready-idle gap of the built-in demo: the share of the run during which ready work waited while capacity was free.

Each run is what ``threadsched demo`` does, minus the terminal output: the built-in demo recipe through
``run_recipe`` with the event log on, into a fresh temporary directory. The metric is then read back from
that run's ``events.jsonl`` by the project's own report code, exactly as ``threadsched report`` computes it
(``report.load_events`` + ``last_run``, then ``report.compute_metrics`` with ``run.json``'s capacity):
``ready_idle_gap_fraction`` = seconds in which a queued task would have fit the free workers and resource
units / the run's span. Nothing is compared with another implementation, so there is nothing to interleave;
the runs are repeated for a median. Target: median ready-idle gap <= 5% of the span.

    python bench/run.py ready_idle            # the demo as shipped (200 rows), 5 runs
    python bench/run.py ready_idle --quick    # 100 rows (CI)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from common import fmt_s, headline, interleave, phase_summaries, print_table, verdict
from engine import demo_recipe

from threadsched.engine import Recipe, run_recipe
from threadsched.report import EVENTS_FILE, RUN_FILE, ReportMetrics, compute_metrics, last_run, load_events

TARGET_FRACTION = 0.05
QUICK_RECORDS = 100


def run_metrics(out: Path) -> ReportMetrics:
    """The report's metrics of the run in ``out``, computed as ``threadsched report out`` does, without writing
    ``report.md`` or drawing the timeline."""
    events = last_run(load_events(out / EVENTS_FILE))
    capacity = json.loads((out / RUN_FILE).read_text(encoding="utf-8")).get("capacity", {})
    return compute_metrics(events, workers=capacity.get("workers"), resource_limits=capacity.get("resource_limits"))


def run_once(recipe: Recipe, workers: int | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-ready-idle-") as tmp:
        out = Path(tmp)
        start = time.perf_counter()
        result = run_recipe(recipe, out, workers=workers, event_log=True)
        wall = time.perf_counter() - start
        metrics = run_metrics(out)
    if result.early_shutdown or result.cancelled or result.hidden_waiters or result.final_active_leases:
        raise RuntimeError(f"the demo run was not healthy: {result!r}")
    return {
        "wall": wall,
        "ready_idle_gap_fraction": metrics.ready_idle_gap_fraction,
        "ready_idle_gap_seconds": metrics.ready_idle_gap_seconds,
        "span_seconds": metrics.span_seconds,
        "events": float(metrics.events),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--records", type=int, default=None, help=f"rows (default: the recipe's own; {QUICK_RECORDS} with --quick)"
    )
    parser.add_argument("--workers", "-w", type=int, default=None, help="worker threads (default: the recipe's run.max_workers)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    runs = args.runs
    recipe = demo_recipe(args.records if args.records is not None else QUICK_RECORDS if args.quick else None)
    samples = interleave(runs, {"demo": lambda: run_once(recipe, args.workers)})["demo"]
    summary = phase_summaries({"demo": samples})["demo"]
    median = summary["ready_idle_gap_fraction"]["median"]
    print_table(
        f"demo recipe, {recipe.run.records} rows, {args.workers or recipe.run.max_workers} workers, {runs} runs",
        ["run", "ready-idle gap %", "gap", "span", "run_recipe wall"],
        [
            [
                index + 1,
                f"{100 * sample['ready_idle_gap_fraction']:.2f}",
                fmt_s(sample["ready_idle_gap_seconds"]),
                fmt_s(sample["span_seconds"]),
                fmt_s(sample["wall"]),
            ]
            for index, sample in enumerate(samples)
        ],
    )
    print(
        f"  median ready-idle gap = {100 * median:.2f}% of the span (target <= {100 * TARGET_FRACTION:g}%) "
        f"{verdict(median, TARGET_FRACTION)}"
    )
    payload = {
        "description": (
            "built-in demo recipe with events on; ready-idle gap fraction of the span from each run's event log, "
            "computed by threadsched.report"
        ),
        "quick": args.quick,
        "records": recipe.run.records,
        "workers": args.workers or recipe.run.max_workers,
        "runs": runs,
        "results": summary,
        "per_run_ready_idle_gap_fraction": [sample["ready_idle_gap_fraction"] for sample in samples],
        "median_ready_idle_gap_fraction": median,
        "target": {"ready_idle_gap_fraction_max": TARGET_FRACTION},
        "meets_target": median <= TARGET_FRACTION,
        "headline": [
            headline(f"demo recipe ready-idle gap, % of the span, {recipe.run.records} rows", 100 * median, 100 * TARGET_FRACTION)
        ],
    }
    return payload
