"""``threadsched report OUT``: ``OUT/events.jsonl`` → ``OUT/report.md`` and ``OUT/timeline.png``.

``write_report`` reads the run's events (or takes them), computes ``metrics.compute_metrics`` (with
``requests.request_metrics`` for the model-request stream), draws ``timeline.plot_timeline`` when
matplotlib (the ``plots`` extra) is installed, and renders ``markdown.render_markdown``. ``run.json`` and
``capacity_plan.json`` next to the events add context.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from threadsched.core.event_log import read_events
from threadsched.report.intervals import int_field, mapping_field
from threadsched.report.markdown import PLOTS_HINT, ReportContext, render_markdown
from threadsched.report.metrics import GroupMetrics, ReportMetrics, ResourceUsage, compute_metrics
from threadsched.report.overadmission import RootOverAdmission
from threadsched.report.requests import GroupRequestWaits, RequestMetrics, RequestResourceMetrics
from threadsched.report.stats import WaitStats
from threadsched.report.timeline import Timeline, build_timeline, plot_timeline

LOGGER = logging.getLogger("threadsched")
EVENTS_FILE = "events.jsonl"
REPORT_FILE = "report.md"
TIMELINE_FILE = "timeline.png"
RUN_FILE = "run.json"
CAPACITY_PLAN_FILE = "capacity_plan.json"

__all__ = [
    "GroupMetrics",
    "GroupRequestWaits",
    "ReportContext",
    "ReportMetrics",
    "ReportResult",
    "RequestMetrics",
    "RequestResourceMetrics",
    "ResourceUsage",
    "RootOverAdmission",
    "Timeline",
    "WaitStats",
    "build_timeline",
    "compute_metrics",
    "last_run",
    "load_events",
    "plot_timeline",
    "render_markdown",
    "write_report",
]


@dataclass(frozen=True, slots=True)
class ReportResult:
    markdown_path: Path
    timeline_path: Path | None  # None when matplotlib is missing or there were no events
    metrics: ReportMetrics


def write_report(out_dir: Path, *, events: list[dict[str, Any]] | None = None) -> ReportResult:
    """Write ``out_dir/report.md`` (and ``out_dir/timeline.png`` when possible) for one run.

    ``events`` defaults to the last run's events in ``out_dir/events.jsonl`` (with its rotated backups); a
    missing file raises ``FileNotFoundError`` naming it."""
    out_dir = Path(out_dir)
    if events is None:
        events = last_run(load_events(out_dir / EVENTS_FILE))
    run = _read_optional_json(out_dir / RUN_FILE)
    capacity = mapping_field(run or {}, "capacity")
    limits = mapping_field(capacity, "resource_limits")
    metrics = compute_metrics(
        events,
        workers=int_field(capacity, "workers"),
        resource_limits={str(name): value for name, value in limits.items() if isinstance(value, int)},
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    timeline_path: Path | None = None
    note = "no events"
    if metrics.events:
        timeline_path = plot_timeline(build_timeline(events), out_dir / TIMELINE_FILE)
        note = f"matplotlib is not installed ({PLOTS_HINT})"
    context = ReportContext(
        run=run,
        capacity_plan=_read_optional_json(out_dir / CAPACITY_PLAN_FILE),
        timeline_image=TIMELINE_FILE if timeline_path is not None else None,
        plot_note=note,
    )
    markdown_path = out_dir / REPORT_FILE
    markdown_path.write_text(render_markdown(metrics, context), encoding="utf-8")
    return ReportResult(markdown_path, timeline_path, metrics)


def load_events(path: Path) -> list[dict[str, Any]]:
    """The events of ``path`` and its rotated backups (``threadsched.core.event_log.read_events``). Raises
    ``FileNotFoundError`` naming ``path`` when there is no log."""
    return [dict(event) for event in read_events(Path(path)) if isinstance(event, Mapping)]


def last_run(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events of the last run in the log: a resumed run appends to ``events.jsonl`` under a new run id.
    Events without a run id (a bare ``Scheduler``) are kept when no event has one."""
    run_ids = [event.get("run_id") for event in events if isinstance(event.get("run_id"), str)]
    if not run_ids:
        return events
    return [event for event in events if event.get("run_id") == run_ids[-1]]


def _read_optional_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        LOGGER.warning("threadsched: ignoring unreadable %s: %s", path, error)
        return None
    return data if isinstance(data, dict) else None
