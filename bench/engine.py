"""Engine: scheduler overhead per cell task, and wall time vs. a column-by-column baseline.

Two measurements, each with its baseline in the same process and interleaved run by run (which side goes
first alternates), medians of ``--runs`` (>= 5) runs:

* ``overhead``: the built-in demo recipe with every mock latency, jitter and failure rate set to 0 and
  ``records`` raised (10k by default), run by ``run_recipe``. Engine cost per cell task = wall time of the
  whole ``run_recipe`` call (compile, scheduling, processors, checkpoint files, ``dataset.jsonl``) / the
  number of cell tasks it submitted. The reference is the bare ``Scheduler``: ``--noop-tasks`` no-op
  submits with the same worker count, wall from the first submit until every future is done, / tasks.
  Target: engine per cell <= 3 x bare per task. (The per-task figure over *all* submitted tasks, row-group
  sampler batches included, is reported too.)
* ``pipeline``: the demo recipe as shipped (10/30 ms mock latencies with jitter and retryable failures)
  with ``records`` set to ``--pipeline-records`` (400). ``run_recipe`` vs. a column-by-column baseline
  implemented here: the engine's own compiled executors (``build_endpoints`` / ``compile_columns``, real
  ``time.sleep`` latency), one plain ``ThreadPoolExecutor`` with the same worker count, each column
  finished for every row before the next column starts. Like the engine, the baseline honours the
  recipe's per-model limits (``llm:<provider>/<model>``: a semaphore gates submissions of that column),
  applies the pre/post-batch processors per row group, and retries retryable failures (inline, with the
  same attempt budget). Its output hash must equal the engine's, or the benchmark fails. Target: baseline
  wall / engine wall >= 1.5. A baseline *without* the per-model limits (which over-subscribes the mock
  providers) is measured too, for information only.

    python bench/run.py engine               # 10k-row overhead, 400-row pipeline, 5 runs each
    python bench/run.py engine --quick       # CI smoke run: 1k rows / 10k no-op tasks / 60-row pipeline
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import gc
import hashlib
import re
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import fmt_s, fmt_us, headline, interleave, print_headline, print_table, summarize
from throughput import run_scheduler

from threadsched.engine import (
    BatchExecutor,
    CellExecutor,
    Recipe,
    build_endpoints,
    builtin_recipe_text,
    compile_columns,
    parse_recipe,
    run_recipe,
)
from threadsched.engine.reference import Failure, default_max_attempts, with_retries
from threadsched.engine.runner.output import apply_stage, compile_stage, row_group_range, row_line
from threadsched.engine.runner.rows import ancestors as column_ancestors

TARGET_OVERHEAD_RATIO_MAX = 3.0
TARGET_SPEEDUP_MIN = 1.5


# -- recipes -------------------------------------------------------------------------------------------


def _substitute(text: str, key: str, value: str) -> str:
    pattern = re.compile(rf"^({re.escape(key)}\s*=\s*)[^#\n]*?(\s*(#.*)?)$", re.MULTILINE)
    new, count = pattern.subn(lambda m: f"{m.group(1)}{value}{m.group(2)}", text)
    if count == 0:
        raise SystemExit(f"bench/engine.py: the demo recipe has no '{key} = ...' line to substitute")
    return new


def demo_recipe(records: int | None = None, *, zero_latency: bool = False) -> Recipe:
    """The built-in demo recipe with ``records`` rows (None: as ``threadsched demo`` runs it); with
    ``zero_latency`` all mock latency/failures are 0."""
    if records is None and not zero_latency:
        return parse_recipe(builtin_recipe_text("demo"), source="demo")
    text = builtin_recipe_text("demo") if records is None else _substitute(builtin_recipe_text("demo"), "records", str(records))
    if zero_latency:
        for key in ("latency_ms", "jitter_ms"):
            text = _substitute(text, key, "0")
        for key in ("failure_rate", "fatal_rate"):
            text = _substitute(text, key, "0.0")
    recipe = parse_recipe(text, source=f"<demo records={records} zero_latency={zero_latency}>")
    if zero_latency:
        for name, provider in recipe.providers.items():
            values = (provider.latency_ms, provider.jitter_ms, provider.failure_rate, provider.fatal_rate)
            if any(values):
                raise SystemExit(f"bench/engine.py: provider {name!r} still has latency/failures {values!r}")
    return recipe


# -- engine runs -------------------------------------------------------------------------------------------


def run_engine(recipe: Recipe, workers: int, *, sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    executors = compile_columns(recipe, build_endpoints(recipe))
    batch_columns = sum(1 for ex in executors.values() if isinstance(ex, BatchExecutor))
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as out:
        gc.collect()
        c0, t0 = time.process_time(), time.perf_counter()
        result = run_recipe(recipe, Path(out), workers=workers, sleep=sleep)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if result.hidden_waiters or result.final_active_leases or not result.shutdown_clean:
        raise RuntimeError(f"engine run was not healthy: {result!r}")
    submitted = int(result.counters["tasks_submitted"])
    # Root sampler batches: one task per row group per batch column (none are retried: samplers do not fail).
    row_groups = -(-recipe.run.records // recipe.run.buffer_size)
    cell_tasks = submitted - batch_columns * row_groups
    return {
        "wall": wall,
        "cpu": cpu,
        "engine_elapsed": result.elapsed,
        "tasks_submitted": submitted,
        "cell_tasks": cell_tasks,
        "rows_written": result.rows_written,
        "rows_dropped": len(result.dropped),
        "salvage_rounds": result.salvage_rounds,
        "output_hash": result.output_hash,
    }


# -- the column-by-column baseline -------------------------------------------------------------------------


def run_column_baseline(recipe: Recipe, workers: int, *, honour_limits: bool = True) -> dict[str, Any]:
    """Every column finished for all rows before the next starts, on one ``ThreadPoolExecutor(workers)``."""
    executors = compile_columns(recipe, build_endpoints(recipe, sleep=time.sleep))
    pre, post = compile_stage(recipe, "pre_batch"), compile_stage(recipe, "post_batch")
    max_attempts = default_max_attempts(recipe)
    ancestors = column_ancestors(recipe)
    groups = -(-recipe.run.records // recipe.run.buffer_size)
    roots = [name for name in recipe.topological_order if recipe.column(name).is_root]
    others = [name for name in recipe.topological_order if not recipe.column(name).is_root]
    rows: dict[int, dict[str, object]] = {index: {} for index in range(recipe.run.records)}
    dropped: dict[int, str] = {}

    def inputs(name: str, index: int) -> dict[str, object]:
        wanted = ancestors[name]
        return {column: value for column, value in rows[index].items() if column in wanted}

    def cell_task(executor: CellExecutor, row: dict[str, object]) -> Any:
        return with_retries(executor, lambda attempt: executor.run_cell(row, attempt=attempt), max_attempts)

    def batch_task(executor: BatchExecutor, batch: list[tuple[int, dict[str, object]]]) -> Any:
        return with_retries(executor, lambda _attempt: executor.run_batch_rows(batch), max_attempts)

    gc.collect()
    c0, t0 = time.process_time(), time.perf_counter()
    with cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bench-columns") as pool:
        for stage_columns, processors, stage in ((roots, pre, "pre_batch"), (others, post, "post_batch")):
            for name in stage_columns:
                executor = executors[name]
                limit = recipe.resource_limits.get(executor.resource) if executor.resource else None
                gate = threading.BoundedSemaphore(min(limit, workers)) if honour_limits and limit else None
                futures: dict[cf.Future[Any], list[int]] = {}

                def submit(fn: Callable[..., Any], *args: Any, gate: threading.BoundedSemaphore | None = gate) -> cf.Future[Any]:
                    if gate is None:
                        return pool.submit(fn, *args)
                    gate.acquire()
                    future = pool.submit(fn, *args)
                    future.add_done_callback(lambda _f: gate.release())
                    return future

                if isinstance(executor, BatchExecutor):
                    for group in range(groups):
                        members = [index for index in row_group_range(recipe, group) if index in rows]
                        if members:
                            batch = [(index, inputs(name, index)) for index in members]
                            futures[submit(batch_task, executor, batch)] = members
                else:
                    assert isinstance(executor, CellExecutor)
                    for index in sorted(rows):
                        futures[submit(cell_task, executor, inputs(name, index))] = [index]
                cf.wait(futures)  # the whole column is done before the next one starts
                for future, members in futures.items():
                    value = future.result()
                    if isinstance(value, Failure):
                        for index in members:
                            dropped[index] = value.reason
                            del rows[index]
                    elif isinstance(executor, BatchExecutor):
                        for index in members:
                            rows[index][name] = value[index]
                    else:
                        rows[members[0]][name] = value
            for group in range(groups):
                group_rows = [(index, rows[index]) for index in row_group_range(recipe, group) if index in rows]
                for index, reason in apply_stage(processors, group_rows, stage).items():
                    dropped[index] = reason
                    del rows[index]
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    data = "".join(row_line(index, values) + "\n" for index, values in sorted(rows.items())).encode("utf-8")
    return {
        "wall": wall,
        "cpu": cpu,
        "rows_written": len(rows),
        "rows_dropped": len(dropped),
        "output_hash": hashlib.sha256(data).hexdigest(),
    }


# -- measurement -------------------------------------------------------------------------------------------


def phase_summary(samples: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: summarize([float(sample[key]) for sample in samples]) for key in keys}


def measure_overhead(records: int, noop_tasks: int, workers: int, runs: int) -> dict[str, Any]:
    recipe = demo_recipe(records, zero_latency=True)
    # Warm-up (imports, first thread start-ups), untimed.
    run_engine(demo_recipe(min(records, 400), zero_latency=True), workers)
    run_scheduler(min(noop_tasks, 2_000), workers)
    samples = interleave(
        runs,
        {"engine": lambda: run_engine(recipe, workers), "bare_scheduler": lambda: run_scheduler(noop_tasks, workers)},
        "overhead ",
    )
    hashes = {sample["output_hash"] for sample in samples["engine"]}
    if len(hashes) != 1:
        raise RuntimeError(f"zero-latency engine runs disagree on the output hash: {sorted(hashes)}")
    cells = {sample["cell_tasks"] for sample in samples["engine"]}
    for sample in samples["engine"]:
        sample["per_cell"] = sample["wall"] / sample["cell_tasks"]
        sample["per_task"] = sample["wall"] / sample["tasks_submitted"]
    for sample in samples["bare_scheduler"]:
        sample["per_task"] = sample["wall"] / noop_tasks
    engine = phase_summary(samples["engine"], ("wall", "cpu", "engine_elapsed", "per_cell", "per_task"))
    bare = phase_summary(samples["bare_scheduler"], ("wall", "cpu", "per_task"))
    ratio = engine["per_cell"]["median"] / bare["per_task"]["median"]
    return {
        "records": records,
        "workers": workers,
        "noop_tasks": noop_tasks,
        "cell_tasks": sorted(cells),
        "tasks_submitted": sorted({sample["tasks_submitted"] for sample in samples["engine"]}),
        "rows_written": samples["engine"][0]["rows_written"],
        "output_hash": hashes.pop(),
        "engine": engine,
        "bare_scheduler": bare,
        "ratio_engine_per_cell_over_bare_per_task": ratio,
        "ratio_engine_per_task_over_bare_per_task": engine["per_task"]["median"] / bare["per_task"]["median"],
        "meets_target": ratio <= TARGET_OVERHEAD_RATIO_MAX,
    }


def measure_pipeline(records: int, workers: int, runs: int) -> dict[str, Any]:
    recipe = demo_recipe(records, zero_latency=False)
    run_engine(demo_recipe(min(records, 40), zero_latency=False), workers)  # warm-up, untimed
    samples = interleave(
        runs,
        {
            "engine": lambda: run_engine(recipe, workers),
            "column_baseline": lambda: run_column_baseline(recipe, workers, honour_limits=True),
            "column_baseline_nolim": lambda: run_column_baseline(recipe, workers, honour_limits=False),
        },
        "pipeline ",
    )
    hashes = {name: {sample["output_hash"] for sample in items} for name, items in samples.items()}
    if any(found != hashes["engine"] for found in hashes.values()) or len(hashes["engine"]) != 1:
        raise RuntimeError(f"pipeline output hashes differ between implementations: {hashes}")
    summaries = {name: phase_summary(items, ("wall", "cpu")) for name, items in samples.items()}
    engine_wall = summaries["engine"]["wall"]["median"]
    speedup = summaries["column_baseline"]["wall"]["median"] / engine_wall
    speedup_nolim = summaries["column_baseline_nolim"]["wall"]["median"] / engine_wall
    return {
        "records": records,
        "workers": workers,
        "resource_limits": dict(recipe.resource_limits),
        "rows_written": samples["engine"][0]["rows_written"],
        "rows_dropped": samples["engine"][0]["rows_dropped"],
        "output_hash": next(iter(hashes["engine"])),
        "results": summaries,
        "speedup_engine_vs_column_baseline": speedup,
        "speedup_engine_vs_column_baseline_without_limits": speedup_nolim,
        "meets_target": speedup >= TARGET_SPEEDUP_MIN,
    }


def _walls(phases: dict[str, Any]) -> list[str]:
    return [fmt_s(phases["wall"][stat]) for stat in ("median", "min", "max")]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--records", type=int, default=None, help="rows of the zero-latency recipe (default 10000)")
    parser.add_argument("--noop-tasks", type=int, default=None, help="no-op tasks of the bare scheduler (default 100000)")
    parser.add_argument("--pipeline-records", type=int, default=None, help="rows of the realistic recipe (default 400)")
    parser.add_argument("--workers", "-w", type=int, default=None, help="worker threads (default: the recipe's max_workers)")
    parser.add_argument("--skip", choices=("overhead", "pipeline"), default=None, help="skip one of the two measurements")


def run(args: argparse.Namespace) -> dict[str, Any]:
    runs = args.runs
    records = args.records or (1_000 if args.quick else 10_000)
    noop_tasks = args.noop_tasks or (10_000 if args.quick else 100_000)
    pipeline_records = args.pipeline_records or (60 if args.quick else 400)
    workers = args.workers or parse_recipe(builtin_recipe_text("demo")).run.max_workers

    payload: dict[str, Any] = {
        "description": "engine overhead per cell vs bare Scheduler no-op per task; engine vs column-by-column baseline",
        "quick": args.quick,
        "runs": runs,
        "workers": workers,
        "target": {"overhead_ratio_max": TARGET_OVERHEAD_RATIO_MAX, "speedup_min": TARGET_SPEEDUP_MIN},
        "headline": [],
    }
    if args.skip != "overhead":
        overhead = measure_overhead(records, noop_tasks, workers, runs)
        payload["overhead"] = overhead
        print_table(
            f"overhead: zero-latency demo, {records} rows ({overhead['cell_tasks'][0]} cell tasks) vs {noop_tasks} "
            f"no-op submits, W={workers}, medians of {runs}",
            ["impl", "wall p50", "min", "max", "per task p50", "cpu p50"],
            [
                [label, *_walls(phases), fmt_us(phases[per]["median"]), fmt_s(phases["cpu"]["median"])]
                for label, phases, per in (
                    ("engine (per cell)", overhead["engine"], "per_cell"),
                    ("bare Scheduler", overhead["bare_scheduler"], "per_task"),
                )
            ],
        )
        ratio = overhead["ratio_engine_per_cell_over_bare_per_task"]
        metric = f"engine per cell / bare Scheduler per no-op task, {records} rows"
        payload["headline"].append(headline(metric, ratio, TARGET_OVERHEAD_RATIO_MAX))
    if args.skip != "pipeline":
        pipeline = measure_pipeline(pipeline_records, workers, runs)
        payload["pipeline"] = pipeline
        print_table(
            f"pipeline: demo recipe as shipped, {pipeline_records} rows, W={workers}, medians of {runs}",
            ["impl", "wall p50", "min", "max", "cpu p50"],
            [[name, *_walls(phases), fmt_s(phases["cpu"]["median"])] for name, phases in pipeline["results"].items()],
        )
        metric = f"engine speedup vs column-by-column baseline, {pipeline_records} rows"
        payload["headline"].append(
            headline(metric, pipeline["speedup_engine_vs_column_baseline"], TARGET_SPEEDUP_MIN, higher_is_better=True)
        )
        unlimited = pipeline["speedup_engine_vs_column_baseline_without_limits"]
        print(f"  (baseline ignoring per-model limits) / engine: {unlimited:.2f} (info)")
    print_headline("engine targets", payload["headline"])
    payload["meets_target"] = all(payload[key]["meets_target"] for key in ("overhead", "pipeline") if key in payload)
    return payload
