"""Recipe parsing and validation: typed immutable result, stable hash, one clear line per error."""

from __future__ import annotations

import dataclasses
import itertools
import pickle
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from threadsched.engine import (
    ColumnSpec,
    Recipe,
    RecipeError,
    builtin_recipe_names,
    builtin_recipe_text,
    load_recipe,
    parse_recipe,
    template_references,
)

RUN = "[run]\nrecords = 10\n"
PROVIDERS = """
[providers.mock]
kind = "mock"
models = ["writer", "judge"]
latency_ms = 1
failure_rate = 0.1
"""
RESOURCES = """
[resources]
"llm:mock/writer" = 4
"llm:mock/judge" = 2
"""
COLUMNS = """
[[columns]]
name = "topic"
kind = "sampler"
values = ["a", "b"]

[[columns]]
name = "question"
kind = "llm"
model = "mock/writer"
prompt = "Ask about {topic}"

[[columns]]
name = "label"
kind = "template"
template = "{topic}/{question}"
"""


def make(
    *, run: str = RUN, providers: str = PROVIDERS, resources: str = RESOURCES, columns: str = COLUMNS, processors: str = ""
) -> str:
    return "\n".join((run, providers, resources, columns, processors))


def processor(stage: str, kind: str, **values: object) -> str:
    body = "".join(f"{key} = {value!r}\n".replace("'", '"') for key, value in values.items())
    return f'[[processors]]\nstage = "{stage}"\nkind = "{kind}"\n{body}'


def column(name: str, template: str) -> str:
    return f'[[columns]]\nname = "{name}"\nkind = "template"\ntemplate = "{template}"\n'


# -- the happy path ---------------------------------------------------------------------------------


def test_demo_recipe_parses_with_the_documented_shape() -> None:
    assert "demo" in builtin_recipe_names()
    recipe = parse_recipe(builtin_recipe_text("demo"), source="demo.toml")
    assert (recipe.run.records, recipe.run.buffer_size, recipe.run.max_row_groups_in_flight, recipe.run.max_workers) == (
        200,
        20,
        4,
        8,
    )
    assert recipe.topological_order == ("topic", "angle", "question", "answer", "score", "label")
    assert [c.name for c in recipe.roots] == ["topic", "angle"]
    kinds = {c.name: c.kind for c in recipe.columns}
    assert kinds == {
        "topic": "sampler",
        "angle": "sampler",
        "question": "llm",
        "answer": "llm",
        "score": "llm",
        "label": "template",
    }
    assert recipe.column("question").dependencies == ("topic", "angle")
    assert recipe.column("score").dependencies == ("question", "answer")
    assert recipe.column("question").resource == "llm:mock/writer"
    assert recipe.column("label").resource is None
    # one explicit limit, one from the provider's max_parallel_requests
    assert dict(recipe.resource_limits) == {"llm:mock/writer": 4, "llm:slow/judge": 4}
    assert any(p.failure_rate > 0 for p in recipe.providers.values())
    assert len({p.latency_ms for p in recipe.providers.values()}) == 2  # one model is slower
    (processor,) = recipe.processors
    assert (processor.stage, processor.kind, processor.column) == ("pre_batch", "filter", "topic")


def test_demo_hash_is_stable() -> None:
    text = builtin_recipe_text()
    first = parse_recipe(text).recipe_hash
    assert first == parse_recipe(text, source="elsewhere.toml").recipe_hash
    assert re.fullmatch(r"[0-9a-f]{64}", first)


def test_unknown_builtin_recipe() -> None:
    with pytest.raises(ValueError, match=r"unknown built-in recipe 'nope' \(available: demo"):
        builtin_recipe_text("nope")


