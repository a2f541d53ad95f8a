"""Callables for engine tests that recipes reference as ``engine_support:NAME`` (no test functions here).

``tests/`` is on ``sys.path`` under pytest's default rootdir import mode, as for ``scheduler_support``.
"""

from __future__ import annotations

CALLS: list[list[dict[str, object]]] = []
"""Every argument ``record_and_keep_all`` received, so tests can check what a python processor is given."""

NOT_CALLABLE = 42


def keep_even_rows(rows: list[dict[str, object]]) -> list[bool]:
    """Keeps rows whose ``n`` column is even."""
    flags = []
    for row in rows:
        value = row.get("n")
        flags.append(isinstance(value, int) and value % 2 == 0)
    return flags


def keep_all_and_mutate(rows: list[dict[str, object]]) -> list[bool]:
    """Keeps everything, vandalising its (copied) arguments on the way."""
    for row in rows:
        row.clear()
        row["vandal"] = True
    return [True] * len(rows)


def record_and_keep_all(rows: list[dict[str, object]]) -> list[bool]:
    CALLS.append(rows)
    return [True] * len(rows)


def returns_wrong_length(rows: list[dict[str, object]]) -> list[bool]:
    return [True] * (len(rows) + 1)


def returns_ints(rows: list[dict[str, object]]) -> list[int]:
    return [1] * len(rows)


def returns_tuple(rows: list[dict[str, object]]) -> tuple[bool, ...]:
    return (True,) * len(rows)


def raises(rows: list[dict[str, object]]) -> list[bool]:
    raise ValueError("boom from the user function")


class Holder:
    @staticmethod
    def drop_all(rows: list[dict[str, object]]) -> list[bool]:
        return [False] * len(rows)
