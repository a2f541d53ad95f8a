"""Values as report.md cells: numbers and names as text, containers by size, pipes escaped."""

from __future__ import annotations

import pytest

from threadsched.report.cells import cell, scalar


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "-"),
        (0.5, "0.500"),
        (3, "3"),
        (True, "True"),
        ("a|b", "a\\|b"),
        ([1, 2], "(list of 2)"),
        ({"a": 1}, "(dict of 1)"),
        (object(), "(…)"),
    ],
)
def test_scalar(value: object, shown: str) -> None:
    assert scalar(value) == shown


def test_cell_escapes_pipes_and_joins_lines() -> None:
    assert cell("a|b\nc") == "a\\|b c"
