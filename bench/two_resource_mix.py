"""Harness scenario ``two_resource_mix``: per-group dominant shares of a two-resource mixed workload, DRF against strict.

Target: under ``DominantResourceFairPolicy`` the groups' average dominant shares are within
10 % of their weights' proportions. One run of one policy:

* A bare ``threadsched.Scheduler(max_workers=W, resource_limits={"cpu": C, "mem": M}, policy=...)``.
  Group ``A`` (weight 1) runs tasks needing ``{cpu: 1, mem: 3}`` (memory-heavy), group ``B`` (weight 2)
  tasks needing ``{cpu: 3, mem: 1}`` (CPU-heavy). Defaults C = M = 42: the continuous DRF point (B's
  dominant share twice A's, CPU saturated: A x tasks, B 2x tasks, 7x = 42) is integral, A 6 and B 12 tasks,
  so a whole-task allocation can reach it exactly. W = 32 worker slots, more than either fill needs.
* Each task sleeps a duration drawn uniformly from [2, 6] ms (seeded per run). Both groups stay
  backlogged all run: each starts with ``backlog`` tasks and every finished task submits a replacement.
* Measurement, from the scheduler's own events: ``task_lease_acquired`` / ``task_lease_released`` carry the
  group, the leased resources and a monotonic time; replaying them in sequence order gives each group's
  leased amounts as a step function, integrated over the window after a warm-up: per group, the time
  average of its instantaneous dominant share (``max_r leased[r] / limit[r]`` over cpu, mem and submission,
  the policy's own definition) and the time-averaged leased amount of every resource.
* Verdict: ratio = share(B) / share(A), target = weight(B) / weight(A) = 2; error = |ratio / target - 1|;
  within 10 % is ``ok``. ``strict`` (``StrictFairPolicy``, no admitted limits: plain weighted queue order)
  runs the same workload in the same process, interleaved run by run (``bench/harness.py``), as the baseline.

Harness implementations: ``threadsched`` (strict) and ``threadsched[drf]``. Run lengths: 0.5 s warm-up + 3 s
window (quick 0.2 s + 0.8 s; ``--warmup-s`` / ``--window-s``); knobs ``workers`` and ``seed``. Target
(reported, not a gate): the median error of ``drf`` <= 10 %.

    python bench/run.py two_resource_mix            # 5 iterations
    python bench/run.py two_resource_mix --quick
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from harness_impls import STRICT, Sample, impl_policy, policy_impl
from harness_policies import Stats, Workload, finite, p50, run_lengths, target
from scenarios import Knobs

from threadsched import Scheduler, SchedulerEvent, StrictFairPolicy, TaskGroup
from threadsched.core.contracts import SUBMISSION
from threadsched.core.policy import TaskAdmissionPolicy
from threadsched.policies.drf import DominantResourceFairPolicy, dominant_share

TARGET_RELATIVE_ERROR_MAX = 0.10
POLICIES: dict[str, Callable[[], TaskAdmissionPolicy]] = {"drf": DominantResourceFairPolicy, "strict": StrictFairPolicy}
LEASE_KINDS = frozenset({"task_lease_acquired", "task_lease_released"})
THREAD_NAME = "bench-policy-drf"


@dataclass(frozen=True)
class Params:
    cpu: int = 42
    mem: int = 42
    workers: int = 32
    a_needs: tuple[int, int] = (1, 3)  # (cpu, mem)
    b_needs: tuple[int, int] = (3, 1)
    a_weight: float = 1.0
    b_weight: float = 2.0
    min_ms: float = 2.0
    max_ms: float = 6.0
    backlog: int = 64
    warmup_s: float = 0.5
    window_s: float = 3.0
    seed: int = 1

    @property
    def limits(self) -> dict[str, int]:
        return {"cpu": self.cpu, "mem": self.mem, SUBMISSION: self.workers}

    @property
    def target_ratio(self) -> float:
        return self.b_weight / self.a_weight


class LeaseRecorder:
    """Keeps only the lease events: (sequence, time, kind, group, resources)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rows: list[tuple[int, float, str, Any, dict[str, int]]] = []

    def emit(self, event: SchedulerEvent) -> None:
        if event.kind in LEASE_KINDS:
            row = (event.sequence, event.captured_at, event.kind, event.group, dict(event.resources or {}))
            with self._lock:
                self.rows.append(row)

    def sorted_rows(self) -> list[tuple[int, float, str, Any, dict[str, int]]]:
        with self._lock:
            return sorted(self.rows)


def integrate(
    rows: list[tuple[int, float, str, Any, dict[str, int]]],
    limits: dict[str, int],
    groups: tuple[str, ...],
    start: float,
    end: float,
) -> dict[str, dict[str, Any]]:
    """Time averages over [start, end] of each group's dominant share and leased amounts."""
    leased: dict[str, dict[str, int]] = {g: dict.fromkeys(limits, 0) for g in groups}
    share_area = dict.fromkeys(groups, 0.0)
    amount_area: dict[str, dict[str, float]] = {g: dict.fromkeys(limits, 0.0) for g in groups}
    last = start

    def advance(to: float) -> None:
        nonlocal last
        to = min(max(to, start), end)
        dt = to - last
        if dt > 0:
            for g in groups:
                share_area[g] += dt * dominant_share(leased[g], limits)
                for resource, amount in leased[g].items():
                    amount_area[g][resource] += dt * amount
            last = to

    for _, at, kind, group, resources in rows:
        if group not in leased:
            continue
        advance(at)
        sign = 1 if kind == "task_lease_acquired" else -1
        for resource, amount in resources.items():
            leased[group][resource] += sign * amount
    advance(end)
    window = end - start
    return {
        g: {
            "dominant_share": share_area[g] / window,
            "leased": {r: area / window for r, area in amount_area[g].items()},
        }
        for g in groups
    }


