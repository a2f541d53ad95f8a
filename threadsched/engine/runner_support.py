"""Pieces of the scheduled runner (issue 3) that need no run state: root cell batches and column inputs."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

from threadsched.engine.columns import CellExecutor
from threadsched.engine.recipe import Recipe
from threadsched.engine.reference import Failure, with_retries

__all__ = ["RootCells", "Rows", "ancestors", "root_cells"]

Rows = list[tuple[int, dict[str, object]]]


@dataclass(frozen=True, slots=True)
class RootCells:
    """The result of a root column with a cell executor: values and per-row failure reasons."""

    values: dict[int, object]
    failures: dict[int, str]


def ancestors(recipe: Recipe) -> dict[str, frozenset[str]]:
    """Every column's transitive dependencies: the only values its tasks see (deterministic inputs)."""
    result: dict[str, frozenset[str]] = {}
    for name in recipe.topological_order:
        deps = recipe.column(name).dependencies
        result[name] = frozenset(deps).union(*(result[dep] for dep in deps))
    return result


def root_cells(executor: CellExecutor, rows: Rows, max_attempts: int) -> RootCells:
    """Run a root column's cell executor over a row group, retrying each row inline like the reference."""
    values: dict[int, object] = {}
    failures: dict[int, str] = {}
    for index, row in rows:
        outcome = with_retries(executor, functools.partial(_run_cell, executor, row), max_attempts)
        if isinstance(outcome, Failure):
            failures[index] = outcome.reason
        else:
            values[index] = outcome
    return RootCells(values, failures)


def _run_cell(executor: CellExecutor, row: Mapping[str, object], attempt: int) -> object:
    return executor.run_cell(row, attempt=attempt)
