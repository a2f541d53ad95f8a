"""Policy DRF: per-group dominant shares of a two-resource mixed workload, DRF against strict.

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
  runs the same workload in the same process, interleaved run by run, as the baseline.

Medians over ``--runs`` (>= 5) runs per policy; the policies alternate order from run to run.

    python bench/policy_drf.py              # 0.5 s warm-up + 3 s window per run and policy, 5 runs
    python bench/policy_drf.py --quick      # CI smoke run: 0.2 s + 0.8 s
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from typing import Any

from common import base_parser, check_runs, print_table, write_json

from threadsched import SUBMISSION, Scheduler, SchedulerEvent, StrictFairPolicy, TaskAdmissionPolicy, TaskGroup
from threadsched.policies.drf import DominantResourceFairPolicy, dominant_share

NAME = "policy_drf"
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


def summarize_runs(params: Params, samples: list[dict[str, Any]], quick: bool = False) -> dict[str, Any]:
    by_policy: dict[str, Any] = {}
    for name in POLICIES:
        mine = [s for s in samples if s["policy"] == name]
        if not mine:
            continue
        median_error = statistics.median(s["relative_error"] for s in mine)
        by_policy[name] = {
            "median_share_a": statistics.median(s["share_a"] for s in mine),
            "median_share_b": statistics.median(s["share_b"] for s in mine),
            "median_ratio": statistics.median(s["ratio"] for s in mine),
            "median_relative_error": median_error,
            "max_relative_error": max(s["relative_error"] for s in mine),
            "within_target": median_error <= TARGET_RELATIVE_ERROR_MAX,
            "median_completed_per_s": statistics.median(sum(s["completed"].values()) for s in mine)
            / (params.warmup_s + params.window_s),
        }
    return {
        "description": __doc__.splitlines()[0] if __doc__ else NAME,
        "quick": quick,
        "runs": len({s["run"] for s in samples}),
        "params": asdict(params),
        "target": {"ratio": params.target_ratio, "relative_error_max": TARGET_RELATIVE_ERROR_MAX, "policy": "drf"},
        "policies": by_policy,
        "meets_target": bool(by_policy.get("drf", {}).get("within_target", False)),
        "samples": samples,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(NAME, (__doc__ or NAME).splitlines()[0])
    defaults = Params()
    parser.add_argument("--quick", action="store_true", help="CI smoke run: 0.2 s warm-up + 0.8 s window")
    parser.add_argument("--warmup", type=float, default=None, help="warm-up seconds (default 0.5, quick 0.2)")
    parser.add_argument("--window", type=float, default=None, help="measured seconds (default 3, quick 0.8)")
    parser.add_argument("--b-weight", type=float, default=defaults.b_weight, help="group B's weight (A's is 1)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    args = parser.parse_args(argv)
    runs = check_runs(args.runs)
    params = Params(
        b_weight=args.b_weight,
        warmup_s=args.warmup if args.warmup is not None else (0.2 if args.quick else defaults.warmup_s),
        window_s=args.window if args.window is not None else (0.8 if args.quick else defaults.window_s),
        seed=args.seed,
    )
    print(
        f"policy_drf: cpu={params.cpu} mem={params.mem} workers={params.workers}; A {params.a_needs} w={params.a_weight:g}, "
        f"B {params.b_needs} w={params.b_weight:g}; {params.warmup_s:g} s + {params.window_s:g} s, {runs} runs",
        flush=True,
    )
    samples: list[dict[str, Any]] = []
    names = list(POLICIES)
    for run in range(runs):
        for name in names if run % 2 == 0 else names[::-1]:  # interleaved, alternating order
            samples.append(run_once(params, name, run))
    payload = summarize_runs(params, samples, quick=args.quick)
    rows = [
        [s["policy"], s["run"], s["share_a"], s["share_b"], s["ratio"], s["relative_error"], sum(s["completed"].values())]
        for s in samples
    ]
    print_table("per run", ["policy", "run", "share A", "share B", "B/A", "error", "completed"], rows)
    summary_rows = [
        [name, p["median_share_a"], p["median_share_b"], p["median_ratio"], p["median_relative_error"], p["within_target"]]
        for name, p in payload["policies"].items()
    ]
    print_table(
        f"medians (target B/A = {params.target_ratio:g} within {TARGET_RELATIVE_ERROR_MAX:.0%})",
        ["policy", "share A", "share B", "B/A (median)", "error", "within"],
        summary_rows,
    )
    path = write_json(NAME, payload, args.out)
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
