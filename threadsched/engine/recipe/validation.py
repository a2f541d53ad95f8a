"""Reading a recipe document with located errors: ``RecipeError``, field paths and the typed readers.

Each reader checks one value (a table, a number, an identifier, a ``module:callable`` reference, a template
and the columns it references) and takes its path, so an error names the field, the bad value and the
recipe line it came from (``recipe.toml:14: columns[2].model: unknown model 'mock/judg' (...)``).
Line numbers come from a light scan of the TOML text: ``tomllib`` does not report positions of valid
values, and a slightly approximate line (the table header when the key is not found) beats none.
Numbers are checked against their documented range (``ranges.RECIPE_RANGES``); a value is shown in a
message by its ``repr``, except an integer too long for one (``shown``).
"""

from __future__ import annotations

import json
import keyword
import math
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any, NoReturn

from threadsched.engine.recipe.ranges import FieldRange
from threadsched.engine.recipe.values import Scalar
from threadsched.engine.templates import template_fields

__all__ = [
    "FieldPath",
    "Locator",
    "RecipeError",
    "ValidationContext",
    "describe",
    "format_path",
    "is_function_reference",
    "shown",
    "template_references",
]

FieldPath = tuple[str | int, ...]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")
_KEY_PART = re.compile(r"""\s*("(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_-]+)\s*""")


class RecipeError(ValueError):
    """A recipe that cannot run. ``str(error)`` is one line: ``location: field: message``."""

    def __init__(self, field: str, message: str, location: str) -> None:
        self.field = field
        self.location = location
        self.message = message
        super().__init__(f"{location}: {field}: {message}" if field else f"{location}: {message}")

    def __reduce__(self) -> tuple[type[RecipeError], tuple[str, str, str]]:
        return (type(self), (self.field, self.message, self.location))


def format_path(path: FieldPath) -> str:
    """``("columns", 2, "model")`` -> ``columns[2].model``; keys that are not bare TOML keys are quoted."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            key = part if _BARE_KEY.match(part) else json.dumps(part, ensure_ascii=False)
            out += f".{key}" if out else key
    return out


def _split_key(text: str) -> tuple[tuple[str, ...], str] | None:
    """Parse a (dotted, possibly quoted) TOML key at the start of ``text``: its parts and the rest."""
    parts: list[str] = []
    pos = 0
    while True:
        match = _KEY_PART.match(text, pos)
        if match is None:
            return None
        raw = match.group(1)
        parts.append(raw[1:-1] if raw[0] in "\"'" else raw)
        pos = match.end()
        if text.startswith(".", pos):
            pos += 1
            continue
        return tuple(parts), text[pos:]


class Locator:
    """Maps field paths to the first line that defines them (tables, arrays of tables and keys)."""

    __slots__ = ("_lines",)

    def __init__(self, text: str) -> None:
        self._lines: dict[FieldPath, int] = {}
        table: FieldPath = ()
        array_counts: dict[tuple[str, ...], int] = {}
        multiline: str | None = None
        for lineno, line in enumerate(text.splitlines(), start=1):
            if multiline is not None:  # inside a multi-line string: nothing here is a key
                if line.count(multiline) % 2 == 1:
                    multiline = None
                continue
            stripped = line.strip()
            if stripped.startswith("["):
                is_array = stripped.startswith("[[")
                parsed = _split_key(stripped[2 if is_array else 1 :])
                if parsed is None or not parsed[1].startswith("]"):
                    continue
                keys = parsed[0]
                if is_array:
                    index = array_counts.get(keys, 0)
                    array_counts[keys] = index + 1
                    table = (*keys, index)
                else:
                    table = keys
                self._lines.setdefault(table, lineno)
                continue
            parsed = _split_key(line)
            if parsed is None or not parsed[1].startswith("="):
                continue
            self._lines.setdefault((*table, *parsed[0]), lineno)
            for delimiter in ('"""', "'''"):
                if line.count(delimiter) % 2 == 1:
                    multiline = delimiter
                    break

    def path_at(self, line: int) -> FieldPath | None:
        """The longest path defined on ``line`` (its key rather than its table), None if none is."""
        found = [path for path, where in self._lines.items() if where == line]
        return max(found, key=len) if found else None

    def line(self, path: FieldPath) -> int | None:
        """The line of ``path`` or of its closest enclosing key or table; None if none was found."""
        for end in range(len(path), 0, -1):
            found = self._lines.get(path[:end])
            if found is not None:
                return found
        return None


def shown(value: object) -> str:
    """A bad value as a message shows it: its ``repr``, except an integer of more than 128 bits. ``repr``
    of one over 4300 digits raises (``sys.get_int_max_str_digits``), and a shorter one swamps the line."""
    if isinstance(value, int) and value.bit_length() > 128:
        return f"an integer of {value.bit_length()} bits"
    return repr(value)


def describe(value: object) -> str:
    """A bad value as shown in messages: ``shown(value)`` and its TOML-ish type."""
    names = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array", dict: "table"}
    return f"{shown(value)} ({names.get(type(value), type(value).__name__)})"


