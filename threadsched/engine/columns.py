"""What one task of a column computes: compiled, immutable column executors (no threads, no scheduler).

``compile_column`` turns a validated ``ColumnSpec`` into an executor once, at recipe load: templates are
parsed, python functions imported and the model endpoint looked up, so a task is only the call. The runner
submits these calls to the ``Scheduler``; ``reference.reference_row_values`` runs them in one thread.

* ``CellExecutor.run_cell(row, attempt=...)`` computes one row's value (``llm``, ``template``, python cell).
* ``BatchExecutor.run_batch_rows(rows)`` computes a row group at once (``sampler``, python batch); the
  sampler also has ``run_batch(row_indices)``, as it needs no row values.

Why deterministic: a scheduled run must hash equal to the single-threaded reference for any worker count.
Every output is a pure function of (seed, column, row index) for samplers and of the row values for the
others, derived with ``hashlib`` — never the global ``random`` state (shared, order dependent) nor
``hash()`` (salted per process). The attempt only reaches the endpoint's failure draw, never the value.

Errors propagate unchanged; the runner defers ``executor.retryable_errors`` to salvage rounds and drops the
row for anything else. Executors hold no mutable state, so they are safe to share between worker threads.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar, Literal, Protocol

from threadsched.core.events import EventSink
from threadsched.engine.http_endpoint import HttpTransientError, build_http_endpoints
from threadsched.engine.recipe import ColumnSpec, Recipe, Scalar
from threadsched.engine.templates import CompiledTemplate
from threadsched.engine.user_code import UserCodeError, import_callable
from threadsched.mock.model import RETRYABLE_ERRORS, MockModelEndpoint

__all__ = [
    "BatchExecutor",
    "CellExecutor",
    "ColumnExecutor",
    "ExecutorMode",
    "LlmExecutor",
    "PythonBatchExecutor",
    "PythonCellExecutor",
    "SamplerExecutor",
    "TemplateExecutor",
    "build_endpoints",
    "compile_column",
    "compile_columns",
    "sample_unit",
]

ExecutorMode = Literal["cell", "batch"]
ErrorTypes = tuple[type[BaseException], ...]
Row = Mapping[str, object]

_PERSON = b"threadsched.smpl"  # blake2b personalisation (16 bytes): sampler draws, apart from the mock's
_TWO_53 = float(2**53)


# What an llm column defers to a salvage round: a mock 503, or an HTTP call that failed after its retries.
LLM_RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (*RETRYABLE_ERRORS, HttpTransientError)


class ModelEndpoint(Protocol):
    """What an llm column calls: ``MockModelEndpoint`` or ``HttpModelEndpoint``."""

    @property
    def models(self) -> tuple[str, ...]: ...

    def complete(self, model: str, prompt: str, *, attempt: int = 1) -> str: ...


def build_endpoints(
    recipe: Recipe, *, sleep: Callable[[float], None] = time.sleep, events: EventSink | None = None
) -> Mapping[str, ModelEndpoint]:
    """One endpoint per ``[providers.NAME]``: mock ones seeded with ``run.seed`` (``sleep`` simulates their
    latency), openai ones over HTTP through request admission (``events`` gets the request events; close
    them with ``close_endpoints``). An unknown provider kind is a ValueError."""
    endpoints: dict[str, ModelEndpoint] = {}
    for name, provider in recipe.providers.items():
        if provider.kind == "openai":
            continue
        if provider.kind != "mock":
            raise ValueError(f"provider {name!r}: unsupported kind {provider.kind!r} (supported: mock, openai)")
        endpoints[name] = MockModelEndpoint(
            name,
            provider.models,
            latency_ms=provider.latency_ms,
            jitter_ms=provider.jitter_ms,
            failure_rate=provider.failure_rate,
            fatal_rate=provider.fatal_rate,
            seed=recipe.run.seed,
            sleep=sleep,
        )
    endpoints.update(build_http_endpoints(recipe, events))  # httpx (an extra) is imported only if one exists
    return MappingProxyType(endpoints)


def close_endpoints(endpoints: Mapping[str, ModelEndpoint]) -> None:
    """Release what endpoints hold (pooled HTTP connections); mock endpoints hold nothing."""
    for endpoint in endpoints.values():
        close = getattr(endpoint, "close", None)
        if callable(close):
            close()


def sample_unit(seed: int, column: str, row_index: int) -> float:
    """A uniform draw in [0, 1) that depends only on (seed, column, row index)."""
    hasher = hashlib.blake2b(digest_size=16, person=_PERSON)
    for part in (str(seed), column, str(row_index)):
        data = part.encode("utf-8", "surrogatepass")
        hasher.update(len(data).to_bytes(8, "big"))  # length prefixes: ("ab", "c") never equals ("a", "bc")
        hasher.update(data)
    # 53 bits: the float is exact, so the draw is strictly below 1.0.
    return (int.from_bytes(hasher.digest()[:8], "big") >> 11) / _TWO_53


def _check_row_index(index: object) -> int:
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"row indices must be ints >= 0, got {index!r}")
    return index


# -- executors -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class ColumnExecutor(ABC):
    """The compiled form of one column. ``resource`` is ``llm:<provider>/<model>`` for llm, else None."""

    spec: ColumnSpec
    kind: ClassVar[str]
    mode: ClassVar[ExecutorMode]
    retryable_errors: ClassVar[ErrorTypes] = ()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def dependencies(self) -> tuple[str, ...]:
        return self.spec.dependencies

    @property
    def weight(self) -> float:
        return self.spec.weight

    @property
    def resource(self) -> str | None:
        return self.spec.resource

    def __repr__(self) -> str:
        extra = f" resource={self.resource!r}" if self.resource is not None else ""
        return f"<{type(self).__name__} {self.name!r} mode={self.mode} dependencies={list(self.dependencies)!r}{extra}>"


@dataclass(frozen=True, slots=True, repr=False)
class CellExecutor(ColumnExecutor):
    """One task per row."""

    mode: ClassVar[ExecutorMode] = "cell"

    @abstractmethod
    def run_cell(self, row: Row, *, attempt: int = 1) -> object:
        """The column's value for one row, given the row's values so far (``attempt`` counts from 1)."""


@dataclass(frozen=True, slots=True, repr=False)
class BatchExecutor(ColumnExecutor):
    """One task per row group."""

    mode: ClassVar[ExecutorMode] = "batch"

    @abstractmethod
    def run_batch_rows(self, rows: Sequence[tuple[int, Row]]) -> dict[int, object]:
        """Values for ``(row index, row values)`` pairs, keyed by row index."""


@dataclass(frozen=True, slots=True, repr=False)
class SamplerExecutor(BatchExecutor):
    """A root column: each row's value is a weighted choice drawn from (seed, column, row index)."""

    seed: int
    kind: ClassVar[str] = "sampler"
    _cumulative: tuple[float, ...] = field(init=False, compare=False)
    _last_positive: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        values = self.spec.values
        if not values:
            raise ValueError(f"column {self.name!r}: a sampler needs at least one value")
        weights = self.spec.weights if self.spec.weights is not None else (1.0,) * len(values)
        if len(weights) != len(values) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"column {self.name!r}: bad sampler weights {list(weights)!r} for {len(values)} values")
        object.__setattr__(self, "_cumulative", tuple(itertools.accumulate(float(w) for w in weights)))
        object.__setattr__(self, "_last_positive", max(i for i, w in enumerate(weights) if w > 0))

    def value_for(self, row_index: int) -> Scalar:
        """The value of row ``row_index``, independent of every other row."""
        target = sample_unit(self.seed, self.name, _check_row_index(row_index)) * self._cumulative[-1]
        # bisect_right skips zero-weight values (their cumulative equals the previous one); the min guards
        # against the product rounding up to the total.
        return self.spec.values[min(bisect.bisect_right(self._cumulative, target), self._last_positive)]

    def run_batch(self, row_indices: Sequence[int]) -> dict[int, object]:
        return {index: self.value_for(index) for index in row_indices}

    def run_batch_rows(self, rows: Sequence[tuple[int, Row]]) -> dict[int, object]:
        return self.run_batch([index for index, _ in rows])


