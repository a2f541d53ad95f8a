"""The range table of numeric recipe fields (threadsched.engine.recipe.ranges): the parser enforces every
entry at load time, with a located error naming the field and the value, and the README documents it."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import numbers_inside, numbers_outside

from threadsched.engine import Recipe, RecipeError, RunSettings, parse_recipe
from threadsched.engine.recipe.ranges import RECIPE_RANGES, FieldRange, format_bound, ranges_markdown
from threadsched.mock.model import MAX_LATENCY_MS, SEED_RANGE

README = Path(__file__).resolve().parent.parent / "README.md"
MARK = "{v}"  # where a template takes the value under test

MOCK = '[providers.mock]\nkind = "mock"\nmodels = ["writer"]\nmax_parallel_requests = 2\n'
SAMPLER = '[[columns]]\nname = "topic"\nkind = "sampler"\nvalues = ["a", "b"]\n'
LLM = '[[columns]]\nname = "q"\nkind = "llm"\nmodel = "mock/writer"\nprompt = "about {topic}"\n'
RUN = "[run]\nrecords = 10\n"


@dataclass(frozen=True)
class Slot:
    """A recipe with one place for the value of a field; ``read`` takes the parsed value back out."""

    template: str
    field: str  # the error's field path
    read: Callable[[Recipe], object]

    def recipe(self, literal: str) -> str:
        return self.template.replace(MARK, literal)

    @property
    def line(self) -> int:
        return self.template[: self.template.index(MARK)].count("\n") + 1


def run_slot(key: str) -> Slot:
    run = "[run]\nrecords = {v}\n" if key == "records" else f"{RUN}{key} = {MARK}\n"
    return Slot(run + MOCK + SAMPLER, f"run.{key}", lambda recipe: getattr(recipe.run, key))


def mock_slot(key: str) -> Slot:
    return Slot(
        RUN + MOCK + f"{key} = {MARK}\n" + SAMPLER + LLM, f"providers.mock.{key}", lambda r: getattr(r.providers["mock"], key)
    )


OPENAI = '[providers.local]\nkind = "openai"\nbase_url = "http://127.0.0.1:1"\nmodels = ["w"]\n'
FILTER = '[[processors]]\nstage = "post_batch"\nkind = "filter"\ncolumn = "topic"\n'

# Every entry of RECIPE_RANGES, placed in a recipe (the test below fails when an entry has no slot).
SLOTS: dict[str, list[Slot]] = {
    **{f"run.{key}": [run_slot(key)] for key in ("records", "buffer_size", "max_row_groups_in_flight", "max_workers")},
    **{f"run.{key}": [run_slot(key)] for key in ("seed", "max_salvage_rounds", "error_rate_shutdown", "error_rate_min_window")},
    "resources.NAME": [
        Slot(RUN + MOCK + f'[resources]\n"llm:mock/writer" = {MARK}\n' + SAMPLER + LLM, 'resources."llm:mock/writer"',
             lambda r: r.resources["llm:mock/writer"]),
        Slot(RUN + f"[resources]\ngpu = {MARK}\n" + SAMPLER, "resources.gpu", lambda r: r.resources["gpu"]),
    ],
    **{f"providers.NAME.{key}": [mock_slot(key)] for key in ("latency_ms", "jitter_ms", "failure_rate", "fatal_rate")},
    "providers.NAME.max_parallel_requests": [
        Slot(RUN + MOCK.replace("2", MARK) + SAMPLER + LLM, "providers.mock.max_parallel_requests",
             lambda r: r.providers["mock"].max_parallel_requests),
        Slot(RUN + OPENAI + f"max_parallel_requests = {MARK}\n" + SAMPLER, "providers.local.max_parallel_requests",
             lambda r: r.providers["local"].max_parallel_requests),
    ],
    "providers.NAME.timeout_s": [
        Slot(RUN + OPENAI + f"timeout_s = {MARK}\n" + SAMPLER, "providers.local.timeout_s",
             lambda r: r.providers["local"].timeout_s)
    ],
    "columns[N].weight": [
        Slot(RUN + MOCK + SAMPLER + LLM + f"weight = {MARK}\n", "columns[1].weight", lambda r: r.column("q").weight)
    ],
    "columns[N].weights[I]": [
        Slot(RUN + SAMPLER + f"weights = [{MARK}, 1]\n", "columns[0].weights[0]", lambda r: r.column("topic").weights[0])  # type: ignore[index]
    ],
    "columns[N].values[I]": [
        Slot(RUN + SAMPLER.replace('"a", "b"', f'"a", {MARK}'), "columns[0].values[1]", lambda r: r.column("topic").values[1])
    ],
    "processors[N].value": [
        Slot(RUN + SAMPLER + FILTER + f'op = "=="\nvalue = {MARK}\n', "processors[0].value", lambda r: r.processors[0].value),
        Slot(RUN + SAMPLER + FILTER + f'op = "in"\nvalue = ["a", {MARK}]\n', "processors[0].value[1]",
             lambda r: r.processors[0].value[1]),  # type: ignore[index]
    ],
}  # fmt: skip


def toml_literal(value: object) -> str:
    """``value`` written as TOML: booleans, integers, floats (``nan``, ``inf``, ``-0.0``), strings, arrays."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)  # repr of a float is valid TOML, nan and inf included; ints here are < 4300 digits
    if isinstance(value, str):
        return '"' + value + '"'  # the strategies draw no quotes, backslashes or control characters
    assert isinstance(value, list)
    return "[" + ", ".join(toml_literal(item) for item in value) + "]"


