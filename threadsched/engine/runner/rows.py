"""The row store: the column values of a run's open row groups, and the inputs each task reads from it.

A task reads copies of its column's ancestors' values only (``ancestors``), so what it computes depends on
the recipe and the row alone. Only the runner's main thread writes; workers read.

Lock order: ``RowStore._lock`` is a leaf; nothing is called while it is held."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

from threadsched.engine.recipe import Recipe

__all__ = ["RowStore", "Rows", "ancestors"]

Rows = list[tuple[int, dict[str, object]]]


class RowStore:
    """Column values of the open row groups. Workers read copies of their inputs; only the runner's main
    thread writes. Every access holds ``_lock`` (workers and the main thread run concurrently)."""

    def __init__(self, ancestors: Mapping[str, frozenset[str]]) -> None:
        self._lock = threading.Lock()
        self._ancestors = ancestors
        self._groups: dict[int, dict[int, dict[str, object]]] = {}

    def open(self, row_group: int, rows: Iterable[int]) -> bool:
        """Start ``row_group`` with empty ``rows``; False if it is already open."""
        with self._lock:
            if row_group in self._groups:
                return False
            self._groups[row_group] = {row: {} for row in rows}
            return True

    def inputs(self, column: str, row_group: int, row: int | None) -> Rows:
        """Copies of the rows a task of ``column`` reads (one row, or the whole group), ancestors' values only."""
        wanted = self._ancestors[column]
        with self._lock:
            group = self._groups[row_group]
            indices = sorted(group) if row is None else [row]
            return [(i, {c: v for c, v in group[i].items() if c in wanted}) for i in indices]

    def write(self, column: str, row_group: int, row: int | None, result: object) -> int:
        """Record a cell value (``row``) or a batch's ``{row: value}``; returns the rows written (dropped
        rows are skipped)."""
        with self._lock:
            group = self._groups[row_group]
            if row is not None:
                if row not in group:
                    return 0
                group[row][column] = result
                return 1
            assert isinstance(result, dict)
            written = 0
            for index, values in group.items():
                if index in result:
                    values[column] = result[index]
                    written += 1
            return written

    def drop(self, rows: Iterable[tuple[int, int]]) -> list[dict[str, object] | None]:
        """Forget (row_group, row) pairs; returns the values each had (None if it had none here)."""
        with self._lock:
            return [self._groups.get(row_group, {}).pop(row, None) for row_group, row in rows]

    def copies(self, row_group: int, rows: Iterable[int]) -> Rows:
        with self._lock:
            group = self._groups.get(row_group, {})
            return [(i, dict(group[i])) for i in rows]

    def close(self, row_group: int) -> None:
        with self._lock:
            self._groups.pop(row_group, None)


def ancestors(recipe: Recipe) -> dict[str, frozenset[str]]:
    """Every column's transitive dependencies: the only values its tasks see (deterministic inputs)."""
    result: dict[str, frozenset[str]] = {}
    for name in recipe.topological_order:
        deps = recipe.column(name).dependencies
        result[name] = frozenset(deps).union(*(result[dep] for dep in deps))
    return result
