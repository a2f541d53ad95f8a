"""The short table a run ends with (``threadsched run`` / ``threadsched demo``): per column and in total.

Built from the ``RunResult`` and the recipe only, so a reference run and a scheduled run print the same
shape. ``rich`` (an optional extra) renders a table; without it, or with ``plain``, aligned text.
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import TextIO

from threadsched.engine.recipe import Recipe
from threadsched.engine.runner import RunResult

__all__ = ["column_rows", "render_summary", "summary_lines"]

_HEADERS = ("column", "kind", "resource", "rows done", "retried", "failed")


def column_rows(recipe: Recipe, result: RunResult) -> list[tuple[str, ...]]:
    """One row per column in topological order; counts are blank for a reference run (it keeps none)."""
    rows: list[tuple[str, ...]] = []
    for name in recipe.topological_order:
        spec = recipe.column(name)
        counts = result.columns.get(name)
        numbers = (
            (str(counts["rows_done"]), str(counts["retryable_failures"]), str(counts["permanent_failures"]))
            if counts is not None
            else ("-", "-", "-")
        )
        rows.append((name, spec.kind, spec.resource or "-", *numbers))
    return rows


def summary_lines(result: RunResult) -> list[str]:
    """The totals under the table: output, drops by reason, evidence."""
    lines = [
        f"{result.mode} run: {result.rows_written} rows written, {len(result.dropped)} dropped, "
        f"{result.row_groups_checkpointed} row groups in {result.elapsed:.2f}s -> {result.out_dir / 'dataset.jsonl'}"
    ]
    for reason, count in Counter(result.dropped.values()).most_common(3):
        lines.append(f"  dropped {count}: {reason}")
    if result.resumed_row_groups:
        lines.append(f"  resumed {result.resumed_row_groups} row groups from earlier checkpoints")
    if result.recomputed_row_groups:
        lines.append(f"  recomputed {len(result.recomputed_row_groups)} row groups whose checkpoints failed verification")
    lines.append(
        f"output hash {result.output_hash}; hidden waiters {result.hidden_waiters}; "
        f"final active leases {result.final_active_leases}"
    )
    return lines


def render_summary(recipe: Recipe, result: RunResult, *, stream: TextIO | None = None, plain: bool = False) -> None:
    stream = sys.stdout if stream is None else stream
    rows = column_rows(recipe, result)
    if not plain and _render_rich(rows, result, stream):
        return
    widths = [max(len(header), *(len(row[i]) for row in rows)) for i, header in enumerate(_HEADERS)]
    for row in (_HEADERS, *rows):
        cells = [
            cell.ljust(width) if i < 3 else cell.rjust(width) for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        stream.write("  ".join(cells).rstrip() + "\n")
    for line in summary_lines(result):
        stream.write(line + "\n")
    stream.flush()


def _render_rich(rows: list[tuple[str, ...]], result: RunResult, stream: TextIO) -> bool:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        return False
    table = Table(title=f"threadsched {result.mode} run")
    for i, header in enumerate(_HEADERS):
        table.add_column(header, justify="left" if i < 3 else "right")
    for row in rows:
        table.add_row(*row)
    console = Console(file=stream)
    console.print(table)
    for line in summary_lines(result):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    return True
