"""Parsing a recipe: TOML text to the typed, immutable, fully validated ``Recipe`` of one dataset run.

A recipe is TOML parsed with ``tomllib``. Everything is checked before anything runs: unknown keys (typos
are never ignored), types, ranges, column/provider/model references, resource limits, the column graph
(cycles, roots) and processors. A failure is a ``RecipeError`` whose ``str`` is one line naming the
location, the field and the bad value; the CLI prints it and exits with code 2.

``recipe_hash`` is the sha256 of a canonical JSON of the *parsed* recipe (defaults applied, numbers
normalised, keys sorted), so comments, whitespace and key order do not change it, and any value does.

One parser per table (``[run]``, ``[resources]``, ``[providers.NAME]``, ``[[columns]]``, ``[[processors]]``);
``parse_recipe`` and ``load_recipe`` are the entry points. The types they build are in ``values``, the
located readers they read with in ``validation``, and every number's range in ``ranges``.
"""

from __future__ import annotations

import hashlib
import re
import sys
import tomllib
from collections.abc import Callable, Mapping
from importlib import resources as importlib_resources
from pathlib import Path, PurePosixPath, PureWindowsPath
from types import MappingProxyType
from typing import Any, cast

from threadsched.engine.recipe.graph import dependency_cycle
from threadsched.engine.recipe.ranges import RECIPE_RANGES
from threadsched.engine.recipe.validation import FieldPath, RecipeError, ValidationContext, describe
from threadsched.engine.recipe.values import (
    COLUMN_KINDS,
    FILTER_OPS,
    LLM_RESOURCE_PREFIX,
    PROCESSOR_KINDS,
    PROCESSOR_STAGES,
    ColumnKind,
    ColumnSpec,
    FilterOp,
    ProcessorKind,
    ProcessorSpec,
    ProcessorStage,
    ProviderSpec,
    Recipe,
    RunSettings,
    Scalar,
    canonical_recipe_json,
)
from threadsched.policies import POLICY_NAMES

__all__ = ["PROVIDER_KINDS", "builtin_recipe_names", "builtin_recipe_text", "load_recipe", "parse_recipe"]


def _listing(names: tuple[str, ...] | list[str]) -> str:
    """Names for an error message: ``a, b, c``, or ``none``."""
    return ", ".join(names) if names else "none"


def _known_models(providers: Mapping[str, ProviderSpec]) -> tuple[str, ...]:
    """Every ``provider/model`` the recipe declares, sorted."""
    return tuple(sorted(f"{name}/{model}" for name, spec in providers.items() for model in spec.models))


# -- [run] and [resources] ---------------------------------------------------------------------------

_RUN_KEYS = tuple(name for name in RunSettings.__dataclass_fields__ if name != "given")


def _parse_run(ctx: ValidationContext, raw: object) -> RunSettings:
    path: FieldPath = ("run",)
    table = ctx.table(raw, path, _RUN_KEYS, required=("records",))
    defaults = RunSettings(records=1)

    def integer(key: str) -> int:
        return ctx.integer(table.get(key, getattr(defaults, key)), (*path, key), RECIPE_RANGES[f"run.{key}"])

    shutdown = table.get("error_rate_shutdown")
    return RunSettings(
        records=integer("records"),
        buffer_size=integer("buffer_size"),
        max_row_groups_in_flight=integer("max_row_groups_in_flight"),
        max_workers=integer("max_workers"),
        seed=integer("seed"),
        max_salvage_rounds=integer("max_salvage_rounds"),
        error_rate_shutdown=None
        if shutdown is None
        else ctx.number(shutdown, (*path, "error_rate_shutdown"), RECIPE_RANGES["run.error_rate_shutdown"]),
        error_rate_min_window=integer("error_rate_min_window"),
        output=_output(ctx, table.get("output", defaults.output), (*path, "output")),
        policy=ctx.choice(table.get("policy", defaults.policy), (*path, "policy"), POLICY_NAMES),
        given=frozenset(table),
    )


def _output(ctx: ValidationContext, value: object, path: FieldPath) -> str:
    """``run.output``: a directory beneath the recipe's own, so a recipe cannot aim its output elsewhere."""
    text = ctx.string(value, path)
    posix, windows = PurePosixPath(text), PureWindowsPath(text)
    if posix.is_absolute() or windows.anchor:
        ctx.fail(path, f"must be a relative path (a directory beneath the recipe's), got {text!r}; pass --out for another place")
    parts = windows.parts  # splits on "/" and "\\" both
    if ".." in parts:
        ctx.fail(path, f"must not climb out of the recipe's directory with '..', got {text!r}; pass --out for another place")
    if not [part for part in parts if part != "."]:
        ctx.fail(path, f"must name a directory beneath the recipe's, not the recipe's own directory, got {text!r}")
    return text


