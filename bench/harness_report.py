"""Statistics, gates, the artifact schema and the artifact writers of ``bench/harness.py``.

Artifacts (schema ``SCHEMA_VERSION``) in the output directory:

* ``summary.json``: scenario id and knobs, harness version, git SHA, machine, command line, capacity plan,
  final snapshots (the last threadsched run's counters), output hashes, per-implementation statistics
  (mean, p50, p95, min, max, stdev over the iterations) of every numeric metric, per-column gaps, ratios
  threadsched vs each baseline, and the gates (``[{name, passed, detail}]``); optional sections (absent in
  older summaries, still schema "1"): ``policy_comparison`` and ``targets`` (``harness_policies``: every
  non-strict policy against strict; the targets, reported as met or missed, never gates), ``workload`` (the policy
  workloads' own results, ``harness_workloads``) and ``scenario.params`` (a workload's parameters);
* ``iterations.csv``: one row per implementation x iteration;
* ``summary.md``: the same as tables.

``validate_summary(document)`` returns a list of errors, each naming the offending field (empty = valid).
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness_impls import impl_policy
from harness_policies import validate_policy_sections

from threadsched.report.evidence import percentile

__all__ = [
    "HEADLINE_METRICS",
    "SCHEMA_VERSION",
    "STAT_KEYS",
    "evaluate_gates",
    "ratios",
    "stats",
    "validate_summary",
    "write_artifacts",
]

SCHEMA_VERSION = "1"
STAT_KEYS = ("mean", "p50", "p95", "min", "max", "stdev")
HEADLINE_METRICS = ("wall_s", "gap_p95_s", "downstream_gap_p95_s")
NOT_STATS = frozenset({"iteration", "order"})
HEAVY_ROOT_GAP_FACTOR = 3.0


def stats(values: Sequence[float]) -> dict[str, float]:
    data = [float(value) for value in values]
    if not data:
        raise ValueError("stats() needs at least one value")
    return {
        "mean": statistics.fmean(data),
        "p50": statistics.median(data),
        "p95": percentile(data, 95),
        "min": min(data),
        "max": max(data),
        "stdev": statistics.stdev(data) if len(data) > 1 else 0.0,
    }


def numeric_metrics(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    names: dict[str, None] = {}
    for row in rows:
        for name, value in row.items():
            if name not in NOT_STATS and isinstance(value, (int, float)) and not isinstance(value, bool):
                names.setdefault(name, None)
    return list(names)


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def ratios(by_impl: Mapping[str, Mapping[str, Mapping[str, float]]]) -> dict[str, dict[str, dict[str, float | None]]]:
    """Per baseline and headline metric: threadsched's p50 / the baseline's p50, and the inverse (the other
    policies of threadsched are compared with strict in ``policy_comparison`` instead)."""
    if "threadsched" not in by_impl:
        return {}
    ours = by_impl["threadsched"]
    result: dict[str, dict[str, dict[str, float | None]]] = {}
    for baseline, theirs in by_impl.items():
        if impl_policy(baseline) is not None:
            continue
        result[baseline] = {
            metric: {
                "threadsched_over_baseline": _ratio(ours[metric]["p50"], theirs[metric]["p50"]),
                "baseline_over_threadsched": _ratio(theirs[metric]["p50"], ours[metric]["p50"]),
            }
            for metric in HEADLINE_METRICS
            if metric in ours and metric in theirs
        }
    return result


def _gate(name: str, passed: bool, detail: str) -> dict[str, Any]:
    return {"name": name, "passed": bool(passed), "detail": detail}


def evaluate_gates(
    scenario_id: str, rows: Sequence[Mapping[str, Any]], by_impl: Mapping[str, Mapping[str, Mapping[str, float]]]
) -> list[dict[str, Any]]:
    """The gates that apply to what ran (a gate about an implementation that did not run is left out)."""
    per_impl: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        per_impl.setdefault(row["implementation"], []).append(row)
    gates: list[dict[str, Any]] = []
    waiters = {
        impl: [int(row["hidden_waiters"]) for row in items if "hidden_waiters" in row]
        for impl, items in per_impl.items()
        if impl_policy(impl) is not None
    }
    waiters = {impl: counts for impl, counts in waiters.items() if counts}
    if waiters:  # every threadsched implementation (one per policy)
        detail = "; ".join(f"{impl}: {counts}" for impl, counts in waiters.items())
        gates.append(
            _gate(
                "threadsched_hidden_waiters_zero",
                not any(any(counts) for counts in waiters.values()),
                f"hidden waiters per iteration: {detail}",
            )
        )
    if "spawn_then_wait" in per_impl:
        counts = [int(row["hidden_waiters"]) for row in per_impl["spawn_then_wait"]]
        gates.append(
            _gate(
                "spawn_then_wait_hidden_waiters_positive",
                all(count > 0 for count in counts),
                f"spawn_then_wait workers that parked on a model semaphore, per iteration: {counts}",
            )
        )
    leases = {
        impl: [int(row["active_leases_after"]) for row in items if "active_leases_after" in row]
        for impl, items in per_impl.items()
    }
    leases = {impl: values for impl, values in leases.items() if values}
    if leases:
        gates.append(
            _gate(
                "zero_active_leases_after_every_iteration",
                not any(any(values) for values in leases.values()),
                f"active leases after each iteration: {leases}",
            )
        )
    clean = {impl: [int(row["shutdown_clean"]) for row in items if "shutdown_clean" in row] for impl, items in per_impl.items()}
    clean = {impl: values for impl, values in clean.items() if values}
    if clean:  # the policy workloads: a scheduler shut down with no lease or task left
        gates.append(
            _gate(
                "clean_shutdown_every_iteration",
                all(all(values) for values in clean.values()),
                f"clean scheduler shutdown (1) per iteration: {clean}",
            )
        )
    hashes = {
        impl: sorted({str(row["output_hash"]) for row in items if row.get("output_hash")}) for impl, items in per_impl.items()
    }
    if any(hashes.values()):
        distinct = {value for values in hashes.values() for value in values}
        missing = [impl for impl, values in hashes.items() if not values]
        gates.append(
            _gate(
                "equal_output_hashes",
                len(distinct) == 1 and not missing,
                f"distinct output hashes across {sorted(hashes)} and every iteration: {len(distinct)}"
                + (f"; without a hash: {missing}" if missing else "")
                + ("" if len(distinct) == 1 else f"; {hashes}"),
            )
        )
    if scenario_id == "heavy_root" and "threadsched" in by_impl and "fifo" in by_impl:
        ours = by_impl["threadsched"]["downstream_gap_p95_s"]["p50"]
        fifo = by_impl["fifo"]["downstream_gap_p95_s"]["p50"]
        factor = fifo / ours if ours > 0 else (math.inf if fifo > 0 else 0.0)
        gates.append(
            _gate(
                "heavy_root_downstream_p95_gap_3x_smaller_than_fifo",
                factor >= HEAVY_ROOT_GAP_FACTOR,
                f"p95 downstream ready-to-lease gap (median over iterations): threadsched {ours * 1e3:.2f} ms, "
                f"fifo {fifo * 1e3:.2f} ms, fifo/threadsched = {factor:.2f} (needs >= {HEAVY_ROOT_GAP_FACTOR:g})",
            )
        )
    return gates


# -- validation ----------------------------------------------------------------------------------------


def _expect(errors: list[str], document: Mapping[str, Any], path: str, key: str, types: tuple[type, ...]) -> Any:
    name = f"{path}.{key}" if path else key
    if key not in document:
        errors.append(f"{name}: missing")
        return None
    value = document[key]
    if isinstance(value, bool) and bool not in types:
        errors.append(f"{name}: expected {'/'.join(t.__name__ for t in types)}, got bool")
        return None
    if not isinstance(value, types):
        errors.append(f"{name}: expected {'/'.join(t.__name__ for t in types)}, got {type(value).__name__}")
        return None
    return value


def validate_summary(document: Any) -> list[str]:
    """Errors of a ``summary.json`` document against schema ``SCHEMA_VERSION``; each names its field."""
    if not isinstance(document, Mapping):
        return [f"summary: expected an object, got {type(document).__name__}"]
    errors: list[str] = []
    version = _expect(errors, document, "", "schema_version", (str,))
    if version is not None and version != SCHEMA_VERSION:
        errors.append(f"schema_version: expected {SCHEMA_VERSION!r}, got {version!r}")
    for key in ("harness_version", "git_sha", "created_utc"):
        _expect(errors, document, "", key, (str,))
    scenario = _expect(errors, document, "", "scenario", (dict,))
    if scenario is not None:
        _expect(errors, scenario, "scenario", "id", (str,))
        _expect(errors, scenario, "scenario", "knobs", (dict,))
        _expect(errors, scenario, "scenario", "quick", (bool,))
    machine = _expect(errors, document, "", "machine", (dict,))
    if machine is not None:
        _expect(errors, machine, "machine", "platform", (str,))
        _expect(errors, machine, "machine", "python", (str,))
        _expect(errors, machine, "machine", "cpu_count", (int, type(None)))
    command = _expect(errors, document, "", "command_line", (list,))
    if command is not None and not all(isinstance(part, str) for part in command):
        errors.append("command_line: expected a list of str")
    for key in ("capacity_plan", "final_snapshots", "ratios", "per_column_gaps"):
        _expect(errors, document, "", key, (dict,))
    for key in ("warmups", "iterations"):
        count = _expect(errors, document, "", key, (int,))
        if count is not None and count < (1 if key == "iterations" else 0):
            errors.append(f"{key}: out of range: {count}")
    impls = _expect(errors, document, "", "implementations", (list,)) or []
    if not impls:
        errors.append("implementations: expected a non-empty list")
    hashes = _expect(errors, document, "", "output_hashes", (dict,))
    if hashes is not None:
        for impl in impls:
            _expect(errors, hashes, "output_hashes", str(impl), (str, type(None)))
    by_impl = _expect(errors, document, "", "stats", (dict,))
    if by_impl is not None:
        for impl in impls:
            metrics = _expect(errors, by_impl, "stats", str(impl), (dict,))
            if metrics is None:
                continue
            if "wall_s" not in metrics:
                errors.append(f"stats.{impl}.wall_s: missing")
            for metric in metrics:
                entry = _expect(errors, metrics, f"stats.{impl}", metric, (dict,))
                for key in STAT_KEYS if entry is not None else ():
                    number = _expect(errors, entry, f"stats.{impl}.{metric}", key, (int, float))
                    if number is not None and not math.isfinite(number):
                        errors.append(f"stats.{impl}.{metric}.{key}: not finite: {number!r}")
    gates = _expect(errors, document, "", "gates", (list,))
    for index, gate in enumerate(gates or ()):
        if not isinstance(gate, Mapping):
            errors.append(f"gates[{index}]: expected an object, got {type(gate).__name__}")
            continue
        _expect(errors, gate, f"gates[{index}]", "name", (str,))
        _expect(errors, gate, f"gates[{index}]", "passed", (bool,))
        _expect(errors, gate, f"gates[{index}]", "detail", (str,))
    passed = _expect(errors, document, "", "all_gates_passed", (bool,))
    consistent = (
        gates is None or not all(isinstance(g, Mapping) for g in gates) or passed == all(g.get("passed") is True for g in gates)
    )
    if passed is not None and not consistent:
        errors.append("all_gates_passed: disagrees with gates[].passed")
    return errors + validate_policy_sections(document)


# -- writers -------------------------------------------------------------------------------------------


def _csv_value(value: Any) -> Any:
    return f"{value:.9g}" if isinstance(value, float) else value


def write_iterations_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    head = ["implementation", "iteration", "order"]
    columns = head + [name for name in dict.fromkeys(k for row in rows for k in row) if name not in head]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: _csv_value(value) for key, value in row.items()})


def _fmt(value: Any, metric: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value * 1e3:.2f} ms" if metric.endswith("_s") else f"{value:.3g}"
    return str(value)


def summary_markdown(document: Mapping[str, Any]) -> str:
    scenario = document["scenario"]
    lines = [
        f"# bench/harness.py: {scenario['id']}",
        "",
        f"{scenario.get('description', '')}",
        "",
        f"* git SHA `{document['git_sha']}`, harness {document['harness_version']}, schema {document['schema_version']}",
        f"* machine: {document['machine'].get('platform')}, Python {document['machine'].get('python')}, "
        f"{document['machine'].get('cpu_count')} CPUs",
        f"* knobs: `{json.dumps(scenario['knobs'], sort_keys=True)}`{' (quick)' if scenario['quick'] else ''}",
        f"* {document['warmups']} warm-up(s), {document['iterations']} iteration(s), implementations interleaved",
        f"* command: `{' '.join(document['command_line'])}`",
        "",
        "## Gates",
        "",
        "| gate | result | detail |",
        "|---|---|---|",
        *(f"| {g['name']} | {'PASS' if g['passed'] else 'FAIL'} | {g['detail']} |" for g in document["gates"]),
    ]
    if document.get("targets"):
        lines += [
            "",
            "## Targets (reported, not gates)",
            "",
            "Targets for the admission policies. A missed target is shown here and in `summary.json`",
            "(`targets[].passed: false`) but does not fail the run: the exit code and `all_gates_passed` follow the",
            "gates only, so CI stays green while the numbers stay visible.",
            "",
            "| target | result | value | threshold | detail |",
            "|---|---|---|---|---|",
        ]
        for t in document["targets"]:
            value = _fmt(t["value"])
            result = "met" if t["passed"] else "MISSED"
            lines.append(f"| {t['name']} | {result} | {value} | {t['comparison']} {t['threshold']:g} | {t['detail']} |")
    if document.get("policy_comparison"):
        lines += [
            "",
            "## Policies against strict (p50 over iterations)",
            "",
            "| policy | metric | policy | strict | policy / strict | strict / policy |",
            "|---|---|---|---|---|---|",
        ]
        for policy, per in document["policy_comparison"].items():
            for metric, row in per.items():
                cells = [_fmt(row["policy_p50"], metric), _fmt(row["strict_p50"], metric)]
                cells += [_fmt(row["policy_over_strict"]), _fmt(row["strict_over_policy"])]
                lines.append(f"| {policy} | {metric} | " + " | ".join(cells) + " |")
    if document.get("workload"):
        lines += ["", "## Workload", ""]
        for key, value in document["workload"].items():
            shown = json.dumps(value, sort_keys=True, default=str) if isinstance(value, (dict, list)) else _fmt(value)
            lines.append(f"* {key}: `{shown}`" if isinstance(value, (dict, list)) else f"* {key}: {shown}")
    metrics = list(dict.fromkeys(m for per in document["stats"].values() for m in per))
    for metric in metrics:
        lines += ["", f"## {metric}", "", "| implementation | " + " | ".join(STAT_KEYS) + " |", "|---" * 7 + "|"]
        for impl, per in document["stats"].items():
            if metric in per:
                lines.append(f"| {impl} | " + " | ".join(_fmt(per[metric][key], metric) for key in STAT_KEYS) + " |")
    if document["ratios"]:
        lines += [
            "",
            "## Ratios (p50 over iterations)",
            "",
            "| baseline | metric | threadsched / baseline | baseline / threadsched |",
        ]
        lines.append("|---|---|---|---|")
        for baseline, per in document["ratios"].items():
            for metric, pair in per.items():
                ours, theirs = _fmt(pair["threadsched_over_baseline"]), _fmt(pair["baseline_over_threadsched"])
                lines.append(f"| {baseline} | {metric} | {ours} | {theirs} |")
    if document["per_column_gaps"]:
        lines += [
            "",
            "## Ready-to-lease gap per column (all iterations pooled)",
            "",
            "| implementation | column | n | p50 | p95 |",
        ]
        lines.append("|---|---|---|---|---|")
        for impl, per in document["per_column_gaps"].items():
            for column, entry in per.items():
                lines.append(
                    f"| {impl} | {column} | {entry['count']} | {_fmt(entry['p50'], '_s')} | {_fmt(entry['p95'], '_s')} |"
                )
    lines += ["", "## Output hashes", ""]
    lines += [f"* {impl}: `{value}`" for impl, value in document["output_hashes"].items()]
    return "\n".join(lines) + "\n"


def write_artifacts(out_dir: Path, document: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in ("summary.json", "iterations.csv", "summary.md")}
    paths["summary.json"].write_text(json.dumps(document, indent=2, default=str) + "\n")
    write_iterations_csv(paths["iterations.csv"], rows)
    paths["summary.md"].write_text(summary_markdown(document))
    return paths
