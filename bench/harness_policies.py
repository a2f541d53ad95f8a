"""Admission policies in ``bench/harness.py``: implementation names, policy comparison rows and targets.

``--policies strict,bounded_borrow,drf`` runs threadsched once per listed policy per iteration, as the
implementations ``threadsched`` (strict), ``threadsched[bounded_borrow]`` and ``threadsched[drf]``,
interleaved with the baselines. Two summary sections come from them (schema "1": both are additions):

* ``policy_comparison``: ``{policy: {metric: {policy_p50, strict_p50, policy_over_strict,
  strict_over_policy}}}`` for every non-strict policy that ran next to strict; the metrics are
  ``COMPARED_METRICS`` on recipe scenarios (wall, p95 downstream ready-to-lease gap, time to the first
  complete row) and the workload's own on the policy workloads (``Workload``). p50 = the median
  over the iterations.
* ``targets``: ``[{name, kind: "target", passed, value, threshold, comparison, detail}]``: the
  targets, *reported* and never gates: a miss is visible (``passed: false``) but leaves the exit code and
  ``all_gates_passed`` alone. On a recipe scenario with ``strict`` and ``bounded_borrow`` (``saturated_root``
  runs them by default): p95 downstream gap strict/borrow >= 2, first complete row strict/borrow >= 2, wall
  borrow/strict <= 1.05.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness_impls import STRICT, Sample, impl_policy, policy_impl
from scenarios import Knobs

from threadsched.policies import POLICY_NAMES

__all__ = [
    "BOUNDED_BORROW_TARGETS",
    "COMPARED_METRICS",
    "Stats",
    "Workload",
    "bounded_borrow_targets",
    "expand_implementations",
    "finite",
    "p50",
    "parse_policies",
    "policy_comparison",
    "run_lengths",
    "target",
    "validate_policy_sections",
]

Stats = Mapping[str, Mapping[str, Mapping[str, float]]]


@dataclass(frozen=True, slots=True)
class Workload:
    """A policy workload without a recipe (``two_resource_mix``, ``cross_provider_cooldown``):
    ``make_params(knobs, quick, overrides)`` -> its ``Params``; ``run(impl, params, index)``;
    ``report(by_impl, params)`` -> (the summary's ``workload`` section, its target entries). Its
    implementations are fixed: ``--impl``/``--policies`` do not apply."""

    implementations: tuple[str, ...]
    compared_metrics: tuple[str, ...]
    make_params: Callable[[Knobs, bool, Mapping[str, Any]], Any]
    run: Callable[[str, Any, int], Sample]
    report: Callable[[Stats, Any], tuple[dict[str, Any], list[dict[str, Any]]]]


def finite(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Non-finite numbers are left out (a share ratio with an empty group): stats need finite values."""
    return {k: v for k, v in metrics.items() if not (isinstance(v, float) and not math.isfinite(v))}


def run_lengths(
    quick: bool, overrides: Mapping[str, Any], default: tuple[float, float], fast: tuple[float, float]
) -> dict[str, float]:
    """A workload run's ``warmup_s`` / ``window_s``: ``--warmup-s`` / ``--window-s``, else quick or default."""
    warmup, window = fast if quick else default
    return {"warmup_s": float(overrides.get("warmup_s", warmup)), "window_s": float(overrides.get("window_s", window))}


COMPARED_METRICS = ("wall_s", "downstream_gap_p95_s", "first_row_s")
# (name, numerator policy, denominator policy, metric, comparison, threshold)
BOUNDED_BORROW_TARGETS: tuple[tuple[str, str, str, str, str, float], ...] = (
    ("bounded_borrow_downstream_gap_p95_2x_smaller_than_strict", STRICT, "bounded_borrow", "downstream_gap_p95_s", ">=", 2.0),
    ("bounded_borrow_first_row_2x_sooner_than_strict", STRICT, "bounded_borrow", "first_row_s", ">=", 2.0),
    ("bounded_borrow_wall_at_most_5pct_worse_than_strict", "bounded_borrow", STRICT, "wall_s", "<=", 1.05),
)
COMPARISONS = (">=", "<=")


def parse_policies(text: str) -> list[str]:
    """``strict,bounded_borrow`` -> the policies, in order (ValueError for an unknown or repeated one)."""
    policies = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in policies if name not in POLICY_NAMES]
    if unknown or not policies:
        raise ValueError(f"--policies: unknown policy {unknown} (known: {', '.join(POLICY_NAMES)})")
    if len(set(policies)) != len(policies):
        raise ValueError(f"--policies: a policy is listed twice: {policies}")
    return policies


def expand_implementations(implementations: Sequence[str], policies: Sequence[str]) -> list[str]:
    """``threadsched`` becomes one implementation per policy (in place); the baselines stay."""
    result: list[str] = []
    for impl in implementations:
        result.extend(policy_impl(policy) for policy in policies) if impl == "threadsched" else result.append(impl)
    return result


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or not denominator > 0:
        return None
    return numerator / denominator


def p50(by_impl: Stats, impl: str, metric: str) -> float | None:
    entry = by_impl.get(impl, {}).get(metric)
    return float(entry["p50"]) if entry is not None else None