def _parse_resources(ctx: ValidationContext, raw: object, providers: Mapping[str, ProviderSpec]) -> Mapping[str, int]:
    table = ctx.table(raw, ("resources",), None)
    limits: dict[str, int] = {}
    known = _known_models(providers)
    for key, value in table.items():
        path: FieldPath = ("resources", key)
        if not key.strip():
            ctx.fail(path, "resource name must be a non-empty string")
        if key == "submission":
            ctx.fail(path, "'submission' is the worker-slot resource; set it with run.max_workers")
        if key.startswith(LLM_RESOURCE_PREFIX) and key[len(LLM_RESOURCE_PREFIX) :] not in known:
            ctx.fail(path, f"unknown model {key[len(LLM_RESOURCE_PREFIX) :]!r} in resource {key!r} (known: {_listing(known)})")
        limits[key] = ctx.integer(value, path, RECIPE_RANGES["resources.NAME"])
    return MappingProxyType(dict(sorted(limits.items())))


# -- [providers.NAME] ----------------------------------------------------------------------------------

ProviderParser = Callable[[ValidationContext, str, Mapping[str, Any], FieldPath], ProviderSpec]


def _parse_mock_provider(ctx: ValidationContext, name: str, table: Mapping[str, Any], path: FieldPath) -> ProviderSpec:
    allowed = ("kind", "models", "latency_ms", "jitter_ms", "failure_rate", "fatal_rate", "max_parallel_requests")
    ctx.table(table, path, allowed, required=("models",), what="a mock provider")

    def number(key: str) -> float:
        return ctx.number(table.get(key, 0.0), (*path, key), RECIPE_RANGES[f"providers.NAME.{key}"])

    failure = number("failure_rate")
    fatal = number("fatal_rate")
    if failure + fatal > 1.0:
        ctx.fail((*path, "fatal_rate"), f"failure_rate + fatal_rate must be <= 1, got {failure!r} + {fatal!r}")
    limit = table.get("max_parallel_requests")
    limit_range = RECIPE_RANGES["providers.NAME.max_parallel_requests"]
    return ProviderSpec(
        name=name,
        kind="mock",
        models=ctx.string_list(table["models"], (*path, "models")),
        latency_ms=number("latency_ms"),
        jitter_ms=number("jitter_ms"),
        failure_rate=failure,
        fatal_rate=fatal,
        max_parallel_requests=None if limit is None else ctx.integer(limit, (*path, "max_parallel_requests"), limit_range),
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
        max_parallel_requests=ctx.integer(
            table.get("max_parallel_requests", 4),
            (*path, "max_parallel_requests"),
            RECIPE_RANGES["providers.NAME.max_parallel_requests"],
        ),
        base_url=base_url,
        api_key_env=None if key_env is None else ctx.identifier(key_env, (*path, "api_key_env")),
        timeout_s=ctx.number(table.get("timeout_s", 60.0), (*path, "timeout_s"), RECIPE_RANGES["providers.NAME.timeout_s"]),
    )


# Extension point: a new provider kind is one parser here (plus its endpoint in the engine).
PROVIDER_KINDS: Mapping[str, ProviderParser] = MappingProxyType({"mock": _parse_mock_provider, "openai": _parse_openai_provider})


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


# -- [[columns]] ---------------------------------------------------------------------------------------

_COLUMN_COMMON = ("name", "kind", "weight", "depends_on")
_COLUMN_KEYS: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = {  # kind -> (required, optional)
    "sampler": (("values",), ("weights",)),
    "llm": (("model", "prompt"), ()),
    "template": (("template",), ()),
    "python": (("function",), ("mode",)),
}


