"""The "Capacity plan" section of ``report.md``, read from ``capacity_plan.json``.

The engine's plan has three parts, each rendered as a table: ``configured`` (name, value, where the
value came from), ``observed`` (the maxima the run reached, as plain numbers) and ``final_admission``
(per resource: limit, free and leased at the end). A plan of any other shape is listed key by key,
with large values summarised by their size rather than dumped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from threadsched.report.cells import cell as _cell
from threadsched.report.cells import scalar as _scalar

__all__ = ["MAX_PLAN_ENTRIES", "capacity_plan_lines"]

MAX_PLAN_ENTRIES = 20


def capacity_plan_lines(plan: Mapping[str, Any]) -> list[str]:
    configured, observed, final = plan.get("configured"), plan.get("observed"), plan.get("final_admission")
    if not (isinstance(configured, Mapping) or isinstance(observed, Mapping) or isinstance(final, Mapping)):
        return _listed(plan)
    lines: list[str] = []
    if isinstance(configured, Mapping):
        lines += _configured(configured)
    if isinstance(observed, Mapping):
        lines += _observed(observed)
    if isinstance(final, Mapping):
        lines += _final(final)
    others = {
        key: value for key, value in plan.items() if key not in ("configured", "observed", "final_admission", "schema_version")
    }
    if others:
        lines += _listed(others)
    return lines


def _configured(configured: Mapping[str, Any]) -> list[str]:
    lines = ["| configured | value | source |", "|---|---:|---|"]
    for name, entry in _first(configured):
        if isinstance(entry, Mapping):
            lines.append(f"| {_cell(str(name))} | {_scalar(entry.get('value'))} | {_scalar(entry.get('source'))} |")
        else:
            lines.append(f"| {_cell(str(name))} | {_scalar(entry)} | - |")
    return [*lines, *_more(configured, "configured values"), ""]


def _observed(observed: Mapping[str, Any]) -> list[str]:
    """One row per maximum: a mapping of maxima (per group, per resource) becomes one row per key."""
    lines = ["| observed maximum | value |", "|---|---:|"]
    rows = 0
    for name, value in observed.items():
        items = list(value.items()) if isinstance(value, Mapping) else [(None, value)]
        for key, number in items:
            if rows == MAX_PLAN_ENTRIES:
                break
            label = str(name) if key is None else f"{name}[{key}]"
            lines.append(f"| {_cell(label)} | {_scalar(number)} |")
            rows += 1
    total = sum(len(value) if isinstance(value, Mapping) else 1 for value in observed.values())
    if total > rows:
        lines.append(f"| … {total - rows} more in `capacity_plan.json` | |")
    return [*lines, ""]


def _final(final: Mapping[str, Any]) -> list[str]:
    limits = final.get("resource_limits")
    lines = [f"At the end: {_scalar(final.get('active_lease_count'))} active leases."]
    if isinstance(limits, Mapping) and limits:
        available, leased = final.get("resources_available") or {}, final.get("leased_resources") or {}
        lines += ["", "| resource | limit | free at the end | leased at the end |", "|---|---:|---:|---:|"]
        for resource, limit in _first(limits):
            lines.append(
                f"| {_cell(str(resource))} | {_scalar(limit)} | {_scalar(available.get(resource))} "
                f"| {_scalar(leased.get(resource))} |"
            )
        lines += _more(limits, "resources")
    diagnostics = final.get("release_diagnostics")
    if isinstance(diagnostics, Mapping) and diagnostics:
        lines += ["", "Release diagnostics: " + ", ".join(f"{_cell(str(k))} = {_scalar(v)}" for k, v in _first(diagnostics))]
    return [*lines, ""]


def _listed(plan: Mapping[str, Any]) -> list[str]:
    """Scalar entries and one level of scalar mappings; anything bigger is summarised by its size."""
    lines = []
    for key, value in _first(plan):
        if isinstance(value, Mapping):
            inner = ", ".join(f"{name} = {_scalar(item)}" for name, item in _first(value))
            lines.append(f"- {_cell(str(key))}: {inner or '{}'}")
        else:
            lines.append(f"- {_cell(str(key))}: {_scalar(value)}")
    if len(plan) > MAX_PLAN_ENTRIES:
        lines.append(f"- … {len(plan) - MAX_PLAN_ENTRIES} more entries in `capacity_plan.json`")
    return lines


def _first(mapping: Mapping[Any, Any]) -> list[tuple[Any, Any]]:
    return list(mapping.items())[:MAX_PLAN_ENTRIES]


def _more(mapping: Mapping[Any, Any], what: str) -> list[str]:
    hidden = len(mapping) - MAX_PLAN_ENTRIES
    return [f"\n… {hidden} more {what} in `capacity_plan.json`"] if hidden > 0 else []
