"""User functions for ``examples/python_columns.toml``, referenced there as ``example_functions:NAME``.

The engine imports them with ``importlib``, so this directory must be on ``sys.path``; from the repository
root run::

    PYTHONPATH=examples threadsched run examples/python_columns.toml

The three kinds of user code and their contracts:

* a ``python`` column in ``mode = "cell"``: ``function(row) -> value``, called once per row with a *copy*
  of that row's values (only the columns the column depends on, directly or transitively);
* a ``python`` column in ``mode = "batch"``: ``function(rows) -> list``, called once per row group with
  copies of its rows in row order; it must return exactly one value per row, in the same order;
* a ``python`` processor: ``function(rows) -> list[bool]``, called once per row group with copies of its
  rows; ``True`` keeps the row, ``False`` drops it (the reason is recorded in ``run.json``).

Functions run on worker threads, possibly several at once, so they must be thread-safe; keep them pure
and deterministic (no global ``random`` state, no clocks) so that a scheduled run hashes equal to the
``--reference`` run. Values must be JSON-friendly (str, int, float, bool, None, lists, dicts).
"""

from __future__ import annotations

MIN_LENGTH = 46
"""``keep_detailed_plans`` drops rows whose plan is shorter than this many characters."""


def plan_length(row: dict[str, object]) -> int:
    """Cell mode: the number of characters in the row's ``plan``, surrounding whitespace excluded."""
    return len(str(row["plan"]).strip())


def rank_by_length(rows: list[dict[str, object]]) -> list[int]:
    """Batch mode: each row's rank (1 = longest) by ``plan`` length within its row group; ties by position."""
    order = sorted(range(len(rows)), key=lambda position: (-len(str(rows[position]["plan"])), position))
    ranks = [0] * len(rows)
    for rank, position in enumerate(order, start=1):
        ranks[position] = rank
    return ranks


def keep_detailed_plans(rows: list[dict[str, object]]) -> list[bool]:
    """Processor: keep rows whose ``plan_length`` is at least ``MIN_LENGTH``."""
    return [isinstance(row.get("plan_length"), int) and row["plan_length"] >= MIN_LENGTH for row in rows]