@dataclass(frozen=True, slots=True, repr=False)
class LlmExecutor(CellExecutor):
    """Renders the prompt and asks the model; the output is the completion text."""

    endpoint: ModelEndpoint = field(compare=False)
    prompt: CompiledTemplate
    model_name: str
    kind: ClassVar[str] = "llm"
    retryable_errors: ClassVar[ErrorTypes] = LLM_RETRYABLE_ERRORS

    def run_cell(self, row: Row, *, attempt: int = 1) -> object:
        return self.endpoint.complete(self.model_name, self.prompt.render(row), attempt=attempt)


@dataclass(frozen=True, slots=True, repr=False)
class TemplateExecutor(CellExecutor):
    """Formats other columns with a safe template (no ``eval``)."""

    template: CompiledTemplate
    kind: ClassVar[str] = "template"

    def run_cell(self, row: Row, *, attempt: int = 1) -> object:
        return self.template.render(row)


@dataclass(frozen=True, slots=True, repr=False)
class PythonCellExecutor(CellExecutor):
    """Calls ``function(dict(row))`` — a copy, so the function cannot change the row it was given."""

    function: Callable[[dict[str, object]], object] = field(compare=False)
    kind: ClassVar[str] = "python"

    def run_cell(self, row: Row, *, attempt: int = 1) -> object:
        return self.function(dict(row))


