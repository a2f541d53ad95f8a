"""Row-group processors: filter ops, drop_duplicates, python callables, run_stage, data-free reasons."""

from __future__ import annotations

import copy
import functools
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
import support
from hypothesis import given, settings
from hypothesis import strategies as st

from threadsched.engine import ProcessorSpec, parse_recipe
from threadsched.engine.processors import (
    DropDuplicatesProcessor,
    FilterProcessor,
    Processor,
    ProcessorError,
    ProcessorResult,
    PythonProcessor,
    canonical_key,
    compile_processor,
    run_stage,
)

RECIPE = """
[run]
records = 10

[[columns]]
name = "topic"
kind = "sampler"
values = ["a", "b"]

[[columns]]
name = "n"
kind = "sampler"
values = [1, 2, 3]

[[columns]]
name = "payload"
kind = "python"
function = "support:keep_even_rows"
mode = "batch"
"""

Rows = list[tuple[int, Mapping[str, object]]]


def spec(body: str, stage: str = "post_batch") -> ProcessorSpec:
    """The single processor of RECIPE plus ``[[processors]]`` with ``body`` -- a real, validated spec."""
    recipe = parse_recipe(f'{RECIPE}\n[[processors]]\nstage = "{stage}"\n{body}\n')
    (only,) = recipe.processors
    return only


@functools.cache  # compiled processors are stateless, so sharing them between tests is safe
def compiled(body: str) -> Processor:
    return compile_processor(spec(body))


def rows_of(*values: Mapping[str, object], start: int = 0) -> Rows:
    return [(start + i, dict(v)) for i, v in enumerate(values)]


def filter_body(column: str, op: str, value: str) -> str:
    return f'kind = "filter"\ncolumn = "{column}"\nop = "{op}"\nvalue = {value}'


# -- filter --------------------------------------------------------------------------------------------

NS = rows_of(*({"n": n} for n in (1, 2, 3, 2)))


@pytest.mark.parametrize(
    ("op", "value", "kept"),
    [
        ("==", "2", (1, 3)),
        ("!=", "2", (0, 2)),
        ("<", "2", (0,)),
        ("<=", "2", (0, 1, 3)),
        (">", "2", (2,)),
        (">=", "2", (1, 2, 3)),
        ("in", "[1, 3]", (0, 2)),
        ("not_in", "[1, 3]", (1, 3)),
    ],
)
def test_filter_ops(op: str, value: str, kept: tuple[int, ...]) -> None:
    processor = compiled(filter_body("n", op, value))
    assert isinstance(processor, FilterProcessor)
    result = processor.apply(NS)
    assert result.kept == kept
    assert set(result.dropped) == {0, 1, 2, 3} - set(kept)
    assert all(reason == f"filter n {op} {value}" for reason in result.dropped.values())


def test_filter_reason_quotes_the_recipe_value() -> None:
    result = compiled(filter_body("topic", "!=", '"off-topic"')).apply(rows_of({"topic": "off-topic"}, {"topic": "x"}))
    assert result == ProcessorResult((1,), {0: "filter topic != 'off-topic'"})


def test_filter_in_uses_the_list_value() -> None:
    processor = compiled(filter_body("topic", "in", '["a", "b"]'))
    result = processor.apply(rows_of({"topic": "a"}, {"topic": "c"}, {"topic": "b"}, {"topic": ["a"]}))
    assert result.kept == (0, 2)
    assert result.dropped == {1: "filter topic in ['a', 'b']", 3: "filter topic in ['a', 'b']"}


def test_filter_missing_column_drops_the_row() -> None:
    result = compiled(filter_body("n", ">", "0")).apply(rows_of({"n": 1}, {"topic": "a"}, {"n": 5}))
    assert result.kept == (0, 2)
    assert result.dropped == {1: "filter: column 'n' missing"}


@pytest.mark.parametrize(("cell", "type_name"), [("seven", "str"), (None, "NoneType"), ([1], "list")])
def test_filter_type_error_drops_with_types_not_values(cell: object, type_name: str) -> None:
    result = compiled(filter_body("n", "<", "3")).apply(rows_of({"n": cell}, {"n": 1}))
    assert result.kept == (1,)
    assert result.dropped == {0: f"filter n < 3: cannot apply '<' to {type_name} and int"}


