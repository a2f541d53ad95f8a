"""Cost of one select → try_acquire → commit → release cycle, without threads.

Drives ``FairTaskQueue`` and ``TaskAdmissionController`` directly, the way the dispatcher does, in two
modes (default ``StrictFairPolicy``, ``admitted_limit=None``):

* ``free``: N tasks round-robin over G groups, submission capacity N, so every head is eligible.
* ``binding``: G groups whose tasks need the shared resource ``llm:shared`` (limit 1, held by one lease
  for the whole timed loop, so it is exhausted) sit ahead in virtual time of one free group whose N tasks
  need only submission. Every select must pass over the G blocked groups to reach the free one.

Each of the N timed cycles is

    selection = queue.select_next(controller.approve, exhausted=controller.exhausted_resources())
    lease = controller.try_acquire(selection.item, selection.view, selection.decision)
    queue.commit(selection)
    controller.release(lease)

The per-cycle cost is the timed
loop's wall time / N (enqueue is not timed); one sample repeats small N on fresh queues until it covers
enough cycles. Modes and group counts are interleaved run by run so that they share the machine's noise.

Targets: ``free``: p50 cycle <= 8 us and p50(G=256) / p50(G=1) <= 1.5 for every N; ``binding``:
p50(G=256) / p50(G=1) <= 3.0 for every N (skipping blocked groups must not cost per group).

    python bench/run.py cycle                  # N in {1k, 10k, 100k}
    python bench/run.py cycle --quick          # N = 2k, shorter samples: a CI smoke run of a few seconds
    python bench/run.py cycle --walk-baseline  # also binding mode without the exhausted hint (walks every head)
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

from common import fmt_us, headline, print_table, summarize, verdict

from threadsched.core.admission import TaskAdmissionController
from threadsched.core.contracts import SchedulableTask, SchedulerResourceRequest, TaskGroupSpec
from threadsched.core.queue import FairTaskQueue
from threadsched.core.values import QueueView, TaskAdmissionConfig, TaskAdmissionLease

FULL_SIZES = (1_000, 10_000, 100_000)
QUICK_SIZES = (2_000,)
GROUP_COUNTS = (1, 8, 64, 256)
MODES = ("free", "binding")
TARGET_RATIO = 1.5  # free mode: flat in groups
TARGET_BINDING_RATIO = 3.0
TARGET_FREE_CYCLE_SECONDS = 8e-6
# Small N is repeated within a sample so that one sample is not a few ms of noise.
MIN_CYCLES_PER_SAMPLE = 10_000
QUICK_MIN_CYCLES_PER_SAMPLE = 4_000
WALK_BASELINE_SIZE = 1_000  # walking every blocked head is slow: one small N is enough to show the slope

SHARED = "llm:shared"
SHARED_REQUEST = SchedulerResourceRequest({SHARED: 1})
# Holds the one llm:shared unit for the whole timed loop; never enqueued.
HOLDER = SchedulableTask("holder", None, TaskGroupSpec("holder"), SHARED_REQUEST)

Workload = tuple[list[SchedulableTask], list[SchedulableTask]]
"""(blocked tasks, enqueued first and never admitted; timed tasks, one cycle each)."""


def make_tasks(n: int, groups: int) -> list[SchedulableTask]:
    specs = [TaskGroupSpec(f"g{index}") for index in range(groups)]
    return [SchedulableTask(f"t{index}", None, specs[index % groups]) for index in range(n)]


def make_workload(mode: str, n: int, groups: int) -> Workload:
    if mode == "free":
        return [], make_tasks(n, groups)
    # Enqueued first, the blocked groups get tag V = 0 and the smallest activation numbers: the free group
    # never overtakes them, since its tag grows with every commit and theirs never moves.
    blocked = [SchedulableTask(f"b{index}", None, TaskGroupSpec(f"blocked{index}"), SHARED_REQUEST) for index in range(groups)]
    free = TaskGroupSpec("free")
    return blocked, [SchedulableTask(f"t{index}", None, free) for index in range(n)]


def prepared(workload: Workload) -> tuple[FairTaskQueue, TaskAdmissionController, TaskAdmissionLease | None]:
    blocked, tasks = workload
    queue = FairTaskQueue()
    limits = {SHARED: 1} if blocked else {}
    controller = TaskAdmissionController(TaskAdmissionConfig(submission_capacity=len(tasks) + 1, resource_limits=limits))
    holder = None
    if blocked:
        lease = controller.try_acquire(HOLDER, queue.view())
        if not isinstance(lease, TaskAdmissionLease):
            raise RuntimeError(f"could not lease the shared resource for the holder: {lease!r}")
        holder = lease
        queue.enqueue(blocked)
    queue.enqueue(tasks)
    return queue, controller, holder


def finished(queue: FairTaskQueue, controller: TaskAdmissionController, holder: TaskAdmissionLease | None, blocked: int) -> None:
    leases = 1 if holder is not None else 0
    if len(queue) != blocked or controller.active_lease_count != leases:
        raise RuntimeError(f"cycle left state behind: queued={len(queue)} leases={controller.active_lease_count}")
    if holder is not None:
        controller.release(holder)


def run_cycles(tasks: list[SchedulableTask], blocked: Sequence[SchedulableTask] = (), hint: bool = True) -> float:
    """Enqueue ``blocked`` then ``tasks`` (untimed), then time len(tasks) full cycles; seconds per cycle.

    Without ``hint`` no exhausted set is passed, so every select offers each blocked head to the predicate
    first (the cost the hint removes)."""
    n = len(tasks)
    queue, controller, holder = prepared((list(blocked), tasks))
    predicate, acquire = controller.approve, controller.try_acquire
    probe: Callable[[], Collection[str]] = controller.exhausted_resources if hint else tuple
    select_next, commit, release = queue.select_next, queue.commit, controller.release
    gc.collect()
    start = time.perf_counter()
    for _ in range(n):
        selection = select_next(predicate, exhausted=probe())
        if selection is None:
            raise RuntimeError("select_next returned None while free tasks were queued and capacity was free")
        lease = acquire(selection.item, selection.view, selection.decision)
        if not isinstance(lease, TaskAdmissionLease):
            raise RuntimeError(f"try_acquire denied an eligible task: {lease!r}")
        if commit(selection) is None:
            raise RuntimeError("commit reported a stale selection in a single-threaded run")
        release(lease)
    elapsed = time.perf_counter() - start
    finished(queue, controller, holder, len(blocked))
    return elapsed / n


def check_skipping(workload: Workload) -> None:
    """Untimed: in binding mode the predicate is offered the free head only, never a blocked one."""
    tasks = workload[1]
    queue, controller, holder = prepared(workload)
    predicate, probe = controller.approve, controller.exhausted_resources
    offered: list[str] = []

    def counting(item: SchedulableTask, view: QueueView) -> object:
        offered.append(item.task_id)
        return predicate(item, view)

    selection = queue.select_next(counting, exhausted=probe())
    if selection is None or offered != [tasks[0].task_id]:
        raise RuntimeError(f"expected only the free head to be offered, got {offered} ({selection!r})")
    queue.drain()
    if holder is not None:
        controller.release(holder)


def breakdown_cycles(workload: Workload) -> dict[str, float]:
    """One pass like ``run_cycles`` with each call timed on its own; seconds per cycle by phase.

    ``perf_counter`` adds ~0.1 us per phase, so the phases sum to a little more than a plain cycle.
    """
    blocked, tasks = workload
    n = len(tasks)
    queue, controller, holder = prepared(workload)
    predicate, acquire, probe = controller.approve, controller.try_acquire, controller.exhausted_resources
    clock = time.perf_counter
    totals = dict.fromkeys(("exhausted", "select_next", "try_acquire", "commit", "release"), 0.0)
    gc.collect()
    for _ in range(n):
        t0 = clock()
        exhausted = probe()
        t1 = clock()
        selection = queue.select_next(predicate, exhausted=exhausted)
        t2 = clock()
        assert selection is not None
        lease = acquire(selection.item, selection.view, selection.decision)
        t3 = clock()
        queue.commit(selection)
        t4 = clock()
        assert isinstance(lease, TaskAdmissionLease)
        controller.release(lease)
        t5 = clock()
        totals["exhausted"] += t1 - t0
        totals["select_next"] += t2 - t1
        totals["try_acquire"] += t3 - t2
        totals["commit"] += t4 - t3
        totals["release"] += t5 - t4
    finished(queue, controller, holder, len(blocked))
    return {phase: total / n for phase, total in totals.items()}


def bench_size(
    n: int, runs: int, min_cycles: int, modes: Sequence[str] = MODES, hint: bool = True
) -> dict[str, dict[int, dict[str, Any]]]:
    """p50/min/max seconds per cycle by mode and group count; (mode, G) pairs interleaved run by run."""
    pairs = [(mode, groups) for mode in modes for groups in GROUP_COUNTS]
    workloads = {pair: make_workload(pair[0], n, pair[1]) for pair in pairs}
    samples: dict[tuple[str, int], list[float]] = {pair: [] for pair in pairs}
    repetitions = max(1, min_cycles // n)
    for pair in pairs:  # warm-up, untimed; binding mode is also checked to skip what it should
        blocked, tasks = workloads[pair]
        run_cycles(tasks[: min(n, 1_000)], blocked, hint)
        if pair[0] == "binding" and hint:
            check_skipping(workloads[pair])
    for run in range(runs):
        for pair in pairs if run % 2 == 0 else pairs[::-1]:
            blocked, tasks = workloads[pair]
            samples[pair].append(sum(run_cycles(tasks, blocked, hint) for _ in range(repetitions)) / repetitions)
    by_mode: dict[str, dict[int, dict[str, Any]]] = {mode: {} for mode in modes}
    for (mode, groups), values in samples.items():
        by_mode[mode][groups] = summarize(values)
    return by_mode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="override the task counts N (quick: 2k)")
    parser.add_argument(
        "--walk-baseline", action="store_true", help=f"also binding mode without the exhausted hint (N={WALK_BASELINE_SIZE})"
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    runs = args.runs
    sizes = tuple(args.sizes) if args.sizes else (QUICK_SIZES if args.quick else FULL_SIZES)
    min_cycles = QUICK_MIN_CYCLES_PER_SAMPLE if args.quick else MIN_CYCLES_PER_SAMPLE
    results: list[dict[str, Any]] = []
    rows: list[list[Any]] = []
    ratios: dict[str, dict[str, float]] = {mode: {} for mode in MODES}
    p50_at: dict[str, dict[str, dict[str, float]]] = {mode: {} for mode in MODES}
    for n in sizes:
        by_mode = bench_size(n, runs, min_cycles)
        for mode, by_groups in by_mode.items():
            base = by_groups[GROUP_COUNTS[0]]["median"]
            for groups, summary in by_groups.items():
                ratio = summary["median"] / base
                results.append({"mode": mode, "n": n, "groups": groups, "seconds_per_cycle": summary, "ratio_to_g1": ratio})
                row = [mode, n, groups, fmt_us(summary["median"]), fmt_us(summary["min"]), fmt_us(summary["max"]), f"{ratio:.2f}"]
                rows.append(row)
            ratios[mode][str(n)] = by_groups[GROUP_COUNTS[-1]]["median"] / base
            p50_at[mode][str(n)] = {str(groups): summary["median"] for groups, summary in by_groups.items()}
    print_table(f"cycle cost per task (p50 of {runs} interleaved runs)", ["mode", "N", "G", "p50", "min", "max", "x G=1"], rows)

    walk: dict[str, Any] | None = None
    if args.walk_baseline:
        by_groups = bench_size(WALK_BASELINE_SIZE, runs, 0, modes=("binding",), hint=False)["binding"]
        base = by_groups[GROUP_COUNTS[0]]["median"]
        walk = {
            "n": WALK_BASELINE_SIZE,
            "by_groups": {str(groups): summary for groups, summary in by_groups.items()},
            "ratio_g256_over_g1": by_groups[GROUP_COUNTS[-1]]["median"] / base,
        }
        print_table(
            f"binding mode without the exhausted hint, N={WALK_BASELINE_SIZE} (p50 of {runs} runs)",
            ["G", "p50", "x G=1"],
            [[groups, fmt_us(summary["median"]), f"{summary['median'] / base:.2f}"] for groups, summary in by_groups.items()],
        )

    breakdown_n = min(sizes[-1], 10_000)
    breakdown: dict[str, dict[str, dict[str, float]]] = {}
    for mode in MODES:
        breakdown[mode] = {}
        for groups in (GROUP_COUNTS[0], GROUP_COUNTS[-1]):
            workload = make_workload(mode, breakdown_n, groups)
            phases = [breakdown_cycles(workload) for _ in range(3)]
            breakdown[mode][str(groups)] = {phase: sorted(run[phase] for run in phases)[1] for phase in phases[0]}
    phase_names = list(breakdown[MODES[0]][str(GROUP_COUNTS[0])])
    print_table(
        f"phase breakdown per cycle, N={breakdown_n} (median of 3 runs)",
        ["mode", "G", *phase_names],
        [
            [mode, groups, *(fmt_us(value) for value in by_phase.values())]
            for mode, by_groups in breakdown.items()
            for groups, by_phase in by_groups.items()
        ],
    )

    worst_free = max(ratios["free"].values())
    worst_binding = max(ratios["binding"].values())
    worst_free_cycle = max(p50 for by_groups in p50_at["free"].values() for p50 in by_groups.values())
    for n in ratios["free"]:
        free, binding = ratios["free"][n], ratios["binding"][n]
        print(f"  N={n}: free    p50(G=256)/p50(G=1) = {free:.2f} (target <= {TARGET_RATIO}) {verdict(free, TARGET_RATIO)}")
        print(
            f"  N={n}: binding p50(G=256)/p50(G=1) = {binding:.2f} (target <= {TARGET_BINDING_RATIO}) "
            f"{verdict(binding, TARGET_BINDING_RATIO)}"
        )
    print(
        f"  free: worst p50 cycle = {fmt_us(worst_free_cycle)} (target <= {fmt_us(TARGET_FREE_CYCLE_SECONDS)}) "
        f"{verdict(worst_free_cycle, TARGET_FREE_CYCLE_SECONDS)}"
    )
    meets = {
        "free_ratio": worst_free <= TARGET_RATIO,
        "free_cycle": worst_free_cycle <= TARGET_FREE_CYCLE_SECONDS,
        "binding_ratio": worst_binding <= TARGET_BINDING_RATIO,
    }
    payload = {
        "description": "select -> try_acquire -> commit -> release, per task; no threads; free and binding modes",
        "runs": runs,
        "sizes": list(sizes),
        "group_counts": list(GROUP_COUNTS),
        "results": results,
        "ratio_g256_over_g1_by_n": ratios["free"],
        "binding": {
            "ratio_g256_over_g1_by_n": ratios["binding"],
            "p50_seconds_per_cycle_by_n_and_groups": p50_at["binding"],
            "target": {"ratio_g256_over_g1_max": TARGET_BINDING_RATIO},
            "worst_ratio": worst_binding,
            "meets_target": meets["binding_ratio"],
            "walk_baseline": walk,
        },
        "p50_seconds_per_cycle_by_n_and_groups": p50_at["free"],
        "phase_breakdown_seconds_per_cycle": {"n": breakdown_n, "by_mode_and_groups": breakdown},
        "target": {"ratio_g256_over_g1_max": TARGET_RATIO, "free_cycle_seconds_max": TARGET_FREE_CYCLE_SECONDS},
        "worst_ratio": worst_free,
        "worst_free_cycle_seconds": worst_free_cycle,
        "meets_targets": meets,
        "meets_target": all(meets.values()),
        "headline": [headline(f"cycle p50(G=256)/p50(G=1), N={n}", ratio, TARGET_RATIO) for n, ratio in ratios["free"].items()],
    }
    return payload
