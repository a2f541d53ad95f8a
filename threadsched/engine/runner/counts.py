"""What the scheduled runner counts: engine counters, per-column progress and the error rate.

``RunCounts`` is touched only by the runner's main thread (done-callbacks never count), so it has no lock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from threadsched.engine.progress import ProgressSnapshot
from threadsched.engine.recipe import Recipe
from threadsched.engine.runner.output import row_group_range

__all__ = ["ENGINE_COUNTER_NAMES", "COLUMN_COUNT_NAMES", "RunCounts"]

ENGINE_COUNTER_NAMES = (
    "tasks_submitted",
    "retryable_failures",
    "permanent_failures",
    "stale_cancelled",
    "salvaged_tasks",
    "tasks_finished",
)
COLUMN_COUNT_NAMES = ("rows_done", "retryable_failures", "permanent_failures")


class RunCounts:
    """``engine`` counters of the whole run; per column ``rows_done`` (rows whose value of the column is
    recorded and still alive; resumed rows count as done), ``retryable_failures`` and ``permanent_failures``."""

    def __init__(self, columns: Iterable[str], *, records: int, resumed_rows: int, resumed_dropped: int) -> None:
        self.engine = dict.fromkeys(ENGINE_COUNTER_NAMES, 0)
        self.columns = {name: dict.fromkeys(COLUMN_COUNT_NAMES, 0) for name in columns}
        for counts in self.columns.values():
            counts["rows_done"] = resumed_rows
        self.records = records
        self.rows_dropped = resumed_dropped

    @classmethod
    def for_run(cls, recipe: Recipe, resumed: Mapping[int, Sequence[int]]) -> RunCounts:
        """Counts of a run of ``recipe`` that adopted the ``resumed`` row groups (index -> rows kept)."""
        kept = sum(len(rows) for rows in resumed.values())
        total = sum(len(row_group_range(recipe, group)) for group in resumed)
        return cls(recipe.topological_order, records=recipe.run.records, resumed_rows=kept, resumed_dropped=total - kept)

    def finished(self, *, skipped: bool = False) -> None:
        self.engine["tasks_finished"] += not skipped

    def failed(self, column: str, *, deferred: bool) -> None:
        name = "retryable_failures" if deferred else "permanent_failures"
        self.engine[name] += 1
        self.columns[column][name] += 1

    def recorded(self, column: str, rows: int) -> None:
        self.columns[column]["rows_done"] += rows

    def dropped(self, lost_rows: Iterable[Mapping[str, object] | None]) -> None:
        """Rows just dropped, each with the values it had (None if it had none here): they stop counting."""
        for values in lost_rows:
            self.rows_dropped += 1
            for column in values or ():
                self.columns[column]["rows_done"] -= 1

    def error_rate_stop(self, limit: float | None, min_window: int) -> dict[str, Any] | None:
        """Why to stop early, if failed attempts / finished tasks is over ``limit`` after ``min_window``."""
        finished = self.engine["tasks_finished"]
        if limit is None or finished < min_window:
            return None
        rate = (self.engine["retryable_failures"] + self.engine["permanent_failures"]) / finished
        if rate <= limit:
            return None
        reason = f"error rate {rate:.3f} over {finished} finished tasks exceeded error_rate_shutdown = {limit:g}"
        return {"error_rate": rate, "reason": reason}

    def progress(self, *, checkpointed: int, row_groups: int, elapsed: float) -> ProgressSnapshot:
        return ProgressSnapshot(
            columns=tuple(self.columns),
            rows_done=MappingProxyType({name: counts["rows_done"] for name, counts in self.columns.items()}),
            rows_total=self.records - self.rows_dropped,
            rows_dropped=self.rows_dropped,
            row_groups_checkpointed=checkpointed,
            row_groups_total=row_groups,
            elapsed=elapsed,
        )

    def column_table(self) -> dict[str, dict[str, int]]:
        return {name: dict(counts) for name, counts in self.columns.items()}