def test_filter_equality_never_raises_across_types() -> None:
    result = compiled(filter_body("n", "==", "2")).apply(rows_of({"n": "2"}, {"n": 2.0}, {"n": None}, {"n": {"a": 1}}))
    assert result.kept == (1,)  # Python semantics: 2 == 2.0, "2" != 2


def test_filter_rejects_an_incomplete_spec() -> None:
    with pytest.raises(ProcessorError, match="needs a column and an op"):
        compile_processor(ProcessorSpec("post_batch", "filter", op="=="))
    with pytest.raises(ProcessorError, match="op 'in' needs a tuple value, got str"):
        compile_processor(ProcessorSpec("post_batch", "filter", column="n", op="in", value="abc"))


# -- drop_duplicates -----------------------------------------------------------------------------------


def test_drop_duplicates_first_row_wins() -> None:
    processor = compiled('kind = "drop_duplicates"\ncolumns = ["topic"]')
    assert isinstance(processor, DropDuplicatesProcessor)
    rows = rows_of({"topic": "a"}, {"topic": "b"}, {"topic": "a"}, {"topic": "b"}, {"topic": "a"}, start=10)
    result = processor.apply(rows)
    assert result.kept == (10, 11)
    assert result.dropped == {
        12: "duplicate of row 10 on (topic)",
        13: "duplicate of row 11 on (topic)",
        14: "duplicate of row 10 on (topic)",
    }


def test_drop_duplicates_on_several_columns_and_unhashable_values() -> None:
    processor = compiled('kind = "drop_duplicates"\ncolumns = ["topic", "payload"]')
    rows = rows_of(
        {"topic": "a", "payload": {"x": [1, 2], "y": {"z": None}}},
        {"topic": "a", "payload": {"y": {"z": None}, "x": [1, 2]}},  # same dict, other key order
        {"topic": "b", "payload": {"x": [1, 2], "y": {"z": None}}},  # other topic
        {"topic": "a", "payload": {"x": [2, 1], "y": {"z": None}}},  # list order matters
        {"topic": "a", "payload": [{1: "a", "b": 2}, {3, 1, 2}]},  # mixed dict keys, a set
        {"topic": "a", "payload": [{"b": 2, 1: "a"}, {2, 3, 1}]},
    )
    result = processor.apply(rows)
    assert result.kept == (0, 2, 3, 4)
    assert result.dropped == {1: "duplicate of row 0 on (topic, payload)", 5: "duplicate of row 4 on (topic, payload)"}


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (1, 1, True),
        (1, 1.0, False),
        (1, True, False),
        ("1", 1, False),
        (float("nan"), float("nan"), True),
        ([1, [2]], (1, (2,)), True),
        ({1: "x"}, {"1": "x"}, False),
        (object(), object(), False),
    ],
)
def test_canonical_key(a: object, b: object, equal: bool) -> None:
    assert (canonical_key(a) == canonical_key(b)) is equal
    assert canonical_key(a) == canonical_key(a)


def test_drop_duplicates_missing_column_drops_the_row() -> None:
    result = compiled('kind = "drop_duplicates"\ncolumns = ["topic", "n"]').apply(
        rows_of({"topic": "a", "n": 1}, {"topic": "a"}, {"topic": "a", "n": 1})
    )
    assert result.dropped == {1: "drop_duplicates: column 'n' missing", 2: "duplicate of row 0 on (topic, n)"}


def test_drop_duplicates_scope_is_one_row_group() -> None:
    processor = compiled('kind = "drop_duplicates"\ncolumns = ["topic"]')
    assert processor.apply(rows_of({"topic": "a"})).kept == (0,)
    assert processor.apply(rows_of({"topic": "a"}, start=1)).kept == (1,)  # no memory of the previous group


def test_drop_duplicates_needs_columns() -> None:
    with pytest.raises(ProcessorError, match="at least one column"):
        compile_processor(ProcessorSpec("post_batch", "drop_duplicates"))


# -- python --------------------------------------------------------------------------------------------


def python_body(function: str) -> str:
    return f'kind = "python"\nfunction = "{function}"'


def test_python_processor_keeps_flagged_rows() -> None:
    processor = compiled(python_body("support:keep_even_rows"))
    assert isinstance(processor, PythonProcessor)
    result = processor.apply(rows_of(*({"n": n} for n in range(5)), start=20))
    assert result.kept == (20, 22, 24)
    assert result.dropped == {
        21: "python support:keep_even_rows: rejected",
        23: "python support:keep_even_rows: rejected",
    }