def _parse_column(
    ctx: ValidationContext,
    raw: object,
    path: FieldPath,
    providers: Mapping[str, ProviderSpec],
    resources: Mapping[str, int],
) -> tuple[ColumnSpec, dict[str, str]]:
    """One column, and for each column it references the key that references it (for error paths)."""
    kind = cast(ColumnKind, ctx.choice(ctx.table(raw, path, None, ("name", "kind"))["kind"], (*path, "kind"), COLUMN_KINDS))
    required, optional = _COLUMN_KEYS[kind]
    table = ctx.table(raw, path, _COLUMN_COMMON + required + optional, required, what=f"a {kind} column")
    name = ctx.identifier(table["name"], (*path, "name"))
    weight = ctx.number(table.get("weight", 1.0), (*path, "weight"), RECIPE_RANGES["columns[N].weight"])
    depends_on = ctx.string_list(table.get("depends_on", []), (*path, "depends_on"), non_empty=False)
    references = dict.fromkeys(depends_on, "depends_on")
    extra: dict[str, Any] = {}
    if kind == "sampler":
        if depends_on:
            ctx.fail((*path, "depends_on"), f"a sampler column must be a root (no dependencies), got {list(depends_on)!r}")
        values_path = (*path, "values")
        value_range = RECIPE_RANGES["columns[N].values[I]"]
        raw_values = ctx.array(table["values"], values_path)
        values = tuple(ctx.scalar(v, (*values_path, i), value_range) for i, v in enumerate(raw_values))
        extra.update(values=values)
        if "weights" in table:
            weights_path = (*path, "weights")
            raw_weights = ctx.array(table["weights"], weights_path)
            if len(raw_weights) != len(values):
                ctx.fail(weights_path, f"must have one weight per value ({len(values)}), got {len(raw_weights)}")
            weight_range = RECIPE_RANGES["columns[N].weights[I]"]
            weights = tuple(ctx.number(w, (*weights_path, i), weight_range) for i, w in enumerate(raw_weights))
            if sum(weights) <= 0:
                ctx.fail(weights_path, f"must have a positive sum, got {list(weights)!r}")
            extra.update(weights=weights)
    elif kind == "llm":
        model = _model_reference(ctx, table["model"], (*path, "model"), providers)
        resource = f"{LLM_RESOURCE_PREFIX}{model}"
        provider = model.partition("/")[0]
        if resource not in resources and providers[provider].max_parallel_requests is None:
            ctx.fail(
                (*path, "model"),
                f'missing resource limit for {resource!r}: add "{resource}" = N under [resources] '
                f"or set providers.{provider}.max_parallel_requests",
            )
        prompt, fields = ctx.template(table["prompt"], (*path, "prompt"))
        references.update((field, "prompt") for field in fields if field not in references)
        extra.update(model=model, prompt=prompt, resource=resource)
    elif kind == "template":
        template, fields = ctx.template(table["template"], (*path, "template"))
        references.update((field, "template") for field in fields if field not in references)
        extra.update(template=template)
    else:
        function = ctx.function_reference(table["function"], (*path, "function"))
        mode = ctx.choice(table.get("mode", "cell"), (*path, "mode"), ("cell", "batch"))
        extra.update(function=function, mode=mode)
    column = ColumnSpec(name, kind, weight, depends_on, tuple(references), **extra)
    return column, references


def _model_reference(ctx: ValidationContext, raw: object, path: FieldPath, providers: Mapping[str, ProviderSpec]) -> str:
    model = ctx.string(raw, path)
    provider, slash, model_name = model.partition("/")
    if not slash or not provider or not model_name:
        ctx.fail(path, f"expected 'provider/model', got {model!r}")
    if provider not in providers:
        ctx.fail(path, f"unknown provider {provider!r} in model {model!r} (known providers: {_listing(sorted(providers))})")
    if model_name not in providers[provider].models:
        ctx.fail(path, f"unknown model {model!r} (known: {_listing(_known_models(providers))})")
    return model


def _parse_columns(
    ctx: ValidationContext, raw: object, providers: Mapping[str, ProviderSpec], resources: Mapping[str, int]
) -> tuple[ColumnSpec, ...]:
    columns: list[ColumnSpec] = []
    references: list[dict[str, str]] = []
    index: dict[str, int] = {}
    for position, item in enumerate(ctx.array(raw, ("columns",))):
        column, refs = _parse_column(ctx, item, ("columns", position), providers, resources)
        if column.name in index:
            ctx.fail(("columns", position, "name"), f"duplicate column name {column.name!r} (see columns[{index[column.name]}])")
        index[column.name] = position
        columns.append(column)
        references.append(refs)
    known = _listing(list(index))
    for position, refs in enumerate(references):
        for name, key in refs.items():
            if name not in index:
                ctx.fail(("columns", position, key), f"unknown column {name!r} (known: {known})")
    names = [column.name for column in columns]
    cycle = dependency_cycle(names, {column.name: column.dependencies for column in columns})
    if cycle is not None:
        # cycle[1] depends on cycle[0]: report that reference, where the user can cut the cycle.
        position = index[cycle[1]]
        ctx.fail(("columns", position, references[position][cycle[0]]), f"dependency cycle: {' -> '.join(cycle)}")
    return tuple(columns)


# -- [[processors]] ------------------------------------------------------------------------------------

_PROCESSOR_KEYS: Mapping[str, tuple[str, ...]] = {
    "filter": ("column", "op", "value"),
    "drop_duplicates": ("columns",),
    "python": ("function",),
}
_ORDERING_OPS = ("<", "<=", ">", ">=")


