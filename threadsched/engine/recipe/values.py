"""The value types of a recipe: what ``parse_recipe`` builds and the engine reads.

Frozen dataclasses (``RunSettings``, ``ProviderSpec``, ``ColumnSpec``, ``ProcessorSpec``, ``Recipe``), the
literal kinds they allow, and the canonical JSON that ``recipe_hash`` is computed from. The parser
(``parse``) builds them and imports this module, never the reverse.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from threadsched.engine.recipe.graph import topological_order

__all__ = [
    "COLUMN_KINDS",
    "FILTER_OPS",
    "LLM_RESOURCE_PREFIX",
    "PROCESSOR_KINDS",
    "PROCESSOR_STAGES",
    "ColumnKind",
    "ColumnSpec",
    "FilterOp",
    "ProcessorKind",
    "ProcessorSpec",
    "ProcessorStage",
    "ProviderSpec",
    "PythonMode",
    "Recipe",
    "RunSettings",
    "Scalar",
    "canonical_recipe_json",
]

Scalar = str | int | float | bool  # a sampler value or a filter value: what TOML gives for a plain value
ColumnKind = Literal["sampler", "llm", "template", "python"]
PythonMode = Literal["cell", "batch"]
ProcessorStage = Literal["pre_batch", "post_batch"]
ProcessorKind = Literal["filter", "drop_duplicates", "python"]
FilterOp = Literal["==", "!=", "<", "<=", ">", ">=", "in", "not_in"]

COLUMN_KINDS: tuple[ColumnKind, ...] = ("sampler", "llm", "template", "python")
FILTER_OPS: tuple[FilterOp, ...] = ("==", "!=", "<", "<=", ">", ">=", "in", "not_in")
PROCESSOR_STAGES: tuple[ProcessorStage, ...] = ("pre_batch", "post_batch")
PROCESSOR_KINDS: tuple[ProcessorKind, ...] = ("filter", "drop_duplicates", "python")
LLM_RESOURCE_PREFIX = "llm:"
_FORMAT = "threadsched.recipe/1"  # part of the hash: a change of meaning must change every hash


@dataclass(frozen=True, slots=True)
class RunSettings:
    """``[run]``: how many rows, how they are grouped and how much runs at once."""

    records: int
    buffer_size: int = 100
    max_row_groups_in_flight: int = 2
    max_workers: int = 8
    seed: int = 0
    max_salvage_rounds: int = 2
    error_rate_shutdown: float | None = None
    error_rate_min_window: int = 20
    output: str = "threadsched-out"
    policy: str = "strict"  # admission policy (threadsched.policies.POLICY_NAMES); not part of the hash
    # the keys the recipe wrote (the others are defaults): capacity plans name each value's source
    given: frozenset[str] = field(default=frozenset(), compare=False)


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """``[providers.NAME]``: a model endpoint (see ``PROVIDER_KINDS``). ``mock``: in process, simulated
    (latency, jitter, failure rates). ``openai``: an OpenAI-compatible HTTP endpoint (``base_url``, the
    *name* of the environment variable holding the API key — never the key — and ``timeout_s``)."""

    name: str
    kind: str
    models: tuple[str, ...]
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    failure_rate: float = 0.0
    fatal_rate: float = 0.0
    max_parallel_requests: int | None = None
    base_url: str | None = None  # openai
    api_key_env: str | None = None  # openai
    timeout_s: float | None = None  # openai


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """One ``[[columns]]`` entry. Kind-specific fields are None/empty for other kinds.

    ``dependencies`` = ``depends_on`` followed by the ``{column}`` references of ``prompt``/``template``,
    without repeats. ``resource`` is ``llm:<provider>/<model>`` for llm columns, else None.
    """

    name: str
    kind: ColumnKind
    weight: float = 1.0
    depends_on: tuple[str, ...] = ()
    dependencies: tuple[str, ...] = ()
    values: tuple[Scalar, ...] = ()  # sampler
    weights: tuple[float, ...] | None = None  # sampler
    model: str | None = None  # llm: "provider/model"
    prompt: str | None = None  # llm
    template: str | None = None  # template
    function: str | None = None  # python: "module:callable"
    mode: PythonMode | None = None  # python
    resource: str | None = None  # llm

    @property
    def is_root(self) -> bool:
        return not self.dependencies

    @property
    def provider(self) -> str | None:
        return None if self.model is None else self.model.partition("/")[0]

    @property
    def model_name(self) -> str | None:
        return None if self.model is None else self.model.partition("/")[2]


@dataclass(frozen=True, slots=True)
class ProcessorSpec:
    """One ``[[processors]]`` entry: ``filter`` (column, op, value), ``drop_duplicates`` (columns) or ``python``."""

    stage: ProcessorStage
    kind: ProcessorKind
    column: str | None = None
    op: FilterOp | None = None
    value: Scalar | tuple[Scalar, ...] | None = None
    columns: tuple[str, ...] = ()
    function: str | None = None

    @property
    def referenced_columns(self) -> tuple[str, ...]:
        return (self.column,) if self.column is not None else self.columns


@dataclass(frozen=True, slots=True)
class Recipe:
    """A validated recipe. ``resource_limits`` and ``topological_order`` are derived at construction."""

    run: RunSettings
    resources: Mapping[str, int]
    providers: Mapping[str, ProviderSpec]
    columns: tuple[ColumnSpec, ...]
    processors: tuple[ProcessorSpec, ...]
    recipe_hash: str
    resource_limits: Mapping[str, int] = field(init=False, repr=False, compare=False)
    topological_order: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _by_name: Mapping[str, ColumnSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        limits = dict(self.resources)
        for provider in self.providers.values():
            if provider.max_parallel_requests is not None:
                for model in provider.models:
                    limits.setdefault(f"{LLM_RESOURCE_PREFIX}{provider.name}/{model}", provider.max_parallel_requests)
        names = [column.name for column in self.columns]
        graph = {column.name: column.dependencies for column in self.columns}
        object.__setattr__(self, "resource_limits", MappingProxyType(dict(sorted(limits.items()))))
        object.__setattr__(self, "topological_order", topological_order(names, graph))
        object.__setattr__(self, "_by_name", MappingProxyType({column.name: column for column in self.columns}))

    def column(self, name: str) -> ColumnSpec:
        """The column called ``name`` (``KeyError`` if there is none)."""
        return self._by_name[name]

    @property
    def roots(self) -> tuple[ColumnSpec, ...]:
        """Columns without dependencies, in declaration order."""
        return tuple(column for column in self.columns if column.is_root)

    def canonical_json(self) -> str:
        """The canonical JSON that ``recipe_hash`` is the sha256 of."""
        return canonical_recipe_json(self.run, self.resources, self.providers, self.columns, self.processors)


def canonical_recipe_json(
    run: RunSettings,
    resources: Mapping[str, int],
    providers: Mapping[str, ProviderSpec],
    columns: tuple[ColumnSpec, ...],
    processors: tuple[ProcessorSpec, ...],
) -> str:
    document = {
        "format": _FORMAT,
        "run": {key: value for key, value in asdict(run).items() if key not in _UNHASHED_RUN_KEYS},
        "resources": dict(resources),
        "providers": {name: _hashed_provider(spec) for name, spec in providers.items()},
        "columns": [asdict(column) for column in columns],
        "processors": [asdict(processor) for processor in processors],
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


_UNHASHED_RUN_KEYS = ("given", "policy")  # scheduling choices that never change the output
_OPENAI_ONLY = ("base_url", "api_key_env", "timeout_s")


def _hashed_provider(spec: ProviderSpec) -> dict[str, Any]:
    """The provider as hashed: openai-only fields are left out when unset, so a provider's hash depends only
    on the fields its kind has (a mock provider hashes the same whatever fields other kinds add)."""
    return {key: value for key, value in asdict(spec).items() if not (key in _OPENAI_ONLY and value is None)}