def test_defaults_and_types() -> None:
    recipe = parse_recipe(make())
    run = recipe.run
    assert (run.records, run.buffer_size, run.max_workers, run.seed, run.error_rate_shutdown) == (10, 100, 8, 0, None)
    assert run.output == "threadsched-out" and run.error_rate_min_window == 20
    provider = recipe.providers["mock"]
    assert provider.models == ("writer", "judge") and provider.latency_ms == 1.0 and provider.fatal_rate == 0.0
    question = recipe.column("question")
    assert (question.provider, question.model_name, question.weight) == ("mock", "writer", 1.0)
    assert recipe.column("label").dependencies == ("topic", "question")


def test_recipe_is_immutable() -> None:
    recipe = parse_recipe(make())
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.run = recipe.run  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.columns[0].name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        recipe.resources["llm:mock/writer"] = 9  # type: ignore[index]
    with pytest.raises(TypeError):
        recipe.providers["x"] = recipe.providers["mock"]  # type: ignore[index]
    assert isinstance(recipe.columns, tuple) and isinstance(recipe.providers["mock"].models, tuple)


def test_hash_ignores_key_order_whitespace_and_comments_but_not_values() -> None:
    base = parse_recipe(make()).recipe_hash
    reordered = make(
        run="# comment\n[run]\n\n\nrecords   =   10\n",
        providers='[providers.mock]\nfailure_rate = 0.1\nmodels = [ "writer",\n  "judge" ]\nlatency_ms = 1.0\nkind = "mock"\n',
        resources='[resources]\n"llm:mock/judge" = 2\n"llm:mock/writer" = 4\n',
    )
    assert parse_recipe(reordered).recipe_hash == base
    # defaults written out explicitly are the same recipe
    assert parse_recipe(make(run="[run]\nrecords = 10\nmax_workers = 8\nseed = 0\n")).recipe_hash == base
    assert parse_recipe(make(run="[run]\nrecords = 11\n")).recipe_hash != base
    assert parse_recipe(make(run="[run]\nrecords = 10\nseed = 1\n")).recipe_hash != base
    assert parse_recipe(make(columns=COLUMNS.replace("Ask about", "Ask on"))).recipe_hash != base


def test_load_recipe_from_file(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text(make(run="[run]\nrecords = 0\n"), encoding="utf-8")
    with pytest.raises(
        RecipeError, match=rf"^{re.escape(str(path))}:2: run\.records: must be an integer in \[1, 10_000_000\], got 0$"
    ):
        load_recipe(path)
    path.write_text(make(), encoding="utf-8")
    assert load_recipe(str(path)) == parse_recipe(make())
    with pytest.raises(RecipeError, match=r"missing\.toml: cannot read recipe"):
        load_recipe(tmp_path / "missing.toml")


def test_error_attributes_and_single_line() -> None:
    text = make(columns=COLUMNS.replace('"mock/writer"', '"mock/judg"'))
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, source="recipe.toml")
    error = info.value
    line = text.splitlines().index('model = "mock/judg"') + 1
    assert error.field == "columns[1].model"
    assert error.location == f"recipe.toml:{line}"
    assert str(error) == f"recipe.toml:{line}: columns[1].model: unknown model 'mock/judg' (known: mock/judge, mock/writer)"
    assert "\n" not in str(error)
    assert isinstance(error, ValueError)
    assert str(pickle.loads(pickle.dumps(error))) == str(error)


def test_invalid_toml_reports_line() -> None:
    with pytest.raises(RecipeError, match=r"^r\.toml:2: invalid TOML"):
        parse_recipe("[run]\nrecords = = 3\n", source="r.toml")


# -- every validation error ---------------------------------------------------------------------------

SAMPLER_WITH_DEPS = COLUMNS + '[[columns]]\nname = "s2"\nkind = "sampler"\nvalues = [1]\ndepends_on = ["topic"]\n'
NO_LIMIT_PROVIDER = '[providers.mock]\nkind = "mock"\nmodels = ["writer", "judge"]\n'

