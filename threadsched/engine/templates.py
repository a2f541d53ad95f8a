"""Safe ``{column}`` templating for recipe prompts and ``template`` columns.

Recipes are data, not code: a template may only name other columns. Everything else that
``str.format`` understands (attribute access, indexing, conversions, positional fields, format
specs) is rejected when the recipe is validated, so a typo is reported once, naming the template
and the field, instead of failing (or reaching into an object) on row 9,000 of a run. Nothing here
ever evaluates user text; parsing is ``string.Formatter().parse`` and rendering is string joining.

Format specs are rejected outright, not only nested ones: ``render`` substitutes ``str(value)``, so
``{score:.2f}`` would mean "format the *string*" (a ``ValueError`` at render time) and any spec that
did apply would make the bytes depend on the value's type. Keeping the language to plain names keeps
the scheduler run and the single-threaded reference byte-identical. (``{a:}``, an empty spec, is
indistinguishable from ``{a}`` to the parser and is accepted as ``{a}``.)
"""

from __future__ import annotations

import string
from collections.abc import Mapping

__all__ = ["CompiledTemplate", "TemplateError", "render", "template_fields"]

_SNIPPET_LIMIT = 60
_FORMATTER = string.Formatter()

# One parsed piece: literal text followed by an optional field name.
_Part = tuple[str, str | None]


class TemplateError(ValueError):
    """A template that is malformed, uses a forbidden field form, or names a missing value."""


def _snippet(template: str) -> str:
    """The template as a short repr, so a message stays one readable line for long prompts."""
    if len(template) <= _SNIPPET_LIMIT:
        return repr(template)
    return repr(template[: _SNIPPET_LIMIT - 1] + "…")


def _field_text(name: str, conversion: str | None, spec: str) -> str:
    """Rebuild the field as the user wrote it (modulo an empty spec) for the error message."""
    text = name
    if conversion is not None:
        text += "!" + conversion
    if spec:
        text += ":" + spec
    return "{" + text + "}"


def _forbidden_reason(name: str, conversion: str | None, spec: str) -> str | None:
    if name == "" or name.isdigit():
        return "positional fields are not allowed; name a column"
    if conversion is not None:
        return "conversions (!r, !s, !a) are not allowed"
    if "{" in spec or "}" in spec:
        return "nested fields in a format spec are not allowed"
    if spec:
        return "format specs are not allowed; values are substituted with str()"
    if not name.isidentifier():
        return "only plain identifiers are allowed (no attribute access, indexing or spaces)"
    return None


def _parse(template: str) -> tuple[_Part, ...]:
    if not isinstance(template, str):
        raise TypeError(f"template must be a str, got {template!r}")
    try:
        raw = list(_FORMATTER.parse(template))
    except ValueError as exc:
        raise TemplateError(
            f"template {_snippet(template)} is malformed: {exc} (write {{{{ and }}}} for literal braces)"
        ) from None
    parts: list[_Part] = []
    for literal, name, spec, conversion in raw:
        if name is None:
            parts.append((literal, None))
            continue
        reason = _forbidden_reason(name, conversion, spec or "")
        if reason is not None:
            field = _field_text(name, conversion, spec or "")
            raise TemplateError(f"template {_snippet(template)}: bad field {field!r}: {reason}")
        parts.append((literal, name))
    return tuple(parts)


class CompiledTemplate:
    """A template parsed and validated once; ``render`` is then a join per row.

    The engine builds one per column at recipe load, so per-row work is only dictionary look-ups.
    Instances are immutable and safe to share between worker threads.
    """

    __slots__ = ("_parts", "fields", "template")

    template: str
    fields: tuple[str, ...]
    _parts: tuple[_Part, ...]

    def __init__(self, template: str) -> None:
        parts = _parse(template)
        self.template = template
        self._parts = parts
        # dict.fromkeys keeps first-appearance order while removing repeats.
        self.fields = tuple(dict.fromkeys(name for _, name in parts if name is not None))

    def render(self, values: Mapping[str, object]) -> str:
        """Substitute ``str(values[name])`` for every field; a missing name is a ``TemplateError``."""
        pieces: list[str] = []
        for literal, name in self._parts:
            pieces.append(literal)
            if name is not None:
                try:
                    value = values[name]
                except KeyError:
                    raise TemplateError(f"template {_snippet(self.template)}: no value for field {name!r}") from None
                pieces.append(str(value))
        return "".join(pieces)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CompiledTemplate):
            return NotImplemented
        return self.template == other.template

    def __hash__(self) -> int:
        return hash(self.template)

    def __repr__(self) -> str:
        return f"CompiledTemplate({_snippet(self.template)}, fields={self.fields!r})"


def template_fields(template: str) -> tuple[str, ...]:
    """The column names a template references, in order of first appearance, without repeats."""
    return CompiledTemplate(template).fields


def render(template: str, values: Mapping[str, object]) -> str:
    """Parse and render in one step; prefer ``CompiledTemplate`` when rendering many rows."""
    return CompiledTemplate(template).render(values)
