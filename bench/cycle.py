"""Cost of one select → try_acquire → commit → release cycle, without threads.

Drives ``FairTaskQueue`` and ``TaskAdmissionController`` directly: N tasks are enqueued round-robin
over G groups (default ``StrictFairPolicy``, ``admitted_limit=None``, submission capacity N so every
task is eligible), then N cycles are timed, each one

    selection = queue.select_next(controller.is_eligible)
    lease = controller.try_acquire(selection.item, selection.view)
    queue.commit(selection)
    controller.release(lease)

The per-cycle cost is the timed loop's wall time / N (enqueue is not timed); for N < 10k one sample
averages several fresh queues so that it covers at least 10k cycles. The group counts are
interleaved run by run so that they share the machine's noise. Target (issue 2, item 7): p50 cycle
cost at G=256 is at most 1.5x the p50 at G=1, for every N.

    python bench/cycle.py            # N in {1k, 10k, 100k}
    python bench/cycle.py --quick    # N in {1k, 10k}, for CI smoke runs
"""

from __future__ import annotations

import gc
import time
from typing import Any

from common import base_parser, check_runs, fmt_us, print_table, summarize, verdict, write_json

from threadsched import (
    FairTaskQueue,
    SchedulableTask,
    TaskAdmissionConfig,
    TaskAdmissionController,
    TaskAdmissionLease,
    TaskGroupSpec,
)

NAME = "cycle"
FULL_SIZES = (1_000, 10_000, 100_000)
QUICK_SIZES = (1_000, 10_000)
GROUP_COUNTS = (1, 8, 64, 256)
TARGET_RATIO = 1.5
MIN_CYCLES_PER_SAMPLE = 10_000  # small N is repeated within a sample so one sample is not a few ms of noise


def make_tasks(n: int, groups: int) -> list[SchedulableTask]:
    specs = [TaskGroupSpec(f"g{index}") for index in range(groups)]
    return [SchedulableTask(f"t{index}", None, specs[index % groups]) for index in range(n)]


def run_cycles(tasks: list[SchedulableTask]) -> float:
    """Enqueue ``tasks`` (untimed), then time len(tasks) full cycles; returns seconds per cycle."""
    n = len(tasks)
    queue = FairTaskQueue()
    controller = TaskAdmissionController(TaskAdmissionConfig(submission_capacity=n))
    queue.enqueue(tasks)
    select_next, commit = queue.select_next, queue.commit
    is_eligible, try_acquire, release = controller.is_eligible, controller.try_acquire, controller.release
    gc.collect()
    start = time.perf_counter()
    for _ in range(n):
        selection = select_next(is_eligible)
        if selection is None:
            raise RuntimeError("select_next returned None while tasks were queued and capacity was free")
        lease = try_acquire(selection.item, selection.view)
        if not isinstance(lease, TaskAdmissionLease):
            raise RuntimeError(f"try_acquire denied an eligible task: {lease!r}")
        if commit(selection) is None:
            raise RuntimeError("commit reported a stale selection in a single-threaded run")
        release(lease)
    elapsed = time.perf_counter() - start
    if len(queue) or controller.active_lease_count:
        raise RuntimeError(f"cycle left state behind: queued={len(queue)} leases={controller.active_lease_count}")
    return elapsed / n


def breakdown_cycles(tasks: list[SchedulableTask]) -> dict[str, float]:
    """One pass like ``run_cycles`` with each call timed on its own; seconds per cycle by phase.

    ``perf_counter`` adds ~0.1 us per phase, so the phases sum to a little more than a plain cycle.
    """
    n = len(tasks)
    queue = FairTaskQueue()
    controller = TaskAdmissionController(TaskAdmissionConfig(submission_capacity=n))
    queue.enqueue(tasks)
    is_eligible = controller.is_eligible
    clock = time.perf_counter
    totals = dict.fromkeys(("select_next", "try_acquire", "commit", "release"), 0.0)
    gc.collect()
    for _ in range(n):
        t0 = clock()
        selection = queue.select_next(is_eligible)
        t1 = clock()
        assert selection is not None
        lease = controller.try_acquire(selection.item, selection.view)
        t2 = clock()
        queue.commit(selection)
        t3 = clock()
        assert isinstance(lease, TaskAdmissionLease)
        controller.release(lease)
        t4 = clock()
        totals["select_next"] += t1 - t0
        totals["try_acquire"] += t2 - t1
        totals["commit"] += t3 - t2
        totals["release"] += t4 - t3
    return {phase: total / n for phase, total in totals.items()}


