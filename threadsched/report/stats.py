"""Summary statistics shared by the report's metrics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from threadsched.report.evidence import percentile


@dataclass(frozen=True, slots=True)
class WaitStats:
    count: int
    p50: float
    p95: float

    @classmethod
    def of(cls, values: Sequence[float]) -> WaitStats:
        return cls(len(values), percentile(values, 50), percentile(values, 95))
