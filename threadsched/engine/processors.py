"""Row-group processors: ``filter``, ``drop_duplicates`` and ``python``, compiled from a ``ProcessorSpec``.

A processor looks at ONE row group -- ``(row index, values)`` pairs in row order -- and decides which rows to
keep. It is pure and deterministic: the same rows give the same ``ProcessorResult``, input rows are never
mutated, and a compiled processor holds no state, so worker threads may share it (a ``python`` processor is
only as thread-safe as the user's callable).

Drop reasons name the processor, columns, ops, value *types* and functions, never a row's values: they go to
events and ``run.json``, which must not carry data. (The recipe's own filter value may appear; it is config.)

``drop_duplicates`` deduplicates within one row group only. Deduplicating across row groups would make the
output depend on which row group finished first, i.e. on scheduling, and break reference-hash equality.
"""

from __future__ import annotations

import copy
import itertools
import json
import operator
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from threadsched.engine.recipe import FilterOp, ProcessorSpec
from threadsched.engine.user_code import UserCodeError, import_callable

__all__ = [
    "DropDuplicatesProcessor",
    "FilterProcessor",
    "Processor",
    "ProcessorError",
    "ProcessorResult",
    "PythonProcessor",
    "RowGroup",
    "compile_processor",
    "run_stage",
]

RowGroup = Sequence[tuple[int, Mapping[str, object]]]
"""``(row index, values keyed by column name)`` pairs, in ascending row order."""


class ProcessorError(RuntimeError):
    """A processor that cannot be compiled or that misbehaved (bad import, bad return value, user exception)."""


@dataclass(frozen=True, slots=True)
class ProcessorResult:
    """Which rows survived (ascending) and why the others did not (row index -> reason, ascending)."""

    kept: tuple[int, ...]
    dropped: Mapping[int, str] = field(default_factory=lambda: MappingProxyType({}))


class Processor(ABC):
    """A compiled processor. ``apply`` checks the row group, then asks the subclass which rows to drop."""

    __slots__ = ("spec",)

    def __init__(self, spec: ProcessorSpec) -> None:
        self.spec = spec

    @property
    @abstractmethod
    def description(self) -> str:
        """A short, data-free label, e.g. ``filter topic != 'x'``; drop reasons start with it."""

    @abstractmethod
    def _drops(self, rows: RowGroup) -> dict[int, str]:
        """Row index -> reason for each row to drop; rows are validated and in ascending order."""

    def apply(self, rows: RowGroup) -> ProcessorResult:
        """Decide which ``rows`` to keep. Raises ``ValueError`` if row indices are not strictly ascending."""
        _check_order(rows)
        dropped = self._drops(rows)
        kept = tuple(index for index, _ in rows if index not in dropped)
        return ProcessorResult(kept, MappingProxyType(dict(sorted(dropped.items()))))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description} stage={self.spec.stage}>"


def _check_order(rows: RowGroup) -> None:
    for (previous, _), (current, _) in itertools.pairwise(rows):
        if current <= previous:
            raise ValueError(f"row indices must be strictly ascending, got {previous} then {current}")


# -- filter --------------------------------------------------------------------------------------------

_COMPARE: dict[FilterOp, Callable[[Any, Any], bool]] = {"==": operator.eq, "!=": operator.ne, "<": operator.lt}
_COMPARE.update({"<=": operator.le, ">": operator.gt, ">=": operator.ge})
_COMPARE.update({"in": lambda value, options: value in options, "not_in": lambda value, options: value not in options})


class FilterProcessor(Processor):
    """Keeps rows where ``row[column] <op> value`` holds (Python comparison semantics, so ``1 == 1.0``).

    A missing column or a comparison that raises ``TypeError`` (``'a' < 1``, ``None > 2``) drops the row.
    """

    __slots__ = ("_column", "_compare", "_description", "_op", "_value")

    def __init__(self, spec: ProcessorSpec) -> None:
        super().__init__(spec)
        if spec.column is None or spec.op is None or spec.op not in _COMPARE:
            raise ProcessorError(f"filter processor needs a column and an op, got column={spec.column!r} op={spec.op!r}")
        if spec.op in ("in", "not_in") and not isinstance(spec.value, tuple):
            raise ProcessorError(f"filter op {spec.op!r} needs a tuple value, got {type(spec.value).__name__}")
        self._column: str = spec.column
        self._op: FilterOp = spec.op
        self._value = spec.value
        self._compare = _COMPARE[spec.op]
        shown = list(spec.value) if isinstance(spec.value, tuple) else spec.value
        self._description = f"filter {spec.column} {spec.op} {_short_repr(shown)}"

    @property
    def description(self) -> str:
        return self._description

    def _drops(self, rows: RowGroup) -> dict[int, str]:
        dropped: dict[int, str] = {}
        for index, values in rows:
            if self._column not in values:
                dropped[index] = f"filter: column {self._column!r} missing"
                continue
            cell = values[self._column]
            try:
                keep = bool(self._compare(cell, self._value))
            except TypeError:
                dropped[index] = (
                    f"{self._description}: cannot apply {self._op!r} to {type(cell).__name__} and {type(self._value).__name__}"
                )
                continue
            if not keep:
                dropped[index] = self._description
        return dropped