def bench_size(n: int, group_counts: tuple[int, ...], runs: int) -> dict[int, dict[str, Any]]:
    tasks_by_groups = {groups: make_tasks(n, groups) for groups in group_counts}
    samples: dict[int, list[float]] = {groups: [] for groups in group_counts}
    repetitions = max(1, MIN_CYCLES_PER_SAMPLE // n)
    run_cycles(tasks_by_groups[group_counts[0]][: min(n, 1_000)])  # warm-up, untimed
    for _ in range(runs):
        for groups in group_counts:
            tasks = tasks_by_groups[groups]
            samples[groups].append(sum(run_cycles(tasks) for _ in range(repetitions)) / repetitions)
    return {groups: summarize(values) for groups, values in samples.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(NAME, __doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N in {1k, 10k} only (CI smoke)")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="override the task counts N")
    args = parser.parse_args(argv)
    runs = check_runs(args.runs)
    sizes = tuple(args.sizes) if args.sizes else (QUICK_SIZES if args.quick else FULL_SIZES)
    results: list[dict[str, Any]] = []
    rows: list[list[Any]] = []
    ratios: dict[str, float] = {}
    for n in sizes:
        by_groups = bench_size(n, GROUP_COUNTS, runs)
        base = by_groups[GROUP_COUNTS[0]]["median"]
        for groups, summary in by_groups.items():
            ratio = summary["median"] / base
            results.append({"n": n, "groups": groups, "seconds_per_cycle": summary, "ratio_to_g1": ratio})
            rows.append([n, groups, fmt_us(summary["median"]), fmt_us(summary["min"]), fmt_us(summary["max"]), f"{ratio:.2f}"])
        ratio_256 = by_groups[GROUP_COUNTS[-1]]["median"] / base
        ratios[str(n)] = ratio_256
    print_table(f"cycle cost per task (p50 of {runs} runs)", ["N", "G", "p50", "min", "max", "x G=1"], rows)
    breakdown_n = min(sizes[-1], 10_000)
    breakdown: dict[str, dict[str, float]] = {}
    for groups in (GROUP_COUNTS[0], GROUP_COUNTS[-1]):
        tasks = make_tasks(breakdown_n, groups)
        phases = [breakdown_cycles(tasks) for _ in range(3)]
        breakdown[str(groups)] = {phase: sorted(run[phase] for run in phases)[1] for phase in phases[0]}
    print_table(
        f"phase breakdown per cycle, N={breakdown_n} (median of 3 runs)",
        ["G", *breakdown[str(GROUP_COUNTS[0])]],
        [[groups, *(fmt_us(value) for value in by_phase.values())] for groups, by_phase in breakdown.items()],
    )
    worst = max(ratios.values())
    for n, ratio in ratios.items():
        print(f"  N={n}: p50(G=256)/p50(G=1) = {ratio:.2f} (target <= {TARGET_RATIO}) {verdict(ratio, TARGET_RATIO)}")
    payload = {
        "description": "select -> try_acquire -> commit -> release, per task; no threads",
        "runs": runs,
        "sizes": list(sizes),
        "group_counts": list(GROUP_COUNTS),
        "results": results,
        "ratio_g256_over_g1_by_n": ratios,
        "phase_breakdown_seconds_per_cycle": {"n": breakdown_n, "by_groups": breakdown},
        "target": {"ratio_g256_over_g1_max": TARGET_RATIO},
        "worst_ratio": worst,
        "meets_target": worst <= TARGET_RATIO,
    }
    path = write_json(NAME, payload, args.out)
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