@dataclass(frozen=True, slots=True, repr=False)
class PythonBatchExecutor(BatchExecutor):
    """Calls ``function([row dicts])`` once per row group; it must return one value per row, in order."""

    function: Callable[[list[dict[str, object]]], object] = field(compare=False)
    kind: ClassVar[str] = "python"

    def run_batch_rows(self, rows: Sequence[tuple[int, Row]]) -> dict[int, object]:
        result = self.function([dict(row) for _, row in rows])
        if not isinstance(result, (list, tuple)) or len(result) != len(rows):
            got = f"{len(result)} values" if isinstance(result, (list, tuple)) else type(result).__name__
            raise ValueError(
                f"column {self.name!r}: python function {self.spec.function!r} must return a list of {len(rows)} "
                f"values (one per row), got {got}"
            )
        return {index: value for (index, _), value in zip(rows, result, strict=True)}


# -- compilation ---------------------------------------------------------------------------------------


def _import_function(column: str, reference: str) -> Callable[..., object]:
    try:
        return import_callable(reference)
    except UserCodeError as exc:
        raise UserCodeError(f"column {column!r}: cannot load python function {exc}") from exc.__cause__


def compile_column(spec: ColumnSpec, recipe: Recipe, endpoints: Mapping[str, ModelEndpoint]) -> ColumnExecutor:
    """The executor for ``spec`` (a column of ``recipe``); ValueError for what cannot be resolved."""
    if spec.kind == "sampler":
        return SamplerExecutor(spec, recipe.run.seed)
    if spec.kind == "llm":
        provider, model_name = spec.provider, spec.model_name
        if provider is None or model_name is None or spec.prompt is None:
            raise ValueError(f"column {spec.name!r}: an llm column needs a model and a prompt")
        endpoint = endpoints.get(provider)
        if endpoint is None:
            raise ValueError(f"column {spec.name!r}: no endpoint for provider {provider!r} (have: {sorted(endpoints)})")
        if model_name not in endpoint.models:
            raise ValueError(f"column {spec.name!r}: provider {provider!r} does not serve model {model_name!r}")
        return LlmExecutor(spec, endpoint, CompiledTemplate(spec.prompt), model_name)
    if spec.kind == "template":
        if spec.template is None:
            raise ValueError(f"column {spec.name!r}: a template column needs a template")
        return TemplateExecutor(spec, CompiledTemplate(spec.template))
    if spec.kind == "python":
        if spec.function is None:
            raise ValueError(f"column {spec.name!r}: a python column needs a function")
        function = _import_function(spec.name, spec.function)
        if spec.mode == "batch":
            return PythonBatchExecutor(spec, function)
        return PythonCellExecutor(spec, function)
    raise ValueError(f"column {spec.name!r}: unsupported column kind {spec.kind!r}")


def compile_columns(recipe: Recipe, endpoints: Mapping[str, ModelEndpoint]) -> Mapping[str, ColumnExecutor]:
    """Every column's executor, keyed by name in ``recipe.topological_order``."""
    return MappingProxyType({name: compile_column(recipe.column(name), recipe, endpoints) for name in recipe.topological_order})
