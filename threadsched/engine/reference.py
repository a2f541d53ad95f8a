"""The single-threaded oracle: every column of some rows, in topological order, without the scheduler.

A scheduled run must produce the same rows as this, for any worker count and policy. It follows the
runner's rules: rows are grouped into row groups of ``run.buffer_size`` (a python batch column sees one
row group's surviving rows at a time), a retryable failure is tried again with ``attempt + 1`` up to
``max_attempts`` (by default ``1 + run.max_salvage_rounds``: the first try plus one per salvage round) and
then drops its row, and any other failure drops its row at once. A failing batch task drops its whole batch.

Processors are **not** applied here: the reference run (``runner.reference.run_reference``) calls
``compute_columns`` per stage (roots, pre-batch processors, the rest, post-batch processors), and the
scheduled run shares the retry rules (``default_max_attempts``, ``failure_reason``, ``with_retries``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from threadsched.engine.columns import BatchExecutor, CellExecutor, ColumnExecutor, compile_columns
from threadsched.engine.recipe import Recipe
from threadsched.mock.model import MockModelEndpoint

__all__ = [
    "Failure",
    "ReferenceResult",
    "compute_columns",
    "default_max_attempts",
    "failure_reason",
    "reference_row_values",
    "with_retries",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Failure:
    """A task that gave up: the reason its row(s) are dropped."""

    reason: str


@dataclass(frozen=True, slots=True)
class ReferenceResult:
    """``rows``: row index -> column values for the surviving rows; ``dropped``: row index -> reason."""

    rows: dict[int, dict[str, object]]
    dropped: dict[int, str]


def default_max_attempts(recipe: Recipe) -> int:
    """Attempts per task in a run: the first one plus one per salvage round."""
    return 1 + recipe.run.max_salvage_rounds


def failure_reason(column: str, error: BaseException, *, attempts: int, retryable: bool) -> str:
    """The recorded reason for a row dropped by a failure (one line, no prompt or row values)."""
    cause = f"{type(error).__name__}: {error}"
    if retryable:
        return f"column {column!r}: still failing after {attempts} attempts: {cause}"
    return f"column {column!r}: non-retryable failure on attempt {attempts}: {cause}"


def with_retries(executor: ColumnExecutor, call: Callable[[int], T], max_attempts: int) -> T | Failure:
    """``call(attempt)``'s result, retrying the executor's retryable errors; a ``Failure`` once it gives up."""
    attempt = 1
    while True:
        try:
            return call(attempt)
        except Exception as exc:  # the oracle records every task failure, as the runner does
            retryable = isinstance(exc, executor.retryable_errors)
            if not retryable or attempt >= max_attempts:
                return Failure(failure_reason(executor.name, exc, attempts=attempt, retryable=retryable))
            attempt += 1


def _cell_call(executor: CellExecutor, row: Mapping[str, object]) -> Callable[[int], object]:
    return lambda attempt: executor.run_cell(row, attempt=attempt)


def _batch_call(executor: BatchExecutor, rows: Sequence[tuple[int, Mapping[str, object]]]) -> Callable[[int], dict[int, object]]:
    return lambda _attempt: executor.run_batch_rows(rows)  # batch executors take no attempt


def compute_columns(
    executors: Mapping[str, ColumnExecutor],
    columns: Iterable[str],
    rows: Mapping[int, Mapping[str, object]],
    *,
    max_attempts: int,
) -> ReferenceResult:
    """Add ``columns`` (in order, dependencies first) to one row group's ``rows`` (which are not modified)."""
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise ValueError(f"max_attempts must be an int >= 1, got {max_attempts!r}")
    alive = {index: dict(rows[index]) for index in sorted(rows)}
    dropped: dict[int, str] = {}
    for name in columns:
        executor = executors[name]
        if isinstance(executor, BatchExecutor):
            if not alive:
                continue
            values = with_retries(executor, _batch_call(executor, list(alive.items())), max_attempts)
            if isinstance(values, Failure):
                dropped.update(dict.fromkeys(alive, values.reason))
                alive.clear()
            else:
                for index, row in alive.items():
                    row[name] = values[index]
            continue
        assert isinstance(executor, CellExecutor)
        for index, row in list(alive.items()):
            value = with_retries(executor, _cell_call(executor, row), max_attempts)
            if isinstance(value, Failure):
                dropped[index] = value.reason
                del alive[index]
            else:
                row[name] = value
    return ReferenceResult(rows=alive, dropped=dict(sorted(dropped.items())))


def reference_row_values(
    recipe: Recipe,
    endpoints: Mapping[str, MockModelEndpoint],
    row_indices: Iterable[int],
    *,
    max_attempts: int | None = None,
) -> ReferenceResult:
    """All columns of ``row_indices`` (processors not applied), row group by row group, in one thread."""
    executors = compile_columns(recipe, endpoints)
    attempts = default_max_attempts(recipe) if max_attempts is None else max_attempts
    indices = list(row_indices)
    for index in indices:
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValueError(f"row indices must be ints >= 0, got {index!r}")
    groups: dict[int, list[int]] = {}
    for index in sorted(set(indices)):
        groups.setdefault(index // recipe.run.buffer_size, []).append(index)
    rows: dict[int, dict[str, object]] = {}
    dropped: dict[int, str] = {}
    for members in groups.values():
        result = compute_columns(executors, recipe.topological_order, {i: {} for i in members}, max_attempts=attempts)
        rows.update(result.rows)
        dropped.update(result.dropped)
    return ReferenceResult(rows=rows, dropped=dropped)
