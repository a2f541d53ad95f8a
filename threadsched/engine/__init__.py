"""The dataset engine: recipes, templates, column executors, processors, the single-threaded
reference oracle and the completion tracker. The mock model's names (``threadsched.mock.model``) are
re-exported here, so recipes' user code can import them from the engine.

``run_recipe`` executes a recipe's column DAG over row groups on the ``Scheduler``; ``run_reference`` is the
single-threaded oracle writing the same files. ``threadsched run`` and ``threadsched demo`` drive both.
"""

from __future__ import annotations

from threadsched.engine.columns import (
    BatchExecutor,
    CellExecutor,
    ColumnExecutor,
    build_endpoints,
    compile_column,
    compile_columns,
)
from threadsched.engine.processors import Processor, ProcessorError, ProcessorResult, compile_processor, run_stage
from threadsched.engine.recipe import (
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
    template_references,
)
from threadsched.engine.reference import ReferenceResult, reference_row_values
from threadsched.engine.runner import RunResult, run_recipe, run_reference
from threadsched.engine.templates import CompiledTemplate, TemplateError, render, template_fields
from threadsched.engine.tracker import ColumnNode, CompletionTracker, DropResult, Outcome, TaskKey, TrackerError
from threadsched.engine.user_code import UserCodeError, import_callable
from threadsched.mock.model import (
    RETRYABLE_ERRORS,
    MockFatalError,
    MockModelEndpoint,
    MockProviderError,
    MockTransientError,
    score_from_text,
)

__all__ = [
    "BatchExecutor",
    "CellExecutor",
    "ColumnExecutor",
    "Processor",
    "ProcessorError",
    "ProcessorResult",
    "ReferenceResult",
    "RunResult",
    "UserCodeError",
    "build_endpoints",
    "compile_column",
    "compile_columns",
    "compile_processor",
    "import_callable",
    "reference_row_values",
    "run_recipe",
    "run_reference",
    "run_stage",
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
