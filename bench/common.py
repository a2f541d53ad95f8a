"""Shared helpers of the benchmark modules in ``bench/``.

The modules are not an installed package: ``bench/run.py`` (the front door) puts its own directory on
``sys.path`` and imports them by name. Nothing here asserts on times: benchmarks report numbers and compare
them with targets, they never fail a test run because a machine was slow.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
DEFAULT_RUNS = 5
MIN_RUNS = 5
WARMUP_SIZE = 2_000  # units per untimed warm-up call in compare_with_baseline


def summarize(samples: Sequence[float]) -> dict[str, Any]:
    """Median, min and max of ``samples`` (and the samples themselves, for the JSON)."""
    if not samples:
        raise ValueError("summarize() needs at least one sample")
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "runs": len(samples),
        "samples": list(samples),
    }


def interleave(
    runs: int, implementations: Mapping[str, Callable[[], dict[str, Any]]], label: str = ""
) -> dict[str, list[dict[str, Any]]]:
    """Each implementation once per run, the order alternating run by run (so they share the machine's
    noise); a garbage collection before each, outside its timing. Samples must have a ``wall`` entry."""
    names = list(implementations)
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for run in range(runs):
        for name in names if run % 2 == 0 else names[::-1]:
            gc.collect()
            sample = implementations[name]()
            samples[name].append(sample)
            print(f"  {label}run {run + 1}/{runs} {name:18s} wall {fmt_s(sample['wall'])}", flush=True)
    return samples


def phase_summaries(samples: Mapping[str, list[dict[str, float]]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per implementation, ``summarize`` of every timed phase its samples report."""
    return {name: {phase: summarize([sample[phase] for sample in runs]) for phase in runs[0]} for name, runs in samples.items()}


def check_runs(runs: int) -> int:
    if runs < MIN_RUNS:
        raise SystemExit(f"--runs must be >= {MIN_RUNS} (medians need at least {MIN_RUNS} runs), got {runs}")
    return runs


