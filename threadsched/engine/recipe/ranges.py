"""The documented range of every numeric recipe field: one table, read by the parser and by the README.

``RECIPE_RANGES`` holds one ``FieldRange`` per numeric field the parser reads, in README order, each with
the reason for its bounds. The parser checks every such value against its entry when the recipe is
loaded, so a value that would only fail at run time (``latency_ms = 1e300`` used to overflow
``time.sleep`` and drop every row while the run exited 0) is a located ``RecipeError`` instead (exit
code 2). The README's "Recipe fields and ranges" table is ``ranges_markdown()``, and
``tests/test_engine_recipe_ranges.py`` fails when the two differ, printing the table to paste.

The mock provider's latency, jitter and seed bounds are the mock model's own (``threadsched.mock.model``),
so a recipe, ``MockModelEndpoint`` and ``threadsched mock-provider`` refuse the same values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from threadsched.mock.model import MAX_LATENCY_MS, SEED_RANGE

__all__ = ["RECIPE_RANGES", "FieldRange", "format_bound", "ranges_markdown"]

RangeKind = Literal["integer", "number", "scalar"]


def format_bound(value: float) -> str:
    """A bound as written in the README and in error messages: ``10_000_000`` (a valid TOML integer),
    ``0.001``, and the 64-bit limits as ``-2^63`` / ``2^63-1``."""
    if value == SEED_RANGE[0]:
        return "-2^63"
    if value == SEED_RANGE[1]:
        return "2^63-1"
    if isinstance(value, int) or value.is_integer():
        return f"{int(value):_}"
    return repr(value)


@dataclass(frozen=True, slots=True)
class FieldRange:
    """One numeric recipe field: ``kind`` ``integer`` (a TOML integer), ``number`` (an integer or a float,
    read as a float) or ``scalar`` (a data value: a string, a boolean or a number; only its numbers are
    bounded). ``default`` is what the README shows when the key is left out."""

    field: str
    kind: RangeKind
    minimum: float
    maximum: float
    default: str
    reason: str
    exclusive_minimum: bool = False

    def __post_init__(self) -> None:
        if not self.minimum <= self.maximum:
            raise ValueError(f"FieldRange {self.field}: minimum {self.minimum!r} > maximum {self.maximum!r}")

    def contains(self, value: float) -> bool:
        """Whether ``value`` (an int or a float; NaN never is) lies in the range. Ints are compared exactly,
        so an integer too large for a float is refused rather than overflowing."""
        above_minimum = value > self.minimum if self.exclusive_minimum else value >= self.minimum
        return above_minimum and value <= self.maximum

    @property
    def interval(self) -> str:
        """``[1, 10_000_000]``, ``(0, 1]``."""
        opening = "(" if self.exclusive_minimum else "["
        return f"{opening}{format_bound(self.minimum)}, {format_bound(self.maximum)}]"

    @property
    def description(self) -> str:
        """What a value must be, as an error message says it: ``an integer in [1, 10_000_000]``."""
        if self.kind == "integer":
            return f"an integer in {self.interval}"
        if self.kind == "number":
            return f"a finite number in {self.interval}"
        return f"a string, a boolean, a finite float or an integer in {self.interval}"


_RATE = "a probability; failure_rate + fatal_rate must be <= 1"
_LATENCY = (
    "the mock model's own range, shared with `threadsched mock-provider`: an hour (a slower call is a hang, "
    "and `1e300` overflowed `time.sleep`, dropping every row)"
)
_DATA = (
    "data, not a setting: any string or boolean, a finite float, or an integer within TOML's 64 bits "
    "(`tomllib` reads longer ones, the TOML spec and most JSON readers of the dataset do not)"
)

_TABLE = (
    # [run]
    FieldRange("run.records", "integer", 1, 10_000_000, "required",
               "rows to generate; at the engine's per-cell cost ten million rows is hours per column: split larger "
               "datasets into several runs"),
    FieldRange("run.buffer_size", "integer", 1, 1_000_000, "100",
               "rows per row group: a group's rows stay in memory until it is checkpointed as one file"),
    FieldRange("run.max_row_groups_in_flight", "integer", 1, 1_000, "2",
               "row groups open at once, each holding its rows in memory; beyond a thousand a larger "
               "buffer_size does the same with less bookkeeping"),
    FieldRange("run.max_workers", "integer", 1, 1_024, "8",
               "worker threads; past about a thousand, threads cost memory and switches without adding throughput "
               "under the GIL"),
    FieldRange("run.seed", "integer", SEED_RANGE[0], SEED_RANGE[1], "0",
               "TOML's 64-bit integers (the mock model's own seed range); the seed is hashed as text, so any "
               "value is as good as another"),
    FieldRange("run.max_salvage_rounds", "integer", 0, 100, "2",
               "rounds re-running transiently failed cells after the others; a failure that survives 100 rounds "
               "is not transient"),
    FieldRange("run.error_rate_shutdown", "number", 0, 1, "none (never stops early)",
               "a share of finished tasks that failed; 0 is refused (it would stop at the first failure: leave "
               "the key out to never stop)", exclusive_minimum=True),
    FieldRange("run.error_rate_min_window", "integer", 1, 10_000_000, "20",
               "finished tasks before the error rate is judged: a count, bounded like records"),
    # [resources]
    FieldRange("resources.NAME", "integer", 1, 1_000_000, "none",
               "units of a scheduler resource leased at once; a larger limit limits nothing (leave the resource "
               "out instead)"),
    # [providers.NAME]
    FieldRange("providers.NAME.latency_ms", "number", 0, MAX_LATENCY_MS, "0", f"mock: milliseconds per call; {_LATENCY}"),
    FieldRange("providers.NAME.jitter_ms", "number", 0, MAX_LATENCY_MS, "0",
               "mock: ± milliseconds around latency_ms (a negative delay sleeps 0); bounded like latency_ms"),
    FieldRange("providers.NAME.failure_rate", "number", 0, 1, "0", f"mock: transient (retryable) failures; {_RATE}"),
    FieldRange("providers.NAME.fatal_rate", "number", 0, 1, "0", f"mock: non-retryable failures; {_RATE}"),
    FieldRange("providers.NAME.max_parallel_requests", "integer", 1, 10_000,
               "4 (openai); none (mock: then its models need a [resources] limit)",
               "model calls in flight at once, and an openai provider's HTTP connection pool size: ten thousand "
               "connections to one endpoint run out of file descriptors first"),
    FieldRange("providers.NAME.timeout_s", "number", 0, 3_600, "60",
               "openai: seconds one HTTP attempt may take; 0 would fail every call, and no completion takes an hour",
               exclusive_minimum=True),
    # [[columns]]
    FieldRange("columns[N].weight", "number", 0.001, 1_000, "1",
               "the column's fair share relative to the others; three orders of magnitude either side of 1 allow "
               "a million-to-one split, more than any intended one"),
    FieldRange("columns[N].weights[I]", "number", 0, 1_000_000, "equal",
               "sampler: a value's relative frequency, with a positive sum; the weights are summed in floats, "
               "which huge ones overflow"),
    FieldRange("columns[N].values[I]", "scalar", SEED_RANGE[0], SEED_RANGE[1], "required", f"sampler: {_DATA}"),
    # [[processors]]
    FieldRange("processors[N].value", "scalar", SEED_RANGE[0], SEED_RANGE[1], "required",
               f"filter: the value compared with (each entry of an in / not_in array); {_DATA}"),
)  # fmt: skip

RECIPE_RANGES: Mapping[str, FieldRange] = MappingProxyType({entry.field: entry for entry in _TABLE})
"""Every numeric field the parser reads, by its documented name, in README order."""


def ranges_markdown() -> str:
    """The README's "Recipe fields and ranges" table."""
    lines = ["| field | type | range | default | why |", "|---|---|---|---|---|"]
    for entry in RECIPE_RANGES.values():
        if entry.kind == "scalar":
            kind, interval = "string, boolean or number", f"integers `{entry.interval}`, finite floats"
        else:
            kind, interval = entry.kind, f"`{entry.interval}`"
        lines.append(f"| `{entry.field}` | {kind} | {interval} | {entry.default} | {entry.reason} |")
    return "\n".join(lines)