def test_python_processor_gets_copies_in_row_order() -> None:
    support.CALLS.clear()
    rows = rows_of({"n": 1, "tags": ["x"]}, {"n": 2, "tags": ["y"]}, start=5)
    compiled(python_body("support:record_and_keep_all")).apply(rows)
    (received,) = support.CALLS
    assert received == [{"n": 1, "tags": ["x"]}, {"n": 2, "tags": ["y"]}]
    assert all(type(row) is dict for row in received)
    assert received[0] is not rows[0][1] and received[0]["tags"] is not rows[0][1]["tags"]


def test_python_processor_cannot_mutate_input_rows() -> None:
    rows = rows_of({"n": 1, "tags": ["x"]})
    before = copy.deepcopy(rows)
    assert compiled(python_body("support:keep_all_and_mutate")).apply(rows).kept == (0,)
    assert rows == before


def test_python_processor_resolves_dotted_attributes() -> None:
    result = compiled(python_body("support:Holder.drop_all")).apply(rows_of({"n": 1}))
    assert result.kept == ()


def test_python_processor_is_not_called_for_an_empty_group() -> None:
    support.CALLS.clear()
    assert compiled(python_body("support:record_and_keep_all")).apply([]) == ProcessorResult((), {})
    assert support.CALLS == []


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("support:returns_wrong_length", "'support:returns_wrong_length' returned 3 flags for 2 rows"),
        ("support:returns_ints", "'support:returns_ints' returned int at position 0, expected bool"),
        ("support:returns_tuple", "'support:returns_tuple' returned tuple, expected a list of bools"),
    ],
)
def test_python_processor_bad_return_values(function: str, message: str) -> None:
    processor = compiled(python_body(function))
    with pytest.raises(ProcessorError, match=message):
        processor.apply(rows_of({"n": 1}, {"n": 2}))


def test_python_processor_exception_is_wrapped_without_its_text() -> None:
    processor = compiled(python_body("support:raises"))
    with pytest.raises(ProcessorError, match=r"^python processor 'support:raises' raised ValueError$") as info:
        processor.apply(rows_of({"n": 1}))
    assert isinstance(info.value.__cause__, ValueError)
    assert "boom" in str(info.value.__cause__)


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("no_such_module_xyz:f", r"'no_such_module_xyz:f': import of 'no_such_module_xyz' failed: ModuleNotFoundError"),
        ("support:missing", r"'support:missing': no attribute 'missing' in 'support'"),
        ("support:Holder.nope", r"'support:Holder.nope': no attribute 'nope' in 'support'"),
        ("support:NOT_CALLABLE", r"'support:NOT_CALLABLE': 'NOT_CALLABLE' is not callable \(got int\)"),
    ],
)
def test_python_processor_import_errors(function: str, message: str) -> None:
    with pytest.raises(ProcessorError, match=message):
        compiled(python_body(function))