def _parse_processor(ctx: ValidationContext, raw: object, path: FieldPath, columns: tuple[ColumnSpec, ...]) -> ProcessorSpec:
    base = ctx.table(raw, path, None, ("stage", "kind"))
    stage = cast(ProcessorStage, ctx.choice(base["stage"], (*path, "stage"), PROCESSOR_STAGES))
    kind = cast(ProcessorKind, ctx.choice(base["kind"], (*path, "kind"), PROCESSOR_KINDS))
    keys = _PROCESSOR_KEYS[kind]
    table = ctx.table(raw, path, ("stage", "kind", *keys), keys, what=f"a {kind} processor")
    names = [column.name for column in columns]
    roots = [column.name for column in columns if column.is_root]

    def column_reference(value: object, column_path: FieldPath) -> str:
        name = ctx.string(value, column_path)
        if name not in names:
            ctx.fail(column_path, f"unknown column {name!r} (known: {_listing(names)})")
        if stage == "pre_batch" and name not in roots:
            ctx.fail(
                column_path,
                f"a pre_batch processor may only use root columns (present before downstream cells: "
                f"{_listing(roots)}), got {name!r}",
            )
        return name

    if kind == "filter":
        column = column_reference(table["column"], (*path, "column"))
        op = cast(FilterOp, ctx.choice(table["op"], (*path, "op"), FILTER_OPS))
        value_path = (*path, "value")
        value_range = RECIPE_RANGES["processors[N].value"]
        value: Scalar | tuple[Scalar, ...]
        if op in ("in", "not_in"):
            if not isinstance(table["value"], list):
                ctx.fail(value_path, f"op {op!r} needs an array value, got {describe(table['value'])}")
            items = ctx.array(table["value"], value_path)
            value = tuple(ctx.scalar(v, (*value_path, i), value_range) for i, v in enumerate(items))
        else:
            value = ctx.scalar(table["value"], value_path, value_range)
            if op in _ORDERING_OPS and isinstance(value, bool):
                ctx.fail(value_path, f"op {op!r} needs a number or a string, got {value!r}")
        return ProcessorSpec(stage, kind, column=column, op=op, value=value)
    if kind == "drop_duplicates":
        columns_path = (*path, "columns")
        listed = ctx.string_list(table["columns"], columns_path)
        return ProcessorSpec(stage, kind, columns=tuple(column_reference(n, (*columns_path, i)) for i, n in enumerate(listed)))
    return ProcessorSpec(stage, kind, function=ctx.function_reference(table["function"], (*path, "function")))


def _parse_processors(ctx: ValidationContext, raw: object, columns: tuple[ColumnSpec, ...]) -> tuple[ProcessorSpec, ...]:
    items = ctx.array(raw, ("processors",), non_empty=False)
    return tuple(_parse_processor(ctx, item, ("processors", i), columns) for i, item in enumerate(items))


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
    except ValueError:  # not a TOMLDecodeError: int() refused a decimal literal longer than Python allows
        _too_long_integer(ctx, text)
        raise
    ctx.table(document, (), _TOP_LEVEL, required=("run", "columns"))
    run = _parse_run(ctx, document["run"])
    providers = _parse_providers(ctx, document.get("providers", {}))
    resources = _parse_resources(ctx, document.get("resources", {}), providers)
    columns = _parse_columns(ctx, document["columns"], providers, resources)
    processors = _parse_processors(ctx, document.get("processors", []), columns)
    canonical = canonical_recipe_json(run, resources, providers, columns, processors)
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return Recipe(run, resources, providers, columns, processors, digest)


def _too_long_integer(ctx: ValidationContext, text: str) -> None:
    """Raise a located ``RecipeError`` for the first decimal integer literal with more digits than
    ``int()`` converts (``sys.get_int_max_str_digits``, 4300 by default); return if there is none.
    ``tomllib`` lets that ``ValueError`` escape, unlocated, instead of a ``TOMLDecodeError``."""
    limit = sys.get_int_max_str_digits()
    if limit <= 0:
        return
    literal = re.compile(rf"[0-9](?:_?[0-9]){{{limit},}}")
    for lineno, line in enumerate(text.splitlines(), start=1):
        if literal.search(line):
            message = f"an integer literal of more than {limit} digits, beyond every range"
            path = ctx.locator.path_at(lineno)
            if path is None:
                raise RecipeError("", message, f"{ctx.source}:{lineno}")
            ctx.fail(path, message)


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
        raise ValueError(f"unknown built-in recipe {name!r} (available: {_listing(list(names))})")
    resource = importlib_resources.files("threadsched.engine").joinpath("recipes", f"{name}.toml")
    return resource.read_text(encoding="utf-8")