ERROR_CASES = [
    # [run]
    ("bad type", make(run='[run]\nrecords = "10"\n'), "run.records", r"expected an integer, got '10' \(string\)"),
    ("bool is no int", make(run="[run]\nrecords = true\n"), "run.records", r"expected an integer, got True"),
    ("missing records", make(run="[run]\nseed = 1\n"), "run.records", r"missing required key 'records'"),
    ("buffer", make(run="[run]\nrecords = 5\nbuffer_size = 0\n"), "run.buffer_size", r"integer in \[1, 1_000_000\], got 0"),
    ("salvage", make(run="[run]\nrecords = 5\nmax_salvage_rounds = -1\n"), "run.max_salvage_rounds", r"in \[0, 100\], got -1"),
    ("rate 0", make(run="[run]\nrecords = 5\nerror_rate_shutdown = 0\n"), "run.error_rate_shutdown", r"in \(0, 1\], got 0"),
    ("rate >1", make(run="[run]\nrecords = 5\nerror_rate_shutdown = 1.5\n"), "run.error_rate_shutdown", r"in \(0, 1\], got 1.5"),
    ("window", make(run="[run]\nrecords = 5\nerror_rate_min_window = 0\n"), "run.error_rate_min_window", r"10_000_000\], got 0"),
    ("output", make(run="[run]\nrecords = 5\noutput = 3\n"), "run.output", r"expected a string, got 3"),
    ("output absolute", make(run='[run]\nrecords = 5\noutput = "/srv/x"\n'), "run.output", r"must be a relative path"),
    ("output drive", make(run='[run]\nrecords = 5\noutput = "C:x"\n'), "run.output", r"must be a relative path"),
    ("output climbs", make(run='[run]\nrecords = 5\noutput = "../elsewhere"\n'), "run.output", r"must not climb .*'\.\.'"),
    ("output climbs later", make(run='[run]\nrecords = 5\noutput = "a/../../b"\n'), "run.output", r"must not climb"),
    ("output is the recipe's", make(run='[run]\nrecords = 5\noutput = "./."\n'), "run.output", r"not the recipe's own"),
    ("unknown run key", make(run="[run]\nrecords = 5\nrecrods = 6\n"), "run.recrods", r"unknown key 'recrods'"),
    ("unknown top key", make(processors="[procesors]\n"), "procesors", r"unknown key 'procesors'"),
    ("no columns", make(columns=""), "columns", r"missing required key 'columns'"),
    # [resources]
    ("resource zero", make(resources='[resources]\n"llm:mock/writer" = 0\n'), '"llm:mock/writer"', r"in \[1, 1_000_000\], got 0"),
    ("resource type", make(resources='[resources]\ngpu = 1.5\n'), "resources.gpu", r"expected an integer, got 1.5"),
    ("resource model", make(resources='[resources]\n"llm:mock/writr" = 2\n'), "mock/writr", r"unknown model 'mock/writr'"),
    ("submission", make(resources="[resources]\nsubmission = 2\n"), "resources.submission", r"run\.max_workers"),
    # [providers]
    ("provider kind", make(providers=PROVIDERS.replace('"mock"', '"grpc"')), "providers.mock.kind", r"'grpc'"),
    ("provider key", make(providers=PROVIDERS + "latency = 3\n"), "providers.mock.latency", r"unknown key 'latency'"),
    ("failure rate", make(providers=PROVIDERS.replace("0.1", "1.1")), "providers.mock.failure_rate", r"in \[0, 1\], got 1.1"),
    ("rates sum", make(providers=PROVIDERS + "fatal_rate = 0.95\n"), "providers.mock.fatal_rate", r"must be <= 1"),
    ("latency", make(providers=PROVIDERS + "jitter_ms = -1\n"), "providers.mock.jitter_ms", r"in \[0, 3_600_000\], got -1"),
    ("models empty", make(providers=PROVIDERS.replace('"writer", "judge"', "")), "providers.mock.models", r"non-empty"),
    ("models dup", make(providers=PROVIDERS.replace('"judge"', '"writer"')), "providers.mock.models[1]", r"duplicate"),
    ("mpr", make(providers=PROVIDERS + "max_parallel_requests = 0\n"), "max_parallel_requests", r"in \[1, 10_000\], got 0"),
    # [[columns]]
    ("unknown model", make(columns=COLUMNS.replace("mock/writer", "mock/judg")), "columns[1].model", r"unknown model"),
    ("unknown provider", make(columns=COLUMNS.replace("mock/writer", "x/writer")), "columns[1].model", r"provider 'x'"),
    ("model form", make(columns=COLUMNS.replace("mock/writer", "writer")), "columns[1].model", r"'provider/model'"),
    (
        "missing resource limit",
        make(providers=NO_LIMIT_PROVIDER, resources='[resources]\n"llm:mock/judge" = 1\n'),
        "columns[1].model",
        r"missing resource limit for 'llm:mock/writer'",
    ),
    ("column key", make(columns=COLUMNS + "promt = 'x'\n"), "columns[2].promt", r"unknown key 'promt' for a template"),
    ("key of other kind", make(columns=COLUMNS.replace("template = ", "prompt = ")), "columns[2].prompt", r"unknown key"),
    ("column kind", make(columns=COLUMNS.replace('"template"', '"jinja"')), "columns[2].kind", r"unknown value 'jinja'"),
    ("column name", make(columns=COLUMNS.replace('"label"', '"my label"')), "columns[2].name", r"identifier"),
    ("duplicate name", make(columns=COLUMNS.replace('"label"', '"topic"')), "columns[2].name", r"duplicate column"),
    ("weight", make(columns=COLUMNS + "weight = 0\n"), "columns[2].weight", r"in \[0.001, 1_000\], got 0"),
    ("weight inf", make(columns=COLUMNS + "weight = inf\n"), "columns[2].weight", r"finite"),
    ("sampler with dependencies", make(columns=SAMPLER_WITH_DEPS), "columns[3].depends_on", r"sampler .* must be a root"),
    ("sampler values", make(columns=COLUMNS.replace('["a", "b"]', "[]")), "columns[0].values", r"non-empty"),
    ("sampler value", make(columns=COLUMNS.replace('["a", "b"]', '["a", [1]]')), "columns[0].values[1]", r"\[1\]"),
    ("weights len", make(columns=COLUMNS.replace("[\"a\", \"b\"]", '["a"]\nweights = [1, 2]')), "weights", r"one weight"),
    ("weights neg", make(columns=COLUMNS.replace("[\"a\", \"b\"]", '["a"]\nweights = [-1]')), "weights[0]", r"000\], got -1"),
    ("weights sum", make(columns=COLUMNS.replace("[\"a\", \"b\"]", '["a"]\nweights = [0]')), "weights", r"positive sum"),
    ("unknown ref", make(columns=COLUMNS.replace("{question}", "{questoin}")), "columns[2].template", r"'questoin'"),
    ("unknown dep", make(columns=COLUMNS + 'depends_on = ["nope"]\n'), "columns[2].depends_on", r"unknown column 'nope'"),
    ("attribute", make(columns=COLUMNS.replace("{question}", "{question.upper}")), "columns[2].template", r"\{question"),
    ("index", make(columns=COLUMNS.replace("{question}", "{question[0]}")), "columns[2].template", r"no attribute access"),
    ("conversion", make(columns=COLUMNS.replace("{question}", "{question!r}")), "columns[2].template", r"conversions"),
    ("format spec", make(columns=COLUMNS.replace("{question}", "{question:>9}")), "columns[2].template", r"format specs"),
    ("positional", make(columns=COLUMNS.replace("{question}", "{}")), "columns[2].template", r"positional"),
    ("malformed", make(columns=COLUMNS.replace("{question}", "{question")), "columns[2].template", r"malformed"),
    ("python fn", make(columns=COLUMNS + '[[columns]]\nname = "p"\nkind = "python"\nfunction = "os.system"\n'),
     "columns[3].function", r"'module:callable'"),
    ("python mode", make(columns=COLUMNS + '[[columns]]\nname = "p"\nkind = "python"\nfunction = "m:f"\nmode = "row"\n'),
     "columns[3].mode", r"unknown value 'row' \(expected one of: cell, batch\)"),
    ("self cycle", make(columns=COLUMNS + column("c", "{c}")), "columns[3].template", r"dependency cycle: c -> c"),
    # [[processors]]
    ("bad op", make(processors=processor("post_batch", "filter", column="topic", op="=~", value=1)),
     "processors[0].op", r"unknown value '=~' \(expected one of: ==, !=, <, <=, >, >=, in, not_in\)"),
    ("in needs list", make(processors=processor("post_batch", "filter", column="topic", op="in", value=1)),
     "processors[0].value", r"op 'in' needs an array value, got 1"),
    ("list for ==", make(processors=processor("post_batch", "filter", column="topic", op="==", value=[1])),
     "processors[0].value", r"expected a string, number or boolean"),
    ("filter column", make(processors=processor("post_batch", "filter", column="x", op="==", value=1)),
     "processors[0].column", r"unknown column 'x'"),
    ("pre_batch non-root", make(processors=processor("pre_batch", "filter", column="label", op="==", value=1)),
     "processors[0].column", r"pre_batch processor may only use root columns .*topic.*got 'label'"),
    ("pre_batch dedup", make(processors=processor("pre_batch", "drop_duplicates", columns=["topic", "question"])),
     "processors[0].columns[1]", r"root columns"),
    ("dedup empty", make(processors=processor("post_batch", "drop_duplicates", columns=[])),
     "processors[0].columns", r"non-empty"),
    ("stage", make(processors=processor("later", "python", function="m:f")), "processors[0].stage", r"'later'"),
    ("processor key", make(processors=processor("post_batch", "python", function="m:f", column="topic")),
     "processors[0].column", r"unknown key 'column' for a python processor"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "field", "pattern"), [case[1:] for case in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_validation_errors_name_field_value_and_location(text: str, field: str, pattern: str) -> None:
    with pytest.raises(RecipeError, match=pattern) as info:
        parse_recipe(text, source="r.toml")
    error = info.value
    assert field in error.field
    assert error.location.startswith("r.toml")
    assert str(error).startswith(f"{error.location}: {error.field}: ")
    assert "\n" not in str(error)


def test_cycle_error_names_the_path() -> None:
    columns = COLUMNS + column("a", "{b}") + column("b", "{c}") + column("c", "{a} {topic}")
    with pytest.raises(RecipeError, match=r"dependency cycle: a -> c -> b -> a$") as info:
        parse_recipe(make(columns=columns))
    assert info.value.field == "columns[5].template"  # c's reference to a closes the cycle


def test_cycle_through_depends_on_points_at_depends_on() -> None:
    columns = COLUMNS + column("a", "{b}") + column("b", "x") + 'depends_on = ["a"]\n'
    with pytest.raises(RecipeError, match=r"dependency cycle: a -> b -> a") as info:
        parse_recipe(make(columns=columns))
    assert info.value.field == "columns[4].depends_on"


def test_error_line_points_at_the_key_in_its_array_entry() -> None:
    text = make(columns=COLUMNS + "weight = -2\n")
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, source="r.toml")
    assert info.value.location == f"r.toml:{text.splitlines().index('weight = -2') + 1}"


def test_unknown_provider_kind_message() -> None:
    with pytest.raises(RecipeError, match=r"providers\.mock\.kind: unsupported provider kind 'http' \(supported: mock, openai\)"):
        parse_recipe(make(providers=PROVIDERS.replace('kind = "mock"', 'kind = "http"')))


# -- dependencies and order ---------------------------------------------------------------------------


def test_dependencies_union_depends_on_and_template_references_in_order() -> None:
    columns = COLUMNS + column("z", "{label} {topic} {label}") + 'depends_on = ["question", "topic"]\n'
    recipe = parse_recipe(make(columns=columns))
    z = recipe.column("z")
    assert z.depends_on == ("question", "topic")
    assert z.dependencies == ("question", "topic", "label")


def test_template_references_rules() -> None:
    assert template_references("{a} and {b} then {a} {{literal}} {c:}") == ("a", "b", "c")
    assert template_references("no fields") == ()
    for bad in ("{a.b}", "{a[0]}", "{0}", "{}", "{a!s}", "{a:{b}}", "{a b}", "{"):
        with pytest.raises(ValueError):
            template_references(bad)


def test_topological_order_prefers_declaration_order_among_ready_columns() -> None:
    columns = column("late", "{b}") + column("a", "x") + column("b", "{a}") + column("c", "y") + column("d", "{c}{a}")
    recipe = parse_recipe(make(resources="", providers="", columns=columns))
    assert recipe.topological_order == ("a", "b", "late", "c", "d")
    assert [c.name for c in recipe.roots] == ["a", "c"]


def test_llm_root_and_provider_default_limit() -> None:
    providers = NO_LIMIT_PROVIDER + "max_parallel_requests = 3\n"
    columns = '[[columns]]\nname = "q"\nkind = "llm"\nmodel = "mock/judge"\nprompt = "hello"\n'
    recipe = parse_recipe(make(providers=providers, resources='[resources]\n"llm:mock/writer" = 9\ngpu = 1\n', columns=columns))
    assert recipe.column("q").is_root
    assert dict(recipe.resource_limits) == {"gpu": 1, "llm:mock/judge": 3, "llm:mock/writer": 9}


def test_processors_parse() -> None:
    processors = (
        '[[processors]]\nstage = "pre_batch"\nkind = "filter"\ncolumn = "topic"\nop = "not_in"\nvalue = ["a"]\n'
        '[[processors]]\nstage = "post_batch"\nkind = "drop_duplicates"\ncolumns = ["question", "label"]\n'
        '[[processors]]\nstage = "post_batch"\nkind = "python"\nfunction = "pkg.mod:Class.method"\n'
    )
    first, second, third = parse_recipe(make(processors=processors)).processors
    assert (first.op, first.value, first.referenced_columns) == ("not_in", ("a",), ("topic",))
    assert second.columns == ("question", "label") == second.referenced_columns
    assert third.function == "pkg.mod:Class.method" and third.referenced_columns == ()


# -- properties over random graphs ----------------------------------------------------------------------


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[str], dict[str, list[str]]]:
    """A random DAG over c0..cN (edges only from lower to higher index), declared in a random order."""
    size = draw(st.integers(min_value=1, max_value=9))
    names = [f"c{i}" for i in range(size)]
    deps = {name: [names[j] for j in range(i) if draw(st.booleans())] for i, name in enumerate(names)}
    order = draw(st.permutations(names))
    return list(order), deps


