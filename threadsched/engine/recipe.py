"""Recipes: the typed, immutable, fully validated description of one dataset run.

A recipe is TOML parsed with ``tomllib``. Everything is checked before anything runs: unknown keys (typos
are never ignored), types, ranges, column/provider/model references, resource limits, the column graph
(cycles, roots) and processors. A failure is a ``RecipeError`` whose ``str`` is one line naming the
location, the field and the bad value; the CLI prints it and exits with code 2.

``recipe_hash`` is the sha256 of a canonical JSON of the *parsed* recipe (defaults applied, numbers
normalised, keys sorted), so comments, whitespace and key order do not change it, and any value does.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources as importlib_resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from threadsched.engine.recipe_validation import (
    FieldPath,
    RecipeError,
    Scalar,
    ValidationContext,
    topological_order,
)
from threadsched.policies import POLICY_NAMES

__all__ = [
    "COLUMN_KINDS",
    "FILTER_OPS",
    "PROCESSOR_KINDS",
    "PROCESSOR_STAGES",
    "PROVIDER_KINDS",
    "ColumnSpec",
    "ProcessorSpec",
    "ProviderSpec",
    "Recipe",
    "RecipeError",
    "RunSettings",
    "builtin_recipe_names",
    "builtin_recipe_text",
    "load_recipe",
    "parse_recipe",
]

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
        return _canonical_json(self.run, self.resources, self.providers, self.columns, self.processors)


def _canonical_json(
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


# -- [run] and [resources] ---------------------------------------------------------------------------

_RUN_KEYS = tuple(name for name in RunSettings.__dataclass_fields__ if name != "given")
_UNHASHED_RUN_KEYS = ("given", "policy")  # scheduling choices that never change the output


def _parse_run(ctx: ValidationContext, raw: object) -> RunSettings:
    path: FieldPath = ("run",)
    table = ctx.table(raw, path, _RUN_KEYS, required=("records",))
    defaults = RunSettings(records=1)

    def integer(key: str, minimum: int | None) -> int:
        return ctx.integer(table.get(key, getattr(defaults, key)), (*path, key), minimum=minimum)

    shutdown = table.get("error_rate_shutdown")
    return RunSettings(
        records=integer("records", 1),
        buffer_size=integer("buffer_size", 1),
        max_row_groups_in_flight=integer("max_row_groups_in_flight", 1),
        max_workers=integer("max_workers", 1),
        seed=integer("seed", None),
        max_salvage_rounds=integer("max_salvage_rounds", 0),
        error_rate_shutdown=None
        if shutdown is None
        else ctx.number(shutdown, (*path, "error_rate_shutdown"), minimum=0.0, maximum=1.0, exclusive_minimum=True),
        error_rate_min_window=integer("error_rate_min_window", 1),
        output=ctx.string(table.get("output", defaults.output), (*path, "output")),
        policy=ctx.choice(table.get("policy", defaults.policy), (*path, "policy"), POLICY_NAMES),
        given=frozenset(table),
    )


def _parse_resources(ctx: ValidationContext, raw: object, providers: Mapping[str, ProviderSpec]) -> Mapping[str, int]:
    table = ctx.table(raw, ("resources",), None)
    limits: dict[str, int] = {}
    known = known_models(providers)
    for key, value in table.items():
        path: FieldPath = ("resources", key)
        if not key.strip():
            ctx.fail(path, "resource name must be a non-empty string")
        if key == "submission":
            ctx.fail(path, "'submission' is the worker-slot resource; set it with run.max_workers")
        if key.startswith(LLM_RESOURCE_PREFIX) and key[len(LLM_RESOURCE_PREFIX) :] not in known:
            ctx.fail(path, f"unknown model {key[len(LLM_RESOURCE_PREFIX) :]!r} in resource {key!r} (known: {listing(known)})")
        limits[key] = ctx.integer(value, path, minimum=1)
    return MappingProxyType(dict(sorted(limits.items())))


# -- [providers.NAME] ----------------------------------------------------------------------------------

ProviderParser = Callable[[ValidationContext, str, Mapping[str, Any], FieldPath], ProviderSpec]


def _parse_mock_provider(ctx: ValidationContext, name: str, table: Mapping[str, Any], path: FieldPath) -> ProviderSpec:
    allowed = ("kind", "models", "latency_ms", "jitter_ms", "failure_rate", "fatal_rate", "max_parallel_requests")
    ctx.table(table, path, allowed, required=("models",), what="a mock provider")
    failure = ctx.number(table.get("failure_rate", 0.0), (*path, "failure_rate"), minimum=0.0, maximum=1.0)
    fatal = ctx.number(table.get("fatal_rate", 0.0), (*path, "fatal_rate"), minimum=0.0, maximum=1.0)
    if failure + fatal > 1.0:
        ctx.fail((*path, "fatal_rate"), f"failure_rate + fatal_rate must be <= 1, got {failure!r} + {fatal!r}")
    limit = table.get("max_parallel_requests")
    return ProviderSpec(
        name=name,
        kind="mock",
        models=ctx.string_list(table["models"], (*path, "models")),
        latency_ms=ctx.number(table.get("latency_ms", 0.0), (*path, "latency_ms"), minimum=0.0),
        jitter_ms=ctx.number(table.get("jitter_ms", 0.0), (*path, "jitter_ms"), minimum=0.0),
        failure_rate=failure,
        fatal_rate=fatal,
        max_parallel_requests=None if limit is None else ctx.integer(limit, (*path, "max_parallel_requests"), minimum=1),
    )


def _parse_openai_provider(ctx: ValidationContext, name: str, table: Mapping[str, Any], path: FieldPath) -> ProviderSpec:
    allowed = ("kind", "models", "base_url", "api_key_env", "max_parallel_requests", "timeout_s")
    ctx.table(table, path, allowed, required=("models", "base_url"), what="an openai provider")
    base_url = ctx.string(table["base_url"], (*path, "base_url")).strip()
    if not re.match(r"^https?://[^/\s]+", base_url):
        ctx.fail((*path, "base_url"), f"must be an http:// or https:// URL, got {base_url!r}")
    key_env = table.get("api_key_env")
    return ProviderSpec(
        name=name,
        kind="openai",
        models=ctx.string_list(table["models"], (*path, "models")),
        max_parallel_requests=ctx.integer(table.get("max_parallel_requests", 4), (*path, "max_parallel_requests"), minimum=1),
        base_url=base_url,
        api_key_env=None if key_env is None else ctx.identifier(key_env, (*path, "api_key_env")),
        timeout_s=ctx.number(table.get("timeout_s", 60.0), (*path, "timeout_s"), minimum=0.0, exclusive_minimum=True),
    )


# Extension point: a new provider kind is one parser here (plus its endpoint in the engine).
PROVIDER_KINDS: Mapping[str, ProviderParser] = MappingProxyType({"mock": _parse_mock_provider, "openai": _parse_openai_provider})
_OPENAI_ONLY = ("base_url", "api_key_env", "timeout_s")


def _hashed_provider(spec: ProviderSpec) -> dict[str, Any]:
    """The provider as hashed: openai-only fields are left out when unset, so older hashes stay valid."""
    return {key: value for key, value in asdict(spec).items() if not (key in _OPENAI_ONLY and value is None)}


def _parse_providers(ctx: ValidationContext, raw: object) -> Mapping[str, ProviderSpec]:
    table = ctx.table(raw, ("providers",), None)
    providers: dict[str, ProviderSpec] = {}
    for name, spec in table.items():
        path: FieldPath = ("providers", name)
        ctx.identifier(name, path)
        kind_path = (*path, "kind")
        body = ctx.table(spec, path, None, required=("kind",))
        kind = ctx.string(body["kind"], kind_path)
        parser = PROVIDER_KINDS.get(kind)
        if parser is None:
            ctx.fail(kind_path, f"unsupported provider kind {kind!r} (supported: {', '.join(PROVIDER_KINDS)})")
        providers[name] = parser(ctx, name, body, path)
    return MappingProxyType(providers)


def known_models(providers: Mapping[str, ProviderSpec]) -> tuple[str, ...]:
    return tuple(sorted(f"{name}/{model}" for name, spec in providers.items() for model in spec.models))


def listing(names: tuple[str, ...] | list[str]) -> str:
    return ", ".join(names) if names else "none"


# -- entry points ------------------------------------------------------------------------------------

_TOP_LEVEL = ("run", "resources", "providers", "columns", "processors")


def parse_recipe(text: str, source: str = "<recipe>") -> Recipe:
    """Parse and validate a TOML recipe; raise ``RecipeError`` naming the first problem and its location."""
    ctx = ValidationContext(source, text)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        line = message.rpartition("at line ")[2].partition(",")[0]
        location = f"{source}:{line}" if line.isdigit() else source
        raise RecipeError("", f"invalid TOML: {message}", location) from None
    ctx.table(document, (), _TOP_LEVEL, required=("run", "columns"))
    run = _parse_run(ctx, document["run"])
    providers = _parse_providers(ctx, document.get("providers", {}))
    resources = _parse_resources(ctx, document.get("resources", {}), providers)
    # Imported here: recipe_columns builds the types defined above (a module-level import would be a cycle).
    from threadsched.engine.recipe_columns import parse_columns, parse_processors

    columns = parse_columns(ctx, document["columns"], providers, resources)
    processors = parse_processors(ctx, document.get("processors", []), columns)
    canonical = _canonical_json(run, resources, providers, columns, processors)
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return Recipe(run, resources, providers, columns, processors, digest)


def load_recipe(path: str | Path) -> Recipe:
    """Read and parse a recipe file; an unreadable file is a ``RecipeError`` too (exit code 2)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise RecipeError("", f"cannot read recipe: {reason}", source) from None
    return parse_recipe(text, source=source)


def builtin_recipe_names() -> tuple[str, ...]:
    """Names of the recipes shipped in ``threadsched/engine/recipes/``."""
    folder = importlib_resources.files("threadsched.engine").joinpath("recipes")
    return tuple(sorted(item.name.removesuffix(".toml") for item in folder.iterdir() if item.name.endswith(".toml")))


def builtin_recipe_text(name: str = "demo") -> str:
    """The TOML text of a built-in recipe (``threadsched recipe demo`` prints it)."""
    names = builtin_recipe_names()
    if name not in names:
        raise ValueError(f"unknown built-in recipe {name!r} (available: {listing(list(names))})")
    resource = importlib_resources.files("threadsched.engine").joinpath("recipes", f"{name}.toml")
    return resource.read_text(encoding="utf-8")