def _short_repr(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


# -- drop_duplicates -----------------------------------------------------------------------------------


class DropDuplicatesProcessor(Processor):
    """Keeps the first row (lowest index) of each distinct tuple of ``columns`` values, within one row group.

    Values are compared by ``canonical_key``: JSON-like, so ``[1, 2]`` equals ``[1, 2]`` and dict key order is
    ignored, but types count (``1``, ``1.0`` and ``True`` are all different, as they are in ``dataset.jsonl``).
    A row missing one of the columns is dropped.
    """

    __slots__ = ("_columns", "_description")

    def __init__(self, spec: ProcessorSpec) -> None:
        super().__init__(spec)
        if not spec.columns:
            raise ProcessorError("drop_duplicates processor needs at least one column")
        self._columns = spec.columns
        self._description = f"drop_duplicates on ({', '.join(spec.columns)})"

    @property
    def description(self) -> str:
        return self._description

    def _drops(self, rows: RowGroup) -> dict[int, str]:
        first: dict[str, int] = {}
        dropped: dict[int, str] = {}
        for index, values in rows:
            missing = next((column for column in self._columns if column not in values), None)
            if missing is not None:
                dropped[index] = f"drop_duplicates: column {missing!r} missing"
                continue
            key = canonical_key([values[column] for column in self._columns])
            original = first.setdefault(key, index)
            if original != index:
                dropped[index] = f"duplicate of row {original} on ({', '.join(self._columns)})"
        return dropped


def canonical_key(value: object) -> str:
    """A deterministic string that is equal for equal JSON-like values, hashable whatever ``value`` holds."""
    return json.dumps(_plain(value), sort_keys=True, default=repr, ensure_ascii=False, separators=(",", ":"))


def _plain(value: object) -> object:
    # Non-string dict keys would make sort_keys raise (1 vs "a"); tag them so they cannot equal a str key.
    if isinstance(value, Mapping):
        return {key if isinstance(key, str) else f"\0{canonical_key(key)}": _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, set | frozenset):
        return {"\0set": sorted(canonical_key(item) for item in value)}
    return value


# -- python --------------------------------------------------------------------------------------------


class PythonProcessor(Processor):
    """Calls ``module:callable`` with deep copies of the rows (``list[dict]``, row order).

    The callable must return a ``list`` of ``bool`` keep flags, one per row. It is imported at compile time and
    not called for an empty row group. Its exceptions become ``ProcessorError`` (the original is ``__cause__``;
    the message names only the exception type, since the text may quote row values).
    """

    __slots__ = ("_function", "_reference")

    def __init__(self, spec: ProcessorSpec) -> None:
        super().__init__(spec)
        if spec.function is None:
            raise ProcessorError("python processor needs a function 'module:callable'")
        self._reference = spec.function
        self._function = _import_callable(spec.function)

    @property
    def description(self) -> str:
        return f"python {self._reference}"

    def _drops(self, rows: RowGroup) -> dict[int, str]:
        if not rows:
            return {}
        copies = [copy.deepcopy(dict(values)) for _, values in rows]
        try:
            flags = self._function(copies)
        except Exception as exc:
            raise ProcessorError(f"python processor {self._reference!r} raised {type(exc).__name__}") from exc
        if not isinstance(flags, list):
            raise ProcessorError(
                f"python processor {self._reference!r} returned {type(flags).__name__}, expected a list of bools"
            )
        if len(flags) != len(rows):
            raise ProcessorError(f"python processor {self._reference!r} returned {len(flags)} flags for {len(rows)} rows")
        for position, flag in enumerate(flags):
            if not isinstance(flag, bool):
                raise ProcessorError(
                    f"python processor {self._reference!r} returned {type(flag).__name__} at position {position}, expected bool"
                )
        reason = f"python {self._reference}: rejected"
        return {index: reason for (index, _), keep in zip(rows, flags, strict=True) if not keep}


def _import_callable(reference: str) -> Callable[[list[dict[str, object]]], object]:
    try:
        return import_callable(reference)  # its signature is checked by calling it
    except UserCodeError as exc:
        raise ProcessorError(f"python processor {exc}") from exc.__cause__


# -- entry points --------------------------------------------------------------------------------------

_KINDS: Mapping[str, Callable[[ProcessorSpec], Processor]] = MappingProxyType(
    {"filter": FilterProcessor, "drop_duplicates": DropDuplicatesProcessor, "python": PythonProcessor}
)


def compile_processor(spec: ProcessorSpec) -> Processor:
    """The processor for ``spec``; a ``python`` function is imported here, at compile time, so failures
    surface before the run."""
    factory = _KINDS.get(spec.kind)
    if factory is None:
        raise ProcessorError(f"unknown processor kind {spec.kind!r} (known: {', '.join(_KINDS)})")
    return factory(spec)


def run_stage(processors: Sequence[Processor], rows: RowGroup) -> ProcessorResult:
    """Apply ``processors`` in order, each to the rows the previous one kept; reasons are merged by row index."""
    _check_order(rows)
    current = list(rows)
    dropped: dict[int, str] = {}
    for processor in processors:
        result = processor.apply(current)
        dropped.update(result.dropped)
        kept = set(result.kept)
        current = [row for row in current if row[0] in kept]
    return ProcessorResult(tuple(index for index, _ in current), MappingProxyType(dict(sorted(dropped.items()))))