def test_python_processor_module_failing_at_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "explodes_on_import_xyz.py").write_text("raise RuntimeError('no')\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "explodes_on_import_xyz", raising=False)
    with pytest.raises(ProcessorError, match=r"import of 'explodes_on_import_xyz' failed: RuntimeError: no") as info:
        compiled(python_body("explodes_on_import_xyz:f"))
    assert isinstance(info.value.__cause__, RuntimeError)


def test_unknown_kind_and_missing_function() -> None:
    with pytest.raises(ProcessorError, match="unknown processor kind 'sort'"):
        compile_processor(ProcessorSpec("post_batch", "sort"))  # type: ignore[arg-type]
    with pytest.raises(ProcessorError, match="needs a function"):
        compile_processor(ProcessorSpec("post_batch", "python"))


# -- apply / run_stage ---------------------------------------------------------------------------------


def test_apply_rejects_unordered_or_repeated_indices() -> None:
    processor = compiled(filter_body("n", ">", "0"))
    with pytest.raises(ValueError, match="strictly ascending, got 3 then 3"):
        processor.apply([(3, {"n": 1}), (3, {"n": 1})])
    with pytest.raises(ValueError, match="got 4 then 2"):
        run_stage([], [(4, {"n": 1}), (2, {"n": 1})])


def test_run_stage_chains_processors_on_kept_rows() -> None:
    support.CALLS.clear()
    processors = [
        compiled(filter_body("topic", "!=", '"off"')),
        compiled('kind = "drop_duplicates"\ncolumns = ["n"]'),
        compiled(python_body("support:record_and_keep_all")),
        compiled(python_body("support:keep_even_rows")),
    ]
    rows = rows_of(
        {"topic": "off", "n": 2},  # 0: filtered
        {"topic": "a", "n": 2},  # 1: first n=2 after the filter -> kept
        {"topic": "b", "n": 2},  # 2: duplicate of 1 (not of 0: 0 was already gone)
        {"topic": "a", "n": 3},  # 3: odd -> python drop
        {"topic": "a", "n": 4},  # 4: kept
    )
    result = run_stage(processors, rows)
    assert result.kept == (1, 4)
    assert result.dropped == {
        0: "filter topic != 'off'",
        2: "duplicate of row 1 on (n)",
        3: "python support:keep_even_rows: rejected",
    }
    assert list(result.dropped) == [0, 2, 3]
    assert [row["n"] for row in support.CALLS[0]] == [2, 3, 4]  # only rows the earlier stages kept


def test_run_stage_without_processors_keeps_everything() -> None:
    assert run_stage([], rows_of({"n": 1}, {"n": 2})) == ProcessorResult((0, 1), {})


def test_repr_and_description() -> None:
    assert repr(compiled(filter_body("n", "in", "[1, 2]"))) == "<FilterProcessor filter n in [1, 2] stage=post_batch>"
    assert compiled('kind = "drop_duplicates"\ncolumns = ["topic", "n"]').description == "drop_duplicates on (topic, n)"


def test_pre_batch_spec_compiles_the_same() -> None:
    processor = compile_processor(spec(filter_body("topic", "==", '"a"'), stage="pre_batch"))
    assert processor.spec.stage == "pre_batch"
    assert processor.apply(rows_of({"topic": "a"}, {"topic": "b"})).kept == (0,)


# -- properties: no data in reasons, determinism --------------------------------------------------------

SENTINEL = "SECRET"
cells = st.one_of(
    st.text(max_size=8).map(lambda text: f"{text}{SENTINEL}{text}"),
    st.lists(st.text(max_size=4).map(lambda text: SENTINEL + text), max_size=3),
    st.dictionaries(st.just("k"), st.just(SENTINEL), max_size=1),
    st.none(),
)
row_groups = st.lists(st.fixed_dictionaries({}, optional={"topic": cells, "n": cells}), max_size=12)
ALL_PROCESSORS: Sequence[str] = (
    filter_body("topic", "==", '"a"'),
    filter_body("topic", ">=", '"a"'),
    filter_body("n", "<", "2"),
    filter_body("topic", "not_in", '["a", "b"]'),
    'kind = "drop_duplicates"\ncolumns = ["topic", "n"]',
    python_body("support:keep_even_rows"),
)


@settings(max_examples=200, deadline=None)
@given(values=row_groups, start=st.integers(0, 1000))
def test_reasons_never_contain_row_values(values: list[dict[str, object]], start: int) -> None:
    rows = rows_of(*values, start=start)
    for body in ALL_PROCESSORS:
        result = compiled(body).apply(rows)
        assert all(SENTINEL not in reason for reason in result.dropped.values())
        assert set(result.kept) | set(result.dropped) == {index for index, _ in rows}
        assert not set(result.kept) & set(result.dropped)
    staged = run_stage([compiled(body) for body in ALL_PROCESSORS], rows)
    assert all(SENTINEL not in reason for reason in staged.dropped.values())


@settings(max_examples=100, deadline=None)
@given(values=row_groups)
def test_processors_are_deterministic_and_pure(values: list[dict[str, object]]) -> None:
    rows = rows_of(*values)
    before = copy.deepcopy(rows)
    first = run_stage([compiled(body) for body in ALL_PROCESSORS], rows)
    second = run_stage([compiled(body) for body in ALL_PROCESSORS], copy.deepcopy(rows))
    assert first == second
    assert list(first.kept) == sorted(first.kept) and list(first.dropped) == sorted(first.dropped)
    assert rows == before