def _git(*command: str) -> str | None:
    """The output of ``git COMMAND`` in the repository, or None when git or the repository is missing."""
    try:
        result = subprocess.run(["git", *command], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def git_sha() -> str | None:
    """``git rev-parse HEAD`` of the repository (None without git or a commit)."""
    return _git("rev-parse", "HEAD") or None


def git_dirty() -> bool | None:
    """True when the working tree has uncommitted changes (the numbers are then not of ``git_sha``)."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return None if status is None else bool(status)


def machine_info() -> dict[str, Any]:
    try:
        import threadsched

        version: str | None = threadsched.__version__
    except Exception:  # pragma: no cover - the benchmarks need it anyway
        version = None
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "cpu_count": os.cpu_count(),
        "affinity_cpu_count": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "threadsched_version": version,
        "git_sha": git_sha(),
        "git_dirty": git_dirty(),
        "timestamp_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def base_parser(name: str, description: str) -> argparse.ArgumentParser:
    """The options every benchmark of ``bench/run.py`` takes; a benchmark module adds its own."""
    parser = argparse.ArgumentParser(prog=f"bench/run.py {name}".strip(), description=description)
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help=f"runs per configuration (>= {MIN_RUNS})")
    parser.add_argument("--quick", action="store_true", help="small sizes for a CI smoke run (still >= 5 runs)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the JSON goes (default bench/results)")
    parser.add_argument("--out", type=Path, default=None, help="JSON output path (default: RESULTS_DIR/NAME.json)")
    return parser


def write_json(name: str, payload: Mapping[str, Any], path: Path) -> Path:
    """Write ``payload`` with the benchmark's name and the machine info first to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"benchmark": name, "machine": machine_info(), **payload}
    path.write_text(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")
    return path


def headline(metric: str, value: float, target: float, *, higher_is_better: bool = False) -> dict[str, Any]:
    """One row of a benchmark's headline: a number and its target (the suite's summary collects them)."""
    row = {"metric": metric, "value": value, "target": target, "higher_is_better": higher_is_better}
    return {**row, "meets_target": value >= target if higher_is_better else value <= target}


def print_headline(title: str, rows: Iterable[Mapping[str, Any]]) -> None:
    table = []
    for row in rows:
        target = f"{'>=' if row['higher_is_better'] else '<='} {row['target']}"
        table.append([row["metric"], f"{row['value']:.2f}", target, "ok" if row["meets_target"] else "MISS"])
    print_table(title, ["metric", "value", "target", "ok"], table)


def verdict(value: float, target: float) -> str:
    return "ok" if value <= target else "MISS"


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Print a compact, aligned table; floats are shown with 4 significant digits."""
    text_rows = [[_cell(value) for value in row] for row in rows]
    widths = [len(column) for column in columns]
    for row in text_rows:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))
    print(title)
    print("  " + "  ".join(column.rjust(width) for column, width in zip(columns, widths, strict=True)))
    for row in text_rows:
        print("  " + "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
    sys.stdout.flush()


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def fmt_us(seconds: float) -> str:
    return f"{seconds * 1e6:.2f} us"


def fmt_s(seconds: float) -> str:
    return f"{seconds:.3f} s"


def fmt_mb(num_bytes: float) -> str:
    return f"{num_bytes / 2**20:.1f} MB"


def compare_with_baseline(
    runners: Mapping[str, Callable[[int], dict[str, float]]],
    *,
    size: int,
    unit: str,
    runs: int,
    target: float,
    title: str,
    metric: str,
    extra_phases: Sequence[str] = (),
    params: Mapping[str, Any],
) -> dict[str, Any]:
    """Time a candidate against its baseline, print the medians and their ratio; returns the payload.

    ``runners`` holds exactly two entries, candidate first, baseline second; each is called with the
    number of ``unit`` (tasks, calls) to run and returns one sample with at least ``wall`` and ``cpu``.
    ``extra_phases`` are further sample entries shown as table columns. ``params`` are the document's
    leading entries (description, sizes); the ratios, target and verdict follow them; ``metric`` names
    the ratio in the headline.
    """
    candidate, baseline = runners
    for runner in runners.values():  # warm-up (imports, first-use code paths), untimed
        runner(min(size, WARMUP_SIZE))
    summaries = phase_summaries(interleave(runs, {impl: functools.partial(runner, size) for impl, runner in runners.items()}))
    ratio = summaries[candidate]["wall"]["median"] / summaries[baseline]["wall"]["median"]
    cpu_ratio = summaries[candidate]["cpu"]["median"] / summaries[baseline]["cpu"]["median"]
    rows = []
    for impl, phases in summaries.items():
        wall = phases["wall"]
        rows.append(
            [
                impl,
                fmt_s(wall["median"]),
                fmt_s(wall["min"]),
                fmt_s(wall["max"]),
                f"{size / wall['median']:,.0f}/s",
                fmt_s(phases["cpu"]["median"]),
                *(fmt_s(phases[phase]["median"]) for phase in extra_phases),
            ]
        )
    columns = ["impl", "wall p50", "min", "max", f"{unit}/s", "cpu p50", *(f"{phase} p50" for phase in extra_phases)]
    print_table(title, columns, rows)
    pair = f"{candidate}/{baseline}"
    print(f"  {pair} wall = {ratio:.2f} (target <= {target}) {verdict(ratio, target)}")
    print(f"  {pair} cpu  = {cpu_ratio:.2f} (process CPU time, all threads; informational)")
    payload = {
        **params,
        "runs": runs,
        "results": summaries,
        f"ratio_{candidate}_over_{baseline}": ratio,
        f"cpu_ratio_{candidate}_over_{baseline}": cpu_ratio,
        "target": {"ratio_max": target},
        "meets_target": ratio <= target,
        "headline": [headline(metric, ratio, target)],
    }
    return payload
