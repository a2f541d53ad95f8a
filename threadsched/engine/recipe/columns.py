"""Column and processor sections of a recipe: shapes, references, the column graph and stage rules.

Split from ``recipe.py`` to keep each module small; ``recipe.parse_recipe`` is the entry point.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from threadsched.engine.recipe.validation import FieldPath, Scalar, ValidationContext, dependency_cycle
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
    known_models,
    listing,
)

__all__ = ["parse_columns", "parse_processors"]

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
    weight = ctx.number(table.get("weight", 1.0), (*path, "weight"), minimum=0.0, exclusive_minimum=True)
    depends_on = ctx.string_list(table.get("depends_on", []), (*path, "depends_on"), non_empty=False)
    references = dict.fromkeys(depends_on, "depends_on")
    extra: dict[str, Any] = {}
    if kind == "sampler":
        if depends_on:
            ctx.fail((*path, "depends_on"), f"a sampler column must be a root (no dependencies), got {list(depends_on)!r}")
        values_path = (*path, "values")
        values = tuple(ctx.scalar(v, (*values_path, i)) for i, v in enumerate(ctx.array(table["values"], values_path)))
        extra.update(values=values)
        if "weights" in table:
            weights_path = (*path, "weights")
            raw_weights = ctx.array(table["weights"], weights_path)
            if len(raw_weights) != len(values):
                ctx.fail(weights_path, f"must have one weight per value ({len(values)}), got {len(raw_weights)}")
            weights = tuple(ctx.number(w, (*weights_path, i), minimum=0.0) for i, w in enumerate(raw_weights))
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
        ctx.fail(path, f"unknown provider {provider!r} in model {model!r} (known providers: {listing(sorted(providers))})")
    if model_name not in providers[provider].models:
        ctx.fail(path, f"unknown model {model!r} (known: {listing(known_models(providers))})")
    return model


def parse_columns(
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
    known = listing(list(index))
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
            ctx.fail(column_path, f"unknown column {name!r} (known: {listing(names)})")
        if stage == "pre_batch" and name not in roots:
            ctx.fail(
                column_path,
                f"a pre_batch processor may only use root columns (present before downstream cells: "
                f"{listing(roots)}), got {name!r}",
            )
        return name

    if kind == "filter":
        column = column_reference(table["column"], (*path, "column"))
        op = cast(FilterOp, ctx.choice(table["op"], (*path, "op"), FILTER_OPS))
        value_path = (*path, "value")
        value: Scalar | tuple[Scalar, ...]
        if op in ("in", "not_in"):
            if not isinstance(table["value"], list):
                ctx.fail(value_path, f"op {op!r} needs an array value, got {table['value']!r}")
            value = tuple(ctx.scalar(v, (*value_path, i)) for i, v in enumerate(ctx.array(table["value"], value_path)))
        else:
            value = ctx.scalar(table["value"], value_path)
            if op in _ORDERING_OPS and isinstance(value, bool):
                ctx.fail(value_path, f"op {op!r} needs a number or a string, got {value!r}")
        return ProcessorSpec(stage, kind, column=column, op=op, value=value)
    if kind == "drop_duplicates":
        columns_path = (*path, "columns")
        listed = ctx.string_list(table["columns"], columns_path)
        return ProcessorSpec(stage, kind, columns=tuple(column_reference(n, (*columns_path, i)) for i, n in enumerate(listed)))
    return ProcessorSpec(stage, kind, function=ctx.function_reference(table["function"], (*path, "function")))


def parse_processors(ctx: ValidationContext, raw: object, columns: tuple[ColumnSpec, ...]) -> tuple[ProcessorSpec, ...]:
    items = ctx.array(raw, ("processors",), non_empty=False)
    return tuple(_parse_processor(ctx, item, ("processors", i), columns) for i, item in enumerate(items))