def outside(entry: FieldRange) -> st.SearchStrategy[object]:
    if entry.kind == "scalar":  # a data value: only non-finite floats, over-long integers and containers are refused
        beyond = st.integers(min_value=int(entry.maximum) + 1, max_value=2**8000)
        beyond |= st.integers(min_value=-(2**8000), max_value=int(entry.minimum) - 1)
        return st.one_of(st.sampled_from([math.nan, math.inf, -math.inf]), beyond, st.lists(st.integers(0, 9), max_size=2))
    integer = entry.kind == "integer"
    return numbers_outside(entry.minimum, entry.maximum, integer=integer, exclusive_minimum=entry.exclusive_minimum)


def inside(entry: FieldRange) -> st.SearchStrategy[object]:
    if entry.kind == "scalar":
        texts = st.text(alphabet="abc019 .-e", max_size=6)
        return st.one_of(st.integers(int(entry.minimum), int(entry.maximum)), st.floats(allow_nan=False, allow_infinity=False),
                         st.booleans(), texts)  # fmt: skip
    integer = entry.kind == "integer"
    return numbers_inside(entry.minimum, entry.maximum, integer=integer, exclusive_minimum=entry.exclusive_minimum)


def cases(draw_values: Callable[[FieldRange], st.SearchStrategy[object]]) -> st.SearchStrategy[tuple[str, Slot, object]]:
    """A field, one of its slots and a value drawn for it."""
    return st.sampled_from(sorted(SLOTS)).flatmap(
        lambda name: st.tuples(st.just(name), st.sampled_from(SLOTS[name]), draw_values(RECIPE_RANGES[name]))
    )


def test_every_range_has_a_slot_and_every_slot_a_range() -> None:
    assert sorted(SLOTS) == sorted(RECIPE_RANGES)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(outside))
def test_a_value_outside_its_range_is_a_located_error_naming_the_field_and_the_value(case: tuple[str, Slot, object]) -> None:
    _, slot, value = case
    with pytest.raises(RecipeError) as caught:
        parse_recipe(slot.recipe(toml_literal(value)), source="r.toml")
    error = caught.value
    assert (error.field, error.location) == (slot.field, f"r.toml:{slot.line}"), str(error)
    assert "\n" not in str(error)
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        assert f"an integer of {value.bit_length()} bits" in error.message
    else:
        assert f"got {value!r}" in error.message, error.message


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(inside))
def test_a_value_inside_its_range_parses_to_itself(case: tuple[str, Slot, object]) -> None:
    name, slot, value = case
    entry = RECIPE_RANGES[name]
    parsed = slot.read(parse_recipe(slot.recipe(toml_literal(value))))
    if entry.kind == "number":
        assert isinstance(parsed, float) and parsed == value and math.copysign(1.0, parsed) == 1.0  # -0.0 is read as 0.0
    else:
        assert parsed == value and type(parsed) is type(value)


def test_the_issues_values_are_refused_at_load_time() -> None:
    """``latency_ms = 1e300`` and ``jitter_ms = 1e308`` passed "must be finite", then every row was dropped by
    ``time.sleep``'s OverflowError while the run exited 0."""
    slot = SLOTS["providers.NAME.latency_ms"][0]
    with pytest.raises(RecipeError, match=r"^r\.toml:\d+: providers\.mock\.latency_ms: must be a finite number in "
                                          r"\[0, 3_600_000\], got 1e\+300$"):  # fmt: skip
        parse_recipe(slot.recipe("1e300"), source="r.toml")
    jitter = SLOTS["providers.NAME.jitter_ms"][0]
    with pytest.raises(RecipeError, match=r"providers\.mock\.jitter_ms: .* got 1e\+308$"):
        parse_recipe(jitter.recipe("1e308"), source="r.toml")


