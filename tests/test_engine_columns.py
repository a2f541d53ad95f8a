"""Column executors and the single-threaded reference: what one task computes, deterministically."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import no_sleep

from threadsched.engine import (
    RETRYABLE_ERRORS,
    CompiledTemplate,
    MockFatalError,
    MockModelEndpoint,
    MockTransientError,
    Recipe,
    TemplateError,
    builtin_recipe_text,
    parse_recipe,
)
from threadsched.engine.columns import (
    LLM_RETRYABLE_ERRORS,
    BatchExecutor,
    CellExecutor,
    ColumnExecutor,
    LlmExecutor,
    PythonBatchExecutor,
    PythonCellExecutor,
    SamplerExecutor,
    TemplateExecutor,
    build_endpoints,
    compile_column,
    compile_columns,
    sample_unit,
)
from threadsched.engine.reference import (
    ReferenceResult,
    compute_columns,
    default_max_attempts,
    failure_reason,
    reference_row_values,
)


def demo() -> Recipe:
    return parse_recipe(builtin_recipe_text())


def make_recipe(columns: str, *, run: str = "", seed: int = 11, providers: str = "", resources: str = "") -> Recipe:
    """A small inline recipe; ``providers`` defaults to one mock provider serving "writer"."""
    providers = providers or 'kind = "mock"\nmodels = ["writer"]\n'
    resources = resources or '"llm:mock/writer" = 4\n'
    head = f"[run]\nrecords = 40\nbuffer_size = 10\nseed = {seed}\n{run}\n"
    text = f"{head}[resources]\n{resources}\n[providers.mock]\n{providers}\n{columns}"
    return parse_recipe(text)


TOPIC = '[[columns]]\nname = "topic"\nkind = "sampler"\nvalues = ["a", "bb", "ccc"]\n'
MANY = '[[columns]]\nname = "n"\nkind = "sampler"\nvalues = [' + ", ".join(str(i) for i in range(1000)) + "]\n"


def llm_column(name: str = "q", prompt: str = "Ask about {topic}.") -> str:
    return f'[[columns]]\nname = "{name}"\nkind = "llm"\nmodel = "mock/writer"\nprompt = "{prompt}"\n'


def python_column(name: str, function: str, mode: str = "cell") -> str:
    return f'[[columns]]\nname = "{name}"\nkind = "python"\nfunction = "{function}"\nmode = "{mode}"\ndepends_on = ["topic"]\n'


def compiled(recipe: Recipe, name: str, endpoints: Any = None) -> ColumnExecutor:
    endpoints = build_endpoints(recipe, sleep=no_sleep) if endpoints is None else endpoints
    return compile_column(recipe.column(name), recipe, endpoints)


def cell(recipe: Recipe, name: str) -> CellExecutor:
    executor = compiled(recipe, name)
    assert isinstance(executor, CellExecutor)
    return executor


def sampler(recipe: Recipe, name: str = "topic") -> SamplerExecutor:
    executor = compiled(recipe, name)
    assert isinstance(executor, SamplerExecutor)
    return executor


# -- endpoints and common attributes -------------------------------------------------------------------


def test_build_endpoints_one_per_provider_seeded_from_the_run() -> None:
    recipe = demo()
    endpoints = build_endpoints(recipe, sleep=no_sleep)
    assert sorted(endpoints) == ["mock", "slow"]
    assert endpoints["slow"].models == ("judge",) and endpoints["slow"].latency_ms == 20.0
    assert all(endpoint.seed == recipe.run.seed for endpoint in endpoints.values())
    with pytest.raises(TypeError):
        endpoints["other"] = endpoints["mock"]  # type: ignore[index]


def test_build_endpoints_rejects_an_unknown_provider_kind() -> None:
    recipe = demo()
    odd = dataclasses.replace(recipe.providers["mock"], kind="remote")
    with pytest.raises(ValueError, match=r"provider 'mock': unsupported kind 'remote'"):
        build_endpoints(dataclasses.replace(recipe, providers={**recipe.providers, "mock": odd}))


def test_demo_executors_expose_the_common_attributes() -> None:
    executors = compile_columns(demo(), build_endpoints(demo(), sleep=no_sleep))
    assert list(executors) == list(demo().topological_order)
    summary = {e.name: (e.kind, e.mode, e.dependencies, e.weight, e.resource, e.retryable_errors) for e in executors.values()}
    assert summary == {
        "topic": ("sampler", "batch", (), 1.0, None, ()),
        "angle": ("sampler", "batch", (), 1.0, None, ()),
        "question": ("llm", "cell", ("topic", "angle"), 1.0, "llm:mock/writer", LLM_RETRYABLE_ERRORS),
        "answer": ("llm", "cell", ("question",), 1.0, "llm:mock/writer", LLM_RETRYABLE_ERRORS),
        "score": ("llm", "cell", ("question", "answer"), 2.0, "llm:slow/judge", LLM_RETRYABLE_ERRORS),
        "label": ("template", "cell", ("topic", "score"), 1.0, None, ()),
    }
    assert "resource='llm:slow/judge'" in repr(executors["score"])


def test_executors_are_immutable() -> None:
    executor = compiled(demo(), "question")
    with pytest.raises(dataclasses.FrozenInstanceError):
        executor.spec = demo().column("answer")  # type: ignore[misc]
    with pytest.raises((AttributeError, TypeError)):
        executor.extra = 1  # type: ignore[attr-defined]


# -- sampler -------------------------------------------------------------------------------------------


def test_sampler_value_depends_only_on_the_row_index_not_the_row_group() -> None:
    topic = sampler(demo())
    whole = topic.run_batch(range(200))
    for buffer_size in (1, 7, 20, 64):
        pieces: dict[int, object] = {}
        for start in range(0, 200, buffer_size):
            pieces.update(topic.run_batch(range(start, min(start + buffer_size, 200))))
        assert pieces == whole
    assert topic.run_batch_rows([(5, {}), (150, {"ignored": 1})]) == {5: whole[5], 150: whole[150]}
    assert sampler(demo()).run_batch(range(200)) == whole  # a fresh compile draws the same


def test_sampler_differs_by_seed_and_by_column() -> None:
    base = make_recipe(MANY)
    other_seed = make_recipe(MANY, seed=12)
    renamed = make_recipe(MANY.replace('"n"', '"m"'))
    values = sampler(base, "n").run_batch(range(100))
    assert sampler(other_seed, "n").run_batch(range(100)) != values
    assert sampler(renamed, "m").run_batch(range(100)) != values


def test_sampler_follows_the_weights() -> None:
    topic = sampler(demo())
    counts = Counter(topic.run_batch(range(5000)).values())
    expected = {"astronomy": 3 / 11, "cooking": 3 / 11, "history": 2 / 11, "music": 2 / 11, "off-topic": 1 / 11}
    for value, share in expected.items():
        assert abs(counts[value] / 5000 - share) < 0.02, (value, counts)


@pytest.mark.parametrize("weights", ["[1, 0, 2]", "[0, 2, 1]", "[2, 1, 0]", "[0, 0, 1]"])
def test_sampler_never_draws_a_zero_weight_value(weights: str) -> None:
    recipe = make_recipe(TOPIC + f"weights = {weights}\n")
    zero = {value for value, weight in zip(("a", "bb", "ccc"), json.loads(weights), strict=True) if weight == 0}
    drawn = set(sampler(recipe).run_batch(range(5000)).values())
    assert drawn and not drawn & zero


def test_sampler_unweighted_draws_every_value_and_uniform_is_below_one() -> None:
    assert set(sampler(make_recipe(TOPIC)).run_batch(range(300)).values()) == {"a", "bb", "ccc"}
    assert all(0.0 <= sample_unit(3, "x", index) < 1.0 for index in range(1000))


def test_sampler_rejects_bad_row_indices() -> None:
    topic = sampler(demo())
    for bad in (-1, True, 1.0):
        with pytest.raises(ValueError, match="row indices must be ints >= 0"):
            topic.run_batch([bad])  # type: ignore[list-item]


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(-(2**63), 2**63),
    requested=st.sets(st.integers(0, 10**9), max_size=40),
    others=st.sets(st.integers(0, 10**9), max_size=40),
)
def test_sampler_row_value_is_independent_of_the_other_rows_requested(seed: int, requested: set[int], others: set[int]) -> None:
    spec = demo().column("topic")
    topic = SamplerExecutor(spec, seed)
    alone = topic.run_batch(sorted(requested))
    together = topic.run_batch(sorted(requested | others, reverse=True))
    assert alone == {index: together[index] for index in requested}
    assert alone == {index: topic.value_for(index) for index in requested}
    assert set(alone.values()) <= set(spec.values)


# -- llm -----------------------------------------------------------------------------------------------


def test_llm_cell_renders_the_prompt_and_returns_the_completion() -> None:
    recipe = make_recipe(TOPIC + llm_column())
    endpoints = build_endpoints(recipe, sleep=no_sleep)
    question = compiled(recipe, "q", endpoints)
    assert isinstance(question, LlmExecutor) and isinstance(question, CellExecutor)
    assert question.prompt == CompiledTemplate("Ask about {topic}.")
    text = question.run_cell({"topic": "bb", "unrelated": 1}, attempt=1)
    assert text == MockModelEndpoint("mock", ["writer"], seed=11).complete("writer", "Ask about bb.")
    assert endpoints["mock"].statistics().calls == 1


def test_llm_cell_passes_the_attempt_and_errors_propagate_by_type() -> None:
    transient = make_recipe(TOPIC + llm_column(), providers='kind = "mock"\nmodels = ["writer"]\nfailure_rate = 1.0\n')
    fatal = make_recipe(TOPIC + llm_column(), providers='kind = "mock"\nmodels = ["writer"]\nfatal_rate = 1.0\n')
    with pytest.raises(MockTransientError) as caught:
        cell(transient, "q").run_cell({"topic": "a"}, attempt=3)
    assert caught.value.attempt == 3 and isinstance(caught.value, compiled(transient, "q").retryable_errors)
    with pytest.raises(MockFatalError) as fatal_caught:
        cell(fatal, "q").run_cell({"topic": "a"}, attempt=1)
    assert not isinstance(fatal_caught.value, RETRYABLE_ERRORS)


def test_llm_value_does_not_depend_on_the_attempt() -> None:
    recipe = make_recipe(
        MANY + llm_column(prompt="Tell me about {n}."), providers='kind = "mock"\nmodels = ["writer"]\nfailure_rate = 0.5\n'
    )
    question = cell(recipe, "q")
    successes: dict[int, set[object]] = {}
    for n in range(30):
        for attempt in range(1, 8):
            with contextlib.suppress(MockTransientError):
                successes.setdefault(n, set()).add(question.run_cell({"n": n}, attempt=attempt))
    assert all(len(values) == 1 for values in successes.values())


def test_llm_missing_prompt_field_and_missing_endpoint() -> None:
    recipe = make_recipe(TOPIC + llm_column())
    with pytest.raises(TemplateError, match="no value for field 'topic'"):
        cell(recipe, "q").run_cell({}, attempt=1)
    with pytest.raises(ValueError, match="no endpoint for provider 'mock'"):
        compile_column(recipe.column("q"), recipe, {})
    stranger = MockModelEndpoint("mock", ["other"], sleep=no_sleep)
    with pytest.raises(ValueError, match="does not serve model 'writer'"):
        compile_column(recipe.column("q"), recipe, {"mock": stranger})


def test_llm_executor_is_safe_to_share_between_threads() -> None:
    recipe = make_recipe(MANY + llm_column(prompt="Tell me about {n}."))
    question = cell(recipe, "q")
    expected = {n: question.run_cell({"n": n}) for n in range(200)}
    barrier = threading.Barrier(8)

    def work(offset: int) -> dict[int, object]:
        barrier.wait()
        return {n: question.run_cell({"n": n}) for n in range(offset, 200, 8)}

    with ThreadPoolExecutor(8) as pool:
        results = [item for part in pool.map(work, range(8)) for item in part.items()]
    assert dict(results) == expected


# -- template and python -------------------------------------------------------------------------------


def test_template_cell_renders_from_the_row() -> None:
    label = compiled(demo(), "label")
    assert isinstance(label, TemplateExecutor)
    assert label.run_cell({"topic": "music", "score": 4, "question": "q?"}) == "music: 4"
    with pytest.raises(TemplateError, match="no value for field 'score'"):
        label.run_cell({"topic": "music"})


def test_python_cell_gets_a_copy_of_the_row() -> None:
    recipe = make_recipe(
        TOPIC
        + python_column("loud", "support:shout")
        + python_column("count", "support:mutate_and_count")
        + python_column("score", "support:Scorer.score")
    )
    loud, count, score = (cell(recipe, name) for name in ("loud", "count", "score"))
    assert isinstance(loud, PythonCellExecutor) and loud.mode == "cell" and loud.dependencies == ("topic",)
    row = {"topic": "bb"}
    assert loud.run_cell(row, attempt=2) == "BB"
    assert count.run_cell(row) == 1 and row == {"topic": "bb"}
    assert score.run_cell(row) == 3


def test_python_batch_returns_one_value_per_row() -> None:
    recipe = make_recipe(TOPIC + python_column("length", "support:topic_lengths", "batch"))
    length = compiled(recipe, "length")
    assert isinstance(length, PythonBatchExecutor) and isinstance(length, BatchExecutor) and length.mode == "batch"
    assert length.run_batch_rows([(4, {"topic": "ccc"}), (2, {"topic": "a"})]) == {4: 3, 2: 1}
    assert length.run_batch_rows([]) == {}


@pytest.mark.parametrize(("function", "got"), [("support:one_short", "got 1 values"), ("support:not_a_list", "got str")])
def test_python_batch_wrong_result_names_the_function(function: str, got: str) -> None:
    executor = compiled(make_recipe(TOPIC + python_column("x", function, "batch")), "x")
    assert isinstance(executor, BatchExecutor)
    with pytest.raises(ValueError, match=rf"column 'x': python function '{function}' must return a list of 2 values .*{got}"):
        executor.run_batch_rows([(0, {"topic": "a"}), (1, {"topic": "bb"})])


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("engine_columns_no_such_module:f", r"import of 'engine_columns_no_such_module' failed: ModuleNotFoundError"),
        ("support:missing", r"no attribute 'missing'"),
        ("support:Scorer.missing", r"no attribute 'missing'"),
        ("support:NOT_CALLABLE", r"'NOT_CALLABLE' is not callable \(got int\)"),
    ],
)
def test_python_function_that_cannot_be_loaded_is_a_clear_error(function: str, message: str) -> None:
    recipe = make_recipe(TOPIC + python_column("x", function))
    with pytest.raises(ValueError, match=rf"column 'x': cannot load python function '{function}': {message}"):
        compiled(recipe, "x")


def test_python_module_raising_at_import_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "engine_columns_exploding.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = make_recipe(TOPIC + python_column("x", "engine_columns_exploding:f"))
    with pytest.raises(ValueError, match="import of 'engine_columns_exploding' failed: RuntimeError: boom at import"):
        compiled(recipe, "x")


# -- reference -----------------------------------------------------------------------------------------


def test_reference_on_the_demo_is_deterministic_and_complete() -> None:
    recipe = demo()
    first = reference_row_values(recipe, build_endpoints(recipe, sleep=no_sleep), range(recipe.run.records))
    second = reference_row_values(recipe, build_endpoints(recipe, sleep=no_sleep), reversed(range(recipe.run.records)))
    assert isinstance(first, ReferenceResult) and first == second
    assert set(first.rows) | set(first.dropped) == set(range(recipe.run.records))
    assert not set(first.rows) & set(first.dropped)
    assert all(list(row) == list(recipe.topological_order) for row in first.rows.values())
    assert all(reason for reason in first.dropped.values())
    topic = sampler(recipe)
    assert all(row["topic"] == topic.value_for(index) for index, row in first.rows.items())
    assert all(row["label"] == f"{row['topic']}: {row['score']}" for row in first.rows.values())


def test_reference_does_not_depend_on_the_buffer_size_or_the_rows_requested() -> None:
    recipe = make_recipe(
        MANY + llm_column(prompt="About {n}."), providers='kind = "mock"\nmodels = ["writer"]\nfailure_rate = 0.3\n'
    )
    regrouped = dataclasses.replace(recipe, run=dataclasses.replace(recipe.run, buffer_size=3))
    full = reference_row_values(recipe, build_endpoints(recipe, sleep=no_sleep), range(40))
    assert reference_row_values(regrouped, build_endpoints(regrouped, sleep=no_sleep), range(40)) == full
    some = reference_row_values(recipe, build_endpoints(recipe, sleep=no_sleep), [3, 17, 29])
    assert some.rows == {i: full.rows[i] for i in (3, 17, 29) if i in full.rows}
    assert some.dropped == {i: full.dropped[i] for i in (3, 17, 29) if i in full.dropped}


def test_reference_retries_retryable_failures_and_keeps_the_first_try_value() -> None:
    providers = 'kind = "mock"\nmodels = ["writer"]\nfailure_rate = 0.4\n'
    recipe = make_recipe(MANY + llm_column(prompt="About {n}."), run="max_salvage_rounds = 5", providers=providers)
    assert default_max_attempts(recipe) == 6
    endpoints = build_endpoints(recipe, sleep=no_sleep)
    result = reference_row_values(recipe, endpoints, range(40))
    stats = endpoints["mock"].statistics()
    assert stats.transient_failures > 0 and stats.calls > 40  # some rows needed retries ...
    clean = MockModelEndpoint("mock", ["writer"], seed=11)  # ... and got the value a clean endpoint gives
    assert all(row["q"] == clean.complete("writer", f"About {row['n']}.") for row in result.rows.values())


def test_reference_drops_rows_with_reasons() -> None:
    providers = 'kind = "mock"\nmodels = ["writer"]\nfailure_rate = 0.5\nfatal_rate = 0.2\n'
    recipe = make_recipe(MANY + llm_column(prompt="About {n}."), run="max_salvage_rounds = 1", providers=providers)
    result = reference_row_values(recipe, build_endpoints(recipe, sleep=no_sleep), range(40))
    reasons = list(result.dropped.values())
    assert any("still failing after 2 attempts: MockTransientError" in reason for reason in reasons)
    assert any("non-retryable failure on attempt" in reason and "MockFatalError" in reason for reason in reasons)
    assert all(reason.startswith("column 'q': ") for reason in reasons)
    assert len(result.rows) + len(result.dropped) == 40 and result.rows
    assert all("About" not in reason for reason in reasons)  # never the prompt


def test_reference_max_attempts_is_a_cap() -> None:
    recipe = make_recipe(TOPIC + llm_column(), providers='kind = "mock"\nmodels = ["writer"]\nfailure_rate = 1.0\n')
    endpoints = build_endpoints(recipe, sleep=no_sleep)
    result = reference_row_values(recipe, endpoints, range(5), max_attempts=4)
    assert not result.rows and endpoints["mock"].statistics().calls == 20
    assert set(result.dropped.values()) <= {
        failure_reason("q", MockTransientError("mock", "writer", 4), attempts=4, retryable=True)
    }
    with pytest.raises(ValueError, match="max_attempts must be an int >= 1"):
        reference_row_values(recipe, endpoints, range(5), max_attempts=0)
    with pytest.raises(ValueError, match="row indices must be ints >= 0"):
        reference_row_values(recipe, endpoints, [-1])


def test_reference_python_columns_batch_per_row_group_and_failures_drop() -> None:
    recipe = make_recipe(
        TOPIC + python_column("length", "support:topic_lengths", "batch") + python_column("loud", "support:shout")
    )
    result = reference_row_values(recipe, build_endpoints(recipe, sleep=no_sleep), range(25))
    assert not result.dropped
    assert all(
        row["length"] == len(str(row["topic"])) and row["loud"] == str(row["topic"]).upper() for row in result.rows.values()
    )

    bad_batch = make_recipe(TOPIC + python_column("x", "support:one_short", "batch"))
    dropped = reference_row_values(bad_batch, build_endpoints(bad_batch, sleep=no_sleep), range(25)).dropped
    assert sorted(dropped) == list(range(25)) and "must return a list of 10 values" in dropped[0]
    assert "must return a list of 5 values" in dropped[20]  # the last row group has 5 rows

    bad_cell = make_recipe(TOPIC + python_column("x", "support:broken"))
    dropped = reference_row_values(bad_cell, build_endpoints(bad_cell, sleep=no_sleep), range(3)).dropped
    assert dropped == dict.fromkeys(range(3), "column 'x': non-retryable failure on attempt 1: RuntimeError: user code failed")


def test_compute_columns_adds_columns_to_existing_rows_without_modifying_them() -> None:
    recipe = demo()
    executors = compile_columns(recipe, build_endpoints(recipe, sleep=no_sleep))
    given_rows = {1: {"topic": "music", "score": 5}, 0: {"topic": "cooking", "score": 2}}
    result = compute_columns(executors, ["label"], given_rows, max_attempts=1)
    assert result.rows == {
        0: {"topic": "cooking", "score": 2, "label": "cooking: 2"},
        1: {"topic": "music", "score": 5, "label": "music: 5"},
    }
    assert given_rows[1] == {"topic": "music", "score": 5}
    assert list(result.rows) == [0, 1]
