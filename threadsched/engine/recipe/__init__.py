"""Recipes: the typed, validated description of one dataset run, parsed from TOML.

``parse_recipe`` and ``load_recipe`` turn TOML into a ``Recipe`` (or a one-line ``RecipeError`` naming the
first problem and its location). Modules: ``parse`` (the parser and the built-in recipes), ``values`` (the
frozen types it builds and the canonical JSON behind ``recipe_hash``), ``validation`` (the located readers
and ``RecipeError``) and ``graph`` (the column graph: cycles and run order).
"""

from __future__ import annotations

from threadsched.engine.recipe.parse import PROVIDER_KINDS, builtin_recipe_names, builtin_recipe_text, load_recipe, parse_recipe
from threadsched.engine.recipe.validation import RecipeError, template_references
from threadsched.engine.recipe.values import (
    COLUMN_KINDS,
    FILTER_OPS,
    PROCESSOR_KINDS,
    PROCESSOR_STAGES,
    ColumnKind,
    ColumnSpec,
    FilterOp,
    ProcessorKind,
    ProcessorSpec,
    ProcessorStage,
    ProviderSpec,
    PythonMode,
    Recipe,
    RunSettings,
    Scalar,
)

__all__ = [
    "COLUMN_KINDS",
    "FILTER_OPS",
    "PROCESSOR_KINDS",
    "PROCESSOR_STAGES",
    "PROVIDER_KINDS",
    "ColumnKind",
    "ColumnSpec",
    "FilterOp",
    "ProcessorKind",
    "ProcessorSpec",
    "ProcessorStage",
    "ProviderSpec",
    "PythonMode",
    "Recipe",
    "RecipeError",
    "RunSettings",
    "Scalar",
    "builtin_recipe_names",
    "builtin_recipe_text",
    "load_recipe",
    "parse_recipe",
    "template_references",
]
