"""``report.md``: run facts, the per-group wait table, run-level evidence and how to read them.

Only counts, durations, names of groups and resources, and ids appear: events carry no row values,
prompts or completions, and of ``run.json`` only counters and hashes are shown (not drop reasons).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from threadsched.report.capacity_section import capacity_plan_lines
from threadsched.report.cells import cell as _cell
from threadsched.report.cells import scalar as _scalar
from threadsched.report.metrics import GroupMetrics, ReportMetrics
from threadsched.report.requests import RequestMetrics
from threadsched.report.stats import WaitStats

MAX_ROW_GROUP_ROWS = 50
PLOTS_HINT = "install the plots extra: `pip install 'threadsched[plots]'`"

HOW_TO_READ = """\
Times are seconds since the run's first event. *Ready-queue wait* is the time from `ready_enqueued` to the
attempt's first `selected` (the dispatcher selects only while a worker slot is free, so waiting for a slot
shows here); *admission wait* runs from that selection to `task_lease_acquired` (a policy, a group cap or
another resource held it back); *ready→lease* is their sum. A retry is a new attempt with its own waits. The
*ready-idle gap* adds up the time during which some queued task could have been leased (a free worker slot
and room in every limited resource it asks for) and yet no lease was taken: it should be a small fraction
of the span, and a large one points at the dispatcher, not at capacity. *Utilisation* is the capacity
integral (lease-seconds) over limit times span. *Root over-admission* counts leases given to root columns,
after the first downstream task became ready, while downstream work was waiting in the queue: many of
them mean new rows are started instead of finishing old ones. *Hidden waiters* (workers started before
their lease) must be 0, and every lease must be released exactly once. In the timeline, the top panel
stacks the leases held per group, the second one shows each group's ready-queue depth, and the third one
the span of every row group from admission to checkpoint (hatched: never checkpointed) with retries (x)
and drops (red v); a run with model requests has a fourth one (see *Model requests*)."""

REQUEST_WAIT = """\
A *request wait* is a model call of a task that is already running (it holds its task lease and its worker)
waiting for a request permit of its provider/model: the adaptive limit, the endpoint's cap or a rate-limit
cooldown held it back. That is by design: request admission paces the calls to what the provider accepts,
it is not missing scheduler capacity; what the scheduler made a task wait is its ready→lease time. Contrast
*hidden waiters*, workers started before their task lease, which must be 0 (here {hidden}). Every attempt
takes its own permit (a retry after a 429 waits again); the wait columns cover every attempt (0 when the
permit was free) and every wait that gave up; *hold* runs from permit to release. The limit is lowered once
per rate-limit wave and grows back on successes."""
REQUESTS_PANEL = """
In the timeline, the fourth panel shows per request resource the adaptive limit (dashed), the requests in
flight (solid) and every rate-limited release (x)."""


@dataclass(frozen=True, slots=True)
class ReportContext:
    """What the report knows besides the events: ``run.json``, ``capacity_plan.json``, the plot outcome."""

    run: Mapping[str, Any] | None = None
    capacity_plan: Mapping[str, Any] | None = None
    timeline_image: str | None = None  # file name next to report.md, when written
    plot_note: str | None = None  # why there is no timeline image


def render_markdown(metrics: ReportMetrics, context: ReportContext | None = None) -> str:
    context = context or ReportContext()
    lines = [f"# threadsched run report{f' — {metrics.run_id}' if metrics.run_id else ''}", ""]
    lines += ["## Run", "", *_run_facts(metrics, context.run), ""]
    if context.capacity_plan:
        lines += ["## Capacity plan", "", *capacity_plan_lines(context.capacity_plan), ""]
    lines += ["## Groups", "", *_group_table(metrics.groups), ""]
    if metrics.requests is not None:
        lines += ["## Model requests", "", *_requests(metrics.requests, metrics.hidden_waiters, context), ""]
    lines += ["## Evidence", "", *_evidence(metrics), ""]
    if metrics.row_groups:
        lines += ["## Row groups", "", *_row_groups(metrics), ""]
    lines += ["## Timeline", ""]
    if context.timeline_image:
        lines += [f"![timeline]({context.timeline_image})", ""]
    else:
        lines += [f"_Timeline plot skipped: {context.plot_note or 'no events'}._", ""]
    lines += ["## How to read this", "", HOW_TO_READ, ""]
    return "\n".join(lines)


def _run_facts(metrics: ReportMetrics, run: Mapping[str, Any] | None) -> list[str]:
    run = run or {}
    recipe_hash = metrics.recipe_hash or (_scalar(run["recipe_hash"]) if run.get("recipe_hash") else None)
    workers = "unknown" if metrics.workers is None else str(metrics.workers)
    if metrics.workers_inferred:
        workers += " (inferred: peak concurrent leases)"
    limits = ", ".join(f"`{name}` = {limit}" for name, limit in sorted(metrics.resource_limits.items())) or "none besides workers"
    facts = [
        f"- Run id: `{metrics.run_id}`" if metrics.run_id else "- Run id: unknown",
        f"- Recipe hash: `{recipe_hash}`" if recipe_hash else "- Recipe hash: unknown",
        f"- Events: {metrics.events} over {metrics.span_seconds:.3f} s",
        f"- Workers: {workers}",
        f"- Resource limits: {limits}",
    ]
    if "rows_written" in run or "rows_dropped" in run:
        records = f" of {run['records']} requested" if "records" in run else ""
        facts.append(f"- Rows: {_scalar(run.get('rows_written'))} written, {_scalar(run.get('rows_dropped'))} dropped{records}")
    for key, label in (("mode", "Mode"), ("elapsed", "Elapsed (s)"), ("output_hash", "Output hash")):
        if key in run:
            facts.append(f"- {label}: {_scalar(run[key])}")
    return facts


def _group_table(groups: tuple[GroupMetrics, ...]) -> list[str]:
    if not groups:
        return ["No scheduler tasks in the events."]
    lines = [
        "| group | tasks | attempts | leases | queue wait p50 ms | queue wait p95 ms | admission wait p50 ms "
        "| admission wait p95 ms | ready→lease p50 ms | ready→lease p95 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for group in groups:
        waits = (group.ready_queue_wait, group.admission_wait, group.ready_to_lease)
        cells = [_cell(group.group), str(group.tasks), str(group.attempts), str(group.leases)]
        cells += [value for stats in waits for value in _ms(stats)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _requests(requests: RequestMetrics, hidden: int, context: ReportContext) -> list[str]:
    queued = sum(resource.queued for resource in requests.resources)
    lines = [
        f"{requests.attempts} model request attempts on {len(requests.resources)} request resources; "
        f"{queued} queued for a request permit.",
        "",
        "| request resource | attempts | outcomes | queued | wait p50 ms | wait p95 ms | wait total s | hold p50 ms "
        "| hold p95 ms | limit first → min → final | decreases | increases | max in flight |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for item in requests.resources:
        outcomes = ", ".join(f"{outcome} {count}" for outcome, count in item.outcomes.items()) or "-"
        limits = " → ".join(_scalar(limit) for limit in (item.first_limit, item.min_limit, item.final_limit))
        cells = [f"`{_cell(item.resource)}`", str(item.attempts), _cell(outcomes), str(item.queued), *_ms(item.wait)]
        cells += [f"{item.wait_seconds:.3f}", *_ms(item.hold), limits, str(item.decreases), str(item.increases)]
        lines.append("| " + " | ".join([*cells, str(item.max_in_flight)]) + " |")
    gave_up = [
        f"`{_cell(item.resource)}` {_cell(reason)} {count}"
        for item in requests.resources
        for reason, count in item.gave_up.items()
    ]
    if gave_up:
        lines += ["", f"Waits that ended without a permit: {', '.join(gave_up)}."]
    lines += [
        "",
        "### Task lease wait vs request wait",
        "",
        "| group | task leases | ready→lease p50 ms | ready→lease p95 ms | ready→lease total s | request attempts "
        "| queued | request wait p50 ms | request wait p95 ms | request wait total s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for group in requests.groups:
        cells = [_cell(group.group), str(group.task_leases), *_ms(group.task_wait), f"{group.task_wait_seconds:.3f}"]
        cells += [str(group.attempts), str(group.queued), *_ms(group.request_wait), f"{group.request_wait_seconds:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    panel = REQUESTS_PANEL if context.timeline_image else ""
    return [*lines, "", REQUEST_WAIT.format(hidden=hidden) + panel]


def _evidence(metrics: ReportMetrics) -> list[str]:
    span = metrics.span_seconds
    gap = f"{metrics.ready_idle_gap_seconds:.3f} s ({metrics.ready_idle_gap_fraction:.1%} of the {span:.3f} s span)"
    rows = [("Ready-idle gap", gap)]
    for usage in metrics.resources:
        limit = "no limit known" if usage.limit is None else f"limit {usage.limit}"
        utilisation = "" if usage.utilisation is None else f", utilisation {usage.utilisation:.1%}"
        rows.append(
            (f"Capacity `{usage.resource}`", f"{usage.lease_seconds:.3f} lease-s, peak {usage.peak}, {limit}{utilisation}")
        )
    over = metrics.root_over_admission
    if over is None:
        rows.append(("Root over-admission", "n/a (no `dependency_ready` events)"))
    elif over.first_downstream_ready is None:
        rows.append(("Root over-admission", f"0 (no downstream task became ready; roots {_names(over.roots)})"))
    else:
        rows.append(
            (
                "Root over-admission",
                f"{over.count} root leases ({over.lease_seconds:.3f} lease-s) while downstream work waited, "
                f"after the first downstream task was ready at {over.first_downstream_ready:.3f} s; roots {_names(over.roots)}",
            )
        )
    hidden = f"{metrics.hidden_waiters}" + (" — **violation: must be 0**" if metrics.hidden_waiters else " (must be 0)")
    rows.append(("Hidden waiters", hidden))
    unreleased = metrics.unreleased_leases
    shown = ", ".join(str(lease_id) for lease_id in unreleased[:20]) + (" …" if len(unreleased) > 20 else "")
    rows.append(("Unreleased leases", f"{len(unreleased)} — **lease ids {shown}**" if unreleased else "0"))
    outcomes = ", ".join(f"{reason} {count}" for reason, count in metrics.task_outcomes.items()) or "none"
    rows.append(("Task outcomes", outcomes))
    rows.append(("Retries", f"{metrics.scheduler_retries} scheduler, {metrics.engine_retries} engine"))
    rows.append(("Drops (non-retryable)", str(metrics.drops)))
    rows.append(("Salvage redispatches", str(metrics.salvage_redispatches)))
    return ["| metric | value |", "|---|---|", *(f"| {name} | {_cell(value)} |" for name, value in rows)]


def _row_groups(metrics: ReportMetrics) -> list[str]:
    spans = metrics.row_groups
    durations = sorted(span.end - span.start for span in spans)
    open_count = sum(1 for span in spans if not span.checkpointed)
    lines = [
        f"{len(spans)} row groups, {len(spans) - open_count} checkpointed; "
        f"admission→checkpoint median {durations[len(durations) // 2]:.3f} s, longest {durations[-1]:.3f} s.",
        "",
        "| row group | admitted s | checkpointed s | duration s | rows |",
        "|---:|---:|---:|---:|---:|",
    ]
    for span in spans[:MAX_ROW_GROUP_ROWS]:
        end = f"{span.end:.3f}" if span.checkpointed else "(open)"
        rows = "-" if span.rows is None else str(span.rows)
        lines.append(f"| {span.row_group} | {span.start:.3f} | {end} | {span.end - span.start:.3f} | {rows} |")
    if len(spans) > MAX_ROW_GROUP_ROWS:
        lines.append(f"| … {len(spans) - MAX_ROW_GROUP_ROWS} more | | | | |")
    return lines


def _ms(stats: WaitStats) -> tuple[str, str]:
    if not stats.count:
        return "-", "-"
    return f"{stats.p50 * 1000:.1f}", f"{stats.p95 * 1000:.1f}"


def _names(names: tuple[str, ...]) -> str:
    return ", ".join(f"`{name}`" for name in names) or "none found"
