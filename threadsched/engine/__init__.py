"""The dataset engine (issue 3, in progress): recipes, templates, the mock endpoint and the tracker.

The runner that executes a recipe's column DAG over row groups on the ``Scheduler`` and the
``threadsched run`` command are not built yet.
"""

from __future__ import annotations

from .mock_provider import (
    RETRYABLE_ERRORS,
    MockFatalError,
    MockModelEndpoint,
    MockProviderError,
    MockTransientError,
    score_from_text,
)
from .recipe import (
    COLUMN_KINDS,
    FILTER_OPS,
    PROCESSOR_KINDS,
    PROCESSOR_STAGES,
    PROVIDER_KINDS,
    ColumnSpec,
    ProcessorSpec,
    ProviderSpec,
    Recipe,
    RecipeError,
    RunSettings,
    builtin_recipe_names,
    builtin_recipe_text,
    load_recipe,
    parse_recipe,
)
from .recipe_validation import template_references
from .templates import CompiledTemplate, TemplateError, render, template_fields
from .tracker import ColumnNode, CompletionTracker, DropResult, Outcome, TaskKey, TrackerError

__all__ = [
    "COLUMN_KINDS",
    "FILTER_OPS",
    "PROCESSOR_KINDS",
    "PROCESSOR_STAGES",
    "PROVIDER_KINDS",
    "RETRYABLE_ERRORS",
    "ColumnNode",
    "CompiledTemplate",
    "CompletionTracker",
    "DropResult",
    "MockFatalError",
    "MockModelEndpoint",
    "MockProviderError",
    "MockTransientError",
    "Outcome",
    "TemplateError",
    "TrackerError",
    "ColumnSpec",
    "ProcessorSpec",
    "ProviderSpec",
    "Recipe",
    "RecipeError",
    "RunSettings",
    "TaskKey",
    "builtin_recipe_names",
    "builtin_recipe_text",
    "load_recipe",
    "parse_recipe",
    "render",
    "score_from_text",
    "template_fields",
    "template_references",
]
