"""Step series for the timeline: values that hold from one change to the next (seconds since the run's start)."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StepSeries:
    """A step function: ``values[i]`` holds from ``times[i]`` until ``times[i + 1]`` (seconds since start)."""

    label: str
    times: tuple[float, ...]
    values: tuple[float, ...]

    def at(self, time: float) -> float:
        index = bisect.bisect_right(self.times, time) - 1
        return self.values[index] if index >= 0 else 0.0


def step_series(label: str, changes: Sequence[tuple[float, int]], span: float) -> StepSeries:
    """Cumulative sum of ``(time, delta)`` changes as a step series from 0 to ``span``."""
    times, values = [0.0], [0.0]
    level = 0.0
    for time, delta in sorted(changes):
        level += delta
        if time == times[-1]:
            values[-1] = level
        else:
            times.append(time)
            values.append(level)
    if span > times[-1]:
        times.append(span)
        values.append(level)
    return StepSeries(label, tuple(times), tuple(values))


def level_series(label: str, points: Sequence[tuple[float, float]], span: float) -> StepSeries:
    """Observed levels ``(time, value)`` in time order as a step series from the first observation to ``span``;
    a later value at the same time replaces an earlier one, and repeats of a level are dropped."""
    times: list[float] = []
    values: list[float] = []
    for time, value in points:
        if times and time == times[-1]:
            values[-1] = value
            if len(values) > 1 and values[-2] == value:
                del times[-1], values[-1]
        elif not values or value != values[-1]:
            times.append(time)
            values.append(value)
    if times and span > times[-1]:
        times.append(span)
        values.append(values[-1])
    return StepSeries(label, tuple(times), tuple(values))


def stacked_on_grid(series: Sequence[StepSeries]) -> tuple[list[float], list[list[float]]]:
    """A common time grid (every change of every series) and each series' value on it, for stacking."""
    grid = sorted({time for item in series for time in item.times})
    return grid, [[item.at(time) for time in grid] for item in series]