def dag_recipe(order: list[str], deps: dict[str, list[str]]) -> str:
    columns = "".join(column(name, " ".join("{" + d + "}" for d in deps[name]) or "root") for name in order)
    return make(providers="", resources="", columns=columns)


@settings(max_examples=150, deadline=None)
@given(dags())
def test_topological_order_respects_dependencies(dag: tuple[list[str], dict[str, list[str]]]) -> None:
    order, deps = dag
    recipe = parse_recipe(dag_recipe(order, deps))
    position = {name: i for i, name in enumerate(recipe.topological_order)}
    assert sorted(position) == sorted(order)
    for spec in recipe.columns:
        assert set(spec.dependencies) == set(deps[spec.name])
        assert all(position[d] < position[spec.name] for d in spec.dependencies)
    assert isinstance(recipe, Recipe) and all(isinstance(c, ColumnSpec) for c in recipe.columns)


@settings(max_examples=150, deadline=None)
@given(dags(), st.data())
def test_a_back_edge_is_reported_as_a_cycle(dag: tuple[list[str], dict[str, list[str]]], data: st.DataObject) -> None:
    order, deps = dag
    names = sorted(deps, key=lambda n: int(n[1:]))
    low = data.draw(st.integers(min_value=0, max_value=len(names) - 1))
    high = data.draw(st.integers(min_value=low, max_value=len(names) - 1))
    # make a path low -> ... -> high exist, then let low depend on high: a cycle through both.
    for i in range(low + 1, high + 1):
        if names[i - 1] not in deps[names[i]]:
            deps[names[i]].append(names[i - 1])
    deps[names[low]].append(names[high])
    with pytest.raises(RecipeError, match=r"dependency cycle: (c\d+)( -> c\d+)* -> \1$") as info:
        parse_recipe(dag_recipe(order, deps))
    cycle = str(info.value).rpartition("dependency cycle: ")[2].split(" -> ")
    for producer, consumer in itertools.pairwise(cycle):
        assert producer in deps[consumer]


