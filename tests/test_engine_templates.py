"""Templates: field extraction, every rejected form, rendering, and a round-trip property."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from threadsched.engine.templates import CompiledTemplate, TemplateError, render, template_fields


def test_fields_in_order_of_first_appearance_without_repeats() -> None:
    assert template_fields("{b} and {a}, then {b} again and {c}{a}") == ("b", "a", "c")


def test_no_fields() -> None:
    assert template_fields("") == ()
    assert template_fields("just text") == ()


def test_literal_braces_are_not_fields() -> None:
    template = "json: {{{key}: {{nested}}}}"
    assert template_fields(template) == ("key",)
    assert render(template, {"key": "k"}) == "json: {k: {nested}}"


def test_identifiers_allowed_including_underscores_and_unicode() -> None:
    assert template_fields("{_x}{topic_2}{café}") == ("_x", "topic_2", "café")


def test_empty_format_spec_is_accepted_as_plain_field() -> None:
    # Documented: the parser cannot tell "{a:}" from "{a}".
    assert template_fields("{a:}") == ("a",)


@pytest.mark.parametrize(
    ("template", "field", "reason"),
    [
        ("x {a.b} y", "{a.b}", "plain identifiers"),
        ("{a[0]}", "{a[0]}", "plain identifiers"),
        ("{a[key]}", "{a[key]}", "plain identifiers"),
        ("{a!r}", "{a!r}", "conversions"),
        ("{a!s}", "{a!s}", "conversions"),
        ("{a!a}", "{a!a}", "conversions"),
        ("{}", "{}", "positional"),
        ("{0}", "{0}", "positional"),
        ("{1}", "{1}", "positional"),
        ("{a:>10}", "{a:>10}", "format specs"),
        ("{a:.2f}", "{a:.2f}", "format specs"),
        ("{a:{b}}", "{a:{b}}", "nested fields"),
        ("{a:{b}>{c}}", "{a:{b}>{c}}", "nested fields"),
        ("{ a}", "{ a}", "plain identifiers"),
        ("{a-b}", "{a-b}", "plain identifiers"),
        ("{-1}", "{-1}", "plain identifiers"),
    ],
)
def test_rejected_field_forms_name_template_and_field(template: str, field: str, reason: str) -> None:
    with pytest.raises(TemplateError, match=r"bad field") as info:
        template_fields(template)
    message = str(info.value)
    assert repr(template) in message
    assert repr(field) in message
    assert reason in message


@pytest.mark.parametrize("template", ["{a", "a}", "{", "}", "x {a!} y", "{a!rr}"])
def test_malformed_templates_raise_template_error(template: str) -> None:
    with pytest.raises(TemplateError, match=r"is malformed"):
        template_fields(template)


def test_template_error_is_a_value_error() -> None:
    assert issubclass(TemplateError, ValueError)


def test_non_str_template_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"template must be a str"):
        template_fields(42)  # type: ignore[arg-type]


def test_long_template_is_truncated_in_messages() -> None:
    template = "x" * 200 + "{a.b}"
    with pytest.raises(TemplateError) as info:
        template_fields(template)
    assert len(str(info.value)) < 200
    assert "'{a.b}'" in str(info.value)


def test_render_substitutes_str_of_values() -> None:
    assert render("{n} items at {p} = {ok}", {"n": 3, "p": 1.5, "ok": True}) == "3 items at 1.5 = True"


def test_render_ignores_extra_values_and_repeats_fields() -> None:
    assert render("{a}-{a}", {"a": "x", "unused": 1}) == "x-x"


def test_render_missing_field_names_it() -> None:
    with pytest.raises(TemplateError, match=r"no value for field 'topic'"):
        render("about {topic}", {"other": 1})


def test_render_does_not_reformat_substituted_values() -> None:
    # A value that looks like a template is data, not code.
    assert render("{a}", {"a": "{b.__class__}"}) == "{b.__class__}"


def test_compiled_template_parses_once_and_renders_many() -> None:
    compiled = CompiledTemplate("Q: {question} / A: {answer}")
    assert compiled.fields == ("question", "answer")
    rows = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(3)]
    assert [compiled.render(row) for row in rows] == [f"Q: q{i} / A: a{i}" for i in range(3)]
    assert compiled == CompiledTemplate("Q: {question} / A: {answer}")
    assert hash(compiled) == hash(CompiledTemplate("Q: {question} / A: {answer}"))
    assert "question" in repr(compiled)


def test_compiled_template_validates_at_construction() -> None:
    with pytest.raises(TemplateError, match=r"'\{a\.b\}'"):
        CompiledTemplate("{a.b}")


_identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
_parts = st.lists(
    st.one_of(st.tuples(st.just("lit"), st.text(max_size=12)), st.tuples(st.just("field"), _identifiers)), max_size=8
)


@given(parts=_parts, data=st.data())
def test_render_of_built_template_equals_concatenation(parts: list[tuple[str, str]], data: st.DataObject) -> None:
    names = sorted({text for kind, text in parts if kind == "field"})
    values = {name: data.draw(st.one_of(st.text(max_size=6), st.integers()), label=name) for name in names}
    template = "".join(text.replace("{", "{{").replace("}", "}}") if kind == "lit" else "{" + text + "}" for kind, text in parts)
    expected = "".join(text if kind == "lit" else str(values[text]) for kind, text in parts)

    assert render(template, values) == expected
    assert template_fields(template) == tuple(dict.fromkeys(text for kind, text in parts if kind == "field"))
