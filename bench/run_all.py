"""Run every benchmark (each in its own interpreter) and write one combined JSON.

    python bench/run_all.py                 # full: cycle, throughput (50k), memory (100k / 256 groups), engine,
                                            # harness (bench/harness.py heavy_root vs its fifo/spawn_then_wait baselines),
                                            # requests (adaptive request admission vs a rate-limited mock server),
                                            # the policies, leased_executor (50k), asyncio_to_thread (20k calls),
                                            # ready_idle (the demo recipe's ready-idle gap)
    python bench/run_all.py --quick         # smaller sizes for a CI smoke run (still >= 5 runs each)

Each benchmark writes ``bench/results/<name>.json`` as usual (or ``<results-dir>/<name>.json``); the
combined document, with a headline table of every target, goes to ``bench/results/summary.json``
(``--out`` to override). Benchmarks report; they never fail the run because a target was missed.
Pass ``--strict`` to exit non-zero when a target is missed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import BENCH_DIR, RESULTS_DIR, base_parser, check_runs, machine_info, print_table, result_path

NAME = "summary"


def benchmark_commands(quick: bool, runs: int, results_dir: Path) -> dict[str, list[str]]:
    def script(name: str, *extra: str) -> list[str]:
        out = results_dir / f"{name}.json"
        return [sys.executable, str(BENCH_DIR / f"{name}.py"), "--runs", str(runs), "--out", str(out), *extra]

    def harness(scenario: str, *extra: str) -> list[str]:
        # bench/harness.py writes a directory of artifacts; its summary.json is read below
        out = results_dir / "harness" / scenario
        return [sys.executable, str(BENCH_DIR / "harness.py"), scenario, "--iterations", str(runs), "--out", str(out), *extra]

    if quick:
        return {
            "cycle": script("cycle", "--quick"),
            "throughput": script("throughput", "--tasks", "20000"),
            "memory": script("memory", "--tasks", "20000"),
            "engine": script("engine", "--quick"),
            "harness": harness("heavy_root", "--quick"),
            "requests": script("request_admission", "--quick"),
            "policy_bounded_borrow": harness("saturated_root", "--quick"),
            "policy_drf": harness("two_resource_mix", "--quick"),
            "leased_executor": script("leased_executor", "--quick"),
            "asyncio_to_thread": script("asyncio_to_thread", "--quick"),
            "ready_idle": script("ready_idle", "--quick"),
        }
    return {
        "cycle": script("cycle"),
        "throughput": script("throughput"),
        "memory": script("memory"),
        "engine": script("engine"),
        "harness": harness("heavy_root"),
        "requests": script("request_admission"),
        "policy_bounded_borrow": harness("saturated_root"),
        "policy_drf": harness("two_resource_mix"),
        "leased_executor": script("leased_executor"),
        "asyncio_to_thread": script("asyncio_to_thread"),
        "ready_idle": script("ready_idle"),
    }


def headline(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cycle = results.get("cycle")
    if cycle:
        for n, ratio in cycle["ratio_g256_over_g1_by_n"].items():
            rows.append(
                {
                    "metric": f"cycle p50(G=256)/p50(G=1), N={n}",
                    "value": ratio,
                    "target": cycle["target"]["ratio_g256_over_g1_max"],
                }
            )
    throughput = results.get("throughput")
    if throughput:
        rows.append(
            {
                "metric": f"throughput scheduler/baseline, {throughput['tasks']} tasks, W={throughput['workers']}",
                "value": throughput["ratio_scheduler_over_baseline"],
                "target": throughput["target"]["ratio_max"],
            }
        )
    memory = results.get("memory")
    if memory:
        if memory.get("at_target_size", True):
            metric = f"memory peak RSS MB, {memory['tasks']} queued / {memory['groups']} groups"
            value = memory["peak_rss_mb"]
        else:
            metric = f"memory held RSS MB projected to 100k (measured at {memory['tasks']} / {memory['groups']} groups)"
            value = memory["projected_held_rss_mb_at_100k"]
        rows.append({"metric": metric, "value": value, "target": memory["target"]["peak_rss_mb_max"]})
    engine = results.get("engine")
    if engine:
        overhead, pipeline = engine.get("overhead"), engine.get("pipeline")
        if overhead:
            rows.append(
                {
                    "metric": f"engine per cell / bare Scheduler per no-op task, {overhead['records']} rows",
                    "value": overhead["ratio_engine_per_cell_over_bare_per_task"],
                    "target": engine["target"]["overhead_ratio_max"],
                }
            )
        if pipeline:
            rows.append(
                {
                    "metric": f"engine speedup vs column-by-column baseline, {pipeline['records']} rows",
                    "value": pipeline["speedup_engine_vs_column_baseline"],
                    "target": engine["target"]["speedup_min"],
                    "higher_is_better": True,
                }
            )
    harness = results.get("harness")
    if harness:
        scenario = harness["scenario"]["id"]
        gap = harness["ratios"].get("fifo", {}).get("downstream_gap_p95_s", {}).get("baseline_over_threadsched")
        if gap is not None:
            rows.append(
                {
                    "metric": f"harness {scenario}: fifo / threadsched p95 downstream ready-to-lease gap",
                    "value": gap,
                    "target": 3.0,
                    "higher_is_better": True,
                }
            )
        passed = sum(1 for gate in harness["gates"] if gate["passed"])
        rows.append(
            {
                "metric": f"harness {scenario}: gates passed (of {len(harness['gates'])})",
                "value": float(passed),
                "target": len(harness["gates"]),
                "higher_is_better": True,
            }
        )
    requests = results.get("requests")
    if requests:
        params = requests["params"]
        window = f"{params['window_s']:g} s window after {params['warmup_s']:g} s warm-up"
        if requests.get("quick"):
            window += " (quick: the window holds the descent from the cap)"
        rows.append(
            {
                "metric": f"requests: throughput / R, R={params['rps']:g} rps, {window}",
                "value": requests["median_throughput_ratio"],
                "target": requests["target"]["throughput_ratio_min"],
                "higher_is_better": True,
            }
        )
        rows.append(
            {
                "metric": f"requests: 429s as % of attempts, {window}",
                "value": 100.0 * requests["median_rate_limited_share"],
                "target": 100.0 * requests["target"]["rate_limited_share_max"],
            }
        )
    rows.extend(policy_rows(results))
    leased = results.get("leased_executor")
    if leased:
        rows.append(
            {
                "metric": f"LeasedExecutor / ThreadPoolExecutor wall, {leased['tasks']} no-op tasks, W={leased['workers']}",
                "value": leased["ratio_leased_over_threadpool"],
                "target": leased["target"]["ratio_max"],
            }
        )
    to_thread = results.get("asyncio_to_thread")
    if to_thread:
        rows.append(
            {
                "metric": (
                    f"asyncio.to_thread, LeasedExecutor / ThreadPoolExecutor default executor wall, "
                    f"{to_thread['calls']} calls, W={to_thread['workers']}"
                ),
                "value": to_thread["ratio_leased_over_threadpool"],
                "target": to_thread["target"]["ratio_max"],
            }
        )
    ready_idle = results.get("ready_idle")
    if ready_idle:
        rows.append(
            {
                "metric": f"demo recipe ready-idle gap, % of the span, {ready_idle['records']} rows",
                "value": 100.0 * ready_idle["median_ready_idle_gap_fraction"],
                "target": 100.0 * ready_idle["target"]["ready_idle_gap_fraction_max"],
            }
        )
    for row in rows:
        if row.get("higher_is_better"):
            row["meets_target"] = row["value"] >= row["target"]
        else:
            row["meets_target"] = row["value"] <= row["target"]
    return rows


def policy_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The admission-policy rows: each policy against strict on its own workload, in the same run."""
    rows: list[dict[str, Any]] = []
    for name in ("policy_bounded_borrow", "policy_drf"):
        for entry in results.get(name, {}).get("targets", []):
            if entry["value"] is not None:
                higher = entry["comparison"] == ">="
                rows.append(
                    {"metric": entry["name"], "value": entry["value"], "target": entry["threshold"], "higher_is_better": higher}
                )
    return rows