def test_negative_zero_reads_as_zero_and_hashes_like_it() -> None:
    slot = SLOTS["providers.NAME.latency_ms"][0]
    assert parse_recipe(slot.recipe("-0.0")).recipe_hash == parse_recipe(slot.recipe("0")).recipe_hash
    with pytest.raises(RecipeError, match=r"providers\.local\.timeout_s: .* got -0\.0"):
        parse_recipe(SLOTS["providers.NAME.timeout_s"][0].recipe("-0.0"))


def test_an_integer_literal_too_long_for_python_is_a_located_error() -> None:
    """``tomllib`` lets int()'s ValueError for a literal over 4300 digits escape: it is located here."""
    slot = SLOTS["run.seed"][0]
    with pytest.raises(RecipeError) as caught:
        parse_recipe(slot.recipe("1_" * 4400 + "1"), source="r.toml")
    assert (caught.value.field, caught.value.location) == ("run.seed", f"r.toml:{slot.line}")
    assert "more than 4300 digits" in caught.value.message
    # the 4300-digit limit counts digits, not underscores: half as many digits parse to a range error
    with pytest.raises(RecipeError, match=r"run\.seed: must be an integer in \[-2\^63, 2\^63-1\], got an integer of"):
        parse_recipe(slot.recipe("1_" * 2200 + "1"))


def test_a_hex_literal_of_any_size_is_a_range_error() -> None:
    """TOML's hex integers have no digit limit in ``tomllib``: a huge one reaches the range check (and is
    shown by size, since its repr would raise past 4300 digits)."""
    slot = SLOTS["run.records"][0]
    with pytest.raises(RecipeError, match=r"run\.records: must be an integer in \[1, 10_000_000\], got an integer of 20000 bits"):
        parse_recipe(slot.recipe("0x" + "f" * 5000))
    output = "[run]\nrecords = 1\noutput = 0x" + "f" * 5000 + "\n" + SAMPLER
    with pytest.raises(RecipeError, match=r"run\.output: expected a string, got an integer of 20000 bits \(integer\)"):
        parse_recipe(output)


def test_the_documented_defaults_are_the_parsers() -> None:
    defaults = RunSettings(records=1)
    for name, entry in RECIPE_RANGES.items():
        key = name.removeprefix("run.")
        if name.startswith("run.") and entry.default[0].isdigit():
            assert entry.default == format_bound(getattr(defaults, key)), name
    recipe = parse_recipe(RUN + OPENAI + SAMPLER)
    assert format_bound(recipe.providers["local"].timeout_s or 0) == RECIPE_RANGES["providers.NAME.timeout_s"].default
    assert recipe.providers["local"].max_parallel_requests == int(
        RECIPE_RANGES["providers.NAME.max_parallel_requests"].default[0]
    )


def test_the_mock_provider_bounds_are_the_mock_models() -> None:
    for key in ("latency_ms", "jitter_ms"):
        assert RECIPE_RANGES[f"providers.NAME.{key}"].maximum == MAX_LATENCY_MS
    assert (RECIPE_RANGES["run.seed"].minimum, RECIPE_RANGES["run.seed"].maximum) == SEED_RANGE


def test_every_entry_says_why_and_formats_its_interval() -> None:
    for entry in RECIPE_RANGES.values():
        assert entry.reason and "|" not in entry.reason and "|" not in entry.default
    assert RECIPE_RANGES["run.records"].interval == "[1, 10_000_000]"
    assert RECIPE_RANGES["run.error_rate_shutdown"].interval == "(0, 1]"
    assert RECIPE_RANGES["run.seed"].interval == "[-2^63, 2^63-1]"
    assert RECIPE_RANGES["columns[N].weight"].interval == "[0.001, 1_000]"
    with pytest.raises(ValueError, match="minimum 2 > maximum 1"):
        FieldRange("x", "integer", 2, 1, "1", "why")


def test_the_readme_table_is_the_codes() -> None:
    """The README's "Recipe fields and ranges" table is ``ranges_markdown()``; when this fails, paste the table
    it prints over the README's."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Recipe fields and ranges\n", 1)[1].split("\n## ", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("|")]
    assert "\n".join(table) == ranges_markdown(), "the README's table is stale; the code's is:\n" + ranges_markdown()
    assert "\n\n" + ranges_markdown() + "\n" in section, "the table is one block, its lines together"
