"""The run timeline: plain step series (``build_timeline``) and their picture (``plot_timeline``).

``plot_timeline`` (with ``draw_timeline``, which draws the panels on a given figure) is the only matplotlib
user in the package. matplotlib is an optional extra, imported inside the function; it draws on an explicit
Agg canvas through ``matplotlib.figure.Figure`` rather than pyplot, so the host's backend is left alone and
no figure stays registered after saving. Step series live in ``series``; request series come from the
``requests`` event stream (``report.requests``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from threadsched.report.intervals import (
    ENGINE,
    SCHEDULER,
    Event,
    RowGroupSpan,
    captured_at,
    group_of,
    int_field,
    job_started_diagnostics,
    lease_intervals,
    ordered,
    queued_intervals,
    row_group_of,
    row_group_spans,
    run_bounds,
    stream_of,
)
from threadsched.report.requests import is_request_event, lease_delta, limit_points, request_resource
from threadsched.report.series import StepSeries, level_series, stacked_on_grid, step_series

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["Mark", "RequestSeries", "StepSeries", "Timeline", "build_timeline", "draw_timeline", "plot_timeline"]
__all__ += ["request_series", "stacked_on_grid", "step_series"]


@dataclass(frozen=True, slots=True)
class Mark:
    at: float
    kind: str  # "retry" | "drop"
    row_group: int | None
    group: str


@dataclass(frozen=True, slots=True)
class RequestSeries:
    """One request resource (``provider/model:domain``) over time."""

    resource: str
    limit: StepSeries  # the adaptive limit, from its first report on
    in_flight: StepSeries  # request leases held
    rate_limited: tuple[float, ...]  # times of the releases with outcome rate_limited


@dataclass(frozen=True, slots=True)
class Timeline:
    run_id: str | None
    span: float
    workers: int | None  # from scheduler_job_started, drawn as the capacity line
    groups: tuple[str, ...]
    leases: tuple[StepSeries, ...]  # leases held, one series per group (in ``groups`` order)
    queue_depth: tuple[StepSeries, ...]  # ready-queue depth, one series per group
    row_groups: tuple[RowGroupSpan, ...]
    marks: tuple[Mark, ...]
    requests: tuple[RequestSeries, ...] = ()  # one per request resource; empty: no request events

    @property
    def empty(self) -> bool:
        return not (self.leases or self.queue_depth or self.row_groups or self.marks or self.requests)


def build_timeline(events: Iterable[Event]) -> Timeline:
    timeline = ordered(events)
    bounds = run_bounds(timeline)
    origin, end = bounds.start, bounds.end
    lease_changes: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for lease in lease_intervals(timeline, end):
        lease_changes[lease.group] += [(lease.start - origin, 1), (lease.end - origin, -1)]
    queue_changes: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for interval in queued_intervals(timeline, end):
        queue_changes[interval.group] += [(interval.start - origin, 1), (interval.end - origin, -1)]
    groups = tuple(sorted(lease_changes.keys() | queue_changes.keys()))
    return Timeline(
        run_id=next((str(event["run_id"]) for event in timeline if isinstance(event.get("run_id"), str)), None),
        span=bounds.span,
        workers=int_field(job_started_diagnostics(timeline), "workers"),
        groups=groups,
        leases=tuple(step_series(group, lease_changes[group], bounds.span) for group in groups),
        queue_depth=tuple(step_series(group, queue_changes[group], bounds.span) for group in groups),
        row_groups=tuple(replace(row, start=row.start - origin, end=row.end - origin) for row in row_group_spans(timeline, end)),
        marks=tuple(_marks(timeline, origin)),
        requests=request_series(timeline, origin, bounds.span),
    )


def request_series(events: Sequence[Event], origin: float, span: float) -> tuple[RequestSeries, ...]:
    """Per request resource of ``ordered`` events: its limit, leases in flight and rate-limited releases."""
    limits: dict[str, list[tuple[float, float]]] = defaultdict(list)
    changes: dict[str, list[tuple[float, int]]] = defaultdict(list)
    rate_limited: dict[str, list[float]] = defaultdict(list)
    held: set[tuple[str, object]] = set()
    for event in events:
        if not is_request_event(event):
            continue
        resource, at = request_resource(event), (captured_at(event) or origin) - origin
        limits[resource] += [(at, float(limit)) for limit in limit_points(event)]
        delta = lease_delta(event, held)
        if delta:
            changes[resource].append((at, delta))
        if delta < 0 and event.get("reason") == "rate_limited":
            rate_limited[resource].append(at)
    return tuple(
        RequestSeries(
            resource,
            level_series(resource, limits[resource], span),
            step_series(resource, changes[resource], span),
            tuple(rate_limited[resource]),
        )
        for resource in sorted(limits.keys() | changes.keys())
    )


def _marks(events: Sequence[Event], origin: float) -> list[Mark]:
    marks = []
    for event in events:
        kind, stream = event.get("kind"), stream_of(event)
        # A scheduler retry shows as its task_completed(retry); the scheduler's own retry_deferred repeats it.
        scheduler_retry = kind == "task_completed" and stream == SCHEDULER and event.get("reason") == "retry"
        if scheduler_retry or (kind == "retry_deferred" and stream == ENGINE):
            mark = "retry"
        elif kind == "non_retryable_dropped":
            mark = "drop"
        else:
            continue
        marks.append(Mark((captured_at(event) or origin) - origin, mark, row_group_of(event), group_of(event)))
    return marks


def plot_timeline(timeline: Timeline, path: Path) -> Path | None:
    """Draw the timeline (``draw_timeline``) into ``path`` as a PNG. ``None`` when matplotlib is not installed."""
    try:
        # The package itself first: its submodules may still be cached in sys.modules when it is blocked.
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    with matplotlib.rc_context({"font.size": 9}):
        fig = Figure(figsize=(11, 10.5 if timeline.requests else 8), layout="constrained")
        FigureCanvasAgg(fig)
        draw_timeline(fig, timeline)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", dpi=100)
    fig.clear()  # drop the artists now; nothing else (no pyplot registry) holds the figure
    return path


def draw_timeline(fig: Figure, timeline: Timeline) -> None:
    """Stacked axes sharing time: leases held per group (stacked), ready-queue depth per group, row-group spans
    with retry (x) and drop (red v) marks and, when the run made model requests, each request resource's
    adaptive limit and requests in flight with rate-limited releases (x)."""
    colors = {group: f"C{index % 10}" for index, group in enumerate(timeline.groups)}
    heights = [2, 2, 1.5] + ([2] if timeline.requests else [])
    axes = fig.subplots(len(heights), 1, sharex=True, height_ratios=heights, squeeze=False)[:, 0]
    fig.suptitle(f"threadsched run {timeline.run_id}" if timeline.run_id else "threadsched run")
    _draw_leases(axes[0], timeline, colors)
    _draw_queue(axes[1], timeline, colors)
    _draw_row_groups(axes[2], timeline)
    if timeline.requests:
        _draw_requests(axes[3], timeline.requests)
    axes[-1].set_xlabel("seconds since first event")
    axes[-1].set_xlim(0.0, max(timeline.span, 1e-3))


def _draw_leases(ax: Axes, timeline: Timeline, colors: dict[str, str]) -> None:
    from matplotlib.ticker import MaxNLocator

    grid, stacked = stacked_on_grid(timeline.leases)
    if grid:
        labels = list(timeline.groups)
        ax.stackplot(grid, *stacked, labels=labels, colors=[colors[group] for group in labels], step="post", alpha=0.85)
    if timeline.workers:
        ax.axhline(timeline.workers, color="gray", linestyle="--", linewidth=1, label="workers")
    if grid or timeline.workers:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", title="group")
    ax.set_ylabel("leases held")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _draw_queue(ax: Axes, timeline: Timeline, colors: dict[str, str]) -> None:
    from matplotlib.ticker import MaxNLocator

    for series in timeline.queue_depth:
        ax.step(series.times, series.values, where="post", color=colors[series.label], label=series.label)
    ax.set_ylabel("ready-queue depth")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _draw_row_groups(ax: Axes, timeline: Timeline) -> None:
    """One bar per row group (hatched: never checkpointed); marks without a row group go on lane -1."""
    from matplotlib.ticker import MaxNLocator

    for row in timeline.row_groups:
        ax.broken_barh(
            [(row.start, max(row.end - row.start, 0.0))],
            (row.row_group - 0.4, 0.8),
            facecolors="#9ecae1" if row.checkpointed else "white",
            edgecolors="#3182bd",
            hatch=None if row.checkpointed else "//",
        )
    for kind, marker, color in (("retry", "x", "black"), ("drop", "v", "red")):
        points = [mark for mark in timeline.marks if mark.kind == kind]
        if points:
            lanes = [-1 if mark.row_group is None else mark.row_group for mark in points]
            ax.scatter([mark.at for mark in points], lanes, marker=marker, color=color, label=kind, zorder=3)
    if timeline.marks:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    if not timeline.row_groups and not timeline.marks:
        ax.text(0.5, 0.5, "no row groups in the events", transform=ax.transAxes, ha="center", va="center", color="gray")
    ax.set_ylabel("row group")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _draw_requests(ax: Axes, requests: Sequence[RequestSeries]) -> None:
    """Per request resource: its adaptive limit (dashed step), requests in flight (solid step), x at each
    rate-limited release (on the in-flight line)."""
    from matplotlib.ticker import MaxNLocator

    for index, series in enumerate(requests):
        color = f"C{index % 10}"
        if series.limit.times:
            ax.step(
                series.limit.times,
                series.limit.values,
                where="post",
                color=color,
                linestyle="--",
                label=f"{series.resource} limit",
            )
        ax.step(series.in_flight.times, series.in_flight.values, where="post", color=color, label=f"{series.resource} in flight")
        if series.rate_limited:
            heights = [series.in_flight.at(at) for at in series.rate_limited]
            ax.scatter(series.rate_limited, heights, marker="x", color=color, zorder=3, label=f"{series.resource} rate limited")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", title="request resource")
    ax.set_ylabel("model requests")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