class ValidationContext:
    """Knows where the recipe came from; turns a failed check at a path into a located ``RecipeError``."""

    __slots__ = ("locator", "source")

    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.locator = Locator(text)

    def location(self, path: FieldPath) -> str:
        line = self.locator.line(path)
        return self.source if line is None else f"{self.source}:{line}"

    def fail(self, path: FieldPath, message: str) -> NoReturn:
        raise RecipeError(format_path(path), message, self.location(path))

    # -- typed readers -------------------------------------------------------------------------

    def table(
        self,
        value: object,
        path: FieldPath,
        allowed: Collection[str] | None,
        required: Collection[str] = (),
        *,
        what: str = "",
    ) -> Mapping[str, Any]:
        """A TOML table with only ``allowed`` keys (typos are errors, never ignored) and all ``required``.

        ``allowed=None`` accepts any key (tables keyed by user-chosen names, or a first look before the kind
        of the entry is known).
        """
        if not isinstance(value, dict):
            self.fail(path, f"expected a table, got {describe(value)}")
        if allowed is not None:
            for key in value:
                if key not in allowed:
                    where = f" for {what}" if what else ""
                    self.fail((*path, key), f"unknown key {key!r}{where} (allowed: {', '.join(sorted(allowed))})")
        for key in required:
            if key not in value:
                self.fail((*path, key), f"missing required key {key!r}")
        return value

    def integer(self, value: object, path: FieldPath, limits: FieldRange) -> int:
        """A TOML integer within ``limits`` (never a bool, never a float such as ``5.0``)."""
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"expected an integer, got {describe(value)}")
        if not limits.contains(value):
            self.fail(path, f"must be {limits.description}, got {shown(value)}")
        return value

    def number(self, value: object, path: FieldPath, limits: FieldRange) -> float:
        """A finite int or float within ``limits``, returned as float so ``5`` and ``5.0`` hash alike (and
        ``-0.0`` as ``0.0``). The range is checked before the conversion: ``float(10**400)`` overflows."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(path, f"expected a number, got {describe(value)}")
        if not limits.contains(value):  # NaN is in no range, and +-inf are beyond every bound
            self.fail(path, f"must be {limits.description}, got {shown(value)}")
        return float(value) + 0.0

    def string(self, value: object, path: FieldPath, *, non_empty: bool = True) -> str:
        if not isinstance(value, str):
            self.fail(path, f"expected a string, got {describe(value)}")
        if non_empty and not value.strip():
            self.fail(path, f"must be a non-empty string, got {value!r}")
        return value

    def choice(self, value: object, path: FieldPath, choices: Sequence[str]) -> str:
        text = self.string(value, path)
        if text not in choices:
            self.fail(path, f"unknown value {text!r} (expected one of: {', '.join(choices)})")
        return text

    def identifier(self, value: object, path: FieldPath) -> str:
        text = self.string(value, path)
        if not _IDENTIFIER.match(text):
            self.fail(path, f"must be an identifier (letters, digits, _; not starting with a digit), got {text!r}")
        return text

    def array(self, value: object, path: FieldPath, *, non_empty: bool = True) -> list[Any]:
        if not isinstance(value, list):
            self.fail(path, f"expected an array, got {describe(value)}")
        if non_empty and not value:
            self.fail(path, "must be a non-empty array, got []")
        return value

    def string_list(self, value: object, path: FieldPath, *, non_empty: bool = True) -> tuple[str, ...]:
        """A list of unique non-empty strings."""
        items = self.array(value, path, non_empty=non_empty)
        seen: set[str] = set()
        for index, item in enumerate(items):
            self.string(item, (*path, index))
            if item in seen:
                self.fail((*path, index), f"duplicate entry {item!r}")
            seen.add(item)
        return tuple(items)

    def scalar(self, value: object, path: FieldPath, limits: FieldRange) -> Scalar:
        """A data value: a string, a boolean, a finite float or an integer within ``limits``."""
        if not isinstance(value, str | int | float):  # bool is an int
            self.fail(path, f"expected a string, number or boolean, got {describe(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(path, f"must be {limits.description}, got {shown(value)}")
        if isinstance(value, int) and not isinstance(value, bool) and not limits.contains(value):
            self.fail(path, f"must be {limits.description}, got {shown(value)}")
        return value

    def function_reference(self, value: object, path: FieldPath) -> str:
        text = self.string(value, path)
        if not is_function_reference(text):
            self.fail(path, f"expected 'module:callable' (dotted identifiers), got {text!r}")
        return text

    def template(self, value: object, path: FieldPath) -> tuple[str, tuple[str, ...]]:
        """A template string and the column names it references."""
        text = self.string(value, path, non_empty=False)
        try:
            return text, template_references(text)
        except ValueError as exc:
            self.fail(path, str(exc))


def _is_dotted_identifier(text: str) -> bool:
    parts = text.split(".")
    return all(_IDENTIFIER.match(part) and not keyword.iskeyword(part) for part in parts)


def is_function_reference(text: str) -> bool:
    """``package.module:callable`` (or ``:Class.method``), checked syntactically only; nothing is imported."""
    module, sep, attribute = text.partition(":")
    return bool(sep) and _is_dotted_identifier(module) and _is_dotted_identifier(attribute)


def template_references(text: str) -> tuple[str, ...]:
    """Column names referenced as plain ``{name}`` fields, in order of first appearance.

    The rules are the template engine's own (``templates.template_fields``), so a recipe that
    validates is a recipe that renders. Raises ``ValueError`` (a ``TemplateError``) otherwise.
    """
    return template_fields(text)
