"""The benchmarks' one front door: every benchmark and every harness scenario by name.

    python bench/run.py                         # the suite (SUITE below), each in its own interpreter
    python bench/run.py --quick                 # smaller sizes for a CI smoke run (still >= 5 runs each)
    python bench/run.py cycle memory --quick    # some of the suite's members, the same way
    python bench/run.py throughput --runs 5 --tasks 20000    # one benchmark, here, with its own options
    python bench/run.py leased_executor --help               # a benchmark's options
    python bench/run.py heavy_root --policies strict,bounded_borrow   # a harness scenario (bench/harness.py)
    python bench/run.py harness heavy_root --baseline main --candidate HEAD   # the same, spelled out; A/B

One NAME with options runs that benchmark in this interpreter and writes ``RESULTS_DIR/NAME.json`` (a
scenario: the harness's artifact directory, ``--out``). No NAME, or several, runs them as a suite: each in
a fresh interpreter (``bench/run.py NAME --runs N --quick ...``, so RSS and thread state are its own), and
one combined document with a headline table of every target goes to ``RESULTS_DIR/summary.json``
(``--out`` to override). Benchmarks report; a missed target never fails the run (``--strict`` exits 1 when
one is missed; a benchmark that crashed exits 2). ``threadsched bench ARGS`` runs ``bench/run.py ARGS``.
"""

from __future__ import annotations

import importlib
import itertools
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import BENCH_DIR, base_parser, check_runs, headline, print_headline, write_json
from scenarios import SCENARIOS

# benchmark -> (module, function); the module's ``add_arguments(parser)`` adds its options to ``base_parser``
BENCHMARKS = {
    "cycle": ("cycle", "run"),
    "throughput": ("throughput", "run"),
    "leased_executor": ("throughput", "run_leased_executor"),
    "asyncio_to_thread": ("asyncio_to_thread", "run"),
    "profile_throughput": ("profile_throughput", "run"),
    "memory": ("memory", "run"),
    "engine": ("engine", "run"),
    "ready_idle": ("ready_idle", "run"),
    "request_admission": ("request_admission", "run"),
    "dask_backend": ("dask_backend", "run"),
    "floor": ("floor", "run"),
}
# what runs without NAME: dask_backend needs dask, cross_provider_cooldown takes ~3 minutes, the profiler has no target
SUITE = (
    "cycle",
    "throughput",
    "memory",
    "engine",
    "heavy_root",
    "request_admission",
    "saturated_root",
    "two_resource_mix",
    "leased_executor",
    "asyncio_to_thread",
    "ready_idle",
    "floor",
)
NAMES = (*BENCHMARKS, *SCENARIOS)


def run_benchmark(name: str, argv: Sequence[str]) -> int:
    """One benchmark or harness scenario in this interpreter; its exit code."""
    if name == "harness" or name in SCENARIOS:
        import harness

        return harness.run(list(argv) if name == "harness" else [name, *argv])
    module_name, function = BENCHMARKS[name]
    module = importlib.import_module(module_name)
    parser = base_parser(name, (module.__doc__ or name).splitlines()[0])
    module.add_arguments(parser)
    args = parser.parse_args(argv)
    check_runs(args.runs)
    payload = getattr(module, function)(args)
    path = write_json(name, payload, args.out or args.results_dir / f"{name}.json")
    print(f"wrote {path}")
    return 0


def suite_command(name: str, runs: int, quick: bool, out: Path) -> list[str]:
    return [sys.executable, str(BENCH_DIR / "run.py"), name, "--runs", str(runs), "--out", str(out), *(["--quick"] * quick)]


def harness_rows(name: str, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """A scenario's headline: threadsched's gap against fifo, its reported targets, its gates."""
    from harness_report import HEAVY_ROOT_GAP_FACTOR

    rows: list[dict[str, Any]] = []
    gap = summary["ratios"].get("fifo", {}).get("downstream_gap_p95_s", {}).get("baseline_over_threadsched")
    if gap is not None:
        metric = f"{name}: fifo / threadsched p95 downstream ready-to-lease gap"
        rows.append(headline(metric, gap, HEAVY_ROOT_GAP_FACTOR, higher_is_better=True))
    for entry in summary["targets"]:
        if entry["value"] is not None:
            higher = entry["comparison"] == ">="
            rows.append(headline(f"{name}: {entry['name']}", entry["value"], entry["threshold"], higher_is_better=higher))
    gates = summary["gates"]
    passed = float(sum(1 for gate in gates if gate["passed"]))
    rows.append(headline(f"{name}: gates passed (of {len(gates)})", passed, len(gates), higher_is_better=True))
    return rows


def headline_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        row
        for name, result in results.items()
        for row in (harness_rows(name, result) if name in SCENARIOS else result.get("headline", []))
    ]


def run_suite(argv: Sequence[str]) -> int:
    parser = base_parser("", __doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"default: {' '.join(SUITE)}")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    runs = check_runs(args.runs)
    unknown = [name for name in args.names if name not in NAMES]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown} (known: {', '.join(NAMES)})")
    results: dict[str, Any] = {}
    durations: dict[str, float] = {}
    failures: dict[str, int] = {}
    for name in args.names or SUITE:
        out = args.results_dir / (name if name in SCENARIOS else f"{name}.json")
        document = out / "summary.json" if name in SCENARIOS else out
        document.unlink(missing_ok=True)  # a stale result must not pass for a new one
        command = suite_command(name, runs, args.quick, out)
        print(f"== {name}: {' '.join(command[1:])}", flush=True)
        start = time.perf_counter()
        code = subprocess.run(command, check=False).returncode
        durations[name] = time.perf_counter() - start
        if code not in (0, 1) or not document.exists():  # 1: a failed harness gate, a missed target (in the headline)
            failures[name] = code
            print(f"!! {name} exited with {code}", flush=True)
            continue
        results[name] = json.loads(document.read_text())
    rows = headline_rows(results)
    print_headline("benchmark summary", rows)
    summary = {
        "quick": args.quick,
        "runs": runs,
        "headline": rows,
        "all_targets_met": bool(rows) and all(row["meets_target"] for row in rows) and not failures,
        "failures": failures,
        "durations_seconds": durations,
        "results": results,
    }
    path = write_json("summary", summary, args.out or args.results_dir / "summary.json")
    print(f"wrote {path}")
    if failures:
        return 2
    return 1 if args.strict and not summary["all_targets_met"] else 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    names = list(itertools.takewhile(lambda item: item in NAMES or item == "harness", argv))
    if len(names) == 1 or names[:1] == ["harness"]:
        return run_benchmark(names[0], argv[1:])
    return run_suite(argv)


if __name__ == "__main__":
    sys.exit(main())