def target_text(row: dict[str, Any]) -> str:
    return f">= {row['target']}" if row.get("higher_is_better") else f"<= {row['target']}"


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(NAME, __doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes for CI smoke runs")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where each benchmark's JSON goes")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=(
            "cycle",
            "throughput",
            "memory",
            "engine",
            "harness",
            "requests",
            "policy_bounded_borrow",
            "policy_drf",
            "leased_executor",
            "asyncio_to_thread",
            "ready_idle",
        ),
        default=None,
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    runs = check_runs(args.runs)
    commands = benchmark_commands(args.quick, runs, args.results_dir)
    if args.only:
        commands = {name: command for name, command in commands.items() if name in args.only}
    results: dict[str, Any] = {}
    durations: dict[str, float] = {}
    failures: dict[str, int] = {}
    for name, command in commands.items():
        print(f"== {name}: {' '.join(command[1:])}", flush=True)
        out = Path(command[command.index("--out") + 1])
        harness = command[1].endswith("harness.py")
        if harness:  # bench/harness.py writes a directory; a stale summary must not pass for a new one
            out = out / "summary.json"
            out.unlink(missing_ok=True)
        start = time.perf_counter()
        completed = subprocess.run(command, check=False)
        durations[name] = time.perf_counter() - start
        if harness and completed.returncode == 1 and out.exists():
            completed.returncode = 0  # a failed gate is a missed target (in the headline), not a crash
        if completed.returncode != 0:
            failures[name] = completed.returncode
            print(f"!! {name} exited with {completed.returncode}", flush=True)
            continue
        results[name] = json.loads(out.read_text())
    rows = headline(results)
    print_table(
        "benchmark summary",
        ["metric", "value", "target", "ok"],
        [[row["metric"], f"{row['value']:.2f}", target_text(row), "ok" if row["meets_target"] else "MISS"] for row in rows],
    )
    document = {
        "benchmark": NAME,
        "machine": machine_info(),
        "quick": args.quick,
        "runs": runs,
        "headline": rows,
        "all_targets_met": bool(rows) and all(row["meets_target"] for row in rows) and not failures,
        "failures": failures,
        "durations_seconds": durations,
        "results": results,
    }
    path = result_path(NAME, args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(f"wrote {path}")
    if failures:
        return 2
    if args.strict and not document["all_targets_met"]:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