def run_once(params: Params, policy_name: str, run: int = 0) -> dict[str, Any]:
    recorder = LeaseRecorder()
    rng = random.Random(params.seed * 1000 + run)
    durations = [rng.uniform(params.min_ms, params.max_ms) / 1000 for _ in range(4096)]
    stop = threading.Event()
    completed = {"A": 0, "B": 0}
    count_lock = threading.Lock()
    scheduler = Scheduler(
        max_workers=params.workers,
        resource_limits={"cpu": params.cpu, "mem": params.mem},
        policy=POLICIES[policy_name](),
        events=recorder,
        name=THREAD_NAME,
    )
    handles = {
        "A": scheduler.group("A", weight=params.a_weight, resources=dict(zip(("cpu", "mem"), params.a_needs, strict=True))),
        "B": scheduler.group("B", weight=params.b_weight, resources=dict(zip(("cpu", "mem"), params.b_needs, strict=True))),
    }
    counter = iter(range(10**9))

    def submit(key: str, handle: TaskGroup) -> None:
        if stop.is_set():
            return
        duration = durations[next(counter) % len(durations)]
        try:
            future = handle.submit(time.sleep, duration)
        except RuntimeError:  # shut down meanwhile
            return
        future.add_done_callback(lambda f: resubmit(key, handle, f))

    def resubmit(key: str, handle: TaskGroup, future: Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        with count_lock:
            completed[key] += 1
        submit(key, handle)

    t0 = time.monotonic()
    for _ in range(params.backlog):
        for key, handle in handles.items():
            submit(key, handle)
    stop.wait(params.warmup_s + params.window_s)
    t_end = time.monotonic()
    stop.set()
    report = scheduler.shutdown(wait=True, cancel_futures=True, timeout=30)
    result = integrate(recorder.sorted_rows(), params.limits, ("A", "B"), t0 + params.warmup_s, t_end)
    share_a, share_b = result["A"]["dominant_share"], result["B"]["dominant_share"]
    ratio = share_b / share_a if share_a > 0 else float("inf")
    return {
        "policy": policy_name,
        "run": run,
        "share_a": share_a,
        "share_b": share_b,
        "ratio": ratio,
        "relative_error": abs(ratio / params.target_ratio - 1),
        "leased": {g: result[g]["leased"] for g in result},
        "completed": dict(completed),
        "lease_events": len(recorder.rows),
        "shutdown_clean": report.clean,
    }


# -- the harness workload ------------------------------------------------------------------------------

IMPLS = (policy_impl(STRICT), policy_impl("drf"))


def make_params(knobs: Knobs, quick: bool, overrides: Mapping[str, Any]) -> Params:
    return Params(workers=knobs.workers, seed=knobs.seed, **run_lengths(quick, overrides, (0.5, 3.0), (0.2, 0.8)))


def run_sample(impl: str, params: Params, index: int) -> Sample:
    policy = impl_policy(impl)
    if policy not in (STRICT, "drf"):
        raise ValueError(f"two_resource_mix: unknown implementation {impl!r} (known: {', '.join(IMPLS)})")
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
    return Sample(impl, finite(metrics))


def report(by_impl: Stats, params: Params) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    shown = ("dominant_share_A", "dominant_share_B", "share_ratio_B_over_A", "share_ratio_error")
    section = {
        "description": "time-averaged dominant share per group after the warm-up (median over iterations)",
        "weights": {"A": params.a_weight, "B": params.b_weight},
        "target_share_ratio_B_over_A": params.target_ratio,
        "per_implementation": {impl: {m: p50(by_impl, impl, m) for m in shown} for impl in IMPLS if impl in by_impl},
    }
    ours, strict = p50(by_impl, IMPLS[1], "share_ratio_error"), p50(by_impl, IMPLS[0], "share_ratio_error")
    if IMPLS[1] not in by_impl:
        return section, []

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    ratio = p50(by_impl, IMPLS[1], "share_ratio_B_over_A")
    detail = (
        f"drf: dominant share B/A (median) {ratio if ratio is not None else float('nan'):.3f} vs weights' "
        f"{params.target_ratio:g}, error {pct(ours)} (target <= {TARGET_RELATIVE_ERROR_MAX:.0%}); strict's error {pct(strict)}"
    )
    entry = target("drf_dominant_shares_within_10pct_of_weights", ours, "<=", TARGET_RELATIVE_ERROR_MAX, detail)
    return section, [entry]


WORKLOAD = Workload(
    IMPLS,
    ("dominant_share_A", "dominant_share_B", "share_ratio_B_over_A", "share_ratio_error", "completed_per_s"),
    make_params,
    run_sample,
    report,
)
