"""The policy workloads of ``bench/harness.py``: scenarios without a recipe that compare admission policies.

* ``two_resource_mix``: ``bench/policy_drf.py``'s ``run_once`` (a bare ``Scheduler`` with ``cpu`` and
  ``mem`` resources; group A weight 1 needs ``{cpu: 1, mem: 3}``, group B weight 2 needs ``{cpu: 3, mem:
  1}``, both backlogged) under ``strict`` (implementation ``threadsched``) and ``drf``
  (``threadsched[drf]``). Per run: the time-averaged dominant share of each group after the warm-up, their
  ratio B/A and its relative error against the weights' ratio (2). Target (reported): the median error of
  ``drf`` <= 10 %.
* ``cross_provider_cooldown``: ``bench/policy_cross_provider.py``'s ``run_mode`` (two mock HTTP providers;
  A answers 429 and stays in cooldown, B is healthy) as ``threadsched`` (strict),
  ``threadsched[provider_aware]`` and ``b_alone`` (strict, B's tasks only). Per run: B's completed tasks/s
  in the steady window (and in the onset), A's, request waiters, workers leased to A. Target (reported):
  median B tasks/s under provider_aware / median B tasks/s alone >= 0.9.

Knobs: ``workers`` and ``seed`` (and ``latency_ms`` for cross_provider_cooldown: the servers' latency);
the other harness knobs do not apply. The run lengths are the scripts' (``--quick``: their quick ones);
``--warmup-s`` / ``--window-s`` override them. Each run's own warm-up (onset) window is not measured, so
the harness adds no warm-up rounds by default. A run's ``shutdown_clean`` (1/0) feeds the gate
``clean_shutdown_every_iteration``; these workloads have no output hash.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from harness_impls import STRICT, Sample, impl_policy, policy_impl
from harness_policies import target
from scenarios import Knobs

__all__ = ["WORKLOADS", "Workload", "params_dict"]

Stats = Mapping[str, Mapping[str, Mapping[str, float]]]


@dataclass(frozen=True, slots=True)
class Workload:
    """``make_params(knobs, quick, overrides)`` -> the script's ``Params``; ``run(impl, params, index)``;
    ``report(by_impl, params)`` -> (the summary's ``workload`` section, its target entries)."""

    implementations: tuple[str, ...]
    compared_metrics: tuple[str, ...]
    make_params: Callable[[Knobs, bool, Mapping[str, Any]], Any]
    run: Callable[[str, Any, int], Sample]
    report: Callable[[Stats, Any], tuple[dict[str, Any], list[dict[str, Any]]]]


def _p50(by_impl: Stats, impl: str, metric: str) -> float | None:
    entry = by_impl.get(impl, {}).get(metric)
    return float(entry["p50"]) if entry is not None else None


def _finite(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Non-finite numbers are left out (a share ratio with an empty group): stats need finite values."""
    return {k: v for k, v in metrics.items() if not (isinstance(v, float) and not math.isfinite(v))}


def _lengths(
    quick: bool, overrides: Mapping[str, Any], default: tuple[float, float], fast: tuple[float, float]
) -> dict[str, float]:
    warmup, window = fast if quick else default
    return {"warmup_s": float(overrides.get("warmup_s", warmup)), "window_s": float(overrides.get("window_s", window))}


# -- two_resource_mix (bench/policy_drf.py) ----------------------------------------------------------------

DRF_IMPLS = (policy_impl(STRICT), policy_impl("drf"))


def _drf_params(knobs: Knobs, quick: bool, overrides: Mapping[str, Any]) -> Any:
    from policy_drf import Params

    return Params(workers=knobs.workers, seed=knobs.seed, **_lengths(quick, overrides, (0.5, 3.0), (0.2, 0.8)))


def _drf_run(impl: str, params: Any, index: int) -> Sample:
    from policy_drf import run_once

    policy = impl_policy(impl)
    if policy not in (STRICT, "drf"):
        raise ValueError(f"two_resource_mix: unknown implementation {impl!r} (known: {', '.join(DRF_IMPLS)})")
    started = time.perf_counter()
    found = run_once(params, policy, index)
    wall = time.perf_counter() - started
    metrics: dict[str, Any] = {
        "wall_s": wall,
        "dominant_share_A": found["share_a"],
        "dominant_share_B": found["share_b"],
        "share_ratio_B_over_A": found["ratio"],
        "share_ratio_error": found["relative_error"],
        "completed_per_s": sum(found["completed"].values()) / (params.warmup_s + params.window_s),
        **{f"leased_{group}_{res}": amount for group, per in found["leased"].items() for res, amount in per.items()},
        "lease_events": found["lease_events"],
        "shutdown_clean": int(bool(found["shutdown_clean"])),
        "output_hash": "",
    }
    return Sample(impl, _finite(metrics))


def _drf_report(by_impl: Stats, params: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from policy_drf import TARGET_RELATIVE_ERROR_MAX

    shown = ("dominant_share_A", "dominant_share_B", "share_ratio_B_over_A", "share_ratio_error")
    section = {
        "description": "time-averaged dominant share per group after the warm-up (median over iterations)",
        "weights": {"A": params.a_weight, "B": params.b_weight},
        "target_share_ratio_B_over_A": params.target_ratio,
        "per_implementation": {impl: {m: _p50(by_impl, impl, m) for m in shown} for impl in DRF_IMPLS if impl in by_impl},
    }
    ours, strict = _p50(by_impl, DRF_IMPLS[1], "share_ratio_error"), _p50(by_impl, DRF_IMPLS[0], "share_ratio_error")
    if DRF_IMPLS[1] not in by_impl:
        return section, []

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    ratio = _p50(by_impl, DRF_IMPLS[1], "share_ratio_B_over_A")
    detail = (
        f"drf: dominant share B/A (median) {ratio if ratio is not None else float('nan'):.3f} vs weights' "
        f"{params.target_ratio:g}, error {pct(ours)} (target <= {TARGET_RELATIVE_ERROR_MAX:.0%}); strict's error {pct(strict)}"
    )
    entry = target("drf_dominant_shares_within_10pct_of_weights", ours, "<=", TARGET_RELATIVE_ERROR_MAX, detail)
    return section, [entry]


# -- cross_provider_cooldown (bench/policy_cross_provider.py) ----------------------------------------------

XP_MODES = {policy_impl(STRICT): "strict", policy_impl("provider_aware"): "provider_aware", "b_alone": "b_alone"}


def _xp_params(knobs: Knobs, quick: bool, overrides: Mapping[str, Any]) -> Any:
    from policy_cross_provider import Params

    lengths = _lengths(quick, overrides, (6.0, 5.0), (0.5, 1.0))
    return Params(workers=knobs.workers, latency_ms=knobs.latency_ms, seed=knobs.seed, **lengths)


def _xp_run(impl: str, params: Any, index: int) -> Sample:
    from policy_cross_provider import run_mode

    if impl not in XP_MODES:
        raise ValueError(f"cross_provider_cooldown: unknown implementation {impl!r} (known: {', '.join(XP_MODES)})")
    started = time.perf_counter()
    found = run_mode(params, XP_MODES[impl], max(index, 0))
    wall = time.perf_counter() - started
    keys = ("b_tasks_per_s", "b_tasks_per_s_onset", "a_tasks_per_s", "b_request_waiters_max", "b_request_waiters_mean")
    keys += ("a_request_waiters_max", "a_request_waiters_mean", "workers_leased_to_a_mean")
    metrics: dict[str, Any] = {
        "wall_s": wall,
        **{key: found[key] for key in keys},
        "b_request_waits_started": found["request_waits_started"]["B"],
        "a_request_waits_started": found["request_waits_started"]["A"],
        "task_failures": sum(found["task_failures"].values()),
        "shutdown_clean": int(bool(found["shutdown_clean"])),
        "output_hash": "",
    }
    return Sample(impl, _finite(metrics))


def _xp_report(by_impl: Stats, params: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from policy_cross_provider import TARGET_RATIO_MIN

    def ratios(metric: str) -> dict[str, float | None]:
        alone = _p50(by_impl, "b_alone", metric)
        result: dict[str, float | None] = {}
        for impl in XP_MODES:
            ours = _p50(by_impl, impl, metric)
            if impl != "b_alone" and ours is not None:
                result[impl] = ours / alone if alone else None
        return result

    steady, onset = ratios("b_tasks_per_s"), ratios("b_tasks_per_s_onset")
    section = {
        "description": "B's completed tasks/s (median over iterations) relative to B alone; steady window and onset",
        "window_s": params.window_s,
        "onset_s": params.warmup_s,
        "b_alone_tasks_per_s": _p50(by_impl, "b_alone", "b_tasks_per_s"),
        "b_throughput_ratio_vs_alone": steady,
        "b_throughput_ratio_vs_alone_onset": onset,
    }
    impl = policy_impl("provider_aware")
    if impl not in by_impl or "b_alone" not in by_impl:
        return section, []
    value, strict = steady.get(impl), steady.get(policy_impl(STRICT))

    def fmt(number: float | None) -> str:
        return "-" if number is None else f"{number:.3f}"

    detail = (
        f"B tasks/s in the steady window (median): provider_aware / B alone = {fmt(value)} (target >= {TARGET_RATIO_MIN:g}); "
        f"strict / B alone = {fmt(strict)}; onset: provider_aware {fmt(onset.get(impl))}, "
        f"strict {fmt(onset.get(policy_impl(STRICT)))}"
    )
    return section, [target("provider_aware_b_throughput_at_least_90pct_of_b_alone", value, ">=", TARGET_RATIO_MIN, detail)]


WORKLOADS: dict[str, Workload] = {
    "two_resource_mix": Workload(
        DRF_IMPLS,
        ("dominant_share_A", "dominant_share_B", "share_ratio_B_over_A", "share_ratio_error", "completed_per_s"),
        _drf_params,
        _drf_run,
        _drf_report,
    ),
    "cross_provider_cooldown": Workload(
        tuple(XP_MODES),
        ("b_tasks_per_s", "b_tasks_per_s_onset", "a_tasks_per_s", "workers_leased_to_a_mean", "b_request_waiters_mean"),
        _xp_params,
        _xp_run,
        _xp_report,
    ),
}


def params_dict(params: Any) -> dict[str, Any]:
    return dataclasses.asdict(params)
