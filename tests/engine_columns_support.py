"""Python column functions for ``test_engine_columns`` (referenced as ``engine_columns_support:NAME``).

``tests/`` is on ``sys.path`` under pytest's default rootdir import mode, as for ``scheduler_support``.
"""

from __future__ import annotations

NOT_CALLABLE = 3


def shout(row: dict[str, object]) -> str:
    """A python cell: the topic in capitals."""
    return str(row["topic"]).upper()


def mutate_and_count(row: dict[str, object]) -> int:
    """A python cell that scribbles on its argument (the executor must have passed a copy)."""
    row["topic"] = "scribbled"
    return len(row)


def topic_lengths(rows: list[dict[str, object]]) -> list[int]:
    """A python batch: one length per row, in order."""
    return [len(str(row["topic"])) for row in rows]


def one_short(rows: list[dict[str, object]]) -> list[int]:
    """A python batch that forgets the last row."""
    return [0] * (len(rows) - 1)


def not_a_list(rows: list[dict[str, object]]) -> str:
    return "oops"


def broken(row: dict[str, object]) -> object:
    raise RuntimeError("user code failed")


class Scorer:
    @staticmethod
    def score(row: dict[str, object]) -> int:
        return len(str(row["topic"])) % 5 + 1
