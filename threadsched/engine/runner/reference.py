"""The reference run: a recipe in one thread, row group by row group, without the scheduler.

It is the oracle of the scheduled run: it writes the same files as ``run_recipe`` through the same output
helpers, and a scheduled run of the same recipe must give the same ``output_hash`` for any worker count
and policy. Columns are computed by ``threadsched.engine.reference.compute_columns`` (the retry and drop
rules both runs share); processors and checkpoints come from ``output``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

from threadsched.engine.columns import ColumnExecutor, build_endpoints, close_endpoints, compile_columns
from threadsched.engine.recipe import Recipe
from threadsched.engine.reference import compute_columns, default_max_attempts
from threadsched.engine.runner.output import OutputWriter, RunResult, apply_stage, compile_stage, row_group_count, row_group_range
from threadsched.engine.runner.resume import prepare_output

__all__ = ["run_reference"]

_EMPTY_COUNTERS: Mapping[str, int] = MappingProxyType({})


def run_reference(
    recipe: Recipe, out_dir: Path, *, sleep: Callable[[float], None] = time.sleep, force: bool = False
) -> RunResult:
    """The correctness oracle: the recipe in one thread, row group by row group, without the scheduler.

    Per row group: root columns, pre-batch processors, the other columns (topological order), post-batch
    processors, checkpoint. Writes the same files as ``run_recipe`` (always a fresh run; ``force`` as there);
    equal rows hash equal."""
    started = time.perf_counter()
    endpoints = build_endpoints(recipe, sleep=sleep)
    try:
        compiled = compile_columns(recipe, endpoints)
        prepare_output(recipe, Path(out_dir), resume=False, force=force)  # after compiling: bad input touches nothing
        return _reference(recipe, out_dir, compiled, started)
    finally:
        close_endpoints(endpoints)


def _reference(recipe: Recipe, out_dir: Path, executors: Mapping[str, ColumnExecutor], started: float) -> RunResult:
    pre, post = compile_stage(recipe, "pre_batch"), compile_stage(recipe, "post_batch")
    roots = [name for name in recipe.topological_order if recipe.column(name).is_root]
    others = [name for name in recipe.topological_order if not recipe.column(name).is_root]
    attempts = default_max_attempts(recipe)
    writer = OutputWriter(out_dir, recipe)
    dropped: dict[int, str] = {}
    for row_group in range(row_group_count(recipe)):
        indices = row_group_range(recipe, row_group)
        rows: dict[int, dict[str, object]] = {index: {} for index in indices}
        for stage_columns, processors, stage in ((roots, pre, "pre_batch"), (others, post, "post_batch")):
            result = compute_columns(executors, stage_columns, rows, max_attempts=attempts)
            dropped.update(result.dropped)
            rows = result.rows
            for index, reason in apply_stage(processors, sorted(rows.items()), stage).items():
                dropped[index] = reason
                del rows[index]
        writer.write_row_group(row_group, sorted(rows.items()), {row: dropped[row] for row in indices if row in dropped})
    elapsed = time.perf_counter() - started
    summary = {"mode": "reference", "elapsed": elapsed, "capacity": {"workers": 1}}
    output_hash = writer.finish(summary, dropped)
    return RunResult(
        rows_written=writer.rows_written,
        dropped=MappingProxyType(dict(sorted(dropped.items()))),
        output_hash=output_hash,
        counters=_EMPTY_COUNTERS,
        hidden_waiters=0,
        final_active_leases=0,
        row_groups_checkpointed=writer.row_groups_checkpointed,
        elapsed=elapsed,
        mode="reference",
        out_dir=Path(out_dir),
    )