def policy_comparison(by_impl: Stats, metrics: Sequence[str] = COMPARED_METRICS) -> dict[str, dict[str, dict[str, float | None]]]:
    """Every non-strict threadsched implementation against ``threadsched`` (strict), on ``metrics``."""
    strict = policy_impl(STRICT)
    if strict not in by_impl:
        return {}
    result: dict[str, dict[str, dict[str, float | None]]] = {}
    for impl in by_impl:
        policy = impl_policy(impl)
        if policy is None or policy == STRICT:
            continue
        rows: dict[str, dict[str, float | None]] = {}
        for metric in metrics:
            ours, theirs = p50(by_impl, impl, metric), p50(by_impl, strict, metric)
            if ours is None or theirs is None:
                continue
            rows[metric] = {
                "policy_p50": ours,
                "strict_p50": theirs,
                "policy_over_strict": _ratio(ours, theirs),
                "strict_over_policy": _ratio(theirs, ours),
            }
        result[policy] = rows
    return result


def target(name: str, value: float | None, comparison: str, threshold: float, detail: str) -> dict[str, Any]:
    """A reported target entry; ``passed`` is False when ``value`` is unknown."""
    if comparison not in COMPARISONS:
        raise ValueError(f"comparison must be one of {COMPARISONS}, got {comparison!r}")
    known = value is not None and math.isfinite(value)
    passed = known and (value >= threshold if comparison == ">=" else value <= threshold)  # type: ignore[operator]
    return {
        "name": name,
        "kind": "target",
        "passed": bool(passed),
        "value": value if known else None,
        "threshold": threshold,
        "comparison": comparison,
        "detail": detail,
    }


def bounded_borrow_targets(by_impl: Stats) -> list[dict[str, Any]]:
    """The bounded-borrow targets of a recipe scenario (empty unless strict and bounded_borrow both ran)."""
    if policy_impl(STRICT) not in by_impl or policy_impl("bounded_borrow") not in by_impl:
        return []
    entries = []
    for name, over, under, metric, comparison, threshold in BOUNDED_BORROW_TARGETS:
        numerator, denominator = p50(by_impl, policy_impl(over), metric), p50(by_impl, policy_impl(under), metric)
        value = _ratio(numerator, denominator)
        shown = "-" if value is None else f"{value:.3f}"
        scale = 1e3 if metric.endswith("_s") else 1.0
        detail = (
            f"{metric} (median over iterations) {over} / {under} = {shown} (target {comparison} {threshold:g}); "
            f"{over} {numerator * scale if numerator is not None else float('nan'):.2f} ms, "
            f"{under} {denominator * scale if denominator is not None else float('nan'):.2f} ms"
        )
        entries.append(target(name, value, comparison, threshold, detail))
    return entries


# -- validation ----------------------------------------------------------------------------------------


def _number(errors: list[str], where: str, value: Any, *, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        errors.append(f"{where}: expected a number{' or null' if optional else ''}, got {type(value).__name__}")
    elif not math.isfinite(value):
        errors.append(f"{where}: not finite: {value!r}")


def validate_policy_sections(document: Mapping[str, Any]) -> list[str]:
    """Errors of the optional ``policy_comparison``, ``targets`` and ``workload`` sections (absent = fine)."""
    errors: list[str] = []
    comparison = document.get("policy_comparison", {})
    if not isinstance(comparison, Mapping):
        errors.append(f"policy_comparison: expected an object, got {type(comparison).__name__}")
        comparison = {}
    for policy, rows in comparison.items():
        if not isinstance(rows, Mapping):
            errors.append(f"policy_comparison.{policy}: expected an object, got {type(rows).__name__}")
            continue
        for metric, entry in rows.items():
            where = f"policy_comparison.{policy}.{metric}"
            if not isinstance(entry, Mapping):
                errors.append(f"{where}: expected an object, got {type(entry).__name__}")
                continue
            for key in ("policy_p50", "strict_p50", "policy_over_strict", "strict_over_policy"):
                if key not in entry:
                    errors.append(f"{where}.{key}: missing")
                else:
                    _number(errors, f"{where}.{key}", entry[key], optional="_over_" in key)
    targets = document.get("targets", [])
    if not isinstance(targets, list):
        errors.append(f"targets: expected a list, got {type(targets).__name__}")
        targets = []
    for index, entry in enumerate(targets):
        where = f"targets[{index}]"
        if not isinstance(entry, Mapping):
            errors.append(f"{where}: expected an object, got {type(entry).__name__}")
            continue
        for key, types in (("name", (str,)), ("kind", (str,)), ("passed", (bool,)), ("detail", (str,))):
            if key not in entry:
                errors.append(f"{where}.{key}: missing")
            elif not isinstance(entry[key], types):
                errors.append(f"{where}.{key}: expected {types[0].__name__}, got {type(entry[key]).__name__}")
        if entry.get("kind", "target") != "target":
            errors.append(f"{where}.kind: expected 'target', got {entry.get('kind')!r}")
        if entry.get("comparison") not in COMPARISONS:
            errors.append(f"{where}.comparison: expected one of {COMPARISONS}, got {entry.get('comparison')!r}")
        _number(errors, f"{where}.threshold", entry.get("threshold"), optional=False)
        _number(errors, f"{where}.value", entry.get("value"), optional=True)
        value, threshold, passed = entry.get("value"), entry.get("threshold"), entry.get("passed")
        if passed is True and value is None:
            errors.append(f"{where}.passed: true without a value")
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (value, threshold))
        if numbers and isinstance(passed, bool) and entry.get("comparison") in COMPARISONS:
            expected = value >= threshold if entry["comparison"] == ">=" else value <= threshold
            if passed != expected:
                errors.append(f"{where}.passed: disagrees with value {value!r} {entry['comparison']} {threshold!r}")
    workload = document.get("workload", {})
    if not isinstance(workload, Mapping):
        errors.append(f"workload: expected an object, got {type(workload).__name__}")
    return errors