OPENAI = """
[run]
records = 4

[providers.local]
kind = "openai"
base_url = "http://127.0.0.1:8765"
models = ["writer"]
{extra}

[[columns]]
name = "q"
kind = "llm"
model = "local/writer"
prompt = "hi"
"""


def test_openai_provider_parses_with_defaults_and_names_only_the_key_variable() -> None:
    recipe = parse_recipe(OPENAI.format(extra='api_key_env = "LOCAL_KEY"'))
    provider = recipe.providers["local"]
    assert (provider.kind, provider.base_url, provider.api_key_env, provider.timeout_s) == (
        "openai",
        "http://127.0.0.1:8765",
        "LOCAL_KEY",
        60.0,
    )
    assert provider.max_parallel_requests == 4 and dict(recipe.resource_limits) == {"llm:local/writer": 4}


@pytest.mark.parametrize(
    ("extra", "field", "fragment"),
    [
        ("latency_ms = 5", "providers.local.latency_ms", "unknown key 'latency_ms' for an openai provider"),
        ("timeout_s = 0", "providers.local.timeout_s", "must be a finite number in (0, 3_600], got 0"),
        ("max_parallel_requests = 0", "providers.local.max_parallel_requests", "must be an integer in [1, 10_000], got 0"),
        ('api_key_env = "MY-KEY"', "providers.local.api_key_env", "must be an identifier"),
    ],
)
def test_openai_provider_errors_name_the_field(extra: str, field: str, fragment: str) -> None:
    with pytest.raises(RecipeError, match=re.escape(field)) as caught:
        parse_recipe(OPENAI.format(extra=extra))
    assert fragment in str(caught.value)


def test_openai_base_url_must_be_http() -> None:
    with pytest.raises(RecipeError, match=r"providers\.local\.base_url: must be an http:// or https:// URL"):
        parse_recipe(OPENAI.format(extra="").replace("http://127.0.0.1:8765", "ftp://host"))
    with pytest.raises(RecipeError, match=r"providers\.local\.base_url: missing required key 'base_url'"):
        parse_recipe(OPENAI.format(extra="").replace('base_url = "http://127.0.0.1:8765"', ""))


def test_run_policy_is_validated_and_never_changes_the_hash() -> None:
    strict = parse_recipe(OPENAI.format(extra=""))
    assert strict.run.policy == "strict"
    drf = parse_recipe(OPENAI.format(extra="").replace("records = 4", 'records = 4\npolicy = "drf"'))
    assert drf.run.policy == "drf" and drf.recipe_hash == strict.recipe_hash  # a scheduling choice, not content
    with pytest.raises(
        RecipeError, match=r"run\.policy: unknown value 'fastest' \(expected one of: strict, bounded_borrow, drf\)"
    ):
        parse_recipe(OPENAI.format(extra="").replace("records = 4", 'records = 4\npolicy = "fastest"'))
